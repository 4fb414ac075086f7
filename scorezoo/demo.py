"""The scorezoo demo: a Gradio app over :class:`~scorezoo.pipeline.ScorePipeline` (``python app.py``).

Three tabs, each a thin shell over the library:

* **Sample**: ``pipe(batch_size, sampler=..., num_steps=..., generator=seed)`` as an image grid; for a 2-D
  model, the samples next to a heatmap of the exact density ``exp log p_eps(x)`` on a grid.
* **Likelihood**: each uploaded file goes through ``pipe.bits_per_dim(path, generator=seed)`` — the same
  call, so the same file and seed give the library's number — with the image as the model sees it
  (:func:`scorezoo.data.to_levels`), the log-density accumulated along ODE time of one dequantization draw
  (``pipe.log_likelihood(x, times=...)``: ``bits_per_dim(path, num_repeats=1, generator=seed)`` to the bit)
  and, on request, a per-pixel map of where the bits go (:func:`bits_per_dimension`).
* **Models**: the zoo registry (:func:`scorezoo.zoo.registry`) with the cards' measured bits/dim, and the
  cards themselves.

Needs the ``app`` extra (gradio, matplotlib).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import torch
from huggingface_hub import ModelCard
from matplotlib.figure import Figure
from PIL import Image

from . import zoo
from .data import levels_to_uint8, to_levels
from .dequantization import dequantization_log_jacobian, uniform_dequantize
from .dequantization import bits_per_dim
from .likelihood import LikelihoodResult, log_likelihood
from .pipeline import PIPELINE_CONFIG_NAME, ScorePipeline
from .sampling import SAMPLERS

__all__ = ["ModelEntry", "zoo_models", "folder_model", "DemoSettings", "bits_per_dimension", "single_draw",
           "score_files", "ImageScore", "sample_grid", "density_grid", "build_demo", "main"]

logger = logging.getLogger(__name__)


# -- the models ----------------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """A model the app lists: its registry entry and where to load it from.

    Attributes:
        info: the zoo's :class:`~scorezoo.zoo.ZooEntry` (from the card; from ``pipeline_config.json`` for a
            folder without one). ``info.status`` is ``"bundled"``, ``"cached"``, ``"remote"`` or ``"folder"``.
        source: what :meth:`ScorePipeline.from_pretrained` loads: a folder, or a Hub repo id complete in the
            local HF cache; ``None`` for a model only on the Hub, which the offline app lists but cannot load.
    """

    info: zoo.ZooEntry
    source: str | Path | None

    @property
    def name(self) -> str:
        return self.info.name


def zoo_models() -> tuple[list[ModelEntry], list[str]]:
    """The zoo as :func:`scorezoo.zoo.registry` lists it: ``(entries, one line per card that was skipped)``."""
    entries, problems = zoo.registry()
    bundled = zoo.bundled_models()
    source = {"bundled": lambda e: bundled[e.name], "cached": lambda e: e.repo_id}
    return [ModelEntry(e, source[e.status](e) if e.status in source else None) for e in entries], problems


def folder_model(folder: str | Path, taken: set[str] = frozenset()) -> ModelEntry:
    """A pipeline folder given with ``--model``, read as the registry reads a bundled model: its card's
    ``scorezoo:`` mapping (``README.md``), else the SDE and resolution of its ``pipeline_config.json``.

    Named by its card; by the path as given without a card's name or when that name is ``taken`` (a run's
    folder is often just ``pipeline``).

    Raises:
        FileNotFoundError: no ``pipeline_config.json`` in ``folder``.
        ValueError: a card whose front matter cannot be read.
    """
    folder = Path(folder)
    info = zoo.folder_entry(folder)
    info.status = "folder"
    if info.name in taken:
        info.name = str(folder)
    return ModelEntry(info, folder)


def card_markdown(model: ModelEntry) -> str:
    """The card's Markdown body (front matter dropped); without a card, the model's pipeline config."""
    if model.info.card:
        return ModelCard(Path(model.info.card).read_text(encoding="utf-8"), ignore_metadata_errors=True).text
    if model.source is None:
        return f"*{model.name} has no model card.*"
    config = (zoo.resolve_pretrained(model.source) / PIPELINE_CONFIG_NAME).read_text(encoding="utf-8")
    return f"*{model.name} has no model card.* Its `{PIPELINE_CONFIG_NAME}`:\n\n```json\n{config.strip()}\n```"


@dataclass
class DemoSettings:
    """Limits and solver options of the app.

    Attributes:
        ode_kwargs: passed to ``pipe.bits_per_dim`` and ``pipe.log_likelihood`` (``method``, ``rtol``,
            ``atol``, ``options``, ``divergence``, ``num_probes``, ...) and, the solver's part, to
            :func:`bits_per_dimension` and :func:`density_grid`; the library's defaults where not set
            (dopri5, Hutchinson). The app's tolerance, 1e-4 instead of the library's 1e-5, makes the bundled
            digits model's 4-draw bits/dim ~3x cheaper (~150 instead of ~500 score evaluations, ~2.5 s on one
            busy core) and moves it by at most ~0.003 bits/dim, 20x below the standard error over the draws.
        max_files: images per request.
        max_file_size: upload limit, as Gradio's ``launch(max_file_size=...)``.
        max_batch, max_steps, max_repeats: upper ends of the sliders, enforced on the server too.
        max_points: upper end of the batch slider for a 2-D model (points are cheap, and a few hundred are
            needed to see the density's shape).
        density_grid: points per side of the 2-D density heatmap.
        trajectory_points: times on [eps, T] at which the accumulated log-density is plotted.
        max_map_dims: the per-pixel map needs D backward passes per ODE step: only for D up to this; it
            is computed on request (~15 s for an 8x8 digit on one busy core at the app's tolerance).
        concurrency_limit: events that run at once (the CPU is the bottleneck).
        queue_size: events that may wait.
    """

    ode_kwargs: dict = field(default_factory=lambda: {"rtol": 1e-4, "atol": 1e-4})
    max_files: int = 16
    max_file_size: str = "5mb"
    max_batch: int = 64
    max_points: int = 2048
    max_steps: int = 2000
    max_repeats: int = 16
    density_grid: int = 64
    trajectory_points: int = 51
    max_map_dims: int = 1024
    concurrency_limit: int = 1
    queue_size: int = 32


# -- computations (no Gradio) --------------------------------------------------------------------------
#: the solver's options, with :func:`scorezoo.likelihood.log_likelihood`'s defaults, so the map and the
#: library integrate alike
ODE_SOLVER_DEFAULTS = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "options": None}


def bits_per_dimension(pipe: ScorePipeline, x: torch.Tensor, **ode_kwargs) -> torch.Tensor:
    """Bits of each dimension of dequantized images ``x: (B, *S)``: ``log p_eps(x)`` split over dimensions with the
    exact divergence (``log_likelihood(..., per_dimension=True)``), then ``-(log p_i + offset / D) / ln 2`` with the
    dequantization offset of :func:`scorezoo.dequantization.bits_per_dim`. Their mean is the exact-divergence
    bits/dim of ``x``. ``ode_kwargs``: the solver's ``method``, ``rtol``, ``atol``, ``options``, ``solver`` (others
    are ignored). Returns ``(B, *S)`` float64 bits on the CPU."""
    solver = {k: v for k, v in ode_kwargs.items() if k in ("method", "rtol", "atol", "options", "solver")}
    res = log_likelihood(pipe.model, pipe.sde, x.to(pipe.device, pipe.dtype), eps=pipe.eps, divergence="exact",
                         per_dimension=True, **solver)
    offset = dequantization_log_jacobian(pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range)
    return (-(res.logp_per_dim.double() + offset / pipe.dim) / math.log(2)).cpu()


def ode_times(pipe: ScorePipeline, num_times: int) -> torch.Tensor:
    """``(num_times - 2,)`` float64 times strictly inside (eps, T) for ``log_likelihood(times=...)``: the ends
    are the solve's own (its start, where the integral is 0, and ``delta_logp``)."""
    return torch.linspace(pipe.eps, pipe.sde.T, int(num_times), dtype=torch.float64)[1:-1]


def single_draw(pipe: ScorePipeline, file: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """The dequantization draw that ``pipe.bits_per_dim(file, num_repeats=1,
    generator=torch.Generator().manual_seed(seed))`` scores (the noise comes first from the generator).

    Returns:
        ``(levels (1, *S), x (1, *S), generator)``: the generator is where ``bits_per_dim`` draws that
        solve's Hutchinson probes from next.

    Raises:
        ValueError: a file that cannot be read (the message names it).
    """
    levels, _ = to_levels(file, data_shape=pipe.data_shape, num_levels=pipe.num_levels)
    g = torch.Generator().manual_seed(int(seed))
    x = uniform_dequantize(levels, num_levels=pipe.num_levels, data_range=pipe.data_range, generator=g,
                           dtype=pipe.dtype)
    return levels, x, g


@dataclass
class ImageScore:
    """The Likelihood tab's result for one file (bits/dim as :meth:`ScorePipeline.bits_per_dim` gives them).

    Attributes:
        levels: ``(*S)`` the image as the model sees it.
        path: ``pipe.log_likelihood(x, times=...)`` of :func:`single_draw` with the table's settings: its
            ``logp`` is that of ``bits_per_dim(file, num_repeats=1)`` with the same seed, to the bit.
    """

    name: str
    transform: str
    bpd: float
    stderr: float
    bpd_repeats: list[float]
    nfe: int
    seconds: float
    levels: torch.Tensor
    path: LikelihoodResult

    def as_dict(self) -> dict:
        return {"file": self.name, "transform": self.transform, "bpd": self.bpd,
                "stderr": None if math.isnan(self.stderr) else self.stderr, "bpd_repeats": self.bpd_repeats,
                "nfe": self.nfe, "seconds": self.seconds}


def score_files(pipe: ScorePipeline, paths: list[str], *, seed: int, num_repeats: int, num_times: int = 51,
                progress: Callable | None = None, **ode_kwargs) -> list[ImageScore]:
    """Bits/dim of each file, one file per call of ``pipe.bits_per_dim(path, generator=seed)``, so every file
    gets the number the library gives for it alone, and the log-density along ODE time of one draw
    (:func:`single_draw`).

    Raises:
        ValueError: a continuous-data model, or a file that cannot be read (the message names it).
    """
    if pipe.num_levels is None:
        raise ValueError("this model is for continuous data: bits/dim of images do not apply. Pick an image "
                         "model; the Sample tab shows this model's density.")
    out = []
    for i, file in enumerate(paths):
        name = Path(file).name
        if progress is not None:
            progress(i / len(paths), desc=f"{name}: probability-flow ODE")
        start = time.perf_counter()
        res = pipe.bits_per_dim(file, num_repeats=num_repeats, generator=torch.Generator().manual_seed(int(seed)),
                                **ode_kwargs)
        seconds = time.perf_counter() - start
        levels, x, g = single_draw(pipe, file, seed)
        path = pipe.log_likelihood(x, generator=g, times=ode_times(pipe, num_times), **ode_kwargs)
        out.append(ImageScore(name=name, transform=res.transforms[0], bpd=res.bpd[0].item(),
                              stderr=res.stderr[0].item(), bpd_repeats=res.bpd_repeats[:, 0].tolist(),
                              nfe=int(res.nfe[0]), seconds=seconds, levels=levels[0], path=path))
    return out


def _upscale(u8: np.ndarray, size: int = 128) -> Image.Image:
    """An ``(H, W, C)`` uint8 picture enlarged with nearest neighbours, so each level stays a flat square."""
    img = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)
    k = max(1, size // max(img.size))
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)


def _thumbnail(u8: np.ndarray, size: int = 160) -> Image.Image:
    """:func:`_upscale` over a transparent strip as tall as a quarter of the picture: Gradio's gallery lays the
    caption over a thumbnail's bottom edge, where it would hide the last row of pixels."""
    img = _upscale(u8, size).convert("RGBA")
    canvas = Image.new("RGBA", (img.width, img.height + img.height // 4), (0, 0, 0, 0))
    canvas.paste(img, (0, 0))
    return canvas


def sample_grid(u8: np.ndarray, side: int = 480, gap: int = 2) -> Image.Image:
    """Pictures ``(B, H, W, C)`` uint8 as one grid image of ``ceil(sqrt(B))`` columns, each picture enlarged by
    a whole factor so that the grid is at most ``side`` pixels wide (the browser only ever shrinks it)."""
    cols = math.ceil(math.sqrt(len(u8)))
    tiles = [_upscale(a, (side - gap) // cols - gap).convert("RGB") for a in u8]
    rows = math.ceil(len(tiles) / cols)
    w, h = tiles[0].size
    grid = Image.new("RGB", (cols * (w + gap) + gap, rows * (h + gap) + gap), (255, 255, 255))
    for i, tile in enumerate(tiles):
        grid.paste(tile, (gap + (i % cols) * (w + gap), gap + (i // cols) * (h + gap)))
    return grid


def density_grid(pipe: ScorePipeline, n: int = 64, **ode_kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``log p_eps`` of a 2-D model on an ``n × n`` grid over its data range widened by 10 %.

    Returns:
        ``(xs (n,), ys (n,), logp (n, n))`` with ``logp[i, j]`` at ``(xs[j], ys[i])``, in nats.
    """
    lo, hi = pipe.data_range
    pad = 0.1 * (hi - lo)
    xs = torch.linspace(lo - pad, hi + pad, int(n), dtype=pipe.dtype)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    logp = pipe.log_likelihood(pts, **{**ode_kwargs, "divergence": "exact"}).logp
    return xs.numpy(), xs.numpy(), logp.view(int(n), int(n)).double().cpu().numpy()


# -- figures ---------------------------------------------------------------------------------------------
def trajectory_figure(pipe: ScorePipeline, scores: list[ImageScore]) -> Figure:
    """Accumulated log-density along ODE time, in bits/dim, one line per image; the legend splits the first
    draw's bits/dim into flow, prior and dequantization."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    offset = dequantization_log_jacobian(pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range)
    scale = 1.0 / (pipe.dim * math.log(2))
    for s in scores:
        res = s.path
        t = torch.cat([torch.tensor([pipe.eps]), res.times.double().cpu(), torch.tensor([pipe.sde.T])])
        delta = torch.cat([torch.zeros(1), res.delta_logp_path[:, 0].double().cpu(), res.delta_logp[:1].double().cpu()])
        flow = -delta * scale
        prior = -res.prior_logp[0].item() * scale
        total = bits_per_dim(res.logp.double().cpu(), pipe.dim, num_levels=pipe.num_levels,
                             data_range=pipe.data_range)[0].item()
        ax.plot(t.numpy(), flow.numpy(),
                label=f"{s.name}: flow {flow[-1].item():.3f} + prior {prior:.3f} + dequantization "
                      f"{-offset * scale:.3f} = {total:.3f} bits/dim")
    ax.set_xlabel("ODE time t")
    ax.set_ylabel("−Δ log p up to t (bits/dim)")
    ax.set_title("Log-density accumulated along the probability-flow ODE\n(one dequantization draw: "
                 "bits_per_dim with num_repeats=1 and the same seed)", fontsize=10)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend(fontsize=7, loc="best")
    return fig


def bits_map_figure(maps: list[tuple[str, torch.Tensor]]) -> Figure:
    """Bits per pixel (channels averaged) of ``(file name, bits (*S))`` pairs, one panel per image; each panel's
    mean is that draw's exact-divergence bits/dim."""
    n = len(maps)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 * cols + 0.6, 2.5 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, bits) in zip(axes.flat, maps):
        im = ax.imshow(bits.mean(0).numpy(), cmap="magma", interpolation="nearest")
        ax.set_title(f"{name}: bits per pixel\nmean {bits.mean().item():.3f} bits/dim (exact divergence)", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8, label="bits")
    return fig


def density_figure(xs: np.ndarray, ys: np.ndarray, logp: np.ndarray, samples: np.ndarray) -> Figure:
    """Exact density heatmap and samples side by side, on the same axes limits."""
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharex=True, sharey=True)
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    im = ax1.imshow(np.exp(logp), origin="lower", extent=extent, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax1, shrink=0.85, label="p_eps(x)")
    ax1.set_title("density from the exact likelihood (PF-ODE)", fontsize=10)
    ax2.scatter(samples[:, 0], samples[:, 1], s=6, alpha=0.6)
    inside = (samples[:, 0] >= xs[0]) & (samples[:, 0] <= xs[-1]) & (samples[:, 1] >= ys[0]) & (samples[:, 1] <= ys[-1])
    outside = f" ({(~inside).sum()} outside the frame)" if not inside.all() else ""
    ax2.set_title(f"{len(samples)} samples{outside}", fontsize=10)
    ax2.set_xlim(xs[0], xs[-1])
    ax2.set_ylim(ys[0], ys[-1])
    for ax in (ax1, ax2):
        ax.set_aspect("equal")
    return fig


# -- the app ---------------------------------------------------------------------------------------------
def _plain_errors(fn: Callable) -> Callable:
    """Every failure reaches the user as a ``gr.Error`` with one plain line; the trace stays in the log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - an unexpected failure: log it, show one line
            logger.exception("demo handler failed")
            raise gr.Error(f"Something went wrong ({type(e).__name__}): {e}", print_exception=False) from None

    return wrapper


def _int_in(value: Any, lo: int, hi: int, what: str) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} must be a whole number, got {value!r}.", print_exception=False) from None
    if not lo <= v <= hi:
        raise gr.Error(f"{what} must lie in [{lo}, {hi}], got {v}.", print_exception=False)
    return v


def _registry_rows(models: list[ModelEntry]) -> list[list[str]]:
    def pm(v: float | None, e: float | None) -> str:
        return "—" if v is None else f"{v:.3f}" + (f" ± {e:.3f}" if e is not None else "")

    return [[e.name, e.status, "✓" if e.default else "", e.sde or "—", e.weighting or "—", e.dataset or "—",
             e.resolution or "—", "—" if e.parameters is None else f"{e.parameters:,}",
             pm(e.bpd_ode, e.bpd_ode_stderr), pm(e.bpd_bound, e.bpd_bound_stderr)]
            for e in (m.info for m in models)]


def _solver_note(ode_kwargs: dict) -> str:
    """The Likelihood tab's ODE settings in one line (the library's defaults where not set)."""
    kw = {**ODE_SOLVER_DEFAULTS, "divergence": "hutchinson", **ode_kwargs}
    step = (kw.get("options") or {}).get("step_size")
    solve = f"{kw['method']}, step {step:g}" if step else f"{kw['method']}, rtol {kw['rtol']:g}, atol {kw['atol']:g}"
    return f"probability-flow ODE: {solve}; {kw['divergence']} divergence"


# the eval split, a sentence on each card, is left to the card below the table
REGISTRY_HEADERS = ["model", "status", "default", "SDE", "weighting", "dataset", "resolution", "parameters",
                    "bits/dim (ODE)", "bits/dim (bound)"]
RESULT_HEADERS = ["file", "bits/dim", "± stderr", "NFE", "time (s)"]
STATUS_NOTE = ("status: *bundled* = installed with scorezoo; *cached* = in the local Hugging Face cache; "
               "*folder* = given with `--model`; *remote* = on the Hub only, listed here but not served by this "
               "offline app.")


def build_demo(models: list[ModelEntry], default: str | None = None, settings: DemoSettings | None = None,
               problems: list[str] | tuple[str, ...] = ()) -> gr.Blocks:
    """The Gradio app over ``models``; those with a ``source`` are served, all are listed in the Models tab.

    Args:
        models: e.g. :func:`zoo_models` followed by :func:`folder_model` entries.
        default: the model selected first; by default the zoo's default (:func:`scorezoo.zoo.default_model`)
            when it is served, else the first served model.
        settings: limits and solver options.
        problems: lines shown in the Models tab (cards the registry skipped).

    Raises:
        ValueError: no model to serve, two models of one name, or ``default`` not among the served ones.
    """
    settings = settings or DemoSettings()
    by_name = {m.name: m for m in models}
    if len(by_name) < len(models):
        raise ValueError(f"two models share a name: {sorted(m.name for m in models)}.")
    names = [m.name for m in models if m.source is not None]
    if not names:
        raise ValueError("no models to serve: none bundled or cached, and none given (pass --model FOLDER).")
    if default is None:
        default = zoo.default_model([m.info for m in models])
        default = default if default in names else names[0]
    if default not in names:
        raise ValueError(f"default model {default!r} is not among the served models {names}.")
    ode_kwargs = dict(settings.ode_kwargs)

    @functools.lru_cache(maxsize=8)
    def pipeline(name: str) -> ScorePipeline:
        if name not in names:
            raise ValueError(f"unknown model {name!r}; choose one of {names}.")
        return ScorePipeline.from_pretrained(by_name[name].source)

    @functools.lru_cache(maxsize=4)
    def cached_density(name: str):
        return density_grid(pipeline(name), settings.density_grid, **ode_kwargs)

    @_plain_errors
    def on_sample(name, sampler, steps, seed, batch, progress=gr.Progress(track_tqdm=True)):
        pipe = pipeline(name)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}.")
        steps = _int_in(steps, 0, settings.max_steps, "steps")
        is_image = len(pipe.data_shape) == 3
        batch = _int_in(batch, 1, settings.max_batch if is_image else settings.max_points, "batch size")
        seed = _int_in(seed, 0, 2**63 - 1, "seed")
        progress(0, desc=f"sampling {batch} with {sampler}")
        start = time.perf_counter()
        out = pipe(batch, sampler=sampler, num_inference_steps=steps or None,
                   generator=torch.Generator().manual_seed(seed),
                   output_type="np" if is_image else "pt")
        info = f"{batch} samples from {name}, {sampler} sampler, {out.nfe} score evaluations, " \
               f"{time.perf_counter() - start:.1f} s"
        if is_image:
            return sample_grid(np.rint(out.images * 255).astype(np.uint8)), None, info
        progress(0.5, desc="exact density on a grid (PF-ODE)")
        xs, ys, logp = cached_density(name)
        return None, density_figure(xs, ys, logp, out.samples.double().cpu().numpy()), info

    def is_image_model(name: str) -> bool:
        return name in names and len(pipeline(name).data_shape) == 3

    @_plain_errors
    def on_sample_model(name):
        # an image model fills the grid, a 2-D model the density plot: show the one it fills, with its batch range
        image = is_image_model(name)
        batch = (gr.update(maximum=settings.max_batch, value=min(16, settings.max_batch)) if image else
                 gr.update(maximum=settings.max_points, value=min(512, settings.max_points)))
        return gr.update(visible=image), gr.update(visible=not image), batch

    def uploaded(files) -> list[str]:
        if not files:
            raise gr.Error("Upload one or more images first.", print_exception=False)
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
        if len(paths) > settings.max_files:
            raise gr.Error(f"{len(paths)} files is over the limit of {settings.max_files} per request.",
                           print_exception=False)
        return paths

    @_plain_errors
    def on_likelihood(files, name, seed, repeats, progress=gr.Progress()):
        paths = uploaded(files)
        pipe = pipeline(name)
        seed = _int_in(seed, 0, 2**63 - 1, "seed")
        repeats = _int_in(repeats, 1, settings.max_repeats, "dequantization draws")
        scores = score_files(pipe, paths, seed=seed, num_repeats=repeats, num_times=settings.trajectory_points,
                             progress=progress, **ode_kwargs)
        gallery = [(_thumbnail(levels_to_uint8(s.levels[None], pipe.num_levels)[0]),
                    f"{s.name}: {s.bpd:.3f} bits/dim") for s in scores]
        rows = [[s.name, f"{s.bpd:.4f}", "—" if math.isnan(s.stderr) else f"{s.stderr:.4f}", s.nfe,
                 f"{s.seconds:.2f}"] for s in scores]
        transforms = "\n".join(f"* **{s.name}**: {s.transform}" for s in scores)
        note = (f"Seed {seed}, {repeats} dequantization draw(s) per image, {_solver_note(ode_kwargs)}; each file "
                f"is scored alone by `pipe.bits_per_dim(file, num_repeats={repeats}, "
                f"generator=torch.Generator().manual_seed({seed}))`.\n\n**Transform to the model's input**\n\n"
                f"{transforms}")
        # the map of earlier files would no longer match: it is computed again on request
        return gallery, rows, note, trajectory_figure(pipe, scores), None, [s.as_dict() for s in scores]

    @_plain_errors
    def on_bits_map(files, name, seed, progress=gr.Progress()):
        paths = uploaded(files)
        pipe = pipeline(name)
        seed = _int_in(seed, 0, 2**63 - 1, "seed")
        if pipe.num_levels is None or pipe.dim > settings.max_map_dims:
            raise ValueError(f"the per-pixel map is for image models of up to {settings.max_map_dims} dimensions "
                             f"(it needs one backward pass per dimension at every ODE step); {name} has "
                             f"{pipe.dim}{'' if pipe.num_levels else ' continuous'} dimensions.")
        maps = []
        for i, path in enumerate(paths):
            progress(i / len(paths), desc=f"{Path(path).name}: exact divergence per dimension")
            _, x, _ = single_draw(pipe, path, seed)
            maps.append((Path(path).name, bits_per_dimension(pipe, x, **ode_kwargs)[0]))
        return bits_map_figure(maps)

    @_plain_errors
    def on_card(name):
        if name not in by_name:
            raise ValueError(f"unknown model {name!r}.")
        return card_markdown(by_name[name])

    with gr.Blocks(title="scorezoo") as demo:
        gr.Markdown("# scorezoo\nScore-based generative models with exact likelihoods through the "
                    "probability-flow ODE.")
        with gr.Tab("Sample"):
            with gr.Row():
                with gr.Column(scale=1):
                    s_model = gr.Dropdown(names, value=default, label="model")
                    s_sampler = gr.Dropdown(sorted(SAMPLERS), value="ode", label="sampler")
                    s_steps = gr.Slider(0, settings.max_steps, value=0, step=1, label="steps", elem_id="steps",
                                        info="0: adaptive for ode, 1000 for em and pc")
                    s_seed = gr.Number(0, precision=0, label="seed", minimum=0)
                    # the widest range, so that API calls for either kind pass; the page narrows it per model
                    s_batch = gr.Slider(1, max(settings.max_batch, settings.max_points), value=16, step=1,
                                        label="batch")
                    s_go = gr.Button("Sample", variant="primary")
                with gr.Column(scale=2):
                    s_grid = gr.Image(label="samples", type="pil", format="png", interactive=False, height=480,
                                      visible=is_image_model(default))
                    s_plot = gr.Plot(label="density and samples", format="png", show_label=False,
                                     visible=not is_image_model(default))
                    s_info = gr.Markdown()
            s_go.click(on_sample, [s_model, s_sampler, s_steps, s_seed, s_batch], [s_grid, s_plot, s_info],
                       api_name="sample")
            s_model.change(on_sample_model, s_model, [s_grid, s_plot, s_batch], api_visibility="private")
        demo.load(on_sample_model, s_model, [s_grid, s_plot, s_batch], api_visibility="private")
        with gr.Tab("Likelihood"):
            with gr.Row():
                with gr.Column(scale=1):
                    l_files = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                      label=f"images (up to {settings.max_files}, {settings.max_file_size} each)",
                                      elem_id="upload")
                    l_model = gr.Dropdown(names, value=default, label="model")
                    l_seed = gr.Number(0, precision=0, label="seed", minimum=0)
                    l_repeats = gr.Slider(1, settings.max_repeats, value=min(4, settings.max_repeats), step=1,
                                          label="dequantization draws",
                                          info="the standard error is over these draws")
                    l_go = gr.Button("Compute bits/dim", variant="primary", elem_id="bpd-button")
                with gr.Column(scale=2):
                    gr.Markdown("**The model's input** (after the transform)")
                    # no label: it would lie over the first picture
                    l_gallery = gr.Gallery(label="the model's input (after the transform)", show_label=False,
                                           columns=4, format="png", height=230, preview=False,
                                           fit_columns=False, object_fit="contain", interactive=False)
                    l_table = gr.Dataframe(headers=RESULT_HEADERS, label="bits/dim", interactive=False,
                                           elem_id="bpd-table")
                    l_note = gr.Markdown()
            with gr.Row():
                l_traj = gr.Plot(label="log-density along ODE time", format="png", show_label=False)
                with gr.Column():
                    l_map_go = gr.Button("Where the bits go: bits per pixel", elem_id="map-button")
                    gr.Markdown("The plotted draw's log-density split over pixels, with the exact divergence: "
                                "one backward pass per pixel at every ODE step, so several times the cost of "
                                "the bits/dim above.")
                    l_map = gr.Plot(label="where the bits go", format="png", show_label=False, elem_id="bits-map")
            with gr.Accordion("raw results (JSON)", open=False):
                l_json = gr.JSON()
            l_go.click(on_likelihood, [l_files, l_model, l_seed, l_repeats],
                       [l_gallery, l_table, l_note, l_traj, l_map, l_json], api_name="bits_per_dim")
            l_map_go.click(on_bits_map, [l_files, l_model, l_seed], l_map, api_name="bits_map")
        with gr.Tab("Models"):
            gr.Dataframe(value=_registry_rows(models), headers=REGISTRY_HEADERS, interactive=False,
                         label="the zoo (bits/dim on each card's eval split, ± standard error)", elem_id="zoo")
            gr.Markdown(STATUS_NOTE + "".join(f"\n\n⚠ {p}" for p in problems))
            m_name = gr.Dropdown(list(by_name), value=default, label="model card")
            m_card = gr.Markdown(on_card(default))
            m_name.change(on_card, m_name, m_card, api_name="card")
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_size)
    return demo


def main(argv: list[str] | None = None) -> None:
    """``python app.py [--model FOLDER ...] [--default NAME] [--port N]``: serve the zoo on 127.0.0.1."""
    ap = argparse.ArgumentParser(description="scorezoo demo: sampling, bits/dim of images, the model zoo.")
    ap.add_argument("--model", action="append", default=[], metavar="FOLDER",
                    help="a pipeline folder to serve next to the zoo's models (repeatable); selected first")
    ap.add_argument("--default", help="the model selected first (a name of the Models tab)")
    ap.add_argument("--tol", type=float, default=DemoSettings().ode_kwargs["rtol"],
                    help="rtol and atol of the probability-flow ODE (default %(default)g; the library's 1e-5 "
                         "is several times slower)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = ap.parse_args(argv)
    settings = DemoSettings(ode_kwargs={"rtol": args.tol, "atol": args.tol})
    try:
        models, problems = zoo_models()
        for folder in args.model:
            models.append(folder_model(folder, taken={m.name for m in models}))
        for line in problems:
            logger.warning("%s", line)
        default = args.default or (models[-len(args.model)].name if args.model else None)
        demo = build_demo(models, default, settings, problems)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"scorezoo demo: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=settings.max_file_size,
                ssr_mode=False, show_error=True)
