"""Shared fixtures: a Gaussian data set whose score, flow and density are known in closed form."""

import pytest
import torch

from scorezoo import SubVPSDE, VESDE, VPSDE
from scorezoo.models import GaussianScore

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def gaussian_params(dim: int = 16, seed: int = 0):
    """Non-zero mean, anisotropic (eigenvalues over 1.5 decades), randomly rotated covariance, so the
    score's Jacobian is dense rather than diagonal."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.logspace(-1.5, 0.0, dim, dtype=torch.float64)
    cov = q @ torch.diag(lam) @ q.T
    cov = (cov + cov.T) / 2
    mean = torch.linspace(-0.8, 0.8, dim, dtype=torch.float64)
    return mean, cov


@pytest.fixture(params=sorted(SDES))
def sde(request):
    return SDES[request.param]()


@pytest.fixture
def gaussian(sde):
    mean, cov = gaussian_params()
    return GaussianScore(sde, mean, cov)


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one thread than on a CPU shared with other work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
