"""`scorezoo eval` on 1 and 2 processes, side by side in one run, and its per-image cost on the CIFAR-sized network.

    OMP_NUM_THREADS=1 python benchmarks/eval.py --limit 48 --rounds 2 --out benchmarks/results/eval.md

* Digits: ``vp-mle-digits`` (bundled) on the held-out split with ``--fast`` (its calibrated schedule, exact
  divergence), as ``python -m scorezoo eval`` (1 process) and ``accelerate launch --multi_gpu --num_processes 2 -m
  scorezoo eval`` (2 processes, gloo on CPU), one thread each, alternating over ``--rounds`` so that the machine's
  noise hits both alike. Reported: images/s while scoring (from the summary: images over the wall time from the
  first image to the gathered results) and over the whole command (start-up included), and whether the per-image
  numbers of the two are identical.
* Photos: the same for the zoo's photo model (``scorezoo.zoo.default_photo_model()``) on ``photo-patches``, when
  one is installed.
* CIFAR-sized: ``NCSNpp`` with the published ``vp/cifar10_ddpmpp_continuous`` config and random weights (as
  ``benchmarks/cifar_cost.py``; 61.8M parameters) on a fixed rk4 schedule (``--cifar-steps`` steps, 4 NFE each),
  Hutchinson divergence, a couple of 32×32 images: seconds per image and per NFE, 1 process.

It is a measurement, not a test: the machine is shared, so compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAUNCH2 = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "scorezoo"]


def run_eval(procs: int, args: list[str], out: Path) -> dict:
    """One ``scorezoo eval`` in a fresh process tree; its summary plus the command's wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, *(LAUNCH2 if procs == 2 else ["-m", "scorezoo"]), "eval", "-q", *args, "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    numbers = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in out.read_text().splitlines()]
    return {"ips": summary["images_per_second"], "wall": wall, "n": summary["num_scored"],
            "cpu": summary["cpu_seconds"] / summary["num_scored"],
            "nfe": summary["nfe_mean"], "numbers": numbers, "procs": summary["num_processes"]}


def side_by_side(name: str, args: list[str], rounds: int, tmp: Path) -> list[str]:
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(rounds):
        for procs in (1, 2) if r % 2 == 0 else (2, 1):
            res = run_eval(procs, args, tmp / f"{name}-{procs}-{r}.jsonl")
            assert res["procs"] == procs, f"asked for {procs} processes, the run had {res['procs']}"
            runs[procs].append(res)
            print(f"{name}: {procs} process(es), round {r}: {res['ips']:.3g} images/s scoring, "
                  f"{res['n'] / res['wall']:.3g} images/s with start-up, {res['cpu']:.2f} CPU s per image",
                  flush=True)
    same = all(r["numbers"] == runs[1][0]["numbers"] for r in runs[1] + runs[2])
    ips = {p: statistics.median(r["ips"] for r in runs[p]) for p in (1, 2)}
    whole = {p: statistics.median(r["n"] / r["wall"] for r in runs[p]) for p in (1, 2)}
    cpu = {p: statistics.median(r["cpu"] for r in runs[p]) for p in (1, 2)}
    n, nfe = runs[1][0]["n"], runs[1][0]["nfe"]
    return [
        f"| {name} | 1 | {n} | {nfe:.0f} | {ips[1]:.3g} | {whole[1]:.3g} | 1 | {cpu[1]:.2f} |",
        f"| {name} | 2 | {n} | {nfe:.0f} | {ips[2]:.3g} | {whole[2]:.3g} | {ips[2] / ips[1]:.2f} | {cpu[2]:.2f} |",
        f"| {name}: per-image numbers of 1 and 2 processes, all rounds | | | | "
        f"{'identical' if same else 'DIFFERENT'} | | | |",
    ]


def cifar(steps: int, images: int, tmp: Path) -> list[str]:
    import numpy as np
    import torch
    from PIL import Image

    from benchmarks.cifar_cost import images as cifar_like
    from scorezoo import VPSDE, ScorePipeline
    from scorezoo.convert.configs import SCORE_SDE_CONFIGS, network_kwargs
    from scorezoo.evaluation import evaluate
    from scorezoo.likelihood import LikelihoodSchedule
    from scorezoo.models import NCSNpp

    torch.set_num_threads(1)
    torch.manual_seed(0)
    kwargs = {**network_kwargs(SCORE_SDE_CONFIGS["vp/cifar10_ddpmpp_continuous"], "score_sde"), "init_scale": 1.0}
    sde = VPSDE()
    # fixed steps evenly spaced in log rho (the time variable of the zoo's calibrated schedules)
    rho = sde.rho(torch.tensor([1e-5, 1.0], dtype=torch.float64)).log()
    times = sde.rho_inverse(torch.linspace(rho[0].item(), rho[1].item(), steps + 1, dtype=torch.float64).exp())
    times[0], times[-1] = 1e-5, 1.0
    sch = LikelihoodSchedule(times, method="rk4", time_variable="log_rho")
    pipe = ScorePipeline(NCSNpp(**kwargs).eval(), sde, data_shape=(3, 32, 32), eps=1e-5, likelihood_schedule=sch)
    params = sum(p.numel() for p in pipe.network.parameters())
    pics = tmp / "cifar-like"
    pics.mkdir()
    for i, a in enumerate(cifar_like(images)):
        Image.fromarray(a).save(pics / f"{i}.png")
    rows = []
    for batch in (1, images):
        s = evaluate(pipe, str(pics), tmp / f"cifar-b{batch}.jsonl", batch_size=batch, progress=False)
        per_image = float(np.mean([r["seconds"] for r in s.records]))
        rows.append(f"| {batch} | {images} | {s.nfe_mean:.0f} | {per_image:.1f} | {per_image / s.nfe_mean:.3f} |")
    return [
        f"NCSNpp of `vp/cifar10_ddpmpp_continuous`, {params:,} parameters, random weights (official init, output "
        f"layers at scale 1), its own fixed rk4 schedule of {steps} steps in log ρ ({sch.nfe} NFE), Hutchinson "
        "divergence (one probe), 1 process, 1 thread, 32×32 images of smooth gradients plus noise "
        "(`benchmarks/cifar_cost.py`):",
        "",
        "| batch | images | NFE per image | seconds per image | seconds per NFE per image |",
        "|---:|---:|---:|---:|---:|",
        *rows,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=48, help="held-out digits (and photo patches) to score")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cifar-steps", type=int, default=10)
    ap.add_argument("--cifar-images", type=int, default=2)
    ap.add_argument("--skip-cifar", action="store_true")
    ap.add_argument("--out", default=None, help="write a Markdown report here")
    args = ap.parse_args()
    import torch

    from scorezoo import zoo

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = side_by_side("vp-mle-digits, held-out digits, --fast",
                            ["--model", "vp-mle-digits", "--data", "digits", "--fast", "--limit", str(args.limit)],
                            args.rounds, tmp)
        photo = zoo.default_photo_model()
        if photo:
            rows += side_by_side(f"{photo}, photo-patches, --fast",
                                 ["--model", photo, "--data", "photo-patches", "--fast", "--limit", str(args.limit)],
                                 args.rounds, tmp)
        cifar_lines = [] if args.skip_cifar else cifar(args.cifar_steps, args.cifar_images, tmp)
    lines = [
        "# `scorezoo eval`: 1 and 2 processes, and the CIFAR-sized network",
        "",
        f"`OMP_NUM_THREADS=1 python benchmarks/eval.py --limit {args.limit} --rounds {args.rounds} --cifar-steps "
        f"{args.cifar_steps} --cifar-images {args.cifar_images}` on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} logical CPUs, shared with other work), torch {torch.__version__}, one thread per "
        "process; 2 processes = `accelerate launch --multi_gpu --num_processes 2 -m scorezoo eval` (gloo on CPU). "
        "Medians over the rounds, which alternate 1 and 2 processes.",
        "",
        "| workload | processes | images | NFE per image | images/s scoring | images/s with start-up | "
        "speed-up (scoring) | CPU s per image (scoring) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "\"Scoring\" is the summary's images/s: images over the wall time from the first image to the gathered "
        "results (the slower process sets it); \"with start-up\" divides by the whole command's wall time "
        "(interpreter, imports, model and data loading, the process group). \"CPU s per image\" is the summary's "
        "CPU time of all processes while scoring over the images: the work itself, which a split should not grow, "
        "whatever share of the shared cores the processes got.",
        "",
    ]
    if not photo:
        lines += ["No photo model is installed (`scorezoo.zoo.default_photo_model()` returned None), so the photo "
                  "workload was not measured; rerun this script once it is bundled.", ""]
    if cifar_lines:
        lines += ["## Per-image time on the CIFAR-sized network", "", *cifar_lines, ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
