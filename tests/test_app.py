"""The demo (``app.py`` / :mod:`scorezoo.demo`), launched on 127.0.0.1 and driven with ``gradio_client``: the
bits/dim of an uploaded PNG is the library's for the same file and seed, and every failure is one plain line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from scorezoo import ScorePipeline  # noqa: E402
from scorezoo.demo import (  # noqa: E402
    DemoSettings, ModelEntry, _jacobian_diagonal, bits_per_pixel, build_demo, read_model_card, score_files,
)
from scorezoo.models import GaussianScore  # noqa: E402
from scorezoo.sde import VPSDE  # noqa: E402
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline  # noqa: E402

# fixed-step Euler keeps each solve to 10 score evaluations; the app passes these to the library unchanged
FAST_ODE = {"method": "euler", "options": {"step_size": 0.1}}
CARD = """---
license: apache-2.0
scorezoo:
  name: tiny-digits
  repo_id: scorezoo/tiny-digits
  sde: vp
  weighting: likelihood
  dataset: digits
  resolution: 8x8x1
  parameters: 12345
  bpd_ode: 2.5
  bpd_ode_stderr: 0.01
  bpd_bound: 2.7
  bpd_bound_stderr: 0.02
  eval_split: test
  default: true
---
# tiny-digits

An untrained network for the tests.
"""


@pytest.fixture(scope="module")
def one_thread():
    # the CI box has 2 cores and may be busy: intra-op threads then cost more than they bring
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread) -> dict[str, ModelEntry]:
    root = tmp_path_factory.mktemp("models")
    tiny_unet_pipeline().save_pretrained(root / "tiny-digits")
    (root / "tiny-digits" / "README.md").write_text(CARD)
    tiny_mlp_pipeline().save_pretrained(root / "tiny-2d")
    out = {}
    for name in ("tiny-digits", "tiny-2d"):
        card, text = read_model_card(root / name)
        out[name] = ModelEntry(name, root / name, card, text)
    return out


SETTINGS = DemoSettings(ode_kwargs=FAST_ODE, max_files=3, max_file_size="100kb", max_batch=8, max_steps=50,
                        density_grid=12, trajectory_points=11)


def launch(models: dict[str, ModelEntry], settings: DemoSettings = SETTINGS):
    """Start the app on a free port of 127.0.0.1 without blocking; returns ``(demo, url)``."""
    demo = build_demo(models, settings=settings)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False,
                            max_file_size=settings.max_file_size)
    return demo, url


@pytest.fixture(scope="module")
def app_url(models):
    demo, url = launch(models)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture
def png(tmp_path):
    """A 30×20 RGBA picture, so the app must composite, convert, crop and resize exactly as the library does."""
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(a).save(path)
    return path


def library_bpd(models, path, seed, **kwargs):
    pipe = ScorePipeline.from_pretrained(models["tiny-digits"].path)
    return pipe.bits_per_dim(str(path), generator=torch.Generator().manual_seed(seed), **FAST_ODE, **kwargs)


def test_uploaded_png_gets_the_librarys_bits_per_dim(client, models, png):
    _, rows, note, _, _, raw = client.predict([handle_file(str(png))], "tiny-digits", 7, 3, api_name="/bits_per_dim")
    lib = library_bpd(models, png, 7, num_repeats=3)
    # the same call on the same bytes with the same seed: identical floats, not merely close
    assert raw[0]["bpd"] == lib.bpd.item()
    assert raw[0]["stderr"] == lib.stderr.item()
    assert raw[0]["bpd_repeats"] == lib.bpd_repeats[:, 0].tolist()
    assert raw[0]["nfe"] == lib.nfe.item() == 3 * 10
    assert raw[0]["transform"] == lib.transforms[0]
    assert rows["data"][0][:3] == ["pic.png", f"{lib.bpd.item():.4f}", f"{lib.stderr.item():.4f}"]
    assert lib.transforms[0] in note and "centre-crop" in note


def test_several_files_each_scored_alone(client, models, png, tmp_path):
    other = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)).save(other)
    gallery, _, _, _, _, raw = client.predict([handle_file(str(png)), handle_file(str(other))], "tiny-digits", 0, 1,
                                           api_name="/bits_per_dim")
    assert [r["file"] for r in raw] == ["pic.png", "digit.png"]
    assert raw[1]["bpd"] == library_bpd(models, other, 0).bpd.item()
    assert raw[1]["stderr"] is None  # one draw has no standard error
    assert len(gallery) == 2 and gallery[1]["caption"].startswith("digit.png: ")


def test_bit_map_sums_to_the_exact_bits_per_dim(models, png):
    # the per-pixel bits split log p_eps(x) over dimensions: their mean is the exact-divergence bits/dim of the
    # first dequantization draw, and on the same fixed-step grid the end points agree up to float32 sums
    pipe = ScorePipeline.from_pretrained(models["tiny-digits"].path)
    (score,) = score_files(pipe, [str(png)], seed=5, num_repeats=1, num_times=6, **FAST_ODE)
    exact = library_bpd(models, png, 5, divergence="exact").bpd.item()
    assert bits_per_pixel(pipe, score.trajectory).mean().item() == pytest.approx(exact, abs=1e-4)
    assert score.trajectory.t[0].item() == pytest.approx(pipe.eps) and score.trajectory.t[-1].item() == 1.0
    assert torch.all(score.trajectory.delta[0] == 0)


def test_jacobian_diagonal_of_a_gaussian_score():
    # score of N(alpha m, alpha^2 C + sigma^2 I) is linear: its Jacobian is -(alpha^2 C + sigma^2 I)^-1
    sde = VPSDE()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    cov = a @ a.T / 6 + 0.1 * torch.eye(6, dtype=torch.float64)
    score = GaussianScore(sde, torch.zeros(6, dtype=torch.float64), cov)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    _, diag = _jacobian_diagonal(score, x, t)
    alpha, sigma = sde.alpha_sigma(t)
    want = torch.stack([-torch.linalg.inv(al**2 * cov + si**2 * torch.eye(6, dtype=torch.float64)).diagonal()
                        for al, si in zip(alpha, sigma)])
    torch.testing.assert_close(diag, want, rtol=1e-10, atol=1e-10)


def test_sample_grid_and_2d_density(client):
    grid, plot, info = client.predict("tiny-digits", "em", 5, 0, 4, api_name="/sample")
    img = Image.open(grid)
    # 4 samples: 2 × 2 cells of 8 px enlarged 8 times, 2 px gaps
    assert img.size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    assert "4 samples" in info and plot is None
    grid, plot, info = client.predict("tiny-2d", "em", 5, 0, 8, api_name="/sample")
    assert grid is None and plot is not None and "8 samples" in info


def test_models_tab_reads_the_cards(models, client):
    card, text = read_model_card(models["tiny-digits"].path)
    assert card["bpd_ode"] == 2.5 and card["default"] is True and text.startswith("# tiny-digits")
    assert read_model_card(models["tiny-2d"].path) == ({}, "")
    assert "untrained network" in client.predict("tiny-digits", api_name="/card")
    assert "no model card" in client.predict("tiny-2d", api_name="/card")


def _error(client, *args, api_name):
    with pytest.raises(Exception) as e:
        client.predict(*args, api_name=api_name)
    msg = str(e.value)
    assert "Traceback" not in msg and "File \"" not in msg
    return msg


def test_failures_are_plain_messages(client, tmp_path, png):
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    assert "not an image file" in _error(client, [handle_file(str(junk))], "tiny-digits", 0, 1,
                                         api_name="/bits_per_dim")
    assert "continuous data" in _error(client, [handle_file(str(png))], "tiny-2d", 0, 1, api_name="/bits_per_dim")
    assert "over the limit of 3" in _error(client, [handle_file(str(png))] * 4, "tiny-digits", 0, 1,
                                           api_name="/bits_per_dim")
    assert "Upload one or more images" in _error(client, [], "tiny-digits", 0, 1, api_name="/bits_per_dim")
    assert "greater than maximum value 8" in _error(client, "tiny-digits", "em", 5, 0, 9, api_name="/sample")


def test_upload_size_limit(client, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 100_000
    with pytest.raises(Exception, match="(?i)size|large|limit|413"):
        client.predict([handle_file(str(big))], "tiny-digits", 0, 1, api_name="/bits_per_dim")


def test_no_models_is_a_plain_error():
    with pytest.raises(ValueError, match="no models to serve"):
        build_demo({})
