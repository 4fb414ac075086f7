"""End to end in a real browser: headless Chromium (Debian's ``chromium``, driven by ``playwright-core`` from
``tests/browser/upload.cjs``) opens the launched app, uploads a PNG, waits for the result and reads the table.
Skipped, with the reason, where Chromium, node or playwright-core is missing (``.ci/run`` installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from tests.test_app import launch, library_bpd, models, one_thread  # noqa: E402,F401

BROWSER_DIR = Path(__file__).parent / "browser"
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


def test_upload_in_chromium_shows_the_librarys_bits_per_dim(models, tmp_path):  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (as .ci/run does)")
    env = _node_env()
    if env is None:
        pytest.skip("node or playwright-core missing: npm install --prefix tests/browser playwright-core "
                    "(as .ci/run does)")
    png = tmp_path / "upload-me.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)).save(png)
    shots = Path(os.environ.get("SCOREZOO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    demo, url = launch(models)
    try:
        run = subprocess.run(["node", str(BROWSER_DIR / "upload.cjs"), url, str(png), str(shots)], env=env,
                             capture_output=True, text=True, timeout=240)
    finally:
        demo.close()
    assert run.returncode == 0, f"browser run failed (screenshot in {shots}):\n{run.stderr[-2000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # the page's defaults: seed 0 and 4 dequantization draws
    lib = library_bpd(models, png, 0, num_repeats=4)
    assert result["row"][:3] == ["upload-me.png", f"{lib.bpd.item():.4f}", f"{lib.stderr.item():.4f}"]
    assert result["offsite"] == [], "the page asked for resources outside the app"
    assert {"likelihood.png", "sample.png", "models.png"} <= {p.name for p in shots.iterdir()}
