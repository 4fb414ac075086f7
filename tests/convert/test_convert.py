"""Converted checkpoints score exactly as the official code does, on checkpoints written by the official code.

The fixtures (tests/fixtures/official/, see its README) are small random networks saved by the authors' own training
loops, with the official network outputs and scores for a batch. Tolerance: max error <= 1e-4 of the largest value,
float32 (the two implementations order their float32 sums differently; measured errors are ~5e-7).
"""

import json
import pickle
import shutil
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch

from scorezoo import ScorePipeline, cli, zoo
from scorezoo.convert import (SCORE_SDE_CONFIGS, convert_score_flow, convert_score_sde, read_checkpoint,
                              read_official_config, score_flow_config)
from scorezoo.convert.configs import network_kwargs
from scorezoo.convert.score_flow import _leaf, flax_names
from scorezoo.models import NCSNpp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
SCORE_SDE = ["vp_ddpmpp", "subvp_ddpmpp_deep", "ve_ncsnpp", "vp_variant"]
SCORE_FLOW = ["vp_ddpmpp", "subvp_ddpmpp_deep", "ve_ncsnpp_variant"]
TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def relative_error(ours: torch.Tensor, official: np.ndarray) -> float:
    return float(np.abs(ours.numpy() - official).max() / np.abs(official).max())


def check_against_reference(pipe: ScorePipeline, folder: Path, weights: str) -> None:
    ref = np.load(folder / "reference.npz")
    x, t = torch.from_numpy(ref["x"]), torch.from_numpy(ref["t"])
    with torch.no_grad():
        output, score = pipe.model.network_output(x, t), pipe.model(x, t)
    assert relative_error(output, ref[f"output_{weights}"]) <= TOL
    # like with like: the official score divides by its own sigma_t (score_flow's high_precision first-order sigma
    # for t <= ~0.01; score_sde's float32 sqrt(1 - exp(..)) at t = 1e-5), so ours is rescaled by the ratio of sigmas
    sigma = pipe.sde.alpha_sigma(t)[1]
    ratio = (sigma / torch.from_numpy(ref["std"]))[:, None, None, None] if pipe.parameterization == "epsilon" else 1
    assert relative_error(score * ratio, ref[f"score_{weights}"]) <= TOL
    far = t >= 0.3  # where both sigmas agree to float32 rounding, the scores agree as they are
    assert relative_error(score[far], ref[f"score_{weights}"][far.numpy()]) <= TOL


@pytest.mark.parametrize("weights", ["ema", "raw"])
@pytest.mark.parametrize("name", SCORE_SDE)
def test_score_sde_checkpoints_score_as_the_official_code(name, weights):
    folder = FIXTURES / "score_sde" / name
    pipe = convert_score_sde(folder / "checkpoint_1.pth", folder / "config.json", weights=weights)
    check_against_reference(pipe, folder, weights)


@pytest.mark.parametrize("weights", ["ema", "raw"])
@pytest.mark.parametrize("name", SCORE_FLOW)
def test_score_flow_checkpoints_score_as_the_official_code(name, weights):
    folder = FIXTURES / "score_flow" / name
    pipe = convert_score_flow(folder, folder / "config.json", weights=weights)
    check_against_reference(pipe, folder, weights)


def test_the_sde_and_likelihood_settings_follow_the_config():
    sde_fixture = FIXTURES / "score_sde"
    vp = convert_score_sde(sde_fixture / "vp_ddpmpp/checkpoint_1.pth", sde_fixture / "vp_ddpmpp/config.json")
    assert vp.sde.config == {"type": "vp", "beta_min": 0.1, "beta_max": 20.0} and vp.eps == 1e-5
    assert (vp.parameterization, vp.time_label, vp.time_scale, vp.num_levels, vp.data_range) == (
        "epsilon", "t", 999.0, 256, (-1.0, 1.0))
    ve = convert_score_sde(sde_fixture / "ve_ncsnpp/checkpoint_1.pth", sde_fixture / "ve_ncsnpp/config.json")
    assert ve.sde.config == {"type": "ve", "sigma_min": 0.01, "sigma_max": 50.0}
    assert (ve.parameterization, ve.time_label, ve.data_range) == ("score", "sigma", (0.0, 1.0))
    flow_fixture = FIXTURES / "score_flow" / "subvp_ddpmpp_deep"
    subvp = convert_score_flow(flow_fixture, flow_fixture / "config.json")
    assert subvp.sde.name == "subvp" and subvp.eps == 1e-2  # score_flow evaluates sub-VP from smallest_time 1e-2


def test_cli_convert_then_from_pretrained(tmp_path, capsys):
    folder = FIXTURES / "score_sde" / "subvp_ddpmpp_deep"
    out = tmp_path / "converted"
    code = cli.main(["convert", "score_sde", str(folder / "checkpoint_1.pth"), "--config",
                     str(folder / "config.json"), "-o", str(out)])
    assert code == 0 and "from_pretrained" in capsys.readouterr().out
    pipe = ScorePipeline.from_pretrained(out)
    assert isinstance(pipe.network, NCSNpp)
    check_against_reference(pipe, folder, "ema")
    card = (out / "README.md").read_text()
    assert "checkpoint_1.pth" in card and "scorezoo convert score_sde" in card and "config.json" in card
    entry = zoo.folder_entry(out)
    assert entry.sde == "subvp" and entry.resolution == "8x8x3" and entry.parameters == 17_191


def test_score_flow_run_folder_names_its_config_and_mismatches_are_one_line(tmp_path, capsys):
    """A run folder is its config; the small fixture in a folder named like a full-size run is refused with the first
    mismatch named."""
    run = tmp_path / "cifar10_vp_likelihood_iw"
    shutil.copytree(FIXTURES / "score_flow" / "vp_ddpmpp" / "checkpoints", run / "checkpoints")
    with pytest.raises(ValueError, match=r"GaussianFourierProjection|Dense_0/kernel|config does not match") as e:
        convert_score_flow(run)
    assert "\n" not in str(e.value)
    code = cli.main(["convert", "score_flow", str(run), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "config does not match the weights" in err


def test_score_sde_missing_extra_and_misshapen_tensors(tmp_path):
    folder = FIXTURES / "score_sde" / "vp_ddpmpp"
    cfg = folder / "config.json"
    ckpt = read_checkpoint(folder / "checkpoint_1.pth")
    broken = {**ckpt, "model": dict(ckpt["model"])}
    del broken["model"]["module.all_modules.3.Conv_1.weight"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"lacks all_modules.3.Conv_1.weight"):
        convert_score_sde(tmp_path / "missing.pth", cfg, weights="raw")
    broken["model"] = {**ckpt["model"], "module.all_modules.99.weight": torch.zeros(1)}
    torch.save(broken, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"all_modules.99.weight \(and 0 more\)"):
        convert_score_sde(tmp_path / "extra.pth", cfg, weights="raw")
    with pytest.raises(ValueError, match=r"'ema' holds 154 shadow_params, the config's network has 138 trainable"):
        convert_score_sde(folder / "checkpoint_1.pth", FIXTURES / "score_sde/vp_variant/config.json")
    other = json.loads(cfg.read_text())
    other["model"]["nf"] = 8
    wanted = r"all_modules.0.weight has shape \(16, 4\), the config's network wants \(32, 8\)"
    with pytest.raises(ValueError, match=wanted):
        convert_score_sde(folder / "checkpoint_1.pth", other, weights="raw")


class Exploit:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "ema": Exploit(marker), "step": 0}, evil)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(Exploit(marker), f)
    for path in (evil, tmp_path / "plain.pkl"):
        with pytest.raises(ValueError, match="refused|not a readable torch checkpoint"):
            read_checkpoint(path)
        code = cli.main(["convert", "score_sde", str(path), "--config", "vp/cifar10_ddpmpp_continuous",
                         "-o", str(tmp_path / "out")])
        assert code == 1 and capsys.readouterr().err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_published_configs():
    for name, cfg in SCORE_SDE_CONFIGS.items():
        with torch.device("meta"):
            net = NCSNpp(**network_kwargs(cfg, "score_sde"))
        expected = {(False, False): 61_804_419, (True, False): 106_632_579, (False, True): 62_758_915,
                    (True, True): 107_587_075}[("deep" in name, name.startswith("ve/"))]
        assert sum(p.numel() for p in net.parameters()) == expected
    cfg = score_flow_config("imagenet32_deep_subvp_likelihood_iw")
    assert cfg["data"]["dataset"] == "ImageNet" and cfg["model"]["num_res_blocks"] == 8
    assert cfg["training"]["importance_weighting"] and cfg["training"]["smallest_time"] == 1e-2
    assert cfg["model"]["dropout"] == 0.0 and not cfg["data"]["random_flip"]
    with pytest.raises(ValueError, match="not a score_flow run name"):
        score_flow_config("cifar10_vp_iw_likelihood")
    with pytest.raises(ValueError, match="unknown score_sde config"):
        read_official_config("vp/cifar10_ddpm_continuous", "score_sde")


def test_old_name_of_read_official_config_warns():
    """``load_config`` is the training runner's (scorezoo.training.load_config); the reader of the official configs,
    renamed read_official_config, still answers to its old name from both places it was imported, with a warning."""
    import scorezoo.convert
    import scorezoo.convert.configs

    for module in (scorezoo.convert, scorezoo.convert.configs):
        with pytest.warns(DeprecationWarning, match="read_official_config"):
            assert module.load_config is read_official_config
        with pytest.raises(AttributeError):
            module.no_such_name


def official_shapes(name: str) -> dict:
    return json.loads((FIXTURES / "shapes" / name).read_text())


@pytest.mark.parametrize("config", ["vp/cifar10_ddpmpp_continuous", "ve/cifar10_ncsnpp_continuous"])
def test_full_size_networks_have_the_official_state_dict_layout(config):
    """Key for key and shape for shape, the official score_sde_pytorch state dict (minus 'module.' and 'sigmas') and
    the EMA's shadow_params in the order of our trainable parameters."""
    official = official_shapes(f"score_sde_{config.replace('/', '_')}.json")
    with torch.device("meta"):
        net = NCSNpp(**network_kwargs(SCORE_SDE_CONFIGS[config], "score_sde"))
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    theirs = {k[len("module."):]: v for k, v in official["model"].items() if k != "module.sigmas"}
    assert list(ours.items()) == list(theirs.items())
    assert [list(p.shape) for p in net.parameters() if p.requires_grad] == official["ema_shadow_params"]


def test_full_size_flax_names_cover_the_official_params_exactly():
    """Every official flax parameter of the deep sub-VP DDPM++ (score_flow) maps to one of ours, with its shape."""
    official = official_shapes("score_flow_subvp_cifar10_ddpmpp_deep_continuous.json")["params"]
    with torch.device("meta"):
        net = NCSNpp(**network_kwargs(score_flow_config("cifar10_deep_subvp"), "score_flow"))
    top = flax_names(net)
    mapped = {}
    for key, tensor in net.state_dict().items():
        owner, param = key.rsplit(".", 1)
        parts = owner.split(".")
        leaf, to_torch = _leaf(net.get_submodule(owner), param)
        path = "/".join((top[".".join(parts[:2])], *parts[2:], leaf))
        mapped[path] = list(to_torch(np.broadcast_to(np.float32(0), official[path])).shape) == list(tensor.shape)
    assert set(mapped) == set(official) and all(mapped.values())


@pytest.mark.slow
def test_full_size_random_checkpoints_convert(tmp_path):
    """Random full-size checkpoints in both official formats (shapes from the official code) convert."""
    g = torch.Generator().manual_seed(0)
    official = official_shapes("score_sde_vp_cifar10_ddpmpp_continuous.json")
    model = {k: torch.randn(v, generator=g) for k, v in official["model"].items()}
    torch.save({"optimizer": {}, "model": model, "ema": {"shadow_params": [torch.randn(s, generator=g) for s in
                official["ema_shadow_params"]]}, "step": 1}, tmp_path / "checkpoint_26.pth")
    pipe = convert_score_sde(tmp_path / "checkpoint_26.pth", "vp/cifar10_ddpmpp_continuous")
    assert sum(p.numel() for p in pipe.network.parameters()) == 61_804_419
    params = official_shapes("score_flow_subvp_cifar10_ddpmpp_deep_continuous.json")["params"]
    tree: dict = {}
    for path, shape in params.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.random.default_rng(len(path)).standard_normal(shape).astype(np.float32)

    def ext(obj):
        return msgpack.ExtType(1, msgpack.packb((obj.shape, obj.dtype.name, obj.tobytes()), use_bin_type=True))
    state = {"step": 1, "optimizer": {"target": tree, "state": {}}, "lr": 2e-4, "model_state": {},
             "ema_rate": 0.9999, "params_ema": tree, "rng": np.zeros(2, np.uint32)}
    run = tmp_path / "cifar10_deep_subvp_likelihood_iw" / "checkpoints"
    run.mkdir(parents=True)
    (run / "checkpoint_19").write_bytes(msgpack.packb(state, default=ext, use_bin_type=True))
    pipe = convert_score_flow(run.parent)
    assert sum(p.numel() for p in pipe.network.parameters()) == 106_632_579
