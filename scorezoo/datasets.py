"""Training data sets: sklearn digits, 2-D toys, patches of photographs, an image folder and CIFAR-10.

Every loader returns a :class:`TrainingData`: the training and held-out tensors plus what a pipeline needs to
know about them (shape, levels, range). Image data are kept as integer levels ``(N, C, H, W)`` in [0, K) and
dequantized afresh at every training step (:func:`scorezoo.dequantization.uniform_dequantize`), as the MLE
paper does for likelihood training; 2-D toys are continuous ``(N, 2)`` points (``num_levels=None``).

Held-out split of a list of N items (digits, image folders): item ``i`` is held out when ``i % 6 == 0``,
the rest train (the split of the digits results in the zoo cards: 300 held out, 1497 train). Photographs
(:data:`PHOTOS`) are split by whole photo, never by patch: the held-out scenes contribute no pixel to training.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import load_image

__all__ = ["TrainingData", "DATASETS", "TOY_DATASETS", "load_dataset", "load_digits", "sample_toy",
           "load_image_folder", "load_cifar10", "heldout_mask", "IMAGE_EXTENSIONS", "Photo", "PHOTOS", "load_photo",
           "extract_patches", "load_photo_patches"]

#: file suffixes an image folder is read from
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TOY_DATASETS = ("checkerboard", "8gaussians", "moons")
DATASETS = ("digits", *TOY_DATASETS, "photo_patches", "image_folder", "cifar10")


@dataclass
class TrainingData:
    """A data set ready for training.

    Attributes:
        name: data set name (``"digits"``, ``"checkerboard"``, ...).
        train: ``(N, *S)``: integer levels in [0, K) for images (uint8 for photo patches and image folders of up to
            256 levels, int64 otherwise), float points for continuous data.
        eval: ``(M, *S)``, the held-out split, same kind.
        data_shape: ``S``, e.g. ``(1, 8, 8)`` or ``(2,)``.
        num_levels: K for integer data, ``None`` for continuous data.
        data_range: ``(lo, hi)`` of the model's data space.
        eval_split: one line describing the held-out split.
    """

    name: str
    train: torch.Tensor
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


@dataclass(frozen=True)
class Photo:
    """A photograph that ships inside an installed package (so that training and tests run offline).

    Attributes:
        name: short name (``"astronaut"``).
        package: the package whose files hold it (``"skimage"`` or ``"sklearn.datasets"``).
        file: its path inside that package.
        license: the licence stated by the package.
        split: ``"train"`` or ``"heldout"`` (whole photos are held out).
    """

    name: str
    package: str
    file: str
    license: str
    split: str


#: the RGB photographs of scikit-image's and scikit-learn's wheels and their licences as those packages state them.
#: scikit-image's ``retina.jpg`` is left out: a fundus photograph whose black surround would be a fifth of all patches.
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage", "data/astronaut.png", "public domain (NASA)", "train"),
    Photo("rocket", "skimage", "data/rocket.jpg", "public domain (SpaceX)", "train"),
    Photo("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", "public domain (NASA)", "train"),
    Photo("immunohistochemistry", "skimage", "data/ihc.png", "no known copyright restrictions (CMMI)", "train"),
    Photo("motorcycle_left", "skimage", "data/motorcycle_left.png",
          "Middlebury 2014 stereo benchmark (Scharstein et al.), as distributed with scikit-image", "train"),
    Photo("motorcycle_right", "skimage", "data/motorcycle_right.png",
          "Middlebury 2014 stereo benchmark (Scharstein et al.), as distributed with scikit-image", "train"),
    Photo("flower", "sklearn.datasets", "images/flower.jpg", "CC BY 2.0 (vultilion on Flickr)", "train"),
    Photo("chelsea", "skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)", "heldout"),
    Photo("coffee", "skimage", "data/coffee.png", "CC0 (Rachel Michetti)", "heldout"),
    Photo("china", "sklearn.datasets", "images/china.jpg", "CC BY 2.0 (danielbuechele on Flickr)", "heldout"),
)


def photo_path(name: str) -> Path:
    """The file of the photo ``name`` of :data:`PHOTOS` inside its installed package.

    Raises:
        ValueError: unknown name.
        ImportError: the package that holds it is not installed (scikit-image: ``pip install 'scorezoo[train]'``).
    """
    import importlib.resources

    photo = next((p for p in PHOTOS if p.name == name), None)
    if photo is None:
        raise ValueError(f"unknown photo {name!r}; choose one of {[p.name for p in PHOTOS]}.")
    try:
        root = importlib.resources.files(photo.package)
    except ModuleNotFoundError as e:
        dist = "scikit-image" if photo.package == "skimage" else "scikit-learn"
        raise ImportError(f"the photo {name!r} ships with {dist}: pip install {dist} (or 'scorezoo[train]').") from e
    return Path(str(root.joinpath(photo.file)))


def load_photo(name: str) -> np.ndarray:
    """The photo ``name`` of :data:`PHOTOS` as ``(H, W, 3)`` uint8 RGB."""
    from PIL import Image

    with Image.open(photo_path(name)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def extract_patches(image: np.ndarray, patch_size: int, stride: int, scales: tuple[int, ...] = (1,),
                    flips: bool = False) -> torch.Tensor:
    """Square patches of one photo, at its own resolution and at integer downscales.

    Args:
        image: ``(H, W, C)`` uint8.
        patch_size: side P of a patch, pixels.
        stride: step between patch corners, pixels (``stride = patch_size``: non-overlapping tiles; the
            remainder strips at the right and bottom that hold no whole patch are not used).
        scales: integer downscale factors; factor ``s`` averages ``s × s`` blocks (a box filter, rounded to the
            nearest level) before the patches are cut.
        flips: also add every patch mirrored left to right.

    Returns:
        ``(N, C, P, P)`` uint8 patches, in raster order per scale.

    Raises:
        ValueError: a patch size, stride or scale below 1, or a photo smaller than one patch at every scale.
    """
    if patch_size < 1 or stride < 1 or not scales or min(scales) < 1:
        raise ValueError(f"need patch_size, stride and scales >= 1, got {patch_size}, {stride}, {scales}.")
    out = []
    for s in scales:
        h, w = image.shape[0] // s, image.shape[1] // s
        a = image[:h * s, :w * s].reshape(h, s, w, s, -1).mean((1, 3)) if s > 1 else image
        a = torch.from_numpy(np.rint(a).astype(np.uint8)).permute(2, 0, 1)
        if h < patch_size or w < patch_size:
            continue
        tiles = a.unfold(1, patch_size, stride).unfold(2, patch_size, stride)  # (C, nh, nw, P, P)
        out.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, a.shape[0], patch_size, patch_size))
    if not out:
        raise ValueError(f"the photo ({image.shape[0]}×{image.shape[1]}) is smaller than one {patch_size}-pixel "
                         f"patch at every scale {scales}.")
    patches = torch.cat(out)
    if flips:
        patches = torch.cat([patches, patches.flip(-1)])
    return patches.contiguous()


def load_photo_patches(patch_size: int = 16, stride: int = 8, scales: tuple[int, ...] | list[int] = (1, 2),
                       flips: bool = True) -> TrainingData:
    """RGB patches of the photographs in :data:`PHOTOS`, 256 levels, split by whole photo.

    Training: patches of the ``"train"`` photos with ``stride``, ``scales`` and ``flips``. Held out: the
    non-overlapping ``patch_size`` tiles of the ``"heldout"`` photos at their own resolution (no flips, no
    downscale), the pixels that :meth:`scorezoo.pipeline.ScorePipeline.bits_per_dim` scores when it tiles them.

    Raises:
        ImportError: scikit-image or scikit-learn is not installed.
        ValueError: bad patch size, stride or scales.
    """
    scales = tuple(int(s) for s in scales)
    train = torch.cat([extract_patches(load_photo(p.name), patch_size, stride, scales, flips)
                       for p in PHOTOS if p.split == "train"])
    heldout = [p.name for p in PHOTOS if p.split == "heldout"]
    ev = torch.cat([extract_patches(load_photo(n), patch_size, patch_size) for n in heldout])
    return TrainingData("photo_patches", train, ev, (3, patch_size, patch_size), 256, (-1.0, 1.0),
                        f"non-overlapping {patch_size}×{patch_size} tiles of the held-out photos {', '.join(heldout)} "
                        f"({len(ev)} patches); no pixel of them is trained on")


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


def load_cifar10(root: str | Path) -> TrainingData:
    """CIFAR-10 (32x32x3, 256 levels) through ``torchvision.datasets.CIFAR10(root, download=False)``: train on
    the 50k training images, hold out the 10k test images. Nothing is downloaded: fetch it where there is
    network with ``torchvision.datasets.CIFAR10(root, download=True)`` and copy ``root``.

    Raises:
        ImportError: torchvision is not installed.
        ValueError: ``root`` does not hold the CIFAR-10 python batches.
    """
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as e:
        raise ImportError("the cifar10 data set needs torchvision (pip install torchvision), and the data "
                          "downloaded beforehand with torchvision.datasets.CIFAR10(root, download=True).") from e
    try:
        tr, te = (CIFAR10(str(root), train=flag, download=False) for flag in (True, False))
    except (RuntimeError, OSError, pickle.UnpicklingError) as e:
        raise ValueError(f"no readable CIFAR-10 under {str(root)!r} ({e}); download it where there is network "
                         "with torchvision.datasets.CIFAR10(root, download=True).") from None

    def levels(ds) -> torch.Tensor:
        return torch.from_numpy(np.asarray(ds.data, dtype=np.int64)).permute(0, 3, 1, 2).contiguous()

    return TrainingData("cifar10", levels(tr), levels(te), (3, 32, 32), 256, (-1.0, 1.0), "the CIFAR-10 test set")


def load_dataset(name: str, *, data_dir: str | None = None, data_shape: tuple[int, ...] | None = None,
                 num_levels: int | None = None, seed: int = 0, options: dict | None = None) -> TrainingData:
    """Load a training data set by name (one of :data:`DATASETS`).

    Args:
        name: ``"digits"``, ``"checkerboard"``, ``"8gaussians"``, ``"moons"``, ``"image_folder"`` or ``"cifar10"``.
        data_dir: the folder of ``image_folder`` and ``cifar10``.
        data_shape: ``(C, H, W)`` for ``image_folder``.
        num_levels: levels for ``image_folder`` (default 256).
        seed: seed of the 2-D toys' fixed sample.
        options: keyword arguments of the loader (``photo_patches``: ``patch_size``, ``stride``, ``scales``,
            ``flips``; see :func:`load_photo_patches`).

    Raises:
        ValueError: unknown name, a missing ``data_dir``/``data_shape``, or unreadable data.
    """
    if options and name != "photo_patches":
        raise ValueError(f"the {name} data set takes no options, got {sorted(options)}.")
    if name == "digits":
        return load_digits()
    if name == "photo_patches":
        try:
            return load_photo_patches(**(options or {}))
        except TypeError as e:
            raise ValueError(f"photo_patches options: {e}") from None
    if name in TOY_DATASETS:
        return load_toy(name, seed=seed)
    if name in ("image_folder", "cifar10"):
        if not data_dir:
            raise ValueError(f"the {name} data set needs data_dir (the folder holding it).")
        if name == "cifar10":
            return load_cifar10(data_dir)
        if data_shape is None or len(data_shape) != 3:
            raise ValueError(f"image_folder needs data_shape = [C, H, W], got {data_shape}.")
        return load_image_folder(data_dir, data_shape=tuple(int(v) for v in data_shape), num_levels=num_levels or 256)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")
