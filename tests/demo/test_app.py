"""The demo (:mod:`scorezoo.demo`), launched on 127.0.0.1 and driven with ``gradio_client``: the bits/dim of an
uploaded picture is the library's for the same file and seed (one call gives the number, the plot and the bits
map), a colour photo goes to the photo model and is scored at its own resolution next to PNG and WebP, the Models
tab is the zoo registry plus ``--model`` folders, requests are served concurrently, and every failure is one plain
line."""

from __future__ import annotations

import math
import threading

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from scorezoo import ScorePipeline, zoo  # noqa: E402
from scorezoo.compression import codec_available, lossless_bits_per_dim  # noqa: E402
from scorezoo.data import load_image, tile_levels, untile  # noqa: E402
from scorezoo.datasets import photo_path  # noqa: E402
from scorezoo.demo import (  # noqa: E402
    DemoSettings, ModelEntry, build_demo, folder_model, registry_rows, score_file, zoo_models,
)
from scorezoo.demo.tab_likelihood import FEWER_IS_BETTER  # noqa: E402
from tests.fixtures_hub import make_zoo  # noqa: E402
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline  # noqa: E402

# fixed-step Euler keeps each solve to 10 score evaluations; the app passes these to the library unchanged
FAST_ODE = {"backend": "torchdiffeq", "method": "euler", "step_size": 0.1}
# what the app adds for a model of up to 256 dimensions with the bits map on (the page's default)
EXACT_MAP = {"divergence": "exact", "bits_map": True}
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


def tiny_photo_pipeline() -> ScorePipeline:
    """An untrained RGB model of 16×16 photo patches with 256 levels, tiling larger pictures (a stand-in for the zoo's
    photo model; 768 dimensions, so its bits map takes Hutchinson's per-dimension terms)."""
    return tiny_unet_pipeline(seed=2, channels=3, size=16, num_levels=256,
                              extra_config={"tile_larger_images": True, "dataset": "photo_patches"})


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread) -> list[ModelEntry]:
    """A zoo (``tiny-zoo`` bundled and default, ``cached-one`` in the HF cache, ``remote-one`` on the Hub
    only) read by the registry, then three ``--model`` folders: ``tiny-digits`` with a card, ``.../tiny-photo`` and
    ``.../tiny-2d`` without (so named by their paths)."""
    root = tmp_path_factory.mktemp("models")
    paths = make_zoo(root / "zoo", tiny_unet_pipeline())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "BUNDLED_DIR", paths["bundled"])
        mp.setattr(zoo, "CARDS_DIR", paths["cards"])
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(paths["hub"]))
        out, problems = zoo_models()
    assert problems == []
    tiny_unet_pipeline(seed=1, extra_config={"dataset": "digits"}).save_pretrained(root / "tiny-digits")
    (root / "tiny-digits" / "README.md").write_text(CARD)
    tiny_photo_pipeline().save_pretrained(root / "tiny-photo")
    tiny_mlp_pipeline().save_pretrained(root / "tiny-2d")
    for name in ("tiny-digits", "tiny-photo", "tiny-2d"):
        out.append(folder_model(root / name, taken={m.name for m in out}))
    return out


def entry(models: list[ModelEntry], name: str) -> ModelEntry:
    return next(m for m in models if m.name == name)


@pytest.fixture(scope="module")
def flat(models) -> str:
    """The name of the 2-D model: its folder's path."""
    return models[-1].name


@pytest.fixture(scope="module")
def photo_model(models) -> str:
    """The name of the RGB photo-patch model: its folder's path."""
    return models[-2].name


SETTINGS = DemoSettings(ode_kwargs=FAST_ODE, max_files=3, max_file_size="100kb", max_batch=8, max_points=32,
                        max_steps=50, density_grid=12, trajectory_points=11, concurrency_limit=2)


def launch(models: list[ModelEntry], settings: DemoSettings = SETTINGS, default: str = "tiny-digits",
           photo_default: str | None = None):
    """Start the app on a free port of 127.0.0.1 without blocking; returns ``(demo, url)``. The photo model is the
    ``tiny-photo`` folder unless ``photo_default`` says otherwise (``""``: none)."""
    if photo_default is None:
        photo_default = next(m.name for m in models if m.name.endswith("tiny-photo"))
    demo = build_demo(models, default, settings=settings, photo_default=photo_default or None)
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
    """A 30×20 RGBA picture of gray values, so the app must composite, convert, crop and resize exactly as the
    library does (and, being gray, the auto choice gives it the digits model)."""
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    alpha = np.random.default_rng(1).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(np.concatenate([a, a, a, alpha], 2)).save(path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 100×70 crop of the held-out photo ``chelsea`` (the cat's face): 4×6 patches of 16×16, with a 4-column strip
    at the right and a 6-row strip at the bottom that hold no whole patch."""
    path = tmp_path_factory.mktemp("photo") / "chelsea-crop.png"
    Image.open(photo_path("chelsea")).convert("RGB").crop((180, 40, 280, 110)).save(path)
    return path


def library_bpd(models, path, seed, name="tiny-digits", num_repeats=4, times=None, invert=False, **kwargs):
    """The library's bits/dim of one picture with the app's plan (FAST_ODE) and the draws of a picture scored alone."""
    from scorezoo.scoring import ScoringPlan, draw_generators

    pipe = ScorePipeline.from_pretrained(entry(models, name).source)
    kwargs.setdefault("max_batch_size", 256)
    plan = ScoringPlan.create(pipe, **FAST_ODE, num_repeats=num_repeats, **kwargs)
    return pipe.bits_per_dim(str(path), plan=plan, generator=draw_generators(seed, [0], num_repeats), times=times,
                             invert=invert)


def test_uploaded_png_gets_the_librarys_bits_per_dim(client, models, png):
    _, rows, note, _, _, raw, _ = client.predict([handle_file(str(png))], "tiny-digits", 7, 3,
                                                 api_name="/bits_per_dim")
    lib = library_bpd(models, png, 7, num_repeats=3, **EXACT_MAP)
    # the same call on the same bytes with the same seed: identical floats, not merely close
    assert raw[0]["bpd"] == lib.bpd.item()
    assert raw[0]["stderr"] == lib.stderr.item()
    assert raw[0]["bpd_repeats"] == lib.bpd_repeats[:, 0].tolist()
    assert raw[0]["nfe"] == lib.nfe.item() == 10  # the 3 draws are solved together: 10 Euler steps
    assert raw[0]["transform"] == lib.transforms[0]
    assert rows["data"][0][:3] == ["pic.png", f"{lib.bpd.item():.4f}", f"{lib.stderr.item():.4f}"]
    assert lib.transforms[0] in note and "centre-crop" in note and "euler, fixed step 0.1" in note
    assert raw[0]["plan"]["divergence"] == "exact" and raw[0]["call"] in note  # the note says how to get the number


def test_several_files_each_scored_alone(client, models, png, tmp_path):
    other = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)).save(other)
    gallery, _, _, _, maps, raw, _ = client.predict([handle_file(str(png)), handle_file(str(other))], "tiny-digits",
                                                    0, 1, api_name="/bits_per_dim")
    assert [r["file"] for r in raw] == ["pic.png", "digit.png"]
    assert raw[1]["bpd"] == library_bpd(models, other, 0, num_repeats=1, **EXACT_MAP).bpd.item()
    assert raw[1]["stderr"] is None  # one draw has no standard error
    assert len(gallery) == 2 and gallery[1]["caption"].startswith("digit.png: ")
    assert len(maps) == 2 and maps[1]["caption"].startswith("digit.png: ") and "exact" in maps[1]["caption"]


def test_ode_path_and_map_come_from_the_one_call(models, png):
    # the plot and the map are the library's bits_per_dim result for the file, not a solve of their own: the path
    # starts at 0 at eps, and the bits map's mean is the bits/dim
    pipe = ScorePipeline.from_pretrained(entry(models, "tiny-digits").source)
    settings = DemoSettings(ode_kwargs=FAST_ODE, trajectory_points=6)
    score = score_file(pipe, png, seed=5, num_repeats=3, settings=settings)
    times = torch.linspace(pipe.eps, pipe.sde.T, 6, dtype=torch.float64)
    lib = library_bpd(models, png, 5, num_repeats=3, times=times, **EXACT_MAP)
    assert score.bpd == lib.bpd.item()
    torch.testing.assert_close(score.times, times.float(), rtol=0, atol=1e-5)
    assert torch.equal(score.bpd_path, lib.bpd_path[:, :, 0]) and score.bpd_path.shape == (6, 3)
    assert (score.bpd_path[0] == 0).all()
    # the map's mean over its 64 values is the bits/dim up to float32 sums of the per-dimension terms
    assert score.bits_map.shape == (1, 8, 8)
    assert score.bits_map.mean().item() == pytest.approx(score.bpd, abs=1e-4)
    # flow + prior + dequantization = bits/dim: the prior's share is what is left, and it is positive here
    assert score.dequantization_bpd == pytest.approx(math.log2(17 / 2))


def test_bit_map_switch_and_2d_models(client, png, flat, models):
    # without the map: no per-dimension terms, the same divergence (the one auto rule: exact at 64 dimensions), and
    # the number is the library's for that plan
    _, _, note, _, maps, raw, _ = client.predict([handle_file(str(png))], "tiny-digits", 0, 2, False, False,
                                                 api_name="/bits_per_dim")
    assert maps == [] and "exact divergence" in note
    assert raw[0]["bpd"] == library_bpd(models, png, 0, num_repeats=2).bpd.item()
    assert "continuous data" in _error(client, [handle_file(str(png))], flat, 0, api_name="/bits_per_dim")


class FlatGaussian(torch.nn.Module):
    """The closed-form score of ``N(mean, diag(var))`` on ``(1, H, W)`` pictures."""

    def __init__(self, sde, mean, var, shape):
        super().__init__()
        from scorezoo.models import GaussianScore

        self.gauss, self.shape = GaussianScore(sde, mean, torch.diag(var)), shape

    def forward(self, x, t):
        return self.gauss(x.flatten(1), t).view_as(x)


def test_bits_map_of_independent_gaussians(tmp_path):
    # with a diagonal covariance each pixel flows on its own, so its share of log p_eps(x) is the 1-D Gaussian's ODE
    # log-likelihood (closed form); 1e-6 bits is far above the float64 solve's 1e-10 tolerance
    from scorezoo.dequantization import uniform_dequantize
    from scorezoo.models import GaussianScore
    from scorezoo.sde import VPSDE

    sde = VPSDE()
    var = torch.tensor([0.05, 0.2, 0.5, 1.0], dtype=torch.float64)
    mean = torch.tensor([-0.5, 0.0, 0.3, 0.1], dtype=torch.float64)
    pipe = ScorePipeline(FlatGaussian(sde, mean, var, (1, 2, 2)), sde, data_shape=(1, 2, 2), num_levels=256,
                         parameterization="score", time_scale=1.0)
    levels = np.array([[40, 128], [170, 140]], dtype=np.uint8)
    Image.fromarray(levels).save(tmp_path / "g.png")
    score = score_file(pipe, tmp_path / "g.png", seed=3, num_repeats=1,
                       settings=DemoSettings(ode_kwargs={"rtol": 1e-10, "atol": 1e-10}))
    assert score.divergence == "exact"
    # bits_per_dim draws the dequantization noise first from the draw's generator (a picture scored alone)
    from scorezoo.scoring import draw_seed

    x = uniform_dequantize(torch.from_numpy(levels.astype(np.int64))[None, None], num_levels=256,
                           data_range=(-1.0, 1.0), generator=torch.Generator().manual_seed(draw_seed(3, 0, 0)),
                           dtype=torch.float64).flatten(1)
    offset = math.log(2 / 256)  # log|dx/du| of one value of 256 levels on [-1, 1]
    want = torch.stack([-(GaussianScore(sde, mean[i:i + 1], var[i:i + 1, None]).ode_log_likelihood(x[:, i:i + 1],
                                                                                                  pipe.eps)
                          + offset) / math.log(2) for i in range(4)], 1)
    torch.testing.assert_close(score.bits_map.flatten(), want.flatten(), rtol=0, atol=1e-6)


def test_colour_photo_goes_to_the_photo_model_at_its_own_resolution(client, models, photo, photo_model, png):
    files = [handle_file(str(photo)), handle_file(str(png))]
    gallery, rows, note, _, maps, raw, summary = client.predict(files, "auto", 0, 0, api_name="/bits_per_dim")
    r, digit = raw
    assert (r["model"], digit["model"]) == (photo_model, "tiny-digits")
    # automatic draws: one per patch of a tiled photo (its standard error is over the patches), 4 per digit
    assert (len(r["bpd_repeats"]), len(digit["bpd_repeats"])) == (1, 4)
    assert "colour picture" in r["chosen_because"] and "grayscale" in digit["chosen_because"]
    lib = library_bpd(models, photo, 0, name=photo_model, num_repeats=1, bits_map=True)
    assert r["bpd"] == lib.bpd.item() and r["stderr"] == lib.stderr.item()  # the standard error over the 24 patches
    assert (r["num_patches"], r["pixels_scored"]) == (24, 96 * 64)
    assert r["transform"].startswith("RGB 100×70") and "4×6 patches of 16×16" in r["transform"]
    assert "rightmost 4 column(s) and bottom 6 row(s) cropped, not scored" in note
    # the lossless coders see exactly the pixels scored: the photo cropped to its whole patches
    full = load_image(str(photo), data_shape=(3, 16, 16), num_levels=256, resize=False).levels
    tiles = tile_levels(full, (16, 16))
    scored = untile(tiles.patches, tiles.grid)
    assert scored.shape == (3, 64, 96)
    assert r["png_bpd"] == lossless_bits_per_dim(scored, "png") and r["webp_bpd"] == lossless_bits_per_dim(scored,
                                                                                                          "webp")
    assert ("jxl_bpd" in r) == codec_available("jxl")
    assert rows["data"][0][3] == f"{r['png_bpd']:.3f}" and "6,144" in rows["data"][0]
    assert digit["png_bpd"] is None and rows["data"][1][3] == "—"  # 17 levels: no 8-bit coder to compare with
    # shown at its own resolution (never shrunk): 96×64 pixels over the caption strip; its bits map is a figure with
    # a colour bar, 640 pixels wide whatever the size of the picture
    assert Image.open(gallery[0]["image"]).size == (96, 64 + 16)
    assert Image.open(maps[0]["image"]).width == Image.open(maps[1]["image"]).width == 640
    assert "hutchinson" in maps[0]["caption"] and "exact" in maps[1]["caption"]
    # the result in plain words: against the coders for the photo, against the values as they are for the digit
    assert summary.startswith(FEWER_IS_BETTER)
    assert f"**chelsea-crop.png**: {r['bpd']:.3f} bits/dim is " in summary and f"PNG's {r['png_bpd']:.3f}" in summary
    assert f"**pic.png**: {digit['bpd']:.3f} bits/dim is " in summary and "(one of 17 levels)" in summary


def test_no_photo_model_falls_back_and_says_so(models, photo):
    demo, url = launch(models, photo_default="")
    try:
        _, _, note, _, _, raw, _ = Client(url, verbose=False).predict([handle_file(str(photo))], "auto", 0, 1,
                                                                      api_name="/bits_per_dim")
    finally:
        demo.close()
    assert raw[0]["model"] == "tiny-digits" and "no photo model is installed" in raw[0]["chosen_because"]
    assert "no photo model is installed" in note and "Lanczos resize to 8×8" in raw[0]["transform"]


def test_light_background_note_and_invert(client, models, tmp_path):
    # a dark 7 on white paper: the digits model wants light ink on black; the note says so, Invert fixes it
    a = np.full((8, 8), 255, dtype=np.uint8)
    a[1, 1:7] = 0
    a[np.arange(2, 7), [5, 5, 4, 4, 3]] = 0
    Image.fromarray(a).save(tmp_path / "seven.png")
    _, _, note, _, _, raw, _ = client.predict([handle_file(str(tmp_path / "seven.png"))], "tiny-digits", 0, 1,
                                              api_name="/bits_per_dim")
    assert "light background" in note and "switch on Invert" in note
    _, _, note, _, _, raw, _ = client.predict([handle_file(str(tmp_path / "seven.png"))], "tiny-digits", 0, 1, True,
                                              api_name="/bits_per_dim")
    assert "light background" not in note and "inverted" in raw[0]["transform"]
    assert raw[0]["bpd"] == library_bpd(models, tmp_path / "seven.png", 0, num_repeats=1, invert=True,
                                        **EXACT_MAP).bpd.item()


def test_concurrent_requests_run_at_once(models, png, monkeypatch):
    # two requests must be inside bits_per_dim at the same time: each waits at a barrier for the other (a server
    # that answers one request after another breaks the barrier: the first waits 60 s alone and fails)
    barrier = threading.Barrier(2, timeout=60)
    original = ScorePipeline.bits_per_dim

    def meeting(self, *args, **kwargs):
        barrier.wait()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ScorePipeline, "bits_per_dim", meeting)
    demo, url = launch(models)
    try:
        client = Client(url, verbose=False)
        jobs = [client.submit([handle_file(str(png))], "tiny-digits", seed, 1, api_name="/bits_per_dim")
                for seed in (0, 1)]
        results = [job.result(timeout=120) for job in jobs]
    finally:
        demo.close()
    assert [len(r[5]) for r in results] == [1, 1]


def test_handlers_set_torch_threads_in_their_thread():
    # torch's thread count is set in the worker thread that serves the request, where it takes effect
    from scorezoo.demo.ui import handler

    seen = []
    before = torch.get_num_threads()
    worker = threading.Thread(target=lambda: seen.append(handler(3)(torch.get_num_threads)()))
    worker.start()
    worker.join()
    torch.set_num_threads(before)  # in case this platform's setting is process-wide
    assert seen == [3]


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
    rows = {r[0]: r for r in registry_rows(models)}
    assert rows["tiny-digits"][1:] == ["folder", "", "vp", "likelihood", "digits", "8x8x1", "12,345",
                                       "2.500 ± 0.010", "2.700 ± 0.020"]
    assert rows["tiny-zoo"][2] == "✓" and rows["tiny-zoo"][9] == "2.100"
    # without a card, what the pipeline config says
    assert rows[flat][1:8] == ["folder", "", "vp", "—", "—", "2", "—"]


def test_registry_rows_for_points_and_published_checkpoints():
    # a 2-D model's card measures nats per point, a published checkpoint brings its authors' bits/dim
    points = zoo.ZooEntry("checkers", "scorezoo/checkers", nll_ode=2.3008, nll_ode_stderr=0.005, nll_bound=2.329,
                          status="bundled")
    published = zoo.ZooEntry("sde-vp", "scorezoo/sde-vp", bpd_reported=3.16, status=zoo.CONVERT_STATUS)
    rows = registry_rows([ModelEntry(points, None), ModelEntry(published, None)])
    assert rows[0][8:] == ["2.301 ± 0.005 nats/point", "2.329 nats/point"]
    assert rows[1][8:] == ["3.16 (reported)", "—"] and rows[1][1] == "convert"


def test_bundled_checkerboard_row_is_in_nats():
    rows = {r[0]: r for r in registry_rows(zoo_models()[0])}
    assert rows["vp-mle-checkerboard"][8].endswith("nats/point")


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
    assert "not an image file" in _error(client, [handle_file(str(junk))], "auto", 0, 1, api_name="/bits_per_dim")
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
    with pytest.raises(ValueError, match="photo model 'remote-one' is not among the served"):
        build_demo(models, photo_default="remote-one")
