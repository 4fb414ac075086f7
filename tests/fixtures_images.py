"""A corpus of awkward picture files, generated (never downloaded), for the loader and the command line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: name -> None for files that must score, or a regex the one-line error must match
CORPUS = {
    "rgba.png": None, "gray28.png": None, "palette.png": None, "gray16.png": None,
    "one.png": r"1×1, smaller than the model", "photo.jpg": None, "rgb64x48.png": None, "exif.jpg": None,
    "truncated.jpg": r"truncated or corrupt", "text.png": r"not an image file", "empty.png": r"the file is empty",
    "bomb.png": r"decompression bomb",
}
#: files the picture loader reads (upscaling them, and saying so) but that scoring refuses: a picture smaller than
#: the model would be scored on pixels the upscale invented
REFUSED_WHEN_SCORED = {"one.png"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb(path: Path, side: int = 20_000) -> None:
    """A valid 1-bit PNG of ``side``² black pixels (400 M for 20 000): ~50 kB on disk, 50 MB decoded."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))


def make_corpus(folder: Path) -> dict[str, Path]:
    """Write every file of :data:`CORPUS` into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    p = {name: folder / name for name in CORPUS}
    rgba = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(p["rgba.png"])
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(p["gray28.png"])
    pal = Image.fromarray(rng.integers(0, 4, (20, 30), dtype=np.uint8), "P")
    pal.putpalette([255, 255, 255, 200, 0, 0, 0, 200, 0, 0, 0, 200])
    pal.save(p["palette.png"], transparency=0)
    ramp = np.round(np.linspace(0, 65535, 40 * 30)).astype(np.uint16).reshape(30, 40)
    Image.fromarray(ramp).save(p["gray16.png"])
    Image.new("L", (1, 1), 200).save(p["one.png"])
    yy, xx = np.mgrid[0:3000, 0:4000]
    Image.fromarray(((xx + yy) % 256).astype(np.uint8)).convert("RGB").save(p["photo.jpg"], quality=80)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(p["rgb64x48.png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))).save(p["exif.jpg"], exif=exif)
    full = folder / "full.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(full, quality=95)
    p["truncated.jpg"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    p["text.png"].write_text("this is not a picture\n")
    p["empty.png"].write_bytes(b"")
    write_bomb(p["bomb.png"])
    return p
