"""What ``scorezoo eval`` scores: a data set named by a small spec, as a numbered list of images.

Specs (one or more; several are concatenated in the order given, and must all be pictures or all one data set):

==================  ========================================================================================
``digits``          sklearn's 8×8 digits, the held-out split (index ``i % 6 == 0``: 300 images, 17 levels)
``photo-patches``   the held-out non-overlapping P×P tiles of :func:`scorezoo.datasets.load_photo_patches`
                    (P = the model's size; 2469 tiles of chelsea, coffee and china at P = 16)
``cifar10``         CIFAR-10's test split (10,000 images; ``split="train"``: the 50,000 training images), read
                    by :mod:`scorezoo.datasets.cifar10` from ``$SCOREZOO_CIFAR10`` or the default places
``cifar10:ROOT``    the same from the folder ``ROOT`` (torchvision's ``cifar-10-batches-py`` or an image-folder
                    tree ``train|test/<class>/*.png``)
``PATH``            a picture file, or every picture under a folder (recursively, sorted by path; the suffixes
                    of :data:`scorezoo.datasets.IMAGE_EXTENSIONS`), each resized to the model by
                    :func:`scorezoo.data.load_image` (the transform of ``scorezoo bpd``); one smaller than the
                    model is refused, as ``scorezoo bpd`` refuses it (a failure of its own, not an upscale)
``@LIST``           the picture files named in the text file ``LIST``, one per line (relative to its folder;
                    blank lines and lines starting with ``#`` skipped)
``photos``          the photos of :data:`scorezoo.datasets.PHOTOS` the model never saw, each scored whole, tile by tile
                    at its own resolution (``tile=True``): one result per photo
``photos:PATH``     pictures (a file, a folder or ``@LIST``) scored tile by tile, one result per picture
==================  ========================================================================================

Image ``i`` of the list is the same image on every process and in every run, which is what lets results be
split across processes and resumed by index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..datasets.cifar10 import CIFAR10Error

__all__ = ["EvalData", "load_eval_data", "first_picture", "NAMED_DATA"]

#: the specs that name a data set rather than files
NAMED_DATA = ("digits", "photo-patches", "cifar10", "cifar10:ROOT", "photos")


@dataclass
class EvalData:
    """A numbered list of images to score.

    Attributes:
        spec: the specs as given, joined by spaces.
        description: one line: what the images are and how they are read.
        sources: per image, where it comes from (``digits[6]``, a file path, ``photo-patches[12]``).
        levels: ``(N, C, H, W)`` long levels in [0, num_levels) for a named data set of tensors, else ``None``.
        paths: per image, its file, for pictures; else ``None``.
        tile: pictures scored tile by tile at their own resolution (one result per picture).
        data_shape: ``(C, H, W)`` of ``levels``, else ``None`` (pictures are converted to the model's shape).
        num_levels: levels of ``levels``, else ``None``.
    """

    spec: str
    description: str
    sources: list[str]
    levels: torch.Tensor | None = None
    paths: list[str] | None = None
    tile: bool = False
    data_shape: tuple[int, int, int] | None = None
    num_levels: int | None = None

    def __len__(self) -> int:
        return len(self.sources)

    def take(self, n: int) -> "EvalData":
        """The first ``n`` images (``--limit``)."""
        return self._subset(list(range(min(n, len(self)))), self.description)

    def sample(self, n: int, seed: int) -> "EvalData":
        """A uniform random sample of ``n`` of the images without replacement (``--sample``), in the data's order:
        the first ``n`` of a permutation drawn with ``torch.Generator().manual_seed(seed)``, so the same ``n`` and
        ``seed`` give the same images on every machine and process. Its mean bits/dim estimates the whole data's
        (an unbiased estimate, with the standard error of a sample mean); ``n`` at least the data's size takes all.
        """
        if n >= len(self):
            return self
        pick = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
        return self._subset(pick, f"{self.description}; a uniform random sample of {n:,} of its {len(self):,} "
                                  f"images (seed {seed})")

    def _subset(self, idx: list[int], description: str) -> "EvalData":
        return EvalData(self.spec, description, [self.sources[i] for i in idx],
                        None if self.levels is None else self.levels[idx],
                        None if self.paths is None else [self.paths[i] for i in idx], self.tile, self.data_shape,
                        self.num_levels)


def _pictures(spec: str) -> list[Path]:
    """The files named by a picture spec: a file, a folder (recursive), or ``@LIST``."""
    from ..datasets import IMAGE_EXTENSIONS

    if spec.startswith("@"):
        listing = Path(spec[1:]).expanduser()
        try:
            lines = listing.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--data {spec}: cannot read the list {listing}: {e}") from None
        names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        # listed files that are missing stay in the list: they are reported as failures, by index
        return [p if p.is_absolute() else listing.parent / p for p in map(Path, names)]
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"--data {spec}: the folder holds no pictures (suffixes {', '.join(IMAGE_EXTENSIONS)}).")
        return files
    if path.exists():
        return [path]
    raise ValueError(f"--data {spec}: no such file or folder, and not one of {', '.join(NAMED_DATA)}, "
                     "photos:PATH or @LIST.")


def first_picture(specs: Sequence[str]) -> Path | None:
    """The first picture file the picture specs name (``None`` for a named data set), to choose a model by.

    Raises:
        ValueError: as :func:`load_eval_data` for a missing file, folder or list.
    """
    for spec in specs:
        if spec in ("digits", "photo-patches", "photos", "cifar10") or spec.startswith("cifar10:"):
            return None
        files = _pictures(spec.split(":", 1)[1] if spec.startswith("photos:") else spec)
        if files:
            return Path(files[0])
    return None


def _named(spec: str, data_shape: tuple[int, ...], split: str) -> EvalData:
    from .. import datasets

    if spec == "digits":
        d = datasets.load_digits()
        sources = [f"digits[{6 * i}]" for i in range(len(d.eval))]
    elif spec == "photo-patches":
        size = data_shape[-1]
        # stride = size, one scale, no flips: the held-out tiles are the same, the unused training part is smaller
        d = datasets.load_photo_patches(patch_size=size, stride=size, scales=(1,), flips=False)
        sources = [f"photo-patches[{i}]" for i in range(len(d.eval))]
    else:  # cifar10, cifar10:ROOT
        root = spec.split(":", 1)[1] if ":" in spec else None
        images, _, desc = datasets.load_cifar10_split(root, split)
        return EvalData(spec, desc, [f"cifar10-{split}[{i}]" for i in range(len(images))], levels=images.long(),
                        data_shape=(3, 32, 32), num_levels=256)
    return EvalData(spec, d.eval_split, sources, levels=d.eval.long(), data_shape=tuple(d.data_shape),
                    num_levels=d.num_levels)


def load_eval_data(specs: str | Sequence[str], *, data_shape: Sequence[int], num_levels: int,
                   split: str = "test", trained_on: str | None = None) -> EvalData:
    """The images named by ``specs`` (see the module docstring), checked against a model of ``data_shape`` and
    ``num_levels``, before any work starts.

    Args:
        specs: one spec or several (pictures only, when several).
        data_shape: the model's ``(C, H, W)``.
        num_levels: the model's levels K.
        split: the split of a data set that has several (CIFAR-10: ``"test"`` or ``"train"``).
        trained_on: the model's training data set (its config's ``dataset``): ``photos`` are the photos of
            :data:`~scorezoo.datasets.PHOTOS` it never saw (:func:`scorezoo.datasets.unseen_photos`).

    Returns:
        :class:`EvalData`; pictures are not opened here (an unreadable one is a failure of its own, by index).

    Raises:
        ValueError: an unknown spec, a missing file or folder, an empty folder, several specs that mix a named
            data set with others, a data set the model does not fit (shape or levels), or a missing optional
            package (scikit-learn or scikit-image for the digits and photos); missing or damaged CIFAR-10
            (:class:`scorezoo.datasets.CIFAR10Error`, one line on the formats and where to get it).
    """
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise ValueError("--data: give a data set (digits, photo-patches, cifar10, cifar10:ROOT, photos) or pictures.")
    data_shape = tuple(int(v) for v in data_shape)
    if len(data_shape) != 3:
        raise ValueError(f"the model takes data of shape {data_shape}, not pictures: scorezoo eval scores images.")
    named = [s for s in specs if s in ("digits", "photo-patches", "cifar10") or s.startswith("cifar10:")]
    if split != "test" and not all(s == "cifar10" or s.startswith("cifar10:") for s in specs):
        raise ValueError(f"--split {split}: only CIFAR-10 has splits to choose (--data cifar10).")
    if named:
        if len(specs) > 1:
            raise ValueError(f"--data {named[0]} is a whole data set: give it alone (got {' '.join(specs)}).")
        try:
            data = _named(named[0], data_shape, split)
        except (ImportError, CIFAR10Error) as e:
            raise ValueError(f"--data {named[0]}: {e}") from None
        if (data.data_shape, data.num_levels) != (data_shape, num_levels):
            c, h, w = data.data_shape
            mc, mh, mw = data_shape
            raise ValueError(f"the model does not fit --data {named[0]}: its images are {h}×{w}×{c} with "
                             f"{data.num_levels} levels, the model takes {mh}×{mw}×{mc} with {num_levels}; choose a "
                             f"model of these images (scorezoo list).")
        return data
    tiled = [s.startswith("photos") and (s == "photos" or s.startswith("photos:")) for s in specs]
    if any(tiled) and not all(tiled):
        raise ValueError(f"--data mixes tiled photos (photos, photos:PATH) with pictures to resize: run them "
                         f"separately (got {' '.join(specs)}).")
    paths: list[Path] = []
    for spec in specs:
        if spec == "photos":
            from ..datasets import photo_path, unseen_photos

            try:
                paths += [photo_path(p.name) for p in unseen_photos(trained_on)]
            except ImportError as e:
                raise ValueError(f"--data photos: {e}") from None
        else:
            paths += _pictures(spec.split(":", 1)[1] if spec.startswith("photos:") else spec)
    shown = [str(p) for p in paths]
    how = ("each scored whole, tile by tile at its own resolution (remainder strips cropped)" if all(tiled) else
           f"each converted by scorezoo.data.load_image to {data_shape[1]}×{data_shape[2]}×{data_shape[0]}, "
           f"{num_levels} levels")
    return EvalData(" ".join(specs), f"{len(paths)} picture(s) from {' '.join(specs)}, {how}", shown,
                    paths=shown, tile=all(tiled))
