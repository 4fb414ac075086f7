"""A large photo in bounded time: a seeded random sample of its tiles (ScoringPlan.max_tiles), an estimate of the
all-tiles bits/dim with its standard error, in the library, ``scorezoo bpd`` and the app."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import cli
from scorezoo.data import tile_levels, untile
from scorezoo.demo.compute import DemoSettings, score_file
from scorezoo.display import heatmap
from scorezoo.likelihood import LikelihoodSchedule
from scorezoo.scoring import DEFAULT_MAX_TILES, ScoringPlan, draw_generators, sample_tiles
from tests.helpers import tiny_unet_pipeline


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory):
    """A colour 16×16 model of patches with a two-step schedule, saved, and a 64×48 noise photo (4×3 = 12 tiles)."""
    root = tmp_path_factory.mktemp("sample")
    pipe = tiny_unet_pipeline(channels=3, size=16, num_levels=256,
                              extra_config={"tile_larger_images": True, "dataset": "photo_folder"})
    pipe.likelihood_schedule = LikelihoodSchedule(torch.linspace(pipe.eps, 1.0, 3, dtype=torch.float64))
    pipe.save_pretrained(root / "photo")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "photo.png")
    return pipe, root


def test_sample_tiles_is_a_seeded_sorted_subset():
    assert sample_tiles(12, None, 0) is None and sample_tiles(12, 12, 0) is None and sample_tiles(5, 12, 0) is None
    a = sample_tiles(1000, 50, 3)
    assert len(a) == 50 and len(set(a.tolist())) == 50 and bool((a[1:] > a[:-1]).all())
    assert 0 <= int(a.min()) and int(a.max()) < 1000
    assert torch.equal(a, sample_tiles(1000, 50, 3)) and not torch.equal(a, sample_tiles(1000, 50, 4))


def test_a_sample_scores_exactly_the_picture_made_of_its_tiles(photo_model, tmp_path):
    """The known answer: the estimate from tiles i1 < i2 < ... of a photo is the bits/dim of the picture made of
    those tiles side by side (the same pixels, and the same noise and probes, which follow the tiles in order);
    with max_tiles at or above the photo's 12 tiles nothing changes."""
    pipe, root = photo_model
    gen = lambda: draw_generators(7, [0], 1)  # noqa: E731
    plan = ScoringPlan.create(pipe, max_tiles=5, tile_seed=2)
    res = pipe.bits_per_dim(str(root / "photo.png"), plan=plan, generator=gen())
    idx = sample_tiles(12, 5, 2)
    assert res.num_patches.tolist() == [5] and res.total_patches.tolist() == [12] and res.sampled == [True]
    assert res.pixels_scored.tolist() == [5 * 256]
    assert "a random sample of 5 of its 12 tiles scored (seed 2)" in res.transforms[0]
    levels = torch.from_numpy(np.array(Image.open(root / "photo.png"))).permute(2, 0, 1)
    strip = untile(tile_levels(levels, (16, 16)).patches[idx], (1, 5))
    Image.fromarray(strip.permute(1, 2, 0).numpy().astype(np.uint8)).save(tmp_path / "strip.png")
    alone = pipe.bits_per_dim(str(tmp_path / "strip.png"), plan=ScoringPlan.create(pipe), generator=gen())
    assert alone.num_patches.tolist() == [5]
    assert res.bpd.item() == pytest.approx(alone.bpd.item(), rel=1e-9)
    assert res.stderr.item() == pytest.approx(alone.stderr.item(), rel=1e-6)
    every = pipe.bits_per_dim(str(root / "photo.png"), plan=ScoringPlan.create(pipe), generator=gen())
    same = pipe.bits_per_dim(str(root / "photo.png"), plan=ScoringPlan.create(pipe, max_tiles=12), generator=gen())
    assert every.sampled == same.sampled == [False] and same.bpd.item() == every.bpd.item()
    assert ScoringPlan.create(pipe).to_dict()["max_tiles"] is None
    assert plan.to_dict()["max_tiles"] == 5 and "random sample of 5" in plan.describe()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_tiles must be an integer >= 1"):
            ScoringPlan.create(pipe, max_tiles=bad)


def test_a_sampled_bits_map_is_nan_off_the_sample_and_draws_grey_there(photo_model):
    pipe, root = photo_model
    plan = ScoringPlan.create(pipe, max_tiles=3, bits_map=True)
    res = pipe.bits_per_dim(str(root / "photo.png"), plan=plan, generator=draw_generators(0, [0], 1))
    m = res.bits_maps[0]
    assert m.shape == (3, 48, 64)
    tiles = tile_levels(m, (16, 16)).patches  # (12, 3, 16, 16): the map cut the same way
    scored = torch.isfinite(tiles).flatten(1).all(1)
    assert scored.tolist() == [i in sample_tiles(12, 3, 0).tolist() for i in range(12)]
    assert torch.isnan(tiles[~scored]).all()
    assert m[torch.isfinite(m)].mean().item() == pytest.approx(res.bpd.item(), rel=1e-6)
    picture = np.asarray(heatmap(m.mean(0).numpy()))
    off = ~scored.view(3, 4).repeat_interleave(16, 0).repeat_interleave(16, 1).numpy()
    assert (picture[off] == 128).all() and not (picture[~off] == 128).all()


def test_bpd_samples_by_default_says_so_and_scores_every_tile_on_request(photo_model, capsys, monkeypatch, one_thread):
    """The command and the library agree to rounding when they run on the same thread count (the command's default
    is OMP_NUM_THREADS or half the cores, which need not be the test process's: float32 sums then differ in order)."""
    pipe, root = photo_model
    args = ["bpd", str(root / "photo.png"), "--model", str(root / "photo"), "--seed", "3", "--threads", "1"]
    assert cli.main([*args, "--max-tiles", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert (r["num_patches"], r["total_patches"], r["estimate"], r["pixels_scored"]) == (4, 12, True, 1024)
    plan = ScoringPlan.create(pipe, max_tiles=4, tile_seed=3)
    lib = pipe.bits_per_dim(str(root / "photo.png"), plan=plan, generator=draw_generators(3, [0], 1))
    assert r["bpd"] == pytest.approx(lib.bpd.item(), rel=1e-9)
    assert cli.main([*args, "--max-tiles", "4"]) == 0
    assert "an estimate of the whole photo's" in capsys.readouterr().out
    assert DEFAULT_MAX_TILES == 1024
    assert cli.main([*args, "--json"]) == 0  # 12 tiles: under the default sample, every tile
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert (r["num_patches"], r["estimate"]) == (12, False)
    assert cli.main([*args, "--all-tiles", "--max-tiles", "4"]) == 2
    capsys.readouterr()
    # --all-tiles on a photo above the default sample says how long before it starts
    monkeypatch.setattr("scorezoo.scoring.DEFAULT_MAX_TILES", 4)
    assert cli.main([*args, "--all-tiles", "--json"]) == 0
    captured = capsys.readouterr()
    assert "all 12 tiles, about" in captured.err and json.loads(captured.out)["results"][0]["num_patches"] == 12


def test_the_app_samples_a_large_photo_from_the_request_seed(photo_model, one_thread):
    pipe, root = photo_model
    settings = DemoSettings(max_tiles=4, torch_threads=1)
    s = score_file(pipe, root / "photo.png", seed=3, settings=settings, bits_map=False)
    assert (s.num_patches, s.total_patches, s.estimate) == (4, 12, True)
    plan = ScoringPlan.create(pipe, max_tiles=4, tile_seed=3)
    lib = pipe.bits_per_dim(str(root / "photo.png"), plan=plan, generator=draw_generators(3, [0], 1))
    assert s.bpd == pytest.approx(lib.bpd.item(), rel=1e-9)
    assert s.as_dict()["estimate"] is True
    from scorezoo.demo.tab_likelihood import plain_words

    assert "an estimate from a random sample of 4 of its 12 tiles" in plain_words(s)
