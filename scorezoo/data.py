"""Images in, integer levels out: files, PIL images and arrays to the tensors a model scores.

One documented transform for every picture a user brings (:func:`load_image`):

1. the file is checked before it is decoded: missing, empty, not an image, or over
   :data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb is refused from its header, never decoded) is an
   error naming the file; a truncated or corrupt file is an error too, never a partly decoded picture
   (PIL's ``LOAD_TRUNCATED_IMAGES`` is not used);
2. EXIF orientation is applied (a phone photo is scored the way it is shown);
3. transparency (an alpha channel or a palette/tRNS transparent colour) is composited onto black, level 0,
   the background of the digits data (onto white when ``invert=True``, so that it still ends up black);
4. the picture is converted to the model's channels (``L`` for 1 channel, ``RGB`` for 3, with PIL's
   ITU-R 601-2 luma for colour to gray); 16-bit and 32-bit integer grayscale are read on [0, 65535] and
   float grayscale on [0, 1], at full precision (not truncated to 8 bits first);
5. if its size differs from the model's, it is centre-cropped to the model's aspect ratio and resized, after
   the conversion of step 4 so that palette and bilevel pictures are filtered too: by an integer factor exactly
   (a box filter that averages f × f blocks, which gives back every pixel of a nearest-neighbour enlargement, or a
   nearest-neighbour enlargement), otherwise with a Lanczos (antialiasing) filter; the step says whether pixel
   values changed. Models of photo patches score a larger picture at its own resolution instead, tile by tile
   (:func:`tile_levels`);
6. with ``invert=True`` each value ``v`` in [0, 1] becomes ``1 - v`` (dark ink on white paper becomes the
   bright-on-dark convention of the digits data);
7. each value ``v`` in [0, 1] becomes the nearest of ``K`` evenly spaced levels: ``round(v (K - 1))``
   (for 8-bit input, ``round(v8 (K - 1) / 255)``).

The steps actually taken are returned as text with every picture (:class:`LoadedImage`).

Arrays are taken as levels already: integers in [0, K), shaped ``(B, H, W)``, ``(B, H, W, C)`` or
``(B, C, H, W)`` (a single ``(H, W)`` image is a batch of one). Float arrays with non-integer values in [0, 1] (the
pipeline's ``"pt"`` and ``"np"`` outputs) are quantised to the nearest of the K levels, as pictures are.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["load_image", "to_levels", "levels_to_uint8", "levels_to_images", "LoadedImage", "MAX_IMAGE_PIXELS",
           "background_is_light", "Tiles", "tile_levels", "cover_levels", "untile", "is_picture", "is_colour",
           "open_image"]

#: pictures larger than this are refused from their header, before decoding (a 4000×3000 photo is 12M)
MAX_IMAGE_PIXELS = 64_000_000
#: full-scale value of the high-bit-depth grayscale modes, read without first truncating to 8 bits
_HIGH_DEPTH = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


@dataclass
class LoadedImage:
    """One picture as the model sees it: ``levels`` ``(C, H, W)`` long in [0, K) and the transform applied."""

    levels: torch.Tensor
    transform: str


def _name(item: Any) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else type(item).__name__


def open_image(path: str | os.PathLike, name: str | None = None) -> Image.Image:
    """Open and fully decode the picture file ``path``; every way a file can be bad (missing, a folder, empty, not
    an image, truncated or corrupt, over :data:`MAX_IMAGE_PIXELS`) becomes one ``ValueError`` naming it."""
    path, name = Path(path), str(path) if name is None else name
    if path.is_dir():
        raise ValueError(f"{name}: is a folder, not a picture file.")
    if not path.is_file():
        raise ValueError(f"{name}: no such file.")
    if path.stat().st_size == 0:
        raise ValueError(f"{name}: the file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            # the header gives the size: refuse a bomb here, before any pixel is decompressed
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{name}: {img.width}×{img.height} pixels is over the limit of "
                                 f"{MAX_IMAGE_PIXELS:,} (a possible decompression bomb); downscale it first.")
            img.load()
    except ValueError:
        raise
    except UnidentifiedImageError:
        raise ValueError(f"{name}: not an image file that PIL can read.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{name}: refused as a possible decompression bomb ({e}).") from None
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{name}: cannot decode the image (truncated or corrupt?): {e}.") from None
    return img


def _to_channels(img: Image.Image, channels: int, invert: bool) -> tuple[Image.Image, float, list[str]]:
    """Step 3-4 of the module docstring: ``(picture in mode L, RGB or F, its full-scale value, steps)``."""
    mode, steps = img.mode, []
    if mode in _HIGH_DEPTH:
        full = _HIGH_DEPTH[mode]
        steps.append(f"{mode} read on [0, {full:g}]" + (", gray→RGB" if channels == 3 else ""))
        return (img if mode == "F" else img.convert("F")), full, steps
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        bg = (255, 255, 255, 255) if invert else (0, 0, 0, 255)
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, bg), rgba)
        steps.append(f"{mode} transparency composited on {'white' if invert else 'black'}")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        steps.append(f"{img.mode}→{target}")
        img = img.convert(target)
    return img, 255.0, steps


def _resize(img: Image.Image, w: int, h: int) -> tuple[np.ndarray, str]:
    """Step 5: centre-crop to the model's aspect ratio, then resize to ``w × h`` as exactly as the sizes allow.
    Returns the picture as a float array on its full scale and the step's description."""
    cw, ch = img.width, img.height
    if cw * h > ch * w:  # too wide: crop columns
        cw = max(1, round(ch * w / h))
    elif cw * h < ch * w:
        ch = max(1, round(cw * h / w))
    crop = "" if (cw, ch) == (img.width, img.height) else f"centre-crop to {cw}×{ch}, "
    left, top = (img.width - cw) // 2, (img.height - ch) // 2
    img = img.crop((left, top, left + cw, top + ch))
    a = np.asarray(img, dtype=np.float64)
    fy, fx = ch / h, cw / w
    if fx == fy and fx == int(fx):
        f = int(fx)
        blocks = a.reshape(h, f, w, f, *a.shape[2:])
        constant = bool((blocks == blocks[:, :1, :, :1]).all())
        how = "each block was one value: exact" if constant else "blocks averaged: pixel values changed"
        return blocks.mean((1, 3)), f"{crop}box-filter downscale ×{f} to {w}×{h} ({how})"
    if 1 / fx == 1 / fy and w % cw == 0:
        f = w // cw
        return a.repeat(f, 0).repeat(f, 1), f"{crop}nearest-neighbour upscale ×{f} to {w}×{h} (exact)"
    resized = img.resize((w, h), Image.Resampling.LANCZOS)
    return (np.asarray(resized, dtype=np.float64),
            f"{crop}Lanczos resize to {w}×{h} (interpolated: pixel values changed)")


def load_image(item: Any, *, data_shape: Sequence[int], num_levels: int, invert: bool = False,
               resize: bool = True) -> LoadedImage:
    """Decode one picture (path, PIL image) into model levels ``(C, H, W)``; see the module docstring.

    Args:
        item: a file path (str or PathLike) or a :class:`PIL.Image.Image`.
        data_shape: the model's ``(C, H, W)``, C in {1, 3}.
        num_levels: K.
        invert: map each value ``v`` to ``1 - v`` (for dark ink on light paper; step 6).
        resize: step 5; ``False`` keeps the picture at its own resolution (for :func:`tile_levels`), and only the
            model's channels are taken from ``data_shape``.

    Returns:
        :class:`LoadedImage`.

    Raises:
        ValueError: a file that is missing, empty, not an image, truncated or corrupt, or larger than
            :data:`MAX_IMAGE_PIXELS`, or an image PIL cannot convert; the message names the file.
    """
    c, h, w = (int(v) for v in data_shape)
    if c not in (1, 3):
        raise ValueError(f"image models have 1 or 3 channels; this one has data shape {tuple(data_shape)}.")
    name = _name(item)
    if isinstance(item, (str, os.PathLike)):
        img = open_image(item, name)
    elif isinstance(item, Image.Image):
        img = item
    else:
        raise ValueError(f"cannot read a {name} as an image: give a file path or a PIL image.")
    if img.width < 1 or img.height < 1:
        raise ValueError(f"{name}: the image has no pixels.")
    src, steps = f"{img.mode} {img.width}×{img.height}", []
    try:
        orientation = img.getexif().get(0x0112, 1)
        img = ImageOps.exif_transpose(img)
        if orientation not in (1, None):
            steps.append(f"EXIF orientation {orientation} applied")
        img, full, conv = _to_channels(img, c, invert)
        steps += conv
        if resize and (img.width, img.height) != (w, h):
            a, step = _resize(img, w, h)
            steps.append(step)
        else:
            a = np.asarray(img, dtype=np.float64)
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ValueError(f"{name}: cannot convert this {src} image: {e}.") from None
    a = np.clip(a / full, 0.0, 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], c, axis=2)
    if invert:
        a = 1.0 - a
        steps.append("inverted (v → 1 − v)")
    levels = np.rint(a * (num_levels - 1)).clip(0, num_levels - 1).astype(np.int64)
    steps.append(f"nearest of {num_levels} levels")
    return LoadedImage(torch.from_numpy(levels).permute(2, 0, 1).contiguous(), f"{src}: " + ", ".join(steps))


@dataclass
class Tiles:
    """A picture cut into model-size patches at its own resolution (:func:`tile_levels`).

    Attributes:
        patches: ``(N, C, P_h, P_w)`` levels, in raster order (row by row).
        grid: ``(rows, cols)`` of patches, ``N = rows * cols``.
        pixels_scored: ``rows * P_h * cols * P_w``.
        border: what was done with the remainder strips, in words.
    """

    patches: torch.Tensor
    grid: tuple[int, int]
    pixels_scored: int
    border: str


def tile_levels(levels: torch.Tensor, patch_size: tuple[int, int]) -> Tiles:
    """Cut a picture ``(C, H, W)`` of levels into non-overlapping ``patch_size`` patches, from the top-left corner.

    The remainder strips (the rightmost ``W mod P_w`` columns and the bottom ``H mod P_h`` rows) hold no whole patch
    and are not scored: they are cropped, never padded, so that every scored pixel is the picture's own.

    Raises:
        ValueError: a picture smaller than one patch.
    """
    c, h, w = levels.shape
    ph, pw = (int(v) for v in patch_size)
    rows, cols = h // ph, w // pw
    if rows < 1 or cols < 1:
        raise ValueError(f"a {w}×{h} picture is smaller than one {pw}×{ph} patch of this model: it cannot be tiled.")
    crop = levels[:, :rows * ph, :cols * pw]
    patches = crop.unfold(1, ph, ph).unfold(2, pw, pw).permute(1, 2, 0, 3, 4).reshape(-1, c, ph, pw)
    right, bottom = w - cols * pw, h - rows * ph
    border = (f"{rows}×{cols} patches of {pw}×{ph}; " +
              ("every pixel scored" if not (right or bottom) else
               f"the rightmost {right} column(s) and bottom {bottom} row(s) cropped, not scored"))
    return Tiles(patches.contiguous(), (rows, cols), rows * ph * cols * pw, border)


def cover_levels(levels: torch.Tensor, max_tile_size: int, multiple: int) -> Tiles:
    """Cut a picture ``(C, H, W)`` of levels into the fewest equal tiles of at most ``max_tile_size`` on a side whose
    sides are multiples of ``multiple``, from the top-left corner: the tiles of a fully convolutional model, which
    takes any size that its down-sampling divides (a picture of at most ``max_tile_size`` is one tile, scored whole).

    ``rows = ceil(H / max_tile_size)`` tiles of height ``P_h = multiple * floor(H / (rows * multiple))`` (likewise
    the columns), so fewer than ``rows * multiple`` rows and ``cols * multiple`` columns are left at the bottom and
    right edges; they are cropped, never padded, so that every scored pixel is the picture's own.

    Raises:
        ValueError: a picture smaller than ``multiple`` on a side, or ``max_tile_size < multiple``.
    """
    c, h, w = levels.shape
    size, m = int(max_tile_size), int(multiple)
    if m < 1 or size < m:
        raise ValueError(f"need 1 <= multiple <= max_tile_size, got {m} and {size}.")
    if h < m or w < m:
        raise ValueError(f"a {w}×{h} picture is smaller than {m}×{m}, the smallest input of this model: it cannot be "
                         "scored.")
    rows, cols = -(-h // size), -(-w // size)
    ph, pw = m * (h // (rows * m)), m * (w // (cols * m))
    if ph < 1 or pw < 1:  # rows tiles of at least m would not fit: fewer, smaller than max_tile_size anyway
        rows, cols = min(rows, h // m), min(cols, w // m)
        ph, pw = m * (h // (rows * m)), m * (w // (cols * m))
    return tile_levels(levels, (ph, pw))


def untile(values: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`tile_levels`' cut: per-patch values ``(N, C, P_h, P_w)`` back into ``(C, rows P_h,
    cols P_w)``."""
    n, c, ph, pw = values.shape
    rows, cols = grid
    return values.reshape(rows, cols, c, ph, pw).permute(2, 0, 3, 1, 4).reshape(c, rows * ph, cols * pw)


def background_is_light(levels: torch.Tensor, num_levels: int) -> bool:
    """Whether the border of one picture ``(C, H, W)`` of levels is mostly bright (mean over the outermost
    pixels above half of the top level): the sign of dark ink on light paper, the opposite of the digits
    data. Used to suggest ``invert``, never to apply it silently."""
    border = torch.cat([levels[..., 0, :], levels[..., -1, :], levels[..., :, 0], levels[..., :, -1]], dim=-1)
    return bool(border.double().mean() > (num_levels - 1) / 2)


def is_colour(item: Any) -> bool:
    """Whether a picture (file path or PIL image) is in colour: its channels differ somewhere once converted to RGB
    (compared on a 32×32 thumbnail), so a gray picture saved as RGB or through a gray palette counts as grayscale.
    Used to pick a model for a picture (photo model or digits model). A file that cannot be read is not in colour:
    its error is reported when it is loaded."""
    try:
        img = open_image(item) if isinstance(item, (str, os.PathLike)) else item
        if img.mode in ("1", "L", "LA", "La", "I", "F") or img.mode in _HIGH_DEPTH:
            return False
        small = img.convert("RGB").resize((32, 32))
    except (ValueError, OSError):
        return False
    r, g, b = (small.getchannel(c).tobytes() for c in "RGB")
    return r != g or g != b


def _array_to_levels(a: np.ndarray, data_shape: Sequence[int], num_levels: int) -> tuple[torch.Tensor, str]:
    shape = tuple(int(v) for v in data_shape)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"image arrays must hold numbers, got dtype {a.dtype}.")
    transform = "array of levels"
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("the image array contains NaN or inf values.")
        if not np.array_equal(a, np.round(a)):
            if a.min() < 0 or a.max() > 1:
                raise ValueError(f"image arrays must hold integer levels in [0, {num_levels}) or values in [0, 1] "
                                 f"(as the pipeline's 'pt' and 'np' outputs); got non-integer values in "
                                 f"[{a.min():g}, {a.max():g}].")
            # values in [0, 1] (a sampler's 'pt'/'np' output): the nearest level, as for pictures
            a = np.rint(a * (num_levels - 1))
            transform = f"values in [0, 1], nearest of {num_levels} levels"
    if len(shape) == 3:
        c, h, w = shape
        if a.shape == (h, w) and c == 1 or a.shape in ((c, h, w), (h, w, c)):
            a = a[None]
        if a.ndim == 3 and a.shape[1:] == (h, w) and c == 1:
            a = a[:, None]
        elif a.ndim == 4 and a.shape[1:] == (h, w, c) and a.shape[1:] != (c, h, w):
            a = a.transpose(0, 3, 1, 2)
        if a.ndim != 4 or a.shape[1:] != (c, h, w):
            raise ValueError(f"image array of shape {a.shape} does not fit the model's (C, H, W) = {shape}: give "
                             f"(B, {h}, {w})" + (" or" if c == 1 else "")
                             + f" (B, {h}, {w}, {c}) or (B, {c}, {h}, {w}).")
    else:
        if a.shape == shape:
            a = a[None]
        if a.shape[1:] != shape:
            raise ValueError(f"array of shape {a.shape} does not fit the model's data shape (B, *{shape}).")
    if a.shape[0] == 0:
        raise ValueError("empty batch: give at least one image.")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi >= num_levels:
        raise ValueError(f"levels must lie in [0, {num_levels}) for this model, got values in [{lo:g}, {hi:g}]. "
                         f"For 8-bit images pass files or PIL images, which are converted.")
    return torch.from_numpy(np.ascontiguousarray(a).astype(np.int64)), transform


def is_picture(images: Any) -> bool:
    """Whether ``images`` is a picture (file path, PIL image) or a non-empty list of them, rather than an array."""
    items = images if isinstance(images, (list, tuple)) else [images]
    return len(items) > 0 and all(isinstance(i, (str, os.PathLike, Image.Image)) for i in items)


def to_levels(images: Any, *, data_shape: Sequence[int], num_levels: int,
              invert: bool = False) -> tuple[torch.Tensor, list[str]]:
    """Turn a batch of pictures into model levels ``(B, *data_shape)`` (long, in [0, K)).

    Args:
        images: an integer array or tensor (see the module docstring), a PIL image, a file path, or a
            list of PIL images and paths.
        data_shape: the model's data shape, ``(C, H, W)`` for images.
        num_levels: K.
        invert: for pictures (not arrays), map each value ``v`` in [0, 1] to ``1 - v`` (see :func:`load_image`).

    Returns:
        ``(levels, transforms)``: the levels and, per image, the transform applied (``"array of levels"`` for
        integer arrays).

    Raises:
        ValueError: a bad shape, non-integer or out-of-range values, NaN/inf, an empty batch, or a file
            that cannot be read (the message names it).
    """
    if torch.is_tensor(images):
        images = images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        levels, transform = _array_to_levels(images, data_shape, num_levels)
        return levels, [transform] * levels.shape[0]
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"cannot read images from a {type(images).__name__}: give an integer array, PIL images "
                         "or file paths.")
    if len(images) == 0:
        raise ValueError("empty batch: give at least one image.")
    if len(data_shape) != 3:
        raise ValueError(f"this model's data are not images (shape {tuple(data_shape)}): pass an array.")
    loaded = [load_image(item, data_shape=data_shape, num_levels=num_levels, invert=invert) for item in images]
    return torch.stack([li.levels for li in loaded]), [li.transform for li in loaded]


def levels_to_images(levels: torch.Tensor, num_levels: int, output_type: str = "pil"):
    """Images of levels ``(B, C, H, W)`` in [0, K): ``"pt"`` a float tensor in [0, 1], ``"np"`` a float32 array
    ``(B, H, W, C)`` in [0, 1] of the 8-bit values (:func:`levels_to_uint8`), ``"pil"`` a list of PIL images."""
    if output_type == "pt":
        return levels.float() / (num_levels - 1)
    u8 = levels_to_uint8(levels, num_levels)
    if output_type == "np":
        return u8.astype(np.float32) / 255.0
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in u8]


def levels_to_uint8(levels: torch.Tensor, num_levels: int) -> np.ndarray:
    """Levels ``(B, C, H, W)`` to 8-bit pictures ``(B, H, W, C)``: ``round(255 k / (K - 1))``, the inverse of
    the quantisation of :func:`load_image`."""
    a = torch.round(levels.double() * 255.0 / (num_levels - 1)).clamp(0, 255).to(torch.uint8)
    return a.permute(0, 2, 3, 1).cpu().numpy()
