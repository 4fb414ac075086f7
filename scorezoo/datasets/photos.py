"""Photographs: the held-out photos that ship with scikit-image and scikit-learn, their patches, and a folder of
photos to train on with random crops.

Photographs are split by whole photo, never by patch: the held-out scenes contribute no pixel to training.

* ``photo_patches`` (:func:`load_photo_patches`): fixed patches of the training photos of :data:`PHOTOS`; the
  16×16 model ``vp-mle-photo16`` was trained on them.
* ``photo_folder`` (:func:`load_photo_folder`): a folder of photographs (such as the 49 of ``../shared/data/photos``),
  every ``heldout_every``-th file (sorted by name) held out for validation; training items are random crops at 1×
  and box-downscaled sizes, fixed by the seed (:class:`PhotoCrops`), so that a run is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .core import IMAGE_EXTENSIONS, TrainingData

__all__ = ["Photo", "PHOTOS", "photo_path", "unseen_photos", "load_photo", "downscale", "extract_patches",
           "load_photo_patches", "list_photos", "PhotoCrops", "load_photo_folder", "heldout_photo"]


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


def unseen_photos(trained_on: str | None = None) -> list[Photo]:
    """The photos of :data:`PHOTOS` that a model trained on the data set ``trained_on`` never saw, in order: all of
    them for a model of a photo folder (``photo_folder``, such as ``vp-mle-photo-fcn``: the photos of scikit-image
    and scikit-learn are its test set), else the ``"heldout"`` split (``photo_patches`` was cut from the others)."""
    if trained_on == "photo_folder":
        return list(PHOTOS)
    return [p for p in PHOTOS if p.split == "heldout"]


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
        a = torch.from_numpy(downscale(image, s)).permute(2, 0, 1)
        if a.shape[1] < patch_size or a.shape[2] < patch_size:
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


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``(H // s, W // s, C)`` uint8: ``image`` ``(H, W, C)`` uint8 with every ``s × s`` block averaged (a box
    filter) and rounded to the nearest level; the remainder rows and columns are dropped. ``s = 1`` returns it as is.
    """
    s = int(factor)
    if s == 1:
        return image if image.flags.writeable else image.copy()
    h, w = image.shape[0] // s, image.shape[1] // s
    return np.rint(image[:h * s, :w * s].reshape(h, s, w, s, -1).mean((1, 3))).astype(np.uint8)


def list_photos(root: str | Path) -> list[Path]:
    """The pictures directly in folder ``root`` (suffixes :data:`~scorezoo.datasets.core.IMAGE_EXTENSIONS`), sorted
    by name.

    Raises:
        ValueError: ``root`` is not a folder or holds no pictures.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"photo folder {str(root)!r} does not exist or is not a folder.")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"photo folder {str(root)!r} holds no pictures (suffixes {', '.join(IMAGE_EXTENSIONS)}).")
    return files


def heldout_photo(index: int, heldout_every: int) -> bool:
    """Whether photo ``index`` (0-based, in name order) is held out: every ``heldout_every``-th one, i.e.
    ``index % heldout_every == heldout_every - 1`` (007, 014, ... of 001–049 for 7)."""
    return index % heldout_every == heldout_every - 1


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ValueError(f"cannot read the photo {path}: {e}") from None


class PhotoCrops:
    """Random square crops of photographs, fixed in advance by a seed: item ``i`` is always the same crop.

    The crops are drawn once, at construction, from ``numpy.random.default_rng(seed)``: for each item a (photo,
    scale) pair with probability proportional to the number of crop positions it has, then a position uniform
    over them. Indexing cuts them out, so ``len(crops)`` items cost ``3 × 2 bytes`` each in memory, not a crop.

    Args:
        images: ``(H_j, W_j, 3)`` uint8 arrays, one per (photo, scale).
        crop_size: side P of a crop, pixels.
        num_items: how many crops an epoch has.
        seed: the seed of the draw.
        sources: the files the images come from (kept as :attr:`sources`, the data set's training list).

    ``crops[indices]`` (a long tensor or a list) returns ``(n, 3, P, P)`` uint8.

    Raises:
        ValueError: no image is at least ``crop_size`` on each side, or ``num_items`` < 1.
    """

    def __init__(self, images: list[np.ndarray], crop_size: int, num_items: int, seed: int = 0,
                 sources: list[str] | None = None):
        self.sources = list(sources or [])
        self.images = [np.ascontiguousarray(a) for a in images if min(a.shape[:2]) >= crop_size]
        if not self.images:
            raise ValueError(f"no photo is at least {crop_size}×{crop_size} pixels.")
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}.")
        self.crop_size = int(crop_size)
        rng = np.random.default_rng(seed)
        positions = np.array([(a.shape[0] - crop_size + 1) * (a.shape[1] - crop_size + 1) for a in self.images],
                             dtype=np.float64)
        self.which = rng.choice(len(self.images), size=num_items, p=positions / positions.sum()).astype(np.int32)
        hmax = np.array([a.shape[0] - crop_size + 1 for a in self.images])[self.which]
        wmax = np.array([a.shape[1] - crop_size + 1 for a in self.images])[self.which]
        self.top = (rng.random(num_items) * hmax).astype(np.int32)
        self.left = (rng.random(num_items) * wmax).astype(np.int32)

    def __len__(self) -> int:
        return len(self.which)

    def __getitem__(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(indices).reshape(-1).tolist()
        p = self.crop_size
        out = np.empty((len(idx), p, p, 3), dtype=np.uint8)
        for k, i in enumerate(idx):
            y, x = self.top[i], self.left[i]
            out[k] = self.images[self.which[i]][y:y + p, x:x + p]
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_photo_folder(root: str | Path, crop_size: int = 64, scales: tuple[int, ...] | list[int] = (1, 2),
                      heldout_every: int = 7, heldout_crop: int = 512, num_crops: int = 1 << 20,
                      seed: int = 0) -> TrainingData:
    """A folder of photographs as a data set of ``crop_size`` crops, 256 levels, split by whole photo.

    Training: :class:`PhotoCrops` of the photos that are not held out, at every integer downscale in ``scales``
    (:func:`downscale`). Held out (:func:`heldout_photo`): the non-overlapping ``crop_size`` tiles, in raster order,
    of the central ``heldout_crop × heldout_crop`` square of each held-out photo at its own resolution (the whole
    photo when it is smaller), the validation split used to choose among runs.

    Raises:
        ValueError: not a folder, no pictures, an unreadable picture (named), bad sizes, or fewer than
            ``heldout_every`` pictures (nothing would be held out).
    """
    files = list_photos(root)
    crop_size, heldout_every, heldout_crop = int(crop_size), int(heldout_every), int(heldout_crop)
    scales = tuple(int(s) for s in scales)
    if crop_size < 1 or heldout_every < 2 or heldout_crop < crop_size or not scales or min(scales) < 1:
        raise ValueError(f"need crop_size >= 1, heldout_every >= 2, heldout_crop >= crop_size and scales >= 1, "
                         f"got {crop_size}, {heldout_every}, {heldout_crop}, {scales}.")
    if len(files) < heldout_every:
        raise ValueError(f"photo folder {str(root)!r} holds {len(files)} picture(s); with heldout_every="
                         f"{heldout_every} none would be held out: give at least {heldout_every}.")
    train, tiles, names, used = [], [], [], []
    for i, path in enumerate(files):
        image = _read_rgb(path)
        if heldout_photo(i, heldout_every):
            h, w = image.shape[:2]
            ch, cw = min(h, heldout_crop), min(w, heldout_crop)
            top, left = (h - ch) // 2, (w - cw) // 2
            tiles.append(extract_patches(image[top:top + ch, left:left + cw], crop_size, crop_size))
            names.append(path.name)
        else:
            train += [downscale(image, s) for s in scales]
            used.append(str(path))
    crops = PhotoCrops(train, crop_size, num_crops, seed, sources=used)
    return TrainingData("photo_folder", crops, torch.cat(tiles), (3, crop_size, crop_size), 256, (-1.0, 1.0),
                        f"non-overlapping {crop_size}×{crop_size} tiles of the central {heldout_crop}×{heldout_crop} "
                        f"of every {heldout_every}th photo of {root} ({', '.join(names)}: {sum(map(len, tiles))} "
                        f"tiles); training: random crops of the other {len(files) - len(names)} at scales {scales}")
