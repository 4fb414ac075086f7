"""Denoising score matching with the weightings of the MLE paper.

Song, Durkan, Murray & Ermon, "Maximum Likelihood Training of Score-Based Generative Models" (NeurIPS 2021,
hereafter *MLE*) train ``s_theta`` with the weighted denoising score-matching objective (MLE eq. 7)

    J(theta; lambda) = 1/2 int_eps^T lambda(t) E_{x_0, x_t} ||s_theta(x_t, t) - grad log p_0t(x_t | x_0)||^2 dt,

with ``x_t = alpha_t x_0 + sigma_t z`` and ``grad log p_0t(x_t | x_0) = -z / sigma_t``. Every loss here is the
one-sample Monte Carlo estimate of that integral, ``1/2 lambda(t) ||sigma_t s + z||^2 / (sigma_t^2 q(t))``
for ``t ~ q``, so that all weightings are on the same scale (nats per sample for the likelihood ones):

* ``"score"``: ``lambda = sigma_t^2``, ``t ~ U[eps, T]`` (Song et al. 2021, eq. 7; the usual baseline):
  ``(T - eps)/2 ||sigma_t s + z||^2``;
* ``"likelihood"``: ``lambda = g(t)^2`` (MLE Thm. 1), ``t ~ U[eps, T]``:
  ``(T - eps)/2 g^2/sigma^2 ||sigma_t s + z||^2``;
* ``"likelihood-is"``: ``lambda = g(t)^2``, ``t ~ q(t) = g^2 / (sigma^2 Z)`` (MLE Sec. 5.1): the weights cancel
  to ``Z/2 ||sigma_t s + z||^2``, which for an epsilon-predicting network is ``Z/2 ||eps_hat - z||^2``.

The two likelihood weightings estimate the same number; importance sampling only lowers the variance.
Their expectation plus the closed-form constant ``-D Z/2 - D log(alpha_T / alpha_eps)`` is the diffusion
term of the likelihood bound (MLE Thm. 3, as in :func:`scorezoo.likelihood.likelihood_bound`).
"""

from __future__ import annotations

import torch

from .models import ScoreModel
from .sde import SDE
from .utils import rand, randn

__all__ = ["WEIGHTINGS", "sample_time", "dsm_loss"]

#: the weightings a config may name
WEIGHTINGS = ("score", "likelihood", "likelihood-is")


def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {WEIGHTINGS}.")


def sample_time(
    sde: SDE,
    batch_size: int,
    *,
    weighting: str,
    eps: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the training times of a weighting and their weights ``1/q(t)``.

    Args:
        sde: the forward SDE.
        batch_size: number of times B.
        weighting: one of :data:`WEIGHTINGS`; ``"likelihood-is"`` draws from ``q(t)`` proportional to
            ``g^2/sigma^2`` (MLE Sec. 5.1), the others uniformly on ``[eps, T]``.
        eps: time truncation in (0, T) (MLE: 1e-5 for VP).
        generator: source of randomness (on the CPU).
        device: device of the outputs.

    Returns:
        ``(t, inv_q)``, both ``(B,)`` float32: times in ``[eps, T]`` and ``1/q(t)``, so that
        ``mean(inv_q * h(t))`` is an unbiased estimate of ``int_eps^T h(t) dt``.

    Raises:
        ValueError: unknown weighting or ``eps`` outside (0, T).
    """
    _check_weighting(weighting)
    eps = sde.check_eps(eps)
    if weighting == "likelihood-is":
        return sde.sample_importance_weighted_time(batch_size, eps, generator=generator, device=device)
    u = rand(batch_size, generator=generator, dtype=torch.float64).cpu()
    t = (eps + (sde.T - eps) * u).float().to(device)
    return t, torch.full_like(t, sde.T - eps)


def dsm_loss(
    model: ScoreModel,
    x0: torch.Tensor,
    *,
    weighting: str,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample weighted denoising score-matching loss (MLE eq. 7; see the module docstring).

    Args:
        model: the score model (network + SDE + parameterisation).
        x0: ``(B, *S)`` clean (dequantized) data in the model's data space.
        weighting: ``"score"``, ``"likelihood"`` or ``"likelihood-is"``.
        eps: time truncation in (0, T).
        generator: CPU generator for ``t`` and ``z`` (the same generator and data give the same loss).
        t: optional ``(B,)`` times to use instead of drawing them; then the weight is that of uniform time
            for ``"score"``/``"likelihood"`` and ``1/q(t)`` for ``"likelihood-is"``.
        z: optional ``(B, *S)`` standard normal noise to use instead of drawing it.

    Returns:
        ``(B,)`` losses in nats for the likelihood weightings: unbiased, one-sample estimates of
        ``J(theta; lambda)`` for each ``x0``.

    Raises:
        ValueError: unknown weighting, ``eps`` outside (0, T), or shapes that do not match.
    """
    sde = model.sde
    b, dev = x0.shape[0], x0.device
    if t is None:
        t, inv_q = sample_time(sde, b, weighting=weighting, eps=eps, generator=generator, device=dev)
    else:
        _check_weighting(weighting)
        if t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(t.shape)}.")
        if weighting == "likelihood-is":
            inv_q = 1.0 / sde.importance_density(t.double(), eps).float()
        else:
            inv_q = torch.full_like(t, sde.T - eps)
    t = t.to(device=dev, dtype=x0.dtype)
    if z is None:
        z = randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
    elif z.shape != x0.shape:
        raise ValueError(f"z must have the shape of x0 {tuple(x0.shape)}, got {tuple(z.shape)}.")
    xt = sde.perturb(x0, t, z)
    sigma = sde.alpha_sigma(t)[1]
    if model.parameterization == "epsilon":
        # sde.dsm_residual with sigma s = -eps_hat exactly; going through the score would divide by sigma ~ 3e-3
        # at t = eps
        residual = z - model.network_output(xt, t)
    else:
        residual = sde.dsm_residual(model(xt, t), t, z)
    sq = residual.flatten(1).pow(2).sum(1)
    if weighting == "score":
        lam_over_s2 = torch.ones_like(t)
    else:
        lam_over_s2 = sde.likelihood_weighting(t) / sigma**2
    return 0.5 * inv_q.to(sq.dtype) * lam_over_s2.to(sq.dtype) * sq
