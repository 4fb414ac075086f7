"""End to end in a real browser: headless Chromium (Debian's ``chromium``, driven by ``playwright-core`` from
``tests/browser/upload.cjs``) opens the launched app in a 1400×900 window, uploads a digit and a colour photo,
watches the progress, waits for the results and reads the table, then checks what a person sees: one progress bar
that moves with the ODE solves, every column of the tables, the bits maps large, every model listed, and no box that
scrolls on its own. Skipped, with the reason, where Chromium, node or playwright-core is missing (``.ci/run`` installs
them). ``SCOREZOO_SCREENSHOTS=DIR`` keeps the screenshots of the three tabs and of the progress."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from scorezoo import ScorePipeline  # noqa: E402
from scorezoo.datasets import photo_path  # noqa: E402
from tests.demo.test_app import EXACT_MAP, SETTINGS, launch, library_bpd, models, one_thread  # noqa: E402,F401

BROWSER_DIR = Path(__file__).parents[1] / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _node_env() -> dict | None:
    """Environment under which node finds playwright-core (tests/browser/node_modules, or NODE_PATH), or None."""
    node = shutil.which("node")
    if node is None:
        return None
    env = dict(os.environ)
    probe = subprocess.run([node, "-e", "require.resolve('playwright-core')"], cwd=BROWSER_DIR, env=env,
                           capture_output=True)
    return env if probe.returncode == 0 else None


def test_upload_in_chromium_shows_the_librarys_bits_per_dim(models, tmp_path, monkeypatch):  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (as .ci/run does)")
    env = _node_env()
    if env is None:
        pytest.skip("node or playwright-core missing: npm install --prefix tests/browser playwright-core "
                    "(as .ci/run does)")
    png = tmp_path / "upload-me.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)).save(png)
    # a 136×100 crop of the held-out photo chelsea: 6×8 patches of the 16×16 stand-in photo model, 8 columns and
    # 4 rows of border cropped
    photo = tmp_path / "cat.png"
    Image.open(photo_path("chelsea")).convert("RGB").crop((160, 30, 296, 130)).save(photo)
    shots = Path(os.environ.get("SCOREZOO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    # a second per ODE solve, and 16 patches a solve (the photo's 48 in 3), so that a person sees the bar move
    original = ScorePipeline._log_likelihood

    def slow(self, *args, **kwargs):
        time.sleep(1.0)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ScorePipeline, "_log_likelihood", slow)
    demo, url = launch(models, dataclasses.replace(SETTINGS, max_patch_batch=16))
    try:
        run = subprocess.run(["node", str(BROWSER_DIR / "upload.cjs"), url, str(shots), str(png), str(photo)],
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        demo.close()
    assert run.returncode == 0, f"browser run failed (screenshot in {shots}):\n{run.stderr[-2000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # the page's defaults: the model picked per picture, seed 0, automatic draws (4 per digit, 1 per photo patch), the
    # bits map on
    lib = library_bpd(models, png, 0, num_repeats=4, **EXACT_MAP)
    assert result["rows"]["upload-me.png"][:3] == ["upload-me.png", f"{lib.bpd.item():.4f}", f"{lib.stderr.item():.4f}"]
    photo_model = next(m.name for m in models if m.name.endswith("tiny-photo"))
    lib = library_bpd(models, photo, 0, name=photo_model, num_repeats=1, bits_map=True, max_batch_size=16)
    row = result["rows"]["cat.png"]
    assert row[:3] == ["cat.png", f"{lib.bpd.item():.4f}", f"{lib.stderr.item():.4f}"]
    assert f"{48 * 16 * 16:,}" in row and photo_model in row  # 6×8 patches of 16×16 pixels scored, by the photo model
    assert result["maps"] == 2
    # one progress bar (not one per output), which moved with the solves of the photo, the second of the two files
    progress = result["progress"]
    assert progress["bars"] == 1, progress
    assert {"files - 50.0% / bits/dim - 33.3%", "files - 50.0% / bits/dim - 66.7%"} <= set(progress["levels"]), \
        progress
    # every column of both tables within the 1400-pixel page, every model of the zoo listed (15 here), the bits maps
    # large enough to read, and nothing in its own scroll box
    assert result["cut"] == {"table": [], "zoo": []}
    assert result["zooRows"] == len(models) > 9  # 500 pixels, Gradio's default height, shows 9 of them
    assert min(result["mapWidths"]) >= 500, result["mapWidths"]
    assert result["scrolls"] == {"table": [], "maps": [], "zoo": []}
    assert result["offsite"] == [], "the page asked for resources outside the app"
    assert {"likelihood.png", "progress.png", "sample.png", "models.png"} <= {p.name for p in shots.iterdir()}
