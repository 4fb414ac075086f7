"""Small untrained pipelines for tests that need a real network, and a pre-filled HF cache."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import torch
from diffusers import UNet2DModel

from scorezoo import ScoreMLP, ScorePipeline, VPSDE


def tiny_unet_pipeline(seed: int = 0, channels: int = 1, size: int = 8, num_levels: int = 17,
                       extra_config: dict | None = None) -> ScorePipeline:
    torch.manual_seed(seed)
    net = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                      up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8,
                      attention_head_dim=8)
    return ScorePipeline(net, VPSDE(), data_shape=(channels, size, size), num_levels=num_levels,
                         extra_config=extra_config or {"dataset": "test"})


def tiny_mlp_pipeline(seed: int = 0) -> ScorePipeline:
    torch.manual_seed(seed)
    return ScorePipeline(ScoreMLP(dim=2, hidden_dim=32, num_layers=2), VPSDE(), data_shape=(2,), num_levels=None)


def fill_hf_cache(folder: Path, cache: Path, repo_id: str, commit: str = "0" * 40) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache does for ``repo_id`` at ``commit`` on branch main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    shutil.copytree(folder, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


def accelerate_launch(num_processes: int = 2) -> list[str]:
    """``accelerate launch --multi_gpu --num_processes N`` on CPU (gloo) with a free rendezvous port: the default port
    29500 can still be held by an earlier test's processes, which makes the next launch fail at random."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port)]
