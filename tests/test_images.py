"""The picture loader against a corpus of awkward files: every file scores with its transform stated, or is
refused with one line naming it."""

import re
import time

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo.data import MAX_IMAGE_PIXELS, background_is_light, load_image
from tests.fixtures_images import CORPUS, REFUSED_WHEN_SCORED, make_corpus, write_bomb
from tests.helpers import tiny_unet_pipeline

SHAPE, K = (1, 8, 8), 17


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_file_scores_or_is_refused_by_name(corpus, name):
    path = corpus[name]
    if name in REFUSED_WHEN_SCORED:
        li = load_image(path, data_shape=SHAPE, num_levels=K)
        assert li.levels.shape == SHAPE and "upscale" in li.transform
        with pytest.raises(ValueError) as e:
            tiny_unet_pipeline(num_levels=K).bits_per_dim(str(path))
        msg = str(e.value)
        assert re.search(CORPUS[name], msg) and str(path) in msg and "\n" not in msg
    elif CORPUS[name] is None:
        for shape in (SHAPE, (3, 8, 8)):
            li = load_image(path, data_shape=shape, num_levels=K)
            assert li.levels.shape == shape and li.levels.dtype == torch.long
            assert 0 <= li.levels.min() and li.levels.max() < K
            assert li.transform.endswith(f"nearest of {K} levels")
    else:
        with pytest.raises(ValueError) as e:
            load_image(path, data_shape=SHAPE, num_levels=K)
        msg = str(e.value)
        assert re.search(CORPUS[name], msg) and str(path) in msg and "\n" not in msg


def test_transform_names_each_step(corpus):
    t = {n: load_image(corpus[n], data_shape=SHAPE, num_levels=K).transform for n in corpus if CORPUS[n] is None}
    assert t["rgba.png"].startswith("RGBA 64×48: RGBA transparency composited on black, RGBA→L, centre-crop to "
                                    "48×48, box-filter downscale ×6 to 8×8 (blocks averaged: pixel values changed)")
    assert "Lanczos resize to 8×8 (interpolated: pixel values changed)" in t["palette.png"]
    assert t["palette.png"].startswith("P 30×20: P transparency composited on black")
    assert t["gray16.png"].startswith("I;16 40×30: I;16 read on [0, 65535]")
    assert "EXIF orientation 6 applied" in t["exif.jpg"]
    assert t["photo.jpg"].startswith("RGB 4000×3000: RGB→L")
    assert load_image(corpus["gray28.png"], data_shape=(1, 28, 28), num_levels=K).transform == \
        "L 28×28: nearest of 17 levels"


def test_integer_resizes_are_exact(tmp_path):
    """A digit saved at 8×8, enlarged ×2 and ×8 by nearest neighbour, or shrunk to 4×4 and enlarged back, reads back
    as the same levels: integer factors take the exact path (box filter, nearest upscale), and say so."""
    k = np.random.default_rng(0).integers(0, K, (8, 8))
    u8 = np.round(k * 255 / 16).astype(np.uint8)
    for f in (1, 2, 8):
        Image.fromarray(u8.repeat(f, 0).repeat(f, 1)).save(tmp_path / f"d{f}.png")
        li = load_image(tmp_path / f"d{f}.png", data_shape=SHAPE, num_levels=K)
        assert torch.equal(li.levels[0], torch.from_numpy(k))
        assert f == 1 or f"box-filter downscale ×{f} to 8×8 (each block was one value: exact)" in li.transform
    Image.fromarray(u8[::2, ::2]).save(tmp_path / "small.png")
    li = load_image(tmp_path / "small.png", data_shape=SHAPE, num_levels=K)
    assert torch.equal(li.levels[0], torch.from_numpy(k[::2, ::2]).repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert "nearest-neighbour upscale ×2 to 8×8 (exact)" in li.transform


def test_sixteen_bit_keeps_full_precision(tmp_path):
    """16-bit levels exactly at k/16 of full scale read back as k, with and without a resize (a resize that
    first rescaled into 8 bits, or lost the scale, would miss)."""
    k = np.arange(64).reshape(8, 8) % K
    Image.fromarray(np.round(k * 65535 / 16).astype(np.uint16)).save(tmp_path / "a.png")
    assert torch.equal(load_image(tmp_path / "a.png", data_shape=SHAPE, num_levels=K).levels[0], torch.from_numpy(k))
    Image.fromarray(np.full((16, 24), 32768, np.uint16)).save(tmp_path / "b.png")
    assert (load_image(tmp_path / "b.png", data_shape=SHAPE, num_levels=K).levels == 8).all()


def test_transparent_pixels_become_background(tmp_path):
    """Fully transparent white pixels are level 0 (black); with invert they are still 0 (composited on white,
    then inverted), and opaque white ink on them is 16 without invert."""
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., :3] = 255
    a[2:6, 3, 3] = 255  # an opaque white stroke
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    plain = load_image(tmp_path / "t.png", data_shape=SHAPE, num_levels=K).levels[0]
    assert plain[2:6, 3].tolist() == [16] * 4 and plain.sum() == 64
    pal = Image.fromarray(np.zeros((8, 8), np.uint8), "P")
    pal.putpalette([255, 255, 255])
    pal.save(tmp_path / "p.png", transparency=0)
    assert (load_image(tmp_path / "p.png", data_shape=SHAPE, num_levels=K).levels == 0).all()
    assert (load_image(tmp_path / "p.png", data_shape=SHAPE, num_levels=K, invert=True).levels == 0).all()


def test_invert_and_light_background(tmp_path):
    """Dark ink on white paper: detected as a light background; --invert turns it into bright ink on black."""
    a = np.full((8, 8), 255, np.uint8)
    a[1:7, 4] = 0
    Image.fromarray(a).save(tmp_path / "ink.png")
    plain = load_image(tmp_path / "ink.png", data_shape=SHAPE, num_levels=K)
    inv = load_image(tmp_path / "ink.png", data_shape=SHAPE, num_levels=K, invert=True)
    assert background_is_light(plain.levels, K) and not background_is_light(inv.levels, K)
    assert torch.equal(inv.levels, K - 1 - plain.levels)
    assert "inverted (v → 1 − v)" in inv.transform


def test_exif_rotation_matches_the_rotated_picture(corpus):
    """The EXIF-tagged file reads as its decoded pixels rotated 90° clockwise (orientation 6)."""
    stored = np.asarray(Image.open(corpus["exif.jpg"]), dtype=np.float64)
    assert stored.shape == (16, 32)
    shown = np.rot90(stored, k=-1)
    a = load_image(corpus["exif.jpg"], data_shape=(1, 32, 16), num_levels=K).levels[0]
    assert torch.equal(a, torch.from_numpy(np.rint(shown * (K - 1) / 255).astype(np.int64)))


def test_bomb_is_refused_from_its_header_quickly(tmp_path):
    """A 400 M-pixel PNG (under 50 kB) and one just over MAX_IMAGE_PIXELS (below PIL's own guard) are refused
    without decoding: well under the ~1 s a decode of 400 M pixels would take."""
    write_bomb(tmp_path / "bomb.png")
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    write_bomb(tmp_path / "big.png", side=side)
    for name, match in (("bomb.png", "decompression bomb"), ("big.png", "over the limit")):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=match):
            load_image(tmp_path / name, data_shape=SHAPE, num_levels=K)
        assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("make, match", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "not an image file|cannot decode"),
])
def test_other_bad_paths(tmp_path, make, match):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(ValueError, match=match):
        load_image(p, data_shape=SHAPE, num_levels=K)
