"""The likelihood bound of the MLE paper (Thm. 3) against the true negative log-likelihood of Gaussian data."""

import pytest
import torch

from scorezoo import likelihood_bound


@pytest.mark.parametrize("eps", [1e-5, 1e-4, 1e-3])
def test_bound_is_above_and_close_to_true_nll(gaussian, eps):
    """With the exact score the data-averaged bound exceeds E[-log p_0(x)] by the prior mismatch and a
    small [0, eps] slack. Checked on 256 points: bound >= truth - 3 standard errors, gap < 0.01 nats/dim."""
    x = gaussian.sample(256, torch.Generator().manual_seed(5))
    res = likelihood_bound(gaussian, gaussian.sde, x, eps=eps, num_time_points=200,
                           generator=torch.Generator().manual_seed(0))
    true_nll = -gaussian.log_prob(x, torch.zeros(256, dtype=torch.float64))
    gap = (res.nll - true_nll).mean().item()
    se = ((res.nll - true_nll).std() / 16).item()
    d = gaussian.dim
    assert gap > -3 * se, (gap, se)
    assert gap / d < 0.01, gap / d
    torch.testing.assert_close(res.nll, res.prior_term + res.diffusion_term + res.decoder_term)


def test_bound_detects_a_wrong_score(gaussian):
    """A score off by a constant shift pays for it: the bound rises by a clear margin."""
    x = gaussian.sample(64, torch.Generator().manual_seed(6))
    good = likelihood_bound(gaussian, gaussian.sde, x, eps=1e-3, num_time_points=100,
                            generator=torch.Generator().manual_seed(0)).nll.mean()
    bad = likelihood_bound(lambda y, t: gaussian(y, t) + 0.5, gaussian.sde, x, eps=1e-3, num_time_points=100,
                           generator=torch.Generator().manual_seed(0)).nll.mean()
    assert bad - good > 1.0


def test_bound_is_seeded_and_validates(gaussian):
    x = gaussian.sample(2, torch.Generator().manual_seed(6))
    a = likelihood_bound(gaussian, gaussian.sde, x, num_time_points=10, generator=torch.Generator().manual_seed(3))
    b = likelihood_bound(gaussian, gaussian.sde, x, num_time_points=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.nll, b.nll)
    with pytest.raises(ValueError, match="num_time_points"):
        likelihood_bound(gaussian, gaussian.sde, x, num_time_points=0)
    with pytest.raises(ValueError, match="NaN"):
        likelihood_bound(gaussian, gaussian.sde, x * float("inf"))
