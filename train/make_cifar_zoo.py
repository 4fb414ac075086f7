"""Turn a CIFAR-10 run into the zoo's CIFAR-10 model ``scorezoo/bundled/vp-mle-cifar10-small/``, in two stages.

    SCOREZOO_CIFAR10=../shared/data/cifar10 python train/make_cifar_zoo.py bundle --run runs/vp-mle-cifar10-small
    scorezoo eval --model vp-mle-cifar10-small --data cifar10 --split test --out runs/cifar10-test.jsonl
    SCOREZOO_CIFAR10=../shared/data/cifar10 python train/make_cifar_zoo.py card --run runs/vp-mle-cifar10-small \\
        --test runs/cifar10-test.jsonl --compute "..." --budget "..." --full-hours H

``bundle`` saves the run's EMA weights in float16 (what ships; every number of the card is computed from them, loaded
back as float32), records the canonical training command, and calibrates the fast-likelihood schedule on
``--points`` dequantized training images (target ``--target`` bits/dim on the mean: the data set's bits/dim is a mean
over images), measured against a dopri5 solve at ``--reference-tol``. ``card`` writes the card from the test-set
results of ``scorezoo eval`` (per image, JSON lines), the lossless codecs on the same 10,000 images, the training
curve of the run's log and a grid of 64 samples.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from scorezoo import ScorePipeline
from scorezoo.compression import CODECS, lossless_bits_per_dim
from scorezoo.dequantization import uniform_dequantize
from scorezoo.datasets import load_cifar10_split

REPO = Path(__file__).resolve().parents[1]
NAME = "vp-mle-cifar10-small"
#: the training curve across sessions, in the model folder (runs do not outlive a session)
CURVE = "curve.json"
OUT = REPO / "scorezoo" / "bundled" / NAME
COMMAND = (f"accelerate launch train/train_mle.py --config train/configs/{NAME}.yaml --mixed_precision bf16 "
           "--max_train_minutes 6.5")


def save_fp16(pipe: ScorePipeline, out: Path) -> None:
    """Save ``pipe`` with float16 weights (half the size); loading gives float32 again."""
    pipe.network.half()
    try:
        pipe.save_pretrained(out)
    finally:
        pipe.network.float()


def bundle(args: argparse.Namespace) -> None:
    run = Path(args.run)
    src = run / "pipeline16" if (run / "pipeline16").is_dir() else run / "pipeline"
    pipe = ScorePipeline.from_pretrained(src)
    # the float16 weights are the model: round them first, so that calibration and scores see what ships
    pipe.network.half().float()
    pipe.extra_config.update(name=NAME, dataset="cifar10", training_command=args.command or COMMAND)
    if args.steps_before:
        # the run started (init_from) from weights that had trained this many steps in earlier sessions
        pipe.extra_config["training_steps"] = args.steps_before + int(pipe.extra_config.get("training_steps") or 0)
    train, _, _ = load_cifar10_split(None, "train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:args.points]
    x = uniform_dequantize(train[pick], num_levels=256, data_range=(-1.0, 1.0),
                           generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    sch = pipe.calibrate_likelihood_schedule(x, target=args.target, criterion="mean", reference_tol=args.reference_tol,
                                             method=args.method, max_steps=args.max_steps,
                                             optimizer_evals=args.optimizer_evals,
                                             generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
    print(f"schedule: {sch.num_steps} {sch.method} steps ({sch.nfe} NFE), measured mean error "
          f"{sch.measured_mean_error:+.4f}, rms {sch.measured_rms_error:.4f} bits/dim, {seconds:.0f} s", flush=True)
    out = Path(args.out)
    save_fp16(pipe, out)
    (out / "calibration.json").write_text(json.dumps({"points": args.points, "target": args.target,
                                                      "method": args.method, "reference_tol": args.reference_tol,
                                                      "optimizer_evals": args.optimizer_evals, "seconds": seconds,
                                                      "source": str(src)}, indent=1) + "\n")
    _update_curve(out / CURVE, run, args.steps_before, args.session)
    print(f"wrote {out}")


def _update_curve(path: Path, run: Path, steps_before: int, session: str) -> None:
    """Add the run's held-out checks to the model's training curve (``curve.json``, kept in the model folder because
    run folders do not outlive a session), at their step counted from the first session; a step measured again is
    replaced (a step of another session is kept: a session that restarted from older weights is another branch)."""
    curve = json.loads(path.read_text()) if path.exists() else []
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    new = {steps_before + r["step"]: {"step": steps_before + r["step"], "ode": round(r["eval"]["ode"], 4),
                                      "ode_stderr": round(r["eval"]["ode_stderr"], 4),
                                      "bound": round(r["eval"]["bound"], 4),
                                      "bound_stderr": round(r["eval"]["bound_stderr"], 4), "session": session}
           for r in log if "eval" in r}
    curve = [c for c in curve if (c["step"], c.get("session")) not in {(k, session) for k in new}]
    curve = sorted(curve + list(new.values()), key=lambda c: (c["step"], c.get("session") or ""))
    path.write_text(json.dumps(curve, indent=1) + "\n")


def codecs(args: argparse.Namespace) -> None:
    """PNG, WebP lossless and JPEG XL lossless of every image of the split, one JSON line per image (resumable)."""
    images, _, _ = load_cifar10_split(None, args.split)
    out = Path(args.out)
    done = sum(1 for _ in out.open()) if out.exists() else 0
    t0 = time.perf_counter()
    with out.open("a") as f:
        for i in range(done, len(images)):
            row = {"index": i, **{c: lossless_bits_per_dim(images[i], c) for c in CODECS}}
            f.write(json.dumps(row) + "\n")
            if i % 1000 == 999:
                f.flush()
                print(f"{i + 1} images, {time.perf_counter() - t0:.0f} s", flush=True)
    rows = [json.loads(line) for line in out.open()]
    for c in CODECS:
        v = torch.tensor([r[c] for r in rows if r[c] is not None], dtype=torch.float64)
        print(f"{c}: {v.mean():.4f} ± {v.std() / len(v) ** 0.5:.4f} bits/dim over {len(v)} images")


#: published CIFAR-10 test bits/dim (the papers' tables), for the card's comparison
PUBLISHED = [
    ("PNG (as reported by Kingma et al. 2016)", 5.87, "a lossless image codec"),
    ("JPEG 2000 (as reported by Kingma et al. 2016)", 5.20, "a lossless image codec"),
    ("FLIF (as reported by Ho et al. 2019)", 4.37, "a lossless image codec"),
    ("RealNVP (Dinh et al. 2017)", 3.49, "flow; GPUs"),
    ("Glow (Kingma & Dhariwal 2018)", 3.35, "flow; GPUs"),
    ("Flow++ (Ho et al. 2019)", 3.08, "flow, variational dequantization; GPUs"),
    ("ScoreFlow, VP/subVP (Song, Durkan, Murray & Ermon 2021)", "2.83–2.99", "likelihood-weighted score model; "
     "TPUs/GPUs, 1.3 M steps of batch 128"),
    ("VDM (Kingma et al. 2021)", 2.65, "variational diffusion; TPUs"),
]


def _mean_se(values: list[float]) -> tuple[float, float, int]:
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std() / len(v) ** 0.5) if len(v) > 1 else float("nan"), len(v)


def _dataset_index(row: dict) -> int:
    """The CIFAR-10 index of a ``scorezoo eval`` record (its ``source``, ``cifar10-<split>[i]``)."""
    m = re.fullmatch(r"cifar10-\w+\[(\d+)\]", str(row.get("source", "")))
    if m is None:
        raise SystemExit(f"not a CIFAR-10 record of scorezoo eval: {row}")
    return int(m.group(1))


def _pm(value: float, stderr: float | None) -> str:
    return f"{value:.3f}" + ("" if stderr is None else f" ± {stderr:.3f}")


def _read_eval(path: Path) -> tuple[list[dict], dict]:
    """The per-image records and the summary of a ``scorezoo eval`` run (its ``.jsonl`` and ``.json``)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    summary = json.loads(path.with_suffix(".json").read_text())
    if summary.get("status") != "done":
        raise SystemExit(f"{path}: the eval run is not finished; run its command again to resume it.")
    return [r for r in rows if "bpd" in r], summary


def card(args: argparse.Namespace) -> None:
    """The card of the bundled model: test-set figures, codecs, published figures, curve, samples, 8 reference
    images."""
    import yaml
    from scorezoo.display import image_grid
    from scorezoo.training.cards import render_card
    from scorezoo.training.config import DEFAULTS

    run, out = Path(args.run), Path(args.out)
    cfg = {**DEFAULTS, **yaml.safe_load((run / "config.yaml").read_text())}
    results = json.loads((run / "results.json").read_text())
    pipe_steps = json.loads((Path(args.out) / "pipeline_config.json").read_text()).get("training_steps")
    if pipe_steps:
        # the card's training line: the steps the shipped weights had, across sessions (not the config's limit)
        results["max_train_steps"] = pipe_steps
    pipe = ScorePipeline.from_pretrained(out)
    ode_rows, ode_sum = _read_eval(Path(args.test))
    ode, ode_se, n = _mean_se([r["bpd"] for r in ode_rows])
    sampled = ode_sum["config"].get("sample") is not None
    test, _, _ = load_cifar10_split(None, "test")
    # the bound on the first --bound-images of a random sample (--bound-from; default the ODE run, which for the
    # full test set is in the data set's order), 100 importance-sampled time points per image; a sampled run's
    # "index" is the position in the sample, the data set's index is in "source" (cifar10-test[i])
    bound_rows = _read_eval(Path(args.bound_from))[0] if args.bound_from else ode_rows
    picks = torch.tensor([_dataset_index(r) for r in bound_rows[:args.bound_images]])
    t0 = time.perf_counter()
    bound_bpd = pipe.bits_per_dim(test[picks], estimator="bound", num_time_points=100,
                                  generator=torch.Generator().manual_seed(0)).bpd
    print(f"bound on {len(picks)} images: {time.perf_counter() - t0:.0f} s", flush=True)
    bound, bound_se, nb = _mean_se(bound_bpd.tolist())
    sch = pipe.likelihood_schedule
    results["eval"] = {"ode": ode, "ode_stderr": ode_se, "bound": bound, "bound_stderr": bound_se, "num_eval": n,
                       "num_eval_bound": nb,
                       "num_repeats": 1, "unit": "bits/dim",
                       "solver": f"the calibrated schedule, {sch.num_steps} {sch.method} steps in log ρ "
                                 f"({sch.nfe} NFE)"}
    seed = ode_sum["config"].get("seed", 0)
    results["eval_split"] = (f"CIFAR-10 test, a uniform random sample of {n:,} of its 10,000 images (seed {seed}; "
                             "`scorezoo eval --sample`)" if sampled else
                             f"CIFAR-10 test, all {n:,} images (`scorezoo eval --split test`)")
    run_sum = ode_sum["summary"]
    hours = run_sum["seconds"] / 3600
    procs = run_sum.get("num_processes", 1)
    if sampled:
        how = (f"the sample is a uniform random sample of the test set, so its mean estimates the full test set's, "
               f"the sampling included in the standard error. The full 10,000 images take about {args.full_hours:.1f}"
               " h on this 2-core machine; resume the command below to run them:")
        bound_what = "of the same sample" if not args.bound_from else "a random sample of the test set"
    else:
        how = (f"the standard error is over the test images. The whole test set took {hours:.2f} h on this 2-core "
               f"machine ({procs} process{'es' if procs > 1 else ''} of one thread, {run_sum['images_per_second']:.2f} "
               "images/s in all, "
               f"{run_sum['nfe_mean']:.0f} score evaluations per image):")
        bound_what = f"a random sample of the test set, seed {seed}"

    # the first 8 test images, seed 0: what tests/datasets check the bundled model against
    first = pipe.bits_per_dim(test[:8], schedule="calibrated", generator=torch.Generator().manual_seed(0))
    (out / "test8.json").write_text(json.dumps({
        "how": "pipe.bits_per_dim(test[:8], schedule='calibrated', generator=torch.Generator().manual_seed(0)), "
               "test = scorezoo.datasets.load_cifar10_split(ROOT, 'test')[0], one thread",
        "bpd": [round(float(v), 6) for v in first.bpd]}, indent=1) + "\n")

    codec_rows = [json.loads(line) for line in Path(args.codecs).read_text().splitlines() if line.strip()]
    codec_figs = {c: _mean_se([r[c] for r in codec_rows if r.get(c) is not None]) for c in CODECS}
    names = {"png": "PNG (Pillow, optimize)", "webp": "WebP lossless (method 6)", "jxl": "JPEG XL lossless (effort 9)"}
    table = ["| model or codec | test bits/dim | images | compute |", "|---|---|---|---|",
             f"| **{NAME}** (probability-flow ODE, uniform dequantization) | **{ode:.3f} ± {ode_se:.3f}** | "
             f"{n:,}{' (sample)' if sampled else ''} | {args.compute} |",
             f"| {NAME}, likelihood bound (MLE Thm. 3, 100 time points) | {bound:.3f} ± {bound_se:.3f} | "
             f"{nb:,} ({bound_what}) | |"]
    table += [f"| {names[c]}, measured here | {m:.3f} ± {se:.3f} | {k:,} | one CPU core |"
              for c, (m, se, k) in codec_figs.items() if k]
    table += [f"| {who} | {v} | 10,000 | {what} |" for who, v, what in PUBLISHED]

    below = [names[c].split(" (")[0] for c, (m, se, k) in codec_figs.items() if k and ode + 2 * ode_se < m]
    above = [f"{names[c].split(' (')[0]} ({m:.3f}; by {ode - m:.3f})" for c, (m, se, k) in codec_figs.items()
             if k and ode + 2 * ode_se >= m]
    standing = ("below " + ", ".join(below) + " on the same images" if below else "below none of the codecs") + \
        ("" if not above else "; **not below " + ", ".join(above) + "** (within two standard errors or above)")
    curve = json.loads((out / CURVE).read_text()) if (out / CURVE).exists() else []
    curve_table = "\n".join(["| step | images seen | held-out ODE bits/dim (64 test images) | bound | session |",
                              "|---|---|---|---|---|"] + [
        f"| {r['step']:,} | {r['step'] * cfg['batch_size']:,} | {r['ode']:.3f} ± {r['ode_stderr']:.3f}"
        f" | {_pm(r['bound'], r.get('bound_stderr'))} | {r.get('session', '')} |" for r in curve])

    if not (args.keep_samples and (out / "samples.png").exists()):
        samples = pipe(64, generator=torch.Generator().manual_seed(0), output_type="np")
        image_grid((samples.images * 255).round().astype("uint8"), tile=64).save(out / "samples.png")

    body = f"""
### CIFAR-10 test bits/dim, next to lossless codecs and published models

{chr(10).join(table)}

The model's figures are means ± standard errors over the images scored, each image with one uniform dequantization
draw and one Hutchinson probe (seed {seed}); {how}

```bash
{args.eval_command or ode_sum.get('command') or ode_sum['config'].get('command') or ''}
```

The codecs encode each 32×32 test image alone (file headers included), as `scorezoo bpd` does; the published
codec figures were measured differently (e.g. on one file of many images) and are listed as reported.

**Where it stands:** {standing}, and far from the published models (RealNVP 3.49, the authors' 2.83–2.99):
{args.compute} against their weeks of accelerator time. The goal of 3.5 bits/dim was not reached on the CPU.

### Training curve

Held-out bits/dim of the same 64 test images during training (probability-flow ODE, dopri5 at rtol = atol =
{cfg['ode_rtol']}; bound with {cfg['bound_num_time_points']} time points per image):

{curve_table}

{Path(args.pilot_file).read_text().strip() if args.pilot_file else ''}

### Fast likelihoods

The pipeline ships a calibrated schedule: {sch.num_steps} {sch.method} steps in log ρ ({sch.nfe} NFE), placed on
{args.points} dequantized training images so that the error of the mean bits/dim is at most {args.target}, measured
against a tight dopri5 solve with the same probes ({sch.measured_mean_error:+.4f} on the mean,
{sch.measured_rms_error:.4f} rms per image).

### Samples

![64 samples (probability-flow ODE, seed 0)](samples.png)

### Data

CIFAR-10 (Krizhevsky 2009), the official 50,000 training and 10,000 test images, read from torchvision's
`cifar-10-batches-py` or an image-folder tree (`scorezoo.datasets.load_cifar10`); horizontal flips. Not shipped.
"""
    cfg["card"] = {**(cfg.get("card") or {}), "limitations": (
        "Trained for a short time on a CPU: it beats the stock lossless codecs on CIFAR-10 but not the published "
        "likelihood models.")}
    text = render_card(results, cfg, body_extra=body, budget=args.budget)
    (out / "README.md").write_text(text)
    print(f"wrote {out / 'README.md'}: test ODE {ode:.4f} ± {ode_se:.4f} ({n} images), bound {bound:.4f} ± "
          f"{bound_se:.4f}; first 8: {[round(float(v), 4) for v in first.bpd]}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    b = sub.add_parser("bundle", help="fp16 weights, training command, calibrated schedule")
    b.add_argument("--run", required=True)
    b.add_argument("--out", default=str(OUT))
    b.add_argument("--points", type=int, default=16)
    b.add_argument("--target", type=float, default=0.005)
    b.add_argument("--reference-tol", type=float, default=1e-5)
    b.add_argument("--optimizer-evals", type=int, default=80,
                   help="Nelder-Mead solves at most when the doubled grid misses the target (fewer: faster)")
    b.add_argument("--command", default=None, help="the training command to record (default: the canonical one)")
    b.add_argument("--method", default="dpmpp3m", help="the schedule's fixed-step method (default dpmpp3m)")
    b.add_argument("--max-steps", type=int, default=64)
    b.add_argument("--steps-before", type=int, default=0,
                   help="steps of earlier sessions that the run's init_from weights had trained")
    b.add_argument("--session", default="", help="a label for the curve's new points (e.g. the date)")
    b.add_argument("--threads", type=int, default=None)
    c = sub.add_parser("codecs", help="PNG, WebP and JPEG XL lossless of every image of a split (JSON lines)")
    c.add_argument("--split", default="test")
    c.add_argument("--out", default="runs/cifar10-test-codecs.jsonl")
    k = sub.add_parser("card", help="the model card from the test-set eval runs, the codecs and the training log")
    k.add_argument("--run", required=True)
    k.add_argument("--out", default=str(OUT))
    k.add_argument("--test", required=True, help="scorezoo eval's JSONL of the ODE on the test sample")
    k.add_argument("--bound-images", type=int, default=256, help="images of the sample that the bound scores")
    k.add_argument("--bound-from", default=None,
                   help="a sampled eval's JSONL whose first --bound-images images the bound scores (default --test)")
    k.add_argument("--codecs", default="runs/cifar10-test-codecs.jsonl")
    k.add_argument("--compute", required=True, help="the training's compute, for the table (e.g. '2.1 CPU h')")
    k.add_argument("--budget", required=True, help="one line on the compute spent, for the card")
    k.add_argument("--full-hours", type=float, default=2.1,
                   help="estimated hours of the full test-set eval (said when --test is a sample)")
    k.add_argument("--pilot-file", default=None,
                   help="Markdown on the pilot runs and the sessions' commands (train/cards/vp-mle-cifar10-small.md)")
    k.add_argument("--keep-samples", action="store_true", help="keep the folder's samples.png (same weights)")
    k.add_argument("--eval-command", default=None,
                   help="the test-set command to print (default: the one the eval run recorded)")
    k.add_argument("--points", type=int, default=16)
    k.add_argument("--target", type=float, default=0.005)
    k.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.stage == "bundle":
        bundle(args)
    elif args.stage == "codecs":
        codecs(args)
    else:
        card(args)


if __name__ == "__main__":
    main()
