"""NCSN++ / DDPM++: the published sizes, the details that are easy to get wrong, and its place in the pipeline.

Equality with the official networks on the same weights is tested in tests/convert/test_convert.py against outputs
of the official code itself."""

import pytest
import torch

from scorezoo import ScorePipeline, SubVPSDE, VESDE, VPSDE
from scorezoo.models import NCSNpp, ScoreModel, get_network_class
from scorezoo.models.ncsnpp import GROUPNORM_EPS, downsample_2d, upsample_2d

SMALL = dict(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)
NCSNPP_VE = dict(fir=True, progressive_input="residual", embedding_type="fourier", scale_by_sigma=True,
                 centered=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def randomized(net: NCSNpp, seed: int = 0) -> NCSNpp:
    """Non-zero everywhere (the official init leaves the output layers at 1e-10 scale)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("kwargs, count", [
    ({}, 61_804_419),                                   # vp/cifar10_ddpmpp_continuous (score_sde_pytorch)
    ({"num_res_blocks": 8}, 106_632_579),               # vp/cifar10_ddpmpp_deep_continuous
    (NCSNPP_VE, 62_758_915),                            # ve/cifar10_ncsnpp_continuous
    ({**NCSNPP_VE, "num_res_blocks": 8}, 107_587_075),  # ve/cifar10_ncsnpp_deep_continuous
])
def test_published_configs_have_the_official_parameter_counts(kwargs, count):
    """Counts printed by the official score_sde_pytorch NCSNpp of these configs (sum of p.numel())."""
    with torch.device("meta"):
        net = NCSNpp(**kwargs)
    assert sum(p.numel() for p in net.parameters()) == count


def test_groupnorm_eps_and_groups():
    """eps 1e-6 (flax's default): a wrong eps (torch's 1e-5) moves the output by only ~7e-5 relative, under the
    1e-4 tolerance of the equality tests, so it is checked here directly."""
    net = NCSNpp(**SMALL, resblock_type="ddpm", progressive="output_skip", progressive_input="input_skip")
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and GROUPNORM_EPS == 1e-6
    for m in norms:
        assert m.eps == 1e-6 and m.num_groups == min(m.num_channels // 4, 32)


def test_fir_resampling_with_a_box_kernel_is_average_pooling_and_nearest_upsampling():
    """With the kernel (1, 1) the FIR filters reduce to 2×2 averages and nearest-neighbour copies."""
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(downsample_2d(x, (1, 1)), torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(upsample_2d(x, (1, 1)), torch.nn.functional.interpolate(x, scale_factor=2))
    # the (1, 3, 3, 1) kernel preserves constants away from the zero-padded border
    ones = torch.ones(1, 1, 8, 8)
    torch.testing.assert_close(upsample_2d(ones, (1, 3, 3, 1))[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


def test_scale_by_sigma_divides_by_the_label_and_uncentered_data_are_mapped_to_minus_one_one():
    a = randomized(NCSNpp(**SMALL, **{**NCSNPP_VE, "scale_by_sigma": False, "centered": True}))
    b = NCSNpp(**SMALL, **NCSNPP_VE)
    b.load_state_dict(a.state_dict())
    b.eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.01, 1.0, 50.0])
    with torch.no_grad():
        torch.testing.assert_close(b(x, sigma), a(2 * x - 1, sigma) / sigma[:, None, None, None])


@pytest.mark.parametrize("kwargs, message", [
    ({"resblock_type": "resnet"}, "resblock_type"),
    ({"image_size": 12, "ch_mult": (1, 2, 2, 2)}, "divisible"),
    ({"scale_by_sigma": True}, "scale_by_sigma"),
    ({"nf": 6}, "GroupNorm"),
])
def test_bad_configs_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as e:
        NCSNpp(**{**SMALL, **kwargs})
    assert "\n" not in str(e.value)


def test_forward_checks_its_inputs():
    net = NCSNpp(**SMALL)
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        net(torch.zeros(1, 3, 16, 16), torch.ones(1))
    with pytest.raises(ValueError, match="one label per sample"):
        net(torch.zeros(2, 3, 8, 8), torch.ones(1))


class Recorder(torch.nn.Module):
    """Returns its input and remembers the labels it was given."""

    def forward(self, x, label):
        self.label = label
        return x


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()])
def test_time_label_sigma_feeds_sigma_t(sde):
    """The official continuous VE models see sigma_t (score_sde models/utils.py, get_score_fn)."""
    t = torch.tensor([1e-5, 0.3, 1.0])
    model = ScoreModel(Recorder(), sde, "score", time_label="sigma")
    model(torch.zeros(3, 2), t)
    torch.testing.assert_close(model.network.label, sde.alpha_sigma(t)[1])
    model = ScoreModel(Recorder(), sde, "score", time_scale=999.0)
    model(torch.zeros(3, 2), t)
    torch.testing.assert_close(model.network.label, 999.0 * t)
    with pytest.raises(ValueError, match="time_label"):
        ScoreModel(Recorder(), sde, time_label="log_sigma")


def test_pipeline_round_trip_keeps_the_network_and_the_time_label(tmp_path):
    assert get_network_class("NCSNpp") is NCSNpp
    net = randomized(NCSNpp(**SMALL, **NCSNPP_VE))
    pipe = ScorePipeline(net, VESDE(), data_shape=(3, 8, 8), data_range=(0.0, 1.0), parameterization="score",
                         time_label="sigma")
    pipe.save_pretrained(tmp_path)
    again = ScorePipeline.from_pretrained(tmp_path)
    assert isinstance(again.network, NCSNpp) and again.time_label == "sigma"
    x, t = torch.rand(2, 3, 8, 8), torch.tensor([0.1, 0.9])
    torch.testing.assert_close(again.score(x, t), pipe.score(x, t))
