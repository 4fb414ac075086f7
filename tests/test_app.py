"""The demo (``app.py`` / :mod:`scorezoo.demo`), launched on 127.0.0.1 and driven with ``gradio_client``: the
bits/dim of an uploaded PNG is the library's for the same file and seed, the plots are the library's first
draw, the Models tab is the zoo registry plus ``--model`` folders, and every failure is one plain line."""

from __future__ import annotations

import math

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from scorezoo import ScorePipeline, zoo  # noqa: E402
from scorezoo.demo import (  # noqa: E402
    DemoSettings, ModelEntry, _registry_rows, bits_per_dimension, build_demo, single_draw, folder_model, score_files,
    zoo_models,
)
from scorezoo.dequantization import bits_per_dim  # noqa: E402
from scorezoo.models import GaussianScore  # noqa: E402
from scorezoo.sde import VPSDE  # noqa: E402
from tests.fixtures_hub import make_zoo  # noqa: E402
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline  # noqa: E402

# fixed-step Euler keeps each solve to 10 score evaluations; the app passes these to the library unchanged
FAST_ODE = {"solver": "torchdiffeq", "method": "euler", "options": {"step_size": 0.1}}
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
def models(tmp_path_factory, one_thread) -> list[ModelEntry]:
    """A zoo (``tiny-zoo`` bundled and default, ``cached-one`` in the HF cache, ``remote-one`` on the Hub
    only) read by the registry, then two ``--model`` folders: ``tiny-digits`` with a card, ``.../tiny-2d``
    without (so named by its path)."""
    root = tmp_path_factory.mktemp("models")
    paths = make_zoo(root / "zoo", tiny_unet_pipeline())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "BUNDLED_DIR", paths["bundled"])
        mp.setattr(zoo, "CARDS_DIR", paths["cards"])
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(paths["hub"]))
        out, problems = zoo_models()
    assert problems == []
    tiny_unet_pipeline(seed=1).save_pretrained(root / "tiny-digits")
    (root / "tiny-digits" / "README.md").write_text(CARD)
    tiny_mlp_pipeline().save_pretrained(root / "tiny-2d")
    for name in ("tiny-digits", "tiny-2d"):
        out.append(folder_model(root / name, taken={m.name for m in out}))
    return out


def entry(models: list[ModelEntry], name: str) -> ModelEntry:
    return next(m for m in models if m.name == name)


@pytest.fixture(scope="module")
def flat(models) -> str:
    """The name of the 2-D model: its folder's path."""
    return models[-1].name


SETTINGS = DemoSettings(ode_kwargs=FAST_ODE, max_files=3, max_file_size="100kb", max_batch=8, max_points=32,
                        max_steps=50, density_grid=12, trajectory_points=11)


def launch(models: list[ModelEntry], settings: DemoSettings = SETTINGS, default: str = "tiny-digits"):
    """Start the app on a free port of 127.0.0.1 without blocking; returns ``(demo, url)``."""
    demo = build_demo(models, default, settings=settings)
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
    pipe = ScorePipeline.from_pretrained(entry(models, "tiny-digits").source)
    return pipe.bits_per_dim(str(path), generator=torch.Generator().manual_seed(seed), **FAST_ODE, **kwargs)


def test_uploaded_png_gets_the_librarys_bits_per_dim(client, models, png):
    _, rows, note, _, _, raw = client.predict([handle_file(str(png))], "tiny-digits", 7, 3, api_name="/bits_per_dim")
    lib = library_bpd(models, png, 7, num_repeats=3)
    # the same call on the same bytes with the same seed: identical floats, not merely close
    assert raw[0]["bpd"] == lib.bpd.item()
    assert raw[0]["stderr"] == lib.stderr.item()
    assert raw[0]["bpd_repeats"] == lib.bpd_repeats[:, 0].tolist()
    assert raw[0]["nfe"] == lib.nfe.item() == 10  # the 3 draws are solved together: 10 Euler steps
    assert raw[0]["transform"] == lib.transforms[0]
    assert rows["data"][0][:3] == ["pic.png", f"{lib.bpd.item():.4f}", f"{lib.stderr.item():.4f}"]
    assert lib.transforms[0] in note and "centre-crop" in note and "euler, step 0.1" in note


def test_several_files_each_scored_alone(client, models, png, tmp_path):
    other = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)).save(other)
    gallery, _, _, _, _, raw = client.predict([handle_file(str(png)), handle_file(str(other))], "tiny-digits", 0, 1,
                                           api_name="/bits_per_dim")
    assert [r["file"] for r in raw] == ["pic.png", "digit.png"]
    assert raw[1]["bpd"] == library_bpd(models, other, 0).bpd.item()
    assert raw[1]["stderr"] is None  # one draw has no standard error
    assert len(gallery) == 2 and gallery[1]["caption"].startswith("digit.png: ")


def test_ode_path_is_the_librarys_single_draw(models, png):
    # the plot's solve is bits_per_dim's with one draw (same noise, same probes, same steps): its end point is
    # that number to the bit, and the path is reported strictly inside (eps, T)
    pipe = ScorePipeline.from_pretrained(entry(models, "tiny-digits").source)
    (score,) = score_files(pipe, [str(png)], seed=5, num_repeats=3, num_times=6, **FAST_ODE)
    path = score.path
    end = bits_per_dim(path.logp.double(), pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range)
    assert end.item() == library_bpd(models, png, 5, num_repeats=1).bpd.item()
    torch.testing.assert_close(path.times, torch.tensor([0.2, 0.4, 0.6, 0.8]), rtol=0, atol=1e-5)
    assert path.delta_logp_path.shape == (4, 1)


def test_bit_map_sums_to_the_exact_bits_per_dim(models, png):
    # the per-pixel bits split log p_eps(x) over dimensions: their mean is the exact-divergence bits/dim of the
    # first dequantization draw; on the same fixed-step grid the two solves agree up to float32 sums
    pipe = ScorePipeline.from_pretrained(entry(models, "tiny-digits").source)
    _, x, _ = single_draw(pipe, str(png), 5)
    bits = bits_per_dimension(pipe, x, **FAST_ODE)
    exact = library_bpd(models, png, 5, divergence="exact").bpd.item()
    assert bits.shape == (1, *pipe.data_shape)
    assert bits.mean().item() == pytest.approx(exact, abs=1e-4)


def test_bit_map_on_request(client, png, flat):
    assert client.predict([handle_file(str(png))], "tiny-digits", 0, api_name="/bits_map") is not None
    assert "image models" in _error(client, [handle_file(str(png))], flat, 0, api_name="/bits_map")


def test_bits_per_dimension_of_independent_gaussians():
    # with a diagonal covariance each coordinate flows on its own, so its share of log p_eps(x) is the 1-D
    # Gaussian's ODE log-likelihood (closed form); 1e-6 bits is far above the float64 solve's 1e-9 tolerance
    sde = VPSDE()
    var = torch.tensor([0.05, 0.2, 0.5, 1.0], dtype=torch.float64)
    mean = torch.tensor([-0.5, 0.0, 0.3, 0.1], dtype=torch.float64)
    pipe = ScorePipeline(GaussianScore(sde, mean, torch.diag(var)), sde, data_shape=(4,), num_levels=256,
                         parameterization="score", time_scale=1.0)
    x = GaussianScore(sde, mean, torch.diag(var)).sample(3, torch.Generator().manual_seed(0))
    bits = bits_per_dimension(pipe, x, rtol=1e-10, atol=1e-10)
    offset = 4 * math.log(2 / 256)  # log|dx/du| of 256 levels on [-1, 1], per image
    want = torch.stack([-(GaussianScore(sde, mean[i:i + 1], var[i:i + 1, None]).ode_log_likelihood(x[:, i:i + 1],
                                                                                                  pipe.eps)
                          + offset / 4) / math.log(2) for i in range(4)], 1)
    torch.testing.assert_close(bits, want, rtol=0, atol=1e-6)


def test_sample_grid_and_2d_density(client, flat):
    grid, plot, info = client.predict("tiny-digits", "em", 5, 0, 4, api_name="/sample")
    img = Image.open(grid)
    # 4 samples: 2 × 2 cells of 8 px enlarged 29 times (the largest whole factor within 480 px), 2 px gaps
    assert img.size == (2 * 232 + 3 * 2, 2 * 232 + 3 * 2)
    assert "4 samples" in info and plot is None
    # points are cheap: a 2-D model may draw more than an image model
    grid, plot, info = client.predict(flat, "em", 5, 0, 20, api_name="/sample")
    assert grid is None and plot is not None and "20 samples" in info


def test_models_are_the_registry_then_the_folders(models, flat):
    status = {m.name: (m.info.status, m.source) for m in models}
    assert status["tiny-zoo"][0] == "bundled" and status["tiny-zoo"][1].name == "tiny-zoo"
    assert status["cached-one"] == ("cached", "scorezoo/cached-one")
    assert status["remote-one"] == ("remote", None)
    assert status["tiny-digits"][0] == status[flat][0] == "folder" and flat == str(status[flat][1])
    rows = {r[0]: r for r in _registry_rows(models)}
    assert rows["tiny-digits"][1:] == ["folder", "", "vp", "likelihood", "digits", "8x8x1", "12,345",
                                       "2.500 ± 0.010", "2.700 ± 0.020"]
    assert rows["tiny-zoo"][2] == "✓" and rows["tiny-zoo"][9] == "2.100"
    # without a card, what the pipeline config says
    assert rows[flat][1:8] == ["folder", "", "vp", "—", "—", "2", "—"]


def test_models_tab_shows_the_cards(client, flat):
    card = client.predict("tiny-zoo", api_name="/card")
    assert card.startswith("# tiny-zoo") and "scorezoo:" not in card  # the front matter is the table's
    assert "untrained network" in client.predict("tiny-digits", api_name="/card")
    assert "A test card" in client.predict("remote-one", api_name="/card")
    no_card = client.predict(flat, api_name="/card")
    assert "no model card" in no_card and "pipeline_config.json" in no_card and '"data_shape"' in no_card


def test_folder_names(models, tmp_path):
    folder = entry(models, "tiny-digits").source
    assert folder_model(folder, taken={"tiny-digits"}).name == str(folder)
    with pytest.raises(FileNotFoundError, match="pipeline_config.json"):
        folder_model(tmp_path)
    (tmp_path / "pipeline_config.json").write_text("{}")
    (tmp_path / "README.md").write_text("---\nscorezoo: [1, 2]\n---\n")
    with pytest.raises(ValueError, match="README.md.*not a mapping"):
        folder_model(tmp_path)


def _error(client, *args, api_name):
    with pytest.raises(Exception) as e:
        client.predict(*args, api_name=api_name)
    msg = str(e.value)
    assert "Traceback" not in msg and "File \"" not in msg
    return msg


def test_failures_are_plain_messages(client, tmp_path, png, flat):
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    assert "not an image file" in _error(client, [handle_file(str(junk))], "tiny-digits", 0, 1,
                                         api_name="/bits_per_dim")
    assert "continuous data" in _error(client, [handle_file(str(png))], flat, 0, 1, api_name="/bits_per_dim")
    assert "over the limit of 3" in _error(client, [handle_file(str(png))] * 4, "tiny-digits", 0, 1,
                                           api_name="/bits_per_dim")
    assert "Upload one or more images" in _error(client, [], "tiny-digits", 0, 1, api_name="/bits_per_dim")
    assert "batch size must lie in [1, 8], got 9" in _error(client, "tiny-digits", "em", 5, 0, 9, api_name="/sample")
    assert "greater than maximum value 32" in _error(client, flat, "em", 5, 0, 33, api_name="/sample")
    assert "remote-one" in _error(client, "remote-one", "em", 5, 0, 2, api_name="/sample")


def test_upload_size_limit(client, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 100_000
    with pytest.raises(Exception, match="(?i)size|large|limit|413"):
        client.predict([handle_file(str(big))], "tiny-digits", 0, 1, api_name="/bits_per_dim")


def test_nothing_to_serve_is_a_plain_error(models):
    with pytest.raises(ValueError, match="no models to serve"):
        build_demo([])
    with pytest.raises(ValueError, match="no models to serve"):
        build_demo([entry(models, "remote-one")])
    with pytest.raises(ValueError, match="not among the served"):
        build_demo(models, default="remote-one")
