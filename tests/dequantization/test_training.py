"""The dequantizer task of the training runner (python -m scorezoo.training --task dequantizer, and the shell
train/train_dequantizer.py): config checks, the run folder's guard, exact resume after a kill, the time limit, and
the exported pipeline."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from scorezoo import ScorePipeline
from scorezoo.dequantization import VariationalDequantizer
from scorezoo.training import ConfigError, load_config, main, train
from scorezoo.training.dequantizer import DequantizerTask
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline
from tests.training.helpers import read_log

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
    return load_config(None, {"task": "dequantizer", **cfg, **over})


def weights(run: Path) -> tuple[dict, dict]:
    """(raw weights of the last checkpoint, exported EMA weights)."""
    last = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return load_file(str(last / "model.safetensors")), \
        load_file(str(run / "dequantizer" / "diffusion_pytorch_model.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_run(a: Path, b: Path) -> bool:
    """The same raw and EMA weights, and the same loss at every logged step."""
    losses = [[(r["step"], r["loss_bpd"]) for r in read_log(run) if "loss_bpd" in r] for run in (a, b)]
    return all(same(x, y) for x, y in zip(weights(a), weights(b))) and losses[0] == losses[1]


@pytest.fixture(scope="module")
def straight(frozen, tmp_path_factory) -> Path:
    """A run of 8 steps that nothing interrupted."""
    run = tmp_path_factory.mktemp("straight")
    train(tiny(frozen, run))
    return run


class Killed(Exception):
    """Stands for a kill: the run stops in the middle of a step, with no chance to save or export anything."""


def dies_at(monkeypatch, step: int) -> None:
    """Make every run die when it starts step ``step`` + 1 (after ``step`` finished steps)."""
    real = DequantizerTask.micro_batches

    def dying(self, state, s, parts, num_parts):
        if s == step:
            raise Killed
        return real(self, state, s, parts, num_parts)

    monkeypatch.setattr(DequantizerTask, "micro_batches", dying)


def test_bad_configs_fail_in_one_line_before_training(frozen, tmp_path, capsys):
    for argv, match in ((["--num_layers", "3"], "unknown config key 'num_layers'"),
                        (["--batch_size", "0"], "batch_size must be a positive integer"),
                        (["--pretrained", str(tmp_path / "nothing")], "pretrained"),
                        (["--pretrained", str(frozen), "--dataset", "moons"], "the moons data are (2,)")):
        with pytest.raises(SystemExit) as e:
            main(["--task", "dequantizer", *argv, "--output_dir", str(tmp_path / "run")])
        assert e.value.code == 2 and match in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):  # 1e-3 is a number on the command line: the config passes, the model does not
        main(["--task", "dequantizer", "--learning_rate", "1e-3", "--pretrained", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert "pretrained" in err and "learning_rate" not in err
    (tmp_path / "cfg.yaml").write_text("num_layers: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'num_layers'"):
        load_config(tmp_path / "cfg.yaml", task="dequantizer")
    flat = tmp_path / "flat"
    tiny_mlp_pipeline().save_pretrained(flat)
    with pytest.raises(ConfigError, match="continuous data: there is nothing to dequantize"):
        train(tiny(flat, tmp_path / "run"))


def test_straight_run_equals_a_run_stopped_and_resumed_and_exports_a_pipeline(frozen, tmp_path):
    train(tiny(frozen, tmp_path / "a"))
    train(tiny(frozen, tmp_path / "b", max_train_steps=5))  # dies after step 5, checkpointed at 4
    ckpt = tmp_path / "b" / "checkpoints" / "checkpoint-4"
    train(tiny(frozen, tmp_path / "b", resume_from_checkpoint=str(ckpt)))
    raw_a, ema_a = weights(tmp_path / "a")
    raw_b, ema_b = weights(tmp_path / "b")
    assert same(raw_a, raw_b) and same(ema_a, ema_b)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    log_a = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["loss_bpd"] for r in log if r["step"] == 6] == [log_a[5]["loss_bpd"]]
    # another seed gives other weights, so the comparison above can fail
    train(tiny(frozen, tmp_path / "c", seed=1))
    assert not same(weights(tmp_path / "c")[0], raw_a)
    pipe = ScorePipeline.from_pretrained(tmp_path / "a" / "pipeline")
    assert isinstance(pipe.dequantizer, VariationalDequantizer) and pipe.dequantizer.config.hidden_channels == 4
    res = pipe.bits_per_dim(torch.zeros(1, 8, 8, dtype=torch.long), dequantization="variational", estimator="bound",
                            num_time_points=4)
    assert torch.isfinite(res.bpd).all()


def test_a_run_killed_mid_step_resumes_from_its_last_checkpoint_bit_exactly(frozen, straight, tmp_path, monkeypatch,
                                                                            one_thread):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        dies_at(m, 5)  # steps 1-5 done and logged; the last checkpoint is step 4's
        with pytest.raises(Killed):
            train(tiny(frozen, run))
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4, 5] and not (run / "dequantizer").exists()
    train(tiny(frozen, run, resume_from_checkpoint="latest"))
    assert same_run(run, straight)
    assert [r["step"] for r in read_log(run)] == list(range(1, 9))  # step 5 dropped from the log and done again


def test_max_train_minutes_stops_with_a_checkpoint_and_the_run_continues_bit_exactly(frozen, straight, tmp_path,
                                                                                      capsys, one_thread):
    run = tmp_path / "run"
    results = train(tiny(frozen, run, max_train_minutes=1e-9))  # any step takes longer than 60 ns
    assert results["trained_steps"] == 1 and sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint-1"]
    assert (run / "dequantizer").is_dir() and (run / "results.json").is_file()  # exported at the step reached
    assert ("max_train_minutes (1e-09) reached at step 1: checkpointed; continue with the same command and "
            "--resume_from_checkpoint latest") in capsys.readouterr().out
    train(tiny(frozen, run, resume_from_checkpoint="latest"))
    assert same_run(run, straight)


def test_a_folder_that_holds_a_run_is_refused_until_resume_or_overwrite(frozen, tmp_path, monkeypatch, capsys,
                                                                        one_thread):
    run = tmp_path / "run"
    cfg = tiny(frozen, run, max_train_steps=2)
    train(cfg)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="--resume_from_checkpoint latest, or start afresh with --overwrite"):
        train(cfg)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # the same from the command line, in one line
        main(["--config", str(tmp_path / "cfg.yaml")], prog="python -m scorezoo.training")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and err.startswith("python -m scorezoo.training: error: ")
    assert "already holds a run" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before  # nothing touched
    # overwrite deletes what the run wrote, its export included, before the first step; other files stay
    (run / "notes.txt").write_text("mine")
    with monkeypatch.context() as m:
        dies_at(m, 0)
        with pytest.raises(Killed):
            train({**cfg, "overwrite": True})
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "notes.txt"]


def test_resume_with_another_batch_size_is_refused(frozen, tmp_path):
    train(tiny(frozen, tmp_path, max_train_steps=2))
    with pytest.raises(ConfigError, match="batch_size=8, this run has 16"):
        train(tiny(frozen, tmp_path, batch_size=16, resume_from_checkpoint="latest", max_train_steps=4))


def test_the_configs_and_the_shell_of_the_repository_train_a_dequantizer(tmp_path):
    """train/configs/deq-*.yaml name their task; a config without one is a dequantizer's for train_dequantizer.py,
    and python -m scorezoo.training says which task it belongs to."""
    for name in ("deq-vp-mle-digits", "deq-vp-mle-photo16"):
        cfg = load_config(REPO / "train" / "configs" / f"{name}.yaml")
        assert cfg["task"] == "dequantizer" and cfg["output_dir"] == f"runs/{name}"
    (tmp_path / "old.yaml").write_text("pretrained: vp-mle-digits\nnum_time_points: 2\n")
    assert load_config(tmp_path / "old.yaml", task="dequantizer")["num_time_points"] == 2
    with pytest.raises(ConfigError, match="belongs to task dequantizer.*give task: dequantizer"):
        load_config(tmp_path / "old.yaml")
    out = subprocess.run([sys.executable, str(REPO / "train" / "train_dequantizer.py"), "--help"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True,
                         text=True).stdout
    assert "This command trains task dequantizer unless the config names another." in out
    assert "  --pretrained vp-mle-digits" in out


@pytest.mark.slow
def test_sigkill_then_resume_latest_matches_a_straight_run(frozen, tmp_path):
    """A real kill (SIGKILL) of ``python -m scorezoo.training --task dequantizer``, run outside the repository as a
    user of the wheel runs it, once checkpoint-4 exists, then ``--resume_from_checkpoint latest``: the same raw and
    EMA weights as an uninterrupted run."""
    run = tmp_path / "run"
    args = ["--task", "dequantizer", "--pretrained", str(frozen), "--hidden_channels", "4", "--num_blocks", "1",
            "--num_components", "2",
            "--batch_size", "8", "--max_train_steps", "40", "--warmup_steps", "2", "--checkpointing_steps", "4",
            "--checkpoints_total_limit", "3", "--final_eval", "false", "--progress_bar", "false",
            "--num_threads", "1", "--output_dir", str(run)]
    cmd = [sys.executable, "-m", "scorezoo.training", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "checkpoint-4").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "dequantizer").exists(), "the run finished before it was killed"
    subprocess.run(cmd + ["--resume_from_checkpoint", "latest"], env=env, cwd=tmp_path, check=True,
                   capture_output=True)
    train(tiny(frozen, tmp_path / "straight", max_train_steps=40, checkpointing_steps=40))
    raw_a, ema_a = weights(run)
    raw_b, ema_b = weights(tmp_path / "straight")
    assert same(raw_a, raw_b) and same(ema_a, ema_b)
