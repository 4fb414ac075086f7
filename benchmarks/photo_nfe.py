"""Fewer score evaluations per tile for the photo model: fixed-step methods against NFE.

For each fixed-step method of the schedule table (rk4, heun3, midpoint, heun2) and each largest NFE, calibrate a
schedule for ``vp-mle-photo16`` on its 64 training calibration patches (``calibration_points``; target on the mean
bits/dim, error measured against dopri5 at ``--ref-tol`` with the same Hutchinson probes), then measure it on held-out
tiles (a crop of scikit-image's ``chelsea``, never trained on): the schedule's mean bits/dim minus the tight adaptive
solve's, with the same dequantization noise and probes. Writes a Markdown table (error against NFE per method).

    OMP_NUM_THREADS=1 python benchmarks/photo_nfe.py --out benchmarks/results/photo_nfe.md
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
import warnings

import torch

from scorezoo import ScorePipeline
from scorezoo.likelihood import LikelihoodSchedule
from scorezoo.likelihood.solvers import SOLVERS
from scorezoo.scoring import ScoringPlan, draw_generators
from scorezoo.training.export import calibration_points



def crop_path(size: int) -> str:
    """A ``size``×``size`` crop of the held-out photo chelsea, saved to a temporary file."""
    import tempfile

    from skimage import data
    from PIL import Image

    path = tempfile.mkdtemp() + "/chelsea-crop.png"
    Image.fromarray(data.chelsea()).crop((150, 30, 150 + size, 30 + size)).save(path)
    return path


def held_out_error(pipe: ScorePipeline, path: str, schedule: LikelihoodSchedule | None, ref_tol: float) -> tuple:
    """(schedule's mean bits/dim minus the tight solve's, its rms over tiles, the tight mean) on the crop's tiles,
    one draw per tile, the same noise and probes."""
    gen = lambda: draw_generators(0, [0], 1)  # noqa: E731
    tight = pipe.bits_per_dim(path, plan=ScoringPlan.create(pipe, solver="adaptive", rtol=ref_tol, atol=ref_tol,
                                                            bits_map=True, max_batch_size=256), generator=gen())
    pipe.likelihood_schedule = schedule
    fast = pipe.bits_per_dim(path, plan=ScoringPlan.create(pipe, solver="calibrated", bits_map=True,
                                                           max_batch_size=256), generator=gen())
    per_tile = lambda m: m.reshape(3, m.shape[1] // 16, 16, m.shape[2] // 16, 16).mean((0, 2, 4))  # noqa: E731
    d = per_tile(fast.bits_maps[0]) - per_tile(tight.bits_maps[0])
    return float(fast.bpd - tight.bpd), float(d.pow(2).mean().sqrt()), float(tight.bpd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vp-mle-photo16")
    ap.add_argument("--methods", default="rk4,heun3,midpoint")
    ap.add_argument("--max-nfe", default="16,20,24")
    ap.add_argument("--target", type=float, default=0.005)
    ap.add_argument("--ref-tol", type=float, default=1e-5)
    ap.add_argument("--optimizer-evals", type=int, default=40)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--initial-steps", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    pipe = ScorePipeline.from_pretrained(args.model)
    shipped = pipe.likelihood_schedule
    x = calibration_points(pipe)
    path = crop_path(args.crop)
    rows = []
    err, rms, tight = held_out_error(pipe, path, shipped, args.ref_tol)
    rows.append(("shipped " + shipped.method, shipped.nfe, shipped.target, shipped.measured_mean_error,
                 shipped.measured_rms_error, err, rms, 0.0))
    print(rows[-1], flush=True)
    for method in args.methods.split(","):
        for max_nfe in (int(v) for v in args.max_nfe.split(",")):
            steps = max_nfe // SOLVERS[method].stages
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sch = pipe.calibrate_likelihood_schedule(x, target=args.target, criterion="mean", method=method,
                                                         max_steps=steps, initial_steps=min(args.initial_steps, steps),
                                                         reference_tol=args.ref_tol,
                                                         optimizer_evals=args.optimizer_evals,
                                                         generator=torch.Generator().manual_seed(0))
            cal_s = time.perf_counter() - t0
            err, rms, _ = held_out_error(pipe, path, sch, args.ref_tol)
            rows.append((method, sch.nfe, args.target, sch.measured_mean_error, sch.measured_rms_error, err, rms,
                         cal_s))
            print(rows[-1], flush=True)
    lines = [f"# Photo model: error against NFE per fixed-step method ({args.model})", "",
             f"Calibrated on 64 training patches (target {args.target} bits/dim on the mean, Nelder-Mead "
             f"{args.optimizer_evals} solves per step count), measured on the {args.crop // 16 ** 1}×"
             f"{args.crop // 16} = {(args.crop // 16) ** 2} held-out tiles of a {args.crop}×{args.crop} crop of "
             f"chelsea against dopri5 at rtol = atol = {args.ref_tol:g} with the same noise and probes (tight mean "
             f"{tight:.4f} bits/dim). One thread, `{' '.join(['python', 'benchmarks/photo_nfe.py'])}`.", "",
             "| method | NFE per tile | calibration: mean error | calibration: rms | held-out: mean error | "
             "held-out: rms per tile | calibration time (s) |", "|---|---|---|---|---|---|---|"]
    for m, nfe, _, me, mr, e, r, s in rows:
        fm = lambda v: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.4f}"  # noqa: E731
        lines.append(f"| {m} | {nfe} | {fm(me)} | {fm(mr).lstrip('+')} | {e:+.4f} | {r:.4f} | {s:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
