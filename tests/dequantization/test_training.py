"""train/train_dequantizer.py: config checks, exact resume after a kill, and the exported pipeline."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scorezoo import ScorePipeline
from scorezoo.dequantization import VariationalDequantizer
from scorezoo.dequantization import training
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frozen(tmp_path_factory) -> Path:
    """A tiny 8x8x1 model with 17 levels that says it was trained on digits (so the trainer loads the digits)."""
    d = tmp_path_factory.mktemp("frozen")
    pipe = tiny_unet_pipeline()
    pipe.extra_config["dataset"] = "digits"
    pipe.save_pretrained(d)
    return d


def tiny(frozen: Path, out: Path, **over) -> dict:
    cfg = {"pretrained": str(frozen), "hidden_channels": 4, "num_blocks": 1, "num_components": 2, "batch_size": 8,
           "max_train_steps": 8, "warmup_steps": 2, "checkpointing_steps": 2, "checkpoints_total_limit": 10,
           "final_eval": False, "log_every": 1, "progress_bar": False, "num_threads": 1, "output_dir": str(out)}
    return training.load_config(None, {**cfg, **over})


def weights(run: Path) -> tuple[dict, dict]:
    """(raw weights of the last checkpoint, exported EMA weights)."""
    last = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return load_file(str(last / "model.safetensors")), \
        load_file(str(run / "dequantizer" / "diffusion_pytorch_model.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_configs_fail_in_one_line_before_training(frozen, tmp_path, capsys):
    for argv, match in ((["--num_layers", "3"], "unrecognized arguments: --num_layers"),
                        (["--batch_size", "0"], "batch_size must be a positive integer"),
                        (["--pretrained", str(tmp_path / "nothing")], "pretrained"),
                        (["--pretrained", str(frozen), "--dataset", "moons"], "the moons data are (2,)")):
        with pytest.raises(SystemExit) as e:
            training.main(argv + ["--output_dir", str(tmp_path / "run")])
        assert e.value.code == 2 and match in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):  # 1e-3 is a number on the command line: the config passes, the model does not
        training.main(["--learning_rate", "1e-3", "--pretrained", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert "pretrained" in err and "learning_rate" not in err
    (tmp_path / "cfg.yaml").write_text("num_layers: 3\n")
    with pytest.raises(training.ConfigError, match=r"unknown config key\(s\) \['num_layers'\]"):
        training.load_config(tmp_path / "cfg.yaml")
    flat = tmp_path / "flat"
    tiny_mlp_pipeline().save_pretrained(flat)
    with pytest.raises(training.ConfigError, match="continuous data: there is nothing to dequantize"):
        training.train(tiny(flat, tmp_path / "run"))


def test_straight_run_equals_a_run_stopped_and_resumed_and_exports_a_pipeline(frozen, tmp_path):
    training.train(tiny(frozen, tmp_path / "a"))
    training.train(tiny(frozen, tmp_path / "b", max_train_steps=5))  # dies after step 5, checkpointed at 4
    ckpt = tmp_path / "b" / "checkpoints" / "checkpoint-4"
    training.train(tiny(frozen, tmp_path / "b", resume_from_checkpoint=str(ckpt)))
    raw_a, ema_a = weights(tmp_path / "a")
    raw_b, ema_b = weights(tmp_path / "b")
    assert same(raw_a, raw_b) and same(ema_a, ema_b)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    log_a = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["loss_bpd"] for r in log if r["step"] == 6] == [log_a[5]["loss_bpd"]]
    # another seed gives other weights, so the comparison above can fail
    training.train(tiny(frozen, tmp_path / "c", seed=1))
    assert not same(weights(tmp_path / "c")[0], raw_a)
    pipe = ScorePipeline.from_pretrained(tmp_path / "a" / "pipeline")
    assert isinstance(pipe.dequantizer, VariationalDequantizer) and pipe.dequantizer.config.hidden_channels == 4
    res = pipe.bits_per_dim(torch.zeros(1, 8, 8, dtype=torch.long), dequantization="variational", estimator="bound",
                            num_time_points=4)
    assert torch.isfinite(res.bpd).all()


def test_resume_with_another_batch_size_is_refused(frozen, tmp_path):
    training.train(tiny(frozen, tmp_path, max_train_steps=2))
    with pytest.raises(training.ConfigError, match="batch_size=8, this run has 16"):
        training.train(tiny(frozen, tmp_path, batch_size=16, resume_from_checkpoint="latest", max_train_steps=4))


@pytest.mark.slow
def test_sigkill_then_resume_latest_matches_a_straight_run(frozen, tmp_path):
    """A real kill (SIGKILL) of the command-line trainer once checkpoint-4 exists, then ``--resume_from_checkpoint
    latest``: the same raw and EMA weights as an uninterrupted run."""
    run = tmp_path / "run"
    args = ["--pretrained", str(frozen), "--hidden_channels", "4", "--num_blocks", "1", "--num_components", "2",
            "--batch_size", "8", "--max_train_steps", "40", "--warmup_steps", "2", "--checkpointing_steps", "4",
            "--checkpoints_total_limit", "3", "--final_eval", "false", "--progress_bar", "false",
            "--num_threads", "1", "--output_dir", str(run)]
    cmd = [sys.executable, str(REPO / "train" / "train_dequantizer.py"), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "checkpoint-4").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "dequantizer").exists(), "the run finished before it was killed"
    subprocess.run(cmd + ["--resume_from_checkpoint", "latest"], env=env, check=True, capture_output=True)
    training.train(tiny(frozen, tmp_path / "straight", max_train_steps=40, checkpointing_steps=40))
    raw_a, ema_a = weights(run)
    raw_b, ema_b = weights(tmp_path / "straight")
    assert same(raw_a, raw_b) and same(ema_a, ema_b)
