"""Exact log-likelihoods ``log p_eps(x)`` by the probability-flow ODE (Song et al. ICLR 2021, eq. 39).

The ODE and its divergence integral (:mod:`scorezoo.likelihood.flow`) are solved jointly from ``eps`` to ``T``
by torchdiffeq (one step size for the batch, any of its methods), torchode (a step size per sample) or scorezoo's
multistep exponential integrators (:mod:`scorezoo.likelihood.multistep`), adaptively or on the fixed steps of a
calibrated :class:`~scorezoo.likelihood.schedule.LikelihoodSchedule`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields

import torch

from ..sde import SDE
from ..utils import Generators, ScoreFn, check_batch, check_generator
from .divergence import check_divergence, draw_probes
from .flow import LogDensityODE, ProbabilityFlow
from .solvers import DEFAULT_TOL, SolverSettings, adaptive_methods, fixed_methods, solve  # noqa: F401 (DEFAULT_TOL)

__all__ = ["log_likelihood", "LikelihoodResult", "SOLVER_OPTIONS", "FIXED_STEP_METHODS", "ADAPTIVE_METHODS",
           "frozen_weights", "short_repr"]

#: the keyword arguments of :func:`log_likelihood` that choose the solver (:meth:`SolverSettings.create`)
SOLVER_OPTIONS = ("schedule", "method", "rtol", "atol", "options", "step_size", "solver", "time_variable")
#: fixed-step methods of :data:`~scorezoo.likelihood.solvers.SOLVERS` (they step along the time grid, or by
#: ``options={"step_size": h}``)
FIXED_STEP_METHODS = fixed_methods()
#: adaptive methods of :data:`~scorezoo.likelihood.solvers.SOLVERS`
ADAPTIVE_METHODS = adaptive_methods()


def short_repr(obj) -> str:
    """``Name(field=..., ...)`` of a dataclass with tensors shown by shape (and their mean when small), so that
    printing a result does not dump whole tensors."""
    parts = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if torch.is_tensor(v):
            v = (f"tensor({v.tolist()})" if v.numel() <= 4 and v.dim() <= 1 else
                 f"tensor(shape={tuple(v.shape)}{f', mean={v.double().mean().item():.6g}' if v.numel() else ''})")
        else:
            v = repr(v)
        parts.append(f"{f.name}={v}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(repr=False)
class LikelihoodResult:
    """Result of :func:`log_likelihood`.

    Attributes:
        logp: ``(B,)`` log p_eps(x) in nats = ``prior_logp + delta_logp``.
        prior_logp: ``(B,)`` log pi(x_T) in nats at the ODE's end point.
        delta_logp: ``(B,)`` integral of the drift's divergence from eps to T, in nats.
        nfe: number of ODE function evaluations (each is one score evaluation of every sample of the batch).
        z: ``(B, *S)`` the end point x_T of the ODE.
        times: ``(N,)`` the times the path is reported at (``times=``, or a schedule's steps), else ``None``.
        delta_logp_path: ``(N, B)`` the divergence integral from eps to each of ``times`` (nats), else ``None``;
            its value at T is ``delta_logp``.
        logp_per_dim: ``(B, *S)`` with ``per_dimension=True``: ``log p_eps(x)`` split over dimensions (the prior's
            log-density of each coordinate of x_T plus that dimension's divergence integral), summing to ``logp``;
            else ``None``.
    """

    logp: torch.Tensor
    prior_logp: torch.Tensor
    delta_logp: torch.Tensor
    nfe: int
    z: torch.Tensor
    times: torch.Tensor | None = None
    delta_logp_path: torch.Tensor | None = None
    logp_per_dim: torch.Tensor | None = None

    __repr__ = short_repr


@contextlib.contextmanager
def frozen_weights(module):
    """Switch off parameter gradients while the divergence's backward passes only need d/dx: the forward pass
    then records no graph for the weights."""
    params = [p for p in module.parameters() if p.requires_grad] if isinstance(module, torch.nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _check_times(times, eps: float, T: float) -> torch.Tensor:
    times = torch.as_tensor(times, dtype=torch.float64).flatten().cpu()
    slack = 1e-6 * eps  # a float32 eps rounds below the float64 one
    if len(times) == 0 or (times.diff() <= 0).any() or times[0] < eps - slack or times[-1] > T + slack:
        raise ValueError(f"times must be increasing within [eps, T] = [{eps:g}, {T:g}].")
    return times.clamp(eps, T)


def log_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    eps: float = 1e-5,
    settings: SolverSettings | None = None,
    times: torch.Tensor | None = None,
    divergence: str = "hutchinson",
    probe: str | None = None,
    num_probes: int | None = None,
    generator: Generators = None,
    network_batch_size: int | None = None,
    per_dimension: bool = False,
    **solver_options,
) -> LikelihoodResult:
    """``log p_eps(x)`` under the probability-flow ODE (Song et al. ICLR 2021, eq. 39), in nats.

    Integrates ``x`` and the divergence integral jointly from ``eps`` to ``T``:
    ``log p_eps(x) = log pi(x_T) + int_eps^T div[f(t) x - g(t)^2 s(x, t) / 2] dt``, where ``div f = D f(t)`` is
    analytic and only ``div s`` is computed (``divergence="exact"``) or estimated (``"hutchinson"``, the default:
    unbiased, one backward pass per probe). Hutchinson probes are drawn once per solve from ``generator`` and held
    fixed along the path (FFJORD; Grathwohl et al. 2019, Sec. 3.1): the same seed gives the same answer. The
    answer is exact up to the solver's error with the exact divergence, and an unbiased estimate of it with
    Hutchinson's (a single 8×8 digit's one-probe estimate varies by about 0.13 bits/dim between probes).

    Args:
        score_fn: ``score_fn(x: (B, *S), t: (B,)) -> (B, *S)``.
        sde: the forward SDE.
        x: ``(B, *S)`` points in the model's data space, read as samples at time ``eps``.
        eps: start time, in (0, T) (Song et al. use 1e-5 for VP likelihoods).
        settings: how to solve, a :class:`~scorezoo.likelihood.solvers.SolverSettings`; or give its options as
            keyword arguments (``solver_options`` below), not both.
        times: increasing times in [eps, T] at which to report the accumulated divergence integral
            (``delta_logp_path``), e.g. to plot the log-density along ODE time; fixed-step methods step along them.
        divergence: ``"hutchinson"`` or ``"exact"`` (D backward passes per evaluation, batched).
        probe, num_probes: Hutchinson probes, ``"rademacher"`` (default) or ``"gaussian"``, and how many are averaged
            per evaluation (default 1); not with ``divergence="exact"``.
        generator: draws the probes: one generator for the batch, or a list of B generators, one per sample, so
            that each sample's probes (and so its answer with a schedule) do not depend on its batch mates.
        network_batch_size: exact divergence only: at most this many samples through the network at once (the name
            ``max_batch_size`` of scorezoo 0.1 still works).
        per_dimension: also return ``logp_per_dim`` ``(B, *S)`` (see :class:`LikelihoodResult`), e.g. a map of where
            an image's bits go; with Hutchinson's divergence each term is an unbiased estimate.
        solver_options: the solver (:meth:`SolverSettings.create <scorezoo.likelihood.solvers.SolverSettings.create>`
            checks them together):

            * ``schedule``: a :class:`~scorezoo.likelihood.schedule.LikelihoodSchedule` (from
              :func:`~scorezoo.likelihood.schedule.calibrate_schedule`): fixed steps, ``schedule.nfe`` evaluations,
              each sample's answer independent of its batch mates; the path is reported at its steps. It fixes the
              solve, so nothing else of the solver and no ``times`` may be given with it.
            * ``method``: a name of :data:`~scorezoo.likelihood.solvers.SOLVERS` (default ``"dopri5"``): adaptive
              (:data:`ADAPTIVE_METHODS`) or fixed-step (:data:`FIXED_STEP_METHODS`, which need ``times`` or a
              ``step_size``).
            * ``rtol``, ``atol``: tolerances of an adaptive method (default 1e-5 each; on ``x`` and on the
              log-density).
            * ``step_size`` (or ``options={"step_size": h}``): a fixed-step method's step.
            * ``solver``: the ODE library, ``"torchode"`` (the default where it has the method: a step size per
              sample, so a sample's answer does not depend on its batch mates beyond float rounding) or
              ``"torchdiffeq"`` (one step size for the batch; every Runge-Kutta method); ``"scorezoo"`` for the
              multistep methods ``"dpmpp2m"`` and ``"dpmpp3m"``, one evaluation per step,
              :mod:`scorezoo.likelihood.multistep`).
            * ``time_variable``: integrate in ``"t"`` (default; ``"log_rho"``, the only one, for the multistep
              methods), ``"rho"`` or ``"log_rho"`` (see
              :mod:`scorezoo.likelihood.flow`).

    Returns:
        :class:`LikelihoodResult` with ``logp`` ``(B,)`` in nats.

    Raises:
        ValueError: bad ``x`` (not a float tensor, no batch dimension, empty, NaN/inf), ``eps`` outside (0, T), a
            schedule made for another ``eps``, unknown options, or arguments that conflict (see above).
        RuntimeError: the solver failed (torchode reports which samples).
    """
    if "max_batch_size" in solver_options:  # its name in scorezoo 0.1, when it was the only batch size here
        network_batch_size = solver_options.pop("max_batch_size")
    check_batch(x)
    probe, num_probes = check_divergence(divergence, probe, num_probes)
    eps = sde.check_eps(eps)
    check_generator(generator, len(x))
    if times is not None:
        times = _check_times(times, eps, sde.T)
    settings = solver_settings(settings, solver_options, eps, sde.T, has_times=times is not None)
    schedule, time_variable = settings.schedule, settings.time_variable
    if schedule is not None and times is not None:
        raise ValueError("a calibrated schedule reports the path at its own steps: drop times=.")
    shape, dt = x.shape, x.dtype
    probes = draw_probes(x, probe, num_probes, generator) if divergence == "hutchinson" else None
    ode = LogDensityODE(ProbabilityFlow(score_fn, sde), shape, eps, time_variable, probes=probes,
                        network_batch_size=network_batch_size, per_dimension=per_dimension, dtype=dt, device=x.device)

    # the solver's grid: its ends, plus the schedule's steps or the times asked for
    if schedule is not None:
        times = schedule.times.clamp(eps, sde.T)
    u_grid = torch.tensor([ode.u0, ode.u1], dtype=torch.float64)
    if times is not None:
        u_times = ode.to_u(times).clamp(ode.u0, ode.u1)
        u_grid = torch.unique(torch.cat([u_grid, u_times]))
    state0 = ode.initial_state(x)
    with torch.no_grad(), frozen_weights(score_fn):
        if settings.backend == "scorezoo":
            from .multistep import MULTISTEP_METHODS, multistep_solve

            # as torchdiffeq's fixed-step methods: steps of step_size from u0 (the last one shorter), the times
            # asked for reported from within the steps; without a step size, steps along the grid
            steps = u_grid if settings.step_size is None else _step_grid(ode.u0, ode.u1, settings.step_size)
            ys, deltas = multistep_solve(ode, state0, steps, MULTISTEP_METHODS[settings.method], report=u_grid)
        elif settings.backend == "torchdiffeq":
            # a tuple state, so that torchdiffeq's mixed norm controls the log-density on its own
            ys, deltas = solve(ode, state0, u_grid.to(dt).to(x.device), method=settings.method,
                               backend="torchdiffeq", rtol=settings.rtol, atol=settings.atol,
                               step_size=settings.step_size)
        else:
            ys, deltas = _solve_per_sample(ode, state0, u_grid, settings)
    ends = torch.tensor([ode.u1], dtype=torch.float64)
    z, delta = (v[0] for v in ode.to_data(ends, ys[-1:], deltas[-1:]))
    delta_path = None
    if times is not None:
        idx = torch.searchsorted(u_grid, u_times).to(x.device)
        _, delta_path = ode.to_data(u_times, ys[idx], deltas[idx])
        delta_path = delta_path.flatten(2).sum(2) if per_dimension else delta_path
    logp_per_dim = None
    if per_dimension:
        # pi is isotropic: its log-density splits over dimensions as that of each coordinate alone
        logp_per_dim = sde.prior_logp(z.reshape(-1, 1)).view_as(z) + delta
        delta = delta.flatten(1).sum(1)
    prior = sde.prior_logp(z)
    return LikelihoodResult(logp=prior + delta, prior_logp=prior, delta_logp=delta, nfe=ode.nfe, z=z,
                            times=None if times is None else times.to(dt), delta_logp_path=delta_path,
                            logp_per_dim=logp_per_dim)


def _step_grid(u0: float, u1: float, step_size: float) -> torch.Tensor:
    """Float64 points ``u0, u0 + h, ...`` below ``u1``, then ``u1`` (as torchdiffeq's fixed-step grid)."""
    n = max(1, math.ceil((u1 - u0) / step_size - 1e-9))
    return torch.tensor([u0 + k * step_size for k in range(n)] + [u1], dtype=torch.float64)


def _mixed_norm(d: int):
    """Per-sample error norm: the larger of the RMS over the D positions and the RMS of the log-density part, so
    that the log-density is not averaged away among D positions (as torchdiffeq's norm of a tuple state)."""

    def norm(e: torch.Tensor) -> torch.Tensor:
        return torch.maximum(e[:, :d].pow(2).mean(1).sqrt(), e[:, d:].pow(2).mean(1).sqrt())

    return norm


def _solve_per_sample(ode: LogDensityODE, state0: tuple[torch.Tensor, torch.Tensor], u_grid: torch.Tensor,
                      settings: SolverSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the ODE over ``u_grid`` ``(N,)`` with torchode, each sample with its own step size, so that its
    answer does not depend on the other members of the batch (torchode; Lienen & Günnemann 2022). Returns the
    positions ``(N, B, D)`` and divergence integrals ``(N, B)`` or ``(N, B, D)``."""
    d = ode.d
    flat0 = torch.cat([state0[0], state0[1].reshape(ode.b, -1)], 1)

    def dynamics(u, st):  # torchode integrates one (B, D + 1) or (B, 2D) tensor
        dy, ddelta = ode(u, (st[:, :d], st[:, d:] if ode.per_dimension else st[:, d]))
        return torch.cat([dy, ddelta.reshape(ode.b, -1)], 1)

    path = solve(dynamics, flat0, u_grid, method=settings.method, backend="torchode", rtol=settings.rtol,
                 atol=settings.atol, norm=_mixed_norm(d))
    return path[..., :d], path[..., d:] if ode.per_dimension else path[..., d]


def solver_settings(settings: SolverSettings | None, options: dict, eps: float, T: float, *,
                    has_times: bool = False) -> SolverSettings:
    """``settings``, or the :class:`SolverSettings` of the keyword ``options`` of :func:`log_likelihood` (a
    ``schedule`` checked against ``eps`` and ``T``).

    Raises:
        ValueError: both given, an unknown option, or options that conflict.
    """
    unknown = sorted(set(options) - set(SOLVER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; the solver takes {', '.join(SOLVER_OPTIONS)}.")
    if settings is not None:
        if any(v is not None for v in options.values()):
            raise ValueError(f"give the solver as settings= or as options ({', '.join(sorted(options))}), not both.")
        return settings
    options = dict(options)
    if options.get("schedule") is not None:
        from .schedule import check_schedule

        options["schedule"] = check_schedule(options["schedule"], eps, T)
    backend = options.pop("solver", None)
    return SolverSettings.create(backend=backend, has_times=has_times, **options)
