"""``scorezoo.data.is_colour``: what picks the photo model or the digits model for a picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scorezoo.data import is_colour


def gray(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (20, 30), dtype=np.uint8)


@pytest.mark.parametrize("make, colour", [
    (lambda: Image.fromarray(gray()), False),
    (lambda: Image.fromarray(gray()).convert("RGB"), False),  # a gray picture saved as RGB is still gray
    (lambda: Image.fromarray(gray()).convert("P"), False),  # a palette of grays
    (lambda: Image.fromarray(gray()).convert("LA"), False),
    (lambda: Image.fromarray(gray().astype(np.uint16) * 257), False),  # 16-bit grayscale
    (lambda: Image.fromarray(np.stack([gray(0), gray(1), gray(2)], 2)), True),
    (lambda: Image.fromarray(np.stack([gray(0), gray(1), gray(2), gray(3)], 2)), True),  # RGBA
    (lambda: Image.fromarray(np.stack([gray(0), gray(1), gray(2)], 2)).convert("P"), True),
])
def test_colour_means_channels_that_differ(make, colour, tmp_path):
    img = make()
    assert is_colour(img) is colour
    path = tmp_path / "pic.png"
    img.save(path)
    assert is_colour(path) is colour


def test_a_single_coloured_pixel_counts():
    # a 32×32 thumbnail keeps a lone coloured pixel of a small picture
    a = np.repeat(gray()[..., None], 3, 2)
    a[5, 7] = (255, 0, 0)
    assert is_colour(Image.fromarray(a))


def test_unreadable_files_are_not_colour(tmp_path):
    # their error comes when they are loaded, with the file's name
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    assert not is_colour(junk) and not is_colour(tmp_path / "missing.png")
