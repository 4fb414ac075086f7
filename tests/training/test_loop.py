"""The training loop: exact resume across a kill, the run folder's guard, data parallelism, what it prints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scorezoo.training import ConfigError, load_config, train
from scorezoo.training.loop import describe_setup, existing_run
from tests.helpers import accelerate_launch
from tests.training.helpers import assert_same, final_weights, read_log, tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# -- determinism and resume --------------------------------------------------------------------------------
def test_straight_run_equals_run_stopped_mid_second_epoch_and_resumed(tmp_path):
    straight = tiny_config(tmp_path / "a")
    train(load_config(None, straight))
    # the interrupted run dies after step 5 (mid second epoch) before checkpointing it: resume from step 4
    cut = tiny_config(tmp_path / "b", max_train_steps=5)
    train(load_config(None, cut))
    ckpt = Path(cut["output_dir"]) / "checkpoints" / "checkpoint-4"
    log = read_log(Path(cut["output_dir"]))
    resumed = tiny_config(tmp_path / "b", resume_from_checkpoint=str(ckpt))
    train(load_config(None, resumed))
    raw_a, ema_a = final_weights(Path(straight["output_dir"]))
    raw_b, ema_b = final_weights(Path(resumed["output_dir"]))
    assert_same(raw_a, raw_b)
    assert_same(ema_a, ema_b)
    log_a = read_log(Path(straight["output_dir"]))
    assert log[4]["epoch"] == 1 and log[4]["loss"] == log_a[4]["loss"]  # step 5, same batch, same loss
    # the resumed run's log is the straight run's: step 5 of the cut run was dropped and logged again
    assert [(r["step"], r["loss"]) for r in read_log(Path(resumed["output_dir"]))] == [(r["step"], r["loss"])
                                                                                       for r in log_a]
    # and a different seed does change the result, so the comparison above can fail
    other = tiny_config(tmp_path / "c", seed=1)
    train(load_config(None, other))
    raw_c = final_weights(Path(other["output_dir"]))[0]
    assert not all(torch.equal(raw_c[k], raw_a[k]) for k in raw_a)


@pytest.mark.slow
def test_sigkill_at_any_step_then_resume_latest_matches_a_straight_run(tmp_path):
    """A real kill (SIGKILL) of a subprocess once the second-epoch checkpoint exists, then
    ``--resume_from_checkpoint latest``."""
    cfg = write_config(tmp_path, max_train_steps=60, checkpointing_steps=4, checkpoints_total_limit=3)
    run = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train" / "train_mle.py"), "--config", str(cfg)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "checkpoint-4").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "pipeline").exists(), "the run finished before it was killed"
    subprocess.run(cmd + ["--resume_from_checkpoint", "latest"], env=ENV, check=True, capture_output=True)
    straight = tiny_config(tmp_path / "s", max_train_steps=60, checkpointing_steps=60)
    train(load_config(None, straight))
    raw_a, ema_a = final_weights(run)
    raw_b, ema_b = final_weights(Path(straight["output_dir"]))
    assert_same(raw_a, raw_b)
    assert_same(ema_a, ema_b)
    assert [r["step"] for r in read_log(run)] == list(range(1, 61))  # each step logged once


def test_max_train_minutes_stops_with_a_checkpoint_and_the_run_continues_bit_exactly(tmp_path, capsys, one_thread):
    results = train(load_config(None, tiny_config(tmp_path / "cut", max_train_minutes=1e-9)))  # > 60 ns a step
    cut = tmp_path / "cut" / "run"
    assert results["trained_steps"] == 1 and [p.name for p in (cut / "checkpoints").iterdir()] == ["checkpoint-1"]
    assert (cut / "pipeline").is_dir()  # exported at the step reached
    assert "reached at step 1: checkpointed; continue with the same command and --resume_from_checkpoint latest" \
        in capsys.readouterr().out
    train(load_config(None, tiny_config(tmp_path / "cut", max_train_steps=4, resume_from_checkpoint="latest")))
    train(load_config(None, tiny_config(tmp_path / "straight", max_train_steps=4)))
    for a, b in zip(final_weights(cut), final_weights(tmp_path / "straight" / "run")):
        assert_same(a, b)


def test_resume_with_another_batch_size_is_refused(tmp_path):
    cfg = tiny_config(tmp_path, max_train_steps=2)
    train(load_config(None, cfg))
    with pytest.raises(ConfigError, match="batch_size=4"):
        train(load_config(None, {**cfg, "batch_size": 5, "max_train_steps": 4, "resume_from_checkpoint": "latest"}))


# -- the run folder ----------------------------------------------------------------------------------------
def test_training_into_a_finished_run_is_refused_until_resume_or_overwrite(tmp_path):
    cfg = tiny_config(tmp_path, max_train_steps=4, checkpointing_steps=2)
    train(load_config(None, cfg))
    run = Path(cfg["output_dir"])
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="--resume_from_checkpoint latest, or start afresh with --overwrite"):
        train(load_config(None, cfg))
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before  # nothing touched
    # resume to a later step: the log continues, no step twice
    train(load_config(None, {**cfg, "max_train_steps": 6, "resume_from_checkpoint": "latest"}))
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4, 5, 6]
    # overwrite: the old checkpoints and log are gone, the new run's are there
    (run / "notes.txt").write_text("mine")
    train(load_config(None, {**cfg, "max_train_steps": 2, "overwrite": True}))
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["checkpoint-2"]
    assert [r["step"] for r in read_log(run)] == [1, 2]
    assert (run / "notes.txt").read_text() == "mine"  # only what a run writes is deleted


def test_existing_run_names_what_it_found(tmp_path):
    assert existing_run(tmp_path / "nothing") is None
    (tmp_path / "checkpoints" / "checkpoint-40").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-8").mkdir()
    (tmp_path / "log.jsonl").write_text('{"step": 1}\n')
    assert existing_run(tmp_path) == "2 checkpoint(s), the last at step 40, log.jsonl"


def test_the_refusal_is_one_line_from_the_command_line(tmp_path, capsys):
    from scorezoo.training import main

    cfg = write_config(tmp_path, max_train_steps=1, checkpointing_steps=1)
    main(["--config", str(cfg)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["--config", str(cfg)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "already holds a run" in err and "--overwrite" in err


# -- what it says and records ------------------------------------------------------------------------------
def test_setup_line_names_processes_device_precision_and_the_batch_split():
    line = describe_setup(2, "cpu", "no", 128, 4, launched=True)
    assert line == ("2 processes on cpu, mixed precision no; global batch 128 = 2 process(es) x 4 accumulation "
                    "step(s) x micro-batch 16")
    one = describe_setup(1, "cpu", "bf16", 64, 1, launched=True)
    assert one.startswith("1 process on cpu, mixed precision bf16") and "--multi_gpu" in one
    assert "--multi_gpu" not in describe_setup(1, "cpu", "no", 64, 1, launched=False)


def test_the_command_is_rebuilt_from_argv_as_run(monkeypatch):
    from types import SimpleNamespace

    from scorezoo.training.cli import run_command

    monkeypatch.delenv("ACCELERATE_DYNAMO_BACKEND", raising=False)
    main_module = SimpleNamespace(__spec__=None)
    monkeypatch.setitem(sys.modules, "__main__", main_module)
    assert run_command(["train/train_mle.py", "--config", "a b.yaml"]) == (
        "python train/train_mle.py --config 'a b.yaml'")
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "no")
    assert run_command(["train/train_mle.py", "--x", "1"]) == "accelerate launch train/train_mle.py --x 1"
    monkeypatch.delenv("ACCELERATE_DYNAMO_BACKEND")
    main_module.__spec__ = SimpleNamespace(name="scorezoo.training.__main__")
    assert run_command(["/site/scorezoo/training/__main__.py", "--config", "c.yaml"]) == (
        "python -m scorezoo.training --config c.yaml")


@pytest.mark.slow
def test_results_record_the_command_as_run(tmp_path):
    """``python train/train_mle.py`` is recorded as such, not as an ``accelerate launch`` it was not."""
    cfg = write_config(tmp_path, max_train_steps=1, checkpointing_steps=1)
    env = {k: v for k, v in ENV.items() if not k.startswith("ACCELERATE_")}
    out = subprocess.run([sys.executable, "train/train_mle.py", "--config", str(cfg)], cwd=REPO, env=env,
                         check=True, capture_output=True, text=True).stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["command"] == f"python train/train_mle.py --config {cfg}"
    assert results["launcher"] == "python" and results["num_processes"] == 1
    assert "1 process on cpu, mixed precision no; global batch 4 = 1 process(es) x 1 accumulation step(s) x " \
           "micro-batch 4" in out
    subprocess.run([sys.executable, "-m", "scorezoo.training", "--config", str(cfg), "--overwrite"], cwd=REPO,
                   env=env, check=True, capture_output=True)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["command"] == f"python -m scorezoo.training --config {cfg} --overwrite"


@pytest.mark.slow
def test_two_processes_data_parallel_matches_one_process(tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPU (gloo on CPU): each process
    takes half of the same global batch, so the averaged gradient, and the weights, match a single process up to
    float summation order."""
    # adam_eps = 1: near-zero gradient entries take small steps instead of Adam's first-step +-lr, which would turn
    # summation-order noise into differences of size lr
    cfg = write_config(tmp_path, max_train_steps=4, checkpointing_steps=4, adam_eps=1.0)
    launcher = accelerate_launch(2)
    out = subprocess.run(launcher + [str(REPO / "train" / "train_mle.py"), "--config", str(cfg)], env=ENV,
                         check=True, capture_output=True, timeout=300, text=True).stdout
    assert out.count("2 processes on cpu") == 1  # printed once, by the main process
    single = tiny_config(tmp_path / "single", max_train_steps=4, checkpointing_steps=4, adam_eps=1.0)
    train(load_config(None, single))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["num_processes"] == 2 and results["launcher"] == "accelerate launch"
    assert results["command"].startswith("accelerate launch ") and results["command"].endswith(f"--config {cfg}")
    log_2, log_1 = read_log(tmp_path / "run"), read_log(Path(single["output_dir"]))
    # step 1: same weights, same global batch: the loss and the all-reduced gradient's norm agree to float error
    assert log_2[0]["loss"] == pytest.approx(log_1[0]["loss"], rel=1e-5)
    assert log_2[0]["grad_norm"] == pytest.approx(log_1[0]["grad_norm"], rel=1e-4)
    for a, b in zip(log_2, log_1):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    raw_2, _ = final_weights(tmp_path / "run")
    raw_1, _ = final_weights(Path(single["output_dir"]))
    for k in raw_1:
        torch.testing.assert_close(raw_2[k], raw_1[k], rtol=1e-4, atol=1e-6)
