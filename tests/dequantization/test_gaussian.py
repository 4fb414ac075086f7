"""The bounds against a discrete distribution known in closed form.

Data ``x ~ N(mu, diag(s^2))`` in D = 2 dimensions, quantised to K = 4 levels per dimension on [-1, 1]; the model is
the exact score of that Gaussian (:class:`~scorezoo.models.GaussianScore`), so the model's discrete distribution is
``P(k) = prod_d [Phi((b_d - m_d)/s'_d) - Phi((a_d - m_d)/s'_d)]`` over the cell ``[a, b)`` of ``k`` (with the mean and
std of ``p_eps``, which the ODE scores). Every dequantizer bounds ``-log P(k)`` from above (Flow++ eq. 11); the best
``q(u | k)`` is the model's own density on the cell, which a trained flow should approach.
"""

import pytest
import torch

from scorezoo import ScorePipeline, VPSDE
from scorezoo.dequantization import VariationalDequantizer, data_to_levels
from scorezoo.dequantization.training import dequantization_loss
from scorezoo.models import GaussianScore
from tests.dequantization.test_variational import randomised

K = 4
MEAN = torch.tensor([-0.2, 0.3], dtype=torch.float64)
STD = torch.tensor([0.3, 0.45], dtype=torch.float64)
CELLS = torch.cartesian_prod(torch.arange(K), torch.arange(K))  # all 16 cells, (16, 2)
# the exact divergence in D = 2 and a tight solve: what is left is the dequantization noise
ODE = dict(estimator="ode", divergence="exact", num_repeats=32, rtol=1e-6, atol=1e-6, max_batch_size=1024)


def gaussian_pipeline() -> ScorePipeline:
    sde = VPSDE()
    return ScorePipeline(GaussianScore(sde, MEAN, torch.diag(STD**2)), sde, data_shape=(2,), num_levels=K,
                         parameterization="score", time_scale=1.0)


def true_bits_per_dim(pipe: ScorePipeline) -> torch.Tensor:
    """``-log2 P(k) / D`` for every cell: products of 1-D Gaussian cell masses of
    ``p_eps = N(a mu, a^2 s^2 + sigma^2)``."""
    a, s = pipe.sde.alpha_sigma(torch.tensor([pipe.eps], dtype=torch.float64))
    normal = torch.distributions.Normal(a * MEAN, torch.sqrt(a**2 * STD**2 + s**2))
    edges = torch.linspace(-1.0, 1.0, K + 1, dtype=torch.float64)
    mass = normal.cdf(edges[CELLS + 1]) - normal.cdf(edges[CELLS])
    return -torch.log2(mass).sum(1) / 2


def score_cells(pipe: ScorePipeline, dequantization: str) -> tuple[float, float]:
    """Mean over the 16 cells of their bits/dim, and its standard error (from each cell's error over its draws)."""
    res = pipe.bits_per_dim(CELLS.numpy(), generator=torch.Generator().manual_seed(1), dequantization=dequantization,
                            **ODE)
    return res.bpd.mean().item(), (res.stderr**2).sum().sqrt().item() / len(CELLS)


def test_uniform_and_any_variational_q_bound_the_true_discrete_nll():
    """A bound, not an estimate: uniform noise and even a random, untrained flow stay above -log2 P(k) / D. A sign
    error in log q (subtracting it) would put the random flow far below."""
    pipe = gaussian_pipeline()
    truth = true_bits_per_dim(pipe).mean().item()
    uniform, se_u = score_cells(pipe, "uniform")
    pipe.dequantizer = randomised(VariationalDequantizer(data_shape=(2,), num_levels=K, hidden_channels=8),
                                  scale=0.2).eval()
    random_q, se_r = score_cells(pipe, "variational")
    # 3 standard errors of the dequantization noise
    assert uniform > truth - 3 * se_u and random_q > truth - 3 * se_r, (truth, uniform, se_u, random_q, se_r)
    assert uniform - truth > 3 * se_u  # the uniform bound is loose here: cells as wide as the data's std


@pytest.mark.slow
def test_a_trained_q_closes_most_of_the_gap():
    """300 steps of the trainer's objective (the likelihood bound, one draw of u per image): the variational bound
    stays above the truth and closes most of the uniform bound's gap (97 % when this test was written; the uniform
    gap is 0.36 bits/dim)."""
    pipe = gaussian_pipeline()
    for p in pipe.model.parameters():
        p.requires_grad_(False)
    truth = true_bits_per_dim(pipe).mean().item()
    torch.manual_seed(0)
    q = VariationalDequantizer(data_shape=(2,), num_levels=K, hidden_channels=16, num_blocks=1)
    opt = torch.optim.Adam(q.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        levels = data_to_levels(MEAN + STD * torch.randn(256, 2, generator=g, dtype=torch.float64), num_levels=K)
        loss = dequantization_loss(q, pipe, levels, generator=g, num_time_points=4).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    uniform, se_u = score_cells(pipe, "uniform")
    pipe.dequantizer = q.eval()
    variational, se_v = score_cells(pipe, "variational")
    assert variational > truth - 3 * se_v, (truth, variational, se_v)
    closed = (uniform - variational) / (uniform - truth)
    # most of the gap; the ratio's own noise is dominated by the uniform bound's (se_u / gap ~ 0.1)
    assert closed > 0.75, (truth, uniform, variational, closed)
