"""Calibrate the fast-likelihood step schedule of zoo pipelines, in place.

    python train/calibrate_zoo.py scorezoo/bundled/vp-mle-digits [more pipeline folders] [--target 0.002]
    python train/calibrate_zoo.py scorezoo/bundled/vp-mle-photo16 --target 0.005 --criterion mean --method dpmpp3m \
        --max-steps 22

For each pipeline folder: :func:`scorezoo.training.export.calibrate` (64 training points of its data set, the
digits' training split dequantized with seed 1 or a 2-D toy's training sample; Hutchinson probes of seed 0), then
the folder's ``pipeline_config.json`` is rewritten with the schedule (the weights are untouched). ``make_zoo.py``
runs the same calibration when it packages a run (target 0.002 for images, 0.005 for the 2-D toys, whose sharp
edges would need more than 64 steps for 0.002).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from scorezoo import ScorePipeline
from scorezoo.pipeline import PIPELINE_CONFIG_NAME
from scorezoo.training.export import calibrate


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="pipeline folders to update in place")
    ap.add_argument("--target", type=float, default=0.002, help="bits/dim (default 0.002)")
    ap.add_argument("--criterion", choices=("rms", "mean"), default="rms",
                    help="what the target bounds: each image's error (rms) or the mean's (photos: a photo's "
                         "bits/dim is the mean over its tiles)")
    ap.add_argument("--method", default="rk4", help="a fixed-step method: rk4 (default), dpmpp3m, ...")
    ap.add_argument("--max-steps", type=int, default=64)
    ap.add_argument("--optimizer-evals", type=int, default=80)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for folder in map(Path, args.folders):
        pipe = ScorePipeline.from_pretrained(folder)
        summary = calibrate(pipe, args.target, criterion=args.criterion, method=args.method,
                            max_steps=args.max_steps, optimizer_evals=args.optimizer_evals)
        cfg_path = folder / PIPELINE_CONFIG_NAME
        cfg = json.loads(cfg_path.read_text())
        cfg["likelihood_schedule"] = pipe.likelihood_schedule.to_dict()
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        print(f"{folder}: {json.dumps(summary)}", file=sys.stderr)


if __name__ == "__main__":
    main()
