"""bits/dim: the dequantization offset comes from the change of variables, never a constant."""

import math

import numpy as np
import pytest
import torch

from scorezoo import ScorePipeline, VPSDE, bits_per_dim
from scorezoo.dequantization import uniform_dequantize
from scorezoo.models import GaussianScore
from tests.conftest import gaussian_params


def analytic_pipeline(mean, cov, data_range, num_levels):
    """A pipeline whose 'network' is the exact Gaussian score (time_scale 1, score parameterisation)."""
    sde = VPSDE()
    return ScorePipeline(GaussianScore(sde, mean, cov), sde, data_shape=(mean.numel(),), num_levels=num_levels,
                         data_range=data_range, parameterization="score", time_scale=1.0)


@pytest.mark.parametrize("data_range, num_levels", [((-1, 1), 256), ((0, 1), 256), ((-1, 1), 17), ((0, 255), 256)])
def test_uniform_density_gives_log2_levels(data_range, num_levels):
    """The uniform density 1/(hi - lo)^D on the data range has exactly log2(K) bits/dim."""
    d = 12
    logp = torch.full((3,), -d * math.log(data_range[1] - data_range[0]), dtype=torch.float64)
    torch.testing.assert_close(bits_per_dim(logp, d, num_levels=num_levels, data_range=data_range),
                               torch.full((3,), math.log2(num_levels), dtype=torch.float64))


def test_familiar_seven_bit_offset():
    """For [-1, 1] and 256 levels, a density of 1 (logp = 0) is 7 bits/dim: log2(256 / 2)."""
    assert bits_per_dim(torch.zeros(1), 5, num_levels=256, data_range=(-1, 1)).item() == pytest.approx(7.0)


def _levels_from(mean01, cov01, n, k, seed):
    """Integer data whose dequantized density is close to N(mean01, cov01) on [0, 1]."""
    torch.manual_seed(seed)
    x = torch.distributions.MultivariateNormal(mean01, cov01).sample((n,))
    return (x * k).floor().clamp(0, k - 1).long().numpy()


def test_same_density_on_two_scales_gives_same_bpd_closed_form():
    """N(mu, S) for [0, 1] data and its push-forward N(2 mu - 1, 4 S) for [-1, 1] data: bits/dim agree to
    rounding, because the offset comes from each map's Jacobian."""
    d, k = 8, 17
    mean01, cov01 = gaussian_params(d, seed=3)
    mean01, cov01 = 0.5 + 0.2 * mean01, 0.02 * cov01
    x01 = torch.rand(5, d, dtype=torch.float64)
    lp01 = torch.distributions.MultivariateNormal(mean01, cov01).log_prob(x01)
    lpm1 = torch.distributions.MultivariateNormal(2 * mean01 - 1, 4 * cov01).log_prob(2 * x01 - 1)
    torch.testing.assert_close(bits_per_dim(lp01, d, num_levels=k, data_range=(0, 1)),
                               bits_per_dim(lpm1, d, num_levels=k, data_range=(-1, 1)), rtol=0, atol=1e-12)


def test_same_density_on_two_scales_gives_same_bpd_through_the_ode():
    """The same through the pipelines' ODE likelihoods, same dequantization draw. The diffused models are not
    exact push-forwards of each other (noise of variance sigma_eps^2 is added on either scale, and the prior
    mismatch differs), so the two answers may differ by what their closed forms differ by, and no more
    (1e-4 bits/dim: solver error at rtol = atol = 1e-7); that model difference itself is below 5e-3 bits/dim."""
    d, k = 8, 17
    mean01, cov01 = gaussian_params(d, seed=3)
    mean01, cov01 = 0.5 + 0.2 * mean01, 0.02 * cov01
    levels = _levels_from(mean01, cov01, 6, k, seed=0)
    p01 = analytic_pipeline(mean01, cov01, (0.0, 1.0), k).to(dtype=torch.float64)
    pm1 = analytic_pipeline(2 * mean01 - 1, 4 * cov01, (-1.0, 1.0), k).to(dtype=torch.float64)
    kw = dict(divergence="exact", rtol=1e-7, atol=1e-7)
    a = p01.bits_per_dim(levels, generator=torch.Generator().manual_seed(0), **kw)
    b = pm1.bits_per_dim(levels, generator=torch.Generator().manual_seed(0), **kw)
    x01 = uniform_dequantize(torch.from_numpy(levels), num_levels=k, data_range=(0, 1),
                             generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a_cf = bits_per_dim(p01.network.ode_log_likelihood(x01, p01.eps), d, num_levels=k, data_range=(0, 1))
    b_cf = bits_per_dim(pm1.network.ode_log_likelihood(2 * x01 - 1, pm1.eps), d, num_levels=k, data_range=(-1, 1))
    assert ((a.bpd - b.bpd) - (a_cf - b_cf)).abs().max() < 1e-4
    assert (a_cf - b_cf).abs().max() < 5e-3


def test_pipeline_bpd_equals_closed_form():
    """Pipeline bits/dim = (-log p_eps(x) - D log((hi-lo)/K)) / (D ln 2) with the closed-form ODE answer on the
    same dequantization draw; tolerance 1e-4 bits/dim is the solver's error at rtol = atol = 1e-7."""
    d, k = 8, 256
    mean, cov = gaussian_params(d, seed=4)
    mean, cov = 0.3 * mean, 0.1 * cov
    pipe = analytic_pipeline(mean, cov, (-1.0, 1.0), k).to(dtype=torch.float64)
    levels = _levels_from((mean + 1) / 2, cov / 4, 4, k, seed=1)
    res = pipe.bits_per_dim(levels, generator=torch.Generator().manual_seed(5), divergence="exact",
                            rtol=1e-7, atol=1e-7)
    x = uniform_dequantize(torch.from_numpy(levels), num_levels=k, data_range=(-1, 1),
                           generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    logp = pipe.network.ode_log_likelihood(x, pipe.eps)
    expected = (-logp - d * math.log(2 / k)) / (d * math.log(2))
    torch.testing.assert_close(res.bpd, expected, rtol=0, atol=1e-4)


def test_repeats_give_mean_and_standard_error():
    d = 8
    mean, cov = gaussian_params(d, seed=4)
    pipe = analytic_pipeline(0.3 * mean, 0.1 * cov, (-1.0, 1.0), 256)
    levels = np.random.default_rng(1).integers(60, 200, size=(3, d))
    res = pipe.bits_per_dim(levels, num_repeats=4, generator=torch.Generator().manual_seed(0))
    assert res.bpd_repeats.shape == (4, 3)
    torch.testing.assert_close(res.bpd, res.bpd_repeats.mean(0))
    torch.testing.assert_close(res.stderr, res.bpd_repeats.std(0) / 2)
    assert (res.stderr > 0).all()
    one = pipe.bits_per_dim(levels, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(one.stderr).all()
    assert (res.nfe > 0).all()


def test_the_old_path_of_scorezoo_0_1_still_gives_bits_per_dim_with_a_warning():
    """`from scorezoo.likelihood import bits_per_dim` (scorezoo 0.1) is the function of scorezoo.dequantization, with a
    DeprecationWarning that names the new place; other missing names are still AttributeErrors."""
    import scorezoo.likelihood

    with pytest.warns(DeprecationWarning, match="import it from scorezoo.dequantization"):
        from scorezoo.likelihood import bits_per_dim as old
    assert old is bits_per_dim
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        scorezoo.likelihood.nothing
