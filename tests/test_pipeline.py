"""ScorePipeline: save/load round trips (local folder, offline HF cache), sampling outputs, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import ScorePipeline
from scorezoo.zoo import ModelNotFoundError
from tests.helpers import fill_hf_cache, tiny_mlp_pipeline, tiny_unet_pipeline

ROOT = Path(__file__).resolve().parents[1]
DIGITS = np.array([[[0, 3, 16, 9, 0, 0, 0, 0]] * 8, [[0, 0, 5, 16, 12, 1, 0, 0]] * 8])


def _outputs(pipe):
    torch.manual_seed(0)
    x = torch.randn(2, *pipe.data_shape)
    s = pipe.score(x, 0.5)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(2, sampler="em", num_inference_steps=5, generator=torch.Generator().manual_seed(1),
                   output_type="pt").samples
    return s, samples


def test_save_load_round_trip_local(tmp_path):
    for pipe in (tiny_unet_pipeline(), tiny_mlp_pipeline()):
        pipe.save_pretrained(tmp_path / "m")
        assert sorted(p.name for p in (tmp_path / "m").rglob("*") if p.is_file()) == [
            "config.json", "diffusion_pytorch_model.safetensors", "pipeline_config.json"]
        loaded = ScorePipeline.from_pretrained(tmp_path / "m")
        assert loaded.config == pipe.config
        for a, b in zip(_outputs(pipe), _outputs(loaded)):
            assert torch.equal(a, b)


def test_bits_per_dim_identical_after_round_trip(tmp_path):
    pipe = tiny_unet_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    loaded = ScorePipeline.from_pretrained(str(tmp_path / "m"))
    # an untrained network is stiff: a fixed-step solve keeps this test about the round trip
    kw = dict(method="rk4", options={"step_size": 0.05})
    a = pipe.bits_per_dim(DIGITS, generator=torch.Generator().manual_seed(0), **kw)
    b = loaded.bits_per_dim(DIGITS, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a.bpd, b.bpd) and torch.equal(a.nfe, b.nfe)


def test_load_from_prefilled_hf_cache_offline(tmp_path):
    """A repo id resolves through huggingface_hub's cache with HF_HUB_OFFLINE=1, in a fresh process, to the
    same model; a short zoo name maps to the scorezoo namespace."""
    pipe = tiny_unet_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    fill_hf_cache(tmp_path / "m", tmp_path / "hub", "someone/tiny-digits")
    fill_hf_cache(tmp_path / "m", tmp_path / "hub", "scorezoo/tiny-zoo")
    code = ("import torch, sys; from scorezoo import ScorePipeline\n"
            "torch.set_num_threads(int(sys.argv[1]))  # bit-equal needs the same reduction order\n"
            "for name in sys.argv[2:]:\n"
            "    p = ScorePipeline.from_pretrained(name)\n"
            "    torch.manual_seed(0); x = torch.randn(2, 1, 8, 8)\n"
            "    torch.save(p.score(x, 0.5), name.replace('/', '_') + '.pt')\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code, str(torch.get_num_threads()), "someone/tiny-digits", "tiny-zoo"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    torch.manual_seed(0)
    expected = pipe.score(torch.randn(2, 1, 8, 8), 0.5)
    for f in ("someone_tiny-digits.pt", "tiny-zoo.pt"):
        assert torch.equal(torch.load(tmp_path / f, weights_only=True), expected)


def test_missing_model_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not found"):
        ScorePipeline.from_pretrained("nobody/no-such-model")
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        ScorePipeline.from_pretrained(str(tmp_path / "nothing-here"))


def test_corrupt_folders_are_refused(tmp_path):
    pipe = tiny_unet_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    w = tmp_path / "m" / "network" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        ScorePipeline.from_pretrained(tmp_path / "m")
    w.unlink()
    torch.save({"x": torch.zeros(1)}, tmp_path / "m" / "network" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="only pickle files"):
        ScorePipeline.from_pretrained(tmp_path / "m")
    # a config that does not match the weights
    pipe.save_pretrained(tmp_path / "n")
    cfg = json.loads((tmp_path / "n" / "network" / "config.json").read_text())
    cfg["block_out_channels"] = [8, 16]
    (tmp_path / "n" / "network" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="wrong shapes"):
        ScorePipeline.from_pretrained(tmp_path / "n")
    cfg["_class_name"] = "EvilRemoteCode"
    (tmp_path / "n" / "network" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown network class"):
        ScorePipeline.from_pretrained(tmp_path / "n")


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_sampling_output_types(output_type):
    pipe = tiny_unet_pipeline()
    pipe.set_progress_bar_config(disable=True)
    out = pipe(3, sampler="em", num_inference_steps=3, generator=torch.Generator().manual_seed(0),
               output_type=output_type)
    if output_type == "pil":
        assert len(out.images) == 3 and isinstance(out.images[0], Image.Image) and out.images[0].size == (8, 8)
    elif output_type == "np":
        assert out.images.shape == (3, 8, 8, 1) and 0 <= out.images.min() and out.images.max() <= 1
    else:
        assert out.images.shape == (3, 1, 8, 8) and 0 <= out.images.min() and out.images.max() <= 1
    assert out.samples.shape == (3, 1, 8, 8)


def test_sampled_images_round_trip_to_levels():
    """A sampled PIL image, scored again, is read back as the same levels the sampler produced."""
    from scorezoo.data import to_levels
    from scorezoo.dequantization import data_to_levels
    pipe = tiny_unet_pipeline()
    pipe.set_progress_bar_config(disable=True)
    out = pipe(2, sampler="em", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    levels, _ = to_levels(out.images, data_shape=pipe.data_shape, num_levels=pipe.num_levels)
    assert torch.equal(levels, data_to_levels(out.samples, num_levels=17, data_range=pipe.data_range))


def test_image_inputs_in_every_layout(tmp_path):
    """(B,H,W), (B,H,W,C), (B,C,H,W), PIL images and file paths of the same digits give the same bits/dim."""
    pipe = tiny_unet_pipeline()
    u8 = np.rint(DIGITS * 255 / 16).astype(np.uint8)
    paths = []
    for i, a in enumerate(u8):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    inputs = [DIGITS, DIGITS[..., None], DIGITS[:, None], torch.from_numpy(DIGITS),
              [Image.fromarray(a) for a in u8], paths, [str(p) for p in paths]]
    # a fixed-step solve: this test is about input layouts, not accuracy
    results = [pipe.bits_per_dim(x, generator=torch.Generator().manual_seed(0), method="euler",
                                 options={"step_size": 0.1}).bpd for x in inputs]
    for r in results[1:]:
        assert torch.equal(r, results[0])


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 9, 9), dtype=int), "does not fit"),
    (np.zeros((2, 3, 8, 8), dtype=int), "does not fit"),
    (np.full((2, 8, 8), np.nan), "NaN or inf"),
    (np.full((2, 8, 8), 17), r"\[0, 17\)"),
    (np.full((2, 8, 8), -1), r"\[0, 17\)"),
    (np.full((2, 8, 8), 1.5), "non-integer"),
    (np.zeros((0, 8, 8), dtype=int), "empty batch"),
    ([], "empty batch"),
    ({"a": 1}, "cannot read images"),
])
def test_bits_per_dim_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_unet_pipeline().bits_per_dim(bad)


def test_score_and_log_likelihood_bad_input():
    pipe = tiny_unet_pipeline()
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"t must lie in \[eps, T\]"):
        pipe.score(x, 0.0)
    with pytest.raises(ValueError, match=r"t must lie in \[eps, T\]"):
        pipe.score(x, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="has shape"):
        pipe.score(torch.zeros(2, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="has shape"):
        pipe.log_likelihood(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="NaN or inf"):
        pipe.log_likelihood(torch.full((1, 1, 8, 8), float("inf")))
    with pytest.raises(ValueError, match="empty batch"):
        pipe.log_likelihood(torch.zeros(0, 1, 8, 8))
    with pytest.raises(ValueError, match="num_repeats"):
        pipe.bits_per_dim(DIGITS, num_repeats=0)
    with pytest.raises(ValueError, match="continuous data"):
        tiny_mlp_pipeline().bits_per_dim(np.zeros((1, 2), dtype=int))
    with pytest.raises(ValueError, match="output_type"):
        pipe(1, output_type="jpeg")
    with pytest.raises(ValueError, match="batch_size"):
        pipe(0)


def test_calibrated_schedule_is_saved_loaded_and_used(tmp_path):
    """A calibrated schedule travels in pipeline_config.json and ``schedule="calibrated"`` uses it; a model
    without one, a bad schedule name or a corrupt schedule in the config give a clear ValueError."""
    pipe = tiny_mlp_pipeline()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="no calibrated likelihood schedule"):
        pipe.log_likelihood(x, schedule="calibrated")
    sch = pipe.calibrate_likelihood_schedule(x, target=0.05, max_steps=16, generator=torch.Generator().manual_seed(0))
    assert pipe.likelihood_schedule is sch and sch.num_calibration_samples == 8
    pipe.save_pretrained(tmp_path / "m")
    loaded = ScorePipeline.from_pretrained(tmp_path / "m")
    assert loaded.config == pipe.config and torch.equal(loaded.likelihood_schedule.times, sch.times)
    a = pipe.log_likelihood(x, schedule="calibrated", generator=torch.Generator().manual_seed(1))
    b = loaded.log_likelihood(x, schedule="calibrated", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.logp, b.logp) and a.nfe == sch.nfe
    with pytest.raises(ValueError, match="schedule must be 'calibrated'"):
        pipe.log_likelihood(x, schedule="fast")
    with pytest.raises(ValueError, match="its eps = 1e-05"):
        pipe.calibrate_likelihood_schedule(x, eps=1e-3)
    digits = tiny_unet_pipeline()
    with pytest.raises(ValueError, match="outside the model's data range.*uniform_dequantize"):
        digits.calibrate_likelihood_schedule(torch.randint(0, 17, (8, *digits.data_shape)).float(), target=10.0)
    with pytest.raises(ValueError, match="integer dtype.*uniform_dequantize"):
        digits.calibrate_likelihood_schedule(torch.randint(0, 17, (8, *digits.data_shape)))
    with pytest.raises(ValueError, match="eps must be a number"):
        pipe.calibrate_likelihood_schedule(x, eps="abc")
    # a schedule that misses its target is returned with a warning but does not replace the kept one
    with pytest.warns(UserWarning, match="keeps its previous likelihood_schedule"):
        missed = pipe.calibrate_likelihood_schedule(x, target=1e-9, initial_steps=1, max_steps=1, measure=False)
    assert missed.num_steps == 1 and pipe.likelihood_schedule is sch
    cfg_path = tmp_path / "m" / "pipeline_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["likelihood_schedule"]["times"] = [0.5, 0.2]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="pipeline_config.json.*increasing"):
        ScorePipeline.from_pretrained(tmp_path / "m")
