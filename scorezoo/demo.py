"""The scorezoo demo: a Gradio app over :class:`~scorezoo.pipeline.ScorePipeline` (``python app.py``).

Three tabs, each a thin shell over the pipeline:

* **Sample**: ``pipe(batch_size, sampler=..., num_steps=..., generator=seed)`` as an image grid; for a 2-D
  model, the samples next to a heatmap of the exact density ``exp log p_eps(x)`` on a grid.
* **Likelihood**: each uploaded file goes through ``pipe.bits_per_dim(path, generator=seed)`` — the same
  call, so the same file and seed give the library's number — with the image as the model sees it
  (:func:`scorezoo.data.to_levels`), the log-density accumulated along ODE time and a per-pixel map of
  where the bits go (:func:`ode_trajectory`).
* **Models**: the model cards' measured bits/dim and the cards themselves.

Needs the ``app`` extra (gradio, matplotlib).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import torch
import yaml
from matplotlib.figure import Figure
from PIL import Image
from torchdiffeq import odeint

from .data import levels_to_uint8, to_levels
from .dequantization import dequantization_log_jacobian, uniform_dequantize
from .pipeline import ScorePipeline
from .sampling import SAMPLERS
from .sde import _bcast
from .zoo import DEFAULT_MODEL, bundled_models

__all__ = ["ModelEntry", "DemoSettings", "read_model_card", "bundled_registry", "ode_trajectory", "score_files",
           "ImageScore", "sample_grid", "density_grid", "build_demo", "main"]

logger = logging.getLogger(__name__)


# -- the registry --------------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """A model the app can serve: its name, its pipeline folder and its card.

    Attributes:
        card: the ``scorezoo:`` mapping of the card's YAML front matter (empty without a card).
        card_text: the card's Markdown body.
    """

    name: str
    path: Path
    card: dict = field(default_factory=dict)
    card_text: str = ""


def read_model_card(folder: str | Path) -> tuple[dict, str]:
    """``(scorezoo mapping of the front matter, Markdown body)`` of ``folder/README.md``; empty if absent.

    Raises:
        ValueError: front matter that is not valid YAML.
    """
    card = Path(folder) / "README.md"
    if not card.is_file():
        return {}, ""
    text = card.read_text(encoding="utf-8")
    m = re.match(r"---\s*\n(.*?)\n---\s*(?:\n|$)(.*)", text, re.S)
    if not m:
        return {}, text
    try:
        meta = yaml.safe_load(m[1]) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{card}: the front matter is not valid YAML: {e}") from None
    return dict(meta.get("scorezoo") or {}), m[2]


def bundled_registry() -> dict[str, ModelEntry]:
    """The models bundled with the package, with their cards (name -> entry)."""
    entries = {}
    for name, folder in bundled_models().items():
        card, text = read_model_card(folder)
        entries[name] = ModelEntry(name, folder, card, text)
    return entries


@dataclass
class DemoSettings:
    """Limits and solver options of the app.

    Attributes:
        ode_kwargs: passed to ``pipe.bits_per_dim`` / ``pipe.log_likelihood`` and to :func:`ode_trajectory`
            (``method``, ``rtol``, ``atol``, ``options``); empty means the library's defaults (dopri5, 1e-5).
        max_files: images per request.
        max_file_size: upload limit, as Gradio's ``launch(max_file_size=...)``.
        max_batch, max_steps, max_repeats: upper ends of the sliders, enforced on the server too.
        density_grid: points per side of the 2-D density heatmap.
        trajectory_points: times on [eps, T] at which the accumulated log-density is plotted.
        max_map_dims: the per-pixel map needs D backward passes per ODE step: only for D up to this.
        concurrency_limit: events that run at once (the CPU is the bottleneck).
        queue_size: events that may wait.
    """

    ode_kwargs: dict = field(default_factory=dict)
    max_files: int = 16
    max_file_size: str = "5mb"
    max_batch: int = 64
    max_steps: int = 2000
    max_repeats: int = 16
    density_grid: int = 64
    trajectory_points: int = 51
    max_map_dims: int = 1024
    concurrency_limit: int = 1
    queue_size: int = 32


# -- computations (no Gradio) --------------------------------------------------------------------------
def _jacobian_diagonal(score_fn: Callable, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(score (B, *S), ds_i/dx_i (B, *S))``: the Jacobian's diagonal from D vector-Jacobian products, done
    as one backward pass of the batch replicated D times (as the exact branch of
    :func:`scorezoo.likelihood.divergence_fn`, which keeps only the sum)."""
    b, d = x.shape[0], x[0].numel()
    with torch.enable_grad():
        xr = x.detach().repeat(d, *([1] * (x.dim() - 1))).requires_grad_(True)
        out = score_fn(xr, t.repeat(d))
        onehot = torch.eye(d, dtype=x.dtype, device=x.device).repeat_interleave(b, 0)
        (rows,) = torch.autograd.grad(out, xr, onehot.view_as(out))
    diag = rows.view(d, b, d).diagonal(dim1=0, dim2=2)  # (B, D): entry [j, k] is ds_k/dx_k of sample j
    return out.detach()[:b], diag.reshape(x.shape).detach()


@dataclass
class Trajectory:
    """The log-density along the probability-flow ODE, per dimension (nats).

    Attributes:
        t: ``(N,)`` times from eps to T.
        delta: ``(N, B, *S)`` ``int_eps^t (f(s) - g(s)^2 ds_i/dx_i / 2) ds`` per dimension; its sum over
            dimensions is the accumulated log-density change.
        prior: ``(B, *S)`` ``log pi`` of x_T per dimension (pi is an isotropic Gaussian).
    """

    t: torch.Tensor
    delta: torch.Tensor
    prior: torch.Tensor

    @property
    def logp_per_dim(self) -> torch.Tensor:
        """``(B, *S)``: log p_eps(x) split over dimensions (sums to log p_eps(x) with exact divergence)."""
        return self.prior + self.delta[-1]


def ode_trajectory(pipe: ScorePipeline, x: torch.Tensor, *, num_times: int = 51, **ode_kwargs) -> Trajectory:
    """Integrate the probability-flow ODE from ``x`` at eps to T, keeping the per-dimension log-density change
    at ``num_times`` times (Song et al. ICLR 2021, eq. 39, with the exact divergence split into the Jacobian's
    diagonal: ``log p_eps(x) = sum_i [log pi(z_i) + int (f - g^2 ds_i/dx_i / 2) dt]``).

    Args:
        pipe: the model.
        x: ``(B, *S)`` points in the data space (dequantized images).
        num_times: times on [eps, T] (a fixed-step solver's values at them are interpolated; the end point is
            the solver's own).
        ode_kwargs: ``method``, ``rtol``, ``atol``, ``options`` of :func:`torchdiffeq.odeint`.

    Returns:
        :class:`Trajectory`.
    """
    sde, eps = pipe.sde, pipe.eps
    x = pipe._check_x(x)
    b = x.shape[0]

    def func(t, state):
        y = state[0]
        tb = t.clamp(eps, sde.T).expand(b).to(y.dtype)
        s, diag = _jacobian_diagonal(pipe.model, y, tb)
        g2, f = sde.diffusion(tb) ** 2, sde.drift_coef(tb)
        return _bcast(f, y) * y - 0.5 * _bcast(g2, y) * s, _bcast(f, y) - 0.5 * _bcast(g2, y) * diag

    kwargs = {"rtol": 1e-5, "atol": 1e-5, "method": "dopri5", **ode_kwargs}
    t = torch.linspace(eps, sde.T, int(num_times), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        ys, deltas = odeint(func, (x, torch.zeros_like(x)), t, **kwargs)
    z, std = ys[-1], sde.prior_std()
    prior = -0.5 * (z / std) ** 2 - 0.5 * math.log(2 * math.pi * std**2)
    return Trajectory(t=t.cpu(), delta=deltas.double().cpu(), prior=prior.double().cpu())


@dataclass
class ImageScore:
    """The Likelihood tab's result for one file (bits/dim as :meth:`ScorePipeline.bits_per_dim` gives them)."""

    name: str
    transform: str
    bpd: float
    stderr: float
    bpd_repeats: list[float]
    nfe: int
    seconds: float
    levels: torch.Tensor
    trajectory: Trajectory | None = None

    def as_dict(self) -> dict:
        return {"file": self.name, "transform": self.transform, "bpd": self.bpd,
                "stderr": None if math.isnan(self.stderr) else self.stderr, "bpd_repeats": self.bpd_repeats,
                "nfe": self.nfe, "seconds": self.seconds}


def score_files(pipe: ScorePipeline, paths: list[str], *, seed: int, num_repeats: int, trajectories: bool = True,
                num_times: int = 51, max_map_dims: int = 1024, progress: Callable | None = None,
                **ode_kwargs) -> list[ImageScore]:
    """Bits/dim of each file, one file per call of ``pipe.bits_per_dim(path, generator=seed)``, so every file
    gets the number the library gives for it alone; with ``trajectories``, also the per-dimension log-density
    along the ODE of the first dequantization draw (the same ``x`` as the library's first draw).

    Raises:
        ValueError: a continuous-data model, or a file that cannot be read (the message names it).
    """
    if pipe.num_levels is None:
        raise ValueError("this model is for continuous data: bits/dim of images do not apply. Pick an image "
                         "model; the Sample tab shows this model's density.")
    out = []
    for i, path in enumerate(paths):
        name = Path(path).name
        if progress is not None:
            progress(i / len(paths), desc=f"{name}: probability-flow ODE")
        start = time.perf_counter()
        res = pipe.bits_per_dim(path, num_repeats=num_repeats, generator=torch.Generator().manual_seed(int(seed)),
                                **ode_kwargs)
        seconds = time.perf_counter() - start
        levels, _ = to_levels(path, data_shape=pipe.data_shape, num_levels=pipe.num_levels)
        traj = None
        if trajectories and pipe.dim <= max_map_dims:
            x = uniform_dequantize(levels, num_levels=pipe.num_levels, data_range=pipe.data_range,
                                   generator=torch.Generator().manual_seed(int(seed)), dtype=pipe.dtype)
            traj = ode_trajectory(pipe, x, num_times=num_times, **ode_kwargs)
        out.append(ImageScore(name=name, transform=res.transforms[0], bpd=res.bpd[0].item(),
                              stderr=res.stderr[0].item(), bpd_repeats=res.bpd_repeats[:, 0].tolist(),
                              nfe=int(res.nfe[0]), seconds=seconds, levels=levels[0], trajectory=traj))
    return out


def bits_per_pixel(pipe: ScorePipeline, traj: Trajectory) -> torch.Tensor:
    """``(B, *S)`` bits of each dimension, ``-(log p_i + offset / D) / ln 2``; their mean is bits/dim."""
    offset = dequantization_log_jacobian(pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range)
    return -(traj.logp_per_dim + offset / pipe.dim) / math.log(2)


def _upscale(u8: np.ndarray, size: int = 128) -> Image.Image:
    """An ``(H, W, C)`` uint8 picture enlarged with nearest neighbours, so each level stays a flat square."""
    img = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)
    k = max(1, size // max(img.size))
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)


def sample_grid(u8: np.ndarray, cell: int = 64, gap: int = 2) -> Image.Image:
    """Pictures ``(B, H, W, C)`` uint8 as one grid image, ``ceil(sqrt(B))`` columns, cells enlarged to ``cell``."""
    tiles = [_upscale(a, cell).convert("RGB") for a in u8]
    cols = math.ceil(math.sqrt(len(tiles)))
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
    logp = pipe.log_likelihood(pts, divergence="exact", **ode_kwargs).logp
    return xs.numpy(), xs.numpy(), logp.view(int(n), int(n)).double().cpu().numpy()


# -- figures ---------------------------------------------------------------------------------------------
def trajectory_figure(pipe: ScorePipeline, scores: list[ImageScore]) -> Figure:
    """Accumulated log-density along ODE time, in bits/dim, one line per image."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    offset = dequantization_log_jacobian(pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range)
    scale = 1.0 / (pipe.dim * math.log(2))
    for s in scores:
        tr = s.trajectory
        flow = -tr.delta.flatten(2).sum(2)[:, 0] * scale
        prior = -tr.prior.sum().item() * scale
        total = flow[-1].item() + prior - offset * scale
        ax.plot(tr.t.numpy(), flow.numpy(),
                label=f"{s.name}: flow {flow[-1].item():.3f} + prior {prior:.3f} + dequantization "
                      f"{-offset * scale:.3f} = {total:.3f} bits/dim")
    ax.set_xlabel("ODE time t")
    ax.set_ylabel("−Δ log p up to t (bits/dim)")
    ax.set_title("Log-density accumulated along the probability-flow ODE\n(exact divergence, first "
                 "dequantization draw)", fontsize=10)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend(fontsize=7, loc="best")
    return fig


def bits_map_figure(pipe: ScorePipeline, scores: list[ImageScore]) -> Figure:
    """Bits per pixel (channels averaged), one panel per image; each panel's mean is its bits/dim."""
    n = len(scores)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 * cols + 0.6, 2.5 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, s in zip(axes.flat, scores):
        bits = bits_per_pixel(pipe, s.trajectory)[0]
        im = ax.imshow(bits.mean(0).numpy(), cmap="magma", interpolation="nearest")
        ax.set_title(f"{s.name}: bits per pixel\nmean {bits.mean().item():.3f} bits/dim (draw 1, exact)", fontsize=8)
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


def _registry_rows(models: dict[str, ModelEntry]) -> list[list[str]]:
    def pm(card: dict, key: str) -> str:
        v, e = card.get(key), card.get(f"{key}_stderr")
        if v is None:
            return "—"
        return f"{float(v):.3f}" + (f" ± {float(e):.3f}" if e is not None else "")

    rows = []
    for name, m in models.items():
        c = m.card
        rows.append([name, str(c.get("sde", "—")), str(c.get("weighting", "—")), str(c.get("dataset", "—")),
                     str(c.get("resolution", "—")), f"{c['parameters']:,}" if isinstance(c.get("parameters"), int)
                     else str(c.get("parameters", "—")), pm(c, "bpd_ode"), pm(c, "bpd_bound"),
                     str(c.get("eval_split", "—")), "✓" if c.get("default") else ""])
    return rows


REGISTRY_HEADERS = ["model", "SDE", "weighting", "dataset", "resolution", "parameters", "bits/dim (ODE)",
                    "bits/dim (bound)", "eval split", "default"]
RESULT_HEADERS = ["file", "bits/dim", "± stderr", "NFE", "time (s)"]


def build_demo(models: dict[str, ModelEntry], default: str | None = None,
               settings: DemoSettings | None = None) -> gr.Blocks:
    """The Gradio app over ``models`` (name -> entry); ``default`` is selected first.

    Raises:
        ValueError: no models, or ``default`` not among them.
    """
    settings = settings or DemoSettings()
    if not models:
        raise ValueError("no models to serve: none bundled and none given (pass --model FOLDER).")
    if default is None:
        default = next((n for n, m in models.items() if m.card.get("default")),
                       DEFAULT_MODEL if DEFAULT_MODEL in models else next(iter(models)))
    if default not in models:
        raise ValueError(f"default model {default!r} is not among {sorted(models)}.")
    names = list(models)
    ode_kwargs = dict(settings.ode_kwargs)

    @functools.lru_cache(maxsize=8)
    def pipeline(name: str) -> ScorePipeline:
        if name not in models:
            raise ValueError(f"unknown model {name!r}; choose one of {names}.")
        return ScorePipeline.from_pretrained(models[name].path)

    @functools.lru_cache(maxsize=4)
    def cached_density(name: str):
        return density_grid(pipeline(name), settings.density_grid, **ode_kwargs)

    @_plain_errors
    def on_sample(name, sampler, steps, seed, batch, progress=gr.Progress(track_tqdm=True)):
        pipe = pipeline(name)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}.")
        steps = _int_in(steps, 0, settings.max_steps, "steps")
        batch = _int_in(batch, 1, settings.max_batch, "batch size")
        seed = _int_in(seed, 0, 2**63 - 1, "seed")
        progress(0, desc=f"sampling {batch} with {sampler}")
        is_image = len(pipe.data_shape) == 3
        start = time.perf_counter()
        out = pipe(batch, sampler=sampler, num_steps=steps or None, generator=torch.Generator().manual_seed(seed),
                   output_type="np" if is_image else "pt")
        info = f"{batch} samples from {name}, {sampler} sampler, {out.nfe} score evaluations, " \
               f"{time.perf_counter() - start:.1f} s"
        if is_image:
            return sample_grid(np.rint(out.images * 255).astype(np.uint8)), None, info
        progress(0.5, desc="exact density on a grid (PF-ODE)")
        xs, ys, logp = cached_density(name)
        return None, density_figure(xs, ys, logp, out.samples.double().cpu().numpy()), info

    def is_image_model(name: str) -> bool:
        return name in models and len(pipeline(name).data_shape) == 3

    @_plain_errors
    def on_sample_model(name):
        # an image model fills the grid, a 2-D model the density plot: show the one it fills
        image = is_image_model(name)
        return gr.update(visible=image), gr.update(visible=not image)

    @_plain_errors
    def on_likelihood(files, name, seed, repeats, progress=gr.Progress()):
        if not files:
            raise gr.Error("Upload one or more images first.", print_exception=False)
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
        if len(paths) > settings.max_files:
            raise gr.Error(f"{len(paths)} files is over the limit of {settings.max_files} per request.",
                           print_exception=False)
        pipe = pipeline(name)
        seed = _int_in(seed, 0, 2**63 - 1, "seed")
        repeats = _int_in(repeats, 1, settings.max_repeats, "dequantization draws")
        scores = score_files(pipe, paths, seed=seed, num_repeats=repeats, num_times=settings.trajectory_points,
                             max_map_dims=settings.max_map_dims, progress=progress, **ode_kwargs)
        gallery = [(_upscale(levels_to_uint8(s.levels[None], pipe.num_levels)[0]),
                    f"{s.name}: {s.bpd:.3f} bits/dim") for s in scores]
        rows = [[s.name, f"{s.bpd:.4f}", "—" if math.isnan(s.stderr) else f"{s.stderr:.4f}", s.nfe,
                 f"{s.seconds:.2f}"] for s in scores]
        transforms = "\n".join(f"* **{s.name}**: {s.transform}" for s in scores)
        note = (f"Seed {seed}, {repeats} dequantization draw(s) per image; each file is scored alone by "
                f"`pipe.bits_per_dim(file, num_repeats={repeats}, generator=torch.Generator().manual_seed({seed}))`."
                f"\n\n**Transform to the model's input**\n\n{transforms}")
        have_maps = all(s.trajectory is not None for s in scores)
        traj = trajectory_figure(pipe, scores) if have_maps else None
        bits = bits_map_figure(pipe, scores) if have_maps else None
        return gallery, rows, note, traj, bits, [s.as_dict() for s in scores]

    @_plain_errors
    def on_card(name):
        if name not in models:
            raise ValueError(f"unknown model {name!r}.")
        m = models[name]
        return m.card_text or f"*{name} has no model card.*"

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
                    s_batch = gr.Slider(1, settings.max_batch, value=min(16, settings.max_batch), step=1, label="batch")
                    s_go = gr.Button("Sample", variant="primary")
                with gr.Column(scale=2):
                    s_grid = gr.Image(label="samples", type="pil", format="png", interactive=False, height=480,
                                      visible=is_image_model(default))
                    s_plot = gr.Plot(label="density and samples", format="png", show_label=False,
                                     visible=not is_image_model(default))
                    s_info = gr.Markdown()
            s_go.click(on_sample, [s_model, s_sampler, s_steps, s_seed, s_batch], [s_grid, s_plot, s_info],
                       api_name="sample")
            s_model.change(on_sample_model, s_model, [s_grid, s_plot], api_visibility="private")
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
                    l_gallery = gr.Gallery(label="the model's input (after the transform)", columns=6,
                                           format="png", height=200, preview=False, fit_columns=False,
                                           object_fit="contain", interactive=False)
                    l_table = gr.Dataframe(headers=RESULT_HEADERS, label="bits/dim", interactive=False,
                                           elem_id="bpd-table")
                    l_note = gr.Markdown()
            with gr.Row():
                l_traj = gr.Plot(label="log-density along ODE time", format="png", show_label=False)
                l_map = gr.Plot(label="where the bits go", format="png", show_label=False)
            with gr.Accordion("raw results (JSON)", open=False):
                l_json = gr.JSON()
            l_go.click(on_likelihood, [l_files, l_model, l_seed, l_repeats],
                       [l_gallery, l_table, l_note, l_traj, l_map, l_json], api_name="bits_per_dim")
        with gr.Tab("Models"):
            gr.Dataframe(value=_registry_rows(models), headers=REGISTRY_HEADERS, interactive=False,
                         label="the zoo (bits/dim measured on the eval split, ± standard error)")
            m_name = gr.Dropdown(names, value=default, label="model card")
            m_card = gr.Markdown(on_card(default))
            m_name.change(on_card, m_name, m_card, api_name="card")
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_size)
    return demo


def main(argv: list[str] | None = None) -> None:
    """``python app.py [--model FOLDER ...] [--port N]``: serve the bundled models on 127.0.0.1."""
    ap = argparse.ArgumentParser(description="scorezoo demo: sampling, bits/dim of images, the model zoo.")
    ap.add_argument("--model", action="append", default=[], metavar="FOLDER",
                    help="a pipeline folder to serve (repeatable); default: the bundled models")
    ap.add_argument("--default", help="the model selected first")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = ap.parse_args(argv)
    if args.model:
        models = {}
        for folder in map(Path, args.model):
            card, text = read_model_card(folder)
            models[card.get("name", folder.name)] = ModelEntry(card.get("name", folder.name), folder, card, text)
    else:
        models = bundled_registry()
    settings = DemoSettings()
    try:
        demo = build_demo(models, args.default, settings)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"scorezoo demo: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=settings.max_file_size,
                ssr_mode=False, show_error=True)
