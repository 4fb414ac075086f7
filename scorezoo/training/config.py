"""The training config: every key with its default and meaning, read from YAML and ``--key value`` overrides.

A config trains one task (the key ``task``: ``score`` or ``dequantizer``, :mod:`scorezoo.training.task`). Its keys
are the runner's (:data:`RUNNER_KEYS`: batch, optimiser, EMA, checkpoints, time limit, evaluation settings), the same
for every task, and the task's own (:data:`TASK_KEYS`), which may also give a runner key another default. A config is
the task's defaults (:func:`defaults`), updated by a YAML file, updated by command-line overrides, then checked
(:func:`check_config`). Nested keys are updated key by key (``--sde.type ve`` keeps ``sde.beta_max``); a key that the
task does not have is an error, with a suggestion (or the task it belongs to).

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

__all__ = ["DEFAULTS", "DESCRIPTIONS", "RUNNER_KEYS", "TASK_KEYS", "ConfigError", "MissingExtraError", "defaults",
           "load_config", "check_config", "parse_overrides", "describe_keys", "require_train_extra"]

#: (key, default, one line on what it means) of every task: what the runner (:mod:`scorezoo.training.loop`) reads
RUNNER_KEYS: list[tuple[str, object, str]] = [
    ("task", "score", "what is trained: score (a score model, scorezoo.training.score) or dequantizer (a variational "
                      "dequantizer for a frozen pretrained model, scorezoo.training.dequantizer)"),
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
    ("output_dir", "runs/default", "run folder: config.yaml, log.jsonl, checkpoints/, results.json and the export"),
    ("overwrite", False, "start afresh in an output_dir that holds a run: deletes its checkpoints, log, results "
                         "and export first"),
    ("checkpointing_steps", 500, "save a checkpoint every this many steps (and at the last step)"),
    ("checkpoints_total_limit", 2, "keep the newest this many checkpoints"),
    ("resume_from_checkpoint", None, "continue a run: a checkpoint folder, or latest (the newest in output_dir)"),
    ("eval_steps", 1000, "score the held-out split every this many steps (0: never)"),
    ("eval_num_samples", 100, "held-out items of the periodic evaluation"),
    ("eval_batch_size", 64, "held-out items per ODE solve in the evaluations (larger on a GPU)"),
    ("final_eval", True, "at the end, score the held-out split with the EMA weights (score: ODE and bound; "
                         "dequantizer: uniform vs variational, paired): minutes on a CPU, ~5 min for the 300 "
                         "digits; false skips it"),
    ("final_eval_num_samples", None, "held-out items of the final evaluation, spread over the split (null: all)"),
    ("final_eval_num_repeats", 2, "dequantization draws per held-out image in the final evaluation"),
    ("eval_seed", 1234, "seed of the evaluation's dequantization noise, probes and time points (paired comparisons)"),
    ("ode_rtol", 1e-5, "relative tolerance of the evaluation's ODE solves"),
    ("ode_atol", 1e-5, "absolute tolerance of the evaluation's ODE solves"),
    ("bound_num_time_points", 1000, "time points per item of the likelihood bound in the evaluation"),
    ("log_every", 50, "append the mean loss to log.jsonl every this many steps"),
    ("progress_bar", True, "show a progress bar"),
]

#: each task's own keys, and runner keys it gives another default (listed again, with the task's meaning)
TASK_KEYS: dict[str, list[tuple[str, object, str]]] = {
    "score": [
        ("name", None, "zoo name, e.g. vp-mle-digits (used by the model card and the Hub id)"),
        ("dataset", "digits", "data set: digits, photo_patches, photo_folder, image_folder, cifar10 or a 2-D toy "
                              "(scorezoo.datasets)"),
        ("data_dir", None, "folder of a photo_folder, image_folder or cifar10 data set (cifar10: null looks in "
                           "$SCOREZOO_CIFAR10, ./data/cifar10, ~/.cache/scorezoo/cifar10)"),
        ("data_shape", None, "[C, H, W] the pictures of an image_folder are resized to"),
        ("num_levels", None, "intensity levels of an image_folder (null: 256)"),
        ("dataset_options", {}, "options of the loader (photo_patches: patch_size, stride, scales, flips; "
                                "photo_folder: crop_size, scales, heldout_every, heldout_crop, num_crops)"),
        ("max_tile_size", None, "photos with a fully convolutional network (no attention): score a picture whole up "
                                "to this side, else in the fewest equal tiles of at most this side (null: tiles of "
                                "the training crop)"),
        ("dequantize", True, "uniform dequantization of integer data, fresh noise at every step"),
        ("random_flip", False, "flip half of each batch horizontally (images; the official CIFAR-10 recipes)"),
        ("sde", {"type": "vp"}, "the SDE, as scorezoo.get_sde takes it (type vp | subvp | ve and its parameters)"),
        ("weighting", "likelihood-is", "loss weighting: score (sigma^2), likelihood (g^2, uniform t) or "
                                       "likelihood-is (g^2, importance-sampled t; MLE paper Sec. 5.1)"),
        ("eps", 1e-5, "time truncation of training and of the likelihoods"),
        ("parameterization", "epsilon", "what the network predicts: epsilon, x0 or score"),
        ("network", None, "network config with _class_name: UNet2DModel, NCSNpp or ScoreMLP, and its arguments"),
        ("init_from", None, "start from the weights of a saved pipeline or network folder (same network config), "
                            "with a fresh optimiser: to continue a model whose checkpoint was not kept"),
        ("push_to_hub", False, "push the exported pipeline and card to the Hugging Face Hub at the end"),
        ("hub_model_id", None, "Hub repository (null: scorezoo/<name>)"),
        ("hub_private", None, "create the Hub repository private"),
        ("card", {}, "extra model-card fields: license, default_photo (true marks the zoo's default photo model), "
                     "limitations (appended to the card's limitations)"),
    ],
    "dequantizer": [
        ("pretrained", "vp-mle-digits", "the frozen score model: zoo name, pipeline folder or Hub id"),
        ("dataset", None, "data set (null: the one the model's config names, as it was trained on)"),
        ("data_dir", None, "folder of an image_folder or cifar10 data set"),
        ("dataset_options", {}, "options of the loader, as in the model's training config (photo_patches: "
                                "patch_size, stride, scales, flips)"),
        ("hidden_channels", 32, "VariationalDequantizer: channels of its convolutional networks"),
        ("num_couplings", 4, "VariationalDequantizer: coupling layers"),
        ("num_blocks", 2, "VariationalDequantizer: residual blocks per network"),
        ("num_components", 4, "VariationalDequantizer: logistic components per coupling"),
        ("num_time_points", 1, "importance-sampled times of the likelihood bound per image and step"),
        ("final_eval_estimators", ["bound", "ode"], "estimators of the final evaluation: bound and/or ode"),
        ("ode_schedule", None, "the final ODE evaluation: null (adaptive dopri5 at ode_rtol/ode_atol) or calibrated "
                               "(the model's schedule)"),
        ("batch_size", 64, "images per optimiser step, over all processes and accumulation steps"),
        ("learning_rate", 1e-3, "Adam's learning rate after the warm-up"),
        ("ema_decay", 0.99, "decay of the EMA of the dequantizer's weights (score_flow's deq.ema_rate)"),
        ("output_dir", "runs/deq", "run folder: config.yaml, log.jsonl, checkpoints/, results.json, dequantizer/ "
                                   "(the EMA weights) and pipeline/ (the frozen model with them)"),
        ("checkpointing_steps", 100, "save a checkpoint every this many steps (and at the last step)"),
        ("eval_steps", 0, "held-out bound, uniform vs variational, every this many steps (0: never)"),
        ("eval_num_samples", 64, "held-out images of the periodic evaluation"),
        ("final_eval_num_repeats", 4, "dequantization draws per held-out image in the final evaluation"),
        ("log_every", 25, "append the mean loss (bits/dim) to log.jsonl every this many steps"),
    ],
}


class ConfigError(ValueError):
    """A bad config, data set, network or run folder, found before training starts."""


class MissingExtraError(ImportError):
    """A package of the ``train`` extra (accelerate, pyyaml) is not installed."""


def _keys(task: str) -> dict[str, tuple[object, str]]:
    """``{key: (default, meaning)}`` of ``task``: the runner's keys, then the task's (whose entries win)."""
    if task not in TASK_KEYS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASK_KEYS)}.")
    return {k: (d, h) for k, d, h in RUNNER_KEYS + TASK_KEYS[task]}


def defaults(task: str = "score") -> dict:
    """Every config key of ``task`` with its default (a fresh copy).

    Raises:
        ConfigError: an unknown task.
    """
    return copy.deepcopy({k: task if k == "task" else d for k, (d, _) in _keys(task).items()})


#: every config key of a score model's training and its default; a config naming anything else is an error
DEFAULTS: dict = defaults("score")
#: one line per key of :data:`DEFAULTS` on what it means (shown by ``--help``)
DESCRIPTIONS: dict[str, str] = {k: h for k, (_, h) in _keys("score").items()}


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


def _describe(key: str, default, text: str, width: int) -> list[str]:
    return [f"  --{key} {default if isinstance(default, str) else json.dumps(default)}",
            *textwrap.wrap(text, width=width, initial_indent=" " * 8, subsequent_indent=" " * 8)]


def describe_keys(width: int = 120) -> str:
    """Every key as ``--key DEFAULT`` and its description, for ``--help``: the runner's keys, then each task's."""
    out = ["keys of every task:"]
    for key, default, text in RUNNER_KEYS:
        out += _describe(key, default, text, width)
    for task, keys in TASK_KEYS.items():
        out += ["", f"keys of task {task} (--task {task}; a runner key listed again has another default here):"]
        for key, default, text in keys:
            out += _describe(key, default, text, width)
    return "\n".join(out)


def _check_known(over: dict, task: str) -> None:
    known = _keys(task)
    for k in over:
        if k in known:
            continue
        other = [t for t in TASK_KEYS if t != task and k in _keys(t)]
        if other:
            raise ConfigError(f"config key {k!r} belongs to task {other[0]}, and this config trains task {task}: "
                              f"give task: {other[0]} (--task {other[0]}) or remove {k!r}.")
        close = [d for d in known if d.split("_")[0] == k.split("_")[0]]
        raise ConfigError(f"unknown config key {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                          + f"; the keys of task {task}: {', '.join(known)}.")


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


def load_config(path: str | Path | None, overrides: dict | None = None, task: str | None = None) -> dict:
    """The task's defaults, updated by the YAML file at ``path``, updated by ``overrides``; checked.

    Args:
        path: a YAML mapping of config keys, or None (the defaults and the overrides alone).
        overrides: config keys that win over the file's (nested mappings are updated key by key).
        task: the task of a config that names none in the file or the overrides (None: ``score``;
            ``train/train_dequantizer.py`` gives ``dequantizer``).

    Raises:
        ConfigError: a missing file, unreadable YAML, an unknown task or key, or values out of range.
        MissingExtraError: pyyaml is not installed (with the install command).
    """
    file_cfg: dict = {}
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
    overrides = overrides or {}
    name = overrides.get("task", file_cfg.get("task", task or "score"))
    cfg = defaults(name)
    for layer in (file_cfg, overrides):
        _check_known(layer, name)
        cfg = _deep_update(cfg, layer)
    if cfg["mixed_precision"] is False:  # YAML 1.1 reads a bare `no` as false
        cfg["mixed_precision"] = "no"
    check_config(cfg)
    return cfg


def _positive_ints(cfg: dict, keys: tuple[str, ...]) -> None:
    from ..utils import is_int

    for key in keys:
        if not is_int(cfg[key]) or cfg[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {cfg[key]!r}.")


def _positive_numbers(cfg: dict, keys: tuple[str, ...]) -> None:
    from ..utils import is_real

    for key in keys:
        if not is_real(cfg[key]) or cfg[key] <= 0:
            raise ConfigError(f"{key} must be a positive number, got {cfg[key]!r}.")


def _booleans(cfg: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}.")


def check_config(cfg: dict) -> None:
    """Check the values of a config (every key of its task) that need no data: the runner's, then the task's.

    Raises:
        ConfigError: one line naming the offending key and what it takes.
    """
    from ..utils import is_int

    _keys(cfg["task"])
    _positive_ints(cfg, ("batch_size", "gradient_accumulation_steps", "max_train_steps", "checkpointing_steps",
                         "checkpoints_total_limit", "log_every", "eval_num_samples", "eval_batch_size",
                         "final_eval_num_repeats", "bound_num_time_points"))
    _positive_numbers(cfg, ("learning_rate", "max_grad_norm", "ode_rtol", "ode_atol"))
    _booleans(cfg, ("overwrite", "final_eval", "progress_bar"))
    if cfg["max_train_minutes"] is not None:
        _positive_numbers(cfg, ("max_train_minutes",))
    if cfg["final_eval_num_samples"] is not None:
        _positive_ints(cfg, ("final_eval_num_samples",))
    if not is_int(cfg["eval_steps"]) or cfg["eval_steps"] < 0:
        raise ConfigError(f"eval_steps must be an integer >= 0, got {cfg['eval_steps']!r}.")
    if cfg["num_threads"] is not None and (not is_int(cfg["num_threads"]) or cfg["num_threads"] < 0):
        raise ConfigError(f"num_threads must be a positive integer or null, got {cfg['num_threads']!r}.")
    if cfg["mixed_precision"] not in ("no", "fp16", "bf16"):
        raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {cfg['mixed_precision']!r}.")
    if not (0.0 <= float(cfg["ema_decay"]) < 1.0):
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']!r}.")
    if cfg["overwrite"] and cfg["resume_from_checkpoint"]:
        raise ConfigError("overwrite starts afresh and resume_from_checkpoint continues a run: give one of them.")
    _TASK_CHECKS[cfg["task"]](cfg)


def _check_score(cfg: dict) -> None:
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
    _booleans(cfg, ("dequantize", "random_flip", "push_to_hub"))
    if cfg["init_from"] and cfg["resume_from_checkpoint"]:
        raise ConfigError("init_from starts a run from saved weights and resume_from_checkpoint continues a run "
                          "from its checkpoint: give one of them.")


def _check_dequantizer(cfg: dict) -> None:
    from ..datasets import DATASETS
    from ..utils import is_int

    if not cfg["pretrained"] or not isinstance(cfg["pretrained"], str):
        raise ConfigError(f"pretrained must name the frozen model (zoo name, folder or Hub id), got "
                          f"{cfg['pretrained']!r}.")
    if cfg["dataset"] is not None and cfg["dataset"] not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg['dataset']!r}; choose one of {DATASETS}, or null for the model's.")
    _positive_ints(cfg, ("hidden_channels", "num_couplings", "num_components", "num_time_points"))
    if not is_int(cfg["num_blocks"]) or cfg["num_blocks"] < 0:
        raise ConfigError(f"num_blocks must be an integer >= 0, got {cfg['num_blocks']!r}.")
    estimators = cfg["final_eval_estimators"]
    if not isinstance(estimators, list) or set(estimators) - {"bound", "ode"}:
        raise ConfigError(f"final_eval_estimators must be a list of 'bound' and 'ode', got {estimators!r}.")
    if cfg["ode_schedule"] not in (None, "calibrated"):
        raise ConfigError(f"ode_schedule must be null (adaptive) or 'calibrated', got {cfg['ode_schedule']!r}.")


#: the checks of each task's own keys
_TASK_CHECKS = {"score": _check_score, "dequantizer": _check_dequantizer}
