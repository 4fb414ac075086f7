"""Train a score-based model with the MLE paper's objective, with accelerate.

    accelerate launch train/train_mle.py --config train/configs/vp-mle-digits.yaml [--key value ...]
    python train/train_mle.py --config train/configs/vp-mle-digits.yaml --max_train_steps 100
    accelerate launch --multi_gpu --num_processes 2 train/train_mle.py --config ...   # data-parallel, also on CPU

Any config key can be overridden on the command line (``--max_train_steps 100``, ``--sde.type ve``,
``--network.block_out_channels "[32, 64]"``; values are read as YAML). Unknown keys are an error.

What it does, in order:

1. reads and checks the config, the data set and the network (a dry forward pass) before any training;
2. trains with :func:`scorezoo.losses.dsm_loss` (Song, Durkan, Murray & Ermon 2021, eq. 7; weighting ``score``,
   ``likelihood`` or ``likelihood-is``), Adam with linear warm-up, gradient clipping, an EMA of the weights,
   mixed precision, gradient accumulation and data parallelism through accelerate;
3. every ``checkpointing_steps`` saves ``output_dir/checkpoints/checkpoint-<step>`` with
   ``accelerator.save_state`` (model, optimiser, scheduler, EMA, RNG states and the step);
   ``--resume_from_checkpoint latest`` continues from the newest one;
4. every ``eval_steps`` scores the held-out split (ODE and bound bits/dim, or nats/point for 2-D data) with the
   EMA weights and logs it with the loss to ``output_dir/log.jsonl``;
5. at the end exports the EMA weights with ``ScorePipeline.save_pretrained`` to ``output_dir/pipeline`` with a
   model card (``train/cards.py``), a final evaluation in ``output_dir/results.json``, and optionally pushes to
   the Hub.

Determinism: the data order of epoch ``e`` is ``randperm(N, seed + e)`` and every step's dequantization noise,
times and noises come from a generator seeded with ``(seed, step)``. Both are functions of the step alone, and the
step is checkpointed, so a run killed at any step (mid-epoch too) resumes with the same batches. The global batch
is drawn in full and then sliced per process and per accumulation micro-batch, so its noise does not depend on
the number of processes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from scorezoo import ScorePipeline, get_sde
from scorezoo.datasets import DATASETS, TrainingData, load_dataset
from scorezoo.dequantization import levels_to_data, uniform_dequantize
from scorezoo.losses import WEIGHTINGS, dsm_loss, sample_time
from scorezoo.models import ScoreModel, build_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cards import render_card  # noqa: E402

#: every config key and its default; a config or override naming anything else is an error
DEFAULTS: dict = {
    "name": None,                      # zoo name, e.g. vp-mle-digits (used by the card and the Hub id)
    "dataset": "digits",               # one of scorezoo.datasets.DATASETS
    "data_dir": None,                  # folder of image_folder / cifar10
    "data_shape": None,                # [C, H, W] for image_folder
    "num_levels": None,                # levels for image_folder (default 256)
    "dataset_options": {},             # loader options (photo_patches: patch_size, stride, scales, flips)
    "dequantize": True,                # uniform dequantization of integer data at every step
    "random_flip": False,              # horizontal flips of half of each batch (images; the official CIFAR-10 recipes)
    "sde": {"type": "vp"},             # scorezoo.get_sde config
    "weighting": "likelihood-is",      # score | likelihood | likelihood-is
    "eps": 1e-5,                       # time truncation of training and likelihoods
    "parameterization": "epsilon",
    "network": None,                   # scorezoo network config with _class_name
    "batch_size": 128,                 # global batch per optimiser step
    "gradient_accumulation_steps": 1,
    "max_train_steps": 1000,
    "learning_rate": 2e-4,
    "adam_betas": [0.9, 0.999],
    "adam_eps": 1e-8,
    "weight_decay": 0.0,
    "warmup_steps": 100,
    "max_grad_norm": 1.0,
    "ema_decay": 0.999,
    "mixed_precision": "no",           # no | fp16 | bf16 (accelerate)
    "seed": 0,
    "num_threads": None,               # torch intra-op threads per process (None: torch's default)
    "output_dir": "runs/default",
    "checkpointing_steps": 500,
    "checkpoints_total_limit": 2,
    "resume_from_checkpoint": None,    # a checkpoint folder or "latest"
    "eval_steps": 1000,                # periodic held-out evaluation (0: never)
    "eval_num_samples": 100,           # held-out images/points scored periodically
    "final_eval": True,                # score the whole held-out split at the end
    "final_eval_num_repeats": 2,       # dequantization draws per image in the final evaluation
    "eval_seed": 1234,
    "ode_rtol": 1e-5,
    "ode_atol": 1e-5,
    "bound_num_time_points": 1000,
    "log_every": 50,
    "progress_bar": True,
    "push_to_hub": False,
    "hub_model_id": None,              # default scorezoo/<name>
    "hub_private": None,
    "card": {},                        # extra card fields: license, budget, notes
}


class ConfigError(ValueError):
    """A bad config, data set or network, found before training starts."""


# -- config ----------------------------------------------------------------------------------------------
def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in DEFAULTS and where == "":
            close = [d for d in DEFAULTS if d.split("_")[0] == k.split("_")[0]]
            raise ConfigError(f"unknown config key {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; known keys: {', '.join(DEFAULTS)}.")
        out[k] = v
    return out


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
    """``["--a", "1", "--b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}`` (values parsed as YAML).

    Raises:
        ConfigError: an argument that is not ``--key value`` or ``--key=value``.
    """
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
        ConfigError: unreadable YAML, unknown keys, or values out of range.
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
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
        _merge(DEFAULTS, file_cfg, "")
        cfg = _deep_update(cfg, file_cfg)
    if overrides:
        _merge(DEFAULTS, overrides, "")
        cfg = _deep_update(cfg, overrides)
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    """Check values that need no data. Raises :class:`ConfigError` with the offending key."""
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
    if not isinstance(cfg["eval_steps"], int) or cfg["eval_steps"] < 0:
        raise ConfigError(f"eval_steps must be an integer >= 0, got {cfg['eval_steps']!r}.")
    if cfg["mixed_precision"] not in ("no", "fp16", "bf16"):
        raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {cfg['mixed_precision']!r}.")
    for key in ("learning_rate", "max_grad_norm"):
        if not (isinstance(cfg[key], (int, float)) and cfg[key] > 0):
            raise ConfigError(f"{key} must be a positive number, got {cfg[key]!r}.")
    if not (0.0 <= float(cfg["ema_decay"]) < 1.0):
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']!r}.")


def build_and_check_network(cfg: dict, data: TrainingData) -> torch.nn.Module:
    """Build the network and check it takes the data: the shape rules, then a dry forward pass.

    Raises:
        ConfigError: a network that cannot take the data's shape (channels, resolution, dimension).
    """
    net_cfg = dict(cfg["network"])
    shape = data.data_shape
    name = net_cfg.get("_class_name")
    if name == "UNet2DModel":
        if len(shape) != 3:
            raise ConfigError(f"UNet2DModel takes images (C, H, W); the {data.name} data have shape {shape}: "
                              "use ScoreMLP.")
        c, h, w = shape
        blocks = net_cfg.get("down_block_types") or ()
        factor = 2 ** max(len(blocks) - 1, 0)
        if h % factor or w % factor:
            raise ConfigError(f"the network downsamples {len(blocks) - 1} times, so it needs H and W divisible "
                              f"by {factor}; the {data.name} images are {h}x{w}. Change data_shape or the blocks.")
        for key in ("in_channels", "out_channels"):
            if net_cfg.get(key, c) != c:
                raise ConfigError(f"network.{key} = {net_cfg[key]} but the {data.name} images have {c} channel(s).")
        net_cfg.setdefault("sample_size", h)
        net_cfg.setdefault("in_channels", c)
        net_cfg.setdefault("out_channels", c)
    elif name == "ScoreMLP":
        if len(shape) != 1:
            raise ConfigError(f"ScoreMLP takes flat data (D,); the {data.name} data have shape {shape}: "
                              "use UNet2DModel.")
        if net_cfg.get("dim", shape[0]) != shape[0]:
            raise ConfigError(f"network.dim = {net_cfg['dim']} but the {data.name} data have dimension {shape[0]}.")
        net_cfg.setdefault("dim", shape[0])
    try:
        net = build_network(net_cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    model = ScoreModel(net, get_sde(cfg["sde"]), cfg["parameterization"])
    try:
        with torch.no_grad():
            out = model.network_output(torch.zeros(2, *shape), torch.full((2,), 0.5))
    except Exception as e:  # any failure of the dry run means the network cannot take this data
        raise ConfigError(f"the network cannot take {data.name} data of shape {shape}: {type(e).__name__}: {e}") \
            from None
    if tuple(out.shape[1:]) != tuple(shape):
        raise ConfigError(f"the network maps {shape} to {tuple(out.shape[1:])}; it must return the input's shape.")
    return net


def load_data(cfg: dict) -> TrainingData:
    """Load the configured data set. Raises :class:`ConfigError` for unknown, missing or unreadable data."""
    try:
        data = load_dataset(cfg["dataset"], data_dir=cfg["data_dir"], data_shape=cfg["data_shape"],
                            num_levels=cfg["num_levels"], seed=cfg["seed"],
                            options=cfg["dataset_options"])
    except (ValueError, ImportError) as e:
        raise ConfigError(f"dataset {cfg['dataset']!r}: {e}") from None
    if cfg["random_flip"] and len(data.data_shape) != 3:
        raise ConfigError(f"random_flip flips images; the {cfg['dataset']} data have shape {data.data_shape}.")
    if len(data.train) < cfg["batch_size"]:
        raise ConfigError(f"batch_size {cfg['batch_size']} exceeds the {len(data.train)} training items.")
    return data


# -- deterministic data order -------------------------------------------------------------------------------
class TrainState:
    """The step and the data-order seed, checkpointed with ``accelerator.register_for_checkpointing``.

    The data order is a pure function of (seed, epoch) and each step's noise of (seed, step), so the step
    is the whole state of the data pipeline.
    """

    def __init__(self, seed: int, num_items: int, batch_size: int):
        self.seed, self.num_items, self.batch_size = int(seed), int(num_items), int(batch_size)
        self.step = 0
        self.steps_per_epoch = num_items // batch_size  # the incomplete last batch of an epoch is dropped

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def batch_indices(self, step: int) -> torch.Tensor:
        """``(batch_size,)`` indices of the items of global step ``step`` (0-based)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        return perm[pos * self.batch_size:(pos + 1) * self.batch_size]

    def step_generator(self, step: int) -> torch.Generator:
        """CPU generator of step ``step``'s dequantization noise, times and Gaussian noise."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * step + 1)

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "num_items": self.num_items, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        for k in ("seed", "num_items", "batch_size"):
            if int(state[k]) != getattr(self, k):
                raise ConfigError(f"the checkpoint was made with {k}={state[k]}, this run has {getattr(self, k)}: "
                                  "resume with the config it was made with.")
        self.step = int(state["step"])


def make_batch(data: TrainingData, state: TrainState, step: int, dequantize: bool,
               random_flip: bool = False) -> tuple[torch.Tensor, torch.Generator]:
    """The global batch ``(B, *S)`` of step ``step`` in the model's data space, and the step's generator
    (advanced past the flips and the dequantization noise) for the loss's times and noises."""
    g = state.step_generator(step)
    items = data.train[state.batch_indices(step)]
    if random_flip:
        flip = torch.rand(len(items), generator=g) < 0.5
        items = torch.where(flip[:, None, None, None], items.flip(-1), items)
    if data.num_levels is None:
        return items.float(), g
    if dequantize:
        return uniform_dequantize(items, num_levels=data.num_levels, data_range=data.data_range, generator=g), g
    return levels_to_data(items, num_levels=data.num_levels, data_range=data.data_range), g


# -- evaluation ---------------------------------------------------------------------------------------------
def make_pipeline(net: torch.nn.Module, cfg: dict, data: TrainingData, extra: dict | None = None) -> ScorePipeline:
    return ScorePipeline(net, get_sde(cfg["sde"]), data_shape=data.data_shape, eps=float(cfg["eps"]),
                         num_levels=data.num_levels, data_range=data.data_range,
                         parameterization=cfg["parameterization"], extra_config=extra)


def evaluate(pipe: ScorePipeline, cfg: dict, data: TrainingData, num_samples: int | None,
             num_repeats: int = 1) -> dict:
    """Held-out ODE and bound scores of ``pipe`` on the first ``num_samples`` held-out items (all if None).

    For integer data: bits/dim (``pipe.bits_per_dim``, estimator ``"ode"`` and ``"bound"``) with their standard
    errors over images; for continuous data: negative log-likelihood in nats per point (ODE with the exact
    divergence, and the bound). The same ``eval_seed`` for every model makes comparisons paired.

    Returns:
        ``{"ode": mean, "ode_stderr": se, "bound": mean, "bound_stderr": se, "unit": ..., "num_eval": n,
        "per_item_ode": [...], "per_item_bound": [...]}``.
    """
    ev = data.eval if num_samples is None else data.eval[:num_samples]
    n = len(ev)
    g = lambda: torch.Generator().manual_seed(int(cfg["eval_seed"]))  # noqa: E731
    pipe.model.eval()
    if data.num_levels is not None:
        ode = pipe.bits_per_dim(ev.numpy(), estimator="ode", num_repeats=num_repeats, generator=g(),
                                rtol=cfg["ode_rtol"], atol=cfg["ode_atol"]).bpd
        bound = pipe.bits_per_dim(ev.numpy(), estimator="bound", num_repeats=num_repeats, generator=g(),
                                  num_time_points=cfg["bound_num_time_points"]).bpd
        unit = "bits/dim"
    else:
        from scorezoo import likelihood_bound
        ode = -pipe.log_likelihood(ev, divergence="exact", rtol=cfg["ode_rtol"], atol=cfg["ode_atol"]).logp.double()
        bound = likelihood_bound(pipe.model, pipe.sde, ev, eps=pipe.eps, generator=g(),
                                 num_time_points=cfg["bound_num_time_points"]).nll.double()
        unit = "nats/point"
    se = lambda v: float(v.std() / math.sqrt(n)) if n > 1 else float("nan")  # noqa: E731
    return {"ode": float(ode.mean()), "ode_stderr": se(ode), "bound": float(bound.mean()), "bound_stderr": se(bound),
            "unit": unit, "num_eval": n, "num_repeats": num_repeats,
            "per_item_ode": ode.tolist(), "per_item_bound": bound.tolist()}


# -- checkpoints --------------------------------------------------------------------------------------------
def _checkpoints(output_dir: Path) -> list[Path]:
    d = output_dir / "checkpoints"
    found = [p for p in d.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resolve_checkpoint(spec: str | None, output_dir: Path) -> Path | None:
    """The checkpoint folder to resume from: ``None``, ``"latest"`` (None when there is none yet) or a path.

    Raises:
        ConfigError: a path that is not a checkpoint folder.
    """
    if not spec:
        return None
    if spec == "latest":
        found = _checkpoints(output_dir)
        return found[-1] if found else None
    p = Path(spec)
    if not (p / "train_state.json").is_file():
        raise ConfigError(f"{spec!r} is not a checkpoint folder of train_mle.py (no train_state.json).")
    return p


def save_checkpoint(accelerator, output_dir: Path, step: int, limit: int) -> None:
    """``accelerator.save_state`` into a temporary folder renamed when complete, so a kill while saving never
    leaves a half-written ``checkpoint-<step>``; keep the newest ``limit``."""
    final = output_dir / "checkpoints" / f"checkpoint-{step}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "train_state.json").write_text(json.dumps({"step": step}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in _checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


# -- training -----------------------------------------------------------------------------------------------
def train(cfg: dict, command: str | None = None) -> dict:
    """Run the training described by a checked config (see :data:`DEFAULTS`); returns the final results dict.

    Raises:
        ConfigError: bad data or network, found before the first step.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    output_dir = Path(cfg["output_dir"])
    data = load_data(cfg)
    set_seed(int(cfg["seed"]))  # network initialisation
    net = build_and_check_network(cfg, data)
    num_params = sum(p.numel() for p in net.parameters())

    # accelerate takes a multi-process launch without CUDA as data-parallel on CPU (gloo) only with cpu=True
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # step_scheduler_with_optimizer=False: otherwise accelerate steps the LR schedule once per process per step,
    # so the warm-up of an N-process run would end N times sooner (our batch is global, not per process)
    accelerator = Accelerator(mixed_precision=cfg["mixed_precision"], cpu=multi_cpu,
                              step_scheduler_with_optimizer=False)
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = cfg["gradient_accumulation_steps"]
    if cfg["batch_size"] % (world * micro):
        raise ConfigError(f"batch_size {cfg['batch_size']} must be divisible by num_processes x "
                          f"gradient_accumulation_steps = {world} x {micro}.")
    micro_bs = cfg["batch_size"] // (world * micro)

    sde = get_sde(cfg["sde"])
    model = ScoreModel(net, sde, cfg["parameterization"])
    ema = EMAModel(net.parameters(), decay=float(cfg["ema_decay"]), use_ema_warmup=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg["learning_rate"]), betas=tuple(cfg["adam_betas"]),
                                 eps=float(cfg["adam_eps"]), weight_decay=float(cfg["weight_decay"]))
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=int(cfg["warmup_steps"]))
    state = TrainState(cfg["seed"], len(data.train), cfg["batch_size"])
    objective = DSMObjective(model, cfg["weighting"], float(cfg["eps"]))
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    accelerator.register_for_checkpointing(ema, state)
    raw_model: ScoreModel = accelerator.unwrap_model(objective).model

    ckpt = resolve_checkpoint(cfg["resume_from_checkpoint"], output_dir)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        accelerator.print(f"resumed from {ckpt} at step {state.step} (epoch {state.epoch})")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    log_path = output_dir / "log.jsonl"

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def ema_pipeline(extra: dict | None = None) -> ScorePipeline:
        net_copy = copy.deepcopy(raw_model.network).float()
        ema.copy_to(net_copy.parameters())
        return make_pipeline(net_copy.eval(), cfg, data, extra)

    bar = tqdm(total=cfg["max_train_steps"], initial=state.step, disable=not (accelerator.is_local_main_process
                                                                               and cfg["progress_bar"]))
    t_start, steps_done, running = time.time(), 0, []
    objective.train()
    while state.step < cfg["max_train_steps"]:
        step = state.step
        x, g = make_batch(data, state, step, cfg["dequantize"], cfg["random_flip"])
        # draw the whole global batch's times and noises, then slice: independent of world size
        t_all, _ = sample_time(sde, len(x), weighting=cfg["weighting"], eps=float(cfg["eps"]), generator=g)
        z_all = torch.randn(x.shape, generator=g)
        loss_total = torch.zeros((), device=accelerator.device)
        for m in range(micro):
            lo = (m * world + rank) * micro_bs
            sl = slice(lo, lo + micro_bs)
            xb, tb, zb = (v[sl].to(accelerator.device) for v in (x, t_all, z_all))
            sync = accelerator.no_sync(objective) if m < micro - 1 else contextlib.nullcontext()
            with sync:
                with accelerator.autocast():
                    loss = objective(xb, tb, zb).mean() / micro
                accelerator.backward(loss)
            loss_total += loss.detach().float()
        grad_norm = accelerator.clip_grad_norm_(objective.parameters(), float(cfg["max_grad_norm"]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(raw_model.network.parameters())
        state.step += 1
        steps_done += 1
        running.append(accelerator.reduce(loss_total, reduction="mean").item())  # the global batch's mean
        bar.update(1)
        if state.step % cfg["log_every"] == 0 or state.step == cfg["max_train_steps"]:
            rate = steps_done / (time.time() - t_start)
            rec = {"step": state.step, "epoch": state.epoch, "loss": sum(running) / len(running),
                   "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0], "steps_per_s": rate}
            running = []
            bar.set_postfix(loss=f"{rec['loss']:.3f}", ep=state.epoch)
            log(rec)
        if cfg["eval_steps"] and state.step % cfg["eval_steps"] == 0 and state.step < cfg["max_train_steps"]:
            if accelerator.is_main_process:
                res = evaluate(ema_pipeline(), cfg, data, cfg["eval_num_samples"])
                summary = {k: res[k] for k in ("ode", "ode_stderr", "bound", "bound_stderr", "unit", "num_eval")}
                bar.write(f"step {state.step}: held-out {res['unit']} ODE {res['ode']:.4f} ± {res['ode_stderr']:.4f}"
                          f", bound {res['bound']:.4f} ± {res['bound_stderr']:.4f} (EMA, {res['num_eval']} items)")
                log({"step": state.step, "eval": summary})
            accelerator.wait_for_everyone()
        if state.step % cfg["checkpointing_steps"] == 0 or state.step == cfg["max_train_steps"]:
            save_checkpoint(accelerator, output_dir, state.step, int(cfg["checkpoints_total_limit"]))
    bar.close()
    elapsed = time.time() - t_start

    results: dict = {}
    if accelerator.is_main_process:
        extra = {"dataset": data.name, "weighting": cfg["weighting"], "training_command": command or "",
                 "training_steps": cfg["max_train_steps"], "batch_size": cfg["batch_size"], "seed": cfg["seed"]}
        if cfg["name"]:
            extra = {"name": cfg["name"], **extra}
        pipe = ema_pipeline(extra)
        results = {"name": cfg["name"], "dataset": data.name, "sde": sde.name, "weighting": cfg["weighting"],
                   "parameters": num_params, "max_train_steps": cfg["max_train_steps"],
                   "batch_size": cfg["batch_size"], "num_processes": world, "eval_split": data.eval_split,
                   "command": command or "",
                   "data_shape": list(data.data_shape), "num_levels": data.num_levels,
                   "steps_per_s_last_session": steps_done / elapsed if elapsed > 0 else None}
        if cfg["final_eval"]:
            res = evaluate(pipe, cfg, data, None, num_repeats=cfg["final_eval_num_repeats"])
            results["eval"] = res
            log({"step": state.step, "final_eval": {k: v for k, v in res.items() if not k.startswith("per_item")}})
            accelerator.print(f"final held-out {res['unit']}: ODE {res['ode']:.4f} ± {res['ode_stderr']:.4f}, "
                              f"bound {res['bound']:.4f} ± {res['bound_stderr']:.4f} ({res['num_eval']} items)")
        (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        export = output_dir / "pipeline"
        pipe.save_pretrained(export)
        card = render_card(results, cfg)
        (export / "README.md").write_text(card)
        if cfg["push_to_hub"]:
            repo_id = cfg["hub_model_id"] or f"scorezoo/{cfg['name']}"
            url = pipe.push_to_hub(repo_id, private=cfg["hub_private"], card=card)
            accelerator.print(f"pushed to {url}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


class DSMObjective(torch.nn.Module):
    """The per-sample loss as a module, so that accelerate's DDP wrapper sees the whole forward pass."""

    def __init__(self, model: ScoreModel, weighting: str, eps: float):
        super().__init__()
        self.model, self.weighting, self.eps = model, weighting, eps

    def forward(self, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return dsm_loss(self.model, x0, weighting=self.weighting, eps=self.eps, t=t, z=z)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    parser.add_argument("--config", required=True, help="YAML config (train/configs/*.yaml)")
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, parse_overrides(rest))
    except ConfigError as e:
        parser.exit(2, f"train_mle.py: error: {e}\n")
    argv = sys.argv[1:] if argv is None else argv
    command = "accelerate launch train/train_mle.py " + " ".join(shlex.quote(a) for a in argv)
    try:
        return train(cfg, command)
    except ConfigError as e:
        parser.exit(2, f"train_mle.py: error: {e}\n")


if __name__ == "__main__":
    main()
