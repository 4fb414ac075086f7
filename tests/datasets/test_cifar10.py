"""CIFAR-10 in the formats users have: torchvision's pickled batches (read without running code) and an image-folder
tree; small stand-ins are generated here, and the shared copy is used when ``../shared`` is present."""

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo.datasets import CIFAR10Error, find_cifar10, load_cifar10_split, load_dataset
from scorezoo.datasets.cifar10 import CIFAR10_CLASSES, CIFAR10_ENV, BatchUnpickler

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/cifar10 is absent (a fresh clone has no "
                                                                "shared data folder)")


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def write_folder(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """An image-folder tree: one PNG per image under ``split/<class>/``, named so that sorted paths keep the order
    within a class."""
    for i, (img, c) in enumerate(zip(images, labels)):
        d = root / split / CIFAR10_CLASSES[c]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def folder_order(labels: np.ndarray) -> np.ndarray:
    """The order the image-folder reader gives: by class name, then by file name."""
    return np.array(sorted(range(len(labels)), key=lambda i: (CIFAR10_CLASSES[labels[i]], i)))


def write_batches(root: Path, train: tuple, test: tuple, *, str_keys: bool = False) -> Path:
    """torchvision's ``cifar-10-batches-py`` with 5 training batches and one test batch, as Python 3 writes them
    at protocol 2 (bytes keys, like the official Python 2 files read with encoding='bytes')."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, x: np.ndarray, y: np.ndarray) -> None:
        k = (lambda s: s) if str_keys else (lambda s: s.encode())
        obj = {k("batch_label"): "batch", k("labels"): [int(v) for v in y],
               k("data"): np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072)),
               k("filenames"): [f"{i}.png" for i in range(len(x))]}
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))

    for i, (x, y) in enumerate(zip(np.array_split(train[0], 5), np.array_split(train[1], 5)), 1):
        dump(f"data_batch_{i}", x, y)
    dump("test_batch", *test)
    return folder


@pytest.fixture
def tiny(tmp_path):
    """The same 40 training and 12 test images as batches and as an image folder."""
    train, test = _images(40, 0), _images(12, 1)
    write_batches(tmp_path / "batches", train, test)
    write_folder(tmp_path / "folder", "train", *train)
    write_folder(tmp_path / "folder", "test", *test)
    return tmp_path, train, test


def test_both_formats_give_the_same_arrays(tiny):
    root, train, test = tiny
    for split, (x, y) in (("train", train), ("test", test)):
        xb, yb, desc = load_cifar10_split(root / "batches", split)
        assert "python batches" in desc and xb.dtype == torch.uint8 and xb.shape == (len(x), 3, 32, 32)
        assert torch.equal(xb, torch.from_numpy(x).permute(0, 3, 1, 2)) and yb.tolist() == y.tolist()
        xf, yf, desc = load_cifar10_split(root / "folder", split)
        order = folder_order(y)
        assert "image folder" in desc
        assert torch.equal(xf, xb[order]) and yf.tolist() == y[order].tolist()
    # the batches folder itself, or the folder that holds it; str keys (pickled in Python 3 without bytes) too
    assert torch.equal(load_cifar10_split(root / "batches" / "cifar-10-batches-py", "test")[0],
                       load_cifar10_split(root / "batches", "test")[0])


def test_training_data_and_channel_order(tiny):
    root, train, test = tiny
    data = load_dataset("cifar10", data_dir=str(root / "batches"))
    assert data.train.shape == (40, 3, 32, 32) and data.eval.shape == (12, 3, 32, 32) and data.num_levels == 256
    # channel 2 is blue: the batches store R, G, B planes of 1024 values each
    assert torch.equal(data.train[3, 2], torch.from_numpy(train[0][3, :, :, 2]))


def test_the_environment_variable_and_a_clear_error_when_missing(tiny, tmp_path, monkeypatch):
    root, _, test = tiny
    monkeypatch.setenv(CIFAR10_ENV, str(root / "batches"))
    assert find_cifar10() == root / "batches"
    assert load_cifar10_split(None, "test")[0].shape[0] == 12
    monkeypatch.setenv(CIFAR10_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(CIFAR10Error, match="no CIFAR-10 under .*SCOREZOO_CIFAR10.*cifar-10-batches-py.*download=True"):
        find_cifar10()
    monkeypatch.delenv(CIFAR10_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CIFAR10Error, match="CIFAR-10 not found .*data/cifar10"):
        load_dataset("cifar10")
    with pytest.raises(CIFAR10Error, match="splits"):
        load_cifar10_split(root / "batches", "validation")


class _Boom:
    """A pickle payload that would run a shell command when unpickled."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_the_unpickler_refuses_code_and_runs_nothing(tiny, tmp_path, monkeypatch):
    root, _, _ = tiny
    monkeypatch.chdir(tmp_path)
    batch = root / "batches" / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({"data": _Boom(), "labels": []}, protocol=2))
    with pytest.raises(CIFAR10Error, match="data_batch_2 is not a CIFAR-10 batch .*refused .*system.*nothing in it"):
        load_cifar10_split(root / "batches", "train")
    assert not (tmp_path / "pwned").exists()
    # the same through pickle's own eval path
    with pytest.raises(pickle.UnpicklingError, match="refused builtins.eval"):
        BatchUnpickler(io.BytesIO(b"cbuiltins\neval\n(S'1+1'\ntR.")).load()


def test_truncated_and_wrong_batches(tiny):
    root, _, _ = tiny
    batch = root / "batches" / "cifar-10-batches-py" / "test_batch"
    raw = batch.read_bytes()
    batch.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CIFAR10Error, match="test_batch is truncated or corrupt"):
        load_cifar10_split(root / "batches", "test")
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, protocol=2))
    with pytest.raises(CIFAR10Error, match=r"expected 'data' as uint8 \(N, 3072\)"):
        load_cifar10_split(root / "batches", "test")
    (root / "batches" / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(CIFAR10Error, match="lacks data_batch_5"):
        load_cifar10_split(root / "batches", "train")


def test_a_folder_with_a_wrong_size_or_corrupt_picture(tiny):
    root, _, _ = tiny
    some = sorted((root / "folder" / "test").rglob("*.png"))
    Image.new("RGB", (32, 31)).save(some[0])
    with pytest.raises(CIFAR10Error, match=rf"{some[0].name} is 32×31 RGB; CIFAR-10 images are 32×32"):
        load_cifar10_split(root / "folder", "test")
    some[0].write_bytes(b"not a png")
    with pytest.raises(CIFAR10Error, match=rf"cannot decode .*{some[0].name}"):
        load_cifar10_split(root / "folder", "test")
    (root / "folder" / "test" / "unicorn").mkdir()
    with pytest.raises(CIFAR10Error, match="one folder per class .*found unicorn"):
        load_cifar10_split(root / "folder", "test")


@needs_shared
def test_the_shared_copy_as_batches_gives_the_same_arrays(tmp_path):
    """The first 64 test images of the shared PNG tree, written as a batch, read back identically."""
    x, y, _ = load_cifar10_split(SHARED, "test")
    assert x.shape == (10_000, 3, 32, 32) and torch.bincount(y).tolist() == [1000] * 10
    sub = (x[:64].permute(0, 2, 3, 1).numpy(), y[:64].numpy())
    write_batches(tmp_path, sub, sub, str_keys=True)
    xb, yb, _ = load_cifar10_split(tmp_path, "test")
    assert torch.equal(xb, x[:64]) and torch.equal(yb, y[:64])


@pytest.mark.slow
@needs_shared
def test_the_bundled_model_gives_its_cards_values_on_8_test_images():
    """vp-mle-cifar10-small's bits/dim of the first 8 CIFAR-10 test images, on its calibrated schedule (fixed steps:
    the same answer on any thread count up to float rounding), equal those its folder records (test8.json, written
    with the card by train/make_cifar_zoo.py)."""
    import json

    from scorezoo import ScorePipeline
    from scorezoo.zoo import BUNDLED_DIR

    folder = BUNDLED_DIR / "vp-mle-cifar10-small"
    want = json.loads((folder / "test8.json").read_text())["bpd"]
    x, _, _ = load_cifar10_split(SHARED, "test")
    got = ScorePipeline.from_pretrained(folder).bits_per_dim(x[:8], schedule="calibrated",
                                                             generator=torch.Generator().manual_seed(0)).bpd
    assert got.tolist() == pytest.approx(want, abs=1e-4)
    assert 3.0 < sum(want) / 8 < 5.0
