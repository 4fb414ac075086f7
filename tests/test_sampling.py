"""Samplers recover the mean and covariance of Gaussian data from its exact score."""

import pytest
import torch

from scorezoo.models import GaussianScore
from scorezoo.sampling import SAMPLERS, get_sampler

N = 4000
DIM = 4


@pytest.fixture
def small_gaussian(sde):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=g, dtype=torch.float64))
    cov = q @ torch.diag(torch.tensor([0.05, 0.2, 0.5, 1.0], dtype=torch.float64)) @ q.T
    mean = torch.tensor([0.5, -0.3, 0.2, 0.0], dtype=torch.float64)
    return GaussianScore(sde, mean, (cov + cov.T) / 2)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_recovers_gaussian(small_gaussian, name):
    """Tolerances: with N = 4000 samples, the mean's standard error is <= sqrt(1/4000) = 0.016 per coordinate
    and a covariance entry's is <= ~0.022; we allow 0.07 for both (about 4 standard errors plus the
    discretisation and eps = 1e-3 bias)."""
    sde = small_gaussian.sde
    gen = torch.Generator().manual_seed(1)
    x_T = sde.prior_sampling((N, DIM), generator=gen, dtype=torch.float64)
    kwargs = {"snr": 0.05} if name == "pc" else {}
    out = get_sampler(name)(small_gaussian, sde, x_T, num_steps=None if name == "ode" else 500, generator=gen,
                            progress=False, **kwargs)
    x = out.samples
    assert x.shape == (N, DIM) and out.nfe > 0
    assert (x.mean(0) - small_gaussian.mean).abs().max() < 0.07
    assert (torch.cov(x.T) - small_gaussian.cov).abs().max() < 0.07


def test_samplers_are_seeded(small_gaussian):
    sde = small_gaussian.sde
    for name in ("em", "pc"):
        a = get_sampler(name)(small_gaussian, sde, torch.ones(3, DIM, dtype=torch.float64), num_steps=20,
                              generator=torch.Generator().manual_seed(2), progress=False).samples
        b = get_sampler(name)(small_gaussian, sde, torch.ones(3, DIM, dtype=torch.float64), num_steps=20,
                              generator=torch.Generator().manual_seed(2), progress=False).samples
        assert torch.equal(a, b)


def test_sampler_errors(small_gaussian):
    sde = small_gaussian.sde
    x = torch.zeros(2, DIM, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("ddim")
    with pytest.raises(ValueError, match="num_steps"):
        get_sampler("em")(small_gaussian, sde, x, num_steps=0, progress=False)
    with pytest.raises(ValueError, match="eps"):
        get_sampler("ode")(small_gaussian, sde, x, eps=0.0, progress=False)
    with pytest.raises(ValueError, match="non-empty batch"):
        get_sampler("pc")(small_gaussian, sde, x[:0], progress=False)
