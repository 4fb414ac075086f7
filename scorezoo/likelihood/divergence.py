"""The divergence of the score, exactly or by Hutchinson's estimator.

The probability-flow ODE's log-density changes at the rate of its drift's divergence (instantaneous change of
variables; Chen et al. 2018, Thm. 1), and only the score's part of it needs the network: ``div_x s(x, t)``.

* Exact: the trace of the Jacobian ``ds/dx`` from D vector-Jacobian products, batched so that one backward pass
  gives many diagonal entries at once.
* Hutchinson (1989): ``E_v[v^T (ds/dx) v] = tr(ds/dx)`` for probes with ``E[v v^T] = I`` (Rademacher or
  Gaussian), one backward pass per probe (FFJORD; Grathwohl et al. 2019, Sec. 3.1).
"""

from __future__ import annotations

import torch

from ..utils import Generators, ScoreFn, randint, randn

__all__ = ["divergence_fn", "draw_probes", "check_divergence", "DIVERGENCES", "PROBES", "DEFAULT_NETWORK_BATCH_SIZE"]

DIVERGENCES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")
#: samples through the network at once in the exact divergence's replicated batch, unless told otherwise
DEFAULT_NETWORK_BATCH_SIZE = 1024


def check_divergence(divergence: str, probe: str | None, num_probes: int | None) -> tuple[str, int]:
    """Check the divergence options and return ``(probe, num_probes)`` with their defaults filled in.

    Raises:
        ValueError: an unknown divergence or probe, ``num_probes < 1``, or probe options with
            ``divergence="exact"`` (which draws no probes).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}.")
    if divergence == "exact" and (probe is not None or num_probes is not None):
        raise ValueError("probe and num_probes are for divergence='hutchinson'; the exact divergence draws no "
                         "probes: drop them.")
    probe = "rademacher" if probe is None else probe
    num_probes = 1 if num_probes is None else num_probes
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}.")
    if isinstance(num_probes, bool) or int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}.")
    return probe, int(num_probes)


def draw_probes(x: torch.Tensor, probe: str, num_probes: int, generator: Generators) -> torch.Tensor:
    """``(num_probes, B, *S)`` Hutchinson probes with ``E[v v^T] = I``, drawn on the generator's device.

    Args:
        x: ``(B, *S)``, for the shape, dtype and device.
        probe: ``"rademacher"`` (entries ±1) or ``"gaussian"`` (standard normal).
        num_probes: probes per sample.
        generator: their source; the same seed gives the same probes. A list of B generators draws sample ``b``'s
            ``num_probes`` probes from ``generator[b]`` alone (see :mod:`scorezoo.utils`).
    """
    per_sample = isinstance(generator, (list, tuple))
    # per-sample generators draw along the batch dimension, so it goes first while drawing
    shape = (x.shape[0], num_probes, *x.shape[1:]) if per_sample else (num_probes, *x.shape)
    if probe == "rademacher":
        v = randint(2, shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    else:
        v = randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    return v.transpose(0, 1) if per_sample else v


def divergence_fn(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    probes: torch.Tensor | None = None,
    network_batch_size: int | None = None,
    reduce: bool = True,
    max_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The score and its divergence ``div_x s(x, t)`` per sample.

    With ``probes`` ``(P, B, *S)``: Hutchinson's estimate ``mean_p v_p^T (ds/dx) v_p`` (unbiased when
    ``E[v v^T] = I``). Without: the exact trace of the Jacobian. The batch is replicated k times and one backward
    pass with one-hot cotangents gives k diagonal entries of every sample at once (no Python loop over
    dimensions; this works for networks whose backward cannot be vmapped, such as diffusers' UNet). Exactness
    needs a network that treats samples independently (no batch statistics), as every scorezoo network does.

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        x: ``(B, *S)``; t: ``(B,)``.
        probes: Hutchinson probes, or ``None`` for the exact divergence.
        network_batch_size: exact divergence only: at most this many samples (``k * B``) through the network at
            once (default :data:`DEFAULT_NETWORK_BATCH_SIZE`; at least one replica of the batch).
        reduce: ``False`` returns the per-dimension terms ``(B, *S)`` that sum to the divergence: the Jacobian's
            diagonal (exact) or ``mean_p v_p * (v_p^T ds/dx)`` (Hutchinson; an unbiased estimate of the diagonal).
        max_batch_size: the name of ``network_batch_size`` in scorezoo 0.1 (still taken).

    Returns:
        ``(score (B, *S), divergence (B,) or its terms (B, *S))``, both detached.
    """
    if probes is not None:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = score_fn(xg, t)
            terms = torch.zeros_like(x)
            for i, v in enumerate(probes):
                (vj,) = torch.autograd.grad(s, xg, v, retain_graph=i + 1 < len(probes))
                terms = terms + vj * v
        terms = terms.detach() / len(probes)
        return s.detach(), terms if not reduce else terms.flatten(1).sum(1)

    network_batch_size = max_batch_size or network_batch_size
    b, d = x.shape[0], x[0].numel()
    chunk = max(1, min(d, int(network_batch_size or DEFAULT_NETWORK_BATCH_SIZE) // b))
    s, diag = None, torch.zeros(b, d, device=x.device, dtype=x.dtype)
    for idx in torch.arange(d, device=x.device).split(chunk):
        k = len(idx)
        with torch.enable_grad():
            xr = x.detach().repeat(k, *([1] * (x.dim() - 1))).requires_grad_(True)
            out = score_fn(xr, t.repeat(k))
            onehot = torch.zeros(k, b, d, device=x.device, dtype=x.dtype)
            onehot[torch.arange(k), :, idx] = 1
            (rows,) = torch.autograd.grad(out, xr, onehot.view_as(out))
        diag[:, idx] = rows.view(k, b, d)[torch.arange(k), :, idx].T.detach()
        if s is None:
            s = out.detach()[:b]
    return s, diag.sum(1) if reduce else diag.view_as(x)
