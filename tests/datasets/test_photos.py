"""A folder of photographs as a data set: the split by whole photo, the fixed random crops, the validation tiles."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo.datasets import PHOTOS, load_dataset, load_photo, load_photo_folder
from scorezoo.datasets.photos import PhotoCrops, downscale

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos"


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(9):
        h, w = 90 + 10 * i, 120
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i + 1:03d}.png")
    return tmp_path


def test_every_seventh_photo_is_held_out_and_tiled_from_its_centre(folder):
    data = load_photo_folder(folder, crop_size=16, scales=(1, 2), heldout_every=7, heldout_crop=64)
    assert data.name == "photo_folder" and data.data_shape == (3, 16, 16) and data.num_levels == 256
    assert "007.png" in data.eval_split and [Path(s).name for s in data.train.sources] == \
        ["001.png", "002.png", "003.png", "004.png", "005.png", "006.png", "008.png", "009.png"]
    held = np.array(Image.open(folder / "007.png"))  # 150 x 120: its central 64 x 64 starts at (43, 28)
    centre = held[43:107, 28:92]
    assert data.eval.shape == (16, 3, 16, 16)
    assert torch.equal(data.eval[5], torch.from_numpy(centre[16:32, 16:32]).permute(2, 0, 1))  # raster order


def test_crops_are_fixed_by_the_seed_and_cut_from_the_training_photos(folder):
    a = load_photo_folder(folder, crop_size=16, num_crops=500, seed=3)
    b = load_dataset("photo_folder", data_dir=str(folder), seed=3, options={"crop_size": 16, "num_crops": 500})
    idx = torch.tensor([0, 7, 499])
    assert torch.equal(a.train[idx], b.train[idx]) and len(a.train) == 500
    c = load_photo_folder(folder, crop_size=16, num_crops=500, seed=4)
    assert not torch.equal(a.train[idx], c.train[idx])
    crop = a.train[[7]][0].permute(1, 2, 0).numpy()
    k, y, x = int(a.train.which[7]), int(a.train.top[7]), int(a.train.left[7])
    assert np.array_equal(crop, a.train.images[k][y:y + 16, x:x + 16])


def test_crop_positions_cover_each_photo_in_proportion(folder):
    images = [np.zeros((40, 40, 3), np.uint8), np.zeros((20, 40, 3), np.uint8)]  # 25*25 and 5*25 positions
    crops = PhotoCrops(images, 16, 30_000, seed=0)
    frac = float((crops.which == 1).mean())
    assert abs(frac - 125 / 750) < 0.01  # binomial s.e. 0.002
    assert crops.top.max() <= 24 and crops.left.max() <= 24 and crops.top[crops.which == 1].max() <= 4


def test_downscale_is_a_rounded_box_filter():
    img = np.array([[[0], [1]], [[2], [4]]], dtype=np.uint8)  # mean 1.75
    assert downscale(img, 2).tolist() == [[[2]]] and downscale(img, 1) is img


def test_bad_folders(tmp_path, folder):
    with pytest.raises(ValueError, match="does not exist"):
        load_photo_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="none would be held out"):
        load_photo_folder(folder, heldout_every=10)
    (folder / "002.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read the photo .*002.png"):
        load_photo_folder(folder, crop_size=16)
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("photo_folder")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/photos is absent (a fresh clone has no shared data)")
def test_the_held_out_test_photos_are_not_in_the_training_list():
    """The photos that ship with scikit-image and scikit-learn are the test set: none of them, by content, is among
    the files the photo data set trains on."""
    pytest.importorskip("skimage")
    data = load_photo_folder(SHARED, crop_size=64)
    assert len(data.train.sources) == 42 and len(data.eval) == 7 * 64

    def digest(a: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

    train = {digest(np.asarray(Image.open(f).convert("RGB"))) for f in data.train.sources}
    test = {digest(load_photo(p.name)) for p in PHOTOS}
    assert not train & test


def test_the_photos_a_model_never_saw():
    """A model of a photo folder never saw any photo of scikit-image or scikit-learn: all of them are its test set
    (``scorezoo eval --data photos``); a model of ``photo_patches`` was cut from the training split."""
    from scorezoo.datasets import unseen_photos
    from scorezoo.evaluation.specs import load_eval_data

    assert unseen_photos("photo_folder") == list(PHOTOS)
    assert [p.name for p in unseen_photos("photo_patches")] == ["chelsea", "coffee", "china"]
    assert unseen_photos(None) == unseen_photos("photo_patches")
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    ev = load_eval_data("photos", data_shape=(3, 32, 32), num_levels=256, trained_on="photo_folder")
    assert [Path(p).stem for p in ev.paths][:2] == ["astronaut", "rocket"] and len(ev.paths) == len(PHOTOS)
