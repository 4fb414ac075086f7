"""Bits/dim of a whole data set, on one process or many, resumable, with the same per-image numbers at any scale.

The images (:mod:`scorezoo.evaluation.specs`) are cut by index into fixed units of ``batch_size`` images (one
picture when tiled), and unit ``k`` is scored by process ``k mod N``. Three things make an image's numbers the same
whatever the number of processes, the order of the work or a restart:

* its randomness comes from (seed, image index, draw) alone: draw ``j`` of image ``i`` has its own generator,
  seeded by a hash of the three (:func:`scorezoo.scoring.draw_seed`), which draws its dequantization
  noise and then its Hutchinson probes (per-sample generators, :mod:`scorezoo.utils`);
* the solve does not couple images through step sizes: the model's calibrated fixed-step schedule, or else
  torchode's adaptive solver with a step size per image;
* the batch an image is solved in is always the same unit, so even the float rounding of batched kernels is the
  same (a different ``batch_size`` changes the rounding only: about 1e-6 bits/dim with a schedule).

No collective runs while images are scored (the model is not wrapped in DDP; each process solves its own ODEs), so
processes whose shares differ in difficulty never wait for each other until the end, where the per-image records
are gathered to the main process. Results stream to disk as they are computed (:mod:`scorezoo.evaluation.records`);
a run started again with the same arguments skips the images already done.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import torch

from ..likelihood.ode import short_repr
from .specs import EvalData, load_eval_data
from ..scoring import (DEQUANTIZATIONS, DIVERGENCES, ESTIMATORS, ScoringPlan, check_choices, draw_generators,
                       open_pictures)
from .records import append_records, merge, read_records, repair, shard_path, shard_paths, summarize

__all__ = ["evaluate", "EvalSummary", "EVAL_SOLVERS"]

#: what ``solver`` may be: ``auto`` (the model's calibrated schedule when it has one, else the adaptive solver),
#: ``calibrated``, ``adaptive``, or ``torchode`` (the adaptive solver, as named before 0.4)
EVAL_SOLVERS = ("auto", "calibrated", "adaptive", "torchode")
#: images per unit (one solve) unless told; patches per solve for tiled pictures
DEFAULT_BATCH_SIZE, DEFAULT_PATCH_BATCH = 64, 256


@dataclass(repr=False)
class EvalSummary:
    """Result of :func:`evaluate` (the ``summary`` of ``results.json``), the same on every process.

    Attributes:
        bpd: mean bits/dim over the images scored (each the mean of its draws), or ``None`` if none was.
        stderr: its standard error over images (``None`` for fewer than 2 images).
        stderr_dequantization: the part of ``stderr`` due to each image's dequantization (and probe) noise,
            ``sqrt(mean_i(s_i^2 / K) / n)``, with K >= 2 draws; else ``None``.
        num_images, num_scored, num_failed: images in the data (after ``limit``), scored, and failed (unreadable,
            smaller than the model, or a failed solve; listed in ``failures`` and in the results file).
        nfe_mean: mean score evaluations per image's solve.
        images_per_second: images scored by this run per second of its wall time (all processes together), or
            ``None`` when it had nothing left to do.
        seconds: wall time of this run.
        num_processes: processes of this run.
        solver: the estimator and solver, in words.
        out: the per-image results (JSON lines, sorted by index); summary_path: ``results.json``.
        failures: ``[{"index", "source", "error"}]``.
        records: every per-image record, sorted by index.
    """

    bpd: float | None
    stderr: float | None
    stderr_dequantization: float | None
    num_images: int
    num_scored: int
    num_failed: int
    nfe_mean: float | None
    images_per_second: float | None
    seconds: float
    num_processes: int
    solver: str
    out: Path
    summary_path: Path
    failures: list
    records: list

    __repr__ = short_repr


class _Processes:
    """This process's place in a launch (``accelerate launch``, ``torchrun``: ``WORLD_SIZE`` > 1), or a lone one."""

    def __init__(self, timeout_s: float):
        self.world, self.rank = int(os.environ.get("WORLD_SIZE", "1")), 0
        self.device = torch.device("cuda") if torch.cuda.is_available() else None
        if self.world > 1:
            try:
                from accelerate import PartialState
            except ImportError:
                raise ValueError(f"launched as {self.world} processes (WORLD_SIZE), which needs accelerate: pip "
                                 "install 'scorezoo[eval]'.") from None
            # as train/train_mle.py: accelerate takes a multi-process launch without CUDA as data-parallel on CPU
            # (gloo) only with cpu=True. The timeout bounds how long a process that has finished its share may wait
            # for the others at the end, so it is long: shares of different difficulty finish at different times
            ours = not torch.distributed.is_initialized()
            state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))
            self.world, self.rank, self.device = state.num_processes, state.process_index, state.device
            self._owns_group = ours and torch.distributed.is_initialized()

    def close(self, keep_group: bool = False) -> None:
        """Wait for every process, then take down the process group this run started (unless ``keep_group``): a
        gloo group left to the interpreter's exit can abort a process ("terminate called without an active
        exception") after its work is done."""
        if self.world > 1 and getattr(self, "_owns_group", False):
            torch.distributed.barrier()
            if not keep_group:
                torch.distributed.destroy_process_group()

    def all_gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def _check_int(name: str, v, low: int, allow_none: bool = False) -> None:
    if allow_none and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}{' or None' if allow_none else ''}, got {v!r}.")


def _fingerprint(pipe) -> str:
    """sha256 of the model's config and weights: a resumed run must score with the same model."""
    h = hashlib.sha256(json.dumps({k: v for k, v in pipe.config.items() if k != "_scorezoo_version"},
                                  sort_keys=True).encode())
    for k, v in sorted(pipe.network.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _plan(pipe, ev: EvalData, *, estimator: str, solver: str, rtol, atol, divergence: str, num_repeats: int,
          dequantization: str, batch: int) -> ScoringPlan:
    """The :class:`~scorezoo.scoring.ScoringPlan` of :func:`evaluate`'s options: ``solver="torchode"`` is the
    adaptive solver (torchode's dopri5, a step size per image); the data spec decides the tiling."""
    return ScoringPlan.create(pipe, estimator=estimator, solver="adaptive" if solver == "torchode" else solver,
                              rtol=rtol, atol=atol, divergence=divergence, num_repeats=num_repeats,
                              tile=ev.tile, dequantization=dequantization, max_batch_size=batch * num_repeats)


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("scorezoo", "torch", "torchdiffeq", "torchode", "accelerate", "diffusers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    from .. import __version__

    out["scorezoo"] = __version__  # the imported copy, which may not be the installed one
    return out


def _load(pipe, data: EvalData, idx: list[int]) -> tuple[list[int], object, list[dict]]:
    """``(the images of idx that could be read, them as bits_per_dim takes them, failure records)``; a picture
    smaller than the model is a failure (:func:`~scorezoo.scoring.open_pictures`), not an upscale."""
    from ..data import load_image

    if data.levels is not None:
        return idx, data.levels[idx], []
    if data.tile:  # read by bits_per_dim itself, one picture per unit: an unreadable one fails its solve alone
        return idx, [data.paths[i] for i in idx], []
    ok, levels, failed = [], [], []
    for i in idx:
        try:
            picture, = open_pictures(data.paths[i], pipe.data_shape)
            levels.append(load_image(picture, data_shape=pipe.data_shape, num_levels=pipe.num_levels).levels)
            ok.append(i)
        except ValueError as e:
            failed.append({"index": i, "source": data.sources[i], "error": str(e).splitlines()[0]})
    return ok, torch.stack(levels) if levels else None, failed


def _records(pipe, data: EvalData, idx: list[int], images, *, plan: ScoringPlan, seed: int) -> list[dict]:
    """Score ``images`` (of the indices ``idx``) in one call, each draw with its own generator."""
    res = pipe.bits_per_dim(images, plan=plan, generator=draw_generators(seed, idx, plan.num_repeats))
    out = []
    for k, i in enumerate(idx):
        rec = {"index": i, "source": data.sources[i]}
        draws = [float(v) for v in res.bpd_repeats[:, k]]
        if not all(map(math.isfinite, draws)):
            out.append({**rec, "error": "the solve gave a non-finite bits/dim (the model diverged on this image)"})
            continue
        rec.update(bpd=float(res.bpd[k]), bpd_draws=draws, nfe=int(res.nfe[k]))
        if data.tile:
            rec.update(num_patches=int(res.num_patches[k]), pixels_scored=int(res.pixels_scored[k]))
        out.append(rec)
    return out


def _score_unit(pipe, data: EvalData, unit: list[int], **kw) -> list[dict]:
    """The records of one unit, sorted by index: its readable images solved together; if that solve fails, each
    alone, so that a failure costs only its own image (deterministic: a rerun fails and falls back the same way)."""
    t0 = time.perf_counter()
    idx, images, records = _load(pipe, data, unit)

    def attempt(ids: list[int], imgs) -> list[dict]:
        try:
            return _records(pipe, data, ids, imgs, **kw)
        except (ValueError, RuntimeError) as e:
            if len(ids) > 1:
                return [r for j, i in enumerate(ids) for r in attempt([i], imgs[j:j + 1])]
            return [{"index": ids[0], "source": data.sources[ids[0]], "error": str(e).splitlines()[0]}]

    if idx:
        records += attempt(idx, images)
    seconds = round((time.perf_counter() - t0) / len(unit), 4)
    return sorted(({**r, "seconds": seconds} if "bpd" in r else r for r in records), key=lambda r: r["index"])


def _plot(path: Path, bpd: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(bpd, bins=max(10, min(100, int(math.sqrt(len(bpd))) * 2)), color="#4c72b0")
    ax.axvline(sum(bpd) / len(bpd), color="k", ls="--", lw=1, label=f"mean {sum(bpd) / len(bpd):.4f}")
    ax.set_xlabel("bits/dim per image")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(
    model,
    data: str | Sequence[str],
    out: str | os.PathLike = "results.jsonl",
    *,
    split: str = "test",
    plan: ScoringPlan | dict | None = None,
    revision: str | None = None,
    num_repeats: int = 1,
    seed: int = 0,
    limit: int | None = None,
    sample: int | None = None,
    batch_size: int | None = None,
    estimator: str = "ode",
    solver: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    divergence: str = "auto",
    dequantization: str = "uniform",
    plot: str | os.PathLike | None = None,
    progress: bool = True,
    command: str | None = None,
    timeout_s: float = 7 * 24 * 3600,
    keep_process_group: bool = False,
) -> EvalSummary:
    """Bits/dim of every image of a data set under a model, streamed to ``out`` one JSON line per image, on this
    process or split across the processes of a launch (``accelerate launch``, ``torchrun``); see the module
    docstring for why an image's numbers are the same at any scale and after a restart.

    Each image's bits/dim is :meth:`~scorezoo.pipeline.ScorePipeline.bits_per_dim`'s (uniform dequantization,
    Theis et al. 2016; the probability-flow ODE, Song et al. 2021 eq. 39, or the likelihood bound, Thm. 3), the mean
    over ``num_repeats`` draws; the data set's is the mean over images with its standard error (see
    :func:`scorezoo.evaluation.records.summarize`).

    Args:
        model: a :class:`~scorezoo.pipeline.ScorePipeline`, or a name or folder for
            :meth:`~scorezoo.pipeline.ScorePipeline.from_pretrained` (loaded by every process).
        revision: the Hub revision of a named model.
        data: a spec or several (:mod:`scorezoo.evaluation.specs`): ``"digits"``, ``"photo-patches"``,
            ``"cifar10"``, ``"cifar10:ROOT"``, ``"photos"``, ``"photos:PATH"``, picture files, folders, ``"@LIST"``.
        split: the split of a data set that has several: CIFAR-10's ``"test"`` (default) or ``"train"``.
        plan: how to score: a :class:`~scorezoo.scoring.ScoringPlan` for the model (its ``max_batch_size`` is the
            inputs of one solve), or a dict of :meth:`ScoringPlan.create <scorezoo.scoring.ScoringPlan.create>`'s
            options (``estimator``, ``solver``, ``method``, ``step_size``, ``rtol``, ``atol``, ``divergence``,
            ``num_repeats``, ``dequantization``; the data spec decides the tiling and ``batch_size`` the solves);
            then ``estimator``, ``solver``, ``rtol``, ``atol``, ``divergence``, ``num_repeats`` and
            ``dequantization`` are not read. Default: the plan of those.
        out: the per-image results, a ``.jsonl`` file; the summary goes next to it as ``.json``. An existing pair
            from the same settings is resumed: the images it holds are skipped.
        num_repeats: dequantization draws per image, K >= 1 (K >= 2 also measures the dequantization noise).
        seed: >= 0; with the image index and the draw, it fixes every random number of that draw.
        limit: score only the first ``limit`` images.
        sample: score a uniform random sample of ``sample`` images (drawn with ``seed``; see
            :meth:`EvalData.sample <scorezoo.evaluation.specs.EvalData.sample>`): the mean then estimates the whole
            data set's, and its standard error includes the sampling. Not with ``limit``.
        batch_size: images per solve (default 64), patches per solve for tiled pictures (default 256). It fixes
            which images are solved together, so keep it when resuming (it is part of the settings).
        estimator: ``"ode"`` or ``"bound"`` (the likelihood bound; no solver options).
        solver: ``"auto"`` (the model's calibrated schedule if it has one, else ``"torchode"``), ``"calibrated"``
            (refuse a model without one) or ``"torchode"`` (adaptive, a step size per image).
        rtol, atol: torchode's tolerances (default 1e-5).
        divergence: ``"auto"`` (exact up to :data:`AUTO_EXACT_MAX_DIM` dimensions, else Hutchinson's one-probe
            estimate), ``"exact"`` or ``"hutchinson"``.
        dequantization: ``"uniform"`` or ``"variational"`` (``u ~ q(u | k)`` of the model's trained dequantizer, a
            tighter bound; see :meth:`~scorezoo.pipeline.ScorePipeline.bits_per_dim`); the dequantizer transforms the
            same per-draw uniform numbers, so the guarantees above hold for both.
        plot: write a histogram of the per-image bits/dim there (needs matplotlib).
        progress: a progress bar with images/s and the time left, on the main process (its share of the work).
        command: the command line to record in the summary (default: this process's ``sys.argv``).
        timeout_s: how long a process that has finished its share may wait for the others at the end.
        keep_process_group: in a launch, leave the process group this run started up after the final barrier
            instead of taking it down: for a caller that ends the process itself right after (``scorezoo eval`` exits
            with ``os._exit``, since a gloo group can abort a process while it is taken down or at the
            interpreter's exit, after all the work is on disk).

    Returns:
        :class:`EvalSummary`, on every process.

    Raises:
        ValueError: before any work starts: bad or conflicting options, a model for continuous data or not for
            images, data the model does not fit (shape or levels), an unknown or missing data spec, an ``out`` that
            is not ``.jsonl``, or results at ``out`` made with other settings or another model. Unreadable pictures,
            pictures smaller than the model and failed solves do not raise: they are records with an ``"error"``.
    """
    from ..pipeline import ScorePipeline
    from ..progress import progress_bar

    _check_int("num_repeats", num_repeats, 1)
    _check_int("seed", seed, 0)
    _check_int("limit", limit, 1, allow_none=True)
    _check_int("sample", sample, 1, allow_none=True)
    if limit is not None and sample is not None:
        raise ValueError("give limit (the first N images) or sample (N at random), not both.")
    _check_int("batch_size", batch_size, 1, allow_none=True)
    check_choices(("estimator", estimator, ESTIMATORS), ("solver", solver, EVAL_SOLVERS),
                  ("divergence", divergence, DIVERGENCES), ("dequantization", dequantization, DEQUANTIZATIONS))
    for name, v in (("rtol", rtol), ("atol", atol)):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}.")
    out = Path(out)
    if out.suffix != ".jsonl":
        raise ValueError(f"out must be a .jsonl file (the summary goes next to it as .json), got {str(out)!r}.")
    summary_path = out.with_suffix(".json")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("plot needs matplotlib: pip install matplotlib (or drop the plot).") from None

    procs = _Processes(timeout_s)
    if isinstance(model, ScorePipeline):
        pipe, model_name = model, str(model.extra_config.get("name", "a ScorePipeline object"))
        if procs.world > 1:
            pipe.to(procs.device)
    else:
        pipe, model_name = ScorePipeline.from_pretrained(model, revision, device=procs.device), str(model)
    if pipe.num_levels is None:
        raise ValueError(f"model {model_name} is for continuous data (num_levels is None): bits/dim does not apply.")
    ev = load_eval_data(data, data_shape=pipe.data_shape, num_levels=pipe.num_levels, split=split,
                        trained_on=pipe.extra_config.get("dataset"))
    if limit is not None:
        ev = ev.take(limit)
    if sample is not None:
        ev = ev.sample(sample, seed)
    batch = batch_size or (DEFAULT_PATCH_BATCH if ev.tile else DEFAULT_BATCH_SIZE)
    if isinstance(plan, dict):
        repeats = int(plan.get("num_repeats", 1))
        plan = ScoringPlan.create(pipe, **{"num_repeats": 1, **plan, "tile": ev.tile,
                                           "max_batch_size": batch * repeats})
    elif plan is not None:
        if plan.tile is not None and plan.tile != ev.tile:
            raise ValueError(f"the plan says tile={plan.tile}, but --data {ev.spec} is "
                             f"{'tiled' if ev.tile else 'resized'}: leave the plan's tile unset (None).")
        plan = plan.replace(tile=ev.tile)
    else:
        plan = _plan(pipe, ev, estimator=estimator, solver=solver, rtol=rtol, atol=atol, divergence=divergence,
                     num_repeats=num_repeats, dequantization=dequantization, batch=batch)
    solver_text = plan.describe()
    n = len(ev)
    config = {"model": model_name, "revision": revision, "model_sha256": _fingerprint(pipe), "data": ev.spec,
              **({"split": split} if split != "test" else {}), "num_images": n, "limit": limit,
              **({"sample": sample} if sample is not None else {}), "seed": seed,
              "batch_size": batch, "plan": plan.to_dict()}

    # the main process checks that existing results come from these settings; every process stops on its answer
    problem = None
    if procs.rank == 0:
        problem = _check_resume(out, summary_path, config)
        if problem is None:
            _write_json(summary_path, {"status": "running", "config": config})
    problem = procs.all_gather(problem)[0]
    if problem:
        raise ValueError(problem)
    mine = shard_path(out, procs.rank)
    repair(mine)
    done = set().union(*procs.all_gather(set(read_records(shard_paths(out)))))

    units = [list(range(s, min(s + (1 if ev.tile else batch), n))) for s in range(0, n, 1 if ev.tile else batch)]
    todo = [u for k, u in enumerate(units) if k % procs.world == procs.rank and not done.issuperset(u)]
    pipe.set_progress_bar_config(disable=True)
    share = f" (process 0's share of {procs.world})" if procs.world > 1 else ""
    bar = progress_bar(total=sum(len(u) for u in todo), desc=f"bits/dim{share}", unit="image",
                       disable=not progress or procs.rank != 0)
    t0, cpu0, scored = time.perf_counter(), time.process_time(), 0
    fd = os.open(mine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for unit in todo:
            # a unit is solved whole even when part of it is on disk, so that its images keep their batch mates
            records = [r for r in _score_unit(pipe, ev, unit, plan=plan, seed=seed) if r["index"] not in done]
            append_records(fd, records)
            scored += len(records)
            bar.update(len(unit))
    finally:
        os.close(fd)
        bar.close()
    # the per-image records, not per-process means, go to the main process (its disk may not be theirs)
    gathered = procs.all_gather((list(read_records([mine]).values()), scored, time.process_time() - cpu0))
    seconds = time.perf_counter() - t0
    summary = None
    if procs.rank == 0:
        files = shard_paths(out)
        records = read_records(files)
        for recs, _, _ in gathered:
            for r in recs:
                records.setdefault(r["index"], r)
        merge(out, records, files)
        total = sum(s for _, s, _ in gathered)
        figures = summarize(records, n)
        figures.update(images_per_second=total / seconds if total and seconds > 0 else None, seconds=seconds,
                       cpu_seconds=sum(c for _, _, c in gathered), scored_this_run=total,
                       num_processes=procs.world)
        _write_json(summary_path, {"status": "done", "config": config, "solver": solver_text,
                                   "data_description": ev.description,
                                   "command": command or " ".join([sys.executable, *sys.argv]),
                                   "versions": _versions(), "summary": figures})
        ordered = [records[i] for i in sorted(records)]
        ok = [r["bpd"] for r in ordered if "bpd" in r]
        if plot is not None and ok:
            _plot(Path(plot), ok, f"{model_name} on {ev.spec}: {len(ok)} images")
        summary = EvalSummary(
            bpd=figures["bpd_mean"], stderr=figures["bpd_stderr"],
            stderr_dequantization=figures["bpd_stderr_dequantization"], num_images=n,
            num_scored=figures["num_scored"], num_failed=figures["num_failed"], nfe_mean=figures["nfe_mean"],
            images_per_second=figures["images_per_second"], seconds=seconds, num_processes=procs.world,
            solver=solver_text, out=out, summary_path=summary_path, failures=figures["failures"], records=ordered)
    summary = procs.all_gather(summary)[0]
    if procs.rank != 0:
        mine.unlink(missing_ok=True)  # merged by the main process (on a disk it may not see)
    procs.close(keep_group=keep_process_group)
    return summary


#: settings that name the model rather than define it (its sha256 does)
NAMES = ("model", "revision")


def _check_resume(out: Path, summary_path: Path, config: dict) -> str | None:
    """Why the results at ``out`` cannot be resumed with ``config``, or ``None`` (also when there are none)."""
    if not shard_paths(out):
        return None
    try:
        old = json.loads(summary_path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return (f"{out} exists but {summary_path} does not describe it, so it cannot be resumed: choose another out "
                "or delete it.")
    # the weights' hash identifies the model, however its name or folder is spelled
    changed = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k) and k not in NAMES]
    if changed:
        diff = ", ".join(f"{k}: {old.get(k)!r:.40} then, {config.get(k)!r:.40} now" for k in changed[:3])
        return (f"{out} holds results made with other settings ({diff}): resume with the same ones, or choose "
                "another out (or delete it) to start over.")
    return None


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
