"""What off-the-shelf lossless coders need for the same pixels, in bits/dim, to set a model's bits/dim beside them.

PNG (Pillow, ``optimize=True``), WebP lossless (Pillow, ``lossless=True, method=6``: its slowest, strongest setting)
and JPEG XL lossless (``effort=9``) when the ``pillow-jxl-plugin`` package is installed (``pip install
'scorezoo[jxl]'``). Each coder's file size in bits, headers included, over the number of values ``C × H × W``.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["CODECS", "lossless_bits_per_dim", "codec_available"]

CODECS = ("png", "webp", "jxl")


def codec_available(codec: str) -> bool:
    """Whether ``codec`` can encode here (JPEG XL needs the ``pillow-jxl-plugin`` package)."""
    if codec == "jxl":
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        except ImportError:
            return False
        return True
    return codec in CODECS


def lossless_bits_per_dim(levels: torch.Tensor | np.ndarray, codec: str) -> float | None:
    """Bits/dim of a lossless ``codec`` for an 8-bit picture.

    Args:
        levels: ``(C, H, W)`` integer values in [0, 256), C = 1 or 3.
        codec: ``"png"``, ``"webp"`` or ``"jxl"``.

    Returns:
        The encoded size in bits over ``C * H * W``, or ``None`` for ``"jxl"`` when its plugin is not installed.

    Raises:
        ValueError: an unknown codec, or values that are not 8-bit levels of 1 or 3 channels.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {CODECS}.")
    a = np.asarray(levels)
    if a.ndim != 3 or a.shape[0] not in (1, 3) or a.min() < 0 or a.max() > 255:
        raise ValueError(f"need (C, H, W) 8-bit levels with C = 1 or 3, got shape {a.shape}.")
    if not codec_available(codec):
        return None
    img = Image.fromarray(a.astype(np.uint8).transpose(1, 2, 0).squeeze(-1) if a.shape[0] == 1 else
                          a.astype(np.uint8).transpose(1, 2, 0))
    buf = io.BytesIO()
    if codec == "png":
        img.save(buf, "PNG", optimize=True)
    elif codec == "webp":
        img.save(buf, "WEBP", lossless=True, quality=100, method=6)
    else:
        img.save(buf, "JXL", lossless=True, effort=9)
    return 8 * len(buf.getvalue()) / a.size
