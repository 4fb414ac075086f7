"""The published recipes of train/configs/ on the NCSN++ network: a few steps on a tiny fake image folder (their
horizontal flips: tests/training/test_data.py)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scorezoo import ScorePipeline
from scorezoo.models import NCSNpp
from scorezoo.training import load_config, train

REPO = Path(__file__).resolve().parents[2]

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
    return load_config(REPO / "train" / "configs" / f"{name}.yaml", run)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_keeps_the_published_settings(name):
    cfg = load_config(REPO / "train" / "configs" / f"{name}.yaml")
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
    train(cfg)
    pipe = ScorePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert isinstance(pipe.network, NCSNpp) and pipe.sde.name == cfg["sde"]["type"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_a_step_at_full_size(name, tmp_path):
    train(recipe(name, tmp_path, max_train_steps=1, batch_size=2, checkpointing_steps=1))
    assert (tmp_path / "run" / "pipeline" / "network" / "diffusion_pytorch_model.safetensors").is_file()

