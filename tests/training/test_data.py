"""Deterministic batches: the data order and the noise are functions of the step."""

import torch

from scorezoo.datasets import load_dataset
from scorezoo.training import TrainState, make_batch


def test_data_order_is_a_function_of_the_step():
    s = TrainState(seed=0, num_items=15, batch_size=4)
    assert s.steps_per_epoch == 3
    epoch0 = torch.cat([s.batch_indices(i) for i in range(3)])
    assert len(set(epoch0.tolist())) == 12  # no repeats within an epoch
    assert not torch.equal(epoch0, torch.cat([s.batch_indices(i) for i in range(3, 6)]))  # reshuffled per epoch
    assert torch.equal(s.batch_indices(4), TrainState(0, 15, 4).batch_indices(4))


def test_random_flip_flips_about_half_of_each_batch():
    data = load_dataset("digits")
    state = TrainState(seed=0, num_items=len(data.train), batch_size=64)
    plain, _ = make_batch(data, state, 3, dequantize=False)
    flipped, _ = make_batch(data, state, 3, dequantize=False, random_flip=True)
    same = (flipped == plain).flatten(1).all(1)
    mirrored = (flipped == plain.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 16 < int((~same).sum()) < 48
    again, _ = make_batch(data, state, 3, dequantize=False, random_flip=True)
    assert torch.equal(again, flipped)  # a function of the step, as the rest of the batch


def test_dequantized_batch_stays_in_its_levels_bins():
    """Uniform dequantization moves each level k within its bin [lo + (hi-lo)k/K, lo + (hi-lo)(k+1)/K)."""
    data = load_dataset("digits")
    state = TrainState(seed=0, num_items=len(data.train), batch_size=64)
    x, _ = make_batch(data, state, 5, dequantize=True)
    k = data.train[state.batch_indices(5)].float()
    width = 2.0 / data.num_levels  # data range [-1, 1]
    lo = -1.0 + width * k
    # 1e-6: float32 rounding of lo + width * u at the bin's edges
    assert bool(((x >= lo - 1e-6) & (x <= lo + width + 1e-6)).all())
    assert data.data_range == (-1.0, 1.0)
