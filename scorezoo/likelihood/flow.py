"""The probability-flow ODE of an SDE and a score, and its divergence integral in a choice of time variable.

Every linear SDE ``dx = f(t) x dt + g(t) dw`` has a deterministic twin with the same marginals p_t, the
probability-flow ODE (Song et al., ICLR 2021, eq. 13)::

    dx/dt = f(t) x - g(t)^2 s(x, t) / 2,

and along its paths ``d log p_t(x_t) / dt = -div_x[f(t) x - g(t)^2 s(x, t) / 2]`` (instantaneous change of
variables; Chen et al. 2018, Thm. 1), so ``log p_eps(x) = log pi(x_T) + int_eps^T div(drift) dt`` (eq. 39 there).
:class:`ProbabilityFlow` is that dynamics; the ODE sampler, :func:`scorezoo.likelihood.log_likelihood` and the
per-pixel bits of the demo all use it. :class:`LogDensityODE` is the same ODE augmented with the divergence
integral, in the time variable the solver steps in:

* ``"t"``: time itself;
* ``"rho"``: ``rho_t = sigma_t / alpha_t`` for ``y = x / alpha_t``, where the ODE reads ``dy/drho = -sigma_t s(x, t)``
  (the epsilon-prediction for an epsilon network; Karras et al. 2022, eq. 4; Lu et al. 2022);
* ``"log_rho"``: ``log rho_t`` (minus the half log-SNR of Lu et al. 2022) for ``x`` itself, where the divergence
  integrand of a VP model stays between 0 and D per unit of log rho.
"""

from __future__ import annotations

import math

import torch

from ..sde import SDE
from ..utils import ScoreFn, bcast
from .divergence import divergence_fn

__all__ = ["ProbabilityFlow", "LogDensityODE", "TIME_VARIABLES"]

TIME_VARIABLES = ("t", "rho", "log_rho")


class ProbabilityFlow:
    """The probability-flow ODE ``dx/dt = f(t) x - g(t)^2 s(x, t) / 2`` (Song et al. ICLR 2021, eq. 13).

    Args:
        score_fn: ``score_fn(x: (B, *S), t: (B,)) -> (B, *S)``.
        sde: the forward SDE (its ``f`` and ``g``).
    """

    def __init__(self, score_fn: ScoreFn, sde: SDE):
        self.score_fn, self.sde = score_fn, sde

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``dx/dt`` ``(B, *S)`` at ``x: (B, *S)``, ``t: (B,)``."""
        return self.sde.probability_flow_drift(x, t, self.score_fn(x, t))

    def score_and_divergence(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        *,
        probes: torch.Tensor | None = None,
        network_batch_size: int | None = None,
        per_dimension: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The score ``(B, *S)`` and its divergence ``div_x s`` ``(B,)`` (or its terms ``(B, *S)`` with
        ``per_dimension``), detached; arguments as :func:`scorezoo.likelihood.divergence.divergence_fn`
        (``probes``: Hutchinson; none: exact)."""
        return divergence_fn(self.score_fn, x, t, probes=probes, network_batch_size=network_batch_size,
                             reduce=not per_dimension)

    def drift_and_divergence(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        *,
        probes: torch.Tensor | None = None,
        network_batch_size: int | None = None,
        per_dimension: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The drift and its divergence ``D f(t) - g(t)^2 div s / 2`` (``div f(t) x = D f(t)`` is analytic).

        Args:
            x: ``(B, *S)``; t: ``(B,)``.
            probes, network_batch_size, per_dimension: as :meth:`score_and_divergence`; per dimension the terms are
                ``f(t) - g^2 (ds/dx)_ii / 2`` (exact) or their Hutchinson estimates, which sum to the divergence.

        Returns:
            ``(drift (B, *S), divergence (B,) or (B, *S))``, detached.
        """
        s, div_s = self.score_and_divergence(x, t, probes=probes, network_batch_size=network_batch_size,
                                             per_dimension=per_dimension)
        f, g2 = self.sde.drift_coef(t), self.sde.diffusion(t) ** 2
        drift = self.sde.probability_flow_drift(x, t, s)
        if per_dimension:
            return drift, bcast(f, x) - 0.5 * bcast(g2, x) * div_s
        return drift, x[0].numel() * f - 0.5 * g2 * div_s


class LogDensityODE:
    """The probability-flow ODE augmented with its divergence integral, as a torchdiffeq function of ``u``.

    State: ``(position (B, D), accumulated divergence (B,) or (B, D) per dimension)``; the position is ``x`` for
    ``"t"`` and ``"log_rho"`` and ``y = x / alpha_t`` for ``"rho"``. The solve runs from ``u0 = u(eps)`` to
    ``u1 = u(T)``; :meth:`to_data` turns states back into ``x`` and the divergence integral of ``x``.

    Args:
        flow: the dynamics.
        shape: ``(B, *S)`` of the data.
        eps: start time in (0, T).
        time_variable: one of :data:`TIME_VARIABLES`.
        probes: Hutchinson probes ``(P, B, *S)`` held fixed along the path, or ``None`` for the exact divergence.
        network_batch_size: for the exact divergence (see :func:`~scorezoo.likelihood.divergence.divergence_fn`).
        per_dimension: carry the divergence integral per dimension.
        dtype, device: of the state.

    Attributes:
        nfe: evaluations so far (each evaluates the score of the whole batch once).
    """

    def __init__(self, flow: ProbabilityFlow, shape: torch.Size, eps: float, time_variable: str = "t", *,
                 probes: torch.Tensor | None = None, network_batch_size: int | None = None, per_dimension: bool = False,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        if time_variable not in TIME_VARIABLES:
            raise ValueError(f"time_variable must be one of {TIME_VARIABLES}, got {time_variable!r}.")
        self.flow, self.sde, self.shape = flow, flow.sde, torch.Size(shape)
        self.b, self.d = self.shape[0], math.prod(self.shape[1:])
        self.time_variable, self.probes, self.network_batch_size = time_variable, probes, network_batch_size
        self.per_dimension, self.dtype, self.device = per_dimension, dtype, device
        self.eps = float(eps)
        t_ends = torch.tensor([eps, self.sde.T], dtype=torch.float64)
        self.a_eps = self.sde.alpha_sigma(t_ends)[0][0].item()
        self.u0, self.u1 = (v.item() for v in self.to_u(t_ends))
        self.nfe = 0

    def to_u(self, t: torch.Tensor) -> torch.Tensor:
        """``u(t)``, float64."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.time_variable == "t":
            return t
        rho = self.sde.rho(t)
        return rho if self.time_variable == "rho" else torch.log(rho)

    def to_t(self, u: torch.Tensor) -> torch.Tensor:
        """``t(u)``, float64."""
        u = torch.as_tensor(u, dtype=torch.float64)
        if self.time_variable == "t":
            return u
        return self.sde.rho_inverse(u if self.time_variable == "rho" else torch.exp(u))

    def _dt_du(self, u: torch.Tensor) -> torch.Tensor:
        """``dt/du`` for ``u = log rho``, by autograd of the closed-form ``rho_inverse`` in float64."""
        with torch.enable_grad():
            ug = u.detach().double().requires_grad_(True)
            (g,) = torch.autograd.grad(self.to_t(ug).sum(), ug)
        return g

    def _t_batch(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype).expand(self.b).to(self.device)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The state at ``u0`` for data ``x: (B, *S)``: the position and a zero divergence integral."""
        y0 = x.detach() / self.a_eps if self.time_variable == "rho" else x.detach()
        zeros = torch.zeros(self.b, *((self.d,) if self.per_dimension else ()), dtype=self.dtype, device=self.device)
        return y0.reshape(self.b, self.d), zeros

    def __call__(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        self.nfe += 1
        b, d, sde = self.b, self.d, self.sde
        y = state[0].reshape(self.shape)
        # adaptive solvers' first-step heuristics may probe outside the interval, where beta(t) < 0
        u = torch.as_tensor(u, dtype=torch.float64).clamp(self.u0, self.u1)
        kw = dict(probes=self.probes, network_batch_size=self.network_batch_size, per_dimension=self.per_dimension)
        t = self._t_batch(self.to_t(u))
        if self.time_variable == "rho":
            # dy/drho = -sigma_t s(alpha_t y, t); its divergence in y is -sigma_t alpha_t div_x s
            alpha, sigma = sde.alpha_sigma(t)
            s, div_s = self.flow.score_and_divergence(bcast(alpha, y) * y, t, **kw)
            dy, ddelta = -bcast(sigma, y) * s, -bcast(sigma * alpha, div_s) * div_s
        else:
            dy, ddelta = self.flow.drift_and_divergence(y, t, **kw)
            if self.time_variable == "log_rho":
                j = self._t_batch(self._dt_du(u))
                dy, ddelta = bcast(j, dy) * dy, bcast(j, ddelta) * ddelta
        return dy.reshape(b, d), ddelta.reshape(b, d) if self.per_dimension else ddelta

    def denoised_and_divergence(self, u: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoised data ``x0_hat = (x + sigma^2 s) / alpha`` ``(B, D)`` at ``x: (B, D)`` and time ``t(u)``, and
        ``g = alpha div_x x0_hat = D + sigma^2 div_x s`` ``(B,)`` (per dimension ``1 + sigma^2 (ds/dx)_ii``,
        ``(B, D)``): what :func:`~scorezoo.likelihood.multistep.multistep_solve` interpolates (Tweedie's formula;
        Lu et al. 2022, DPM-Solver++). One evaluation (counted in :attr:`nfe`)."""
        self.nfe += 1
        t = self._t_batch(self.to_t(torch.as_tensor(u, dtype=torch.float64).clamp(self.u0, self.u1)))
        xs = x.reshape(self.shape)
        s, div_s = self.flow.score_and_divergence(xs, t, probes=self.probes, network_batch_size=self.network_batch_size,
                                                  per_dimension=self.per_dimension)
        alpha, sigma = self.sde.alpha_sigma(t)
        x0_hat = (xs + bcast(sigma**2, xs) * s) / bcast(alpha, xs)
        ones = 1.0 if self.per_dimension else float(self.d)
        g = ones + bcast(sigma**2, div_s) * div_s
        return x0_hat.reshape(self.b, self.d), g.reshape(self.b, self.d) if self.per_dimension else g

    def to_data(self, u: torch.Tensor, position: torch.Tensor,
                delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States at times ``u`` ``(N,)`` back in data terms: ``x (N, B, *S)`` and the divergence integral of ``x``
        from eps to each time, ``(N, B)`` or ``(N, B, *S)`` nats. For ``"rho"``, ``x = alpha_t y`` and the
        densities of ``x`` and ``y`` differ by ``D log(alpha_t / alpha_eps)`` (``log(alpha_t / alpha_eps)`` per
        dimension)."""
        n = position.shape[0]
        x = position.reshape(n, *self.shape)
        delta = delta.reshape(n, *self.shape) if self.per_dimension else delta
        if self.time_variable == "rho":
            alpha = self.sde.alpha_sigma(self.to_t(u).cpu())[0]
            log_a = torch.log(alpha / self.a_eps)
            x = bcast(alpha.to(x), x) * x
            delta = delta + bcast((log_a if self.per_dimension else self.d * log_a).to(delta), delta)
        return x, delta
