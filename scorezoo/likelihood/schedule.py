"""Calibrated fixed-step schedules for fast, batch-independent likelihoods.

A :class:`LikelihoodSchedule` is a short list of fixed steps for the probability-flow ODE, placed once per model by
:func:`calibrate_schedule` on data like the data to be scored, so that the log-likelihood's discretisation error is at
most a target in bits/dim. Scoring then costs ``schedule.nfe`` evaluations, and each sample's answer is independent of
its batch mates (no step depends on the data).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..sde import SDE
from ..utils import ScoreFn, check_batch, check_generator, is_int, is_real
from .divergence import check_divergence, draw_probes
from .flow import LogDensityODE, ProbabilityFlow
from .multistep import MULTISTEP_METHODS, multistep_solve, optimize_warp, warped_grid
from .ode import frozen_weights
from .solvers import SOLVERS, solve

__all__ = ["LikelihoodSchedule", "calibrate_schedule", "check_schedule", "FIXED_METHODS", "CRITERIA"]

#: the fixed-step methods of :data:`~scorezoo.likelihood.solvers.SOLVERS` a schedule can use, with their orders: the
#: Runge-Kutta methods whose stages equal their order, and the multistep exponential integrators (one evaluation per
#: step, :mod:`scorezoo.likelihood.multistep`)
FIXED_METHODS = {n: s.order for n, s in SOLVERS.items()
                 if not s.adaptive and (s.stages == s.order or n in MULTISTEP_METHODS)}
#: what a calibration target bounds: each sample's error (root mean square) or the error of the mean
CRITERIA = ("rms", "mean")


@dataclass
class LikelihoodSchedule:
    """A fixed step schedule for :func:`~scorezoo.likelihood.ode.log_likelihood`, made by :func:`calibrate_schedule`.

    The solve takes one step of the fixed-step ``method`` per interval of ``times``, integrating in
    ``time_variable``; it costs ``num_steps * stages`` network evaluations (each a forward and one backward
    pass per Hutchinson probe) whatever the batch, and since no step depends on the data the answer of
    each sample does not depend on its batch mates.

    Attributes:
        times: ``(N + 1,)`` float64 times from ``eps`` to ``T``, increasing.
        method: a torchdiffeq fixed-step method (``"rk4"``, ``"heun3"``, ``"midpoint"``, ``"heun2"``, ``"euler"``),
            or a multistep exponential integrator (``"dpmpp3m"``, ``"dpmpp2m"``; one evaluation per step, in
            ``"log_rho"``; :mod:`scorezoo.likelihood.multistep`).
        time_variable: ``"log_rho"`` or ``"t"`` (see :func:`~scorezoo.likelihood.ode.log_likelihood`).
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
        target_met: whether the calibration met its target (``False`` when ``max_steps`` stopped it above the
            target), or ``None`` for a schedule made by hand.

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
    target_met: bool | None = None

    def __post_init__(self):
        try:
            self.times = torch.as_tensor(self.times, dtype=torch.float64).flatten().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"a schedule's times must be a list of numbers, got {self.times!r:.60}.") from None
        for name in ("target", "estimated_error", "measured_rms_error", "measured_mean_error"):
            v = getattr(self, name)
            signed = name == "measured_mean_error"
            if v is not None and not (is_real(v) and math.isfinite(v) and (signed or v >= 0)):
                raise ValueError(f"a schedule's {name} must be a finite number{'' if signed else ' >= 0'} or None, "
                                 f"got {v!r}.")
        if self.criterion not in CRITERIA:
            raise ValueError(f"a schedule's criterion must be one of {CRITERIA}, got {self.criterion!r}.")
        if self.target_met is not None and not isinstance(self.target_met, bool):
            raise ValueError(f"a schedule's target_met must be True, False or None, got {self.target_met!r}.")
        if not isinstance(self.num_calibration_samples, int) or self.num_calibration_samples < 0:
            raise ValueError(f"num_calibration_samples must be an int >= 0, got {self.num_calibration_samples!r}.")
        if self.method not in FIXED_METHODS:
            raise ValueError(f"a schedule's method must be one of {sorted(FIXED_METHODS)}, got {self.method!r}.")
        if self.time_variable not in ("t", "log_rho"):
            raise ValueError(f"a schedule's time_variable must be 't' or 'log_rho', got {self.time_variable!r}.")
        if self.method in MULTISTEP_METHODS and self.time_variable != "log_rho":
            raise ValueError(f"{self.method!r} steps in log rho: a schedule with it needs time_variable 'log_rho'.")
        if len(self.times) < 2 or not torch.isfinite(self.times).all() or (self.times.diff() <= 0).any():
            raise ValueError("a schedule's times must be at least two finite, increasing times from eps to T.")

    @property
    def eps(self) -> float:
        """The start time (the likelihood's time truncation)."""
        return self.times[0].item()

    @property
    def num_steps(self) -> int:
        """Steps of one solve."""
        return len(self.times) - 1

    @property
    def nfe(self) -> int:
        """Network evaluations of one solve: steps times the method's stages (one per step for a multistep
        method)."""
        return self.num_steps * SOLVERS[self.method].stages

    def to_dict(self) -> dict:
        """A JSON-able dict (the ``likelihood_schedule`` entry of a pipeline config)."""
        return {"times": self.times.tolist(), "method": self.method, "time_variable": self.time_variable,
                "target": self.target, "criterion": self.criterion, "estimated_error": self.estimated_error,
                "measured_rms_error": self.measured_rms_error, "measured_mean_error": self.measured_mean_error,
                "num_calibration_samples": self.num_calibration_samples,
                "target_met": self.target_met}

    @classmethod
    def from_dict(cls, d: dict) -> "LikelihoodSchedule":
        """Inverse of :meth:`to_dict`. Raises ValueError on a malformed dict."""
        if not isinstance(d, dict) or "times" not in d:
            raise ValueError("a likelihood schedule must be a dict with 'times'.")
        known = {"times", "method", "time_variable", "target", "criterion", "estimated_error", "measured_rms_error",
                 "measured_mean_error", "num_calibration_samples", "target_met"}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, RuntimeError) as e:
            raise ValueError(f"malformed likelihood schedule: {e}") from None


def check_schedule(schedule, eps: float, T: float) -> LikelihoodSchedule:
    """A :class:`LikelihoodSchedule` (or its dict) checked against the likelihood's ``eps`` and the SDE's ``T``.

    Raises:
        ValueError: not a schedule, or one that starts at another eps or ends elsewhere than T.
    """
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
    probe: str | None = None,
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
        method: a fixed-step method, one of ``FIXED_METHODS``: a Runge-Kutta method (steps placed as above), or a
            multistep exponential integrator ``"dpmpp3m"``/``"dpmpp2m"`` (one evaluation per step; its grids are
            uniform in log rho, one step more at a time until the measured error meets the target, then one step
            fewer at a time on a two-parameter family of grids fitted by Nelder-Mead while it holds; needs
            ``measure``).
        time_variable: ``"log_rho"`` (the default: the steps of a VP model's ODE are then nearly even) or ``"t"``.
        initial_steps, max_steps: the schedule's first and largest number of steps.
        measure: measure the error against a reference solve (above); costs one tight adaptive solve of ``x``
            plus up to ``optimizer_evals`` schedule solves per step count tried.
        reference_tol: the reference solve's rtol and atol (> 0).
        optimizer_evals: the Nelder-Mead budget per step count (0: equidistribution only).
        divergence, probe, generator: as for :func:`~scorezoo.likelihood.ode.log_likelihood`.

    Returns:
        :class:`LikelihoodSchedule` with its estimated and (with ``measure``) measured errors, and ``target_met``
        (``False`` when ``max_steps`` stopped it above the target).

    Raises:
        ValueError: bad ``x``, ``eps``, ``target``, ``criterion``, ``reference_tol``, ``optimizer_evals``, step
            counts, method or time variable.

    Warns:
        UserWarning: fewer than 8 points, or ``max_steps`` reached above the target.
    """
    check_batch(x)
    probe, _ = check_divergence(divergence, probe, None if divergence == "exact" else 1)
    check_generator(generator, len(x))
    if not is_real(eps):
        raise ValueError(f"eps must be a number in (0, T), got {eps!r}.")
    eps = sde.check_eps(float(eps))
    if not (is_real(target) and 0 < float(target) < math.inf):
        raise ValueError(f"target must be a finite number > 0 (bits/dim), got {target!r}.")
    target = float(target)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    if not isinstance(measure, (bool, np.bool_)):
        raise ValueError(f"measure must be True or False, got {measure!r}.")
    if not (is_real(reference_tol) and 0 < float(reference_tol) < math.inf):
        raise ValueError(f"reference_tol must be a finite number > 0, got {reference_tol!r}.")
    if not is_int(optimizer_evals) or optimizer_evals < 0:
        raise ValueError(f"optimizer_evals must be an int >= 0, got {optimizer_evals!r}.")
    if not (is_int(initial_steps) and is_int(max_steps)):
        raise ValueError(f"initial_steps and max_steps must be ints, got {initial_steps!r} and {max_steps!r}.")
    if x.shape[0] < 8:
        warnings.warn(f"calibrating on {x.shape[0]} point(s): the error is a root mean square or mean over the "
                      "points, so 16 to 64 points like the data to be scored give a more trustworthy schedule.",
                      stacklevel=2)
    if method not in FIXED_METHODS:
        raise ValueError(f"method must be a fixed-step method, one of {sorted(FIXED_METHODS)}; got {method!r}.")
    if time_variable not in ("t", "log_rho"):
        raise ValueError(f"time_variable must be 't' or 'log_rho' for a schedule, got {time_variable!r}.")
    if method in MULTISTEP_METHODS and (time_variable != "log_rho" or not measure):
        raise ValueError(f"{method!r} steps in log rho and is calibrated on the measured error: use "
                         "time_variable='log_rho' and measure=True.")
    if not 1 <= int(initial_steps) <= int(max_steps):
        raise ValueError(f"need 1 <= initial_steps <= max_steps, got {initial_steps} and {max_steps}.")
    probes = draw_probes(x, probe, 1, generator) if divergence == "hutchinson" else None
    cal = _Calibration(score_fn, sde, x, eps, method, time_variable, probes, criterion)
    with torch.no_grad(), frozen_weights(score_fn):
        if measure:
            cal.solve_reference(reference_tol)
        search = cal.run_multistep if method in MULTISTEP_METHODS else cal.run
        grid, estimate, e = search(int(initial_steps), int(max_steps), target, optimizer_evals)
    times = cal.ode.to_t(torch.tensor(grid, dtype=torch.float64))
    times[0], times[-1] = eps, sde.T
    measured = cal.reference is not None
    met = cal.value(e) <= target
    if not met:
        warnings.warn(f"calibrate_schedule stopped at max_steps = {max_steps} with an error of {cal.value(e):.3g} "
                      f"bits/dim ({criterion}) > target {target:g}; raise max_steps or the target.", stacklevel=2)
    return LikelihoodSchedule(
        times=times, method=method, time_variable=time_variable, target=target, criterion=criterion,
        estimated_error=estimate, num_calibration_samples=x.shape[0],
        measured_rms_error=e.pow(2).mean().sqrt().item() if measured else None,
        measured_mean_error=e.mean().item() if measured else None, target_met=bool(met))


class _Calibration:
    """One calibration's solves, on the points ``x`` with fixed probes: step-doubling error estimates, the
    reference solve and the measured error of a grid, and the search of :func:`calibrate_schedule`. Grids are
    lists of floats in the time variable ``u``; errors are ``(B,)`` bits/dim."""

    def __init__(self, score_fn: ScoreFn, sde: SDE, x: torch.Tensor, eps: float, method: str, time_variable: str,
                 probes: torch.Tensor | None, criterion: str):
        self.sde, self.x, self.method, self.criterion = sde, x, method, criterion
        self.b, self.shape = x.shape[0], x.shape
        self.ode = LogDensityODE(ProbabilityFlow(score_fn, sde), x.shape, eps, time_variable, probes=probes,
                                 dtype=x.dtype, device=x.device)
        self.score_fn = score_fn
        self.order = FIXED_METHODS[method]
        self.richardson = 2**self.order / (2**self.order - 1)
        self.nats_per_bpd = x[0].numel() * math.log(2)
        self.state0 = self.ode.initial_state(x)
        self.reference: torch.Tensor | None = None

    def solve(self, state, us: list[float], method: str | None = None, tol: float | None = None):
        method = method or self.method
        if method in MULTISTEP_METHODS:
            return multistep_solve(self.ode, state, torch.tensor(us, dtype=torch.float64), MULTISTEP_METHODS[method])
        grid = torch.tensor(us, dtype=self.x.dtype, device=self.x.device)
        return solve(self.ode, state, grid, method=method or self.method, backend="torchdiffeq", rtol=tol, atol=tol)

    def logp_of(self, end) -> torch.Tensor:
        """``(B,)`` nats: log p of the solve that ended in state ``end`` (prior plus divergence integral)."""
        return self.sde.prior_logp(end[0].reshape(self.shape)) + end[1]

    def solve_reference(self, tol: float) -> None:
        """The tight adaptive solve (dopri5 at ``tol``, the same probes) the errors are measured against."""
        ref = self.solve(self.state0, [self.ode.u0, self.ode.u1], method="dopri5", tol=tol)
        self.reference = self.logp_of((ref[0][-1], ref[1][-1]))

    def measured(self, end) -> torch.Tensor:
        """``(B,)`` bits/dim, the solve ending in state ``end`` minus the reference."""
        return (self.reference - self.logp_of(end)).double() / self.nats_per_bpd

    def measure_grid(self, grid: list[float]) -> torch.Tensor:
        path = self.solve(self.state0, grid)
        return self.measured((path[0][-1], path[1][-1]))

    def value(self, e: torch.Tensor) -> float:
        """The criterion of ``(B,)`` per-sample errors in bits/dim (for "mean", with two standard errors)."""
        if self.criterion == "rms":
            return e.pow(2).mean().sqrt().item()
        b = self.b
        return e.mean().abs().item() + (2 * e.std() / math.sqrt(b)).item() if b > 1 else e.abs().item()

    def step_error(self, i: int, state, grid: list[float]) -> torch.Tensor:
        """``(B,)`` nats: Richardson estimate of step i's error, carried to the end of the solve. A position error
        ``dx`` at time t moves the final answer by ``s(x, t) . dx`` to first order."""
        a, c = grid[i], grid[i + 1]
        coarse = self.solve(state, [a, c])
        fine = self.solve(state, [a, (a + c) / 2, c])
        t_end = self.ode.to_t(torch.tensor(c, dtype=torch.float64)).to(self.x.dtype).expand(self.b).to(self.x.device)
        s = self.score_fn(fine[0][-1].reshape(self.shape), t_end)
        dx = (coarse[0][-1] - fine[0][-1]).reshape(self.shape)
        return self.richardson * ((coarse[1][-1] - fine[1][-1]) + (s * dx).flatten(1).sum(1))

    def grid_errors(self, grid: list[float], first_stale: int = 0, states=None, errors=None):
        """States at the grid points and per-step error estimates ``(N, B)`` nats, recomputed from step
        ``first_stale`` on (the earlier ones are kept); the estimate's root mean square in bits/dim; the
        per-sample errors ``(B,)`` in bits/dim that decide (measured, or else estimated)."""
        states = states or [self.state0]
        errors = errors or []
        del states[first_stale + 1:], errors[first_stale:]
        path = self.solve(states[first_stale], grid[first_stale:])
        states += [(path[0][k], path[1][k]) for k in range(1, len(grid) - first_stale)]
        errors += [self.step_error(i, states[i], grid) for i in range(first_stale, len(grid) - 1)]
        per_step = torch.stack(errors).double()
        estimated = -per_step.sum(0) / self.nats_per_bpd  # a log p too high is too few bits/dim
        e = self.measured(states[-1]) if self.reference is not None else estimated
        return states, errors, per_step, estimated.pow(2).mean().sqrt().item(), e

    def run_multistep(self, initial_steps: int, max_steps: int, target: float,
                      optimizer_evals: int) -> tuple[list[float], None, torch.Tensor]:
        """The search of :func:`calibrate_schedule` for a multistep method, on the measured error alone (a multistep
        step has no step-doubling estimate of its own): grids uniform in log rho from ``initial_steps`` steps, one
        step more at a time until the measured error meets the target; then, with ``optimizer_evals``, one step
        fewer at a time on a two-parameter family of grids (:func:`~scorezoo.likelihood.multistep.warped_grid`)
        whose parameters Nelder-Mead re-fits whenever the fewer steps miss the target, while the target holds.
        Returns ``(grid, None, per-sample errors)``."""
        u0, u1 = self.ode.u0, self.ode.u1
        n = initial_steps
        grid = warped_grid(u0, u1, n, (0.0, 0.0))
        e = self.measure_grid(grid)
        while self.value(e) > target and n < max_steps:
            n += 1
            grid = warped_grid(u0, u1, n, (0.0, 0.0))
            e = self.measure_grid(grid)
        warp = (0.0, 0.0)
        while self.value(e) <= target and optimizer_evals > 0 and n > 2:
            trial = warped_grid(u0, u1, n - 1, warp)
            trial_e = self.measure_grid(trial)
            if self.value(trial_e) > target:
                warp = optimize_warp(u0, u1, n - 1, self.measure_grid, optimizer_evals, warp)
                trial = warped_grid(u0, u1, n - 1, warp)
                trial_e = self.measure_grid(trial)
                if self.value(trial_e) > target:
                    break
            grid, e, n = trial, trial_e, n - 1
        return grid, None, e

    def run(self, initial_steps: int, max_steps: int, target: float,
            optimizer_evals: int) -> tuple[list[float], float, torch.Tensor]:
        """The search of :func:`calibrate_schedule`: ``(grid, estimated rms error, per-sample errors)``."""
        value = self.value
        grid = torch.linspace(self.ode.u0, self.ode.u1, initial_steps + 1, dtype=torch.float64).tolist()
        # 1. halve the worst step until the error meets the target
        states, errors, per_step, estimate, e = self.grid_errors(grid)
        while value(e) > target and len(grid) - 1 < max_steps:
            worst = int(per_step.pow(2).mean(1).argmax())
            grid.insert(worst + 1, (grid[worst] + grid[worst + 1]) / 2)
            states, errors, per_step, estimate, e = self.grid_errors(grid, worst, states, errors)
        # 2. move the points so that every step carries the same estimated error (twice, each time from the new
        #    estimates): first with as many steps, kept if better, then with one step fewer at a time while the
        #    target holds; bisection leaves steps of uneven error. 3. with a reference, a grid with one step fewer
        #    that misses the target gets its points optimised against the measured error.
        n = len(grid) - 1
        while value(e) <= target and n >= 1:
            trial, trial_steps, accepted = grid, per_step, False
            for _ in range(2):
                trial = _equidistribute(trial, trial_steps, n, self.order)
                *_, trial_steps, trial_estimate, trial_e = self.grid_errors(trial)
                if value(trial_e) <= target and (n < len(grid) - 1 or value(trial_e) < value(e)):
                    grid, per_step, estimate, e, accepted = trial, trial_steps, trial_estimate, trial_e, True
                    break
            if not accepted and n < len(grid) - 1 and self.reference is not None and optimizer_evals > 0 and n > 1:
                trial = _optimize_grid(trial, self.measure_grid, optimizer_evals)
                *_, trial_steps, trial_estimate, trial_e = self.grid_errors(trial)
                if value(trial_e) <= target:
                    grid, per_step, estimate, e, accepted = trial, trial_steps, trial_estimate, trial_e, True
            if not accepted and n < len(grid) - 1:
                break
            n = len(grid) - 2
        return grid, estimate, e


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


