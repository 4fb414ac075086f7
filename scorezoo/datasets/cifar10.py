"""CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test images, 32×32 RGB, 256 levels, in the formats users
have, read without running anyone's code.

Where it is read from (:func:`find_cifar10`): the folder given (``data_dir``, ``--data cifar10:ROOT``), else the
environment variable :data:`CIFAR10_ENV`, else ``./data/cifar10`` and ``~/.cache/scorezoo/cifar10``. A folder is one of

* torchvision's ``cifar-10-batches-py`` (what ``torchvision.datasets.CIFAR10(root, download=True)`` leaves, or the
  official ``cifar-10-python.tar.gz`` unpacked): the folder itself or a folder that holds it. Its batches are
  pickles; they are read by :class:`BatchUnpickler`, which admits only what those files hold (a dict of a numpy
  uint8 array, a list of labels and strings), so a planted pickle cannot run code;
* an image-folder tree ``train/<class>/*.png`` and ``test/<class>/*.png`` (torchvision's ``ImageFolder`` layout, as
  in ``../shared/data/cifar10``), read in sorted path order.

Both give the same pixels; the order inside a split is the batches' order for the first and sorted paths for the
second. The likelihood benchmark is the test split, all 10,000 images, bits/dim with uniform (or variational)
dequantization on 256 levels.
"""

from __future__ import annotations

import io
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .core import IMAGE_EXTENSIONS, TrainingData

__all__ = ["CIFAR10_ENV", "CIFAR10_CLASSES", "CIFAR10_SPLITS", "CIFAR10Error", "BatchUnpickler", "find_cifar10",
           "cifar10_format", "load_cifar10_split", "load_cifar10"]

#: the environment variable naming the CIFAR-10 folder
CIFAR10_ENV = "SCOREZOO_CIFAR10"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_SPLITS = ("train", "test")
#: the batch files of each split in torchvision's ``cifar-10-batches-py`` folder
BATCH_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
#: folders looked in when none is given (relative ones to the working directory)
DEFAULT_LOCATIONS = ("data/cifar10", "~/.cache/scorezoo/cifar10")

_WHERE = ("Get it with torchvision.datasets.CIFAR10(ROOT, download=True) or from "
          "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (unpacked), then give ROOT as --data cifar10:ROOT "
          f"(scorezoo eval), data_dir (a training config) or the environment variable {CIFAR10_ENV}.")


class CIFAR10Error(ValueError):
    """CIFAR-10 is missing, in an unknown layout, or damaged (the message names the file)."""


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that a CIFAR-10 batch never holds."""


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that admits only what a CIFAR-10 python batch holds: dicts, lists, strings, numbers and numpy
    arrays. Any other global (``os.system``, ``builtins.eval``, ...) is refused before anything is called.

    Raises:
        RefusedGlobal: (a ``pickle.UnpicklingError``) a global that is not in :attr:`ALLOWED`.
    """

    #: (module, name) of the only callables a batch may name: numpy's array reconstruction (numpy 1 and 2) and
    #: ``_codecs.encode``, through which Python 3 pickles bytes at protocol 2
    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise RefusedGlobal(f"refused {module}.{name}: a CIFAR-10 batch holds only arrays, lists and "
                                         "strings")
        return super().find_class(module, name)


def _batch_folder(root: Path) -> Path | None:
    for d in (root, root / "cifar-10-batches-py"):
        if (d / "data_batch_1").is_file() or (d / "test_batch").is_file():
            return d
    return None


def cifar10_format(root: str | Path) -> str | None:
    """``"batches"`` (torchvision's pickled batches), ``"folder"`` (``train|test/<class>/*.png``) or None: what
    ``root`` holds."""
    root = Path(root).expanduser()
    if _batch_folder(root) is not None:
        return "batches"
    if any((root / s).is_dir() for s in CIFAR10_SPLITS):
        return "folder"
    return None


def find_cifar10(root: str | Path | None = None) -> Path:
    """The CIFAR-10 folder: ``root`` if given, else ``$SCOREZOO_CIFAR10``, else the first of
    :data:`DEFAULT_LOCATIONS` that holds it.

    Raises:
        CIFAR10Error: one line naming where it looked, the two formats and where to get the data.
    """
    if root is not None or os.environ.get(CIFAR10_ENV):
        where = Path(root if root is not None else os.environ[CIFAR10_ENV]).expanduser()
        if cifar10_format(where) is None:
            src = "" if root is not None else f" (from {CIFAR10_ENV})"
            raise CIFAR10Error(f"no CIFAR-10 under {str(where)!r}{src}: expected torchvision's cifar-10-batches-py "
                               f"folder or an image-folder tree train/<class>/*.png, test/<class>/*.png. {_WHERE}")
        return where
    for loc in DEFAULT_LOCATIONS:
        where = Path(loc).expanduser()
        if cifar10_format(where) is not None:
            return where
    raise CIFAR10Error(f"CIFAR-10 not found (looked in {', '.join(DEFAULT_LOCATIONS)}): expected torchvision's "
                       f"cifar-10-batches-py folder or an image-folder tree train/<class>/*.png. {_WHERE}")


def _get(d: dict, key: str):
    return d[key] if key in d else d.get(key.encode())


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CIFAR10Error(f"cannot read the CIFAR-10 batch {path}: {e}") from None
    try:
        obj = BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except RefusedGlobal as e:
        raise CIFAR10Error(f"{path} is not a CIFAR-10 batch ({e}); nothing in it was run.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError) as e:
        raise CIFAR10Error(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); download it again.") from None
    data = _get(obj, "data") if isinstance(obj, dict) else None
    labels = _get(obj, "labels") if isinstance(obj, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        shape = getattr(data, "shape", None)
        raise CIFAR10Error(f"{path} is not a CIFAR-10 batch: expected 'data' as uint8 (N, 3072), got "
                           f"{type(data).__name__} {shape}.")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise CIFAR10Error(f"{path}: {len(labels)} labels in 0..9 expected for {len(data)} images.")
    return data.reshape(-1, 3, 32, 32), labels


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.size != (32, 32) or img.mode not in ("RGB", "RGBA", "P", "L"):
                raise CIFAR10Error(f"{path} is {img.size[0]}×{img.size[1]} {img.mode}; CIFAR-10 images are 32×32 RGB.")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise CIFAR10Error(f"cannot decode {path}: {e}") from None


def load_cifar10_split(root: str | Path | None = None, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, str]:
    """One split of CIFAR-10.

    Args:
        root: the folder (see :func:`find_cifar10`; None: the environment variable or the default places).
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).

    Returns:
        ``(images (N, 3, 32, 32) uint8 levels in [0, 255], labels (N,) int64 in 0..9, description)``.

    Raises:
        CIFAR10Error: missing data, an unknown split, a batch that is not a CIFAR-10 batch (a pickle naming anything
            but arrays is refused unrun), truncated or corrupt files, a picture that is not 32×32 or cannot be
            decoded (each named).
    """
    if split not in CIFAR10_SPLITS:
        raise CIFAR10Error(f"CIFAR-10 has the splits {CIFAR10_SPLITS}, not {split!r}.")
    root = find_cifar10(root)
    batches = _batch_folder(root)
    if batches is not None:
        missing = [f for f in BATCH_FILES[split] if not (batches / f).is_file()]
        if missing:
            raise CIFAR10Error(f"{batches} lacks {', '.join(missing)} of the {split} split. {_WHERE}")
        parts = [_read_batch(batches / f) for f in BATCH_FILES[split]]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        how = f"torchvision's python batches in {batches}"
    else:
        folder = root / split
        if not folder.is_dir():
            raise CIFAR10Error(f"{root} has no {split}/ folder. {_WHERE}")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        unknown = sorted(set(classes) - set(CIFAR10_CLASSES))
        if unknown or not classes:
            raise CIFAR10Error(f"{folder} should hold one folder per class ({', '.join(CIFAR10_CLASSES)}); found "
                               f"{', '.join(unknown) or 'none'}.")
        files = [(CIFAR10_CLASSES.index(c), p) for c in classes for p in sorted((folder / c).iterdir())
                 if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise CIFAR10Error(f"{folder} holds no pictures.")
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            images = np.stack(list(pool.map(_read_png, [p for _, p in files]))).transpose(0, 3, 1, 2)
        labels = np.array([c for c, _ in files], dtype=np.int64)
        how = f"the image folder {folder} (sorted paths)"
    desc = f"CIFAR-10 {split} split, {len(images):,} images, from {how}"
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), desc


def load_cifar10(root: str | Path | None = None) -> TrainingData:
    """CIFAR-10 for training: the 50,000 training images, and the 10,000 test images held out (the benchmark's
    split), 256 levels, data range [-1, 1].

    Raises:
        CIFAR10Error: as :func:`load_cifar10_split`.
    """
    train, _, train_desc = load_cifar10_split(root, "train")
    test, _, test_desc = load_cifar10_split(root, "test")
    return TrainingData("cifar10", train, test, (3, 32, 32), 256, (-1.0, 1.0),
                        f"{test_desc}; training on the {train_desc.split(', ', 1)[1]}")
