"""Training data sets: the digits split, the 2-D toys' supports, image folders and the CIFAR-10 code path."""


import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo.datasets import heldout_mask, load_dataset, load_digits, load_image_folder, sample_toy


def test_digits_split_is_index_mod_6():
    from sklearn.datasets import load_digits as sk_digits

    images = sk_digits().images
    data = load_digits()
    assert data.train.shape == (1497, 1, 8, 8) and data.eval.shape == (300, 1, 8, 8)
    assert data.num_levels == 17 and data.data_shape == (1, 8, 8)
    assert torch.equal(data.eval[1, 0], torch.from_numpy(images[6].astype(np.int64)))
    assert torch.equal(data.train[0, 0], torch.from_numpy(images[1].astype(np.int64)))
    assert torch.equal(data.train[5, 0], torch.from_numpy(images[7].astype(np.int64)))
    assert int(data.train.min()) == 0 and int(data.train.max()) == 16


def test_heldout_mask():
    assert heldout_mask(13).nonzero()[0].tolist() == [0, 6, 12]


def test_checkerboard_lies_on_the_black_squares_and_fills_them_evenly():
    x = sample_toy("checkerboard", 80_000, torch.Generator().manual_seed(0))
    assert x.shape == (80_000, 2) and x.abs().max() <= 2
    cells = torch.floor(x).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    counts = torch.unique(cells, dim=0, return_counts=True)[1]
    assert len(counts) == 8
    # each square holds 1/8 of the points: binomial std sqrt(n p (1-p)) ~ 94, allow 5 of them
    assert (counts - 10_000).abs().max() < 5 * 94


def test_eight_gaussians_and_moons():
    x = sample_toy("8gaussians", 20_000, torch.Generator().manual_seed(0))
    angle = torch.atan2(x[:, 1], x[:, 0]) / (np.pi / 4)
    assert ((angle - angle.round()).abs() < 0.35).float().mean() > 0.99  # within ~3.5 std of a centre
    assert abs(float(x.norm(dim=1).mean()) - 1.5) < 0.02
    m = sample_toy("moons", 1000, torch.Generator().manual_seed(0))
    assert m.shape == (1000, 2) and torch.isfinite(m).all() and m.abs().max() < 2.5
    assert torch.equal(m, sample_toy("moons", 1000, torch.Generator().manual_seed(0)))


def test_toy_dataset_is_a_fixed_continuous_sample():
    a, b = load_dataset("moons", seed=3), load_dataset("moons", seed=3)
    assert torch.equal(a.train, b.train) and a.num_levels is None and a.data_shape == (2,)
    assert not torch.equal(a.train[:100], a.eval[:100])


def _write_pngs(folder, n, size=(8, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_image_folder_loads_sorted_files_and_splits_them(tmp_path):
    _write_pngs(tmp_path / "a", 7)
    _write_pngs(tmp_path / "b", 5)
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, data_shape=(1, 8, 8), num_levels=256)
    assert len(data.train) == 10 and len(data.eval) == 2  # 12 files, indices 0 and 6 held out
    # sorted by path: a/000..a/006 are indices 0..6, so a/006 is the second held-out image
    expected = torch.from_numpy(np.asarray(Image.open(tmp_path / "a" / "006.png"), dtype=np.int64))
    assert torch.equal(data.eval[1, 0], expected)
    data17 = load_image_folder(tmp_path, data_shape=(1, 4, 4), num_levels=17)
    assert data17.train.shape[1:] == (1, 4, 4) and int(data17.train.max()) <= 16


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "missing", data_shape=(1, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds 0 picture"):
        load_image_folder(tmp_path / "empty", data_shape=(1, 8, 8))
    _write_pngs(tmp_path / "bad", 3)
    (tmp_path / "bad" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(ValueError, match="001.png"):
        load_image_folder(tmp_path / "bad", data_shape=(1, 8, 8))


def test_load_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("image_folder")
    with pytest.raises(ValueError, match="unknown 2-D"):
        sample_toy("spirals", 10)


def test_eval_subset_spreads_over_the_split_and_keeps_it_whole_when_asked():
    """A split in raster order (tiles of the held-out photos) is sampled end to end, not from its first corner."""
    from scorezoo.datasets import TrainingData

    data = TrainingData(name="x", train=torch.zeros(1, 1), eval=torch.arange(100).view(100, 1), data_shape=(1,),
                        num_levels=None, data_range=(0.0, 1.0), eval_split="")
    sub = data.eval_subset(5).flatten().tolist()
    assert sub == [0, 25, 50, 74, 99]  # round(linspace(0, 99, 5)) = round(0, 24.75, 49.5, 74.25, 99)
    assert data.eval_subset(None) is data.eval and data.eval_subset(100) is data.eval
    assert data.eval_subset(1).flatten().tolist() == [0]
    with pytest.raises(ValueError, match="num_samples"):
        data.eval_subset(0)
