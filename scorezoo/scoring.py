"""How a picture is scored: one plan, made once from the user's options and the model, and the one function that
carries it out.

:class:`ScoringPlan` holds every choice of a bits/dim computation (estimator, solver and its steps or tolerances,
divergence, dequantization draws, tiling, dequantization, batch size) and refuses, in :meth:`ScoringPlan.create`,
every combination that conflicts. ``scorezoo bpd``, ``scorezoo eval``, the demo and
:meth:`ScorePipeline.bits_per_dim <scorezoo.pipeline.ScorePipeline.bits_per_dim>` all make their plan here, so an
option means the same everywhere and the same picture with the same options and seed gets the same number from each.

:func:`score_images` walks the pictures in a straight line: file -> :mod:`scorezoo.data` (decode, resize or tile,
quantise) -> :mod:`scorezoo.dequantization` (uniform noise, or ``u ~ q(u | k)`` of the variational dequantizer) ->
:mod:`scorezoo.likelihood` (the probability-flow ODE with the model's score, or the bound) -> bits/dim per image.

Randomness: draw ``j`` of image ``i`` has its own generator, seeded by :func:`draw_seed` from ``(seed, i, j)``
(:func:`draw_generators`); it draws that draw's dequantization noise and then its Hutchinson probes. An image's
numbers therefore do not depend on the other images of the call, their number or the batch size (beyond the float
rounding of batched kernels), which is what lets ``scorezoo eval`` split a data set over processes and resume it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .dequantization import bits_per_dim as _bits_per_dim
from .dequantization import dequantize
from .likelihood.ode import short_repr
from .likelihood.solvers import SOLVE_KINDS, SOLVERS, SolverSettings
from .utils import Generators, check_generator, generator_rows, rand

if TYPE_CHECKING:
    from .pipeline import ScorePipeline

__all__ = ["choose_model", "SMALL_GRAYSCALE", "ScoringPlan", "BitsPerDimResult", "score_images", "draw_seed",
           "draw_generators", "plan_from_options", "ESTIMATORS", "SOLVES", "DIVERGENCES", "DEQUANTIZATIONS",
           "AUTO_EXACT_MAX_DIM", "DEFAULT_REPEATS", "BOUND_TIME_POINTS", "BOUND_DECODER_SAMPLES"]

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
#: the likelihood bound's time points per image and decoder draws (:func:`scorezoo.likelihood.likelihood_bound`)
BOUND_TIME_POINTS, BOUND_DECODER_SAMPLES = 1000, 16


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
    from .data import is_colour, open_image

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


def draw_seed(seed: int, index: int, draw: int) -> int:
    """The seed of image ``index``'s dequantization draw ``draw``: a hash of the three alone (numpy's
    SeedSequence), so that its noise and probes are the same whatever process, batch or run scores it."""
    hi, lo = np.random.SeedSequence([seed, index, draw]).generate_state(2, np.uint32)
    return (int(hi) << 32 | int(lo)) >> 1  # 63 bits: torch.Generator.manual_seed takes any of them


def draw_generators(seed: int, indices, num_repeats: int) -> list[torch.Generator]:
    """``len(indices) * num_repeats`` CPU generators, draw ``j`` of image ``indices[k]`` at ``k * num_repeats + j``
    (the order :meth:`ScorePipeline.bits_per_dim <scorezoo.pipeline.ScorePipeline.bits_per_dim>` takes)."""
    return [torch.Generator().manual_seed(draw_seed(seed, int(i), j)) for i in indices for j in range(num_repeats)]


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

    @classmethod
    def create(cls, pipe: "ScorePipeline", *, estimator: str = "ode", solver: str = "auto",
               method: str | None = None, step_size: float | None = None, rtol: float | None = None,
               atol: float | None = None, backend: str | None = None, time_variable: str | None = None,
               divergence: str = "auto", num_probes: int | None = None, probe: str | None = None,
               num_repeats: int | None = None, tile: bool | None = None, dequantization: str = "uniform",
               bits_map: bool = False, max_batch_size: int = 64, num_time_points: int | None = None,
               num_decoder_samples: int | None = None) -> "ScoringPlan":
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
            divergence: ``"auto"`` (exact up to :data:`AUTO_EXACT_MAX_DIM` dimensions, else Hutchinson), ``"exact"``
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

        Raises:
            ValueError: a model for continuous data; an unknown estimator, solver, method, divergence or
                dequantization; options that conflict (each message says which to drop or add); the calibrated
                schedule or the variational dequantizer asked of a model without one.
        """
        if pipe.num_levels is None:
            raise ValueError("this model is for continuous data (num_levels is None): bits/dim of integer data does "
                             "not apply; use log_likelihood().")
        for name, value, choices in (("estimator", estimator, ESTIMATORS), ("solver", solver, SOLVES),
                                     ("divergence", divergence, DIVERGENCES),
                                     ("dequantization", dequantization, DEQUANTIZATIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
        for name, value in (("num_repeats", num_repeats), ("max_batch_size", max_batch_size)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if dequantization == "variational" and pipe.dequantizer is None:
            raise ValueError("this model has no variational dequantizer: train one with python -m scorezoo.training "
                             "--task dequantizer --pretrained <model> (docs/dequantization.md), or use uniform "
                             "dequantization.")
        tiles = pipe.tiles_larger_images and tile is not False or tile is True
        repeats = int(num_repeats) if num_repeats is not None else 1 if tiles else DEFAULT_REPEATS
        common = {"num_repeats": repeats, "tile": tile, "dequantization": dequantization,
                  "max_batch_size": int(max_batch_size)}
        ode_options = {"method": method, "step_size": step_size, "rtol": rtol, "atol": atol, "backend": backend,
                       "time_variable": time_variable}
        if estimator == "bound":
            given = [n for n, v in (("solver", None if solver == "auto" else solver), *ode_options.items(),
                                    ("divergence", None if divergence == "auto" else divergence),
                                    ("num_probes", num_probes), ("probe", probe), ("bits map", bits_map or None))
                     if v is not None]
            if given:
                raise ValueError(f"the likelihood bound solves no ODE: drop {', '.join(given)} (or the bound).")
            return cls("bound", None, None, num_repeats=repeats, tile=tile, dequantization=dequantization,
                       max_batch_size=int(max_batch_size),
                       num_time_points=BOUND_TIME_POINTS if num_time_points is None else int(num_time_points),
                       num_decoder_samples=BOUND_DECODER_SAMPLES if num_decoder_samples is None
                       else int(num_decoder_samples))
        if num_time_points is not None or num_decoder_samples is not None:
            raise ValueError("num_time_points and num_decoder_samples are the bound's: drop them, or use "
                             "estimator='bound'.")
        if solver not in SOLVES:
            raise ValueError(f"solver must be one of {', '.join(SOLVES)}; got {solver!r}.")
        settings = SolverSettings.choose(pipe.likelihood_schedule, solver=solver, **ode_options)
        if divergence == "auto":
            divergence = "exact" if pipe.dim <= AUTO_EXACT_MAX_DIM else "hutchinson"
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
        return text + (f", {self.num_repeats} {self.dequantization} dequantization draw(s) per picture (per patch "
                       "when tiled)")

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
                   bits_map=self.bits_map, max_batch_size=self.max_batch_size)
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


@dataclass(repr=False)
class BitsPerDimResult:
    """Bits/dim of a batch of pictures (:func:`score_images`): one entry per image.

    An image is scored as one model-size input (resized if needed) or, when tiled, as the mean over its
    model-size patches at its own resolution; a patch's bits/dim is the mean over ``num_repeats`` dequantization
    draws.

    Attributes:
        bpd: ``(B,)`` bits/dim per image (a tiled image's mean over its patches, i.e. its total bits over the pixels
            scored).
        stderr: ``(B,)`` standard error of ``bpd``: over the draws for an untiled image (NaN when
            ``num_repeats == 1``), over the patches for a tiled one. It covers the dequantization noise and, with
            Hutchinson's divergence, the probe noise (each draw has its own probe).
        nfe: ``(B,)`` score evaluations of the solve that scored the image (the largest over its solves when
            tiled; one evaluation scores every sample of a solve once); 0 for the bound.
        bpd_repeats: ``(num_repeats, B)`` bits/dim of each draw (a tiled image's mean over its patches).
        transforms: per image, the preprocessing applied, and for a tiled image how it was tiled.
        num_patches: ``(B,)`` patches scored per image (1 when not tiled).
        pixels_scored: ``(B,)`` pixels scored per image (the model's H × W when not tiled).
        times: ``(N,)`` the ODE times of ``bpd_path`` (with ``times=`` or a schedule), else ``None``.
        bpd_path: ``(N, num_repeats, B)``: the bits/dim the probability flow has accounted for by each of ``times``
            (the divergence integral from eps, in bits/dim, a tiled image's mean over its patches), else ``None``.
        bits_maps: with a bits map, per image the bits of each dimension ``(C, H', W')`` at the scored size (mean
            over the draws); their mean is ``bpd``. Else ``None``.
        tiled: per image, whether it was tiled.
    """

    bpd: torch.Tensor
    stderr: torch.Tensor
    nfe: torch.Tensor
    bpd_repeats: torch.Tensor
    transforms: list[str] = field(default_factory=list)
    num_patches: torch.Tensor | None = None
    pixels_scored: torch.Tensor | None = None
    times: torch.Tensor | None = None
    bpd_path: torch.Tensor | None = None
    bits_maps: list[torch.Tensor] | None = None
    tiled: list[bool] = field(default_factory=list)

    __repr__ = short_repr


@dataclass
class _Input:
    """One picture as the model takes it: ``patches (N, *S)`` levels (one when not tiled), its transform in words,
    and its tile grid ``(rows, cols)`` when tiled."""

    patches: torch.Tensor
    transform: str
    grid: tuple[int, int] | None = None


def _inputs(pipe: "ScorePipeline", images: Any, tile: bool | None, invert: bool) -> list[_Input]:
    """Each image as model-size input(s): resized (:func:`scorezoo.data.to_levels`), or cut into the model's tiles at
    its own resolution (:func:`scorezoo.data.tile_levels`) when ``tile`` says so or the model tiles pictures at
    least as large as itself.

    Raises:
        ValueError: ``tile=True`` for arrays of levels, a picture smaller than one tile with ``tile=True``, or what
            :mod:`scorezoo.data` refuses (unreadable files, bad arrays).
    """
    from .data import is_picture, load_image, tile_levels, to_levels

    if tile is True and not is_picture(images):
        raise ValueError("tile=True needs pictures (file paths or PIL images), not arrays of levels.")
    if is_picture(images) and len(pipe.data_shape) == 3:
        images = _open_once(images, pipe.data_shape)
    if tile is False or not is_picture(images) or (tile is None and not pipe.tiles_larger_images):
        levels, transforms = to_levels(images, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=invert)
        return [_Input(levels[i:i + 1], transforms[i]) for i in range(len(levels))]
    if len(pipe.data_shape) != 3:
        raise ValueError(f"this model's data are not images (shape {pipe.data_shape}): pass an array.")
    items = [images] if not isinstance(images, (list, tuple)) else list(images)
    if not items:
        raise ValueError("empty batch: give at least one image.")
    c, h, w = pipe.data_shape
    out = []
    for item in items:
        full = load_image(item, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=invert, resize=False)
        if tile or (full.levels.shape[1] >= h and full.levels.shape[2] >= w):
            tiles = tile_levels(full.levels, (h, w))
            out.append(_Input(tiles.patches, f"{full.transform}; tiled at its own resolution: {tiles.border}",
                              tiles.grid))
        else:
            li = load_image(item, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=invert)
            out.append(_Input(li.levels[None], li.transform))
    return out


def _open_once(images, data_shape) -> list:
    """Decode each picture file once (PIL images pass through) and refuse a picture smaller than the model on either
    side: it would be upscaled, and its bits/dim would be those of pixels the upscale invented."""
    from .data import open_image

    c, h, w = data_shape
    out = []
    for item in images if isinstance(images, (list, tuple)) else [images]:
        named = isinstance(item, (str, os.PathLike))
        img = open_image(item) if named else item
        if img.width < w or img.height < h:
            name = str(item) if named else "the picture"
            raise ValueError(f"{name} is {img.width}×{img.height}, smaller than the model's {w}×{h}: scoring it would "
                             "mean upscaling it, and the bits/dim would be those of invented pixels; give a picture of "
                             f"at least {w}×{h}, or a model of smaller pictures.")
        out.append(img)
    return out


def score_images(pipe: "ScorePipeline", images: Any, plan: ScoringPlan, *, generator: Generators = None,
                 invert: bool = False, times: torch.Tensor | None = None) -> BitsPerDimResult:
    """Bits/dim of integer images under ``pipe``, carried out as ``plan`` says.

    For each draw ``u`` (uniform, or ``u ~ q(u | k)`` of the model's dequantizer), the levels ``k`` become
    ``x = lo + (hi - lo)(k + u) / K`` and ``bpd = (-log p_eps(x) + log q(u | k) - D log((hi - lo) / K)) / (D ln 2)``
    (:func:`scorezoo.dequantization.bits_per_dim`; Theis et al. 2016; Ho et al. 2019, eq. 11); the result is the
    mean over the draws (and over the patches of a tiled picture) with its standard error.

    Args:
        pipe: the model.
        images: integer levels ``(B, H, W)``, ``(B, H, W, C)`` or ``(B, C, H, W)``, images in [0, 1], PIL images or
            file paths (:mod:`scorezoo.data`).
        plan: a :class:`ScoringPlan` for ``pipe``.
        generator: one CPU generator for the call, or ``B * num_repeats`` of them (draw ``j`` of image ``i`` at
            ``i * num_repeats + j``, e.g. :func:`draw_generators`): each draws its dequantization noise and then its
            probes (those of all its patches, in order, when tiled).
        invert: pictures only: ``v -> 1 - v`` (:func:`scorezoo.data.load_image`).
        times: ODE times at which to report the bits/dim accounted for so far (``bpd_path``); not with a schedule,
            which reports at its own steps.

    Returns:
        :class:`BitsPerDimResult`.

    Raises:
        ValueError: bad images (shape, values, unreadable files, a picture smaller than one patch with ``tile=True``),
            a wrong number of generators, options the solver refuses.
    """
    from .likelihood import likelihood_bound, log_likelihood

    inputs = _inputs(pipe, images, plan.tile, invert)
    owner = torch.cat([torch.full((len(p.patches),), i, dtype=torch.long) for i, p in enumerate(inputs)])
    levels = torch.cat([p.patches for p in inputs])
    n, b, r = len(levels), len(inputs), plan.num_repeats
    check_generator(generator, b * r)
    # all draws first, so that one solve holds every draw of its inputs; with per-draw generators, row (p, j) of
    # the noise (input p, draw j) is drawn from generator[owner[p] * r + j]
    v = torch.stack([rand(levels.shape, generator=generator_rows(generator, owner * r + j), device=levels.device,
                          dtype=pipe.dtype) for j in range(r)], 1)
    if plan.dequantization == "variational":
        from .dequantization.variational import sample_dequantization

        u, log_q = sample_dequantization(pipe.dequantizer, levels, v, plan.max_batch_size)
    else:
        u, log_q = v, None
    x = dequantize(levels[:, None], u, num_levels=pipe.num_levels, data_range=pipe.data_range)
    bpd = torch.empty(n, r, dtype=torch.float64)
    nfe = torch.zeros(n, dtype=torch.long)
    per_dim, paths, path_times = [], [], None
    nats_per_bit = pipe.dim * math.log(2)
    # the dequantization offset, bits per dimension
    off = _bits_per_dim(torch.zeros(1, dtype=torch.float64), pipe.dim, num_levels=pipe.num_levels,
                        data_range=pipe.data_range).item()
    kwargs = plan.likelihood_kwargs()
    for sl, gen in _solves(owner, r, plan.max_batch_size, generator, pipe):
        xb = x[sl].flatten(0, 1).to(pipe.device)
        if plan.estimator == "ode":
            res = log_likelihood(pipe.model, pipe.sde, xb, eps=pipe.eps, generator=gen, times=times, **kwargs)
            logp, nfe[sl] = res.logp, res.nfe
            if res.logp_per_dim is not None:
                pd = -res.logp_per_dim.double().cpu() / math.log(2) + off
                if log_q is not None:
                    pd = pd + log_q[sl].flatten(0, 1) / math.log(2)
                per_dim.append(pd.view(len(sl), r, *pipe.data_shape).mean(1))
            if res.delta_logp_path is not None:
                path_times = res.times.cpu()
                paths.append((-res.delta_logp_path.double().cpu() / nats_per_bit).view(-1, len(sl), r))
        else:
            logp = -likelihood_bound(pipe.model, pipe.sde, xb, eps=pipe.eps, generator=gen, **kwargs).nll
        lq = None if log_q is None else log_q[sl].flatten(2).sum(2).flatten()
        bpd[sl] = _bits_per_dim(logp.double().cpu(), pipe.dim, num_levels=pipe.num_levels,
                                data_range=pipe.data_range, log_q=lq).view(len(sl), r)
    return _per_image(pipe, inputs, owner, bpd, nfe, per_dim, paths, path_times)


def _solves(owner: torch.Tensor, r: int, max_batch_size: int, generator: Generators, pipe: "ScorePipeline"):
    """``(input indices, their draws' generators)`` of each solve: at most ``max_batch_size`` inputs × draws, all
    the draws of an input in one solve; a progress bar over the solves when there are several."""
    from .progress import progress_bar

    chunks = torch.arange(len(owner)).split(max(1, int(max_batch_size) // r))
    bar = progress_bar(chunks, total=len(chunks), desc="bits/dim", unit="solve",
                       **{"delay": 1.0, "leave": False, "disable": len(chunks) < 2, **pipe.progress_bar_config})
    for sl in bar:
        yield sl, generator_rows(generator, (owner[sl, None] * r + torch.arange(r)).flatten())


def _per_image(pipe, inputs: list[_Input], owner: torch.Tensor, bpd: torch.Tensor, nfe: torch.Tensor,
               per_dim: list, paths: list, times) -> BitsPerDimResult:
    """Gather the per-input results ``bpd (N, R)`` into per-image means, standard errors, maps and paths."""
    b, r = len(inputs), bpd.shape[1]
    count = torch.bincount(owner, minlength=b).double()

    def per_image(v: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (b, ...)
        return torch.zeros(b, *v.shape[1:], dtype=torch.float64).index_add_(0, owner, v.double()) / \
            count.view(-1, *([1] * (v.dim() - 1)))

    repeats = per_image(bpd).T
    mean = repeats.mean(0)
    spread = per_image((bpd.mean(1) - mean[owner]) ** 2) * count / (count - 1).clamp_min(1)
    stderr = torch.where(count > 1, (spread / count).sqrt(),
                         repeats.std(0) / math.sqrt(r) if r > 1 else torch.full((b,), float("nan")))
    maps = None
    if per_dim:
        from .data import untile

        per_dim = torch.cat(per_dim)
        maps = [untile(per_dim[owner == i], p.grid) if p.grid else per_dim[owner == i][0]
                for i, p in enumerate(inputs)]
    path = per_image(torch.cat(paths, 1).permute(1, 2, 0)).permute(2, 1, 0) if paths else None
    pixels = math.prod(pipe.data_shape[1:]) if len(pipe.data_shape) == 3 else 1
    return BitsPerDimResult(
        bpd=mean, stderr=stderr.double(), nfe=torch.zeros(b, dtype=torch.long).scatter_reduce(0, owner, nfe, "amax"),
        bpd_repeats=repeats, transforms=[p.transform for p in inputs], num_patches=count.long(),
        pixels_scored=count.long() * pixels, times=times, bpd_path=path, bits_maps=maps,
        tiled=[p.grid is not None for p in inputs])
