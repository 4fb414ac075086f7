"""The training config: every key with its default and meaning, read from YAML and ``--key value`` overrides.

A config is the defaults (:data:`DEFAULTS`), updated by a YAML file, updated by command-line overrides, then
checked (:func:`check_config`). Nested keys are updated key by key (``--sde.type ve`` keeps ``sde.beta_max``);
a key that is not in :data:`DEFAULTS` is an error, with a suggestion.

This module imports neither torch nor pyyaml at import time, so that ``--help`` is instant; reading YAML needs
pyyaml (``pip install 'scorezoo[train]'``).
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import textwrap
from pathlib import Path

__all__ = ["DEFAULTS", "DESCRIPTIONS", "ConfigError", "MissingExtraError", "load_config", "check_config",
           "parse_overrides", "describe_keys", "require_train_extra"]

#: (key, default, one line on what it means): the single source of :data:`DEFAULTS`, :data:`DESCRIPTIONS` and --help
_KEYS: list[tuple[str, object, str]] = [
    ("name", None, "zoo name, e.g. vp-mle-digits (used by the model card and the Hub id)"),
    ("dataset", "digits", "data set: digits, photo_patches, photo_folder, image_folder, cifar10 or a 2-D toy "
                          "(scorezoo.datasets)"),
    ("data_dir", None, "folder of a photo_folder, image_folder or cifar10 data set (cifar10: null looks in "
                       "$SCOREZOO_CIFAR10, ./data/cifar10, ~/.cache/scorezoo/cifar10)"),
    ("data_shape", None, "[C, H, W] the pictures of an image_folder are resized to"),
    ("num_levels", None, "intensity levels of an image_folder (null: 256)"),
    ("dataset_options", {}, "options of the loader (photo_patches: patch_size, stride, scales, flips; "
                            "photo_folder: crop_size, scales, heldout_every, heldout_crop, num_crops)"),
    ("dequantize", True, "uniform dequantization of integer data, fresh noise at every step"),
    ("random_flip", False, "flip half of each batch horizontally (images; the official CIFAR-10 recipes)"),
    ("sde", {"type": "vp"}, "the SDE, as scorezoo.get_sde takes it (type vp | subvp | ve and its parameters)"),
    ("weighting", "likelihood-is", "loss weighting: score (sigma^2), likelihood (g^2, uniform t) or likelihood-is "
                                   "(g^2, importance-sampled t; MLE paper Sec. 5.1)"),
    ("eps", 1e-5, "time truncation of training and of the likelihoods"),
    ("parameterization", "epsilon", "what the network predicts: epsilon, x0 or score"),
    ("network", None, "network config with _class_name: UNet2DModel, NCSNpp or ScoreMLP, and its arguments"),
    ("batch_size", 128, "global batch per optimiser step, over all processes and accumulation steps"),
    ("gradient_accumulation_steps", 1, "micro-batches per optimiser step"),
    ("max_train_steps", 1000, "optimiser steps in all (a resumed run continues up to this step)"),
    ("max_train_minutes", None, "stop this session after this many minutes of training (checkpointed and exported at "
                                "the step reached; resume later with --resume_from_checkpoint latest); null: no limit"),
    ("learning_rate", 2e-4, "Adam's learning rate after the warm-up"),
    ("adam_betas", [0.9, 0.999], "Adam's betas"),
    ("adam_eps", 1e-8, "Adam's epsilon"),
    ("weight_decay", 0.0, "Adam's (L2) weight decay"),
    ("warmup_steps", 100, "steps of linear learning-rate warm-up"),
    ("max_grad_norm", 1.0, "gradient clipping: largest global gradient norm"),
    ("ema_decay", 0.999, "decay of the exponential moving average of the weights (evaluated and exported)"),
    ("mixed_precision", "no", "no | fp16 | bf16 (accelerate)"),
    ("seed", 0, "seed of the initialisation, the data order and every step's noise"),
    ("num_threads", None, "torch intra-op threads per process (null: torch's default)"),
    ("output_dir", "runs/default", "run folder: config.yaml, log.jsonl, checkpoints/, results.json, pipeline/"),
    ("overwrite", False, "start afresh in an output_dir that holds a run: deletes its checkpoints, log, results "
                         "and export first"),
    ("checkpointing_steps", 500, "save a checkpoint every this many steps (and at the last step)"),
    ("checkpoints_total_limit", 2, "keep the newest this many checkpoints"),
    ("init_from", None, "start from the weights of a saved pipeline or network folder (same network config), with "
                        "a fresh optimiser: to continue a model whose checkpoint was not kept"),
    ("resume_from_checkpoint", None, "continue a run: a checkpoint folder, or latest (the newest in output_dir)"),
    ("eval_steps", 1000, "score the held-out split every this many steps (0: never)"),
    ("eval_num_samples", 100, "held-out items of the periodic evaluation"),
    ("eval_batch_size", 64, "held-out items per ODE solve in the evaluations (larger on a GPU)"),
    ("final_eval", True, "at the end, score the whole held-out split (ODE and bound, final_eval_num_repeats draws "
                         "each): minutes on a CPU, ~5 min for the 300 digits; false skips it"),
    ("final_eval_num_repeats", 2, "dequantization draws per held-out image in the final evaluation"),
    ("eval_seed", 1234, "seed of the evaluation's dequantization noise, probes and time points (paired comparisons)"),
    ("ode_rtol", 1e-5, "relative tolerance of the evaluation's ODE solves"),
    ("ode_atol", 1e-5, "absolute tolerance of the evaluation's ODE solves"),
    ("bound_num_time_points", 1000, "time points per item of the likelihood bound in the evaluation"),
    ("log_every", 50, "append the mean loss to log.jsonl every this many steps"),
    ("progress_bar", True, "show a progress bar"),
    ("push_to_hub", False, "push the exported pipeline and card to the Hugging Face Hub at the end"),
    ("hub_model_id", None, "Hub repository (null: scorezoo/<name>)"),
    ("hub_private", None, "create the Hub repository private"),
    ("card", {}, "extra model-card fields: license, default_photo (true marks the zoo's default photo model), "
              "limitations (appended to the card's limitations)"),
]

#: every config key and its default; a config or override naming anything else is an error
DEFAULTS: dict = {k: d for k, d, _ in _KEYS}
#: one line per key on what it means (shown by ``--help``)
DESCRIPTIONS: dict[str, str] = {k: h for k, _, h in _KEYS}


class ConfigError(ValueError):
    """A bad config, data set, network or run folder, found before training starts."""


class MissingExtraError(ImportError):
    """A package of the ``train`` extra (accelerate, pyyaml) is not installed."""


def require_train_extra(module: str):
    """Import ``module`` (``"yaml"``, ``"accelerate"``) of the ``train`` extra, or say how to install it.

    Raises:
        MissingExtraError: one line naming the missing package and ``pip install 'scorezoo[train]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = {"yaml": "pyyaml"}.get(module, module)
        raise MissingExtraError(f"training needs {package}, which is not installed: pip install 'scorezoo[train]' "
                          f"({e}).") from None


def describe_keys(width: int = 120) -> str:
    """Every key as ``--key DEFAULT`` and its description, one entry per key, for ``--help``."""
    out = []
    for key, default, text in _KEYS:
        out.append(f"  --{key} {default if isinstance(default, str) else json.dumps(default)}")
        out.extend(textwrap.wrap(text, width=width, initial_indent=" " * 8, subsequent_indent=" " * 8))
    return "\n".join(out)


def _check_known(over: dict) -> None:
    for k in over:
        if k not in DEFAULTS:
            close = [d for d in DEFAULTS if d.split("_")[0] == k.split("_")[0]]
            raise ConfigError(f"unknown config key {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; known keys: {', '.join(DEFAULTS)}.")


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _numbers(value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; read such strings as floats, recursively."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and _FLOAT.match(value):
        return float(value)
    return value


def parse_overrides(args: list[str]) -> dict:
    """``["--a", "1", "--b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}`` (values parsed as YAML; a bare flag is true).

    Raises:
        ConfigError: an argument that is not ``--key value``, ``--key=value`` or a bare ``--flag``.
    """
    yaml = require_train_extra("yaml")
    out: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or len(a) == 2:
            raise ConfigError(f"cannot read argument {a!r}: overrides are --key value or --key=value.")
        if "=" in a:
            key, raw = a[2:].split("=", 1)
            i += 1
        elif i + 1 < len(args) and not re.match(r"^--[A-Za-z]", args[i + 1]):
            key, raw = a[2:], args[i + 1]
            i += 2
        else:  # a bare flag such as --push_to_hub
            key, raw = a[2:], "true"
            i += 1
        key = key.replace("-", "_") if "." not in key else key
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _numbers(value)
    return out


def _deep_update(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """The defaults, updated by the YAML file at ``path``, updated by ``overrides``; checked.

    Raises:
        ConfigError: a missing file, unreadable YAML, unknown keys, or values out of range.
        MissingExtraError: pyyaml is not installed (with the install command).
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        yaml = require_train_extra("yaml")
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found.")
        try:
            file_cfg = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from None
        if not isinstance(file_cfg, dict):
            raise ConfigError(f"{p} must hold a mapping of config keys, got {type(file_cfg).__name__}.")
        file_cfg = _numbers(file_cfg)
        _check_known(file_cfg)
        cfg = _deep_update(cfg, file_cfg)
    if overrides:
        _check_known(overrides)
        cfg = _deep_update(cfg, overrides)
    if cfg["mixed_precision"] is False:  # YAML 1.1 reads a bare `no` as false
        cfg["mixed_precision"] = "no"
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    """Check values that need no data. Raises :class:`ConfigError` with the offending key."""
    from ..datasets import DATASETS
    from ..losses import WEIGHTINGS
    from ..sde import get_sde

    if cfg["dataset"] not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg['dataset']!r}; choose one of {DATASETS}.")
    if cfg["weighting"] not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting {cfg['weighting']!r}; choose one of {WEIGHTINGS}.")
    if not isinstance(cfg["network"], dict) or "_class_name" not in cfg["network"]:
        raise ConfigError("network must be a mapping with _class_name (UNet2DModel or ScoreMLP) and its arguments.")
    try:
        sde = get_sde(cfg["sde"])
        sde.check_eps(cfg["eps"])
    except ValueError as e:
        raise ConfigError(f"sde/eps: {e}") from None
    for key in ("batch_size", "gradient_accumulation_steps", "max_train_steps", "checkpointing_steps",
                "log_every", "eval_num_samples", "final_eval_num_repeats"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {cfg[key]!r}.")
    if cfg["max_train_minutes"] is not None and not (isinstance(cfg["max_train_minutes"], (int, float))
                                                     and cfg["max_train_minutes"] > 0):
        raise ConfigError(f"max_train_minutes must be a positive number or null, got {cfg['max_train_minutes']!r}.")
    if not isinstance(cfg["eval_batch_size"], int) or cfg["eval_batch_size"] < 1:
        raise ConfigError(f"eval_batch_size must be a positive integer, got {cfg['eval_batch_size']!r}.")
    if not isinstance(cfg["eval_steps"], int) or cfg["eval_steps"] < 0:
        raise ConfigError(f"eval_steps must be an integer >= 0, got {cfg['eval_steps']!r}.")
    if cfg["mixed_precision"] not in ("no", "fp16", "bf16"):
        raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {cfg['mixed_precision']!r}.")
    for key in ("learning_rate", "max_grad_norm"):
        if not (isinstance(cfg[key], (int, float)) and cfg[key] > 0):
            raise ConfigError(f"{key} must be a positive number, got {cfg[key]!r}.")
    if not (0.0 <= float(cfg["ema_decay"]) < 1.0):
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']!r}.")
    for key in ("overwrite", "final_eval", "dequantize", "random_flip"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}.")
    if cfg["init_from"] and cfg["resume_from_checkpoint"]:
        raise ConfigError("init_from starts a run from saved weights and resume_from_checkpoint continues a run "
                          "from its checkpoint: give one of them.")
    if cfg["overwrite"] and cfg["resume_from_checkpoint"]:
        raise ConfigError("overwrite starts afresh and resume_from_checkpoint continues a run: give one of them.")
