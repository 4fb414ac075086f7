"""Closed-form scores of Gaussian data, the known answers every numerical claim is tested against.

For data ``x_0 ~ N(mu, Sigma)`` and a linear SDE with kernel ``N(alpha_t x_0, sigma_t^2 I)`` the marginal
is ``p_t = N(alpha_t mu, C_t)``, ``C_t = alpha_t^2 Sigma + sigma_t^2 I``, and its score is
``-C_t^{-1}(x - alpha_t mu)``. The probability-flow ODE is then affine: in the eigenbasis of Sigma,
``x_t - alpha_t mu = sqrt(c_t / c_s) (x_s - alpha_s mu)`` coordinate-wise, since ``c' = 2 f c + g^2``
(the Fokker–Planck equation of the SDE) gives ``d/dt log sqrt(c) = f + g^2 / (2c)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..sde import SDE

__all__ = ["GaussianScore"]


class GaussianScore(nn.Module):
    """Exact ``score_fn(x, t)`` of ``N(mean, cov)`` data diffused by ``sde``; flat data ``(B, D)``.

    Args:
        sde: the forward SDE.
        mean: ``(D,)``.
        cov: ``(D, D)`` symmetric positive definite.

    Raises:
        ValueError: shapes that disagree, or a covariance that is not symmetric positive definite.
    """

    def __init__(self, sde: SDE, mean: torch.Tensor, cov: torch.Tensor):
        super().__init__()
        mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
        if mean.dim() != 1 or cov.shape != (mean.numel(), mean.numel()):
            raise ValueError(f"need mean (D,) and cov (D, D); got {tuple(mean.shape)} and {tuple(cov.shape)}.")
        if not torch.allclose(cov, cov.T):
            raise ValueError("cov must be symmetric.")
        lam, u = torch.linalg.eigh(cov)
        if lam.min() <= 0:
            raise ValueError("cov must be positive definite.")
        self.sde = sde
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)
        self.register_buffer("eigvals", lam)
        self.register_buffer("eigvecs", u)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def _c(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``alpha_t (B,)`` and eigenvalues of C_t ``(B, D)``."""
        alpha, sigma = self.sde.alpha_sigma(t.double())
        return alpha, alpha[:, None] ** 2 * self.eigvals + sigma[:, None] ** 2

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The score ``-C_t^{-1}(x - alpha_t mu)``: ``x: (B, D)``, ``t: (B,)`` -> ``(B, D)``."""
        alpha, c = self._c(t)
        y = (x.double() - alpha[:, None] * self.mean) @ self.eigvecs
        return (-(y / c) @ self.eigvecs.T).to(x.dtype)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log p_t(x)`` in nats, ``(B,)``."""
        alpha, c = self._c(t)
        y = (x.double() - alpha[:, None] * self.mean) @ self.eigvecs
        return (-0.5 * (y**2 / c).sum(1) - 0.5 * torch.log(2 * math.pi * c).sum(1)).to(x.dtype)

    def flow(self, x: torch.Tensor, s: float, t: float) -> torch.Tensor:
        """The probability-flow ODE map from time ``s`` to time ``t`` (closed form), ``(B, D)``."""
        b = x.shape[0]
        ts, tt = torch.full((b,), float(s), dtype=torch.float64), torch.full((b,), float(t), dtype=torch.float64)
        a_s, c_s = self._c(ts)
        a_t, c_t = self._c(tt)
        y = (x.double() - a_s[:, None] * self.mean) @ self.eigvecs
        y = y * torch.sqrt(c_t / c_s)
        return (y @ self.eigvecs.T + a_t[:, None] * self.mean).to(x.dtype)

    def ode_log_likelihood(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """What the probability-flow ODE with this exact score returns for ``x`` read at time ``eps``:
        ``log p_eps(x) - log p_T(x_T) + log pi(x_T)``, prior mismatch included, ``(B,)`` nats."""
        b = x.shape[0]
        x_t = self.flow(x, eps, self.sde.T)
        t_eps = torch.full((b,), float(eps), dtype=torch.float64)
        t_T = torch.full((b,), self.sde.T, dtype=torch.float64)
        return self.log_prob(x, t_eps) - self.log_prob(x_t, t_T) + self.sde.prior_logp(x_t)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the data distribution N(mean, cov), ``(n, D)`` float64."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + (z * self.eigvals.sqrt()) @ self.eigvecs.T
