"""The training recipe train/train_mle.py: config checks, determinism across a kill and resume, export."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from scorezoo import ScorePipeline

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "train"))
import train_mle  # noqa: E402

TINY_UNET = {"_class_name": "UNet2DModel", "block_out_channels": [16, 32],
             "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
             "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8}


def _images(folder: Path, n: int = 18, size: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def tiny_config(tmp_path: Path, **over) -> dict:
    """18 images -> 15 train / 3 held out; batch 4 -> 3 steps per epoch, so step 4 is in the second epoch."""
    cfg = {"name": "tiny", "dataset": "image_folder", "data_dir": str(_images(tmp_path / "imgs")),
           "data_shape": [1, 8, 8], "num_levels": 17, "network": TINY_UNET, "batch_size": 4,
           "max_train_steps": 8, "warmup_steps": 2, "learning_rate": 1e-3, "checkpointing_steps": 2,
           "checkpoints_total_limit": 10, "eval_steps": 0, "final_eval": False, "log_every": 1,
           "progress_bar": False, "output_dir": str(tmp_path / "run"), "num_threads": 1}
    cfg.update(over)
    return cfg


def write_config(tmp_path: Path, **over) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(tiny_config(tmp_path, **over)))
    return p


def _final_weights(run: Path) -> tuple[dict, dict]:
    """(raw weights of the last checkpoint, exported EMA weights)."""
    last = max((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    exported = run / "pipeline/network/diffusion_pytorch_model.safetensors"
    return load_file(str(last / "model.safetensors")), load_file(str(exported))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- config checks (fail before training) ------------------------------------------------------------------
def _main_fails(argv, capsys, match):
    with pytest.raises(SystemExit) as e:
        train_mle.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert match in err, err


def test_unknown_key_fails_with_a_suggestion(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path)), "--learning_rat", "1e-3"], capsys, "unknown config key")
    _main_fails(["--config", str(write_config(tmp_path, batchsize=3))], capsys, "'batchsize'")


def test_unknown_dataset_and_weighting_fail(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path, dataset="mnist"))], capsys, "unknown dataset 'mnist'")
    _main_fails(["--config", str(write_config(tmp_path)), "--weighting", "sigma"], capsys, "unknown weighting")


def test_empty_and_corrupt_image_folders_fail(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _main_fails(["--config", str(write_config(tmp_path)), "--data_dir", str(tmp_path / "empty")], capsys,
                "holds 0 picture")
    cfg = write_config(tmp_path)
    (tmp_path / "imgs" / "05.png").write_bytes(b"garbage")
    _main_fails(["--config", str(cfg)], capsys, "05.png")


def test_a_resolution_the_network_cannot_take_fails(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path, data_shape=[1, 7, 7]))], capsys, "divisible by 2")
    _main_fails(["--config", str(write_config(tmp_path, network={**TINY_UNET, "in_channels": 3}))], capsys,
                "1 channel")
    _main_fails(["--config", str(write_config(tmp_path, dataset="moons"))], capsys, "use ScoreMLP")
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_bad_values_fail(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path)), "--batch_size", "0"], capsys, "batch_size")
    _main_fails(["--config", str(write_config(tmp_path)), "--eps", "0"], capsys, "eps")
    _main_fails(["--config", str(write_config(tmp_path)), "--batch_size", "64"], capsys, "exceeds the 15")
    _main_fails(["--config", str(tmp_path / "nope.yaml")], capsys, "not found")


def test_overrides_are_yaml_and_may_be_nested():
    got = train_mle.parse_overrides(["--a", "3", "--b.c=[1, 2]", "--push_to_hub", "--d", "-1e-3"])
    assert got == {"a": 3, "b": {"c": [1, 2]}, "push_to_hub": True, "d": -1e-3}


# -- determinism and resume --------------------------------------------------------------------------------
def test_data_order_is_a_function_of_the_step():
    s = train_mle.TrainState(seed=0, num_items=15, batch_size=4)
    assert s.steps_per_epoch == 3
    epoch0 = torch.cat([s.batch_indices(i) for i in range(3)])
    assert len(set(epoch0.tolist())) == 12  # no repeats within an epoch
    assert not torch.equal(epoch0, torch.cat([s.batch_indices(i) for i in range(3, 6)]))  # reshuffled per epoch
    assert torch.equal(s.batch_indices(4), train_mle.TrainState(0, 15, 4).batch_indices(4))


def test_straight_run_equals_run_stopped_mid_second_epoch_and_resumed(tmp_path):
    straight = tiny_config(tmp_path / "a")
    train_mle.train(train_mle.load_config(None, straight))
    # the interrupted run dies after step 5 (mid second epoch) before checkpointing it: resume from step 4
    cut = tiny_config(tmp_path / "b", max_train_steps=5)
    train_mle.train(train_mle.load_config(None, cut))
    ckpt = Path(cut["output_dir"]) / "checkpoints" / "checkpoint-4"
    log = [json.loads(line) for line in (Path(cut["output_dir"]) / "log.jsonl").read_text().splitlines()]
    resumed = tiny_config(tmp_path / "b", resume_from_checkpoint=str(ckpt))
    train_mle.train(train_mle.load_config(None, resumed))
    raw_a, ema_a = _final_weights(Path(straight["output_dir"]))
    raw_b, ema_b = _final_weights(Path(resumed["output_dir"]))
    _assert_same(raw_a, raw_b)
    _assert_same(ema_a, ema_b)
    log_a = [json.loads(line) for line in (Path(straight["output_dir"]) / "log.jsonl").read_text().splitlines()]
    assert log[4]["epoch"] == 1 and log[4]["loss"] == log_a[4]["loss"]  # step 5, same batch, same loss
    # and a different seed does change the result, so the comparison above can fail
    other = tiny_config(tmp_path / "c", seed=1)
    train_mle.train(train_mle.load_config(None, other))
    raw_c = _final_weights(Path(other["output_dir"]))[0]
    assert not all(torch.equal(raw_c[k], raw_a[k]) for k in raw_a)


@pytest.mark.slow
def test_sigkill_at_any_step_then_resume_latest_matches_a_straight_run(tmp_path):
    """A real kill (SIGKILL) of a subprocess once the second-epoch checkpoint exists, then
    ``--resume_from_checkpoint latest``."""
    cfg = write_config(tmp_path, max_train_steps=60, checkpointing_steps=4, checkpoints_total_limit=3)
    run = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train" / "train_mle.py"), "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "checkpoint-4").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "pipeline").exists(), "the run finished before it was killed"
    subprocess.run(cmd + ["--resume_from_checkpoint", "latest"], env=env, check=True, capture_output=True)
    straight = tiny_config(tmp_path / "s", max_train_steps=60, checkpointing_steps=60)
    train_mle.train(train_mle.load_config(None, straight))
    raw_a, ema_a = _final_weights(run)
    raw_b, ema_b = _final_weights(Path(straight["output_dir"]))
    _assert_same(raw_a, raw_b)
    _assert_same(ema_a, ema_b)


def test_resume_with_another_batch_size_is_refused(tmp_path):
    cfg = tiny_config(tmp_path, max_train_steps=2)
    train_mle.train(train_mle.load_config(None, cfg))
    with pytest.raises(train_mle.ConfigError, match="batch_size=4"):
        train_mle.train(train_mle.load_config(None, {**cfg, "batch_size": 5, "max_train_steps": 4,
                                                     "resume_from_checkpoint": "latest"}))


# -- evaluation and export ---------------------------------------------------------------------------------
def test_export_is_a_loadable_pipeline_with_a_card_and_an_evaluation(tmp_path):
    cfg = tiny_config(tmp_path, max_train_steps=3, final_eval=True, final_eval_num_repeats=1, eval_steps=2,
                      eval_num_samples=2, bound_num_time_points=8, ode_rtol=1e-3, ode_atol=1e-3)
    results = train_mle.train(train_mle.load_config(None, cfg), command="python train/train_mle.py --config x")
    run = Path(cfg["output_dir"])
    pipe = ScorePipeline.from_pretrained(run / "pipeline")
    assert pipe.num_levels == 17 and pipe.data_shape == (1, 8, 8)
    assert pipe.extra_config["training_command"] == "python train/train_mle.py --config x"
    assert results["eval"]["num_eval"] == 3 and results["eval"]["unit"] == "bits/dim"
    assert np.isfinite(results["eval"]["ode"]) and results["eval"]["bound"] > 0
    card = (run / "pipeline" / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: scorezoo" in card
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in logged) and any("final_eval" in r for r in logged)


def test_continuous_data_trains_and_scores_in_nats(tmp_path):
    cfg = tiny_config(tmp_path, dataset="moons", data_dir=None, data_shape=None, num_levels=None,
                      network={"_class_name": "ScoreMLP", "hidden_dim": 16, "num_layers": 1}, batch_size=32,
                      max_train_steps=2, final_eval=True, bound_num_time_points=4, ode_rtol=1e-3, ode_atol=1e-3)
    data_eval = 5000
    results = train_mle.train(train_mle.load_config(None, cfg))
    assert results["eval"]["unit"] == "nats/point" and results["eval"]["num_eval"] == data_eval
    assert ScorePipeline.from_pretrained(Path(cfg["output_dir"]) / "pipeline").num_levels is None


@pytest.mark.slow
def test_two_processes_data_parallel_matches_one_process(tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPU (gloo on CPU): each process
    takes half of the same global batch, so the averaged gradient, and the weights, match a single process up to
    float summation order."""
    # adam_eps = 1: near-zero gradient entries take small steps instead of Adam's first-step +-lr, which would turn
    # summation-order noise into differences of size lr
    cfg = write_config(tmp_path, max_train_steps=4, checkpointing_steps=4, adam_eps=1.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    subprocess.run(launcher + [str(REPO / "train" / "train_mle.py"), "--config", str(cfg)], env=env, check=True,
                   capture_output=True, timeout=300)
    single = tiny_config(tmp_path / "single", max_train_steps=4, checkpointing_steps=4, adam_eps=1.0)
    train_mle.train(train_mle.load_config(None, single))
    assert json.loads((tmp_path / "run" / "results.json").read_text())["num_processes"] == 2
    log_2, log_1 = ([json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
                    for run in (tmp_path / "run", Path(single["output_dir"])))
    # step 1: same weights, same global batch: the loss and the all-reduced gradient's norm agree to float error
    assert log_2[0]["loss"] == pytest.approx(log_1[0]["loss"], rel=1e-5)
    assert log_2[0]["grad_norm"] == pytest.approx(log_1[0]["grad_norm"], rel=1e-4)
    for a, b in zip(log_2, log_1):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    raw_2, _ = _final_weights(tmp_path / "run")
    raw_1, _ = _final_weights(Path(single["output_dir"]))
    for k in raw_1:
        torch.testing.assert_close(raw_2[k], raw_1[k], rtol=1e-4, atol=1e-6)
