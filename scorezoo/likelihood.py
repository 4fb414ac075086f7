"""Log-likelihoods of score-based models: the probability-flow ODE, the likelihood bound, bits/dim.

* :func:`log_likelihood`: exact ``log p_eps(x)`` by the instantaneous change of variables along the
  probability-flow ODE ``dx/dt = f(t) x - g(t)^2 s(x, t) / 2`` (Song et al. ICLR 2021, eqs. 13 and 39;
  Chen et al. 2018, Thm. 1), with the divergence computed exactly or by Hutchinson's estimator
  (Hutchinson 1989; Grathwohl et al. 2019).
* :func:`likelihood_bound`: the upper bound on ``-log p(x)`` of Song, Durkan, Murray & Ermon,
  "Maximum Likelihood Training of Score-Based Generative Models" (NeurIPS 2021, Thm. 3 in its
  denoising form, eq. 8 there), with importance-sampled time and a Gaussian decoder for [0, eps].
* :func:`bits_per_dim`: nats of a dequantized density to bits/dim of the integer data.

All log-densities are in nats; ``x`` is ``(B, *S)`` in the model's data space.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torchdiffeq import odeint

from .dequantization import dequantization_log_jacobian
from .sde import SDE, _bcast

__all__ = ["log_likelihood", "LikelihoodResult", "likelihood_bound", "BoundResult", "bits_per_dim",
           "divergence_fn", "ScoreFn", "LikelihoodSchedule", "calibrate_schedule"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DIVERGENCES = ("hutchinson", "exact")
SOLVERS = ("torchdiffeq", "torchode")
TIME_VARIABLES = ("t", "rho", "log_rho")
#: torchdiffeq's fixed-step methods that a schedule can use, with their orders; each also takes that many
#: evaluations per step
FIXED_METHODS = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
PROBES = ("rademacher", "gaussian")
#: what a calibration target bounds: each sample's error (root mean square) or the error of the mean
CRITERIA = ("rms", "mean")


@dataclass
class LikelihoodResult:
    """Result of :func:`log_likelihood`.

    Attributes:
        logp: ``(B,)`` log p_eps(x) in nats = ``prior_logp + delta_logp``.
        prior_logp: ``(B,)`` log pi(x_T) in nats at the ODE's end point.
        delta_logp: ``(B,)`` integral of the drift's divergence from eps to T, in nats.
        nfe: number of ODE function evaluations (each is one score evaluation of the batch).
        z: ``(B, *S)`` the end point x_T of the ODE.
        times: ``(N,)`` the times asked for with ``times=``, else ``None``.
        delta_logp_path: ``(N, B)`` the divergence integral from eps to each of ``times`` (nats), else ``None``;
            its value at T is ``delta_logp``.
    """

    logp: torch.Tensor
    prior_logp: torch.Tensor
    delta_logp: torch.Tensor
    nfe: int
    z: torch.Tensor
    times: torch.Tensor | None = None
    delta_logp_path: torch.Tensor | None = None


def _check_x(x: torch.Tensor) -> None:
    if not torch.is_tensor(x):
        raise ValueError(f"x must be a torch.Tensor of shape (B, ...), got {type(x).__name__}.")
    if x.dim() < 2:
        raise ValueError(f"x must have a batch dimension, shape (B, ...); got shape {tuple(x.shape)}.")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0): give at least one sample.")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point in the model's data range, got dtype {x.dtype}.")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf values.")


def _is_real(v) -> bool:
    """A real number (Python, numpy or a 0-d tensor), not a bool."""
    if torch.is_tensor(v):
        return v.dim() == 0 and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}; e.g. "
                         "torch.Generator().manual_seed(0).")


def _check_options(divergence: str, probe: str, num_probes: int) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}.")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}.")
    if int(num_probes) < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}.")


def _draw_probes(x: torch.Tensor, probe: str, num_probes: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(num_probes, B, *S)`` Hutchinson probes with E[v v^T] = I, drawn on the generator's device."""
    device = generator.device if generator is not None else x.device
    shape = (num_probes, *x.shape)
    if probe == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator, device=device).to(x.dtype) * 2 - 1
    else:
        v = torch.randn(shape, generator=generator, device=device, dtype=x.dtype)
    return v.to(x.device)


def divergence_fn(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    probes: torch.Tensor | None = None,
    chunk_size: int | None = None,
    reduce: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The score and its divergence ``div_x s(x, t)`` per sample.

    With ``probes`` ``(P, B, *S)``: Hutchinson's estimate ``mean_p v_p^T (ds/dx) v_p`` (unbiased when
    E[v v^T] = I). Without: the exact trace of the Jacobian from D vector-Jacobian products, batched:
    the batch is replicated ``chunk_size`` times and one backward pass with one-hot cotangents gives
    ``chunk_size`` diagonal entries of every sample at once (no Python loop over dimensions; this works
    for networks whose backward cannot be vmapped, such as diffusers' UNet). Exactness needs a network
    that treats samples independently (no batch statistics), as every scorezoo network does.

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        x: ``(B, *S)``; t: ``(B,)``.
        probes: Hutchinson probes, or ``None`` for the exact divergence.
        chunk_size: dimensions per replicated batch (exact divergence only).
        reduce: ``False`` returns the per-dimension terms ``(B, *S)`` that sum to the divergence: the
            Jacobian's diagonal (exact) or ``mean_p v_p * (v_p^T ds/dx)`` (Hutchinson).

    Returns:
        ``(score (B, *S), divergence (B,) or its terms (B, *S))``, both detached.
    """
    if probes is not None:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = score_fn(xg, t)
            terms = torch.zeros_like(x)
            for i, v in enumerate(probes):
                (vj,) = torch.autograd.grad(s, xg, v, retain_graph=i + 1 < len(probes))
                terms = terms + vj * v
        terms = terms.detach() / len(probes)
        return s.detach(), terms if not reduce else terms.flatten(1).sum(1)

    b, d = x.shape[0], x[0].numel()
    if chunk_size is None:
        # bound the replicated batch (chunk * B samples through one forward and backward pass)
        chunk_size = max(1, min(d, 1024 // b))
    s, diag = None, torch.zeros(b, d, device=x.device, dtype=x.dtype)
    for idx in torch.arange(d, device=x.device).split(int(chunk_size)):
        k = len(idx)
        with torch.enable_grad():
            xr = x.detach().repeat(k, *([1] * (x.dim() - 1))).requires_grad_(True)
            out = score_fn(xr, t.repeat(k))
            onehot = torch.zeros(k, b, d, device=x.device, dtype=x.dtype)
            onehot[torch.arange(k), :, idx] = 1
            (rows,) = torch.autograd.grad(out, xr, onehot.view_as(out))
        diag[:, idx] = rows.view(k, b, d)[torch.arange(k), :, idx].T.detach()
        if s is None:
            s = out.detach()[:b]
    return s, diag.sum(1) if reduce else diag.view_as(x)


@dataclass
class LikelihoodSchedule:
    """A fixed step schedule for :func:`log_likelihood`, made by :func:`calibrate_schedule`.

    The solve takes one step of the fixed-step ``method`` per interval of ``times``, integrating in
    ``time_variable``; it costs ``num_steps * stages`` network evaluations (each a forward and one backward
    pass per Hutchinson probe) whatever the batch, and since no step depends on the data the answer of
    each sample does not depend on its batch mates.

    Attributes:
        times: ``(N + 1,)`` float64 times from ``eps`` to ``T``, increasing.
        method: a torchdiffeq fixed-step method (``"rk4"``, ``"heun3"``, ``"midpoint"``, ``"heun2"``, ``"euler"``).
        time_variable: ``"log_rho"`` or ``"t"`` (see :func:`log_likelihood`).
        target: the calibration target in bits/dim, or ``None``.
        criterion: what ``target`` bounds: ``"rms"`` (each sample's error, root mean square over the
            calibration samples) or ``"mean"`` (the error of the samples' mean bits/dim, i.e. of a data set's
            bits/dim; see :func:`calibrate_schedule`).
        estimated_error: the calibration's step-doubling estimate of its error in bits/dim (root mean square
            over the calibration samples of each sample's estimated log p error, over ``D ln 2``), or ``None``.
        measured_rms_error, measured_mean_error: the error measured against a tight adaptive solve with the
            same probes on the calibration samples, bits/dim (schedule minus reference; positive means the
            schedule reports more bits/dim): its root mean square over the samples and its signed mean; ``None``
            if not measured.
        num_calibration_samples: how many samples the calibration used.

    Raises:
        ValueError: an unknown method, time variable or criterion, times that are not at least two finite
            increasing numbers, a non-finite (or negative, except ``measured_mean_error``) ``target`` or error,
            a negative sample count.
    """

    times: torch.Tensor
    method: str = "rk4"
    time_variable: str = "log_rho"
    target: float | None = None
    estimated_error: float | None = None
    num_calibration_samples: int = 0
    criterion: str = "rms"
    measured_rms_error: float | None = None
    measured_mean_error: float | None = None

    def __post_init__(self):
        try:
            self.times = torch.as_tensor(self.times, dtype=torch.float64).flatten().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"a schedule's times must be a list of numbers, got {self.times!r:.60}.") from None
        for name in ("target", "estimated_error", "measured_rms_error", "measured_mean_error"):
            v = getattr(self, name)
            signed = name == "measured_mean_error"
            if v is not None and not (_is_real(v) and math.isfinite(v) and (signed or v >= 0)):
                raise ValueError(f"a schedule's {name} must be a finite number{'' if signed else ' >= 0'} or None, "
                                 f"got {v!r}.")
        if self.criterion not in CRITERIA:
            raise ValueError(f"a schedule's criterion must be one of {CRITERIA}, got {self.criterion!r}.")
        if not isinstance(self.num_calibration_samples, int) or self.num_calibration_samples < 0:
            raise ValueError(f"num_calibration_samples must be an int >= 0, got {self.num_calibration_samples!r}.")
        if self.method not in FIXED_METHODS:
            raise ValueError(f"a schedule's method must be one of {sorted(FIXED_METHODS)}, got {self.method!r}.")
        if self.time_variable not in ("t", "log_rho"):
            raise ValueError(f"a schedule's time_variable must be 't' or 'log_rho', got {self.time_variable!r}.")
        if len(self.times) < 2 or not torch.isfinite(self.times).all() or (self.times.diff() <= 0).any():
            raise ValueError("a schedule's times must be at least two finite, increasing times from eps to T.")

    @property
    def eps(self) -> float:
        """The start time (the likelihood's time truncation)."""
        return self.times[0].item()

    @property
    def num_steps(self) -> int:
        return len(self.times) - 1

    @property
    def nfe(self) -> int:
        """Network evaluations of one solve: steps times the method's stages."""
        return self.num_steps * FIXED_METHODS[self.method]

    def to_dict(self) -> dict:
        """A JSON-able dict (the ``likelihood_schedule`` entry of a pipeline config)."""
        return {"times": self.times.tolist(), "method": self.method, "time_variable": self.time_variable,
                "target": self.target, "criterion": self.criterion, "estimated_error": self.estimated_error,
                "measured_rms_error": self.measured_rms_error, "measured_mean_error": self.measured_mean_error,
                "num_calibration_samples": self.num_calibration_samples}

    @classmethod
    def from_dict(cls, d: dict) -> "LikelihoodSchedule":
        """Inverse of :meth:`to_dict`. Raises ValueError on a malformed dict."""
        if not isinstance(d, dict) or "times" not in d:
            raise ValueError("a likelihood schedule must be a dict with 'times'.")
        known = {"times", "method", "time_variable", "target", "criterion", "estimated_error", "measured_rms_error",
                 "measured_mean_error", "num_calibration_samples"}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, RuntimeError) as e:
            raise ValueError(f"malformed likelihood schedule: {e}") from None


class _Flow:
    """The probability-flow ODE and its divergence integral in a chosen time variable ``u``.

    State: the tuple ``(position (B, D), accumulated divergence (B,))``; the position is ``x`` for
    ``"t"`` and ``"log_rho"``, ``y = x / alpha_t`` for ``"rho"``. ``u = t``, ``rho_t`` or ``log rho_t``.
    """

    def __init__(self, score_fn, sde, shape, dtype, device, eps, time_variable, probes, chunk_size):
        self.score_fn, self.sde, self.shape, self.dtype = score_fn, sde, shape, dtype
        self.b, self.d = shape[0], math.prod(shape[1:])
        self.time_variable, self.probes, self.chunk_size = time_variable, probes, chunk_size
        self.device = device
        t_ends = torch.tensor([eps, sde.T], dtype=torch.float64)
        self.a_eps, self.a_T = (v.item() for v in sde.alpha_sigma(t_ends)[0])
        self.u0, self.u1 = (v.item() for v in self.to_u(t_ends))
        self.nfe = 0

    def to_u(self, t: torch.Tensor) -> torch.Tensor:
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

    def __call__(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        self.nfe += 1
        b, d, dt, sde = self.b, self.d, self.dtype, self.sde
        y = state[0].reshape(self.shape)
        # adaptive solvers' first-step heuristics may probe outside the interval, where beta(t) < 0
        u = torch.as_tensor(u, dtype=torch.float64).clamp(self.u0, self.u1)
        if self.time_variable == "rho":
            t = sde.rho_inverse(u).to(dt).expand(b)
            alpha, sigma = sde.alpha_sigma(t)
            s, div_s = divergence_fn(self.score_fn, _bcast(alpha, y) * y, t, probes=self.probes,
                                     chunk_size=self.chunk_size)
            return (-_bcast(sigma, y) * s).reshape(b, d), -sigma * alpha * div_s
        t = self.to_t(u).to(dt).expand(b).to(self.device)
        s, div_s = divergence_fn(self.score_fn, y, t, probes=self.probes, chunk_size=self.chunk_size)
        f, g2 = sde.drift_coef(t), sde.diffusion(t) ** 2
        dy = (_bcast(f, y) * y - 0.5 * _bcast(g2, y) * s).reshape(b, d)
        ddelta = d * f - 0.5 * g2 * div_s
        if self.time_variable == "log_rho":
            j = self._dt_du(u).to(dt).to(self.device).expand(b)
            dy, ddelta = j[:, None] * dy, j * ddelta
        return dy, ddelta


def _equidistribute(grid: list[float], per_step: torch.Tensor, n: int, order: int) -> list[float]:
    """``n + 1`` points on ``[grid[0], grid[-1]]`` that share the error evenly: step i's root mean square
    error ``e_i`` over its width ``h_i`` gives the density ``(e_i / h_i^(p+1))^(1/(p+1))`` (local error
    ~ h^(p+1) for a method of order p), and the new points cut its integral into equal parts."""
    g = torch.tensor(grid, dtype=torch.float64)
    h = g.diff()
    e = per_step.pow(2).mean(1).sqrt().clamp_min(1e-12).cpu()
    density = (e / h ** (order + 1)) ** (1.0 / (order + 1))
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), (density * h).cumsum(0)])
    q = torch.linspace(0, cum[-1].item(), n + 1, dtype=torch.float64)
    idx = torch.searchsorted(cum, q, right=True).clamp(1, len(h)) - 1
    pts = g[idx] + (q - cum[idx]) / density[idx]
    pts = torch.minimum(pts, g[idx + 1])
    pts[0], pts[-1] = g[0], g[-1]
    return pts.tolist()


def _check_schedule(schedule, eps: float, T: float) -> "LikelihoodSchedule":
    if isinstance(schedule, dict):
        schedule = LikelihoodSchedule.from_dict(schedule)
    if not isinstance(schedule, LikelihoodSchedule):
        raise ValueError(f"schedule must be a LikelihoodSchedule (from calibrate_schedule) or None, "
                         f"got {type(schedule).__name__}.")
    if abs(schedule.eps - eps) > 1e-6 * eps:
        raise ValueError(f"the schedule starts at eps = {schedule.eps:g} but the likelihood asks for eps = {eps:g}; "
                         "calibrate a schedule for this eps.")
    if abs(schedule.times[-1].item() - T) > 1e-6 * T:
        raise ValueError(f"the schedule ends at {schedule.times[-1].item():g} but the SDE ends at T = {T:g}: a "
                         "schedule's times must run from eps to T.")
    return schedule


def log_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    eps: float = 1e-5,
    divergence: str = "hutchinson",
    probe: str = "rademacher",
    num_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    options: dict | None = None,
    solver: str | None = None,
    time_variable: str = "t",
    times: torch.Tensor | None = None,
    schedule: LikelihoodSchedule | None = None,
) -> LikelihoodResult:
    """Exact log-likelihood ``log p_eps(x)`` under the probability-flow ODE (Song et al. 2021, eq. 39).

    Integrates ``x`` and the divergence integral jointly with torchdiffeq from ``eps`` to ``T``:
    ``log p_eps(x) = log pi(x_T) + int_eps^T div[f(t) x - g(t)^2 s(x, t) / 2] dt``, where
    ``div f = D f(t)`` is analytic and only ``div s`` is computed or estimated. Hutchinson probes
    are drawn once per solve from ``generator`` and held fixed along the path (FFJORD; Grathwohl
    et al. 2019, Sec. 3.1): the same seed gives the same answer.

    Args:
        score_fn: ``score_fn(x: (B, *S), t: (B,)) -> (B, *S)``.
        sde: the forward SDE.
        x: ``(B, *S)`` points in the model's data space, read as samples at time ``eps``.
        eps: start time, in (0, T) (Song et al. use 1e-5 for VP likelihoods).
        divergence: ``"hutchinson"`` (one backward pass per probe) or ``"exact"`` (D backward passes).
        probe: ``"rademacher"`` or ``"gaussian"`` Hutchinson probes.
        num_probes: probes averaged per evaluation.
        rtol, atol: tolerances of the adaptive solver (on ``x`` and on the log-density).
        method: a torchdiffeq method (``"dopri5"``, ``"rk4"``, ``"euler"``, ...).
        generator: draws the probes.
        chunk_size: dimensions per vmapped chunk for ``divergence="exact"``.
        options: extra torchdiffeq options (e.g. ``{"step_size": 0.01}`` for fixed-step methods).
        solver: ``"torchdiffeq"`` (the default; one step size for the batch, any torchdiffeq method,
            ``options`` for fixed-step ones) or ``"torchode"`` (a step size per sample; methods ``"dopri5"``,
            ``"tsit5"``). On the digits model the batch solve is the faster (benchmarks/results/); with either,
            an image's bits/dim moves by 1e-4 to 1e-3 between being scored alone and next to an outlier at
            rtol = atol = 1e-5 (batched kernels round differently, which flips step decisions).
        time_variable: integrate in ``"t"``, in ``"rho"`` = sigma_t / alpha_t for ``y = x / alpha_t``, where
            the ODE reads ``dy/drho = -sigma_t s(x, t)`` (the epsilon-prediction for an epsilon network;
            Karras et al. 2022, eq. 4; Lu et al. 2022), or in ``"log_rho"`` = log(sigma_t / alpha_t) (minus
            the half log-SNR of Lu et al. 2022) for ``x`` itself, where the divergence integrand of a VP model
            stays between 0 and D per unit of log rho.
        times: optional increasing times in [eps, T] at which to report the accumulated divergence
            integral (``delta_logp_path``), e.g. to plot the log-density along ODE time. With a schedule,
            they are added to its steps.
        schedule: a :class:`LikelihoodSchedule` from :func:`calibrate_schedule`: fixed steps (its ``method``
            and ``time_variable`` replace the arguments; ``rtol``, ``atol``, ``solver`` are unused). Costs
            ``schedule.nfe`` evaluations; each sample's answer is independent of its batch mates.

    Returns:
        :class:`LikelihoodResult` with ``logp`` ``(B,)`` in nats.

    Raises:
        ValueError: bad ``x`` (not a float tensor, no batch dimension, empty, NaN/inf), ``eps`` outside
            (0, T), a schedule made for another ``eps``, or unknown options.
    """
    _check_x(x)
    _check_options(divergence, probe, num_probes)
    sde._check_eps(eps)
    if schedule is not None:
        schedule = _check_schedule(schedule, eps, sde.T)
        method, time_variable, solver = schedule.method, schedule.time_variable, "torchdiffeq"
    if solver is None:
        solver = "torchdiffeq"
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if time_variable not in TIME_VARIABLES:
        raise ValueError(f"time_variable must be one of {TIME_VARIABLES}, got {time_variable!r}.")
    b, d, shape = x.shape[0], x[0].numel(), x.shape
    dt = x.dtype
    probes = _draw_probes(x, probe, num_probes, generator) if divergence == "hutchinson" else None
    flow = _Flow(score_fn, sde, shape, dt, x.device, eps, time_variable, probes, chunk_size)
    a_eps, a_T = flow.a_eps, flow.a_T
    y0 = x.detach() / a_eps if time_variable == "rho" else x.detach()

    # the solver's grid: the schedule's steps (or just the ends), plus the interior times asked for
    steps = flow.to_u(schedule.times.clamp(eps, sde.T)) if schedule is not None else \
        torch.tensor([flow.u0, flow.u1], dtype=torch.float64)
    steps[0], steps[-1] = flow.u0, flow.u1
    u_grid = steps
    if times is not None:
        times = torch.as_tensor(times, dtype=torch.float64).flatten().cpu()
        slack = 1e-6 * eps  # a float32 eps rounds below the float64 one
        if len(times) == 0 or (times.diff() <= 0).any() or times[0] < eps - slack or times[-1] > sde.T + slack:
            raise ValueError(f"times must be increasing within [eps, T] = [{eps:g}, {sde.T:g}].")
        times = times.clamp(eps, sde.T)
        u_times = flow.to_u(times)
        u_grid = torch.unique(torch.cat([steps, u_times.clamp(flow.u0, flow.u1)]))
    state0 = (y0.reshape(b, d), torch.zeros(b, dtype=dt, device=x.device))
    with torch.no_grad(), _frozen(score_fn):
        if solver == "torchdiffeq":
            # a tuple state, so that torchdiffeq's mixed norm controls the log-density on its own
            ys, deltas = odeint(flow, state0, u_grid.to(dt).to(x.device), rtol=rtol, atol=atol, method=method,
                                options=options)
        else:
            def flat(u, st):  # torchode integrates one (B, D + 1) tensor
                dy, ddelta = flow(u, _split(st, d))
                return torch.cat([dy, ddelta[:, None]], 1)

            path = _solve_per_sample(flat, torch.cat([state0[0], state0[1][:, None]], 1), u_grid, rtol=rtol,
                                     atol=atol, method=method)
            ys, deltas = path[..., :d], path[..., d]
    y_end, delta = ys[-1].reshape(shape), deltas[-1]
    delta_path = None
    if times is not None:
        idx = torch.searchsorted(u_grid, u_times.clamp(flow.u0, flow.u1))
        delta_path = deltas[idx.to(x.device)]
    if time_variable == "rho":
        # x_T = alpha_T y_T, and the densities of x and y = x / alpha differ by D log alpha at each end
        y_end = a_T * y_end
        delta = delta + d * math.log(a_T / a_eps)
        if times is not None:
            a_path = sde.alpha_sigma(times)[0]
            delta_path = delta_path + d * torch.log(a_path / a_eps).to(dt)[:, None]
    prior = sde.prior_logp(y_end)
    return LikelihoodResult(logp=prior + delta, prior_logp=prior, delta_logp=delta, nfe=flow.nfe, z=y_end,
                            times=None if times is None else times.to(dt), delta_logp_path=delta_path)


def calibrate_schedule(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    eps: float = 1e-5,
    target: float = 0.002,
    criterion: str = "rms",
    method: str = "rk4",
    time_variable: str = "log_rho",
    initial_steps: int = 4,
    max_steps: int = 64,
    measure: bool = True,
    reference_tol: float = 1e-6,
    optimizer_evals: int = 80,
    divergence: str = "hutchinson",
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
) -> LikelihoodSchedule:
    """Find a short fixed step schedule whose log-likelihood error on ``x`` is at most ``target`` bits/dim.

    1. Starting from ``initial_steps`` steps uniform in ``time_variable``, it halves, one at a time, the step
       with the largest estimated error until the error meets the target. The error of one step is
       estimated by step doubling with Richardson's factor ``2^p / (2^p - 1)`` for a method of order p
       (Hairer, Nørsett & Wanner, Solving ODEs I, Sec. II.4), in the log-density and in the position: a
       position error ``dx`` at time t moves the final answer by ``s(x, t) . dx`` to first order, because the
       rest of the solve returns ``log p_t`` at the moved point (instantaneous change of variables; Chen et al.
       2018), so each step's error in nats is ``e = d(log p) + s . dx``.
    2. While the target still holds, it tries one step fewer, with the points moved so that every step
       carries the same estimated error (equidistribution).
    3. With ``measure`` (the default), "the error" is not the estimate but the error measured against a
       tight adaptive solve (dopri5, ``rtol = atol = reference_tol``, the same Hutchinson probes) on ``x``;
       when an equidistributed grid with one step fewer misses the target, its points are moved by
       Nelder-Mead (``optimizer_evals`` solves at most) to minimise the measured root mean square error,
       and the grid is kept if it then meets the target. Without ``measure``, the estimate decides (faster,
       but the estimate can be off by a factor 2 either way).

    ``criterion`` says what the target bounds. ``"rms"``: each sample's error, root mean square over ``x``
    (for scoring single images). ``"mean"``: the error of the mean bits/dim, i.e. of a data set's bits/dim,
    the number a paper reports: the mean error over ``x`` plus two standard errors of that mean (so that a
    mean that cancels by chance on ``x`` does not pass); single samples' errors may be larger, but a single
    sample's one-probe Hutchinson estimate varies far more than that between probes (about 0.13 bits/dim
    for the digits model).

    Calibrate on data like the data to be scored (e.g. training images, dequantized); the schedule is then
    reused for every batch, at ``schedule.nfe`` evaluations per solve. The error covers the discretisation
    only (the Hutchinson estimator's own noise is the same as with any solver). It is measured on ``x``, not
    bounded: on other samples it differs (on 32 held-out digits, for targets 0.005 and 0.01, the root mean
    square came out 0.5 to 1.2 times the measured one, and the mean within 0.004 bits/dim of it).

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        sde: the forward SDE.
        x: ``(B, *S)`` calibration points in the model's data space (16 to 64 are plenty).
        eps: start time, in (0, T).
        target: the error to reach, bits/dim (finite, > 0; the zoo's images use 0.002).
        criterion: ``"rms"`` or ``"mean"`` (see above).
        method: a fixed-step torchdiffeq method, one of ``FIXED_METHODS``.
        time_variable: ``"log_rho"`` (the default: the steps of a VP model's ODE are then nearly even) or ``"t"``.
        initial_steps, max_steps: the schedule's first and largest number of steps.
        measure: measure the error against a reference solve (above); costs one tight adaptive solve of ``x``
            plus up to ``optimizer_evals`` schedule solves per step count tried.
        reference_tol: the reference solve's rtol and atol (> 0).
        optimizer_evals: the Nelder-Mead budget per step count (0: equidistribution only).
        divergence, probe, generator: as for :func:`log_likelihood`.

    Returns:
        :class:`LikelihoodSchedule` with its estimated and (with ``measure``) measured errors.

    Raises:
        ValueError: bad ``x``, ``eps``, ``target``, ``criterion``, ``reference_tol``, ``optimizer_evals``, step
            counts, method or time variable.

    Warns:
        UserWarning: fewer than 8 points, or ``max_steps`` reached above the target.
    """
    sch, error = _calibrate(score_fn, sde, x, eps=eps, target=target, criterion=criterion, method=method,
                            time_variable=time_variable, initial_steps=initial_steps, max_steps=max_steps,
                            measure=measure, reference_tol=reference_tol, optimizer_evals=optimizer_evals,
                            divergence=divergence, probe=probe, generator=generator)
    if error > sch.target:
        warnings.warn(f"calibrate_schedule stopped at max_steps = {max_steps} with an error of {error:.3g} "
                      f"bits/dim ({criterion}) > target {sch.target:g}; raise max_steps or the target.", stacklevel=2)
    return sch


def _calibrate(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float = 1e-5, target: float = 0.002,
               criterion: str = "rms", method: str = "rk4", time_variable: str = "log_rho", initial_steps: int = 4,
               max_steps: int = 64, measure: bool = True, reference_tol: float = 1e-6, optimizer_evals: int = 80,
               divergence: str = "hutchinson", probe: str = "rademacher",
               generator: torch.Generator | None = None) -> tuple[LikelihoodSchedule, float]:
    """:func:`calibrate_schedule`'s work: the schedule and its error by the criterion, in bits/dim (above the
    target if ``max_steps`` stopped it); the caller warns. Warnings from here point at the caller's caller."""
    _check_x(x)
    _check_options(divergence, probe, 1)
    _check_generator(generator)
    if not _is_real(eps):
        raise ValueError(f"eps must be a number in (0, T), got {eps!r}.")
    sde._check_eps(float(eps))
    if not (_is_real(target) and 0 < float(target) < math.inf):
        raise ValueError(f"target must be a finite number > 0 (bits/dim), got {target!r}.")
    target = float(target)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    if not isinstance(measure, (bool, np.bool_)):
        raise ValueError(f"measure must be True or False, got {measure!r}.")
    if not (_is_real(reference_tol) and 0 < float(reference_tol) < math.inf):
        raise ValueError(f"reference_tol must be a finite number > 0, got {reference_tol!r}.")
    if not _is_int(optimizer_evals) or optimizer_evals < 0:
        raise ValueError(f"optimizer_evals must be an int >= 0, got {optimizer_evals!r}.")
    if not (_is_int(initial_steps) and _is_int(max_steps)):
        raise ValueError(f"initial_steps and max_steps must be ints, got {initial_steps!r} and {max_steps!r}.")
    if x.shape[0] < 8:
        warnings.warn(f"calibrating on {x.shape[0]} point(s): the error is a root mean square or mean over the "
                      "points, so 16 to 64 points like the data to be scored give a more trustworthy schedule.",
                      stacklevel=3)
    if method not in FIXED_METHODS:
        raise ValueError(f"method must be a fixed-step method, one of {sorted(FIXED_METHODS)}; got {method!r}.")
    if time_variable not in ("t", "log_rho"):
        raise ValueError(f"time_variable must be 't' or 'log_rho' for a schedule, got {time_variable!r}.")
    if not 1 <= int(initial_steps) <= int(max_steps):
        raise ValueError(f"need 1 <= initial_steps <= max_steps, got {initial_steps} and {max_steps}.")
    b, d, shape, dt = x.shape[0], x[0].numel(), x.shape, x.dtype
    nats_per_bpd = d * math.log(2)
    probes = _draw_probes(x, probe, 1, generator) if divergence == "hutchinson" else None
    flow = _Flow(score_fn, sde, shape, dt, x.device, eps, time_variable, probes, None)
    order = FIXED_METHODS[method]
    richardson = 2**order / (2**order - 1)
    grid = torch.linspace(flow.u0, flow.u1, int(initial_steps) + 1, dtype=torch.float64).tolist()
    state0 = (x.detach().reshape(b, d), torch.zeros(b, dtype=dt, device=x.device))
    reference = None

    def solve(state, us):
        return odeint(flow, state, torch.tensor(us, dtype=dt, device=x.device), method=method)

    def step_error(i, state, grid):
        """``(B,)`` nats: Richardson estimate of step i's error, carried to the end of the solve."""
        a, c = grid[i], grid[i + 1]
        coarse = solve(state, [a, c])
        fine = solve(state, [a, (a + c) / 2, c])
        t_end = flow.to_t(torch.tensor(c, dtype=torch.float64)).to(dt).expand(b).to(x.device)
        s = score_fn(fine[0][-1].reshape(shape), t_end)
        dx = (coarse[0][-1] - fine[0][-1]).reshape(shape)
        return richardson * ((coarse[1][-1] - fine[1][-1]) + (s * dx).flatten(1).sum(1))

    def logp_of(end):
        """``(B,)`` nats: log p of the solve that ended in state ``end`` (prior plus divergence integral)."""
        return sde.prior_logp(end[0].reshape(shape)) + end[1]

    def measured(end):
        """``(B,)`` bits/dim, the solve ending in state ``end`` minus the reference."""
        return (reference - logp_of(end)).double() / nats_per_bpd

    def value(e):
        """The criterion of ``(B,)`` per-sample errors in bits/dim (for "mean", with two standard errors)."""
        if criterion == "rms":
            return e.pow(2).mean().sqrt().item()
        return e.mean().abs().item() + (2 * e.std() / math.sqrt(b)).item() if b > 1 else e.abs().item()

    def evaluate(grid, first_stale=0, states=None, errors=None):
        """States at the grid points and per-step error estimates ``(N, B)`` nats, recomputed from step
        ``first_stale`` on (the earlier ones are kept); the estimate's root mean square in bits/dim; the
        per-sample errors ``(B,)`` in bits/dim that decide (measured, or else estimated)."""
        states = states or [state0]
        errors = errors or []
        del states[first_stale + 1:], errors[first_stale:]
        path = solve(states[first_stale], grid[first_stale:])
        states += [(path[0][k], path[1][k]) for k in range(1, len(grid) - first_stale)]
        errors += [step_error(i, states[i], grid) for i in range(first_stale, len(grid) - 1)]
        per_step = torch.stack(errors).double()
        estimated = -per_step.sum(0) / nats_per_bpd  # a log p too high is too few bits/dim
        e = measured(states[-1]) if reference is not None else estimated
        return states, errors, per_step, estimated.pow(2).mean().sqrt().item(), e

    def measure_grid(grid):
        path = solve(state0, grid)
        return measured((path[0][-1], path[1][-1]))

    with torch.no_grad(), _frozen(score_fn):
        if measure:
            ref = odeint(flow, state0, torch.tensor([flow.u0, flow.u1], dtype=dt, device=x.device),
                         rtol=reference_tol, atol=reference_tol, method="dopri5")
            reference = logp_of((ref[0][-1], ref[1][-1]))
        # 1. halve the worst step until the error meets the target
        states, errors, per_step, estimate, e = evaluate(grid)
        while value(e) > target and len(grid) - 1 < max_steps:
            worst = int(per_step.pow(2).mean(1).argmax())
            grid.insert(worst + 1, (grid[worst] + grid[worst + 1]) / 2)
            states, errors, per_step, estimate, e = evaluate(grid, worst, states, errors)
        # 2. move the points so that every step carries the same estimated error (twice, each time from the
        #    new estimates): first with as many steps, kept if better, then with one step fewer at a time while
        #    the target holds; bisection leaves steps of uneven error. 3. with a reference, a grid with one step
        #    fewer that misses the target gets its points optimised against the measured error.
        n = len(grid) - 1
        while value(e) <= target and n >= 1:
            trial, trial_steps, accepted = grid, per_step, False
            for _ in range(2):
                trial = _equidistribute(trial, trial_steps, n, order)
                *_, trial_steps, trial_estimate, trial_e = evaluate(trial)
                if value(trial_e) <= target and (n < len(grid) - 1 or value(trial_e) < value(e)):
                    grid, per_step, estimate, e, accepted = trial, trial_steps, trial_estimate, trial_e, True
                    break
            if not accepted and n < len(grid) - 1 and reference is not None and optimizer_evals > 0 and n > 1:
                trial = _optimize_grid(trial, measure_grid, optimizer_evals)
                *_, trial_steps, trial_estimate, trial_e = evaluate(trial)
                if value(trial_e) <= target:
                    grid, per_step, estimate, e, accepted = trial, trial_steps, trial_estimate, trial_e, True
            if not accepted and n < len(grid) - 1:
                break
            n = len(grid) - 2
    times = flow.to_t(torch.tensor(grid, dtype=torch.float64))
    times[0], times[-1] = eps, sde.T
    sch = LikelihoodSchedule(
        times=times, method=method, time_variable=time_variable, target=target, criterion=criterion,
        estimated_error=estimate, num_calibration_samples=b,
        measured_rms_error=e.pow(2).mean().sqrt().item() if reference is not None else None,
        measured_mean_error=e.mean().item() if reference is not None else None)
    return sch, value(e)


def _optimize_grid(grid: list[float], errors_of: Callable[[list[float]], torch.Tensor], max_evals: int) -> list[float]:
    """Move the interior points of ``grid`` (ends fixed) to minimise the root mean square of
    ``errors_of(grid)`` ``(B,)``, by Nelder-Mead (scipy) over the logarithms of the first N - 1 step widths
    relative to the last (no redundant direction), from a simplex of 10 % changes in width, at most
    ``max_evals`` evaluations; returns the best grid found (the start if nothing was better)."""
    from scipy.optimize import minimize

    a, c = grid[0], grid[-1]

    def grid_of(p):
        w = np.exp(np.append(p, 0.0))
        inner = a + (c - a) * np.cumsum(w)[:-1] / w.sum()
        return [a, *inner.tolist(), c]

    def rms(p):
        return errors_of(grid_of(p)).pow(2).mean().sqrt().item()

    w = np.diff(np.asarray(grid, dtype=np.float64))
    start = np.log(w[:-1] / w[-1])
    simplex = np.vstack([start, start + 0.1 * np.eye(len(start))])
    best = minimize(rms, start, method="Nelder-Mead",
                    options={"maxfev": max_evals, "initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-7})
    return grid_of(best.x)  # Nelder-Mead keeps the best point it evaluated, the start among them


@contextlib.contextmanager
def _frozen(module):
    """Switch off parameter gradients while the divergence's backward passes only need d/dx: the forward
    pass then records no graph for the weights."""
    params = [p for p in module.parameters() if p.requires_grad] if isinstance(module, torch.nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _split(state: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    return state[:, :d], state[:, d]


def _mixed_norm(d: int):
    """Per-sample error norm: the larger of the RMS over the D positions and the log-density's own error, so
    that the one log-density entry is not averaged away among D positions (as torchdiffeq's tuple norm)."""

    def norm(e: torch.Tensor) -> torch.Tensor:
        return torch.maximum(e[:, :d].pow(2).mean(1).sqrt(), e[:, d].abs())

    return norm


def _solve_per_sample(dynamics, state0: torch.Tensor, u_grid: torch.Tensor, *, rtol: float, atol: float,
                      method: str) -> torch.Tensor:
    """Integrate ``(B, F)`` states over ``u_grid`` ``(N,)`` with torchode, returning ``(N, B, F)``: each sample
    keeps its own step size, so its answer does not depend on the other members of the batch (torchode;
    Lienen & Günnemann 2022)."""
    import torchode

    methods = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5}
    if method not in methods:
        raise ValueError(f"solver='torchode' takes method in {sorted(methods)}, got {method!r}.")
    b = state0.shape[0]
    term = torchode.ODETerm(dynamics)
    controller = torchode.IntegralController(atol=atol, rtol=rtol, term=term, norm=_mixed_norm(state0.shape[1] - 1))
    adjoint = torchode.AutoDiffAdjoint(methods[method](term=term), controller)
    grid = u_grid.to(state0).expand(b, -1)
    problem = torchode.InitialValueProblem(y0=state0, t_start=grid[:, 0], t_end=grid[:, -1], t_eval=grid)
    sol = adjoint.solve(problem)
    if (sol.status != 0).any():
        raise RuntimeError(f"the ODE solver failed for {(sol.status != 0).sum().item()} of {b} samples "
                           f"(torchode status {sol.status.tolist()}); loosen rtol/atol or check the model.")
    return sol.ys.transpose(0, 1)


@dataclass
class BoundResult:
    """Result of :func:`likelihood_bound`; all values ``(B,)`` in nats.

    Attributes:
        nll: the upper bound on ``-log p(x)``.
        stderr: Monte Carlo standard error of ``nll`` (the time points are stratified, so this is conservative).
        prior_term: ``E[-log pi(x_T)]``, ``x_T ~ p_0T(.|x)`` (closed form).
        diffusion_term: the time integral over [eps, T].
        decoder_term: ``E[-log N(x; mean, var)] - H(p_0eps(.|x))`` for [0, eps].
    """

    nll: torch.Tensor
    stderr: torch.Tensor
    prior_term: torch.Tensor
    diffusion_term: torch.Tensor
    decoder_term: torch.Tensor


def likelihood_bound(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    eps: float = 1e-5,
    num_time_points: int = 1000,
    num_decoder_samples: int = 16,
    generator: torch.Generator | None = None,
    batch_points: int = 4096,
) -> BoundResult:
    """Upper bound on ``-log p(x)`` for data ``x`` at time 0 (MLE paper, Thm. 3, denoising form).

    ``-log p(x) <= prior + diffusion + decoder`` with

    * prior ``= E[-log pi(x_T)]``, ``x_T ~ N(alpha_T x, sigma_T^2 I)``, in closed form;
    * diffusion ``= 1/2 int_eps^T E[g^2 ||s - grad log p_0t||^2 - g^2 ||grad log p_0t||^2 - 2 div f] dt``
      with ``grad log p_0t(x_t|x) = -z / sigma_t``. The first term is estimated with ``t`` drawn from the
      proposal ``q(t)`` proportional to ``g^2/sigma^2`` (uniform for VE, where that ratio is constant),
      stratified over ``num_time_points`` strata, which turns it into ``Z ||sigma_t s + z||^2 / 2``; the other
      two are integrated in closed form: ``-D Z / 2`` and ``-D log(alpha_T / alpha_eps)``;
    * decoder ``= E_{x_eps}[-log N(x; (x_eps + sigma^2 s(x_eps, eps)) / alpha, (sigma/alpha)^2 I)]
      - H(N(alpha x, sigma^2 I))`` at ``t = eps``: the variational step from ``p_eps`` back to data
      (Tweedie's mean as decoder).

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        sde: any :mod:`scorezoo.sde` SDE.
        x: ``(B, *S)`` data in the model's data space.
        eps: time truncation in (0, T).
        num_time_points: Monte Carlo time points per sample.
        num_decoder_samples: draws of ``x_eps`` per sample for the decoder term.
        generator: source of the time points and noises.
        batch_points: how many (sample, time) pairs go through the network at once.

    Returns:
        :class:`BoundResult`, values ``(B,)`` in nats.

    Raises:
        ValueError: bad ``x``, ``eps`` outside (0, T), or ``num_time_points < 1``.
    """
    _check_x(x)
    sde._check_eps(eps)
    if num_time_points < 1 or num_decoder_samples < 1:
        raise ValueError("num_time_points and num_decoder_samples must be >= 1.")
    b, d = x.shape[0], x[0].numel()
    dev, dt = x.device, x.dtype
    gdev = generator.device if generator is not None else dev
    x = x.detach()

    # prior term, closed form: E||x_T||^2 = alpha_T^2 ||x||^2 + sigma_T^2 D
    tT = torch.tensor([sde.T], dtype=torch.float64)
    a_T, s_T = (v.item() for v in sde.alpha_sigma(tT))
    s_p2 = sde.prior_std() ** 2
    sq = x.flatten(1).pow(2).sum(1).double()
    prior_term = 0.5 * d * math.log(2 * math.pi * s_p2) + (a_T**2 * sq + s_T**2 * d) / (2 * s_p2)

    # diffusion term: stratified importance-sampled time for the score term
    n = num_time_points
    u = (torch.arange(n, dtype=torch.float64).repeat(b) + torch.rand(b * n, generator=generator,
                                                                        device=gdev, dtype=torch.float64).cpu()) / n
    t_all, w_all = sde.sample_importance_weighted_time(b * n, eps, u=u, device=dev)
    idx_all = torch.arange(b, device=dev).repeat_interleave(n)
    vals = torch.empty(b * n, dtype=torch.float64, device=dev)
    with torch.no_grad():
        for sl in torch.arange(b * n, device=dev).split(batch_points):
            t, w, xi = t_all[sl].to(dt), w_all[sl].double(), x[idx_all[sl]]
            z = torch.randn(xi.shape, generator=generator, device=gdev, dtype=dt).to(dev)
            alpha, sigma = sde.alpha_sigma(t)
            xt = _bcast(alpha, xi) * xi + _bcast(sigma, xi) * z
            s = score_fn(xt, t)
            g2_over_s2 = (sde.diffusion(t) ** 2 / sigma**2).double()
            vals[sl] = 0.5 * w * g2_over_s2 * (_bcast(sigma, xi) * s + z).flatten(1).pow(2).sum(1).double()
    vals = vals.view(b, n)
    z_norm = sde.importance_normalizer(eps)
    a_eps, s_eps = (v.item() for v in sde.alpha_sigma(torch.tensor([eps], dtype=torch.float64)))
    const = -0.5 * d * z_norm - d * math.log(a_T / a_eps)
    diffusion_term = vals.mean(1) + const
    stderr = vals.std(1) / math.sqrt(n) if n > 1 else torch.full((b,), float("nan"), dtype=torch.float64)

    # decoder term at eps (Tweedie mean), minus the entropy of p_0eps(.|x)
    m = num_decoder_samples
    with torch.no_grad():
        xr = x.repeat_interleave(m, 0)
        z = torch.randn(xr.shape, generator=generator, device=gdev, dtype=dt).to(dev)
        te = torch.full((b * m,), eps, dtype=dt, device=dev)
        x_eps = a_eps * xr + s_eps * z
        s = torch.cat([score_fn(x_eps[sl], te[sl]) for sl in torch.arange(b * m, device=dev).split(batch_points)])
        mean = (x_eps + s_eps**2 * s) / a_eps
        var = (s_eps / a_eps) ** 2
        nll_dec = 0.5 * d * math.log(2 * math.pi * var) + (xr - mean).flatten(1).pow(2).sum(1).double() / (2 * var)
    entropy = 0.5 * d * math.log(2 * math.pi * math.e * s_eps**2)
    decoder_term = nll_dec.view(b, m).mean(1) - entropy

    nll = prior_term + diffusion_term + decoder_term
    return BoundResult(nll=nll.to(dt), stderr=stderr.to(dt), prior_term=prior_term.to(dt),
                       diffusion_term=diffusion_term.to(dt), decoder_term=decoder_term.to(dt))


def bits_per_dim(
    logp: torch.Tensor,
    dim: int,
    *,
    num_levels: int,
    data_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Bits/dim of integer data from the log-density of its uniformly dequantized image.

    For integer data ``k`` with ``num_levels`` levels mapped by ``x = lo + (hi - lo)(k + u)/K``,
    ``u ~ U[0,1)^D`` (Theis et al. 2016; Ho et al. 2019, Sec. 3.1),
    ``-log P(k) <= -E_u[log p_X(x)] - D log((hi - lo)/K)``, so
    ``bpd = (-log p_X(x) - log|det dx/du|) / (D ln 2)``. For [-1, 1] and K = 256 the offset is
    ``log2(256 / 2) = 7`` bits; a uniform density on the data range gives exactly ``log2 K``.

    Args:
        logp: ``(B,)`` log p_X(x) in nats of the dequantized points.
        dim: D, the number of dimensions per sample.
        num_levels: K, the number of integer levels per dimension.
        data_range: ``(lo, hi)`` of the model's data space.

    Returns:
        ``(B,)`` bits/dim (an upper bound, per dequantization draw, on the discrete data's bits/dim).
    """
    log_jac = dequantization_log_jacobian(dim, num_levels=num_levels, data_range=data_range)
    return -(logp + log_jac) / (dim * math.log(2))
