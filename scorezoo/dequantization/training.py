"""Train a variational dequantizer ``q(u | k)`` for a frozen score model, with accelerate; resumable exactly.

    python train/train_dequantizer.py --pretrained vp-mle-digits --output_dir runs/deq-vp-mle-digits
    python train/train_dequantizer.py --config train/configs/deq-vp-mle-digits.yaml --max_train_steps 100

The objective is the variational bound of Flow++ (Ho et al. 2019, eq. 11) with the score model's likelihood bound
(Song, Durkan, Murray & Ermon 2021, Thm. 3) in place of ``-log p``, as score_flow trains its dequantizer
(``losses.py``, ``get_dequantization_loss_fn``):

    L(q) = E_k E_{u ~ q(.|k)} [ bound(x(u)) + log q(u | k) ] - D log((hi - lo)/K),   x(u) = lo + (hi-lo)(k+u)/K,

estimated per image with one draw of ``u`` (reparameterised: gradients flow through ``x(u)`` and the frozen score
network) and ``num_time_points`` importance-sampled times of the bound. The bound costs one forward and backward pass
of the score network per time point, where differentiating the ODE log-likelihood would cost its whole solve
(``benchmarks/dequantizer_cost.py`` measures both): see ``docs/dequantization.md``.

Determinism: the data order of epoch ``e`` is ``randperm(N, seed, e)`` and every step's noise comes from a generator
seeded with ``(seed, step)``; both are functions of the step, which is checkpointed with the dequantizer, its EMA,
the optimiser and the schedule (``accelerator.save_state``), so a run killed at any step resumes bit-exactly with
``--resume_from_checkpoint latest``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

from ..likelihood import likelihood_bound
from ..training.config import ConfigError
from ..utils import torch_threads
from .uniform import bits_per_dim, dequantize

__all__ = ["DEFAULTS", "ConfigError", "load_config", "dequantization_loss", "compare_dequantizations", "train", "main"]

#: every config key and its default; anything else is an error
DEFAULTS: dict = {
    "pretrained": "vp-mle-digits",     # the frozen model: zoo name, pipeline folder or Hub id
    "dataset": None,                   # None: the model's own (its config's "dataset")
    "data_dir": None,                  # folder of image_folder / cifar10
    "dataset_options": {},             # photo_patches: {patch_size, stride, scales, flips}, as the model's config
    "hidden_channels": 32,             # VariationalDequantizer size
    "num_couplings": 4,
    "num_blocks": 2,
    "num_components": 4,
    "batch_size": 64,
    "num_time_points": 1,              # bound time points per image and step
    "max_train_steps": 1000,
    "learning_rate": 1e-3,
    "warmup_steps": 100,
    "max_grad_norm": 1.0,
    "ema_decay": 0.99,                 # score_flow's deq.ema_rate
    "seed": 0,
    "num_threads": None,               # torch intra-op threads (None: torch's default)
    "output_dir": "runs/deq",
    "checkpointing_steps": 100,
    "checkpoints_total_limit": 2,
    "resume_from_checkpoint": None,    # a checkpoint folder or "latest"
    "eval_steps": 0,                   # periodic held-out bound (0: never)
    "eval_num_samples": 64,
    "eval_seed": 1234,
    "final_eval": True,                # paired uniform vs variational on the held-out split at the end
    "final_eval_num_samples": None,    # None: the whole split
    "final_eval_num_repeats": 4,
    "final_eval_estimators": ["bound", "ode"],
    "bound_num_time_points": 1000,
    "ode_schedule": None,              # None: adaptive dopri5 at ode_rtol/ode_atol; "calibrated": the model's schedule
    "ode_rtol": 1e-5,
    "ode_atol": 1e-5,
    "log_every": 25,
    "progress_bar": True,
}

_POSITIVE = ("hidden_channels", "num_couplings", "num_components", "batch_size", "num_time_points", "max_train_steps",
             "checkpointing_steps", "checkpoints_total_limit", "log_every", "eval_num_samples",
             "final_eval_num_repeats", "bound_num_time_points")


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """:data:`DEFAULTS`, updated by the YAML mapping at ``path``, updated by ``overrides``; checked.

    Raises:
        ConfigError: unreadable YAML, unknown keys, or values out of range.
    """
    import yaml

    cfg = copy.deepcopy(DEFAULTS)
    layers = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found.")
        try:
            layers.append(yaml.safe_load(p.read_text()) or {})
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from None
        if not isinstance(layers[-1], dict):
            raise ConfigError(f"{p} must hold a mapping of config keys.")
    layers.append(overrides or {})
    for layer in layers:
        unknown = sorted(set(layer) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {', '.join(DEFAULTS)}.")
        cfg.update(layer)
    for key in _POSITIVE:
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {cfg[key]!r}.")
    for key in ("learning_rate", "max_grad_norm", "ode_rtol", "ode_atol"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] <= 0:
            raise ConfigError(f"{key} must be a positive number, got {cfg[key]!r}.")
    if not 0.0 <= float(cfg["ema_decay"]) < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']!r}.")
    if set(cfg["final_eval_estimators"]) - {"bound", "ode"}:
        raise ConfigError(f"final_eval_estimators must be a list of 'bound' and 'ode', got "
                          f"{cfg['final_eval_estimators']!r}.")
    if cfg["ode_schedule"] not in (None, "calibrated"):
        raise ConfigError(f"ode_schedule must be null (adaptive) or 'calibrated', got {cfg['ode_schedule']!r}.")
    return cfg


def dequantization_loss(dequantizer: nn.Module, pipe, levels: torch.Tensor, *, generator: torch.Generator | None = None,
                        num_time_points: int = 1) -> torch.Tensor:
    """One-sample estimate of ``bound(x(u)) + log q(u | k) - D log((hi - lo)/K)`` per image, in bits/dim.

    Args:
        dequantizer: a :class:`~scorezoo.dequantization.variational.VariationalDequantizer` (gradients flow to its
            parameters).
        pipe: the frozen :class:`~scorezoo.pipeline.ScorePipeline` (its weights should not require grad).
        levels: ``(B, *S)`` integer levels of the pipeline's data.
        generator: source of ``u``, the bound's times and noises.
        num_time_points: importance-sampled times of the bound per image (MLE Thm. 3).

    Returns:
        ``(B,)`` bits/dim: in expectation over ``u`` and the bound's noise an upper bound on each image's discrete
        bits/dim under the model (Flow++ eq. 11 with MLE Thm. 3), differentiable in q's parameters.
    """
    u, log_q = dequantizer.sample_and_log_prob(levels, generator=generator)
    x = dequantize(levels.to(u.device), u, num_levels=pipe.num_levels, data_range=pipe.data_range)
    nll = likelihood_bound(pipe.model, pipe.sde, x, eps=pipe.eps, num_time_points=num_time_points,
                           num_decoder_samples=1, generator=generator).nll
    return bits_per_dim(-nll, pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range, log_q=log_q)


def compare_dequantizations(pipe, levels, *, estimator: str, num_repeats: int, seed: int, **kwargs) -> dict:
    """Held-out bits/dim of ``levels`` under uniform and under variational dequantization, paired: the same seed
    (so the same uniform numbers, which q transforms, and the same probes and times) for both.

    Args:
        pipe: a :class:`~scorezoo.pipeline.ScorePipeline` with a :attr:`~scorezoo.pipeline.ScorePipeline.dequantizer`.
        levels: ``(N, *S)`` integer levels.
        estimator: ``"ode"`` or ``"bound"``.
        num_repeats: dequantization draws per image.
        seed: seed of the generator of both runs.
        kwargs: passed to :meth:`~scorezoo.pipeline.ScorePipeline.bits_per_dim`.

    Returns:
        ``{"uniform", "uniform_stderr", "variational", "variational_stderr", "gain", "gain_stderr", "num_images",
        "num_repeats", "per_image_uniform", "per_image_variational"}``: means over images (bits/dim), standard
        errors over images, and the gain uniform − variational with its paired standard error.
    """
    out: dict = {}
    for deq in ("uniform", "variational"):
        res = pipe.bits_per_dim(levels, estimator=estimator, num_repeats=num_repeats, dequantization=deq,
                                generator=torch.Generator().manual_seed(int(seed)), **kwargs)
        out[deq] = res.bpd
    n = len(out["uniform"])

    def se(v: torch.Tensor) -> float:
        return float(v.std() / math.sqrt(n)) if n > 1 else float("nan")

    gain = out["uniform"] - out["variational"]
    return {"uniform": float(out["uniform"].mean()), "uniform_stderr": se(out["uniform"]),
            "variational": float(out["variational"].mean()), "variational_stderr": se(out["variational"]),
            "gain": float(gain.mean()), "gain_stderr": se(gain), "num_images": n, "num_repeats": int(num_repeats),
            "per_image_uniform": out["uniform"].tolist(), "per_image_variational": out["variational"].tolist()}


class _Objective(nn.Module):
    """The dequantizer and the loss as one module, so that accelerate's DDP wrapper sees the whole forward pass; the
    frozen pipeline is held outside the module tree (it is not trained, saved or synchronised)."""

    def __init__(self, dequantizer: nn.Module, pipe, num_time_points: int):
        super().__init__()
        self.dequantizer = dequantizer
        self._pipe = (pipe,)
        self.num_time_points = num_time_points

    def forward(self, levels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return dequantization_loss(self.dequantizer, self._pipe[0], levels, generator=generator,
                                   num_time_points=self.num_time_points)


class _Steps:
    """The step (checkpointed with ``accelerator.register_for_checkpointing``); the data order and the noise are
    functions of it and of the seed."""

    def __init__(self, seed: int, num_items: int, batch_size: int):
        self.seed, self.num_items, self.batch_size, self.step = int(seed), int(num_items), int(batch_size), 0

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Generator]:
        """``(indices (batch_size,), the step's generator)``; the incomplete last batch of an epoch is dropped."""
        epoch, pos = divmod(step, self.num_items // self.batch_size)
        perm = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * step + 1)
        return perm[pos * self.batch_size:(pos + 1) * self.batch_size], g

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "num_items": self.num_items, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        for k in ("seed", "num_items", "batch_size"):
            if int(state[k]) != getattr(self, k):
                raise ConfigError(f"the checkpoint was made with {k}={state[k]}, this run has {getattr(self, k)}: "
                                  "resume with the config it was made with.")
        self.step = int(state["step"])


def _load(cfg: dict):
    """The frozen pipeline and the training data, checked against each other."""
    from ..datasets import load_dataset
    from ..pipeline import ScorePipeline

    try:
        pipe = ScorePipeline.from_pretrained(cfg["pretrained"])
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"pretrained {cfg['pretrained']!r}: {e}") from None
    if pipe.num_levels is None:
        raise ConfigError(f"{cfg['pretrained']} models continuous data: there is nothing to dequantize.")
    name = cfg["dataset"] or pipe.extra_config.get("dataset")
    if not name:
        raise ConfigError(f"{cfg['pretrained']} does not say which data set it was trained on: give --dataset.")
    try:
        data = load_dataset(name, data_dir=cfg["data_dir"], data_shape=pipe.data_shape, num_levels=pipe.num_levels,
                            options=cfg["dataset_options"] or None)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"dataset {name!r}: {e}") from None
    if (tuple(data.data_shape), data.num_levels, tuple(data.data_range)) != \
            (pipe.data_shape, pipe.num_levels, pipe.data_range):
        raise ConfigError(f"the {name} data are {tuple(data.data_shape)} with {data.num_levels} levels in "
                          f"{data.data_range}; {cfg['pretrained']} takes {pipe.data_shape} with {pipe.num_levels} "
                          f"levels in {pipe.data_range}.")
    if len(data.train) < cfg["batch_size"]:
        raise ConfigError(f"batch_size {cfg['batch_size']} exceeds the {len(data.train)} training items.")
    for p in pipe.model.parameters():
        p.requires_grad_(False)
    pipe.dequantizer = None  # a dequantizer shipped with the model is replaced, not trained further
    return pipe, data


def train(cfg: dict, command: str | None = None) -> dict:
    """Train a dequantizer as a checked config says (see :data:`DEFAULTS`); returns the results dict.

    Writes ``output_dir/``: ``checkpoints/``, ``log.jsonl``, ``config.yaml``, ``results.json``, ``dequantizer/`` (the
    EMA weights, diffusers format) and ``pipeline/`` (the frozen model with the new dequantizer, loadable by
    :meth:`~scorezoo.pipeline.ScorePipeline.from_pretrained`).

    Raises:
        ConfigError: a bad model, data set or checkpoint, found before the first step.
    """
    with torch_threads(cfg["num_threads"]):  # the caller keeps its own thread count
        return _train(cfg, command)


def _train(cfg: dict, command: str | None) -> dict:
    import yaml
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..training.loop import resolve_checkpoint, save_checkpoint
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from .variational import VariationalDequantizer

    output_dir = Path(cfg["output_dir"])
    pipe, data = _load(cfg)
    set_seed(int(cfg["seed"]))
    deq = VariationalDequantizer(data_shape=pipe.data_shape, num_levels=pipe.num_levels,
                                 hidden_channels=cfg["hidden_channels"], num_couplings=cfg["num_couplings"],
                                 num_blocks=cfg["num_blocks"], num_components=cfg["num_components"])
    accelerator = Accelerator(step_scheduler_with_optimizer=False)
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg["batch_size"] % world:
        raise ConfigError(f"batch_size {cfg['batch_size']} must be divisible by the {world} processes.")
    per_rank = cfg["batch_size"] // world
    pipe.to(accelerator.device)
    ema = EMAModel(deq.parameters(), decay=float(cfg["ema_decay"]), use_ema_warmup=False)
    optimizer = torch.optim.Adam(deq.parameters(), lr=float(cfg["learning_rate"]))
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=int(cfg["warmup_steps"]))
    steps = _Steps(cfg["seed"], len(data.train), cfg["batch_size"])
    objective, optimizer, scheduler = accelerator.prepare(_Objective(deq, pipe, cfg["num_time_points"]), optimizer,
                                                          scheduler)
    accelerator.register_for_checkpointing(ema, steps)
    raw: VariationalDequantizer = accelerator.unwrap_model(objective).dequantizer
    ckpt = resolve_checkpoint(cfg["resume_from_checkpoint"], output_dir)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        accelerator.print(f"resumed from {ckpt} at step {steps.step}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with (output_dir / "log.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")

    def ema_copy() -> VariationalDequantizer:
        q = copy.deepcopy(raw)
        ema.copy_to(q.parameters())
        return q.eval()

    bar = tqdm(total=cfg["max_train_steps"], initial=steps.step,
               disable=not (accelerator.is_local_main_process and cfg["progress_bar"]))
    t0, done, running = time.time(), 0, []
    while steps.step < cfg["max_train_steps"]:
        idx, g = steps.batch(steps.step)
        # every rank draws from its own stream of the step's seed, so a rank's noise is a function of (seed, step)
        g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=g)) + rank) if world > 1 else g
        levels = data.train[idx[rank * per_rank:(rank + 1) * per_rank]].to(accelerator.device)
        loss = objective(levels, g).mean()
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(objective.parameters(), float(cfg["max_grad_norm"]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(raw.parameters())
        steps.step += 1
        done += 1
        running.append(accelerator.reduce(loss.detach(), reduction="mean").item())
        bar.update(1)
        if steps.step % cfg["log_every"] == 0 or steps.step == cfg["max_train_steps"]:
            rec = {"step": steps.step, "loss_bpd": sum(running) / len(running), "grad_norm": float(grad_norm),
                   "lr": scheduler.get_last_lr()[0], "steps_per_s": done / (time.time() - t0)}
            running = []
            bar.set_postfix(bpd=f"{rec['loss_bpd']:.4f}")
            log(rec)
        if cfg["eval_steps"] and steps.step % cfg["eval_steps"] == 0 and steps.step < cfg["max_train_steps"]:
            if accelerator.is_main_process:
                pipe.dequantizer = ema_copy().to(accelerator.device)
                res = compare_dequantizations(pipe, data.eval_subset(cfg["eval_num_samples"]), estimator="bound",
                                              num_repeats=1, seed=cfg["eval_seed"],
                                              num_time_points=cfg["bound_num_time_points"])
                pipe.dequantizer = None
                bar.write(f"step {steps.step}: held-out bound, uniform {res['uniform']:.4f}, variational "
                          f"{res['variational']:.4f}, gain {res['gain']:.4f} ± {res['gain_stderr']:.4f} bits/dim")
                log({"step": steps.step, "eval": {k: v for k, v in res.items() if not k.startswith("per_image")}})
            accelerator.wait_for_everyone()
        if steps.step % cfg["checkpointing_steps"] == 0 or steps.step == cfg["max_train_steps"]:
            save_checkpoint(accelerator, output_dir, steps.step, int(cfg["checkpoints_total_limit"]))
    bar.close()
    elapsed = time.time() - t0

    results: dict = {}
    if accelerator.is_main_process:
        q = ema_copy()
        q.save_pretrained(str(output_dir / "dequantizer"), safe_serialization=True)
        pipe.to("cpu")
        pipe.dequantizer = q
        pipe.extra_config["dequantizer_training_command"] = command or ""
        pipe.save_pretrained(output_dir / "pipeline")
        results = {"pretrained": str(cfg["pretrained"]), "dataset": data.name, "eval_split": data.eval_split,
                   "parameters": sum(p.numel() for p in q.parameters()), "max_train_steps": cfg["max_train_steps"],
                   "batch_size": cfg["batch_size"], "num_time_points": cfg["num_time_points"],
                   "num_processes": world, "command": command or "",
                   "steps_per_s_last_session": done / elapsed if elapsed > 0 else None, "eval": {}}
        levels = data.eval_subset(cfg["final_eval_num_samples"])
        ode = {"schedule": "calibrated"} if cfg["ode_schedule"] else {"rtol": cfg["ode_rtol"], "atol": cfg["ode_atol"]}
        for est in cfg["final_eval_estimators"] if cfg["final_eval"] else []:
            kw = {"num_time_points": cfg["bound_num_time_points"]} if est == "bound" else ode
            res = compare_dequantizations(pipe, levels, estimator=est, num_repeats=cfg["final_eval_num_repeats"],
                                          seed=cfg["eval_seed"], **kw)
            results["eval"][est] = {**res, "settings": kw}
            log({"step": steps.step, "final_eval": est, **{k: v for k, v in res.items() if not k.startswith("per_")}})
            accelerator.print(f"held-out {est}: uniform {res['uniform']:.4f} ± {res['uniform_stderr']:.4f}, "
                              f"variational {res['variational']:.4f} ± {res['variational_stderr']:.4f}, gain "
                              f"{res['gain']:.4f} ± {res['gain_stderr']:.4f} bits/dim ({res['num_images']} images)")
        (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def _value(raw: str):
    """A command-line value read as YAML, with ``1e-3`` (which YAML 1.1 reads as a string) read as a number."""
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def main(argv: list[str] | None = None) -> dict:
    """Command line: ``--config FILE`` (YAML) and ``--KEY VALUE`` for any key of :data:`DEFAULTS` (values read as
    YAML). Exits with status 2 and one line for a bad config."""
    parser = argparse.ArgumentParser(prog="train_dequantizer.py", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--config", default=None, help="YAML config (train/configs/deq-*.yaml)")
    for key, default in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=_value, default=argparse.SUPPRESS, help=f"default: {default!r}")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = vars(parser.parse_args(argv))
    path = args.pop("config")
    try:
        cfg = load_config(path, args)
        return train(cfg, "python train/train_dequantizer.py " + " ".join(shlex.quote(a) for a in argv))
    except ConfigError as e:
        parser.exit(2, f"train_dequantizer.py: error: {e}\n")
