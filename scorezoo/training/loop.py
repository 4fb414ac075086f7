"""The training runner: one accelerate loop for every task (a score model, a dequantizer), with exact resume.

:func:`train` makes the config's task (:mod:`scorezoo.training.task`: what is trained, its loss per micro-batch, its
held-out check and its export) and does the rest once: accelerate (processes, mixed precision, gradient
accumulation), Adam with linear warm-up, gradient clipping, an EMA of the weights, checkpoints with
``accelerator.save_state`` written atomically, exact resume (the batches are functions of (seed, step),
:mod:`scorezoo.training.batches`), the ``max_train_minutes`` limit, ``log.jsonl``, the progress bar and the thread
count.

Run folder ``output_dir``: ``config.yaml``, ``log.jsonl`` (one JSON record per logged step), ``checkpoints/``,
``results.json`` and the task's export (``pipeline/``; a dequantizer also ``dequantizer/``). A folder that already
holds a run is only continued (``resume_from_checkpoint``) or started afresh on request (``overwrite``), never mixed
with a new run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import time
from pathlib import Path

import torch

from ..utils import torch_threads
from .config import ConfigError, require_train_extra
from .batches import TrainState
from .task import make_task

__all__ = ["train", "list_checkpoints", "resolve_checkpoint", "save_checkpoint", "existing_run", "clear_run",
           "launched_by_accelerate", "describe_setup", "RUN_OUTPUTS"]

#: what the runner writes into every run's output_dir (``overwrite`` deletes these and the task's export)
RUN_OUTPUTS = ("checkpoints", "log.jsonl", "results.json", "config.yaml")


# -- the run folder ---------------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete ``checkpoint-<step>`` folders of a run, oldest first."""
    d = Path(output_dir) / "checkpoints"
    found = [p for p in d.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resolve_checkpoint(spec: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint folder to resume from: ``None``, ``"latest"`` (None when there is none yet) or a path.

    Raises:
        ConfigError: a path that is not a checkpoint folder.
    """
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    p = Path(spec)
    if not (p / "train_state.json").is_file():
        raise ConfigError(f"{spec!r} is not a checkpoint folder of a scorezoo training run (no train_state.json).")
    return p


def existing_run(output_dir: str | Path) -> str | None:
    """What a previous run left in ``output_dir`` (checkpoints, a log, results), in words; None when nothing."""
    out = Path(output_dir)
    found = []
    ckpts = list_checkpoints(out)
    if ckpts:
        found.append(f"{len(ckpts)} checkpoint(s), the last at step {ckpts[-1].name.split('-')[1]}")
    log = out / "log.jsonl"
    if log.is_file() and log.stat().st_size:
        found.append("log.jsonl")
    if (out / "results.json").is_file():
        found.append("results.json")
    return ", ".join(found) or None


def clear_run(output_dir: str | Path, outputs: tuple[str, ...] = ("pipeline",)) -> None:
    """Delete what a run wrote into ``output_dir``: :data:`RUN_OUTPUTS` and its task's export ``outputs``
    (``pipeline``; a dequantizer's ``dequantizer`` and ``pipeline``). Anything else there is kept."""
    out = Path(output_dir)
    for name in RUN_OUTPUTS + tuple(outputs):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep the records of steps <= ``step``: a resumed run logs the later steps again."""
    if log_path.is_file():
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        log_path.write_text("".join(line + "\n" for line in lines if json.loads(line).get("step", 0) <= step))


def save_checkpoint(accelerator, output_dir: str | Path, step: int, limit: int) -> None:
    """``accelerator.save_state`` into a temporary folder renamed when complete, so a kill while saving never
    leaves a half-written ``checkpoint-<step>``; keep the newest ``limit``."""
    final = Path(output_dir) / "checkpoints" / f"checkpoint-{step}"
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
        for old in list_checkpoints(output_dir)[:-limit]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


# -- how it runs ------------------------------------------------------------------------------------------------
def launched_by_accelerate() -> bool:
    """Whether this process was started by ``accelerate launch`` (which sets ``ACCELERATE_DYNAMO_BACKEND`` in
    the environment of every process it starts, with one process or many)."""
    return "ACCELERATE_DYNAMO_BACKEND" in os.environ


def describe_setup(num_processes: int, device: str, mixed_precision: str, batch_size: int,
                   accumulation: int, launched: bool) -> str:
    """The line printed at the start: processes, device, precision and how the global batch is split.

    A single process under ``accelerate launch`` gets a hint, since ``--num_processes N`` without ``--multi_gpu``
    runs one process on a machine without GPUs.
    """
    micro = batch_size // (num_processes * accumulation)
    line = (f"{num_processes} process{'es' if num_processes > 1 else ''} on {device}, mixed precision "
            f"{mixed_precision}; global batch {batch_size} = {num_processes} process(es) x {accumulation} "
            f"accumulation step(s) x micro-batch {micro}")
    if launched and num_processes == 1:
        line += ("\n(one process: for data parallelism use accelerate launch --multi_gpu --num_processes N, "
                 "on CPU too)")
    return line


# -- training ---------------------------------------------------------------------------------------------------
def train(cfg: dict, command: str | None = None) -> dict:
    """Run the training described by a checked config (:func:`scorezoo.training.config.load_config`).

    Args:
        cfg: the config (every key of its task, :func:`scorezoo.training.config.defaults`).
        command: the command line that started the run, recorded in ``results.json`` and the export's config.

    Returns:
        The results dict written to ``results.json`` (on the main process; ``{}`` on the others), with ``eval``
        (the task's final evaluation) when ``final_eval``.

    Raises:
        ConfigError: bad data, network or frozen model, or an output_dir that holds a run while neither
            ``resume_from_checkpoint`` nor ``overwrite`` is given; all found before the first step.
        MissingExtraError: accelerate or pyyaml is not installed (``pip install 'scorezoo[train]'``).
    """
    with torch_threads(cfg["num_threads"]):  # the caller keeps its own thread count
        return _train(cfg, command)


def _train(cfg: dict, command: str | None) -> dict:
    accelerate = require_train_extra("accelerate")
    yaml = require_train_extra("yaml")
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    output_dir = Path(cfg["output_dir"])
    # read before any process writes: the main process clears or writes only after the barrier below
    previous = existing_run(output_dir)
    if previous and not cfg["resume_from_checkpoint"] and not cfg["overwrite"]:
        raise ConfigError(f"{output_dir} already holds a run ({previous}): continue it with "
                          "--resume_from_checkpoint latest, or start afresh with --overwrite (deletes its "
                          "checkpoints, log, results and export).")
    task = make_task(cfg)
    if len(task.data.train) < cfg["batch_size"]:
        raise ConfigError(f"batch_size {cfg['batch_size']} exceeds the {len(task.data.train)} training items.")
    set_seed(int(cfg["seed"]))  # the initialisation of what is trained
    objective = task.build()
    num_params = sum(p.numel() for p in objective.network.parameters())

    # accelerate takes a multi-process launch without CUDA as data-parallel on CPU (gloo) only with cpu=True
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # step_scheduler_with_optimizer=False: otherwise accelerate steps the LR schedule once per process per step,
    # so the warm-up of an N-process run would end N times sooner (our batch is global, not per process)
    accelerator = accelerate.Accelerator(mixed_precision=cfg["mixed_precision"], cpu=multi_cpu,
                                         step_scheduler_with_optimizer=False)
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = cfg["gradient_accumulation_steps"]
    if cfg["batch_size"] % (world * micro):
        raise ConfigError(f"batch_size {cfg['batch_size']} must be divisible by num_processes x "
                          f"gradient_accumulation_steps = {world} x {micro}.")
    launched = launched_by_accelerate()
    accelerator.print(f"training {task.title} ({num_params:,} parameters) on {task.data.name}: "
                      + describe_setup(world, str(accelerator.device), accelerator.mixed_precision,
                                       cfg["batch_size"], micro, launched))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and previous and cfg["overwrite"]:
        clear_run(output_dir, task.outputs)
        accelerator.print(f"--overwrite: deleted the previous run in {output_dir} ({previous})")
    accelerator.wait_for_everyone()

    task.to(accelerator.device)
    network = objective.network
    ema = EMAModel(network.parameters(), decay=float(cfg["ema_decay"]), use_ema_warmup=False)
    optimizer = torch.optim.Adam(network.parameters(), lr=float(cfg["learning_rate"]),
                                 betas=tuple(cfg["adam_betas"]), eps=float(cfg["adam_eps"]),
                                 weight_decay=float(cfg["weight_decay"]))
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=int(cfg["warmup_steps"]))
    state = TrainState(cfg["seed"], len(task.data.train), cfg["batch_size"])
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    ema.to(accelerator.device)  # the average lives beside the weights it follows
    accelerator.register_for_checkpointing(ema, state)
    network = accelerator.unwrap_model(objective).network

    log_path = output_dir / "log.jsonl"
    ckpt = resolve_checkpoint(cfg["resume_from_checkpoint"], output_dir)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        accelerator.print(f"resumed from {ckpt} at step {state.step} (epoch {state.epoch})")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        _truncate_log(log_path, state.step)
    accelerator.print(f"steps {state.step} -> {cfg['max_train_steps']}, run folder {output_dir}")

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def ema_network() -> torch.nn.Module:
        """A copy of what is trained, with the EMA weights, in float32, in eval mode."""
        copied = copy.deepcopy(network).float()
        ema.copy_to(copied.parameters())
        return copied.eval()

    # this process's parts of the global batch: one per accumulation step, the processes side by side
    parts = [m * world + rank for m in range(micro)]
    bar = tqdm(total=cfg["max_train_steps"], initial=state.step, disable=not (accelerator.is_local_main_process
                                                                               and cfg["progress_bar"]))
    t_start, steps_done, running = time.time(), 0, []
    deadline = t_start + 60 * float(cfg["max_train_minutes"]) if cfg["max_train_minutes"] else None
    stopped_early = False
    objective.train()
    while state.step < cfg["max_train_steps"]:
        inputs = task.micro_batches(state, state.step, parts, world * micro)
        loss_total = torch.zeros((), device=accelerator.device)
        for m, args in enumerate(inputs):
            args = tuple(a.to(accelerator.device) if isinstance(a, torch.Tensor) else a for a in args)
            sync = accelerator.no_sync(objective) if m < micro - 1 else contextlib.nullcontext()
            with sync:
                with accelerator.autocast():
                    loss = objective(*args).mean() / micro
                accelerator.backward(loss)
            loss_total += loss.detach().float()
        grad_norm = accelerator.clip_grad_norm_(objective.parameters(), float(cfg["max_grad_norm"]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(network.parameters())
        state.step += 1
        steps_done += 1
        running.append(accelerator.reduce(loss_total, reduction="mean").item())  # the global batch's mean
        bar.update(1)
        if state.step % cfg["log_every"] == 0 or state.step == cfg["max_train_steps"]:
            rate = steps_done / (time.time() - t_start)
            rec = {"step": state.step, "epoch": state.epoch, task.loss_key: sum(running) / len(running),
                   "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0], "steps_per_s": rate}
            running = []
            bar.set_postfix(loss=f"{rec[task.loss_key]:.4g}", ep=state.epoch)
            log(rec)
        if cfg["eval_steps"] and state.step % cfg["eval_steps"] == 0 and state.step < cfg["max_train_steps"]:
            if accelerator.is_main_process:
                summary, line = task.periodic_evaluation(ema_network())
                bar.write(f"step {state.step}: {line}")
                log({"step": state.step, "eval": summary})
            accelerator.wait_for_everyone()
        if deadline is not None and state.step < cfg["max_train_steps"]:
            # every process must stop at the same step: the main process's clock decides
            flag = torch.tensor(float(time.time() >= deadline), device=accelerator.device)
            stopped_early = bool(accelerator.reduce(flag, reduction="sum").item() > 0) if world > 1 else bool(flag)
        if state.step % cfg["checkpointing_steps"] == 0 or state.step == cfg["max_train_steps"] or stopped_early:
            save_checkpoint(accelerator, output_dir, state.step, int(cfg["checkpoints_total_limit"]))
        if stopped_early:
            accelerator.print(f"max_train_minutes ({cfg['max_train_minutes']}) reached at step {state.step}: "
                              "checkpointed; continue with the same command and --resume_from_checkpoint latest")
            break
    bar.close()
    elapsed = time.time() - t_start

    results: dict = {}
    if accelerator.is_main_process:
        results = {"dataset": task.data.name, "eval_split": task.data.eval_split, "parameters": num_params,
                   "max_train_steps": cfg["max_train_steps"], "trained_steps": state.step,
                   "batch_size": cfg["batch_size"], "num_processes": world,
                   "launcher": "accelerate launch" if launched else "python", "command": command or "",
                   "steps_per_s_last_session": steps_done / elapsed if elapsed > 0 else None}
        results = task.finish(ema_network(), results, output_dir, log)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
