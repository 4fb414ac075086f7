"""Turn a CIFAR-10 run into the zoo's CIFAR-10 model ``scorezoo/bundled/vp-mle-cifar10-small/``, in two stages.

    SCOREZOO_CIFAR10=../shared/data/cifar10 python train/make_cifar_zoo.py bundle --run runs/vp-mle-cifar10-small
    scorezoo eval --model vp-mle-cifar10-small --data cifar10 --split test --out runs/cifar10-test.jsonl
    SCOREZOO_CIFAR10=../shared/data/cifar10 python train/make_cifar_zoo.py card --run runs/vp-mle-cifar10-small \\
        --test runs/cifar10-test.jsonl

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
import time
from pathlib import Path

import torch

from scorezoo import ScorePipeline
from scorezoo.compression import CODECS, lossless_bits_per_dim
from scorezoo.dequantization import uniform_dequantize
from scorezoo.datasets import load_cifar10_split

REPO = Path(__file__).resolve().parents[1]
NAME = "vp-mle-cifar10-small"
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
    train, _, _ = load_cifar10_split(None, "train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:args.points]
    x = uniform_dequantize(train[pick], num_levels=256, data_range=(-1.0, 1.0),
                           generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    sch = pipe.calibrate_likelihood_schedule(x, target=args.target, criterion="mean", reference_tol=args.reference_tol,
                                             generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
    print(f"schedule: {sch.num_steps} steps ({sch.nfe} NFE), measured mean error {sch.measured_mean_error:+.4f}, "
          f"rms {sch.measured_rms_error:.4f} bits/dim, {seconds:.0f} s", flush=True)
    out = Path(args.out)
    save_fp16(pipe, out)
    (out / "calibration.json").write_text(json.dumps({"points": args.points, "target": args.target,
                                                      "reference_tol": args.reference_tol, "seconds": seconds,
                                                      "source": str(src)}, indent=1) + "\n")
    print(f"wrote {out}")


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    b = sub.add_parser("bundle", help="fp16 weights, training command, calibrated schedule")
    b.add_argument("--run", required=True)
    b.add_argument("--out", default=str(OUT))
    b.add_argument("--points", type=int, default=16)
    b.add_argument("--target", type=float, default=0.005)
    b.add_argument("--reference-tol", type=float, default=1e-5)
    b.add_argument("--command", default=None, help="the training command to record (default: the canonical one)")
    b.add_argument("--threads", type=int, default=None)
    c = sub.add_parser("codecs", help="PNG, WebP and JPEG XL lossless of every image of a split (JSON lines)")
    c.add_argument("--split", default="test")
    c.add_argument("--out", default="runs/cifar10-test-codecs.jsonl")
    args = ap.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.stage == "bundle":
        bundle(args)
    elif args.stage == "codecs":
        codecs(args)


if __name__ == "__main__":
    main()
