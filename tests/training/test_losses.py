"""Denoising score matching with the MLE paper's weightings, checked against known answers.

The known answer: for Gaussian data and the exact score, ``E||sigma_t s + z||^2 = D - sigma_t^2 tr(C_t^{-1})``
(denoising = explicit score matching + a constant, Vincent 2011, with explicit score matching at zero), so
``J(lambda = g^2) = 1/2 int_eps^T g^2 (D / sigma^2 - tr C_t^{-1}) dt``, a 1-D integral done by quadrature.
"""

import math

import numpy as np
import pytest
import torch

from scorezoo import ScoreMLP
from scorezoo.losses import WEIGHTINGS, dsm_loss, sample_time
from scorezoo.models import GaussianScore, ScoreModel
from tests.conftest import SDES, gaussian_params


class _TimeScore(torch.nn.Module):
    """A closed-form score called as a network with ``time_scale = 1``."""

    def __init__(self, score):
        super().__init__()
        self.score = score

    def forward(self, x, t):
        return self.score(x, t)


def exact_score_model(sde, dim=4):
    mean, cov = gaussian_params(dim)
    gauss = GaussianScore(sde, mean, cov)
    return ScoreModel(_TimeScore(gauss), sde, "score", time_scale=1.0), gauss


def likelihood_dsm_known_answer(sde, gauss, eps):
    """``1/2 int_eps^T g^2 (D/sigma^2 - tr C_t^{-1}) dt`` by the trapezoid rule on a log-spaced grid (float64)."""
    t = torch.from_numpy(np.geomspace(eps, sde.T, 200_001))
    alpha, sigma = sde.alpha_sigma(t)
    c = alpha[:, None] ** 2 * gauss.eigvals + sigma[:, None] ** 2
    f = sde.diffusion(t) ** 2 * (gauss.dim / sigma**2 - (1 / c).sum(1))
    return 0.5 * float(torch.trapezoid(f, t))


@pytest.mark.parametrize("name", sorted(SDES))
def test_likelihood_weighted_loss_matches_quadrature_with_and_without_importance_sampling(name):
    sde, eps, n = SDES[name](), 1e-3, 200_000
    model, gauss = exact_score_model(sde)
    x0 = gauss.sample(n, torch.Generator().manual_seed(0))
    expected = likelihood_dsm_known_answer(sde, gauss, eps)
    for weighting, seed in (("likelihood", 1), ("likelihood-is", 2)):
        loss = dsm_loss(model, x0, weighting=weighting, eps=eps, generator=torch.Generator().manual_seed(seed))
        se = float(loss.std()) / math.sqrt(n)
        # 5 standard errors: a false alarm once in ~3.5 million runs
        assert abs(float(loss.mean()) - expected) < 5 * se, (weighting, float(loss.mean()), expected, se)
    assert expected > 0


def test_importance_sampling_lowers_the_variance_of_the_likelihood_weighted_loss():
    """The reason it exists (MLE Sec. 5.1): with uniform t, g^2/sigma^2 ~ 1/t near eps dominates."""
    sde, eps, n = SDES["vp"](), 1e-5, 100_000
    model, gauss = exact_score_model(sde)
    x0 = gauss.sample(n, torch.Generator().manual_seed(0))
    var_u = dsm_loss(model, x0, weighting="likelihood", eps=eps, generator=torch.Generator().manual_seed(1)).var()
    var_is = dsm_loss(model, x0, weighting="likelihood-is", eps=eps, generator=torch.Generator().manual_seed(2)).var()
    assert var_is * 100 < var_u, (float(var_is), float(var_u))


def _eps_model(sde, seed=0):
    torch.manual_seed(seed)
    return ScoreModel(ScoreMLP(dim=3, hidden_dim=16, num_layers=1), sde, "epsilon")


@pytest.mark.parametrize("name", sorted(SDES))
def test_importance_sampled_loss_is_z_times_the_epsilon_loss(name):
    """MLE Sec. 5.1: with t ~ q the weight g^2 / (sigma^2 q) is the constant Z, so the loss is Z/2 ||eps_hat - z||^2."""
    sde, eps = SDES[name](), 1e-5
    model = _eps_model(sde)
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    t, _ = sample_time(sde, 64, weighting="likelihood-is", eps=eps, generator=torch.Generator().manual_seed(1))
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(2))
    loss = dsm_loss(model, x0, weighting="likelihood-is", eps=eps, t=t, z=z)
    alpha, sigma = sde.alpha_sigma(t)
    xt = alpha[:, None] * x0 + sigma[:, None] * z
    with torch.no_grad():
        eps_hat = model.network_output(xt, t)
    expected = 0.5 * sde.importance_normalizer(eps) * (eps_hat - z).pow(2).sum(1)
    # float32 weights g^2/(sigma^2 q): relative error ~1e-6, loosened for sigma^2 ~ 1e-6 at t = eps
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=0)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_epsilon_shortcut_equals_the_score_form(weighting):
    """The epsilon path (no division by sigma) gives the same loss as ``||sigma s + z||^2`` through the score."""
    sde, eps = SDES["subvp"](), 1e-3
    model = _eps_model(sde)
    x0 = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    t, _ = sample_time(sde, 32, weighting=weighting, eps=eps, generator=torch.Generator().manual_seed(1))
    z = torch.randn(32, 3, generator=torch.Generator().manual_seed(2))
    loss = dsm_loss(model, x0, weighting=weighting, eps=eps, t=t, z=z)
    alpha, sigma = sde.alpha_sigma(t)
    xt = alpha[:, None] * x0 + sigma[:, None] * z
    with torch.no_grad():
        sq = (sigma[:, None] * model(xt, t) + z).pow(2).sum(1)
    lam_over_s2 = torch.ones_like(t) if weighting == "score" else sde.diffusion(t) ** 2 / sigma**2
    inv_q = 1 / sde.importance_density(t.double(), eps).float() if weighting == "likelihood-is" else 1 - eps
    torch.testing.assert_close(loss.detach(), 0.5 * inv_q * lam_over_s2 * sq, rtol=1e-4, atol=1e-6)


def test_score_weighting_is_the_half_mean_squared_epsilon_error_over_the_interval():
    sde, eps = SDES["vp"](), 1e-3
    model = _eps_model(sde)
    x0 = torch.zeros(8, 3)
    t = torch.full((8,), 0.5)
    z = torch.ones(8, 3)
    with torch.no_grad():
        eps_hat = model.network_output(sde.alpha_sigma(t)[1][:, None] * z, t)
    loss = dsm_loss(model, x0, weighting="score", eps=eps, t=t, z=z)
    torch.testing.assert_close(loss.detach(), 0.5 * (1 - eps) * (eps_hat - z).pow(2).sum(1))


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_sample_time_weights_integrate_a_constant_to_the_interval_length(weighting):
    sde, eps, n = SDES["vp"](), 1e-5, 400_000
    t, inv_q = sample_time(sde, n, weighting=weighting, eps=eps, generator=torch.Generator().manual_seed(0))
    assert t.min() >= eps and t.max() <= 1.0
    est = inv_q.double().mean()
    se = inv_q.double().std() / math.sqrt(n)
    assert abs(est - (1 - eps)) < 5 * se + 1e-6


def test_same_generator_same_loss_and_gradients_flow():
    model = _eps_model(SDES["vp"]())
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    a = dsm_loss(model, x0, weighting="likelihood-is", generator=torch.Generator().manual_seed(3))
    b = dsm_loss(model, x0, weighting="likelihood-is", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_arguments_raise():
    model = _eps_model(SDES["vp"]())
    x0 = torch.randn(4, 3)
    with pytest.raises(ValueError, match="unknown weighting"):
        dsm_loss(model, x0, weighting="sigma2")
    with pytest.raises(ValueError, match="eps"):
        dsm_loss(model, x0, weighting="likelihood", eps=0.0)
    with pytest.raises(ValueError, match="t must have shape"):
        dsm_loss(model, x0, weighting="score", t=torch.rand(3))
    with pytest.raises(ValueError, match="z must have the shape"):
        dsm_loss(model, x0, weighting="score", z=torch.randn(4, 2))
