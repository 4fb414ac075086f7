"""``scorezoo``: the zoo, bits/dim of pictures, and samples, from the shell.

    scorezoo list [--json]
    scorezoo bpd IMAGES... [--model NAME] [--num-repeats K] [--divergence exact|hutchinson] [--seed S] [--json]
    scorezoo bpd --digits N                      # held-out sklearn digits (needs scikit-learn)
    scorezoo sample [--model NAME] [-n 16] [--sampler ode|em|pc] [--steps N] [--seed S] [-o grid.png]
    scorezoo convert score_sde|score_flow CHECKPOINT [--config CONFIG] -o FOLDER [--weights ema|raw]

Every picture goes through the one transform of :mod:`scorezoo.data` (EXIF orientation, transparency
over black, model channels, centre-crop + Lanczos resize, nearest of K levels) and ``bpd`` prints the steps
taken for each file. Pictures are never inverted unless ``--invert`` is given; when a picture has a light
background (dark ink on paper, the opposite of the digits data) ``bpd`` says so and suggests ``--invert``.

Exit codes: 0 all fine; 1 some inputs failed, or the model could not be loaded; 2 usage errors. Errors are
one line on stderr naming the file or model; ``--debug`` (or ``SCOREZOO_DEBUG=1``) shows tracebacks and lets
unexpected exceptions through.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import __version__
from .data import background_is_light, levels_to_uint8, load_image
from .datasets import load_digits
from .pipeline import ScorePipeline
from . import zoo
from .zoo import ModelNotFoundError, default_model, registry, resolve_pretrained

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """An error the user can act on: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The ``scorezoo`` argument parser (sub-commands ``list``, ``bpd``, ``sample``, ``convert``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    common.add_argument("--debug", action="store_true", help="show tracebacks (also SCOREZOO_DEBUG=1)")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", "-m", default=None,
                       help="a folder, a zoo name (vp-mle-digits) or a Hub id (owner/name); default: the zoo's "
                            "default model")
    model.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    model.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    model.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")

    parser = argparse.ArgumentParser(prog="scorezoo", description="Likelihood-trained score-based models: "
                                     "exact bits/dim by the probability-flow ODE, and samples.")
    parser.add_argument("--version", action="version", version=f"scorezoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{list,bpd,sample,convert}", required=True)

    p = sub.add_parser("list", parents=[common], help="the zoo: models, measured bits/dim, where they are")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bpd", parents=[common, model], help="bits/dim of pictures under a model",
                       description="Bits/dim of each picture by the probability-flow ODE, with uniform "
                                   "dequantization: mean over --num-repeats draws and its standard error.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="picture files of any size and mode")
    p.add_argument("--digits", type=_positive_int, metavar="N",
                   help="also score the first N held-out sklearn digits (index %% 6 == 0; needs scikit-learn)")
    p.add_argument("--num-repeats", "-k", type=_positive_int, default=4, metavar="K",
                   help="dequantization draws per picture (default 4; the standard error needs K >= 2)")
    p.add_argument("--divergence", choices=("exact", "hutchinson"), default="hutchinson",
                   help="divergence of the score: exact (D backward passes) or Hutchinson (one; default)")
    p.add_argument("--invert", action="store_true",
                   help="invert the pictures (v -> 1 - v): for dark ink on light paper under the digits models")
    p.add_argument("--rtol", type=_positive_float, default=1e-5, help="ODE relative tolerance (default 1e-5)")
    p.add_argument("--atol", type=_positive_float, default=1e-5, help="ODE absolute tolerance (default 1e-5)")
    p.add_argument("--method", default="dopri5", help="torchdiffeq method (default dopri5, adaptive)")
    p.add_argument("--step-size", type=_positive_float, default=None, help="step of a fixed-step --method")
    p.add_argument("--batch-size", type=_positive_int, default=1,
                   help="pictures per ODE solve (default 1: each picture's result and NFE are its own)")
    p.add_argument("--fast", action="store_true",
                   help="fixed steps on the model's calibrated schedule (vp-mle-digits: 44 evaluations instead of "
                        "about 460, within 0.01 bits/dim); ignores --rtol/--atol/--method")
    p.set_defaults(func=cmd_bpd)

    p = sub.add_parser("sample", parents=[common, model], help="draw samples into an image grid")
    p.add_argument("-n", "--num-samples", type=_positive_int, default=16, metavar="N", help="samples (default 16)")
    p.add_argument("--sampler", choices=("ode", "em", "pc"), default="ode",
                   help="probability-flow ODE (default), Euler-Maruyama, or predictor-corrector")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="steps (default: adaptive for ode, 1000 for em and pc)")
    p.add_argument("--rtol", type=_positive_float, default=1e-5, help="ODE sampler relative tolerance")
    p.add_argument("--atol", type=_positive_float, default=1e-5, help="ODE sampler absolute tolerance")
    p.add_argument("-o", "--output", default="samples.png",
                   help="image grid (.png, .jpg, ...), or .npy for the raw samples (default samples.png)")
    p.add_argument("--scale", type=_positive_int, default=None,
                   help="upscale each tile by this factor, nearest neighbour (default: tiles of >= 64 px)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("convert", parents=[common], help="turn an official checkpoint into a pipeline folder",
                       description="Convert the authors' score_sde_pytorch .pth or score_flow checkpoint into a "
                                   "pipeline folder that ScorePipeline.from_pretrained loads (EMA weights).")
    p.add_argument("format", choices=("score_sde", "score_flow"), help="the checkpoint's code base")
    p.add_argument("checkpoint", help="checkpoint_N.pth (score_sde); checkpoint_N or its run folder (score_flow)")
    p.add_argument("--config", default=None,
                   help="a published config (vp/cifar10_ddpmpp_continuous, ...; score_flow: the run name, default "
                        "the run folder's name) or a JSON file of the official config (config.to_dict())")
    p.add_argument("-o", "--output", required=True, help="the pipeline folder to write")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema",
                   help="EMA weights, as the official evaluation (default), or the raw ones")
    p.add_argument("--name", default=None, help="the model's name on its card (default: the folder's name)")
    p.set_defaults(func=cmd_convert)
    return parser


# -- shared ----------------------------------------------------------------------------------------------
def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _load(args: argparse.Namespace) -> tuple[ScorePipeline, str, str]:
    """``(pipeline, name, where it came from)``; a model that cannot be loaded is a :class:`CLIError`."""
    if not _progress(args):
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    name = args.model or default_model()
    try:
        folder = resolve_pretrained(name, revision=args.revision)
        pipe = ScorePipeline.from_pretrained(folder)
    except ModelNotFoundError as e:
        raise CLIError(str(e)) from None
    except (ValueError, OSError) as e:
        raise CLIError(f"model {name!r} cannot be loaded: {e}") from None
    resolved = folder.resolve()
    if Path(name).expanduser().is_dir():
        where = f"local folder {folder}"
    elif resolved.is_relative_to(zoo.BUNDLED_DIR.resolve()):
        where = f"bundled copy {folder}"
    else:
        where = f"Hugging Face Hub, cached at {folder}"
    return pipe, name, where


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths))).rstrip() for r in rows)


# -- list ------------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    """``scorezoo list``: one row per model card; exit 1 when a card could not be read."""
    entries, problems = registry()
    for line in problems:
        print(f"scorezoo: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
    elif not entries:
        print(f"no models found: nothing bundled in {zoo.BUNDLED_DIR} and no cards in {zoo.CARDS_DIR}.")
    else:
        rows = [["name", "hub id", "sde", "weighting", "dataset", "resolution", "params", "bpd (ODE)",
                 "bpd (bound)", "eval split", "status"]]
        for e in entries:
            ode = f"{_fmt(e.bpd_ode, 3)} ± {_fmt(e.bpd_ode_stderr, 3)}" if e.bpd_ode is not None else (
                f"{e.bpd_reported:.2f} (reported)" if e.bpd_reported is not None else "—")
            bound = f"{_fmt(e.bpd_bound, 3)} ± {_fmt(e.bpd_bound_stderr, 3)}" if e.bpd_bound is not None else "—"
            rows.append([e.name + (" *" if e.default else ""), e.repo_id, e.sde or "—", e.weighting or "—",
                         e.dataset or "—", e.resolution or "—",
                         f"{e.parameters:,}" if e.parameters is not None else "—", ode, bound,
                         e.eval_split or "—", e.status])
        print(_table(rows, right={6}))
        print("* default model. status: bundled = installed with scorezoo; cached = in the local Hugging Face "
              "cache; remote = downloaded from the Hub on first use; convert = the authors' checkpoint, turned into a "
              "pipeline by `scorezoo convert` (reported = the authors' figure, not measured here).")
    return EXIT_FAILED if problems else EXIT_OK


# -- bpd -------------------------------------------------------------------------------------------------
def _check_image_model(pipe: ScorePipeline, name: str) -> None:
    if pipe.num_levels is None:
        raise CLIError(f"model {name!r} is for continuous data (no levels): bits/dim does not apply.")
    if len(pipe.data_shape) != 3:
        raise CLIError(f"model {name!r} takes data of shape {pipe.data_shape}, not pictures: use the library's "
                       "log_likelihood().")


def _gather_inputs(args: argparse.Namespace, pipe: ScorePipeline) -> tuple[list[tuple[str, torch.Tensor, str]],
                                                                          list[dict[str, str]]]:
    """Decode every input: ``([(label, levels (C, H, W), transform)], [{"input", "error"}])``."""
    ok, failed = [], []
    for path in args.images:
        try:
            li = load_image(path, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=args.invert)
        except ValueError as e:
            failed.append({"input": path, "error": str(e)})
            print(f"scorezoo: error: {e}", file=sys.stderr)
            continue
        ok.append((path, li.levels, li.transform))
    if args.digits:
        if pipe.data_shape != (1, 8, 8) or pipe.num_levels != 17:
            raise CLIError(f"--digits needs a model of 8×8×1 pictures with 17 levels; {args.model or 'this model'} "
                           f"takes {pipe.data_shape} with {pipe.num_levels} levels.", EXIT_USAGE)
        try:
            digits = load_digits().eval
        except ImportError as e:
            raise CLIError(f"--digits: {e}") from None
        n = min(args.digits, digits.shape[0])
        levels = (pipe.num_levels - 1) - digits[:n] if args.invert else digits[:n]
        ok += [(f"digits[{6 * i}]", levels[i], "sklearn digits, held-out split (i % 6 == 0): levels as they are"
                + (", inverted" if args.invert else "")) for i in range(n)]
    return ok, failed


def cmd_bpd(args: argparse.Namespace) -> int:
    """``scorezoo bpd``: bits/dim per picture, then the mean; exit 1 when some input failed."""
    if not args.images and not args.digits:
        raise CLIError("give picture files, or --digits N for held-out digits (scorezoo bpd --help).", EXIT_USAGE)
    if args.fast and (args.rtol != 1e-5 or args.atol != 1e-5 or args.method != "dopri5" or args.step_size is not None):
        raise CLIError("--fast takes its steps from the model's calibrated schedule: drop --rtol, --atol, --method "
                       "and --step-size (or drop --fast to set the solver yourself).", EXIT_USAGE)
    if args.step_size is not None and args.method in ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2"):
        raise CLIError(f"--step-size is for fixed-step methods (euler, midpoint, rk4), not {args.method}.",
                       EXIT_USAGE)
    debug = _debug(args)
    pipe, name, where = _load(args)
    _check_image_model(pipe, name)
    inputs, failed = _gather_inputs(args, pipe)
    light = [label for label, levels, _ in inputs if not args.invert and background_is_light(levels, pipe.num_levels)]
    dataset = str(pipe.extra_config.get("dataset", ""))
    if light and "digits" in dataset:
        _note(args, f"note: {', '.join(light[:3])}{' ...' if len(light) > 3 else ''} "
                    f"{'has' if len(light) == 1 else 'have'} a light background; {name} was trained on light ink "
                    "on black (0 = background), so dark ink on paper scores poorly: add --invert to invert them.")
    solver = dict(rtol=args.rtol, atol=args.atol, method=args.method)
    if args.step_size is not None:
        solver["options"] = {"step_size": args.step_size}
    solver_text = f"{args.method}, rtol {args.rtol:g}, atol {args.atol:g}"
    sch = pipe.likelihood_schedule
    if args.fast:
        if sch is None:
            raise CLIError(f"{name} has no calibrated likelihood schedule, so --fast cannot be used; drop --fast "
                           "(or calibrate one: ScorePipeline.calibrate_likelihood_schedule).", EXIT_USAGE)
        solver = {"schedule": "calibrated"}
        solver_text = f"{sch.method}, {sch.num_steps} fixed steps in {sch.time_variable.replace('_', ' ')}"
        if sch.target is not None:
            bound = "per image, rms" if sch.criterion == "rms" else "on the mean"
            solver_text += f", calibrated to {sch.target:g} bits/dim ({bound})"
        if sch.measured_rms_error is not None:
            solver_text += (f"; error measured on {sch.num_calibration_samples} points, schedule minus tight solve: "
                            f"{sch.measured_rms_error:.4f} rms, {sch.measured_mean_error:+.4f} mean")
        elif sch.estimated_error is not None:
            solver_text += f"; estimated error {sch.estimated_error:.4f} bits/dim (step doubling, not measured)"
    results = []
    bar = tqdm(total=len(inputs), desc="bits/dim", unit="image", delay=1.0, disable=True if args.quiet else None,
               leave=False)
    for start in range(0, len(inputs), args.batch_size):
        batch = inputs[start:start + args.batch_size]
        t0 = time.perf_counter()
        try:
            res = pipe.bits_per_dim(torch.stack([levels for _, levels, _ in batch]), num_repeats=args.num_repeats,
                                    divergence=args.divergence, generator=torch.Generator().manual_seed(args.seed),
                                    batch_size=args.batch_size, **solver)
        except Exception as e:  # one picture's failed solve must not stop the others
            if debug or not isinstance(e, (ValueError, AssertionError, RuntimeError)):
                raise
            for label, _, _ in batch:
                failed.append({"input": label, "error": f"{label}: the ODE solve failed: {e}"})
                print(f"scorezoo: error: {label}: the ODE solve failed: {str(e).splitlines()[0]}", file=sys.stderr)
            bar.update(len(batch))
            continue
        seconds = (time.perf_counter() - t0) / len(batch)
        for i, (label, _, transform) in enumerate(batch):
            results.append({"input": label, "bpd": float(res.bpd[i]), "stderr": _finite(float(res.stderr[i])),
                            "nfe": int(res.nfe[i]), "time_s": round(seconds, 4), "transform": transform})
        bar.update(len(batch))
    bar.close()

    bpds = np.array([r["bpd"] for r in results])
    mean = float(bpds.mean()) if len(bpds) else None
    mean_se = float(bpds.std(ddof=1) / math.sqrt(len(bpds))) if len(bpds) > 1 else None
    estimator = {"estimator": "probability-flow ODE", "divergence": args.divergence,
                 "num_repeats": args.num_repeats, "seed": args.seed, **{k: v for k, v in solver.items()}}
    if args.fast:
        estimator["schedule"] = {"method": sch.method, "time_variable": sch.time_variable, "steps": sch.num_steps,
                                 "target_bpd": sch.target, "criterion": sch.criterion,
                                 "estimated_error_bpd": sch.estimated_error,
                                 "measured_rms_error_bpd": sch.measured_rms_error,
                                 "measured_mean_error_bpd": sch.measured_mean_error}
    if args.json:
        print(json.dumps({"model": name, "source": where, "data_shape": list(pipe.data_shape),
                          "num_levels": pipe.num_levels, "settings": estimator, "results": results,
                          "failed": failed, "mean_bpd": mean, "mean_bpd_stderr": mean_se},
                         indent=2, ensure_ascii=False))
    else:
        c, h, w = pipe.data_shape
        print(f"model      {name} ({where}): {pipe.sde.name.upper()} SDE, {h}×{w}×{c}, {pipe.num_levels} levels")
        print(f"estimator  probability-flow ODE ({solver_text}), "
              f"{args.divergence} divergence, {args.num_repeats} dequantization draw(s) per picture, seed {args.seed}")
        print(f"transform  EXIF orientation, transparency over {'white' if args.invert else 'black'}, "
              f"{'L' if c == 1 else 'RGB'}, centre-crop + Lanczos resize to {w}×{h}, "
              f"{'inversion, ' if args.invert else ''}nearest of {pipe.num_levels} levels (steps per file below)")
        if results:
            rows = [["input", "bits/dim", "± s.e.", "NFE", "time", "preprocessing"]]
            rows += [[r["input"], _fmt(r["bpd"]), _fmt(r["stderr"]), str(r["nfe"]), f"{r['time_s']:.2f}s",
                      r["transform"]] for r in results]
            rows.append([f"mean of {len(results)}", _fmt(mean), _fmt(mean_se), "", "",
                         "± s.e. over pictures" if mean_se is not None else ""])
            print(_table(rows, right={1, 2, 3, 4}))
    if failed:
        print(f"scorezoo: {len(failed)} of {len(failed) + len(results)} inputs failed (errors above).",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- sample ----------------------------------------------------------------------------------------------
def _grid(images: np.ndarray, scale: int) -> Image.Image:
    """``(B, H, W, C)`` uint8 pictures as one grid of ``ceil(sqrt(B))`` columns, 2-px dark-gray gutters."""
    b, h, w, c = images.shape
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w, gap = h * scale, w * scale, 2
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, c), 64, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[gap + r * (h + gap):gap + r * (h + gap) + h, gap + q * (w + gap):gap + q * (w + gap) + w] = img
    return Image.fromarray(grid[..., 0] if c == 1 else grid)


def _scatter(points: np.ndarray, size: int = 256) -> Image.Image:
    """2-D samples ``(B, 2)`` as a ``size``×``size`` grayscale histogram (log counts; y up)."""
    lo, hi = points.min(0), points.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)
    counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=size,
                                  range=[[lo[0] - pad[0], hi[0] + pad[0]], [lo[1] - pad[1], hi[1] + pad[1]]])
    img = np.log1p(counts.T[::-1])
    return Image.fromarray((255 * img / max(img.max(), 1e-12)).astype(np.uint8))


def cmd_sample(args: argparse.Namespace) -> int:
    """``scorezoo sample``: draw samples and write them as an image grid (or ``.npy``)."""
    out = Path(args.output)
    suffix = out.suffix.lower()
    Image.init()
    if suffix != ".npy" and suffix not in Image.registered_extensions():
        raise CLIError(f"-o {args.output}: unknown picture extension {suffix or '(none)'}; use .png, .jpg or .npy.",
                       EXIT_USAGE)
    pipe, name, where = _load(args)
    kwargs: dict[str, Any] = {"rtol": args.rtol, "atol": args.atol} if args.sampler == "ode" and not args.steps else {}
    t0 = time.perf_counter()
    res = pipe(args.num_samples, sampler=args.sampler, num_steps=args.steps,
               generator=torch.Generator().manual_seed(args.seed), output_type="pt", progress=_progress(args),
               **kwargs)
    seconds = time.perf_counter() - t0
    is_image = len(pipe.data_shape) == 3
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".npy":
            np.save(out, res.samples.cpu().numpy())
        elif is_image:
            k = pipe.num_levels or 256
            levels = torch.round(res.images.double() * (k - 1)).long()
            scale = args.scale or max(1, 64 // max(pipe.data_shape[1:]))
            _grid(levels_to_uint8(levels, k), scale).save(out)
        elif pipe.data_shape == (2,):
            _scatter(res.samples.double().cpu().numpy()).save(out)
        else:
            raise CLIError(f"model {name!r} has data of shape {pipe.data_shape}: write them with -o samples.npy.",
                           EXIT_USAGE)
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e}") from None
    steps = "adaptive" if args.sampler == "ode" and not args.steps else f"{args.steps or 1000} steps"
    summary = {"output": str(out), "model": name, "source": where, "num_samples": args.num_samples,
               "sampler": args.sampler, "steps": args.steps, "seed": args.seed, "nfe": res.nfe,
               "time_s": round(seconds, 3)}
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(f"wrote {out}: {args.num_samples} samples of {name} ({where}), sampler {args.sampler} ({steps}, "
              f"{res.nfe} score evaluations), seed {args.seed}, {seconds:.1f}s")
    return EXIT_OK


# -- convert ---------------------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    """``scorezoo convert``: an official checkpoint -> a pipeline folder with its model card."""
    from .convert import convert_score_flow, convert_score_sde

    if args.format == "score_sde" and args.config is None:
        raise CLIError("score_sde checkpoints need --config (e.g. vp/cifar10_ddpmpp_continuous, or a JSON file).",
                       EXIT_USAGE)
    command = shlex.join(["scorezoo", "convert", args.format, args.checkpoint,
                          *(["--config", args.config] if args.config else []), "-o", args.output,
                          *(["--weights", "raw"] if args.weights == "raw" else [])])
    convert = convert_score_sde if args.format == "score_sde" else convert_score_flow
    try:
        pipe = convert(args.checkpoint, args.config, args.output, weights=args.weights, name=args.name,
                       command=command)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise CLIError(str(e)) from None
    params = sum(p.numel() for p in pipe.network.parameters())
    print(f"wrote {args.output}: {pipe.sde.name.upper()} SDE, NCSNpp with {params:,} parameters, "
          f"{args.weights} weights; load it with ScorePipeline.from_pretrained({str(args.output)!r})")
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------------------
def _debug(args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("SCOREZOO_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scorezoo`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code (0, 1 or 2).

    User errors become one line on stderr; unexpected exceptions too, unless ``--debug`` or
    ``SCOREZOO_DEBUG=1``, which re-raise them (and print tracebacks of user errors).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version exit 0, usage errors 2
        return int(e.code or 0)
    debug = _debug(args)
    try:
        return args.func(args)
    except CLIError as e:
        if debug:
            traceback.print_exc()
        print(f"scorezoo: error: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:  # `scorezoo bpd ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("scorezoo: interrupted.", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"scorezoo: internal error: {type(e).__name__}: {first} (run again with --debug for the traceback, "
              "and report it).", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
