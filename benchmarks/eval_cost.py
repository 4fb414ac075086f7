"""One evaluation of the likelihood ODE against its floor, forward + one vector-Jacobian product, per bundled network.

For each model: a batch of dequantized random levels at a mid-path time, one Rademacher probe; three timings,
interleaved round by round so that the machine's noise hits them alike, median over rounds:

* ``forward``: the score alone, no graph (``torch.no_grad``);
* ``forward + VJP``: the score with its graph and one ``torch.autograd.grad`` with the probe (the least a
  Hutchinson evaluation can cost);
* ``ODE evaluation``: :class:`scorezoo.likelihood.flow.LogDensityODE` called once (what the solvers call), in
  ``log_rho`` as the calibrated schedules integrate.

    OMP_NUM_THREADS=1 python benchmarks/eval_cost.py --out benchmarks/results/eval_cost.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from scorezoo import ScorePipeline
from scorezoo.likelihood.divergence import draw_probes
from scorezoo.likelihood.flow import LogDensityODE, ProbabilityFlow

MODELS = {"vp-mle-digits": 64, "vp-mle-photo16": 256, "vp-mle-cifar10-small": 16}


def timings(name: str, batch: int, rounds: int) -> dict:
    pipe = ScorePipeline.from_pretrained(name)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *pipe.data_shape, generator=g) * 2 - 1
    t = torch.full((batch,), 0.3)
    probes = draw_probes(x, "rademacher", 1, g)
    score = pipe.model
    ode = LogDensityODE(ProbabilityFlow(score, pipe.sde), x.shape, pipe.eps, "log_rho", probes=probes)
    state = ode.initial_state(x)
    u = ode.to_u(torch.tensor(0.3, dtype=torch.float64))

    def forward():
        with torch.no_grad():
            score(x, t)

    def forward_vjp():
        xg = x.detach().requires_grad_(True)
        s = score(xg, t)
        torch.autograd.grad(s, xg, probes[0])

    def ode_eval():
        ode(u, state)

    fns = {"forward": forward, "forward + VJP": forward_vjp, "ODE evaluation": ode_eval}
    for f in fns.values():  # warm up
        f()
    out = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            out[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = ["| model | batch | forward (ms) | forward + VJP (ms) | ODE evaluation (ms) | ODE / (forward + VJP) | "
            "(forward + VJP) / forward |", "|---|---|---|---|---|---|---|"]
    for name, batch in MODELS.items():
        m = timings(name, batch, args.rounds)
        f, fv, o = m["forward"], m["forward + VJP"], m["ODE evaluation"]
        rows.append(f"| {name} | {batch} | {1e3 * f:.1f} | {1e3 * fv:.1f} | {1e3 * o:.1f} | **{o / fv:.2f}×** | "
                    f"{fv / f:.2f}× |")
        print(rows[-1], flush=True)
    text = ("# One likelihood evaluation against forward + VJP\n\n"
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.rounds} interleaved "
            "rounds; `python benchmarks/eval_cost.py`.\n\n" + "\n".join(rows) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
