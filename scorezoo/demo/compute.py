"""What the demo computes, without Gradio or matplotlib: its settings and context, the solver it uses, and one
library call per uploaded file. The models it serves are in :mod:`scorezoo.demo.models` (whose names are importable
from here too).

Every number the app shows comes from :meth:`~scorezoo.pipeline.ScorePipeline.bits_per_dim` (one call per file:
the bits/dim, its standard error, the bits accumulated along ODE time and the per-pixel bits map), from the
pipeline's samplers and ``log_likelihood``, or from the registry (:func:`scorezoo.zoo.registry`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import zoo
from ..compression import CODECS, codec_available, lossless_bits_per_dim
from ..data import background_is_light, load_image, untile
from ..dequantization import bits_per_dim
from ..likelihood.solvers import SolverSettings
from ..pipeline import ScorePipeline
from ..scoring import DEFAULT_MAX_TILES, ScoringPlan
from ..utils import cpu_count
from .models import (REGISTRY_HEADERS, ModelEntry, PipelineCache, card_markdown, folder_model, registry_rows,
                     takes_colour, zoo_models)

__all__ = ["DemoSettings", "ModelEntry", "zoo_models", "folder_model", "takes_colour", "card_markdown",
           "registry_rows", "REGISTRY_HEADERS", "PipelineCache", "DemoContext", "AUTO", "SOLVER_KEYS",
           "solver_for", "plan_for", "choose_model", "ImageScore", "score_file", "density_grid"]


@dataclass
class DemoSettings:
    """Limits and solver options of the app.

    Attributes:
        ode_kwargs: the solver's options for every model (:data:`SOLVER_KEYS`: ``solver``, ``method``, ``rtol``,
            ``atol``, ``step_size``, ``backend``, ``time_variable``, as :meth:`scorezoo.scoring.ScoringPlan.create`
            takes them); ``None`` (default): per model, its calibrated schedule when it has one and ``use_schedule``
            is set, else the adaptive solver at ``tol`` (see :func:`plan_for`).
        tol: rtol and atol of the adaptive solver (dopri5) for models without a calibrated schedule. 1e-4 instead
            of the library's 1e-5 makes the digits models' 4-draw bits/dim ~3x cheaper (~150 instead of ~500 score
            evaluations) and moves it by at most ~0.003 bits/dim, 20x below the standard error over the draws.
        use_schedule: take a model's calibrated schedule when it has one (fixed steps: fast, and each file's
            answer independent of the batch).
        max_patch_batch: patches of a tiled photo per ODE solve (bounds the memory).
        max_tiles: a photo of more tiles is scored on a random sample of this many, drawn from the request's seed
            (:attr:`scorezoo.scoring.ScoringPlan.max_tiles`): an estimate with its standard error, in bounded
            time, as ``scorezoo bpd`` does by default; ``None`` scores every tile.
        max_files: images per request.
        max_file_size: upload limit, as Gradio's ``launch(max_file_size=...)``.
        max_batch, max_steps, max_repeats: upper ends of the sliders, enforced on the server too.
        default_repeats: dequantization draws per picture when none are asked for (``num_repeats=0``, the page's
            *auto*); a model of photo patches takes one per patch instead (a tiled photo's standard error is over its
            patches), as ``scorezoo bpd`` does.
        max_points: upper end of the batch slider for a 2-D model (points are cheap, and a few hundred are
            needed to see the density's shape).
        density_grid: points per side of the 2-D density heatmap.
        trajectory_points: times on [eps, T] at which the bits accumulated along the ODE are plotted (adaptive and
            fixed-step solvers; a schedule reports them at its own steps).
        concurrency_limit: requests served at once (default: the cores this process may use), each running torch
            with ``torch_threads`` threads.
        torch_threads: torch's intra-op threads per request: 1, so that concurrent requests use one core each
            instead of fighting over all of them.
        queue_size: requests that may wait.
    """

    ode_kwargs: dict | None = None
    tol: float = 1e-4
    use_schedule: bool = True
    max_patch_batch: int = 256
    max_tiles: int | None = DEFAULT_MAX_TILES
    max_files: int = 16
    max_file_size: str = "5mb"
    max_batch: int = 64
    max_points: int = 2048
    max_steps: int = 2000
    max_repeats: int = 16
    default_repeats: int = 4
    density_grid: int = 64
    trajectory_points: int = 51
    concurrency_limit: int = field(default_factory=cpu_count)
    torch_threads: int = 1
    queue_size: int = 32


@dataclass
class DemoContext:
    """What every tab needs: the listed models, the served ones, the defaults, the settings and the pipelines.

    Attributes:
        models: every listed model (the Models tab).
        names: the served ones (those with a local copy), in the order of ``models``.
        default: the model selected first, and the one for grayscale pictures.
        photo_default: the model for colour pictures, or ``None`` (then they get ``default``).
    """

    models: list[ModelEntry]
    names: list[str]
    default: str
    photo_default: str | None
    settings: DemoSettings
    pipelines: PipelineCache

    @classmethod
    def create(cls, models: list[ModelEntry], default: str | None = None, photo_default: str | None = None,
               settings: DemoSettings | None = None) -> "DemoContext":
        """Check the models and fill in the defaults: ``default`` is the zoo's default model
        (:func:`scorezoo.zoo.default_model`) when it is served, else the first served model; ``photo_default`` is
        the zoo's photo model (:func:`scorezoo.zoo.default_photo_model`) when it is served, else ``None``.

        Raises:
            ValueError: no model to serve, two models of one name, or a default not among the served ones.
        """
        by_name = {m.name: m for m in models}
        if len(by_name) < len(models):
            raise ValueError(f"two models share a name: {sorted(m.name for m in models)}.")
        names = [m.name for m in models if m.source is not None]
        if not names:
            raise ValueError("no models to serve: none bundled or cached, and none given (pass --model FOLDER).")
        infos = [m.info for m in models]
        if default is None:
            default = zoo.default_model(infos)
            default = default if default in names else names[0]
        if photo_default is None:
            photo_default = zoo.default_photo_model(infos)
            photo_default = photo_default if photo_default in names else None
        for what, name in (("default", default), ("photo", photo_default)):
            if name is not None and name not in names:
                raise ValueError(f"{what} model {name!r} is not among the served models {names}.")
        return cls(models, names, default, photo_default, settings or DemoSettings(),
                   PipelineCache({n: by_name[n] for n in names}))

    def model(self, name: str) -> ModelEntry:
        """The listed model ``name``.

        Raises:
            ValueError: an unknown name.
        """
        found = next((m for m in self.models if m.name == name), None)
        if found is None:
            raise ValueError(f"unknown model {name!r}.")
        return found


# -- the solver ----------------------------------------------------------------------------------------
#: what ``DemoSettings.ode_kwargs`` may set: the solver's options of :meth:`scorezoo.scoring.ScoringPlan.create`
SOLVER_KEYS = ("solver", "method", "rtol", "atol", "step_size", "backend", "time_variable")


def _solver_options(pipe: ScorePipeline, settings: DemoSettings) -> dict:
    """The solver options of the app's :class:`~scorezoo.scoring.ScoringPlan` for ``pipe``: ``settings.ode_kwargs``
    when given; else the model's calibrated schedule when it has one (fixed steps: fast, and each file's answer
    independent of its batch) and ``settings.use_schedule``; else the adaptive solver at ``settings.tol``.

    Raises:
        ValueError: ``settings.ode_kwargs`` with other than the solver's options (:data:`SOLVER_KEYS`).
    """
    if settings.ode_kwargs is not None:
        other = sorted(set(settings.ode_kwargs) - set(SOLVER_KEYS))
        if other:
            raise ValueError(f"DemoSettings.ode_kwargs takes the solver's options {SOLVER_KEYS}, not {other}: the "
                             "divergence follows the model, the draws and the seed come from the page.")
        return dict(settings.ode_kwargs)
    if pipe.likelihood_schedule is not None and settings.use_schedule:
        return {"solver": "calibrated"}
    return {"solver": "adaptive", "rtol": settings.tol, "atol": settings.tol}


def solver_for(pipe: ScorePipeline, settings: DemoSettings) -> SolverSettings:
    """The app's ODE solver for ``pipe`` (:func:`plan_for`'s), e.g. for the density of a 2-D model.

    Raises:
        ValueError: bad ``settings.ode_kwargs``.
    """
    from ..likelihood.solvers import SolverSettings

    kw = _solver_options(pipe, settings)
    if kw.pop("solver", None) == "calibrated":
        return SolverSettings.create(schedule=pipe.likelihood_schedule)
    return SolverSettings.create(**kw)


def plan_for(pipe: ScorePipeline, settings: DemoSettings, *, num_repeats: int = 0, bits_map: bool = True,
             dequantization: str = "uniform") -> ScoringPlan:
    """The :class:`~scorezoo.scoring.ScoringPlan` the app scores a picture with: the solver of
    ``_solver_options``, the divergence's ``auto`` rule, ``num_repeats`` draws (0: the plan's default, 1 per patch
    for a model of photo patches, else ``settings.default_repeats``), at most ``settings.max_patch_batch`` inputs per
    solve.

    Raises:
        ValueError: options the plan refuses (e.g. ``"variational"`` for a model without a dequantizer).
    """
    from ..scoring import ScoringPlan

    repeats = num_repeats or (None if pipe.tiles_larger_images else settings.default_repeats)
    plan = ScoringPlan.create(pipe, **_solver_options(pipe, settings), num_repeats=repeats, bits_map=bits_map,
                              dequantization=dequantization, max_batch_size=settings.max_patch_batch,
                              max_tiles=settings.max_tiles)
    return plan.replace(max_batch_size=max(settings.max_patch_batch, plan.num_repeats))


# -- the Likelihood tab ----------------------------------------------------------------------------------
#: the model dropdown's entry that picks a model per picture
AUTO = "auto"


def choose_model(file: str | Path, ctx: DemoContext) -> tuple[str, str]:
    """``(model, why)`` for a picture under the ``auto`` choice, by the rule of ``scorezoo bpd`` and ``scorezoo eval``
    (:func:`scorezoo.scoring.choose_model`) over the served models: a small grayscale picture gets the default model,
    a colour picture of a served size model's size (:func:`scorezoo.zoo.size_models`) that model, any other the
    photo model (or the default model when none is served).

    Raises:
        ValueError: a file that cannot be read.
    """
    from ..scoring import choose_model as choose

    served = [m.info for m in ctx.models if m.name in ctx.names]
    return choose(str(file), default=ctx.default, photo=ctx.photo_default, small_colour=zoo.size_models(served))


@dataclass
class ImageScore:
    """The Likelihood tab's result for one file, all from one ``pipe.bits_per_dim`` call.

    Attributes:
        name: the file's name; model: the model that scored it; why: why it was chosen (``""`` when picked).
        transform: how the file became the model's input, with how a tiled photo's border was handled.
        bpd, stderr: bits/dim and its standard error (over the draws; over the patches for a tiled photo; NaN
            for one draw of an untiled picture).
        num_repeats: dequantization draws (per patch when tiled); bpd_repeats: bits/dim of each.
        nfe: score evaluations of the solve; seconds: wall time of the call.
        pixels_scored, num_patches: as :class:`~scorezoo.pipeline.BitsPerDimResult`.
        levels: ``(C, H, W)`` the pixels scored (the model's input, or the photo cropped to its whole patches).
        num_levels: K of the model.
        bits_map: ``(C, H, W)`` bits of each scored value (mean over the draws), or ``None``; its mean is ``bpd``.
        times: ``(N,)`` ODE times of ``bpd_path``; bpd_path: ``(N, R)`` bits/dim accounted for by the flow up to
            each time, per draw (0 at eps; at T the flow's share of ``bpd``).
        dequantization_bpd: the dequantization offset ``log2(K / (hi - lo))`` in bits/dim (the rest of ``bpd``
            is the prior's share).
        lossless: by codec (those available here), bits/dim of the lossless coder for the same pixels; ``None``
            for models of other than 256 levels.
        light_background: a digits model's input with a light border (dark ink on paper: suggests ``invert``).
        divergence: ``"exact"`` or ``"hutchinson"``.
        call: the library call that gives these numbers.
    """

    name: str
    model: str
    why: str
    transform: str
    bpd: float
    stderr: float
    num_repeats: int
    bpd_repeats: list[float]
    nfe: int
    seconds: float
    pixels_scored: int
    num_patches: int
    levels: torch.Tensor
    num_levels: int
    bits_map: torch.Tensor | None
    times: torch.Tensor | None
    bpd_path: torch.Tensor | None
    dequantization_bpd: float
    lossless: dict[str, float | None]
    light_background: bool
    divergence: str
    call: str
    plan: dict = field(default_factory=dict)
    total_patches: int = 1

    @property
    def estimate(self) -> bool:
        """Whether the bits/dim is an estimate from a sample of the photo's tiles."""
        return self.total_patches > self.num_patches

    def as_dict(self) -> dict:
        """The JSON of the app's raw results (no tensors)."""
        return {"file": self.name, "model": self.model, "chosen_because": self.why or None,
                "transform": self.transform, "bpd": self.bpd, "stderr": None if math.isnan(self.stderr) else
                self.stderr, "bpd_repeats": self.bpd_repeats, "nfe": self.nfe, "seconds": self.seconds,
                "pixels_scored": self.pixels_scored, "num_patches": self.num_patches,
                "total_patches": self.total_patches, "estimate": self.estimate,
                **{f"{c}_bpd": v for c, v in self.lossless.items()}, "divergence": self.divergence,
                "call": self.call, "plan": self.plan}


def score_file(pipe: ScorePipeline, file: str | Path, *, seed: int, settings: DemoSettings, num_repeats: int = 0,
               bits_map: bool = True, invert: bool = False, model: str = "", why: str = "",
               dequantization: str = "uniform") -> ImageScore:
    """Bits/dim of one picture file by one library call, ``pipe.bits_per_dim(file, plan=plan,
    generator=draw_generators(seed, [0], plan.num_repeats))`` with the app's plan (:func:`plan_for`): the draws of a
    picture scored alone, so the file gets the number ``scorezoo bpd`` gives it and ``scorezoo eval`` gives it as the
    first image of a list, with the same options and seed.

    A model of photo patches scores a larger picture at its own resolution, tile by tile; others resize it. With
    ``bits_map`` the same call returns the per-dimension bits (``per_dimension``). ``dequantization="variational"``
    draws the noise from the model's trained dequantizer (a tighter upper bound; refused for a model without one).

    Raises:
        ValueError: a continuous-data or non-image model, options the plan refuses, or a file that cannot be read
            (the message names it).
    """
    from ..scoring import draw_generators

    if pipe.num_levels is None:
        raise ValueError("this model is for continuous data: bits/dim of images do not apply. Pick an image "
                         "model; the Sample tab shows this model's density.")
    if len(pipe.data_shape) != 3:
        raise ValueError(f"this model's data are not pictures (shape {tuple(pipe.data_shape)}).")
    # the tiles of a large photo's sample are drawn from the request's seed, as scorezoo bpd draws them from --seed
    plan = plan_for(pipe, settings, num_repeats=num_repeats, bits_map=bits_map,
                    dequantization=dequantization).replace(tile_seed=int(seed))
    call = (f"pipe.bits_per_dim(file, plan=ScoringPlan.create(pipe, ...), generator=draw_generators({seed}, [0], "
            f"{plan.num_repeats}))")
    # a schedule reports the path at its own steps; the plot's times do not move an adaptive or fixed-step answer
    times = None if plan.nfe is not None else torch.linspace(pipe.eps, pipe.sde.T, settings.trajectory_points,
                                                             dtype=torch.float64)
    start = time.perf_counter()
    res = pipe.bits_per_dim(str(file), plan=plan, invert=bool(invert), times=times,
                            generator=draw_generators(int(seed), [0], plan.num_repeats))
    seconds = time.perf_counter() - start
    # the pixels scored, for the picture shown and the lossless coders: the model's input, or the photo at its own
    # resolution cropped to its whole patches
    tiled = res.tiled[0]
    levels = load_image(str(file), data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=bool(invert),
                        resize=not tiled).levels
    if tiled:
        tiles = pipe.tile_picture(levels)
        levels = untile(tiles.patches, tiles.grid)
    lossless = {c: lossless_bits_per_dim(levels, c) if pipe.num_levels == 256 else None for c in CODECS
                if codec_available(c)}
    dataset = str(pipe.extra_config.get("dataset", ""))
    offset = bits_per_dim(torch.zeros(1, dtype=torch.float64), pipe.dim, num_levels=pipe.num_levels,
                          data_range=pipe.data_range).item()
    return ImageScore(
        name=Path(file).name, model=model, why=why, transform=res.transforms[0], bpd=res.bpd[0].item(),
        stderr=res.stderr[0].item(), num_repeats=plan.num_repeats, bpd_repeats=res.bpd_repeats[:, 0].tolist(),
        nfe=int(res.nfe[0]), seconds=seconds, pixels_scored=int(res.pixels_scored[0]),
        num_patches=int(res.num_patches[0]), levels=levels, num_levels=pipe.num_levels,
        bits_map=None if res.bits_maps is None else res.bits_maps[0], times=res.times,
        bpd_path=None if res.bpd_path is None else res.bpd_path[:, :, 0],
        dequantization_bpd=offset, lossless=lossless,
        light_background="digits" in dataset and not invert and background_is_light(levels, pipe.num_levels),
        divergence=plan.divergence, call=call, plan=plan.to_dict(), total_patches=int(res.total_patches[0]))


# -- the Sample tab --------------------------------------------------------------------------------------
def density_grid(pipe: ScorePipeline, n: int, solver: SolverSettings) -> tuple[Any, Any, Any]:
    """Exact ``log p_eps`` of a 2-D model on an ``n × n`` grid over its data range widened by 10 %.

    Returns:
        ``(xs (n,), ys (n,), logp (n, n))`` numpy arrays with ``logp[i, j]`` at ``(xs[j], ys[i])``, in nats.
    """
    lo, hi = pipe.data_range
    pad = 0.1 * (hi - lo)
    xs = torch.linspace(lo - pad, hi + pad, int(n), dtype=pipe.dtype)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    logp = pipe.log_likelihood(pts, divergence="exact", settings=solver).logp
    return xs.numpy(), xs.numpy(), logp.view(int(n), int(n)).double().cpu().numpy()
