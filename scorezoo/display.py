"""Pictures and tables shown to people, shared by the command line and the demo: image grids, 2-D point clouds,
bits maps, text tables. Pillow and numpy only (no plotting library)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["upscale", "image_grid", "points_image", "heatmap", "text_table"]


def upscale(u8: np.ndarray, size: int = 128) -> Image.Image:
    """An ``(H, W, C)`` uint8 picture enlarged by the largest whole factor that keeps it within ``size`` pixels
    (at least 1), with nearest neighbours, so that each pixel stays a flat square."""
    img = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)
    k = max(1, size // max(img.size))
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)


def image_grid(images: np.ndarray, *, tile: int = 64, gap: int = 2, background: int | tuple = 64) -> Image.Image:
    """Pictures ``(B, H, W, C)`` uint8 as one grid of ``ceil(sqrt(B))`` columns, each enlarged by a whole factor
    (nearest neighbour) to at most ``tile`` pixels a side (never shrunk), ``gap``-pixel gutters of ``background``."""
    b, h, w, c = images.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    tiles = [upscale(a, tile) for a in images]
    th, tw = tiles[0].height, tiles[0].width
    mode = "L" if c == 1 else "RGB"
    fill = background if mode == "L" or isinstance(background, tuple) else (background,) * 3
    grid = Image.new(mode, (cols * (tw + gap) + gap, rows * (th + gap) + gap), fill)
    for i, t in enumerate(tiles):
        grid.paste(t, (gap + (i % cols) * (tw + gap), gap + (i // cols) * (th + gap)))
    return grid


def points_image(points: np.ndarray, size: int = 512, radius: float = 1.5,
                 limits: tuple[float, float] | None = None) -> Image.Image:
    """2-D points ``(B, 2)`` drawn as dots on a white ``size``×``size`` canvas with a light frame at the data
    range (y up); ``limits`` fixes the square range shown, else it fits the points with a 5 % margin."""
    pts = np.asarray(points, dtype=np.float64)
    if limits is None:
        lo, hi = pts.min(), pts.max()
        pad = 0.05 * max(hi - lo, 1e-6)
        limits = (lo - pad, hi + pad)
    lo, hi = limits
    scale = (size - 1) / (hi - lo)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(200, 200, 200))
    for x, y in pts:
        u, v = (x - lo) * scale, (hi - y) * scale
        if 0 <= u < size and 0 <= v < size:
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=(31, 119, 180))
    return img


def heatmap(values: np.ndarray, *, lo: float | None = None, hi: float | None = None) -> Image.Image:
    """A 2-D array as a colour picture (dark blue → yellow, a perceptually ordered ramp), one pixel per value;
    ``lo``/``hi`` fix the ends of the scale (default: the 1st and 99th percentiles of the finite values). NaN values
    (tiles a sample left out) are mid grey."""
    v = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(v)
    finite = v[~missing] if missing.any() else v
    if finite.size == 0:
        finite = np.zeros(1)
    lo = np.percentile(finite, 1) if lo is None else lo
    hi = np.percentile(finite, 99) if hi is None else hi
    u = np.clip(np.nan_to_num((v - lo) / max(hi - lo, 1e-12)), 0, 1)
    # a few anchor colours of viridis, interpolated
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
    pos = u * (len(anchors) - 1)
    i = np.minimum(pos.astype(int), len(anchors) - 2)
    f = (pos - i)[..., None]
    rgb = anchors[i] * (1 - f) + anchors[i + 1] * f
    rgb[missing] = 128
    return Image.fromarray(np.rint(rgb).astype(np.uint8))


def text_table(rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Rows of strings as aligned columns (the first row is the header); columns in ``right`` align right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths))).rstrip() for r in rows)
