"""A fully convolutional photo model (``max_tile_size`` in its config): a picture up to that size is scored whole in
one solve, a larger one in the fewest equal tiles (:func:`scorezoo.data.cover_levels`), and a picture's bits/dim is
consistent with its parts: the mean over its tiles, each scored as a picture of its own with the same noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from PIL import Image

from scorezoo import ScorePipeline, VPSDE
from scorezoo.data import cover_levels
from scorezoo.likelihood import LikelihoodSchedule
from scorezoo.scoring import draw_generators


@pytest.fixture(autouse=True)
def one_thread():
    """The command, eval and the app run on one thread here (``--threads 1``); the library is compared on one too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fcn_pipeline(max_tile_size: int = 32) -> ScorePipeline:
    """Three levels (sizes: multiples of 4), no attention, trained size 8, a two-step rk4 schedule."""
    torch.manual_seed(0)
    net = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16, 16),
                      down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3, layers_per_block=1,
                      norm_num_groups=4, add_attention=False)
    pipe = ScorePipeline(net, VPSDE(), data_shape=(3, 8, 8), num_levels=256,
                         extra_config={"tile_larger_images": True, "max_tile_size": max_tile_size,
                                       "size_multiple": 4, "dataset": "photo_folder"})
    pipe.likelihood_schedule = LikelihoodSchedule(torch.linspace(pipe.eps, 1.0, 3, dtype=torch.float64))
    return pipe


@pytest.mark.parametrize("size, max_tile, m, grid, tile", [
    ((300, 451), 512, 8, (1, 1), (296, 448)),       # chelsea: whole, 4 rows and 3 columns cropped
    ((700, 1000), 512, 8, (2, 2), (344, 496)),
    ((3000, 4000), 512, 8, (6, 8), (496, 496)),
    ((64, 64), 32, 4, (2, 2), (32, 32)),
    ((10, 12), 8, 8, (1, 1), (8, 8)),               # two tiles of 8 would not fit in 10 rows: one
])
def test_cover_levels_known_sizes(size, max_tile, m, grid, tile):
    h, w = size
    t = cover_levels(torch.zeros(3, h, w, dtype=torch.long), max_tile, m)
    assert t.grid == grid and tuple(t.patches.shape[2:]) == tile
    assert t.pixels_scored == grid[0] * tile[0] * grid[1] * tile[1]
    assert h - grid[0] * tile[0] < grid[0] * m and w - grid[1] * tile[1] < grid[1] * m  # the promised crop
    assert max(tile) <= max_tile and tile[0] % m == 0 and tile[1] % m == 0


def test_cover_levels_refuses_tiny_pictures():
    with pytest.raises(ValueError, match="smaller than 8×8"):
        cover_levels(torch.zeros(3, 5, 40, dtype=torch.long), 32, 8)


def _picture(h, w, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_whole_picture_is_one_solve():
    pipe = fcn_pipeline(max_tile_size=32)
    from scorezoo.scoring import ScoringPlan

    # 192 dimensions at its training size, but a picture is scored whole: never the exact divergence by default
    assert ScoringPlan.create(pipe).divergence == "hutchinson"
    res = pipe.bits_per_dim(_picture(22, 30), schedule="calibrated", generator=torch.Generator().manual_seed(0))
    assert res.num_patches.tolist() == [1] and res.pixels_scored.tolist() == [20 * 28]
    assert "1×1 patches of 28×20" in res.transforms[0]


def test_tiled_picture_is_the_mean_of_its_parts():
    """A 40×48 picture in 2×2 tiles of 20×24 (max 24): its bits/dim equals the mean of the four tiles scored as
    pictures of their own in one call with the same seed (the same noise and probes, row by row)."""
    pipe = fcn_pipeline(max_tile_size=24)
    big = np.asarray(_picture(40, 48, seed=1))
    parts = [Image.fromarray(big[r:r + 20, c:c + 24]) for r in (0, 20) for c in (0, 24)]
    whole = pipe.bits_per_dim(Image.fromarray(big), schedule="calibrated", generator=torch.Generator().manual_seed(3),
                              per_dimension=True)
    each = pipe.bits_per_dim(parts, schedule="calibrated", generator=torch.Generator().manual_seed(3),
                             per_dimension=True)
    assert whole.num_patches.tolist() == [4] and whole.pixels_scored.tolist() == [40 * 48]
    assert whole.bpd.item() == pytest.approx(each.bpd.mean().item(), rel=1e-6)
    assert whole.bits_maps[0].shape == (3, 40, 48)
    top_right = whole.bits_maps[0][:, :20, 24:]
    torch.testing.assert_close(top_right, each.bits_maps[1], rtol=1e-5, atol=1e-5)


def test_pictures_of_different_sizes_in_one_call():
    """Each picture's tiles follow its size, so one call holds several shapes; with per-draw generators each picture's
    numbers are those it gets alone."""
    pipe = fcn_pipeline(max_tile_size=32)
    pics = [_picture(20, 28, 0), _picture(44, 36, 1), _picture(16, 16, 2)]
    gens = lambda idx: draw_generators(7, idx, 1)  # noqa: E731
    together = pipe.bits_per_dim(pics, schedule="calibrated", generator=gens(range(3)))
    for i, pic in enumerate(pics):
        alone = pipe.bits_per_dim(pic, schedule="calibrated", generator=gens([i]))
        assert together.bpd[i].item() == pytest.approx(alone.bpd.item(), rel=1e-6)
        assert together.pixels_scored[i] == alone.pixels_scored[0]
    assert together.pixels_scored.tolist() == [20 * 28, 4 * 20 * 16, 16 * 16]


def test_large_tiles_are_solved_a_few_at_a_time(monkeypatch):
    """Memory stays bounded: a solve holds at most MAX_SOLVE_DIMS dimensions (one tile when a tile is larger)."""
    from scorezoo.scoring import run

    monkeypatch.setattr(run, "MAX_SOLVE_DIMS", 3 * 20 * 24 * 2)
    import scorezoo.likelihood as lik

    sizes = []

    orig = lik.log_likelihood

    def spy(model, sde, x, **kw):
        sizes.append(len(x))
        return orig(model, sde, x, **kw)

    monkeypatch.setattr(lik, "log_likelihood", spy)
    pipe = fcn_pipeline(max_tile_size=24)
    pipe.bits_per_dim(_picture(40, 48), schedule="calibrated", generator=torch.Generator().manual_seed(0))
    assert sizes == [2, 2]


def test_command_eval_and_app_score_the_same_pixels_as_the_library(tmp_path, capsys):
    """``scorezoo bpd``, ``scorezoo eval`` and the app give the library's number for a fully convolutional model, and
    their lossless coders encode exactly the pixels it scored (the picture cropped to its equal tiles)."""
    import json

    from scorezoo import cli
    from scorezoo.compression import lossless_bits_per_dim
    from scorezoo.demo.compute import DemoSettings, score_file

    fcn_pipeline(max_tile_size=24).save_pretrained(tmp_path / "fcn")
    picture = tmp_path / "p.png"
    _picture(43, 50, seed=4).save(picture)  # 2×2 tiles of 20×24: 3 rows and 2 columns cropped
    common = ["--model", str(tmp_path / "fcn"), "--fast", "--seed", "5", "--threads", "1"]
    assert cli.main(["bpd", str(picture), "--json", *common]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    pipe = ScorePipeline.from_pretrained(tmp_path / "fcn")
    lib = pipe.bits_per_dim(str(picture), schedule="calibrated", generator=draw_generators(5, [0], 1))
    assert row["bpd"] == pytest.approx(lib.bpd.item(), rel=1e-9) and row["pixels_scored"] == 40 * 48
    scored = torch.from_numpy(np.array(Image.open(picture))[:40, :48]).permute(2, 0, 1)
    assert row["png_bpd"] == pytest.approx(lossless_bits_per_dim(scored, "png"))
    out = tmp_path / "r.jsonl"
    assert cli.main(["eval", "--data", f"photos:{picture}", "--out", str(out), "-q", *common]) == 0
    assert json.loads(out.read_text().splitlines()[0])["bpd"] == pytest.approx(lib.bpd.item(), rel=1e-9)
    app = score_file(pipe, picture, seed=5, num_repeats=1, settings=DemoSettings(ode_kwargs={"solver": "calibrated"}),
                     bits_map=True)
    assert app.bpd == pytest.approx(lib.bpd.item(), rel=1e-9)
    assert app.lossless["png"] == pytest.approx(row["png_bpd"])
