"""Samplers recover the mean and covariance of Gaussian data from its exact score."""

import pytest
import torch

from scorezoo.models import GaussianScore
from scorezoo.sampling import SAMPLERS, get_sampler, get_times_log_rho, get_times_uniform

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
    # the ODE solves adaptively between the grid's ends; the SDE samplers take its 500 steps
    times = get_times_uniform(sde, 1 if name == "ode" else 500, 1e-3)
    out = get_sampler(name)(small_gaussian, sde, x_T, times, generator=gen, progress=False, **kwargs)
    x = out.samples
    assert x.shape == (N, DIM) and out.nfe > 0
    assert (x.mean(0) - small_gaussian.mean).abs().max() < 0.07
    assert (torch.cov(x.T) - small_gaussian.cov).abs().max() < 0.07


def test_samplers_are_seeded(small_gaussian):
    sde = small_gaussian.sde
    for name in ("em", "pc"):
        times = get_times_uniform(sde, 20)
        a = get_sampler(name)(small_gaussian, sde, torch.ones(3, DIM, dtype=torch.float64), times,
                              generator=torch.Generator().manual_seed(2), progress=False).samples
        b = get_sampler(name)(small_gaussian, sde, torch.ones(3, DIM, dtype=torch.float64), times,
                              generator=torch.Generator().manual_seed(2), progress=False).samples
        assert torch.equal(a, b)


def test_sampler_errors(small_gaussian):
    sde = small_gaussian.sde
    x = torch.zeros(2, DIM, dtype=torch.float64)
    times = get_times_uniform(sde, 4)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("ddim")
    with pytest.raises(ValueError, match="num_steps"):
        get_times_uniform(sde, 0)
    with pytest.raises(ValueError, match="eps"):
        get_times_uniform(sde, 4, eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        get_sampler("ode")(small_gaussian, sde, x, torch.tensor([1.0, 0.0]), progress=False)
    with pytest.raises(ValueError, match="decreasing"):
        get_sampler("em")(small_gaussian, sde, x, times.flip(0), progress=False)
    with pytest.raises(ValueError, match="start at T"):
        get_sampler("em")(small_gaussian, sde, x, times[1:], progress=False)
    with pytest.raises(ValueError, match="non-empty batch"):
        get_sampler("pc")(small_gaussian, sde, x[:0], times, progress=False)
    with pytest.raises(ValueError, match="rtol and atol do nothing"):
        get_sampler("ode")(small_gaussian, sde, x, times, method="rk4", rtol=1e-3, progress=False)
    with pytest.raises(ValueError, match="unknown ODE method"):
        get_sampler("ode")(small_gaussian, sde, x, times, method="nope", progress=False)


def test_times_helpers_and_callback(small_gaussian):
    """The grids run from T down to eps (log rho: evenly in log(sigma/alpha)); the callback sees every step."""
    sde = small_gaussian.sde
    for times in (get_times_uniform(sde, 8, 1e-3), get_times_log_rho(sde, 8, 1e-3)):
        assert len(times) == 9 and times[0] == sde.T and abs(times[-1] - 1e-3) < 1e-12 and (times.diff() < 0).all()
    log_rho = torch.log(sde.rho(get_times_log_rho(sde, 8, 1e-3)))
    torch.testing.assert_close(log_rho.diff(), log_rho.diff().mean().expand(8))
    seen = []
    x = torch.ones(3, DIM, dtype=torch.float64)
    out = get_sampler("em")(small_gaussian, sde, x, get_times_uniform(sde, 5), progress=False, denoise=False,
                            callback=lambda d: seen.append((d["i"], d["t"], d["x"].shape)))
    assert [s[0] for s in seen] == list(range(5)) and out.nfe == 5 and seen[-1][2] == x.shape
