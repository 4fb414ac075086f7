"""The divergence of the score: exact (a batched Jacobian trace) and Hutchinson's estimator, against closed forms."""

import math

import pytest
import torch

from scorezoo import log_likelihood
from scorezoo.likelihood import divergence_fn

EPS = 1e-5


def test_exact_divergence_matches_closed_form(gaussian):
    """ODE logp with the exact divergence equals log p_eps(x) - log p_T(x_T) + log pi(x_T) within 1e-4 nats/dim.

    Tolerance: the solver runs at rtol = atol = 1e-7 in float64, so the only error left is the solver's."""
    x = gaussian.sample(8, torch.Generator().manual_seed(1))
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", rtol=1e-7, atol=1e-7)
    exact = gaussian.ode_log_likelihood(x, EPS)
    assert res.logp.shape == (8,)
    assert ((res.logp - exact).abs() / gaussian.dim).max() < 1e-4
    torch.testing.assert_close(res.logp, res.prior_logp + res.delta_logp)
    torch.testing.assert_close(res.z, gaussian.flow(x, EPS, 1.0), rtol=1e-4, atol=1e-4)
    assert res.nfe > 0


def test_default_tolerances_in_float32_are_accurate(gaussian):
    """At the default rtol = atol = 1e-5 in float32 the error stays below 1e-4 nats/dim."""
    x = gaussian.sample(4, torch.Generator().manual_seed(2))
    res = log_likelihood(gaussian, gaussian.sde, x.float(), eps=EPS, divergence="exact")
    exact = gaussian.ode_log_likelihood(x, EPS)
    assert ((res.logp.double() - exact).abs() / gaussian.dim).max() < 1e-4


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_seeded(gaussian, probe):
    """Over 40 seeds, the mean Hutchinson estimate is within 4 standard errors of the exact value; the
    same seed gives bit-identical output."""
    x = gaussian.sample(2, torch.Generator().manual_seed(3))
    exact = gaussian.ode_log_likelihood(x, EPS)
    runs = torch.stack([
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, probe=probe, rtol=1e-6, atol=1e-6,
                       generator=torch.Generator().manual_seed(s)).logp
        for s in range(40)
    ])
    mean, se = runs.mean(0), runs.std(0) / math.sqrt(runs.shape[0])
    assert (runs.std(0) > 0).all(), "the estimator should vary across seeds"
    assert ((mean - exact).abs() < 4 * se + 1e-3).all(), (mean - exact, se)
    a = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, probe=probe, generator=torch.Generator().manual_seed(7))
    b = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, probe=probe, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.logp, b.logp)


def test_more_probes_reduce_variance(gaussian):
    x = gaussian.sample(1, torch.Generator().manual_seed(4))

    def spread(p):
        return torch.stack([log_likelihood(gaussian, gaussian.sde, x, num_probes=p, rtol=1e-4, atol=1e-4,
                                           generator=torch.Generator().manual_seed(s)).logp for s in range(16)]).std()

    assert spread(8) < spread(1)


def test_divergence_fn_exact_matches_jacobian_trace():
    """On a small nonlinear network the batched exact divergence equals the trace of the autograd Jacobian."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6)).double()

    def score_fn(x, t):
        return net(x) * (1 + t[:, None])

    x, t = torch.randn(3, 6, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    # one, four or all six dimensions per replicated batch of 3 samples
    for network_batch_size in (3, 12, None):
        s, div = divergence_fn(score_fn, x, t, network_batch_size=network_batch_size)
        jac = torch.stack([torch.autograd.functional.jacobian(lambda y: score_fn(y[None], t[i:i + 1])[0], x[i])
                           for i in range(3)])
        torch.testing.assert_close(div, jac.diagonal(dim1=1, dim2=2).sum(1))
        torch.testing.assert_close(s, score_fn(x, t))


def test_reduce_false_gives_terms_that_sum_to_the_divergence(gaussian):
    x = gaussian.sample(3, torch.Generator().manual_seed(10))
    t = torch.full((3,), 0.3, dtype=torch.float64)
    probes = torch.randint(0, 2, (2, *x.shape), generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    for p in (None, probes):
        _, div = divergence_fn(gaussian, x, t, probes=p)
        _, terms = divergence_fn(gaussian, x, t, probes=p, reduce=False)
        assert terms.shape == x.shape
        torch.testing.assert_close(terms.sum(1), div)
    # the exact diagonal of the Gaussian score's Jacobian is -diag(C_t^-1)
    _, diag = divergence_fn(gaussian, x, t, reduce=False)
    alpha, c = gaussian._c(t)
    prec = gaussian.eigvecs @ torch.diag(1 / c[0]) @ gaussian.eigvecs.T
    torch.testing.assert_close(diag[0], -prec.diagonal())
