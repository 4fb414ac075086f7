"""SDEs: kernels consistent with the SDE, priors, and importance-sampled time against its density."""

import math

import pytest
import torch

from scorezoo import SubVPSDE, VESDE, VPSDE, get_sde


def test_marginal_prob_shapes_and_values(sde):
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    t = torch.linspace(0.1, 1.0, 5, dtype=torch.float64)
    mean, std = sde.marginal_prob(x, t)
    assert mean.shape == x.shape and std.shape == (5,)
    alpha, sigma = sde.alpha_sigma(t)
    torch.testing.assert_close(mean, alpha.view(5, 1, 1, 1) * x)
    torch.testing.assert_close(std, sigma)


def test_kernel_variance_obeys_fokker_planck(sde):
    """For dx = f x dt + g dw the kernel variance solves (sigma^2)' = 2 f sigma^2 + g^2 and alpha' = f alpha."""
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64, requires_grad=True)
    alpha, sigma = sde.alpha_sigma(t)
    (dvar,) = torch.autograd.grad(sigma.pow(2).sum(), t, retain_graph=True)
    # VE's alpha is the constant 1, which carries no graph
    dalpha = torch.autograd.grad(alpha.sum(), t)[0] if alpha.requires_grad else torch.zeros_like(t)
    f, g = sde.drift_coef(t), sde.diffusion(t)
    torch.testing.assert_close(dvar, (2 * f * sigma**2 + g**2).detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dalpha, (f * alpha).detach(), rtol=1e-9, atol=1e-12)


def test_prior_logp_is_gaussian(sde):
    z = sde.prior_sampling((7, 6), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = sde.prior_std()
    expected = torch.distributions.Normal(0.0, s).log_prob(z).sum(1)
    torch.testing.assert_close(sde.prior_logp(z), expected)


def test_likelihood_weighting_is_g_squared(sde):
    t = torch.rand(10, dtype=torch.float64)
    torch.testing.assert_close(sde.likelihood_weighting(t), sde.diffusion(t) ** 2)


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_importance_normalizer_matches_quadrature(sde, eps):
    """Z = int_eps^1 g^2/sigma^2 dt, checked by quadrature in log t (the integrand ~ 1/t near 0)."""
    u = torch.linspace(math.log(eps), 0.0, 200001, dtype=torch.float64)
    t = u.exp()
    _, sigma = sde.alpha_sigma(t)
    integrand = sde.diffusion(t) ** 2 / sigma**2 * t
    z = torch.trapezoid(integrand, u).item()
    assert sde.importance_normalizer(eps) == pytest.approx(z, rel=1e-6)


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_importance_samples_follow_their_density(sde, eps):
    """Histogram of 200k draws against q(t) integrated over each bin: chi-square within 5 sigma of its mean."""
    n, bins = 200_000, 40
    t, w = sde.sample_importance_weighted_time(n, eps, generator=torch.Generator().manual_seed(0))
    assert t.min() >= eps and t.max() <= 1.0
    edges = torch.logspace(math.log10(eps), 0.0, bins + 1, dtype=torch.float64)
    counts = torch.histc(t.double().log(), bins=bins, min=math.log(eps), max=0.0)
    c = sde._is_cdf(edges)
    probs = (c[1:] - c[:-1]) / (c[-1] - c[0])
    expected = n * probs
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert abs(chi2 - bins) < 5 * math.sqrt(2 * bins), chi2
    torch.testing.assert_close(w.double(), 1 / sde.importance_density(t.double(), eps), rtol=1e-5, atol=0)


def test_importance_weights_integrate_a_known_function(sde):
    """mean(weight * h(t)) estimates int_eps^1 h(t) dt; h = t^2 integrates to (1 - eps^3)/3."""
    eps = 1e-3
    t, w = sde.sample_importance_weighted_time(400_000, eps, generator=torch.Generator().manual_seed(1))
    est = (w.double() * t.double() ** 2).mean().item()
    assert est == pytest.approx((1 - eps**3) / 3, rel=0.02)


def test_inverse_cdf_is_accurate(sde):
    t = torch.tensor([1e-5, 1e-4, 1e-2, 0.3, 0.9, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sde._is_cdf_inverse(sde._is_cdf(t)), t, rtol=1e-9, atol=1e-12)


def test_get_sde_round_trip_and_errors():
    for s in (VPSDE(0.2, 15.0), SubVPSDE(), VESDE(0.02, 30.0)):
        assert get_sde(s.config).config == s.config
    with pytest.raises(ValueError, match="unknown SDE type"):
        get_sde({"type": "cosine"})
    with pytest.raises(ValueError, match="bad parameters"):
        get_sde({"type": "vp", "beta": 3})
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        VPSDE(5.0, 1.0)
    with pytest.raises(ValueError, match="eps"):
        VPSDE().importance_normalizer(0.0)


def test_rho_inverse_inverts_rho(sde):
    t = torch.tensor([1e-5, 1e-3, 0.1, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sde.rho_inverse(sde.rho(t)), t, rtol=1e-9, atol=1e-12)
    alpha, sigma = sde.alpha_sigma(t)
    torch.testing.assert_close(sde.rho(t), sigma / alpha)
