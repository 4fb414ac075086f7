"""What the demo draws: pictures through :mod:`scorezoo.display` (shared with the command line) and three
matplotlib figures (the bits map with its colour bar, the bits accumulated along ODE time, the 2-D density)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image

from ..data import levels_to_uint8
from ..display import heatmap, image_grid, upscale
from .compute import ImageScore

__all__ = ["picture", "bits_map_figure", "bits_map_picture", "sample_grid", "trajectory_figure", "density_figure"]


def _with_caption_strip(img: Image.Image) -> Image.Image:
    """``img`` over a transparent strip a quarter as tall: Gradio's gallery lays the caption over a picture's bottom
    edge, where it would hide the last rows of pixels."""
    img = img.convert("RGBA")
    canvas = Image.new("RGBA", (img.width, img.height + img.height // 4), (0, 0, 0, 0))
    canvas.paste(img, (0, 0))
    return canvas


def picture(score: ImageScore, size: int = 160) -> Image.Image:
    """The pixels scored, enlarged by a whole factor (nearest neighbour) to at most ``size`` pixels a side and never
    shrunk: a digit as flat squares, a photo at its own resolution."""
    return _with_caption_strip(upscale(levels_to_uint8(score.levels[None], score.num_levels)[0], size))


def bits_map_figure(score: ImageScore, width: float = 6.4) -> Figure:
    """Bits per pixel (channels averaged) as a heatmap ``width`` inches wide with a colour bar in bits per pixel, in
    the colours of :func:`scorezoo.display.heatmap` (dark blue: few bits, yellow: many). The bar spans the 1st to 99th
    percentiles; its arrows stand for the pixels beyond them."""
    bits = score.bits_map.mean(0).numpy()
    lo, hi = (float(v) for v in np.percentile(bits, [1, 99]))
    ramp = np.asarray(heatmap(np.linspace(0, 1, 256)[None], lo=0, hi=1))[0] / 255
    h, w = bits.shape
    # the map's height follows the picture's aspect within [2.4, 6.4] inches, plus room for the title
    fig = Figure(figsize=(width, min(max(0.8 * width * h / w, 2.4), 6.4) + 0.5), layout="constrained", dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(bits, cmap=ListedColormap(ramp), vmin=lo, vmax=max(hi, lo + 1e-12), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{score.name}: {score.bpd:.3f} bits/dim", fontsize=10)
    fig.colorbar(im, ax=ax, extend="both", shrink=0.9, label="bits per pixel")
    return fig


def bits_map_picture(score: ImageScore) -> Image.Image:
    """:func:`bits_map_figure` as a picture (100 dpi) for the gallery."""
    buf = io.BytesIO()
    bits_map_figure(score).savefig(buf, format="png")
    return _with_caption_strip(Image.open(buf))


def sample_grid(u8: np.ndarray, side: int = 480, gap: int = 2) -> Image.Image:
    """Pictures ``(B, H, W, C)`` uint8 as one grid of ``ceil(sqrt(B))`` columns on white, each enlarged by a whole
    factor so that the grid is at most ``side`` pixels wide (the browser only ever shrinks it)."""
    cols = int(np.ceil(np.sqrt(len(u8))))
    return image_grid(u8, tile=(side - gap) // cols - gap, gap=gap, background=255)


def trajectory_figure(scores: list[ImageScore]) -> Figure:
    """The bits/dim accounted for by the probability flow up to each ODE time, one line per file (the mean over its
    draws, a tiled photo's mean over its patches); the legend splits each file's bits/dim into flow, prior and
    dequantization."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for s in scores:
        path = s.bpd_path.mean(1).numpy()
        prior = s.bpd - path[-1] - s.dequantization_bpd
        ax.plot(s.times.double().numpy(), path, marker="." if len(path) < 20 else None,
                label=f"{s.name}: flow {path[-1]:.3f} + prior {prior:.3f} + dequantization "
                      f"{s.dequantization_bpd:.3f} = {s.bpd:.3f} bits/dim")
    ax.set_xlabel("ODE time t")
    ax.set_ylabel("−Δ log p up to t (bits/dim)")
    ax.set_title("Bits accumulated along the probability-flow ODE\n(mean over the dequantization draws, from the "
                 "same solve as the table)", fontsize=10)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend(fontsize=7, loc="best")
    return fig


def density_figure(xs: np.ndarray, ys: np.ndarray, logp: np.ndarray, samples: np.ndarray) -> Figure:
    """Exact density heatmap (``exp logp`` on the grid ``xs × ys``) and ``samples (B, 2)`` side by side, on the same
    axes limits."""
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
