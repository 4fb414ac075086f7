"""A tiny training run for the tests: 18 random 8x8 pictures, a two-level UNet, a few steps on one thread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

TINY_UNET = {"_class_name": "UNet2DModel", "block_out_channels": [16, 32],
             "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
             "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8}


def images(folder: Path, n: int = 18, size: int = 8) -> Path:
    """``n`` random grey ``size x size`` PNGs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def tiny_config(tmp_path: Path, **over) -> dict:
    """18 images -> 15 train / 3 held out; batch 4 -> 3 steps per epoch, so step 4 is in the second epoch."""
    cfg = {"name": "tiny", "dataset": "image_folder", "data_dir": str(images(tmp_path / "imgs")),
           "data_shape": [1, 8, 8], "num_levels": 17, "network": TINY_UNET, "batch_size": 4,
           "max_train_steps": 8, "warmup_steps": 2, "learning_rate": 1e-3, "checkpointing_steps": 2,
           "checkpoints_total_limit": 10, "eval_steps": 0, "final_eval": False, "log_every": 1,
           "progress_bar": False, "output_dir": str(tmp_path / "run"), "num_threads": 1}
    cfg.update(over)
    return cfg


def write_config(tmp_path: Path, **over) -> Path:
    """:func:`tiny_config` as ``tmp_path/cfg.yaml``."""
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(tiny_config(tmp_path, **over)))
    return p


def final_weights(run: Path) -> tuple[dict, dict]:
    """(raw weights of the last checkpoint, exported EMA weights)."""
    last = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    exported = run / "pipeline/network/diffusion_pytorch_model.safetensors"
    return load_file(str(last / "model.safetensors")), load_file(str(exported))


def assert_same(a: dict, b: dict) -> None:
    """Bit-identical state dicts."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def read_log(run: Path) -> list[dict]:
    """The records of ``run/log.jsonl``."""
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
