"""The end of a run: results.json, a loadable pipeline with its card, the evaluation with its scale."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scorezoo import ScorePipeline
from scorezoo.training import load_config, train
from scorezoo.training.cards import SCOREZOO_KEYS, render_card
from scorezoo.training.config import ConfigError
from tests.training.helpers import read_log, tiny_config


def test_export_is_a_loadable_pipeline_with_a_card_and_an_evaluation(tmp_path, capsys):
    cfg = tiny_config(tmp_path, max_train_steps=3, final_eval=True, final_eval_num_repeats=1, eval_steps=2,
                      eval_num_samples=2, bound_num_time_points=8, ode_rtol=1e-3, ode_atol=1e-3)
    results = train(load_config(None, cfg), command="python train/train_mle.py --config x")
    run = Path(cfg["output_dir"])
    pipe = ScorePipeline.from_pretrained(run / "pipeline")
    assert pipe.num_levels == 17 and pipe.data_shape == (1, 8, 8)
    assert pipe.extra_config["training_command"] == "python train/train_mle.py --config x"
    assert results["eval"]["num_eval"] == 3 and results["eval"]["unit"] == "bits/dim"
    assert np.isfinite(results["eval"]["ode"]) and results["eval"]["bound"] > 0
    card = (run / "pipeline" / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: scorezoo" in card
    logged = read_log(run)
    assert any("eval" in r for r in logged) and any("final_eval" in r for r in logged)
    # the numbers come with their scale: log2(17) = 4.0875 bits/dim for a model that learnt nothing
    out = capsys.readouterr().out
    assert results["eval"]["uniform_bpd"] == np.log2(17)
    assert "final evaluation: ODE and bound bits/dim of all 3 held-out items x 1 dequantization draw(s)" in out
    assert "final_eval: false skips it" in out
    assert "uniform over the levels: 4.0875" in out.split("final held-out")[1]


def test_continuous_data_trains_and_scores_in_nats(tmp_path):
    cfg = tiny_config(tmp_path, dataset="moons", data_dir=None, data_shape=None, num_levels=None,
                      network={"_class_name": "ScoreMLP", "hidden_dim": 16, "num_layers": 1}, batch_size=32,
                      max_train_steps=2, final_eval=True, bound_num_time_points=4, ode_rtol=1e-3, ode_atol=1e-3)
    data_eval = 5000
    results = train(load_config(None, cfg))
    assert results["eval"]["unit"] == "nats/point" and results["eval"]["num_eval"] == data_eval
    assert results["eval"]["uniform_bpd"] is None
    assert ScorePipeline.from_pretrained(Path(cfg["output_dir"]) / "pipeline").num_levels is None


def _front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def test_card_front_matter_of_continuous_data_and_the_default_photo_flag():
    ev = {"ode": 2.30081, "ode_stderr": 0.005, "bound": 2.41, "bound_stderr": 0.006, "num_eval": 5000,
          "num_repeats": 1}
    res = {"name": "toy", "sde": "vp", "weighting": "likelihood-is", "dataset": "checkerboard", "parameters": 10,
           "data_shape": [2], "num_levels": None, "eval": ev, "eval_split": "fresh sample"}
    meta = _front_matter(render_card(res, {"card": {"default_photo": True}}))["scorezoo"]
    assert tuple(meta) == SCOREZOO_KEYS
    assert (meta["nll_ode"], meta["nll_ode_stderr"], meta["nll_bound"], meta["nll_bound_stderr"]) == (
        2.3008, 0.005, 2.41, 0.006)
    assert meta["bpd_ode"] is None and meta["default_photo"] is True
    assert _front_matter(render_card(res, {}))["scorezoo"]["default_photo"] is False


def _photo_folder(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i + 1:03d}.png")
    return folder


FCN = {"_class_name": "UNet2DModel", "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D"] * 2,
       "up_block_types": ["UpBlock2D"] * 2, "layers_per_block": 1, "norm_num_groups": 4, "add_attention": False}


def test_a_fully_convolutional_photo_model_scores_pictures_whole(tmp_path):
    """max_tile_size: the exported pipeline scores a picture up to that size in one tile, larger ones in equal tiles
    whose sides are multiples of the network's down-sampling (2 for two levels)."""
    folder = _photo_folder(tmp_path / "photos")
    cfg = tiny_config(tmp_path, dataset="photo_folder", data_dir=str(folder), data_shape=None, num_levels=None,
                      dataset_options={"crop_size": 8, "scales": [1], "heldout_crop": 16, "num_crops": 64},
                      network=FCN, max_train_steps=2, max_tile_size=32)
    train(load_config(None, cfg))
    pipe = ScorePipeline.from_pretrained(Path(cfg["output_dir"]) / "pipeline")
    assert (pipe.max_tile_size, pipe.size_multiple, pipe.data_shape) == (32, 2, (3, 8, 8))
    res = pipe.bits_per_dim(str(folder / "001.png"), rtol=1e-2, atol=1e-2)
    assert res.num_patches.tolist() == [4] and res.pixels_scored.tolist() == [40 * 48]  # 2×2 tiles of 24×20


def test_max_tile_size_needs_a_fully_convolutional_network(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    base = dict(dataset="photo_folder", data_dir=str(folder), data_shape=None, num_levels=None,
                dataset_options={"crop_size": 8, "scales": [1], "heldout_crop": 16, "num_crops": 64},
                max_train_steps=1)
    with pytest.raises(ConfigError, match="fully convolutional network: no attention blocks \\(AttnDownBlock2D"):
        train(load_config(None, tiny_config(tmp_path, max_tile_size=32, **base)))
    with pytest.raises(ConfigError, match="add_attention: false"):
        train(load_config(None, tiny_config(tmp_path, network={**FCN, "add_attention": True}, max_tile_size=32,
                                            **base)))
    with pytest.raises(ConfigError, match="multiple of 2 .* at least the training size 8, got 6"):
        train(load_config(None, tiny_config(tmp_path, network=FCN, max_tile_size=6, **base)))


def test_the_photo_recipe_is_fully_convolutional_and_trains(tmp_path):
    """train/configs/vp-mle-photo-fcn.yaml on a small fake photo folder: a step, then a pipeline that scores pictures
    of up to 512 a side whole, in tiles whose sides are multiples of 8."""
    folder = _photo_folder(tmp_path / "photos")
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "train" / "configs" / "vp-mle-photo-fcn.yaml",
                      {"data_dir": str(folder), "max_train_steps": 1, "warmup_steps": 1, "eval_steps": 0,
                       "progress_bar": False, "output_dir": str(tmp_path / "run"), "batch_size": 2,
                       "dataset_options": {"crop_size": 32, "scales": [1], "heldout_crop": 256, "num_crops": 16}})
    train(cfg)
    pipe = ScorePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert (pipe.max_tile_size, pipe.size_multiple, pipe.data_shape) == (512, 8, (3, 32, 32))
    assert pipe.tile_picture(torch.zeros(3, 3000, 4000, dtype=torch.long)).grid == (6, 8)
