"""Held-out evaluation of a model being trained: the probability-flow ODE likelihood and the bound, with a scale.

Integer data are scored in bits/dim under uniform dequantization (Theis et al. 2016), next to the uniform
reference ``log2(K)`` of ``K`` levels (a model that has learnt nothing); continuous data in nats per point.
"""

from __future__ import annotations

import math
import time

import torch

from ..datasets import TrainingData
from ..pipeline import ScorePipeline

__all__ = ["held_out_likelihood", "uniform_bits_per_dim", "format_evaluation", "estimate_eval_seconds",
           "density_on_grid", "TYPICAL_ODE_NFE"]

#: network evaluations of one adaptive dopri5 solve at rtol = atol = 1e-5 (vp-mle-digits: 452 on 32 held-out digits,
#: benchmarks/results/likelihood.md), used only to say roughly how long an evaluation will take
TYPICAL_ODE_NFE = 450


def uniform_bits_per_dim(num_levels: int) -> float:
    """``log2(K)``: bits/dim of the uniform distribution over ``K`` levels, the score of a model that learnt nothing.

    Any model at least as good as uniform scores below it (the dequantized bits/dim of the uniform density on the
    data range is exactly ``log2(K)``).

    Raises:
        ValueError: ``num_levels`` < 2.
    """
    if int(num_levels) != num_levels or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}.")
    return math.log2(num_levels)


def held_out_likelihood(pipe: ScorePipeline, cfg: dict, data: TrainingData, num_samples: int | None,
                        num_repeats: int = 1) -> dict:
    """Held-out ODE and bound scores of ``pipe`` on ``num_samples`` held-out items spread over the split (all if
    None; :meth:`~scorezoo.datasets.TrainingData.eval_subset`).

    For integer data: bits/dim (``pipe.bits_per_dim``, estimator ``"ode"`` and ``"bound"``) with their standard
    errors over images; for continuous data: negative log-likelihood in nats per point (ODE with the exact
    divergence, and the bound, MLE paper Thm. 3). The same ``eval_seed`` for every model makes comparisons paired.

    Args:
        pipe: the model (EMA weights).
        cfg: the run's config (``eval_seed``, ``ode_rtol``, ``ode_atol``, ``bound_num_time_points``,
            ``eval_batch_size``).
        data: the data set; its ``eval`` split is scored.
        num_samples: how many held-out items (evenly spaced over the split); None: all.
        num_repeats: dequantization draws per image (integer data).

    Returns:
        ``{"ode": mean, "ode_stderr": se, "bound": mean, "bound_stderr": se, "unit": "bits/dim" | "nats/point",
        "uniform_bpd": log2(K) or None, "num_eval": n, "num_repeats": r, "per_item_ode": [...],
        "per_item_bound": [...]}``.
    """
    ev = data.eval_subset(num_samples)
    n = len(ev)
    g = lambda: torch.Generator().manual_seed(int(cfg["eval_seed"]))  # noqa: E731
    pipe.model.eval()
    if data.num_levels is not None:
        ode = pipe.bits_per_dim(ev.numpy(), estimator="ode", num_repeats=num_repeats, generator=g(),
                                max_batch_size=cfg["eval_batch_size"],
                                rtol=cfg["ode_rtol"], atol=cfg["ode_atol"]).bpd
        bound = pipe.bits_per_dim(ev.numpy(), estimator="bound", num_repeats=num_repeats, generator=g(),
                                  max_batch_size=cfg["eval_batch_size"],
                                  num_time_points=cfg["bound_num_time_points"]).bpd
        unit, uniform = "bits/dim", uniform_bits_per_dim(data.num_levels)
    else:
        from ..likelihood import likelihood_bound
        ode = -pipe.log_likelihood(ev, divergence="exact", rtol=cfg["ode_rtol"], atol=cfg["ode_atol"]).logp.double()
        bound = likelihood_bound(pipe.model, pipe.sde, ev, eps=pipe.eps, generator=g(),
                                 num_time_points=cfg["bound_num_time_points"]).nll.double()
        unit, uniform = "nats/point", None
    se = lambda v: float(v.std() / math.sqrt(n)) if n > 1 else float("nan")  # noqa: E731
    return {"ode": float(ode.mean()), "ode_stderr": se(ode), "bound": float(bound.mean()), "bound_stderr": se(bound),
            "unit": unit, "uniform_bpd": uniform, "num_eval": n, "num_repeats": num_repeats,
            "per_item_ode": ode.tolist(), "per_item_bound": bound.tolist()}


def format_evaluation(res: dict) -> str:
    """One line of a :func:`held_out_likelihood` result, with the uniform reference ``log2(K)`` as its scale (integer
    data)."""
    line = (f"held-out {res['unit']} ({res['num_eval']} items, EMA weights): ODE {res['ode']:.4f} ± "
            f"{res['ode_stderr']:.4f}, bound {res['bound']:.4f} ± {res['bound_stderr']:.4f}")
    if res.get("uniform_bpd") is not None:
        line += f" (lower is better; uniform over the levels: {res['uniform_bpd']:.4f})"
    return line


def _seconds(fn, repeats: int = 2) -> float:
    fn()  # warm-up: first calls allocate
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def estimate_eval_seconds(pipe: ScorePipeline, cfg: dict, num_items: int, num_repeats: int = 1) -> float:
    """Roughly how many seconds :func:`held_out_likelihood` will take on this machine: an order of magnitude, not a
    promise.

    Times one network evaluation with a vector-Jacobian product (an ODE step) and one without (a bound time point)
    at the solve's batch size (at most ``eval_batch_size`` items), then assumes :data:`TYPICAL_ODE_NFE` evaluations
    per adaptive ODE solve (times the dimension for the exact divergence of continuous data) and
    ``bound_num_time_points`` per item for the bound.
    The adaptive solver's real count depends on the model and can be several times larger or smaller.
    """
    items = num_items * num_repeats
    batch = min(items, int(cfg["eval_batch_size"]))
    dim = math.prod(pipe.data_shape)
    x = torch.randn(batch, *pipe.data_shape, device=pipe.device, dtype=pipe.dtype)
    t = torch.full((batch,), 0.5, device=pipe.device, dtype=pipe.dtype)
    pipe.model.eval()

    def forward():
        with torch.no_grad():
            pipe.model(x, t)

    def step():
        xg = x.detach().requires_grad_(True)
        out = pipe.model(xg, t)
        torch.autograd.grad(out, xg, torch.ones_like(out))

    per_solve = TYPICAL_ODE_NFE * _seconds(step) * (1 if pipe.num_levels is not None else dim)
    ode = per_solve * items / batch
    bound = _seconds(forward) / batch * items * int(cfg["bound_num_time_points"])
    return ode + bound


def density_on_grid(pipe: ScorePipeline, half_width: float = 3.0, n: int = 200, max_batch_size: int = 10_000,
                    rtol: float = 1e-5, atol: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The density of a 2-D model at the centres of an ``n x n`` grid on ``[-L, L]^2``, and its integral.

    The density is ``exp(log p_eps(x))`` from the probability-flow ODE with the exact divergence (cheap in 2-D);
    the integral is the midpoint rule ``sum p(x_ij) h^2``, ``h = 2L/n``. A density pushed through an ODE flow
    integrates to 1 exactly, so the distance to 1 measures the solver's error plus the mass outside the box and
    the rule's error. ``max_batch_size`` grid points are solved at once.

    Returns:
        ``(centres (n*n, 2), density (n*n,) float64, integral)``.

    Raises:
        ValueError: a pipeline whose data are not 2-D.
    """
    if pipe.data_shape != (2,):
        raise ValueError(f"need a 2-D model, this one has data shape {pipe.data_shape}.")
    h = 2 * half_width / n
    c = -half_width + h * (torch.arange(n, dtype=torch.float32) + 0.5)
    xx, yy = torch.meshgrid(c, c, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    logp = torch.cat([pipe.log_likelihood(b, divergence="exact", rtol=rtol, atol=atol).logp.double()
                      for b in pts.split(max_batch_size)])
    dens = logp.exp()
    return pts, dens, float(dens.sum() * h * h)
