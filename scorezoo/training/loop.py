"""The training loop: denoising score matching with the MLE paper's weightings, with accelerate.

:func:`train` trains with :func:`scorezoo.losses.dsm_loss` (Song, Durkan, Murray & Ermon 2021, eq. 7; weighting
``score``, ``likelihood`` or ``likelihood-is``), Adam with linear warm-up, gradient clipping, an EMA of the weights,
mixed precision, gradient accumulation and data parallelism; checkpoints with ``accelerator.save_state`` and
resumes exactly (the batches are functions of the step, :mod:`scorezoo.training.data`); evaluates the held-out
split now and then (:mod:`scorezoo.training.evaluation`) and exports at the end (:mod:`scorezoo.training.export`).

Run folder ``output_dir``: ``config.yaml``, ``log.jsonl`` (one JSON record per logged step), ``checkpoints/``,
``results.json`` and ``pipeline/``. A folder that already holds a run is only continued
(``resume_from_checkpoint``) or started afresh on request (``overwrite``), never mixed with a new run.
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

from ..losses import dsm_loss, sample_time
from ..models import ScoreModel
from ..pipeline import ScorePipeline
from ..sde import get_sde
from .config import ConfigError, require_train_extra
from .data import TrainState, load_data, make_batch
from .evaluation import estimate_eval_seconds, evaluate, format_evaluation
from .export import export_run, make_pipeline
from .network import build_and_check_network
from ..utils import torch_threads

__all__ = ["train", "DSMObjective", "list_checkpoints", "resolve_checkpoint", "save_checkpoint", "existing_run",
           "clear_run", "launched_by_accelerate", "describe_setup", "RUN_OUTPUTS"]

#: what a run writes into its output_dir (and ``overwrite`` deletes)
RUN_OUTPUTS = ("checkpoints", "log.jsonl", "results.json", "pipeline", "config.yaml")


class DSMObjective(torch.nn.Module):
    """The per-sample loss as a module, so that accelerate's DDP wrapper sees the whole forward pass.

    ``forward(x0 (B, *S), t (B,), z (B, *S)) -> (B,)`` nats per sample (:func:`scorezoo.losses.dsm_loss`).
    """

    def __init__(self, model: ScoreModel, weighting: str, eps: float):
        super().__init__()
        self.model, self.weighting, self.eps = model, weighting, eps

    def forward(self, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return dsm_loss(self.model, x0, weighting=self.weighting, eps=self.eps, t=t, z=z)


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


def clear_run(output_dir: str | Path) -> None:
    """Delete what a run wrote into ``output_dir`` (:data:`RUN_OUTPUTS`); anything else there is kept."""
    out = Path(output_dir)
    for name in RUN_OUTPUTS:
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


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


# -- training ---------------------------------------------------------------------------------------------------
def train(cfg: dict, command: str | None = None) -> dict:
    """Run the training described by a checked config (:func:`scorezoo.training.config.load_config`).

    Args:
        cfg: the config (every key of :data:`scorezoo.training.config.DEFAULTS`).
        command: the command line that started the run, recorded in ``results.json`` and the pipeline's config.

    Returns:
        The results dict written to ``results.json`` (on the main process; ``{}`` on the others), with ``eval``
        (:func:`scorezoo.training.evaluation.evaluate`) when ``final_eval``.

    Raises:
        ConfigError: bad data or network, or an output_dir that holds a run while neither
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
    data = load_data(cfg)
    set_seed(int(cfg["seed"]))  # network initialisation
    net = build_and_check_network(cfg, data)
    num_params = sum(p.numel() for p in net.parameters())

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
    micro_bs = cfg["batch_size"] // (world * micro)
    launched = launched_by_accelerate()
    accelerator.print(f"training {cfg['name'] or 'a model'} ({num_params:,} parameters) on {data.name}: "
                      + describe_setup(world, str(accelerator.device), accelerator.mixed_precision,
                                       cfg["batch_size"], micro, launched))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and previous and cfg["overwrite"]:
        clear_run(output_dir)
        accelerator.print(f"--overwrite: deleted the previous run in {output_dir} ({previous})")
    accelerator.wait_for_everyone()

    sde = get_sde(cfg["sde"])
    model = ScoreModel(net, sde, cfg["parameterization"])
    ema = EMAModel(net.parameters(), decay=float(cfg["ema_decay"]), use_ema_warmup=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg["learning_rate"]), betas=tuple(cfg["adam_betas"]),
                                 eps=float(cfg["adam_eps"]), weight_decay=float(cfg["weight_decay"]))
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=int(cfg["warmup_steps"]))
    state = TrainState(cfg["seed"], len(data.train), cfg["batch_size"])
    objective = DSMObjective(model, cfg["weighting"], float(cfg["eps"]))
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    ema.to(accelerator.device)  # the average lives beside the weights it follows
    accelerator.register_for_checkpointing(ema, state)
    raw_model: ScoreModel = accelerator.unwrap_model(objective).model

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

    def ema_pipeline(extra: dict | None = None) -> ScorePipeline:
        net_copy = copy.deepcopy(raw_model.network).float()
        ema.copy_to(net_copy.parameters())
        return make_pipeline(net_copy.eval(), cfg, data, extra)

    bar = tqdm(total=cfg["max_train_steps"], initial=state.step, disable=not (accelerator.is_local_main_process
                                                                               and cfg["progress_bar"]))
    t_start, steps_done, running = time.time(), 0, []
    deadline = t_start + 60 * float(cfg["max_train_minutes"]) if cfg["max_train_minutes"] else None
    stopped_early = False
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
                bar.write(f"step {state.step}: {format_evaluation(res)}")
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
                              f"checkpointed; continue with --resume_from_checkpoint latest")
            break
    bar.close()
    elapsed = time.time() - t_start

    results: dict = {}
    if accelerator.is_main_process:
        extra = {"dataset": data.name, "weighting": cfg["weighting"], "training_command": command or "",
                 "training_steps": state.step, "batch_size": cfg["batch_size"], "seed": cfg["seed"]}
        if cfg["name"]:
            extra = {"name": cfg["name"], **extra}
        if cfg["dataset_options"]:
            extra["dataset_options"] = cfg["dataset_options"]
        if data.name in ("photo_patches", "photo_folder"):
            # a model of patches scores a larger photo tile by tile at its own resolution, not resized
            extra["tile_larger_images"] = True
        pipe = ema_pipeline(extra)
        results = {"name": cfg["name"], "dataset": data.name, "sde": sde.name, "weighting": cfg["weighting"],
                   "parameters": num_params, "max_train_steps": cfg["max_train_steps"], "trained_steps": state.step,
                   "batch_size": cfg["batch_size"], "num_processes": world,
                   "launcher": "accelerate launch" if launched else "python", "eval_split": data.eval_split,
                   "command": command or "",
                   "data_shape": list(data.data_shape), "num_levels": data.num_levels,
                   "steps_per_s_last_session": steps_done / elapsed if elapsed > 0 else None}
        if cfg["final_eval"]:
            n, r = len(data.eval), cfg["final_eval_num_repeats"]
            what = (f"ODE and bound {'bits/dim' if data.num_levels else 'NLL'} of all {n} held-out items"
                    + (f" x {r} dequantization draw(s)" if data.num_levels else ""))
            guess = estimate_eval_seconds(pipe, cfg, n, r if data.num_levels else 1)
            accelerator.print(f"final evaluation: {what} with the EMA weights, roughly {_duration(guess)} here "
                              f"(final_eval: false skips it)", flush=True)
            t_eval = time.time()
            res = evaluate(pipe, cfg, data, None, num_repeats=r)
            results["eval"] = res
            log({"step": state.step, "final_eval": {k: v for k, v in res.items() if not k.startswith("per_item")}})
            accelerator.print(f"final {format_evaluation(res)}; took {_duration(time.time() - t_eval)}")
        export_run(pipe, results, cfg, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results
