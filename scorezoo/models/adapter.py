"""Turn a network into the one score interface of scorezoo: ``score_fn(x, t)``.

``score_fn(x: (B, *S), t: (B,)) -> (B, *S)`` approximates ``grad_x log p_t(x)`` for the marginal
``p_t`` of an SDE. Networks are trained in one of three parameterisations; with the kernel
``x_t = alpha_t x_0 + sigma_t z`` (see :meth:`scorezoo.sde.SDE.marginal_prob`):

* ``"epsilon"``: the network predicts ``z``; ``score = -eps_hat / sigma_t`` (Ho et al. 2020, eq. 11;
  Song et al. 2021, App. C);
* ``"x0"``: the network predicts ``x_0``; ``score = (alpha_t x0_hat - x) / sigma_t^2`` (Tweedie's formula);
* ``"score"``: the network output is the score itself.
"""

from __future__ import annotations

import torch
from torch import nn

from ..sde import SDE
from ..utils import bcast
from .networks import network_forward

__all__ = ["ScoreModel", "PARAMETERIZATIONS", "TIME_LABELS"]

PARAMETERIZATIONS = ("epsilon", "x0", "score")
TIME_LABELS = ("t", "sigma")


class ScoreModel(nn.Module):
    """A network plus its SDE and parameterisation, callable as ``score_fn(x, t)``.

    Args:
        network: a network of :data:`scorezoo.models.networks.NETWORKS` (or any module called as
            ``network(x, t_label)`` returning ``(B, *S)``).
        sde: the forward SDE the network was trained for.
        parameterization: ``"epsilon"``, ``"x0"`` or ``"score"``.
        time_scale: the network sees ``t_label = time_scale * t`` (999 follows Song et al.'s code, which
            makes a continuous-time VP network look like a 1000-step DDPM network).
        time_label: ``"t"`` (the label is ``time_scale * t``) or ``"sigma"`` (the label is sigma_t, as the official
            continuous VE models take it: score_sde ``models/utils.py``, ``get_score_fn``).

    Raises:
        ValueError: unknown parameterisation or time label.
    """

    def __init__(self, network: nn.Module, sde: SDE, parameterization: str = "epsilon", time_scale: float = 999.0,
                 time_label: str = "t"):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}.")
        if time_label not in TIME_LABELS:
            raise ValueError(f"unknown time_label {time_label!r}; choose one of {TIME_LABELS}.")
        self.network = network
        self.sde = sde
        self.parameterization = parameterization
        self.time_scale = float(time_scale)
        self.time_label = time_label

    def network_output(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The raw network output ``(B, *S)`` at ``x: (B, *S)``, ``t: (B,)``."""
        label = self.sde.alpha_sigma(t)[1] if self.time_label == "sigma" else t * self.time_scale
        return network_forward(self.network, x, label)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``score_fn(x, t)``: the score ``(B, *S)`` at ``x: (B, *S)`` and times ``t: (B,)``."""
        out = self.network_output(x, t)
        if self.parameterization == "score":
            return out
        # the kernel N(alpha_t x0, sigma_t^2 I): its mean at the predicted x0, and its std
        mean, sigma = self.sde.marginal_prob(out, t.to(x.dtype))
        if self.parameterization == "epsilon":
            return -out / bcast(sigma, x)
        return (mean - x) / bcast(sigma**2, x)
