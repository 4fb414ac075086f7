"""Held-out evaluation: the scale printed next to the numbers, and the rough duration announced before it."""

import math

import pytest
import torch

from scorezoo.dequantization import bits_per_dim
from scorezoo.training import evaluation
from scorezoo.training.evaluation import TYPICAL_ODE_NFE, estimate_eval_seconds, format_evaluation, \
    uniform_bits_per_dim
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline


@pytest.mark.parametrize("num_levels", [2, 17, 256])
def test_uniform_reference_is_the_bits_per_dim_of_the_uniform_density(num_levels):
    """The uniform density on [-1, 1]^D has log p = -D log 2 nats; dequantized bits/dim of it is log2(K)."""
    dim = 64
    logp = torch.tensor([-dim * math.log(2.0)], dtype=torch.float64)
    expected = bits_per_dim(logp, dim, num_levels=num_levels, data_range=(-1.0, 1.0)).item()
    assert uniform_bits_per_dim(num_levels) == pytest.approx(expected, abs=1e-12)  # float64 rounding only
    with pytest.raises(ValueError, match="num_levels"):
        uniform_bits_per_dim(1)


def test_the_line_puts_the_uniform_reference_next_to_integer_data_only():
    res = {"unit": "bits/dim", "num_eval": 300, "ode": 2.3171, "ode_stderr": 0.0123, "bound": 2.41,
           "bound_stderr": 0.01, "uniform_bpd": math.log2(17)}
    assert format_evaluation(res) == ("held-out bits/dim (300 items, EMA weights): ODE 2.3171 ± 0.0123, bound "
                                      "2.4100 ± 0.0100 (lower is better; uniform over the levels: 4.0875)")
    assert "uniform" not in format_evaluation({**res, "unit": "nats/point", "uniform_bpd": None})


def test_duration_estimate_counts_ode_steps_and_bound_points(monkeypatch):
    """With every timed network call taking 1 s: 64 items are one solve of TYPICAL_ODE_NFE steps plus
    64 x T bound points at 64 per call; the exact divergence of continuous data costs D times the steps. The solves
    take eval_batch_size items each, as the evaluation's do."""
    monkeypatch.setattr(evaluation, "_seconds", lambda fn: 1.0)
    cfg = {"bound_num_time_points": 10, "eval_batch_size": 64}
    images = tiny_unet_pipeline()
    assert estimate_eval_seconds(images, cfg, 32, num_repeats=2) == TYPICAL_ODE_NFE + 10
    assert estimate_eval_seconds(images, cfg, 128, num_repeats=1) == 2 * (TYPICAL_ODE_NFE + 10)
    assert estimate_eval_seconds(images, {**cfg, "eval_batch_size": 32}, 64) == 2 * (TYPICAL_ODE_NFE + 10)
    assert estimate_eval_seconds(tiny_mlp_pipeline(), cfg, 64) == 2 * TYPICAL_ODE_NFE + 10
