"""The CIFAR-10 recipe of the zoo's model (train/configs/vp-mle-cifar10-small.yaml) on a 64-image subset: two steps,
and a run stopped after the first step resumes to the same weights bit for bit."""

from pathlib import Path

import numpy as np
from PIL import Image

from scorezoo.datasets.cifar10 import CIFAR10_CLASSES
from scorezoo.training import load_config, train
from tests.datasets.test_cifar10 import SHARED, write_batches
from tests.training.helpers import assert_same, final_weights, read_log

CONFIG = Path(__file__).resolve().parents[2] / "train" / "configs" / "vp-mle-cifar10-small.yaml"


def _subset(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` training images of the shared copy (the first 7 of each class, 64 in all), else ``n`` random
    ones."""
    if not SHARED.is_dir():
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)
    picks = [(c, p) for c, name in enumerate(CIFAR10_CLASSES)
             for p in sorted((SHARED / "train" / name).glob("*.png"))[:-(-n // 10)]][:n]
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for _, p in picks]), np.array([c for c, _ in picks])


def test_the_recipe_trains_two_steps_on_64_images_and_resumes_bit_exactly(tmp_path):
    sub = _subset()
    write_batches(tmp_path / "data", sub, (sub[0][:8], sub[1][:8]))
    over = {"data_dir": str(tmp_path / "data"), "batch_size": 8, "max_train_steps": 2, "checkpointing_steps": 1,
            "checkpoints_total_limit": 5, "eval_steps": 0, "log_every": 1, "num_threads": 1, "warmup_steps": 1}
    straight = {**over, "output_dir": str(tmp_path / "a")}
    train(load_config(CONFIG, straight))
    cut = {**over, "output_dir": str(tmp_path / "b"), "max_train_steps": 1}
    train(load_config(CONFIG, cut))
    train(load_config(CONFIG, {**over, "output_dir": str(tmp_path / "b"),
                               "resume_from_checkpoint": str(tmp_path / "b" / "checkpoints" / "checkpoint-1")}))
    raw_a, ema_a = final_weights(tmp_path / "a")
    raw_b, ema_b = final_weights(tmp_path / "b")
    assert_same(raw_a, raw_b)
    assert_same(ema_a, ema_b)
    assert [r["loss"] for r in read_log(tmp_path / "b")] == [r["loss"] for r in read_log(tmp_path / "a")]
    assert len(read_log(tmp_path / "a")) == 2
