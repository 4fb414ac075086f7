"""Shared fixtures: a Gaussian data set whose score, flow and density are known in closed form.

The suite runs on one torch thread (OMP_NUM_THREADS=1 unless the caller set it) wherever it runs: the commands it
drives take their default thread count from OMP_NUM_THREADS, and float32 reductions on another thread count sum in
another order, so a command's number and the library's would differ in the 8th digit on a machine where the two
defaults differ (the CI machine gave 23.998446470 against 23.998446011)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: torch reads it once

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture(autouse=True)
def keeps_thread_count():
    """No test, and no library call it makes, may change torch's thread count for the tests after it: results
    compared across processes (a fresh interpreter uses torch's default) are only bit-equal on equal thread counts."""
    n = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    torch.set_num_threads(n)
    assert after == n, f"the test left torch with {after} threads instead of {n}"


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one thread than on a CPU shared with other work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """A zoo of tiny models (bundled, cached, remote; :func:`tests.fixtures_hub.make_zoo`) in place of the real one."""
    import huggingface_hub.constants

    from scorezoo import zoo
    from tests.fixtures_hub import make_zoo
    from tests.helpers import tiny_unet_pipeline

    paths = make_zoo(tmp_path, tiny_unet_pipeline())
    monkeypatch.setattr(zoo, "BUNDLED_DIR", paths["bundled"])
    monkeypatch.setattr(zoo, "CARDS_DIR", paths["cards"])
    monkeypatch.setattr(zoo, "PUBLISHED_FILE", tmp_path / "no-published.json")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(paths["hub"]))
    return paths
