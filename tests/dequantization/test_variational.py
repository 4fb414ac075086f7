"""The variational dequantizer: its density, its start at uniform dequantization, saving and loading with the pipeline,
and ``bits_per_dim(..., dequantization=...)``."""

import json
import math

import numpy as np
import pytest
import torch

from scorezoo import ScorePipeline
from scorezoo.dequantization import VariationalDequantizer, bits_per_dim, load_dequantizer
from tests.helpers import tiny_unet_pipeline


def randomised(q: VariationalDequantizer, seed: int = 0, scale: float = 0.05) -> VariationalDequantizer:
    """Every weight drawn at random (the zero-initialised last layers too), so that no coupling is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in q.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return q


@pytest.mark.parametrize("data_shape", [(1, 2, 2), (2, 2, 3), (3,)])
def test_log_q_is_the_change_of_variables_of_the_flow(data_shape):
    """``log q(u | k) = log p_v(v) - log|det du/dv|`` with ``v ~ U(0, 1)^D`` (``p_v = 1``): against the Jacobian by
    autograd, in float64, for random weights; and the per-dimension terms sum to it."""
    q = randomised(VariationalDequantizer(data_shape=data_shape, num_levels=5, hidden_channels=8)).double()
    g = torch.Generator().manual_seed(1)
    d = math.prod(data_shape)
    for i in range(3):
        k = torch.randint(0, 5, (1, *data_shape), generator=g)
        v = torch.rand(1, *data_shape, generator=g, dtype=torch.float64) * 0.98 + 0.01
        jac = torch.autograd.functional.jacobian(lambda w: q(k, w.view(1, *data_shape))[0].flatten(), v.flatten())
        u, log_q = q(k, v)
        assert jac.shape == (d, d) and ((u > 0) & (u < 1)).all()
        # float64 round-off only
        assert log_q.sum().item() == pytest.approx(-torch.linalg.slogdet(jac)[1].item(), abs=1e-9)
    # the context matters: other levels, other u for the same v
    assert not torch.allclose(q(torch.zeros_like(k), v)[0], q(torch.full_like(k, 4), v)[0])


def test_an_untrained_dequantizer_is_uniform_dequantization():
    """The last layers start at zero and the base is logistic, so u = sigmoid(logit(v)) = v and log q = 0."""
    q = VariationalDequantizer(data_shape=(1, 8, 8), num_levels=17)
    levels = torch.randint(0, 17, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    u, log_q = q.sample_and_log_prob(levels, generator=torch.Generator().manual_seed(3))
    v = torch.rand(levels.shape, generator=torch.Generator().manual_seed(3))
    # float32 round-off of sigmoid(logit(v))
    assert torch.allclose(u, v, atol=1e-6) and log_q.shape == (4,) and log_q.abs().max() < 1e-4
    per_dim = q.sample_and_log_prob(levels, generator=torch.Generator().manual_seed(3), per_dimension=True)[1]
    assert per_dim.shape == levels.shape


def test_bad_levels_are_refused_in_one_line():
    q = VariationalDequantizer(data_shape=(1, 4, 4), num_levels=5, hidden_channels=4)
    with pytest.raises(ValueError, match=r"levels must have shape \(B, 1, 4, 4\)"):
        q.sample_and_log_prob(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 5\)"):
        q.sample_and_log_prob(torch.full((2, 1, 4, 4), 5))
    with pytest.raises(ValueError, match="non-integer"):
        q.sample_and_log_prob(torch.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        q.sample_and_log_prob(torch.zeros(2, 1, 4, 4, dtype=torch.long), generator=0)
    with pytest.raises(ValueError, match="data_shape must be"):
        VariationalDequantizer(data_shape=(4, 4))


def test_bits_per_dim_adds_log_q_in_bits():
    """The known answer: log p = 0, [-1, 1], K = 256 gives the 7-bit offset; log q adds log q / (D ln 2)."""
    d = 12
    base = bits_per_dim(torch.zeros(1), d, num_levels=256)
    assert base.item() == pytest.approx(7.0)
    lq = torch.tensor([3.0 * d * math.log(2)])
    assert bits_per_dim(torch.zeros(1), d, num_levels=256, log_q=lq).item() == pytest.approx(10.0)


@pytest.fixture(scope="module")
def pipe_with_q():
    pipe = tiny_unet_pipeline()
    pipe.dequantizer = randomised(VariationalDequantizer(data_shape=(1, 8, 8), num_levels=17, hidden_channels=8,
                                                         num_blocks=1)).eval()
    return pipe


def test_the_dequantizer_saves_in_the_pipeline_folder_and_loads_with_it(pipe_with_q, tmp_path):
    pipe_with_q.save_pretrained(tmp_path)
    folder = tmp_path / "dequantizer"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = ScorePipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.dequantizer, VariationalDequantizer)
    levels = torch.randint(0, 17, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = pipe_with_q.dequantizer.sample_and_log_prob(levels, generator=torch.Generator().manual_seed(1))
        b = loaded.dequantizer.sample_and_log_prob(levels, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # plain diffusers reads it too
    assert VariationalDequantizer.from_pretrained(str(folder)).config.num_levels == 17
    # a pipeline without one has none
    plain = tmp_path / "plain"
    tiny_unet_pipeline().save_pretrained(plain)
    assert not (plain / "dequantizer").exists() and ScorePipeline.from_pretrained(plain).dequantizer is None


def test_loading_refuses_other_classes_pickles_and_other_data(pipe_with_q, tmp_path):
    pipe_with_q.save_pretrained(tmp_path)
    folder = tmp_path / "dequantizer"
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="unknown dequantizer class 'UNet2DModel'"):
        ScorePipeline.from_pretrained(tmp_path)
    (folder / "config.json").write_text(json.dumps({**cfg, "num_levels": 5}))
    with pytest.raises(ValueError, match=r"the dequantizer is for data of shape \(1, 8, 8\) with 5 levels; this model "
                                         r"takes \(1, 8, 8\) with 17 levels"):
        ScorePipeline.from_pretrained(tmp_path)
    (folder / "config.json").write_text(json.dumps({**cfg, "data_shape": [1, 4, 4]}))
    with pytest.raises(ValueError, match="wrong shapes"):
        ScorePipeline.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"the dequantizer is for data of shape \(1, 4, 4\)"):
        pipe_with_q.dequantizer = VariationalDequantizer(data_shape=(1, 4, 4), num_levels=17, hidden_channels=4)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle files"):
        ScorePipeline.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_dequantizer(folder)


def test_variational_is_refused_without_a_dequantizer_and_unknown_names_are_refused():
    pipe = tiny_unet_pipeline()
    levels = np.zeros((1, 8, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="no variational dequantizer: train one with python -m scorezoo.training "
                                         "--task dequantizer"):
        pipe.bits_per_dim(levels, dequantization="variational", estimator="bound", num_time_points=2)
    with pytest.raises(ValueError, match="dequantization must be one of"):
        pipe.bits_per_dim(levels, dequantization="flow")


def test_untrained_q_gives_the_uniform_answer_and_a_trained_one_adds_log_q(pipe_with_q):
    """Both dequantizations draw the same uniform numbers; with an untrained q (the identity) the answers agree, and
    with q's u and log q the ODE answer is -log p(x(u)) + log q(u | k) by hand."""
    pipe = tiny_unet_pipeline()
    levels = np.random.default_rng(0).integers(0, 17, (3, 8, 8))
    kw = dict(estimator="ode", num_repeats=2, method="euler", options={"step_size": 0.25}, divergence="exact")
    uni = pipe.bits_per_dim(levels, generator=torch.Generator().manual_seed(0), **kw)
    pipe.dequantizer = VariationalDequantizer(data_shape=(1, 8, 8), num_levels=17, hidden_channels=8).eval()
    var = pipe.bits_per_dim(levels, generator=torch.Generator().manual_seed(0), dequantization="variational", **kw)
    # float32 round-off of u = sigmoid(logit(v)) through the solve
    assert torch.allclose(uni.bpd_repeats, var.bpd_repeats, atol=1e-4)

    res = pipe_with_q.bits_per_dim(levels[:1], generator=torch.Generator().manual_seed(0),
                                   dequantization="variational", **{**kw, "num_repeats": 1})
    g = torch.Generator().manual_seed(0)
    v = torch.rand(1, 1, 8, 8, generator=g)
    with torch.no_grad():
        u, log_q = pipe_with_q.dequantizer(torch.as_tensor(levels[:1])[:, None], v)
    x = -1 + 2 * (torch.as_tensor(levels[:1])[:, None] + u) / 17
    logp = pipe_with_q.log_likelihood(x, generator=g, method="euler", options={"step_size": 0.25},
                                      divergence="exact").logp
    by_hand = bits_per_dim(logp.double(), 64, num_levels=17, log_q=log_q.double().sum((1, 2, 3)))
    assert res.bpd.item() == pytest.approx(by_hand.item(), abs=1e-5)  # float32 solve, the same arithmetic
    assert abs(res.bpd.item() - uni.bpd_repeats[0, 0].item()) > 1e-3  # q changed the answer


def test_per_dimension_maps_carry_log_q_and_tiled_pictures_work(pipe_with_q, tmp_path):
    from PIL import Image

    levels = np.random.default_rng(1).integers(0, 17, (2, 8, 8))
    kw = dict(num_repeats=2, method="euler", options={"step_size": 0.5}, divergence="exact", per_dimension=True,
              dequantization="variational")
    res = pipe_with_q.bits_per_dim(levels, generator=torch.Generator().manual_seed(0), **kw)
    # the map's mean is the image's bits/dim: log q is spread over the dimensions, not lost (up to float32 terms
    # summed in another order)
    assert torch.allclose(torch.stack([m.mean() for m in res.bits_maps]), res.bpd, rtol=1e-6)
    path = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 24), dtype=np.uint8)).save(path)
    tiled = pipe_with_q.bits_per_dim(path, tile=True, generator=torch.Generator().manual_seed(0), **kw)
    assert tiled.num_patches.item() == 6 and tiled.bits_maps[0].shape == (1, 16, 24)
    assert tiled.bits_maps[0].mean().item() == pytest.approx(tiled.bpd.item(), rel=1e-6)
