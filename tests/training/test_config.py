"""The training config and command line: every check fails before training, with one line naming the key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scorezoo.training import DEFAULTS, DESCRIPTIONS, main, parse_overrides
from scorezoo.training.config import ConfigError, load_config
from tests.training.helpers import TINY_UNET, tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]


def _main_fails(argv, capsys, match):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert match in err, err


def test_unknown_key_fails_with_a_suggestion(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path)), "--learning_rat", "1e-3"], capsys, "unknown config key")
    _main_fails(["--config", str(write_config(tmp_path, batchsize=3))], capsys, "'batchsize'")


def test_unknown_dataset_and_weighting_fail(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path, dataset="mnist"))], capsys, "unknown dataset 'mnist'")
    _main_fails(["--config", str(write_config(tmp_path)), "--weighting", "sigma"], capsys, "unknown weighting")


def test_empty_and_corrupt_image_folders_fail(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _main_fails(["--config", str(write_config(tmp_path)), "--data_dir", str(tmp_path / "empty")], capsys,
                "holds 0 picture")
    cfg = write_config(tmp_path)
    (tmp_path / "imgs" / "05.png").write_bytes(b"garbage")
    _main_fails(["--config", str(cfg)], capsys, "05.png")


def test_a_resolution_the_network_cannot_take_fails(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path, data_shape=[1, 7, 7]))], capsys, "divisible by 2")
    _main_fails(["--config", str(write_config(tmp_path, network={**TINY_UNET, "in_channels": 3}))], capsys,
                "1 channel")
    _main_fails(["--config", str(write_config(tmp_path, dataset="moons"))], capsys, "use ScoreMLP")
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_bad_values_fail(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path)), "--batch_size", "0"], capsys, "batch_size")
    _main_fails(["--config", str(write_config(tmp_path)), "--eps", "0"], capsys, "eps")
    _main_fails(["--config", str(write_config(tmp_path)), "--batch_size", "64"], capsys, "exceeds the 15")
    _main_fails(["--config", str(tmp_path / "nope.yaml")], capsys, "not found")
    _main_fails(["--config", str(write_config(tmp_path)), "--final_eval", "maybe"], capsys, "final_eval must be")


def test_overwrite_and_resume_conflict(tmp_path, capsys):
    _main_fails(["--config", str(write_config(tmp_path)), "--overwrite", "--resume_from_checkpoint", "latest"],
                capsys, "give one of them")


def test_overrides_are_yaml_and_may_be_nested():
    got = parse_overrides(["--a", "3", "--b.c=[1, 2]", "--push_to_hub", "--d", "-1e-3"])
    assert got == {"a": 3, "b": {"c": [1, 2]}, "push_to_hub": True, "d": -1e-3}


def test_nested_override_keeps_the_other_nested_keys(tmp_path):
    cfg = load_config(write_config(tmp_path, sde={"type": "vp", "beta_max": 15.0}), parse_overrides(["--sde.type",
                                                                                                        "subvp"]))
    assert cfg["sde"] == {"type": "subvp", "beta_max": 15.0}


def test_a_bare_no_means_no_mixed_precision(tmp_path):
    """YAML 1.1 reads ``no`` as false; ``--mixed_precision no`` (as accelerate spells it) must still work."""
    assert load_config(None, {**tiny_config(tmp_path), **parse_overrides(["--mixed_precision", "no"])}
                       )["mixed_precision"] == "no"
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(None, {**tiny_config(tmp_path), "mixed_precision": "fp8"})


def test_every_key_has_a_description():
    assert DESCRIPTIONS.keys() == DEFAULTS.keys()
    assert all(DESCRIPTIONS[k].strip() for k in DEFAULTS)


def test_help_lists_every_key_with_its_default_and_the_cost_of_the_final_evaluation():
    """Through the real entry point, as a user runs it (no torch needed for --help)."""
    out = subprocess.run([sys.executable, "-m", "scorezoo.training", "--help"], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    for key in DEFAULTS:
        assert f"  --{key} " in out, key
    assert "--max_train_steps 1000" in out and "--final_eval true" in out
    final = out[out.index("--final_eval true"):out.index("--final_eval_num_repeats")]
    assert "min" in final and "false skips it" in final
    assert "--overwrite false" in out and "--resume_from_checkpoint null" in out


def test_a_missing_train_extra_says_how_to_install_it():
    from scorezoo.training.config import MissingExtraError, require_train_extra

    with pytest.raises(MissingExtraError, match=r"pip install 'scorezoo\[train\]'"):
        require_train_extra("scorezoo_no_such_package")
    assert require_train_extra("yaml").safe_load("a: 1") == {"a": 1}
