"""What the page shows beside the numbers (:mod:`scorezoo.demo`): a progress bar that moves with the library's ODE
solves and the files, the result in plain words next to the lossless coders, the bits map with a colour bar in bits
per pixel, and every model of the registry (a newly bundled one included) without a list written into the app."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import huggingface_hub.constants
import numpy as np
import pytest
import torch

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from scorezoo import ScorePipeline, zoo  # noqa: E402
from scorezoo.demo import build_demo, zoo_models  # noqa: E402
from scorezoo.demo.compute import ImageScore  # noqa: E402
from scorezoo.demo.figures import bits_map_figure, bits_map_picture  # noqa: E402
from scorezoo.demo.tab_likelihood import plain_words  # noqa: E402
from scorezoo.display import heatmap  # noqa: E402
from scorezoo.pipeline import DEQUANTIZER_FOLDER  # noqa: E402
from tests.demo.test_app import SETTINGS, launch, models, one_thread, photo, png  # noqa: E402,F401
from tests.fixtures_hub import card, make_zoo  # noqa: E402
from tests.helpers import tiny_unet_pipeline  # noqa: E402


def score(**fields) -> ImageScore:
    """A photo's result as the page gets it: 3.009 ± 0.032 bits/dim next to PNG, WebP and JPEG XL (``fields``
    override)."""
    base = dict(name="cat.png", model="m", why="", transform="", bpd=3.009, stderr=0.0324, num_repeats=1,
                bpd_repeats=[3.009], nfe=36, seconds=1.0, pixels_scored=4, num_patches=1,
                levels=torch.zeros(3, 2, 2, dtype=torch.long), num_levels=256, bits_map=None, times=None,
                bpd_path=None, dequantization_bpd=7.0, lossless={"png": 4.370, "webp": 3.062, "jxl": 2.806},
                light_background=False, divergence="hutchinson", call="")
    return ImageScore(**{**base, **fields})


def test_plain_words_against_the_coders():
    # PNG's 4.370 lies 42 standard errors above 3.009, WebP's 3.062 within two (0.065), JPEG XL's 2.806 six below
    assert plain_words(score()) == (
        "**cat.png**: 3.009 bits/dim is fewer than PNG's 4.370: the model would store this picture in less space; it "
        "is about the same as WebP's 3.062 (within two standard errors); it is more than JPEG XL's 2.806: JPEG XL "
        "would take less space than the model.")
    # one draw has no standard error: every difference counts
    assert plain_words(score(stderr=math.nan, lossless={"png": 3.01, "webp": 3.0})) == (
        "**cat.png**: 3.009 bits/dim is fewer than PNG's 3.010: the model would store this picture in less space; it "
        "is more than WebP's 3.000: WebP would take less space than the model.")
    assert plain_words(score(lossless={"png": 2.0, "webp": 1.0, "jxl": None})) == (
        "**cat.png**: 3.009 bits/dim is more than PNG's 2.000 and WebP's 1.000: PNG and WebP would take less space "
        "than the model.")


def test_plain_words_without_a_coder():
    # 17 levels: no 8-bit coder applies; each value stored as it is takes log2 17 = 4.087 bits
    digit = dict(name="d.png", num_levels=17, lossless={"png": None, "webp": None})
    assert plain_words(score(bpd=1.863, stderr=0.027, **digit)) == (
        "**d.png**: 1.863 bits/dim is fewer than the 4.087 of storing each value as it is (one of 17 levels): the "
        "model would store this picture in less space.")
    assert plain_words(score(bpd=5.0, stderr=0.1, **digit)) == (
        "**d.png**: 5.000 bits/dim is more than the 4.087 of storing each value as it is (one of 17 levels): storing "
        "the values as they are would take less space than the model.")


def test_bits_map_has_a_colour_bar_in_bits_per_pixel():
    # 0 to 9 bits from left to right, the same in the 3 channels: the bar spans the 1st to 99th percentiles
    ramp = np.linspace(0, 9, 100)
    fig = bits_map_figure(score(bits_map=torch.from_numpy(ramp).repeat(3, 50, 1), bpd=4.5))
    image, bar = fig.axes
    assert bar.get_ylabel() == "bits per pixel" and image.get_title() == "cat.png: 4.500 bits/dim"
    lo, hi = np.percentile(ramp, [1, 99])
    assert image.images[0].get_clim() == pytest.approx((lo, hi))
    # the colours of scorezoo.display.heatmap (as the command line draws a map) up to the colour table's 256 entries:
    # one entry apart, the steepest channel (red, 94 -> 253 over the last quarter) moves 2.5 levels, plus rounding
    colours = image.images[0].to_rgba(np.tile(ramp, (50, 1)), bytes=True)[..., :3].astype(int)
    assert np.abs(colours - np.asarray(heatmap(np.tile(ramp, (50, 1)), lo=lo, hi=hi), dtype=int)).max() <= 3
    # drawn 640 pixels wide whatever the picture's size (an 8×8 digit too), over a strip for the gallery's caption
    assert bits_map_picture(score(bits_map=torch.rand(1, 8, 8))).width == 640


def test_progress_follows_the_solves_and_the_files(models, photo, png, monkeypatch):  # noqa: F811
    # each ODE solve waits until the client has seen the page's progress at that solve, so the test sees every step
    # whatever the machine's speed; a page whose bar does not move with the solves times out here
    go = threading.Semaphore(0)
    original = ScorePipeline._log_likelihood

    def gated(self, *args, **kwargs):
        assert go.acquire(timeout=60), "the test never saw the progress of this solve"
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ScorePipeline, "_log_likelihood", gated)
    # 8 patches a solve: the photo's 24 patches in 3 solves; the digit's 4 draws in 1
    demo, url = launch(models, dataclasses.replace(SETTINGS, max_patch_batch=8))
    try:
        job = Client(url, verbose=False).submit([handle_file(str(photo)), handle_file(str(png))], "auto", 0, 0,
                                                api_name="/bits_per_dim")
        for step in [(0, 0, 3), (0, 1, 3), (0, 2, 3), (1, 0, 1)]:
            want = [(step[0], 2, "file", "files"), (step[1], step[2], "solve", "bits/dim")]
            deadline = time.monotonic() + 60
            while True:
                units = job.status().progress_data or []
                if [(u.index, u.length, u.unit, u.desc) for u in units] == want:
                    break
                assert time.monotonic() < deadline, f"progress {units}, waiting for {want}"
                time.sleep(0.02)
            go.release()
        assert [r["num_patches"] for r in job.result(timeout=120)[5]] == [24, 1]
    finally:
        go.release(10)  # a failed wait must not leave the server's worker blocked
        demo.close()


def test_each_button_shows_one_progress_bar(models):  # noqa: F811
    # Gradio draws a bar over every output of an event unless told where: the work of each button (sampling, bits/dim)
    # shows one, over one visible output (the sample grid or the density plot, whichever the model fills)
    config = build_demo(models, "tiny-digits", settings=SETTINGS).config
    visible = {c["id"]: c.get("props", {}).get("visible", True) is True for c in config["components"]}
    clicks = [d for d in config["dependencies"] if any(kind == "click" for _, kind in d["targets"])]
    assert sorted(d["api_name"] for d in clicks) == ["bits_per_dim", "sample"]
    for d in clicks:
        assert d["show_progress_on"] and sum(visible[i] for i in d["show_progress_on"]) == 1, d["api_name"]
        assert set(d["show_progress_on"]) <= set(d["outputs"])


def test_a_newly_bundled_model_is_listed_and_served(tmp_path, monkeypatch):
    # a model dropped into the package's bundled folder with its card appears in every tab, and the page names it
    # among the models with a trained dequantizer: the app has no list of models of its own
    paths = make_zoo(tmp_path / "zoo", tiny_unet_pipeline())
    new = paths["bundled"] / "brand-new"
    tiny_unet_pipeline(seed=5).save_pretrained(new)
    (new / "README.md").write_text(card("brand-new"))
    (new / DEQUANTIZER_FOLDER).mkdir()
    monkeypatch.setattr(zoo, "BUNDLED_DIR", paths["bundled"])
    monkeypatch.setattr(zoo, "CARDS_DIR", paths["cards"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(paths["hub"]))
    entries, problems = zoo_models()
    assert problems == []
    config = build_demo(entries).config
    props = [c.get("props", {}) for c in config["components"]]
    lists = [(p["label"], [c[0] for c in p["choices"]]) for p in props if p.get("choices") and p["label"] != "sampler"]
    # the Sample and the Likelihood tab's model, the Models tab's card
    assert [label for label, _ in lists] == ["model", "model", "model card"]
    assert all("brand-new" in names for _, names in lists)
    zoo_table = next(p for p in props if p.get("elem_id") == "zoo")
    assert "brand-new" in [row[0] for row in zoo_table["value"]["data"]]
    variational = next(p for p in props if p.get("elem_id") == "variational")
    assert "(brand-new ships one)" in variational["info"]

