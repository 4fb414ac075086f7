"""The published recipes of train/configs/ on the NCSN++ network: a few steps on a tiny fake image folder, and the
horizontal flips they use."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import ScorePipeline
from scorezoo.models import NCSNpp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "train"))
import train_mle  # noqa: E402

RECIPES = ["vp-mle-cifar10-deep", "subvp-mle-cifar10-deep", "subvp-mle-imagenet32-deep"]


def fake_folder(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def recipe(name: str, tmp_path: Path, **over) -> dict:
    """The recipe with its data swapped for 12 fake 32×32 pictures and a short, quiet run."""
    run = {"dataset": "image_folder", "data_dir": str(fake_folder(tmp_path / "imgs")), "data_shape": [3, 32, 32],
           "num_levels": 256, "batch_size": 4, "max_train_steps": 2, "warmup_steps": 1, "checkpointing_steps": 2,
           "eval_steps": 0, "final_eval": False, "log_every": 1, "progress_bar": False, "num_threads": 1,
           "output_dir": str(tmp_path / "run"), **over}
    return train_mle.load_config(REPO / "train" / "configs" / f"{name}.yaml", run)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_keeps_the_published_settings(name):
    cfg = train_mle.load_config(REPO / "train" / "configs" / f"{name}.yaml")
    net = cfg["network"]
    assert net["_class_name"] == "NCSNpp" and net["num_res_blocks"] == 8 and net["nf"] == 128
    assert (cfg["batch_size"], cfg["learning_rate"], cfg["warmup_steps"], cfg["max_grad_norm"], cfg["ema_decay"]) == (
        128, 2e-4, 5000, 1.0, 0.9999)
    assert cfg["weighting"] == "likelihood-is" and cfg["eps"] == (1e-5 if name.startswith("vp") else 1e-2)
    assert cfg["random_flip"] == ("cifar10" in name) and net["dropout"] == (0.1 if "cifar10" in name else 0.0)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_a_few_steps_on_a_small_network(name, tmp_path):
    """Everything of the recipe but the network's size: nf 16, one block per level."""
    small = {"nf": 16, "num_res_blocks": 1}
    cfg = recipe(name, tmp_path)
    cfg["network"].update(small)
    train_mle.train(cfg)
    pipe = ScorePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert isinstance(pipe.network, NCSNpp) and pipe.sde.name == cfg["sde"]["type"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_a_step_at_full_size(name, tmp_path):
    train_mle.train(recipe(name, tmp_path, max_train_steps=1, batch_size=2, checkpointing_steps=1))
    assert (tmp_path / "run" / "pipeline" / "network" / "diffusion_pytorch_model.safetensors").is_file()


def test_random_flip_flips_about_half_of_each_batch():
    data = train_mle.load_dataset("digits")
    state = train_mle.TrainState(seed=0, num_items=len(data.train), batch_size=64)
    plain, _ = train_mle.make_batch(data, state, 3, dequantize=False)
    flipped, _ = train_mle.make_batch(data, state, 3, dequantize=False, random_flip=True)
    same = (flipped == plain).flatten(1).all(1)
    mirrored = (flipped == plain.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 16 < int((~same).sum()) < 48
    again, _ = train_mle.make_batch(data, state, 3, dequantize=False, random_flip=True)
    assert torch.equal(again, flipped)  # a function of the step, as the rest of the batch
