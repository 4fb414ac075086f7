"""Cost of one training step of a variational dequantizer: the likelihood bound vs the ODE log-likelihood.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/dequantizer_cost.py [--repeats 5] [--batch 64]

Both objectives are ``E_q[-log p(x(u)) + log q(u | k)]`` with a different ``-log p``, differentiated with respect to
q's parameters through ``x(u)`` and the frozen score network:

* bound: :func:`scorezoo.dequantization.training.dequantization_loss`, one importance-sampled time point and one
  decoder draw per image (MLE Thm. 3), what ``train/train_dequantizer.py`` uses;
* ODE: the probability-flow log-likelihood through a differentiable RK4 solve of 11 steps (44 score evaluations,
  the size of vp-mle-digits' calibrated schedule) with Hutchinson's divergence, whose vector-Jacobian product must
  itself be differentiated (``create_graph=True``). This is the cheapest ODE objective worth the name: an adaptive
  solve takes ~460 evaluations on digits.

Models: the bundled vp-mle-digits (8x8x1) and the architecture of vp-mle-photo16 (16x16x3, random weights: the
cost does not depend on them). Times are medians over ``--repeats`` steps, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

from scorezoo import ScorePipeline, VPSDE
from scorezoo.dequantization import VariationalDequantizer, bits_per_dim, dequantize
from scorezoo.dequantization.training import dequantization_loss
from scorezoo.likelihood.flow import ProbabilityFlow
from scorezoo.models import build_network


def ode_loss(q, pipe, levels, *, generator, num_steps: int = 11) -> torch.Tensor:
    """``E_q[-log p_ODE(x(u)) + log q]`` in bits/dim through a differentiable RK4 solve in t (Hutchinson)."""
    u, log_q = q.sample_and_log_prob(levels, generator=generator)
    x = dequantize(levels, u, num_levels=pipe.num_levels, data_range=pipe.data_range)
    flow = ProbabilityFlow(pipe.model, pipe.sde)
    probe = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
    b = x.shape[0]

    def f(t: float, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = flow.drift(y, torch.full((b,), t))
        (vjp,) = torch.autograd.grad((d * probe).sum(), y, create_graph=True)
        return d, (vjp * probe).flatten(1).sum(1)

    times = torch.linspace(pipe.eps, pipe.sde.T, num_steps + 1).tolist()
    y, div = x, torch.zeros(b)
    for t0, t1 in zip(times[:-1], times[1:]):
        h = t1 - t0
        k1, d1 = f(t0, y)
        k2, d2 = f(t0 + h / 2, y + h / 2 * k1)
        k3, d3 = f(t0 + h / 2, y + h / 2 * k2)
        k4, d4 = f(t1, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        div = div + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    logp = pipe.sde.prior_logp(y) + div
    return bits_per_dim(logp, pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range, log_q=log_q)


def photo_pipeline() -> ScorePipeline:
    cfg = yaml.safe_load(open("train/configs/vp-mle-photo16.yaml"))
    torch.manual_seed(0)
    return ScorePipeline(build_network(cfg["network"]), VPSDE(), data_shape=(3, 16, 16), num_levels=256)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    rows = ["| model | batch | q alone (ms) | bound step (ms) | ODE step, 44 NFE (ms) | ODE / bound |",
            "|---|---|---|---|---|---|"]
    for name, pipe in (("vp-mle-digits", ScorePipeline.from_pretrained("vp-mle-digits")),
                       ("vp-mle-photo16 architecture", photo_pipeline())):
        for p in pipe.model.parameters():
            p.requires_grad_(False)
        q = VariationalDequantizer(data_shape=pipe.data_shape, num_levels=pipe.num_levels)
        levels = torch.randint(0, pipe.num_levels, (args.batch, *pipe.data_shape),
                               generator=torch.Generator().manual_seed(0))

        def step(loss_fn):
            def run():
                q.zero_grad(set_to_none=True)
                loss_fn(q, pipe, levels, generator=torch.Generator().manual_seed(1)).mean().backward()
            return run

        def q_alone(q_, pipe_, levels_, *, generator):
            return q_.sample_and_log_prob(levels_, generator=generator)[1]

        t_q = median_seconds(step(q_alone), args.repeats)
        t_bound = median_seconds(step(dequantization_loss), args.repeats)
        # the CPU's fused attention kernel has no double backward, which the ODE objective needs
        with sdpa_kernel(SDPBackend.MATH):
            t_ode = median_seconds(step(ode_loss), max(1, args.repeats // 2))
        rows.append(f"| {name} | {args.batch} | {1e3 * t_q:.0f} | {1e3 * t_bound:.0f} | {1e3 * t_ode:.0f} | "
                    f"{t_ode / t_bound:.0f}× |")
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
