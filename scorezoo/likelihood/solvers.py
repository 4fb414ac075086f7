"""The ODE solvers scorezoo runs, in one table, and the one function through which every ODE of the package is solved.

:data:`SOLVERS` maps a method's name to what it is (:class:`Solver`): adaptive or fixed-step, its order, the
evaluations a fixed step costs, and the libraries that implement it: torchdiffeq (Chen et al. 2018; one step size
for the whole batch) and torchode (Lienen & Günnemann 2022; a step size per sample, so that each sample's answer is
independent of its batch mates), and scorezoo itself for the multistep exponential integrators ``dpmpp2m`` and
``dpmpp3m`` (:mod:`scorezoo.likelihood.multistep`; the probability-flow likelihood only, in log rho). The command
line, the pipeline, :func:`~scorezoo.likelihood.log_likelihood`, the calibrated schedules and the ODE sampler all
read it; a name that is not in it is refused with the list.

:func:`solve` integrates ``dy/du = func(u, y)`` over a grid with the chosen method and backend; the probability-flow
likelihood (except the multistep methods), the schedule calibration and the ODE sampler go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Solver", "SOLVERS", "SOLVE_KINDS", "SolverSettings", "BACKENDS", "DEFAULT_METHOD", "DEFAULT_TOL",
           "get_solver", "adaptive_methods", "fixed_methods", "default_backend", "solve"]

#: the libraries that integrate ODEs here ("scorezoo": the multistep methods of
#: :mod:`scorezoo.likelihood.multistep`, for the probability-flow likelihood only)
BACKENDS = ("torchdiffeq", "torchode", "scorezoo")
#: the adaptive method used unless another is asked for
DEFAULT_METHOD = "dopri5"
#: the adaptive solvers' relative and absolute tolerance unless told otherwise
DEFAULT_TOL = 1e-5
#: the kinds of solve: ``auto`` (the model's calibrated schedule when it has one and no solver option is given, else
#: adaptive, or fixed-step for a fixed-step method), ``calibrated``, ``adaptive``, ``fixed``
SOLVE_KINDS = ("auto", "calibrated", "adaptive", "fixed")


@dataclass(frozen=True)
class Solver:
    """One ODE method.

    Attributes:
        name: the method's name as torchdiffeq/torchode spell it.
        adaptive: True for an embedded pair with step-size control (``rtol``, ``atol``); False for fixed steps.
        order: the order of convergence (of the solution, for an adaptive pair).
        stages: evaluations per step of a fixed-step method (the cost of a step of a calibrated schedule);
            ``None`` for adaptive ones, whose cost depends on the steps taken and rejected.
        backends: the libraries that implement it, the preferred one first.
    """

    name: str
    adaptive: bool
    order: int
    stages: int | None
    backends: tuple[str, ...]


#: every method scorezoo can run (Hairer, Nørsett & Wanner, Solving ODEs I, for the tableaux and orders; the
#: multistep ``dpmpp*m`` of Lu et al. 2022, DPM-Solver++, evaluate once per step, in log rho)
SOLVERS: dict[str, Solver] = {s.name: s for s in (
    Solver("euler", False, 1, 1, ("torchdiffeq",)),
    Solver("midpoint", False, 2, 2, ("torchdiffeq",)),
    Solver("heun2", False, 2, 2, ("torchdiffeq",)),
    Solver("heun3", False, 3, 3, ("torchdiffeq",)),
    Solver("rk4", False, 4, 4, ("torchdiffeq",)),
    Solver("dpmpp2m", False, 2, 1, ("scorezoo",)),
    Solver("dpmpp3m", False, 3, 1, ("scorezoo",)),
    Solver("dopri5", True, 5, None, ("torchode", "torchdiffeq")),
    Solver("tsit5", True, 5, None, ("torchode",)),
    Solver("bosh3", True, 3, None, ("torchdiffeq",)),
    Solver("dopri8", True, 8, None, ("torchdiffeq",)),
    Solver("fehlberg2", True, 2, None, ("torchdiffeq",)),
    Solver("adaptive_heun", True, 2, None, ("torchdiffeq",)),
)}


def adaptive_methods() -> tuple[str, ...]:
    """The names of the adaptive methods of :data:`SOLVERS`."""
    return tuple(n for n, s in SOLVERS.items() if s.adaptive)


def fixed_methods() -> tuple[str, ...]:
    """The names of the fixed-step methods of :data:`SOLVERS`."""
    return tuple(n for n, s in SOLVERS.items() if not s.adaptive)


def get_solver(name: str) -> Solver:
    """The :class:`Solver` called ``name``.

    Raises:
        ValueError: a name not in :data:`SOLVERS` (the message lists the adaptive and the fixed-step ones).
    """
    if name not in SOLVERS:
        raise ValueError(f"unknown ODE method {name!r}; adaptive: {', '.join(adaptive_methods())}; fixed-step: "
                         f"{', '.join(fixed_methods())}.")
    return SOLVERS[name]


def default_backend(method: str) -> str:
    """The preferred backend of ``method``: torchode (a step size per sample) where it has the method, else
    torchdiffeq."""
    return get_solver(method).backends[0]


def solve(func: Callable, y0, grid: torch.Tensor, *, method: str, backend: str | None = None,
          rtol: float | None = None, atol: float | None = None, step_size: float | None = None,
          norm: Callable | None = None):
    """Integrate ``dy/du = func(u, y)`` from ``grid[0]`` through every point of ``grid``.

    Args:
        func: ``(u: () tensor, y) -> dy/du`` with ``y`` a tensor ``(B, D)`` or, with torchdiffeq, a tuple of
            tensors (torchdiffeq then controls each part's error on its own).
        y0: the state at ``grid[0]``.
        grid: ``(N,)`` increasing (or decreasing) points where the solution is returned; a fixed-step method steps
            from one to the next (and within each by ``step_size`` when given).
        method: a name of :data:`SOLVERS`.
        backend: ``"torchdiffeq"`` or ``"torchode"`` (default: the method's preferred one). torchode needs a
            tensor state ``(B, D)`` and takes a step size per row.
        rtol, atol: an adaptive method's tolerances (default :data:`DEFAULT_TOL`); refused for a fixed-step one.
        step_size: a fixed-step method's largest step; refused for an adaptive one.
        norm: torchode only: ``(error (B, D)) -> (B,)`` the per-row error norm of the step-size controller.

    Returns:
        The states at ``grid``: a tensor ``(N, B, D)`` (or a tuple of such stacks for a tuple state).

    Raises:
        ValueError: an unknown method, a backend that does not have it, options the method does not take.
        RuntimeError: torchode failed on some rows (it says how many and its status codes).
    """
    spec = get_solver(method)
    backend = backend or spec.backends[0]
    if spec.backends == ("scorezoo",):
        raise ValueError(f"{method!r} is a multistep method of the probability-flow likelihood only "
                         "(scorezoo.likelihood.log_likelihood, a likelihood schedule); choose a Runge-Kutta method "
                         "here, e.g. 'rk4' or 'dopri5'.")
    if backend not in spec.backends:
        raise ValueError(f"{backend} does not have {method!r}; it is in {', '.join(spec.backends)}.")
    if spec.adaptive and step_size is not None:
        raise ValueError(f"{method!r} chooses its own steps: drop step_size, or choose a fixed-step method.")
    if not spec.adaptive and (rtol is not None or atol is not None):
        raise ValueError(f"{method!r} takes fixed steps, so rtol and atol do nothing: drop them, or choose an "
                         "adaptive method such as 'dopri5'.")
    tol = {"rtol": DEFAULT_TOL if rtol is None else rtol, "atol": DEFAULT_TOL if atol is None else atol} \
        if spec.adaptive else {}
    if backend == "torchdiffeq":
        from torchdiffeq import odeint

        options = {"step_size": step_size} if step_size is not None else None
        return odeint(func, y0, grid, method=method, options=options, **tol)
    import torchode

    b = y0.shape[0]
    term = torchode.ODETerm(func)
    stepper = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5}[method](term=term)
    controller = torchode.IntegralController(term=term, **({"norm": norm} if norm is not None else {}), **tol)
    grid_b = grid.to(y0).expand(b, -1)
    problem = torchode.InitialValueProblem(y0=y0, t_start=grid_b[:, 0], t_end=grid_b[:, -1], t_eval=grid_b)
    sol = torchode.AutoDiffAdjoint(stepper, controller).solve(problem)
    if (sol.status != 0).any():
        raise RuntimeError(f"the ODE solver failed for {(sol.status != 0).sum().item()} of {b} samples "
                           f"(torchode status {sol.status.tolist()}); loosen rtol/atol or check the model.")
    return sol.ys.transpose(0, 1)


@dataclass(frozen=True)
class SolverSettings:
    """How one probability-flow ODE is solved, decided once from the caller's options (:meth:`create`).

    Either a calibrated :class:`~scorezoo.likelihood.schedule.LikelihoodSchedule` (fixed steps of its method at its
    times, in its time variable), or a method of :data:`SOLVERS`: adaptive with ``rtol``/``atol``, or fixed-step with
    ``step_size`` (or along the times asked for).

    Attributes:
        method: a name of :data:`SOLVERS`.
        backend: ``"torchdiffeq"`` or ``"torchode"``.
        rtol, atol: an adaptive method's tolerances, else ``None``.
        step_size: a fixed-step method's step, else ``None``.
        schedule: the calibrated schedule, else ``None``.
        time_variable: ``"t"``, ``"rho"`` or ``"log_rho"`` (:mod:`scorezoo.likelihood.flow`).
    """

    method: str
    backend: str
    rtol: float | None = None
    atol: float | None = None
    step_size: float | None = None
    schedule: object = None
    time_variable: str = "t"

    @classmethod
    def create(cls, *, schedule=None, method: str | None = None, rtol: float | None = None,
               atol: float | None = None, step_size: float | None = None, options: dict | None = None,
               backend: str | None = None, time_variable: str | None = None, has_times: bool = False
               ) -> "SolverSettings":
        """Check the options together and fill in the defaults (dopri5 on its preferred backend, tolerances
        :data:`DEFAULT_TOL`, time ``t``). Refuses what conflicts, as torchdiffeq refuses ``options`` without a
        method: a schedule fixes the solve, so nothing else may be given with it; tolerances are for adaptive
        methods, a step size for fixed-step ones, which need one (or ``has_times``, interior times to step along).

        Args:
            schedule: a checked :class:`~scorezoo.likelihood.schedule.LikelihoodSchedule`, or None.
            options: torchdiffeq's options; only ``{"step_size": h}`` is read (same as ``step_size``).
            has_times: the caller reports the path at times a fixed-step method can step along.

        Raises:
            ValueError: an unknown method, backend or time variable, or options that conflict (the message says
                which to drop or add).
        """
        from .flow import TIME_VARIABLES

        if options:
            unknown = sorted(set(options) - {"step_size"})
            if unknown:
                raise ValueError(f"options takes only 'step_size' (a fixed-step method's step), got {unknown}.")
            if step_size is not None and options.get("step_size") != step_size:
                raise ValueError("step_size is given twice (step_size and options['step_size']): give it once.")
            step_size = options.get("step_size")
        if schedule is not None:
            given = [name for name, v in (("method", method), ("rtol", rtol), ("atol", atol),
                                          ("step_size", step_size), ("solver", backend),
                                          ("time_variable", time_variable), ("times", has_times or None))
                     if v is not None]
            if given:
                raise ValueError(f"a calibrated schedule fixes the solve (its method, steps and time variable; the "
                                 f"path is reported at its steps): drop {', '.join(given)}, or drop the schedule to "
                                 "choose the solver.")
            return cls(schedule.method, get_solver(schedule.method).backends[0], schedule=schedule,
                       time_variable=schedule.time_variable)
        method = DEFAULT_METHOD if method is None else method
        spec = get_solver(method)
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"solver (the ODE library) must be one of {BACKENDS}, got {backend!r}.")
        backend = backend or spec.backends[0]
        if backend not in spec.backends:
            raise ValueError(f"{backend} does not have the method {method!r}: it is in {', '.join(spec.backends)}.")
        multistep = spec.backends == ("scorezoo",)
        time_variable = ("log_rho" if multistep else "t") if time_variable is None else time_variable
        if time_variable not in TIME_VARIABLES:
            raise ValueError(f"time_variable must be one of {TIME_VARIABLES}, got {time_variable!r}.")
        if multistep and time_variable != "log_rho":
            raise ValueError(f"{method!r} steps in log rho (the log noise-to-signal ratio); drop time_variable or "
                             "give 'log_rho'.")
        if spec.adaptive:
            if step_size is not None:
                raise ValueError(f"{method!r} is adaptive: it chooses its own steps, so drop the step size (or "
                                 "choose a fixed-step method such as 'rk4').")
            return cls(method, backend, DEFAULT_TOL if rtol is None else float(rtol),
                       DEFAULT_TOL if atol is None else float(atol), time_variable=time_variable)
        if rtol is not None or atol is not None:
            raise ValueError(f"{method!r} takes fixed steps, so rtol and atol do nothing: drop them, or choose an "
                             "adaptive method such as 'dopri5'.")
        if step_size is None and not has_times:
            raise ValueError(f"{method!r} takes fixed steps: give a step size (options={{'step_size': h}}, "
                             "--step-size), interior times to step along, or use a calibrated schedule.")
        if step_size is not None and not (float(step_size) > 0):
            raise ValueError(f"the step size must be > 0, got {step_size!r}.")
        return cls(method, backend, step_size=None if step_size is None else float(step_size),
                   time_variable=time_variable)

    @classmethod
    def choose(cls, schedule, *, solver: str = "auto", method: str | None = None, step_size: float | None = None,
               rtol: float | None = None, atol: float | None = None, backend: str | None = None,
               time_variable: str | None = None) -> "SolverSettings":
        """The solver of a kind of :data:`SOLVE_KINDS` for a model whose calibrated schedule is ``schedule`` (``None``:
        it has none): the rules every command follows (:meth:`scorezoo.scoring.ScoringPlan.create`). Without a model,
        pass ``schedule=None`` and a kind other than ``"calibrated"`` to check a command's solver options before any
        model is loaded.

        Raises:
            ValueError: an unknown solver or method, or options that conflict.
        """
        if solver not in SOLVE_KINDS:
            raise ValueError(f"solver must be one of {', '.join(SOLVE_KINDS)}; got {solver!r}.")
        ode_options = {"method": method, "step_size": step_size, "rtol": rtol, "atol": atol, "backend": backend,
                       "time_variable": time_variable}
        given = [n for n, v in ode_options.items() if v is not None]
        if solver == "auto":
            solver = "calibrated" if schedule is not None and not given else \
                "fixed" if method is not None and not get_solver(method).adaptive else "adaptive"
        if solver == "calibrated":
            if given:
                raise ValueError(f"the calibrated schedule (--fast) fixes the solve: drop {', '.join(given)} (or drop "
                                 "--fast for the adaptive solver).")
            if schedule is None:
                raise ValueError("this model has no calibrated likelihood schedule: drop --fast (solver='calibrated') "
                                 "to use the adaptive solver, or calibrate one "
                                 "(ScorePipeline.calibrate_likelihood_schedule).")
            return cls.create(schedule=schedule)
        want_adaptive = solver == "adaptive"
        method = method or ("dopri5" if want_adaptive else "rk4")
        if get_solver(method).adaptive != want_adaptive:
            kind = "an adaptive" if get_solver(method).adaptive else "a fixed-step"
            raise ValueError(f"{method!r} is {kind} method, but the {solver} solver was asked for: choose "
                             f"{'an adaptive' if want_adaptive else 'a fixed-step'} method.")
        return cls.create(**ode_options | {"method": method})

    @property
    def adaptive(self) -> bool:
        """Whether the solve chooses its own steps (its cost then depends on the data)."""
        return self.schedule is None and SOLVERS[self.method].adaptive

    def describe(self) -> str:
        """The solve in words, e.g. ``"dopri5 (torchode, a step size per sample), rtol 1e-05, atol 1e-05"``."""
        sch = self.schedule
        if sch is not None:
            text = (f"the model's calibrated schedule: {sch.method}, {sch.num_steps} fixed steps in "
                    f"{sch.time_variable.replace('_', ' ')} ({sch.nfe} score evaluations)")
            if sch.target is not None:
                bound = "per image, rms" if sch.criterion == "rms" else "on the mean"
                text += f", calibrated to {sch.target:g} bits/dim ({bound})"
            if sch.measured_rms_error is not None:
                text += (f"; error measured on {sch.num_calibration_samples} points, schedule minus tight solve: "
                         f"{sch.measured_rms_error:.4f} rms, {sch.measured_mean_error:+.4f} mean")
            elif sch.estimated_error is not None:
                text += f"; estimated error {sch.estimated_error:.4f} bits/dim (step doubling, not measured)"
            return text
        how = "a step size per sample" if self.backend == "torchode" else "one step size for the batch"
        if self.adaptive:
            return f"{self.method} ({self.backend}, {how}), rtol {self.rtol:g}, atol {self.atol:g}"
        step = f"step {self.step_size:g}" if self.step_size is not None else "along the times asked for"
        return f"{self.method}, fixed {step}"

    def to_dict(self) -> dict:
        """The settings as JSON (for ``--json`` output and result files)."""
        if self.schedule is not None:
            sch = self.schedule
            return {"solver": "calibrated", "schedule": {"steps": sch.num_steps, "nfe": sch.nfe, **sch.to_dict()}}
        out = {"solver": "adaptive" if self.adaptive else "fixed", "method": self.method, "backend": self.backend,
               "time_variable": self.time_variable}
        if self.adaptive:
            out.update(rtol=self.rtol, atol=self.atol)
        else:
            out["step_size"] = self.step_size
        return out
