"""ScoreModel turns an epsilon-, x0- or score-predicting network into the score, exactly: checked with networks that
predict the closed-form posterior quantities of Gaussian data."""

import pytest
import torch
from torch import nn

from scorezoo.models import GaussianScore, ScoreModel
from tests.conftest import gaussian_params


class _Oracle(nn.Module):
    """The exact network of a parameterisation for Gaussian data: from the true score s, the noise
    ``eps = -sigma_t s`` or Tweedie's posterior mean ``x0 = (x + sigma_t^2 s) / alpha_t`` (Efron 2011)."""

    def __init__(self, gaussian: GaussianScore, parameterization: str):
        super().__init__()
        self.gaussian, self.parameterization = gaussian, parameterization

    def forward(self, x, t_label):
        t = t_label  # time_scale = 1
        s = self.gaussian(x, t)
        alpha, sigma = self.gaussian.sde.alpha_sigma(t.double())
        if self.parameterization == "epsilon":
            return -sigma[:, None] * s
        if self.parameterization == "x0":
            return (x + sigma[:, None] ** 2 * s) / alpha[:, None]
        return s


@pytest.mark.parametrize("parameterization", ["epsilon", "x0", "score"])
def test_every_parameterization_gives_back_the_exact_score(sde, parameterization):
    """Float64 throughout: the only error is rounding. At t = 1e-3 sigma_t is small, which is where a wrong formula
    (e.g. alpha in the wrong place) would show at once, and where x0 -> score divides by sigma_t^2 (1e-8 for sub-VP),
    turning float64 rounding of x into ~1e-8 relative: hence 1e-6."""
    gaussian = GaussianScore(sde, *gaussian_params(dim=6))
    model = ScoreModel(_Oracle(gaussian, parameterization), sde, parameterization, time_scale=1.0)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([1e-3, 0.01, 0.3, 0.7, 1.0], dtype=torch.float64)
    torch.testing.assert_close(model(x, t), gaussian(x, t), rtol=1e-6, atol=1e-9)
