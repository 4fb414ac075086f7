"""What one CIFAR-10 bits/dim costs on the full DDPM++ network (vp/cifar10_ddpmpp_continuous, 61.8M parameters).

Weights are random (cost does not need trained ones): the official initialisation, except that the output layers
are drawn at scale 1 instead of 1e-10 (``init_scale=1``) so that the network's output is not zero and the solver has
a field to follow. NFE of a trained model differ; the time per evaluation does not.

    OMP_NUM_THREADS=1 python benchmarks/cifar_cost.py --images 2 --out benchmarks/results/cifar_cost.md

(with scorezoo installed: ``pip install -e .``).

Measured: ``ScorePipeline.bits_per_dim`` (adaptive dopri5, rtol = atol = 1e-5, Hutchinson divergence, one image per
solve), its NFE, seconds per image and peak resident memory; and the seconds of one score evaluation with its
vector-Jacobian product (what each NFE costs).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from scorezoo import ScorePipeline, VPSDE
from scorezoo.convert.configs import SCORE_SDE_CONFIGS, network_kwargs
from scorezoo.models import NCSNpp


def images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus pixel noise, ``(n, 32, 32, 3)`` uint8: image-like, not white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 255, (3, 3))
        img = a * xx[..., None] + b * yy[..., None] + c * (1 - xx[..., None]) / 2
        out.append(np.clip(img / 2 + rng.normal(0, 12, img.shape), 0, 255))
    return np.stack(out).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write a Markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = {**network_kwargs(SCORE_SDE_CONFIGS["vp/cifar10_ddpmpp_continuous"], "score_sde"), "init_scale": 1.0}
    pipe = ScorePipeline(NCSNpp(**kwargs).eval(), VPSDE(), data_shape=(3, 32, 32), eps=1e-5)
    params = sum(p.numel() for p in pipe.network.parameters())

    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    t = torch.full((1,), 0.5)
    for _ in range(2):  # the second is timed: the first pays one-off allocations
        t0 = time.perf_counter()
        s = pipe.model(x, t)
        torch.autograd.grad(s, x, torch.randn_like(s))
        per_eval = time.perf_counter() - t0

    rows = []
    for i, img in enumerate(images(args.images)):
        t0 = time.perf_counter()
        res = pipe.bits_per_dim(img[None], generator=torch.Generator().manual_seed(i), max_batch_size=1,
                                rtol=1e-5, atol=1e-5)
        rows.append((float(res.bpd[0]), int(res.nfe[0]), time.perf_counter() - t0))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lines = [
        "# CIFAR-10 likelihood cost on the full DDPM++ network (random weights)",
        "",
        f"`python benchmarks/cifar_cost.py --images {args.images} --threads {args.threads}` on "
        f"{platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s). Network: NCSNpp of vp/cifar10_ddpmpp_continuous, "
        f"{params:,} parameters, random weights (official init, output layers at scale 1). Solver: dopri5, "
        "rtol = atol = 1e-5, Hutchinson divergence (one probe), eps = 1e-5, one image per solve.",
        "",
        "| image | bits/dim (random net) | NFE | seconds |",
        "|---|---:|---:|---:|",
        *[f"| {i} | {b:.3f} | {n} | {s:.1f} |" for i, (b, n, s) in enumerate(rows)],
        "",
        f"- one score evaluation with its vector-Jacobian product (the cost of one NFE): {per_eval:.2f} s",
        f"- mean: {np.mean([r[1] for r in rows]):.0f} NFE, {np.mean([r[2] for r in rows]):.1f} s per image",
        f"- peak resident memory of the process: {peak_mib:,.0f} MiB",
        "",
        "The bits/dim of a random network mean nothing; its NFE are not those of a trained model (the authors' "
        "trained models take a few hundred at these tolerances, not measured here).",
        "",
        f"On a GPU (not measured: none was available) the cost per evaluation is expected to fall by about two orders "
        f"of magnitude from the {per_eval:.2f} s here, and a batch of images shares each solver step; a calibrated "
        "schedule (`pipe.calibrate_likelihood_schedule`) cuts the evaluations of a trained model to a few dozen.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
