"""Per-sample generators (a list of ``torch.Generator``, one per row): each sample's random numbers, and so its
answer, depend on its own generator alone, not on its batch mates, the batch size or its place in the batch."""

import pytest
import torch

from scorezoo import VPSDE
from scorezoo.dequantization import uniform_dequantize
from scorezoo.evaluation import draw_seed
from scorezoo.likelihood import likelihood_bound, log_likelihood
from scorezoo.likelihood.divergence import draw_probes
from scorezoo.utils import check_generator, generator_rows, rand, randint, randn
from scorezoo.models import GaussianScore
from tests.conftest import gaussian_params
from tests.helpers import tiny_unet_pipeline


pytestmark = pytest.mark.usefixtures("one_thread")


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("draw", [randn, rand, lambda shape, **kw: randint(5, shape, **kw)])
def test_each_row_comes_from_its_own_generator_alone(draw):
    batch = draw((3, 2, 4), generator=gens(10, 11, 12))
    for row, seed in enumerate((10, 11, 12)):
        assert torch.equal(batch[row], draw((2, 4), generator=torch.Generator().manual_seed(seed)))
    # the same generator seed gives the same row in any batch, at any place
    assert torch.equal(draw((2, 2, 4), generator=gens(12, 10))[0], batch[2])
    # and different seeds give different rows, so the comparisons above can fail
    assert not torch.equal(batch[0], batch[1])


def test_one_generator_for_the_batch_is_unchanged():
    """A single generator draws the whole batch in one call, as before per-sample generators existed."""
    assert torch.equal(randn((3, 5), generator=torch.Generator().manual_seed(0)),
                       torch.randn((3, 5), generator=torch.Generator().manual_seed(0)))


def test_bad_generator_lists_are_one_clear_error():
    with pytest.raises(ValueError, match="one per sample: got 2 for a batch of 3"):
        randn((3, 4), generator=gens(0, 1))
    with pytest.raises(ValueError, match="list of them"):
        check_generator([torch.Generator(), 3])
    with pytest.raises(ValueError, match="one per sample"):
        log_likelihood(lambda x, t: -x, VPSDE(), torch.zeros(3, 4), generator=gens(0, 1), method="euler",
                       options={"step_size": 0.5})


def test_generator_rows_selects_per_sample_generators():
    g = gens(0, 1)
    assert generator_rows(g, [1, 1, 0]) == [g[1], g[1], g[0]]
    single = torch.Generator()
    assert generator_rows(single, [0, 5]) is single and generator_rows(None, [0]) is None


def test_dequantization_and_probes_per_sample():
    k = torch.randint(0, 17, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    x = uniform_dequantize(k, num_levels=17, generator=gens(5, 6, 7))
    assert torch.equal(x[1:2], uniform_dequantize(k[1:2], num_levels=17, generator=gens(6)))
    v = draw_probes(x, "rademacher", 2, gens(5, 6, 7))
    assert v.shape == (2, 3, 1, 4, 4)
    assert torch.equal(v[:, 2], draw_probes(x[2:], "rademacher", 2, gens(7))[:, 0])
    g = draw_probes(x, "gaussian", 3, gens(5, 6, 7))
    assert torch.equal(g[:, 0], draw_probes(x[:1], "gaussian", 3, gens(5))[:, 0])


def test_log_likelihood_of_a_sample_does_not_depend_on_its_batch():
    """Closed-form Gaussian score on fixed steps with Hutchinson probes: a sample's log-density is the same alone
    and in a batch, given its own generator."""
    sde = VPSDE()
    mean, cov = gaussian_params(dim=8)
    score = GaussianScore(sde, mean, cov)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(eps=1e-3, method="euler", options={"step_size": 0.1})
    batch = log_likelihood(score, sde, x, generator=gens(0, 1, 2, 3), **kw).logp
    alone = log_likelihood(score, sde, x[2:3], generator=gens(2), **kw).logp
    # float64 rounding of the score's batched matrix product: ~1e-15 relative
    assert batch[2].item() == pytest.approx(alone.item(), rel=1e-12, abs=0)
    # the probes matter (a one-probe estimate differs from seed to seed), so the comparison can fail
    assert log_likelihood(score, sde, x[2:3], generator=gens(9), **kw).logp.item() != alone.item()


def test_likelihood_bound_per_sample():
    sde = VPSDE()
    mean, cov = gaussian_params(dim=8)
    score = GaussianScore(sde, mean, cov)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(num_time_points=16, num_decoder_samples=4, max_batch_size=5)  # chunks cut across samples
    batch = likelihood_bound(score, sde, x, generator=gens(0, 1, 2), **kw).nll
    alone = likelihood_bound(score, sde, x[1:2], generator=gens(1), **{**kw, "max_batch_size": 7}).nll
    assert batch[1].item() == pytest.approx(alone.item(), rel=1e-12, abs=0)  # float64 rounding, as above
    assert likelihood_bound(score, sde, x[1:2], generator=gens(4), **kw).nll.item() != alone.item()


def test_bits_per_dim_with_a_generator_per_image_and_draw():
    """``generator[i * K + j]`` draws image i's draw j: the image's numbers are the same scored alone or with
    others, whatever ``max_batch_size``, up to the float rounding of batched network kernels."""
    pipe = tiny_unet_pipeline()
    k = torch.randint(0, 17, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    kw = dict(num_repeats=2, method="euler", options={"step_size": 0.5})
    together = pipe.bits_per_dim(k, generator=gens(*range(6)), **kw).bpd_repeats
    alone = pipe.bits_per_dim(k[1:2], generator=gens(2, 3), max_batch_size=1, **kw).bpd_repeats
    # the tiny network's batched and single kernels differ in float32 rounding: ~1e-7 relative, ~1e-5 bits/dim
    # here, where the untrained network gives ~70 bits/dim
    torch.testing.assert_close(alone[:, 0], together[:, 1], rtol=1e-5, atol=0)
    other = pipe.bits_per_dim(k[1:2], generator=gens(8, 9), **kw).bpd_repeats
    assert (other - alone).abs().max() > 1e-3  # other seeds, other noise: the check above can fail
    with pytest.raises(ValueError, match="got 2 for a batch of 6"):
        pipe.bits_per_dim(k, generator=gens(0, 1), **kw)


def test_draw_seed_depends_on_seed_index_and_draw_alone():
    assert draw_seed(0, 5, 1) == draw_seed(0, 5, 1)
    seeds = {draw_seed(s, i, j) for s in range(3) for i in range(50) for j in range(3)}
    assert len(seeds) == 3 * 50 * 3
    assert all(0 <= s < 2**63 for s in seeds)
