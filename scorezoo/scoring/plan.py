"""The scoring plan: every choice of a bits/dim computation, made once from the user's options and the model.

:meth:`ScoringPlan.create` applies the defaults and refuses every combination that conflicts, with one line that says
which option to drop or add; :func:`plan_from_options` reads :meth:`ScorePipeline.bits_per_dim
<scorezoo.pipeline.ScorePipeline.bits_per_dim>`'s keyword arguments into a plan, and :func:`choose_model` picks a
model for a picture when none is named. :mod:`scorezoo.scoring.run` carries a plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from ..likelihood.solvers import SOLVE_KINDS, SOLVERS, SolverSettings

if TYPE_CHECKING:
    from ..pipeline import ScorePipeline

__all__ = ["choose_model", "SMALL_GRAYSCALE", "ScoringPlan", "plan_from_options", "check_choices", "ESTIMATORS",
           "SOLVES", "DIVERGENCES", "DEQUANTIZATIONS", "AUTO_EXACT_MAX_DIM", "DEFAULT_REPEATS", "BOUND_TIME_POINTS",
           "BOUND_DECODER_SAMPLES", "DEFAULT_MAX_TILES"]

ESTIMATORS = ("ode", "bound")
#: the kinds of solve a plan asks for (:meth:`~scorezoo.likelihood.solvers.SolverSettings.choose`)
SOLVES = SOLVE_KINDS
DIVERGENCES = ("auto", "exact", "hutchinson")
DEQUANTIZATIONS = ("uniform", "variational")
#: ``divergence="auto"``: the exact divergence (D vector-Jacobian products per evaluation, no probe noise) for data of
#: at most this many dimensions (8×8 digits: 64); Hutchinson's one-probe estimate above
AUTO_EXACT_MAX_DIM = 256
#: dequantization draws per picture unless told: 4, or 1 per patch for a tiled photo (whose standard error is over
#: its patches)
DEFAULT_REPEATS = 4
#: tiles per picture that ``scorezoo bpd`` and the app score by default (a 512×512 photo has 1,024 tiles of 16×16;
#: a larger one is scored on a seeded random sample of this many, an estimate with its standard error)
DEFAULT_MAX_TILES = 1024
#: the likelihood bound's time points per image and decoder draws (:func:`scorezoo.likelihood.likelihood_bound`)
BOUND_TIME_POINTS, BOUND_DECODER_SAMPLES = 1000, 16


def check_choices(*options: tuple[str, object, Sequence[str]]) -> None:
    """Refuse an option that is not one of its choices, each given as ``(name, value, choices)``, in order.

    Raises:
        ValueError: ``"<name> must be one of <choices>; got <value>."`` for the first that is not.
    """
    for name, value, choices in options:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


#: a grayscale picture of at most this many pixels on its longer side is a digit-like picture (the default model);
#: larger ones, and every colour picture, are photos
SMALL_GRAYSCALE = 64


def choose_model(item, *, default: str, photo: str | None, small_colour: dict[tuple[int, int], str] | None = None
                 ) -> tuple[str, str]:
    """``(model, why)`` for a picture when no model is named, by its size and content, with the reason in words.

    * a grayscale picture of at most :data:`SMALL_GRAYSCALE` pixels a side: ``default`` (the digits model);
    * a colour picture whose size is a key of ``small_colour`` (e.g. ``{(32, 32): "vp-mle-cifar10-small"}``): that
      model, which takes it at its own size;
    * any other picture: ``photo`` (a photo model scores it at its own resolution; a grayscale one as RGB), or
      ``default`` when no photo model is installed.

    Args:
        item: a picture file path or a PIL image.

    Raises:
        ValueError: a file that cannot be read (the message names it).
    """
    from ..data import is_colour, open_image

    img = open_image(item) if not hasattr(item, "size") else item
    w, h = img.size
    colour = is_colour(img)
    kind = f"{'colour' if colour else 'grayscale'} picture of {w}×{h}"
    if not colour and max(w, h) <= SMALL_GRAYSCALE:
        return default, f"a small {kind}"
    if colour and small_colour and (w, h) in small_colour:
        return small_colour[(w, h)], f"a {kind}: the model of {w}×{h} colour pictures"
    if photo is not None:
        return photo, f"a {kind}: the photo model" + ("" if colour else ", as RGB")
    return default, f"a {kind}, but no photo model is installed"


@dataclass(frozen=True)
class ScoringPlan:
    """Every choice of a bits/dim computation for one model, checked together.

    Make it with :meth:`create` (which applies the defaults and refuses conflicts), read it with :meth:`describe`
    (words) or :meth:`to_dict` (JSON: ``scorezoo bpd --json`` and the header of ``scorezoo eval``'s results).

    Attributes:
        estimator: ``"ode"`` (the probability-flow likelihood, Song et al. 2021 eq. 39) or ``"bound"`` (the MLE
            paper's upper bound, Thm. 3).
        solver: the ODE's :class:`~scorezoo.likelihood.solvers.SolverSettings` (``None`` for the bound).
        divergence: ``"exact"`` or ``"hutchinson"`` (``None`` for the bound).
        num_probes, probe: Hutchinson's probes per evaluation and their kind (``None``: 1, Rademacher).
        num_repeats: dequantization draws per picture (per patch when tiled), >= 1.
        tile: ``True`` tiles every picture at its own resolution, ``False`` resizes every picture to the model,
            ``None`` follows the model (tiles pictures at least as large as a model of photo patches).
        dequantization: ``"uniform"`` or ``"variational"``.
        bits_map: also compute the bits of every dimension (``per_dimension``).
        max_batch_size: dequantized inputs (image or patch, times draws) per solve, >= 1.
        num_time_points, num_decoder_samples: the bound's time points and decoder draws per input.
        max_tiles: a tiled picture with more tiles than this is scored on a random sample of ``max_tiles`` of them,
            drawn without replacement from ``tile_seed``: its bits/dim is then the sample mean, an unbiased estimate
            of the all-tiles mean, with the standard error over the sampled tiles (which leaves out the
            finite-population correction ``sqrt(1 - n/N)``, so it errs large). ``None``: every tile.
        tile_seed: the seed of that sample (the same picture and seed give the same tiles).
    """

    estimator: str = "ode"
    solver: SolverSettings | None = None
    divergence: str | None = "hutchinson"
    num_probes: int | None = None
    probe: str | None = None
    num_repeats: int = 1
    tile: bool | None = None
    dequantization: str = "uniform"
    bits_map: bool = False
    max_batch_size: int = 64
    num_time_points: int = BOUND_TIME_POINTS
    num_decoder_samples: int = BOUND_DECODER_SAMPLES
    max_tiles: int | None = None
    tile_seed: int = 0

    @classmethod
    def create(cls, pipe: "ScorePipeline", *, estimator: str = "ode", solver: str = "auto",
               method: str | None = None, step_size: float | None = None, rtol: float | None = None,
               atol: float | None = None, backend: str | None = None, time_variable: str | None = None,
               divergence: str = "auto", num_probes: int | None = None, probe: str | None = None,
               num_repeats: int | None = None, tile: bool | None = None, dequantization: str = "uniform",
               bits_map: bool = False, max_batch_size: int = 64, num_time_points: int | None = None,
               num_decoder_samples: int | None = None, max_tiles: int | None = None,
               tile_seed: int = 0) -> "ScoringPlan":
        """The plan of these options for ``pipe``, with the defaults filled in.

        Args:
            pipe: the model.
            estimator: ``"ode"`` or ``"bound"``.
            solver: one of :data:`SOLVES`: ``"auto"`` (the model's calibrated schedule when it has one and no
                ``method``, ``step_size``, ``rtol``, ``atol`` or ``backend`` is given; else ``"adaptive"``, or
                ``"fixed"`` for a fixed-step ``method``), ``"calibrated"`` (the model's schedule, refused without
                one), ``"adaptive"`` (``method``, default dopri5, with ``rtol``/``atol``, default 1e-5) or
                ``"fixed"`` (a fixed-step ``method``, default rk4, with ``step_size``).
            method: a name of :data:`~scorezoo.likelihood.solvers.SOLVERS`.
            step_size, rtol, atol, backend, time_variable: as
                :meth:`SolverSettings.create <scorezoo.likelihood.solvers.SolverSettings.create>` (``backend`` is the
                ODE library, ``"torchode"`` or ``"torchdiffeq"``).
            divergence: ``"auto"`` (exact up to :data:`AUTO_EXACT_MAX_DIM` dimensions, else and for a fully
                convolutional model Hutchinson), ``"exact"``
                or ``"hutchinson"``.
            num_probes, probe: Hutchinson's options (:func:`~scorezoo.likelihood.log_likelihood`).
            num_repeats: draws per picture; ``None``: 1 per patch when the model tiles pictures, else
                :data:`DEFAULT_REPEATS`.
            tile: see :class:`ScoringPlan`.
            dequantization: ``"uniform"`` or ``"variational"`` (the model's trained dequantizer).
            bits_map: per-dimension bits (the ODE only).
            max_batch_size: inputs per solve.
            num_time_points, num_decoder_samples: the bound's (defaults ``BOUND_TIME_POINTS``,
                ``BOUND_DECODER_SAMPLES``); only with ``estimator="bound"``.
            max_tiles, tile_seed: see :class:`ScoringPlan` (``None``: every tile; the library's default).

        Raises:
            ValueError: a model for continuous data; an unknown estimator, solver, method, divergence or
                dequantization; options that conflict (each message says which to drop or add); the calibrated
                schedule or the variational dequantizer asked of a model without one.
        """
        if pipe.num_levels is None:
            raise ValueError("this model is for continuous data (num_levels is None): bits/dim of integer data does "
                             "not apply; use log_likelihood().")
        check_choices(("estimator", estimator, ESTIMATORS), ("solver", solver, SOLVES),
                      ("divergence", divergence, DIVERGENCES), ("dequantization", dequantization, DEQUANTIZATIONS))
        for name, value in (("num_repeats", num_repeats), ("max_batch_size", max_batch_size),
                            ("max_tiles", max_tiles)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if dequantization == "variational" and pipe.dequantizer is None:
            raise ValueError("this model has no variational dequantizer: train one with python -m scorezoo.training "
                             "--task dequantizer --pretrained <model> (docs/dequantization.md), or use uniform "
                             "dequantization.")
        tiles = pipe.tiles_larger_images and tile is not False or tile is True
        repeats = int(num_repeats) if num_repeats is not None else 1 if tiles else DEFAULT_REPEATS
        if isinstance(tile_seed, bool) or int(tile_seed) != tile_seed:
            raise ValueError(f"tile_seed must be an integer, got {tile_seed!r}.")
        common = {"num_repeats": repeats, "tile": tile, "dequantization": dequantization,
                  "max_batch_size": int(max_batch_size), "max_tiles": None if max_tiles is None else int(max_tiles),
                  "tile_seed": int(tile_seed)}
        ode_options = {"method": method, "step_size": step_size, "rtol": rtol, "atol": atol, "backend": backend,
                       "time_variable": time_variable}
        if estimator == "bound":
            given = [n for n, v in (("solver", None if solver == "auto" else solver), *ode_options.items(),
                                    ("divergence", None if divergence == "auto" else divergence),
                                    ("num_probes", num_probes), ("probe", probe), ("bits map", bits_map or None))
                     if v is not None]
            if given:
                raise ValueError(f"the likelihood bound solves no ODE: drop {', '.join(given)} (or the bound).")
            return cls("bound", None, None, **common,
                       num_time_points=BOUND_TIME_POINTS if num_time_points is None else int(num_time_points),
                       num_decoder_samples=BOUND_DECODER_SAMPLES if num_decoder_samples is None
                       else int(num_decoder_samples))
        if num_time_points is not None or num_decoder_samples is not None:
            raise ValueError("num_time_points and num_decoder_samples are the bound's: drop them, or use "
                             "estimator='bound'.")
        settings = SolverSettings.choose(pipe.likelihood_schedule, solver=solver, **ode_options)
        if divergence == "auto":
            # a fully convolutional model scores whole pictures, far larger than the size it was trained on
            small = pipe.dim <= AUTO_EXACT_MAX_DIM and not pipe.max_tile_size
            divergence = "exact" if small else "hutchinson"
        if divergence == "exact" and (num_probes is not None or probe is not None):
            raise ValueError("the exact divergence draws no probes: drop num_probes and probe.")
        return cls("ode", settings, divergence, num_probes=num_probes, probe=probe, bits_map=bool(bits_map),
                   **common)

    def replace(self, **changes) -> "ScoringPlan":
        """A copy with ``changes`` (fields of the plan), e.g. another ``max_batch_size``."""
        return replace(self, **changes)

    @property
    def nfe(self) -> int | None:
        """Score evaluations of one solve when fixed in advance (a calibrated schedule), else ``None``."""
        sch = None if self.solver is None else self.solver.schedule
        return None if sch is None else sch.nfe

    def likelihood_kwargs(self) -> dict:
        """The keyword arguments of :func:`scorezoo.likelihood.log_likelihood` (or of the bound) of this plan."""
        if self.estimator == "bound":
            return {"num_time_points": self.num_time_points, "num_decoder_samples": self.num_decoder_samples}
        kw = {"settings": self.solver, "divergence": self.divergence, "per_dimension": self.bits_map}
        if self.divergence == "hutchinson":
            kw.update(num_probes=self.num_probes, probe=self.probe)
        return kw

    def describe(self) -> str:
        """The estimator in words (one line)."""
        if self.estimator == "bound":
            text = (f"the likelihood bound (Song et al. 2021, Thm. 3; {self.num_time_points} stratified time points, "
                    f"{self.num_decoder_samples} decoder draws)")
        else:
            text = f"probability-flow ODE ({self.solver.describe()}), {self.divergence} divergence"
        text += (f", {self.num_repeats} {self.dequantization} dequantization draw(s) per picture (per patch "
                 "when tiled)")
        if self.max_tiles is not None:
            text += (f"; a picture of more than {self.max_tiles} tiles is scored on a random sample of "
                     f"{self.max_tiles} of them (seed {self.tile_seed}): an estimate, with its standard error")
        return text

    def to_dict(self) -> dict:
        """The plan as JSON."""
        out = {"estimator": self.estimator}
        if self.estimator == "ode":
            out.update(self.solver.to_dict())
            out["divergence"] = self.divergence
            if self.divergence == "hutchinson":
                out.update(num_probes=self.num_probes or 1, probe=self.probe or "rademacher")
        else:
            out.update(num_time_points=self.num_time_points, num_decoder_samples=self.num_decoder_samples)
        out.update(num_repeats=self.num_repeats, tile=self.tile, dequantization=self.dequantization,
                   bits_map=self.bits_map, max_batch_size=self.max_batch_size, max_tiles=self.max_tiles,
                   tile_seed=self.tile_seed)
        return out


def plan_from_options(pipe: "ScorePipeline", *, schedule: str | None = None, options: dict | None = None,
                      solver: str | None = None, per_dimension: bool = False, **kwargs) -> ScoringPlan:
    """The :class:`ScoringPlan` of :meth:`ScorePipeline.bits_per_dim <scorezoo.pipeline.ScorePipeline.bits_per_dim>`'s
    keyword arguments, with the library's defaults: the adaptive solver unless ``schedule="calibrated"`` (a
    fixed-step one for a fixed-step ``method``); ``solver`` names the ODE library there (``backend`` here),
    ``options={"step_size": h}`` the step and ``per_dimension`` the bits map.

    Raises:
        ValueError: as :meth:`ScoringPlan.create`, and for an unknown ``schedule`` or ``options`` key.
    """
    if schedule not in (None, "calibrated"):
        raise ValueError(f"schedule must be 'calibrated' or None (the adaptive solver), got {schedule!r}.")
    if options:
        unknown = sorted(set(options) - {"step_size"})
        if unknown:
            raise ValueError(f"options takes only 'step_size' (a fixed-step method's step), got {unknown}.")
        kwargs["step_size"] = options["step_size"]
    method = kwargs.get("method")
    kind = "calibrated" if schedule else "fixed" if method is not None and method in SOLVERS and \
        not SOLVERS[method].adaptive else "auto" if kwargs.get("estimator") == "bound" else "adaptive"
    return ScoringPlan.create(pipe, solver=kind, backend=solver, bits_map=per_dimension, **kwargs)
