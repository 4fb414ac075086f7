"""What a variational dequantizer ``q(u | k)`` is trained on, and how it is judged against uniform noise.

The objective is the variational bound of Flow++ (Ho et al. 2019, eq. 11) with the score model's likelihood bound
(Song, Durkan, Murray & Ermon 2021, Thm. 3) in place of ``-log p``, as score_flow trains its dequantizer
(``losses.py``, ``get_dequantization_loss_fn``):

    L(q) = E_k E_{u ~ q(.|k)} [ bound(x(u)) + log q(u | k) ] - D log((hi - lo)/K),   x(u) = lo + (hi-lo)(k+u)/K,

estimated per image with one draw of ``u`` (reparameterised: gradients flow through ``x(u)`` and the frozen score
network) and ``num_time_points`` importance-sampled times of the bound (:func:`dequantization_loss`). The bound costs
one forward and backward pass of the score network per time point, where differentiating the ODE log-likelihood would
cost its whole solve (``benchmarks/dequantizer_cost.py`` measures both): see ``docs/dequantization.md``.
:func:`compare_dequantizations` scores held-out images under uniform and variational dequantization, paired.

The training itself runs on the runner of the score models, as its ``dequantizer`` task
(:mod:`scorezoo.training.dequantizer`):

    python -m scorezoo.training --task dequantizer --pretrained vp-mle-digits --output_dir runs/deq-vp-mle-digits
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..likelihood import likelihood_bound
from .uniform import bits_per_dim, dequantize

__all__ = ["dequantization_loss", "compare_dequantizations"]


def dequantization_loss(dequantizer: nn.Module, pipe, levels: torch.Tensor, *, generator: torch.Generator | None = None,
                        num_time_points: int = 1) -> torch.Tensor:
    """One-sample estimate of ``bound(x(u)) + log q(u | k) - D log((hi - lo)/K)`` per image, in bits/dim.

    Args:
        dequantizer: a :class:`~scorezoo.dequantization.variational.VariationalDequantizer` (gradients flow to its
            parameters).
        pipe: the frozen :class:`~scorezoo.pipeline.ScorePipeline` (its weights should not require grad).
        levels: ``(B, *S)`` integer levels of the pipeline's data.
        generator: source of ``u``, the bound's times and noises.
        num_time_points: importance-sampled times of the bound per image (MLE Thm. 3).

    Returns:
        ``(B,)`` bits/dim: in expectation over ``u`` and the bound's noise an upper bound on each image's discrete
        bits/dim under the model (Flow++ eq. 11 with MLE Thm. 3), differentiable in q's parameters.
    """
    u, log_q = dequantizer.sample_and_log_prob(levels, generator=generator)
    x = dequantize(levels.to(u.device), u, num_levels=pipe.num_levels, data_range=pipe.data_range)
    nll = likelihood_bound(pipe.model, pipe.sde, x, eps=pipe.eps, num_time_points=num_time_points,
                           num_decoder_samples=1, generator=generator).nll
    return bits_per_dim(-nll, pipe.dim, num_levels=pipe.num_levels, data_range=pipe.data_range, log_q=log_q)


def compare_dequantizations(pipe, levels, *, estimator: str, num_repeats: int, seed: int, **kwargs) -> dict:
    """Held-out bits/dim of ``levels`` under uniform and under variational dequantization, paired: the same seed
    (so the same uniform numbers, which q transforms, and the same probes and times) for both.

    Args:
        pipe: a :class:`~scorezoo.pipeline.ScorePipeline` with a :attr:`~scorezoo.pipeline.ScorePipeline.dequantizer`.
        levels: ``(N, *S)`` integer levels.
        estimator: ``"ode"`` or ``"bound"``.
        num_repeats: dequantization draws per image.
        seed: seed of the generator of both runs.
        kwargs: passed to :meth:`~scorezoo.pipeline.ScorePipeline.bits_per_dim`.

    Returns:
        ``{"uniform", "uniform_stderr", "variational", "variational_stderr", "gain", "gain_stderr", "num_images",
        "num_repeats", "per_image_uniform", "per_image_variational"}``: means over images (bits/dim), standard
        errors over images, and the gain uniform − variational with its paired standard error.
    """
    out: dict = {}
    for deq in ("uniform", "variational"):
        res = pipe.bits_per_dim(levels, estimator=estimator, num_repeats=num_repeats, dequantization=deq,
                                generator=torch.Generator().manual_seed(int(seed)), **kwargs)
        out[deq] = res.bpd
    n = len(out["uniform"])

    def se(v: torch.Tensor) -> float:
        return float(v.std() / math.sqrt(n)) if n > 1 else float("nan")

    gain = out["uniform"] - out["variational"]
    return {"uniform": float(out["uniform"].mean()), "uniform_stderr": se(out["uniform"]),
            "variational": float(out["variational"].mean()), "variational_stderr": se(out["variational"]),
            "gain": float(gain.mean()), "gain_stderr": se(gain), "num_images": n, "num_repeats": int(num_repeats),
            "per_image_uniform": out["uniform"].tolist(), "per_image_variational": out["variational"].tolist()}
