"""The data sets' common form, and the small ones: sklearn digits, 2-D toys, an image folder.

Every loader returns a :class:`TrainingData`: the training and held-out items plus what a pipeline needs to know
about them (shape, levels, range). Image data are kept as integer levels ``(N, C, H, W)`` in [0, K) and dequantized
afresh at every training step (:func:`scorezoo.dequantization.uniform_dequantize`), as the MLE paper does for
likelihood training; 2-D toys are continuous ``(N, 2)`` points (``num_levels=None``).

Held-out split of a list of N items (digits, image folders): item ``i`` is held out when ``i % 6 == 0``, the rest
train (the split of the digits results in the zoo cards: 300 held out, 1497 train).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import load_image

__all__ = ["TrainingData", "TOY_DATASETS", "IMAGE_EXTENSIONS", "heldout_mask", "load_digits", "sample_toy",
           "load_toy", "load_image_folder"]

#: file suffixes an image folder is read from
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TOY_DATASETS = ("checkerboard", "8gaussians", "moons")


@dataclass
class TrainingData:
    """A data set ready for training.

    Attributes:
        name: data set name (``"digits"``, ``"checkerboard"``, ...).
        train: ``(N, *S)``: integer levels in [0, K) for images (uint8 for photo patches, CIFAR-10 and image folders
            of up to 256 levels, int64 otherwise), float points for continuous data; or an object that is indexed
            like such a tensor (``train[indices] -> (n, *S)``, ``len(train)``), such as the random crops of
            :class:`scorezoo.datasets.photos.PhotoCrops`.
        eval: ``(M, *S)``, the held-out split, same kind.
        data_shape: ``S``, e.g. ``(1, 8, 8)`` or ``(2,)``.
        num_levels: K for integer data, ``None`` for continuous data.
        data_range: ``(lo, hi)`` of the model's data space.
        eval_split: one line describing the held-out split.
    """

    name: str
    train: Any
    eval: torch.Tensor
    data_shape: tuple[int, ...]
    num_levels: int | None
    data_range: tuple[float, float]
    eval_split: str

    def eval_subset(self, num_samples: int | None) -> torch.Tensor:
        """``(n, *S)``: ``num_samples`` items of the held-out split spread evenly over it (indices
        ``round(linspace(0, M - 1, n))``, in order), so that a split stored in raster order (the tiles of the held-out
        photos) is covered end to end, not one corner of its first photo; the whole split when ``num_samples`` is
        None or at least ``M``.

        Raises:
            ValueError: ``num_samples`` < 1.
        """
        m = len(self.eval)
        if num_samples is None or int(num_samples) >= m:
            return self.eval
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1 (or None for the whole split), got {num_samples!r}.")
        return self.eval[torch.linspace(0, m - 1, int(num_samples), dtype=torch.float64).round().long()]


def heldout_mask(n: int) -> np.ndarray:
    """``(n,)`` bool, True for the held-out items: index ``i`` with ``i % 6 == 0``."""
    return np.arange(n) % 6 == 0


def load_digits() -> TrainingData:
    """sklearn's 8x8 handwritten digits (1797 images, 17 levels 0..16), split by :func:`heldout_mask`.

    Raises:
        ImportError: scikit-learn (a dependency of scorezoo) is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:
        raise ImportError("the digits data set needs scikit-learn, a dependency of scorezoo: pip install "
                          "scikit-learn.") from e
    images = torch.from_numpy(_load().images.astype(np.int64))[:, None]  # (1797, 1, 8, 8), levels 0..16
    mask = torch.from_numpy(heldout_mask(len(images)))
    return TrainingData("digits", images[~mask], images[mask], (1, 8, 8), 17, (-1.0, 1.0),
                        "sklearn digits, images with index i % 6 == 0 (300 of 1797); train on the other 1497")


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points ``(n, 2)`` float32 of a 2-D toy density, scaled to roughly [-2, 2]^2.

    * ``"checkerboard"``: uniform on the 8 black squares of a 4x4 board on [-2, 2]^2 (FFJORD's toy, halved);
    * ``"8gaussians"``: 8 Gaussians (std 0.1) evenly spaced on the circle of radius 1.5;
    * ``"moons"``: two interleaving half circles plus Gaussian noise (std 0.05), centred, times 1.2.

    Raises:
        ValueError: unknown name or ``n < 1``.
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown 2-D data set {name!r}; choose one of {TOY_DATASETS}.")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    g = generator
    if name == "checkerboard":
        # columns -2..2 in steps of 1; the row of the square alternates with the column's parity
        x1 = torch.rand(n, generator=g) * 4 - 2
        x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g) * 2.0
        x2 = x2 + (torch.floor(x1) % 2)
        return torch.stack([x1, x2], 1)
    if name == "8gaussians":
        k = torch.randint(0, 8, (n,), generator=g).float()
        centres = 1.5 * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1)
        return centres + 0.1 * torch.randn(n, 2, generator=g)
    k = torch.randint(0, 2, (n,), generator=g)
    a = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([torch.cos(a), torch.sin(a)], 1)
    lower = torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1)
    pts = torch.where(k[:, None] == 0, upper, lower) + 0.05 * torch.randn(n, 2, generator=g)
    return (pts - torch.tensor([0.5, 0.25])) * 1.2


def load_toy(name: str, num_train: int = 50_000, num_eval: int = 5_000, seed: int = 0) -> TrainingData:
    """A fixed sample of a 2-D toy (:func:`sample_toy`): ``num_train`` points drawn with ``seed`` and
    ``num_eval`` held-out points drawn with ``seed + 1``."""
    train = sample_toy(name, num_train, torch.Generator().manual_seed(seed))
    ev = sample_toy(name, num_eval, torch.Generator().manual_seed(seed + 1))
    return TrainingData(name, train, ev, (2,), None, (-2.0, 2.0),
                        f"{num_eval} fresh points drawn with seed {seed + 1} (train: {num_train} with seed {seed})")


def load_image_folder(root: str | Path, *, data_shape: tuple[int, int, int], num_levels: int = 256) -> TrainingData:
    """Every picture under ``root`` (recursively, sorted by path), converted by :func:`scorezoo.data.load_image`
    to ``data_shape = (C, H, W)`` and ``num_levels`` levels; split by :func:`heldout_mask`.

    Raises:
        ValueError: ``root`` is not a folder, holds no pictures or fewer than 2, or a picture cannot be read
            (the message names the file).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist or is not a folder.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise ValueError(f"image folder {str(root)!r} holds {len(files)} picture(s) with a suffix in "
                         f"{IMAGE_EXTENSIONS}; need at least 2 (one to train on, one to hold out).")
    # one byte per value where the levels fit: a large folder (ImageNet 32: 1.28 M pictures) fits in memory
    dtype = torch.uint8 if num_levels <= 256 else torch.long
    levels = torch.stack([load_image(p, data_shape=data_shape, num_levels=num_levels).levels.to(dtype) for p in files])
    mask = torch.from_numpy(heldout_mask(len(files)))
    return TrainingData("image_folder", levels[~mask], levels[mask], tuple(data_shape), num_levels, (-1.0, 1.0),
                        f"files of {root} sorted by path, index i % 6 == 0 ({int(mask.sum())} of {len(files)})")
