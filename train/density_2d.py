"""Density of a 2-D zoo model on a grid: its integral (should be 1) and a picture next to the data.

    python train/density_2d.py runs/vp-mle-checkerboard/pipeline --out runs/vp-mle-checkerboard/density

The density and its integral come from :func:`scorezoo.training.evaluation.density_on_grid`: ``exp(log p_eps(x))``
by the probability-flow ODE with the exact divergence at the centres of an ``n x n`` grid on ``[-L, L]^2``, summed
by the midpoint rule. A density pushed through an ODE flow integrates to 1 exactly, so the distance to 1 measures
the solver's error plus the mass outside the box and the rule's error.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from scorezoo import ScorePipeline
from scorezoo.datasets import sample_toy
from scorezoo.training.evaluation import density_on_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pipeline")
    ap.add_argument("--out", required=True, help="output prefix: writes <out>.json and <out>.png")
    ap.add_argument("--half_width", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--tol", type=float, default=1e-5, help="rtol = atol of the ODE solver")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = ScorePipeline.from_pretrained(args.pipeline)
    pts, dens, integral = density_on_grid(pipe, args.half_width, args.n, rtol=args.tol, atol=args.tol)
    dataset = pipe.extra_config.get("dataset", "checkerboard")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mass_box = {"grid": f"{args.n}x{args.n} midpoint rule on [-{args.half_width}, {args.half_width}]^2",
                "integral": integral, "abs_error": abs(integral - 1),
                "solver": f"dopri5, rtol=atol={args.tol:g}, exact divergence"}
    out.with_suffix(".json").write_text(json.dumps(mass_box, indent=1) + "\n")
    print(json.dumps(mass_box))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = sample_toy(dataset, 100_000, torch.Generator().manual_seed(0))
    fig, ax = plt.subplots(1, 2, figsize=(8, 4))
    lim = [-args.half_width, args.half_width]
    ax[0].hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=args.n // 2, range=[lim, lim], density=True,
                 cmap="magma")
    ax[0].set_title(f"data ({dataset}, 100k points)")
    ax[1].imshow(dens.reshape(args.n, args.n).numpy(), origin="lower", extent=[*lim, *lim], cmap="magma")
    ax[1].set_title(f"model density (PF-ODE), ∫p = {integral:.4f}")
    for a in ax:
        a.set_aspect("equal")
        a.set_xticks([-2, 0, 2])
        a.set_yticks([-2, 0, 2])
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=80)
    if not math.isfinite(integral):
        raise SystemExit("the integral is not finite")


if __name__ == "__main__":
    main()
