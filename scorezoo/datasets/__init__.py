"""Training data sets: sklearn digits, 2-D toys, photographs (patches of the bundled ones, a folder of photos), an
image folder and CIFAR-10, by name (:func:`load_dataset`).

Every loader returns a :class:`TrainingData`: the training and held-out items plus what a pipeline needs to know
about them. The modules: :mod:`~scorezoo.datasets.core` (the common form, digits, toys, image folders),
:mod:`~scorezoo.datasets.photos` and :mod:`~scorezoo.datasets.cifar10`.
"""

from __future__ import annotations

from .cifar10 import CIFAR10_ENV, CIFAR10Error, find_cifar10, load_cifar10, load_cifar10_split
from .core import (IMAGE_EXTENSIONS, TOY_DATASETS, TrainingData, heldout_mask, load_digits, load_image_folder,
                   load_toy, sample_toy)
from .photos import (PHOTOS, Photo, PhotoCrops, extract_patches, load_photo, load_photo_folder, load_photo_patches,
                     photo_path, unseen_photos)

__all__ = ["TrainingData", "DATASETS", "TOY_DATASETS", "load_dataset", "load_digits", "sample_toy", "load_toy",
           "load_image_folder", "load_cifar10", "load_cifar10_split", "find_cifar10", "CIFAR10Error", "CIFAR10_ENV",
           "heldout_mask", "IMAGE_EXTENSIONS", "Photo", "PHOTOS", "photo_path", "unseen_photos", "load_photo",
           "extract_patches", "load_photo_patches", "PhotoCrops", "load_photo_folder"]

DATASETS = ("digits", *TOY_DATASETS, "photo_patches", "photo_folder", "image_folder", "cifar10")
#: the data sets that take ``options`` (keyword arguments of their loader)
_OPTIONS = {"photo_patches": load_photo_patches, "photo_folder": load_photo_folder}


def load_dataset(name: str, *, data_dir: str | None = None, data_shape: tuple[int, ...] | None = None,
                 num_levels: int | None = None, seed: int = 0, options: dict | None = None) -> TrainingData:
    """Load a training data set by name (one of :data:`DATASETS`).

    Args:
        name: ``"digits"``, ``"checkerboard"``, ``"8gaussians"``, ``"moons"``, ``"photo_patches"``,
            ``"photo_folder"``, ``"image_folder"`` or ``"cifar10"``.
        data_dir: the folder of ``photo_folder``, ``image_folder`` and ``cifar10`` (for CIFAR-10, None looks in
            ``$SCOREZOO_CIFAR10`` and the default places, :func:`~scorezoo.datasets.cifar10.find_cifar10`).
        data_shape: ``(C, H, W)`` for ``image_folder``.
        num_levels: levels for ``image_folder`` (default 256).
        seed: seed of the 2-D toys' fixed sample and of the photo folder's crops.
        options: keyword arguments of the loader (``photo_patches``: ``patch_size``, ``stride``, ``scales``,
            ``flips``, see :func:`load_photo_patches`; ``photo_folder``: ``crop_size``, ``scales``,
            ``heldout_every``, ``heldout_crop``, ``num_crops``, see :func:`load_photo_folder`).

    Raises:
        ValueError: unknown name, a missing ``data_dir``/``data_shape``, unknown options, or unreadable data
            (:class:`CIFAR10Error` for CIFAR-10).
    """
    if options and name not in _OPTIONS:
        raise ValueError(f"the {name} data set takes no options, got {sorted(options)}.")
    if name == "digits":
        return load_digits()
    if name in TOY_DATASETS:
        return load_toy(name, seed=seed)
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name in ("image_folder", "photo_folder") and not data_dir:
        raise ValueError(f"the {name} data set needs data_dir (the folder holding it).")
    if name in _OPTIONS:
        kwargs = dict(options or {})
        if name == "photo_folder":
            kwargs = {"root": data_dir, "seed": seed, **kwargs}
        try:
            return _OPTIONS[name](**kwargs)
        except TypeError as e:
            raise ValueError(f"{name} options: {e}") from None
    if name == "image_folder":
        if data_shape is None or len(data_shape) != 3:
            raise ValueError(f"image_folder needs data_shape = [C, H, W], got {data_shape}.")
        return load_image_folder(data_dir, data_shape=tuple(int(v) for v in data_shape), num_levels=num_levels or 256)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")
