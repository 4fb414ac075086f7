"""What every sub-command shares: exit codes, one-line errors, argument types, loading a model by name."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

__all__ = ["CLIError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "positive_int", "positive_float", "note",
           "show_progress", "load_model", "add_solver_arguments", "plan_options", "fmt", "finite", "debug_enabled",
           "common_parent", "model_parent", "default_threads"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """An error the user can act on: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def common_parent() -> argparse.ArgumentParser:
    """``--quiet`` and ``--debug``, for every sub-command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    common.add_argument("--debug", action="store_true", help="show tracebacks (also SCOREZOO_DEBUG=1)")
    return common


def model_parent() -> argparse.ArgumentParser:
    """``--model``, ``--revision``, ``--seed``, ``--json``, for the sub-commands that load a model."""
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", "-m", default=None,
                       help="a folder, a zoo name (vp-mle-digits) or a Hub id (owner/name); default: the zoo's "
                            "default model for the input")
    model.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    model.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    model.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    model.add_argument("--threads", type=positive_int, default=None, metavar="N",
                       help="torch threads of this command (default: OMP_NUM_THREADS when set, else half the cores "
                            "this process may use, shared among the processes of an accelerate launch, at least 1: "
                            "two commands at once then do not fight over the cores)")
    return model


def default_threads(environ=None, cores: int | None = None) -> int | None:
    """The torch threads of a command given no ``--threads``: ``None`` (torch's own choice) when ``OMP_NUM_THREADS``
    is set, else ``max(1, cores // max(2, P))`` for ``P`` processes of a launch on this machine
    (``LOCAL_WORLD_SIZE``, else ``WORLD_SIZE``, else 1).

    Why: torch's default takes every core, and two such processes oversubscribe a small machine (reported in issue
    #20 on 2 cores: a 128×128 crop in 13 s alone, 66 s each when two ran at once, 17 s each with one thread each).
    """
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS"):
        return None
    if cores is None:
        from ..utils import cpu_count

        cores = cpu_count()
    try:
        procs = int(env.get("LOCAL_WORLD_SIZE") or env.get("WORLD_SIZE") or 1)
    except ValueError:
        procs = 1
    return max(1, int(cores) // max(2, procs))


def add_dequantization_argument(p: argparse.ArgumentParser) -> None:
    """``--dequantization uniform|variational``, the same for every sub-command that scores pictures."""
    p.add_argument("--dequantization", choices=("uniform", "variational"), default="uniform",
                   help="uniform noise (default), or u ~ q(u | k) of the model's trained dequantizer: a tighter upper "
                        "bound, for models that ship one (dequantizer/ in the model folder)")


#: draws per picture under ``--fast`` for models whose ``auto`` divergence is exact (:func:`default_repeats`):
#: measured on vp-mle-digits, 16 Hutchinson draws give about the standard error of 4 exact ones at a tenth of the time
FAST_REPEATS = 16


def add_solver_arguments(p: argparse.ArgumentParser) -> None:
    """The solver's flags, the same for every sub-command that scores pictures: read together by
    :func:`plan_options` into the options of :meth:`scorezoo.scoring.ScoringPlan.create`, where every conflict is
    refused."""
    from ..likelihood.solvers import adaptive_methods, fixed_methods
    from ..scoring import AUTO_EXACT_MAX_DIM, DIVERGENCES

    p.add_argument("--divergence", choices=DIVERGENCES, default="auto",
                   help=f"divergence of the score: exact (D vector-Jacobian products), Hutchinson (one), or auto "
                        f"(default: exact up to {AUTO_EXACT_MAX_DIM} dimensions, such as 8×8 digits, so that a "
                        "picture's number is not mostly probe noise; else Hutchinson)")
    p.add_argument("--method", default=None,
                   help=f"ODE method: adaptive ({', '.join(adaptive_methods())}; default dopri5) or fixed-step "
                        f"({', '.join(fixed_methods())}, with --step-size)")
    p.add_argument("--step-size", type=positive_float, default=None,
                   help="step of a fixed-step --method, in its time variable (t; log rho for dpmpp2m and dpmpp3m)")
    p.add_argument("--rtol", type=positive_float, default=None, help="adaptive solver's relative tolerance (1e-5)")
    p.add_argument("--atol", type=positive_float, default=None, help="adaptive solver's absolute tolerance (1e-5)")
    solve = p.add_mutually_exclusive_group()
    solve.add_argument("--fast", action="store_true",
                       help="seconds, not minutes: fixed steps on the model's calibrated schedule (the default "
                            "when the model has one and no solver option is given; an error without one) and "
                            "Hutchinson's divergence unless --divergence is given, with "
                            f"{FAST_REPEATS} draws per picture in scorezoo bpd for small models such as the 8×8 digits "
                            "(unless -k is given): the same expected bits/dim, its standard error includes the "
                            "probes' noise")
    solve.add_argument("--adaptive", action="store_true",
                       help="the adaptive solver (dopri5 with a step size per picture, rtol = atol = 1e-5) even when "
                            "the model has a schedule")


def plan_options(args: argparse.Namespace) -> dict:
    """The solver's options of :meth:`scorezoo.scoring.ScoringPlan.create` from :func:`add_solver_arguments`'s
    flags; those that no model could make right (``--method bogus``, ``--step-size`` with an adaptive method) are a
    :class:`CLIError` now, before any model is loaded or picture read."""
    from ..likelihood.solvers import SolverSettings

    solver = "calibrated" if args.fast else "adaptive" if args.adaptive and not args.method else "auto"
    given = {"method": args.method, "step_size": args.step_size, "rtol": args.rtol, "atol": args.atol}
    if args.fast and any(v is not None for v in given.values()):
        raise CLIError("--fast takes the model's calibrated schedule, which fixes the solve: drop --rtol, --atol, "
                       "--method and --step-size, or drop --fast to choose the solver.", EXIT_USAGE)
    if any(v is not None for v in given.values()):
        try:
            SolverSettings.choose(None, solver=solver, **given)
        except ValueError as e:
            raise CLIError(str(e), EXIT_USAGE) from None
    divergence = "hutchinson" if args.fast and args.divergence == "auto" else args.divergence
    return {"solver": solver, **given, "divergence": divergence}


def default_repeats(args: argparse.Namespace, pipe) -> int | None:
    """Draws per picture when ``-k`` is not given: :data:`FAST_REPEATS` under ``--fast`` for a model whose
    ``auto`` divergence would be exact (up to :data:`~scorezoo.scoring.AUTO_EXACT_MAX_DIM` dimensions, not tiled:
    the digits), so that Hutchinson's probe noise is averaged down at a fraction of the exact divergence's D
    backward passes; else ``None`` (the plan's default)."""
    from ..scoring import AUTO_EXACT_MAX_DIM

    if args.num_repeats is not None or not args.fast or args.divergence != "auto":
        return args.num_repeats
    return FAST_REPEATS if pipe.dim <= AUTO_EXACT_MAX_DIM and not pipe.tiles_larger_images else None


def note(args: argparse.Namespace, text: str) -> None:
    """A note on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(text, file=sys.stderr)


def show_progress(args: argparse.Namespace) -> bool:
    """Progress unless ``--quiet``: a bar on a terminal, plain lines every few seconds when stderr is redirected
    (:func:`scorezoo.progress.progress_bar`)."""
    return not args.quiet


def load_model(args: argparse.Namespace, name: str):
    """``(pipeline, where it came from)`` of the model ``name``; one that cannot be loaded is a :class:`CLIError`."""
    from .. import zoo
    from ..pipeline import ScorePipeline

    if not (show_progress(args) and sys.stderr.isatty()):  # the Hub's download bars have no plain form
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        folder = zoo.resolve_pretrained(name, revision=args.revision)
        pipe = ScorePipeline.from_pretrained(folder)
    except zoo.ModelNotFoundError as e:
        raise CLIError(str(e)) from None
    except (ValueError, OSError) as e:
        raise CLIError(f"model {name!r} cannot be loaded: {e}") from None
    pipe.set_progress_bar_config(disable=not show_progress(args))
    resolved = folder.resolve()
    if Path(name).expanduser().is_dir():
        where = f"local folder {folder}"
    elif resolved.is_relative_to(zoo.BUNDLED_DIR.resolve()):
        where = f"bundled copy {folder}"
    else:
        where = f"Hugging Face Hub, cached at {folder}"
    return pipe, where


def fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def debug_enabled(args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("SCOREZOO_DEBUG", "") not in ("", "0")
