"""Uniform dequantization of integer data into a model's continuous data space.

Integer data ``k in {0, ..., K-1}^D`` becomes ``x = lo + (hi - lo) (k + u) / K`` with ``u ~ U[0,1)^D``
(Theis, van den Oord & Bethge 2016, Sec. 3.1; Ho et al. 2019, Flow++, Sec. 3.1). Jensen's inequality
gives ``log P(k) >= E_u[log p_X(x)] + log|det dx/du|`` with ``log|det dx/du| = D log((hi - lo) / K)``,
the offset that turns nats of ``p_X`` into bits/dim of the integer data (:func:`bits_per_dim`).
"""

from __future__ import annotations

import math

import torch

from ..utils import Generators, rand

__all__ = ["uniform_dequantize", "dequantize", "check_levels", "dequantization_log_jacobian", "bits_per_dim",
           "levels_to_data", "data_to_levels"]


def _check_range(num_levels: int, data_range: tuple[float, float]) -> tuple[float, float]:
    if int(num_levels) < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}.")
    lo, hi = (float(v) for v in data_range)
    if not hi > lo:
        raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range}.")
    return lo, hi


def dequantization_log_jacobian(dim: int, *, num_levels: int, data_range: tuple[float, float]) -> float:
    """``log|det dx/du| = D log((hi - lo) / K)`` in nats for the map of :func:`uniform_dequantize`."""
    lo, hi = _check_range(num_levels, data_range)
    return dim * math.log((hi - lo) / num_levels)


def check_levels(k: torch.Tensor, num_levels: int) -> None:
    """Check that ``k`` holds integer levels in [0, num_levels).

    Raises:
        ValueError: non-integer values, or values outside [0, num_levels).
    """
    if k.is_floating_point() and not torch.equal(k, k.round()):
        raise ValueError("dequantize expects integer levels; got non-integer values.")
    # compare as Python numbers: a uint8 tensor compared with 256 would wrap the 256 to 0
    if k.numel() and (k.min().item() < 0 or k.max().item() >= num_levels):
        raise ValueError(f"levels must lie in [0, {num_levels}); got values in [{int(k.min())}, {int(k.max())}].")


def dequantize(
    k: torch.Tensor,
    u: torch.Tensor,
    *,
    num_levels: int,
    data_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    """``x = lo + (hi - lo)(k + u)/K``: levels ``k: (B, *S)`` plus offsets ``u: (B, *S)`` in [0, 1) (uniform or
    drawn from a variational dequantizer) to points ``x: (B, *S)`` of the data space, in ``u``'s dtype.
    ``log|det dx/du|`` is :func:`dequantization_log_jacobian`."""
    lo, hi = _check_range(num_levels, data_range)
    return lo + (hi - lo) * (k.to(u.dtype) + u) / num_levels


def uniform_dequantize(
    k: torch.Tensor,
    *,
    num_levels: int,
    data_range: tuple[float, float] = (-1.0, 1.0),
    generator: Generators = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Dequantize integer levels ``k: (B, *S)`` in [0, K) to ``x: (B, *S)`` in [lo, hi) with ``u ~ U[0, 1)^D``.

    ``generator`` draws the noise ``u``: one generator for the batch, or a list of B, one per sample, each drawing
    its sample's noise alone (see :mod:`scorezoo.utils`).

    Raises:
        ValueError: non-integer values, or values outside [0, num_levels).
    """
    _check_range(num_levels, data_range)
    check_levels(k, num_levels)
    u = rand(k.shape, generator=generator, device=k.device, dtype=dtype)
    return dequantize(k, u, num_levels=num_levels, data_range=data_range)


def bits_per_dim(
    logp: torch.Tensor,
    dim: int,
    *,
    num_levels: int,
    data_range: tuple[float, float] = (-1.0, 1.0),
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bits/dim of integer data from the log-density of its dequantized image.

    For integer data ``k`` with ``num_levels`` levels mapped by ``x = lo + (hi - lo)(k + u)/K``,
    ``u ~ U[0,1)^D`` (Theis et al. 2016; Ho et al. 2019, Sec. 3.1),
    ``-log P(k) <= -E_u[log p_X(x)] - D log((hi - lo)/K)``, so
    ``bpd = (-log p_X(x) - log|det dx/du|) / (D ln 2)``. For [-1, 1] and K = 256 the offset is
    ``log2(256 / 2) = 7`` bits; a uniform density on the data range gives exactly ``log2 K``. With a variational
    dequantizer, ``u ~ q(u | k)``, the bound is ``-log P(k) <= E_q[-log p_X(x) + log q(u | k)] - log|det dx/du|``
    (Ho et al. 2019, Flow++, eq. 11), so ``bpd = (-log p_X(x) + log q(u | k) - log|det dx/du|) / (D ln 2)``.

    Args:
        logp: ``(B,)`` log p_X(x) in nats of the dequantized points.
        dim: D, the number of dimensions per sample.
        num_levels: K, the number of integer levels per dimension.
        data_range: ``(lo, hi)`` of the model's data space.
        log_q: ``(B,)`` ``log q(u | k)`` in nats of the draws ``u`` (a density on [0, 1)^D); ``None`` (or 0) for
            uniform dequantization.

    Returns:
        ``(B,)`` bits/dim (in expectation over the draws, an upper bound on the discrete data's bits/dim).
    """
    log_jac = dequantization_log_jacobian(dim, num_levels=num_levels, data_range=data_range)
    nats = -(logp + log_jac) if log_q is None else -(logp + log_jac) + log_q
    return nats / (dim * math.log(2))


def levels_to_data(k: torch.Tensor, *, num_levels: int, data_range: tuple[float, float] = (-1.0, 1.0),
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The centre of each level's bin: ``lo + (hi - lo)(k + 1/2)/K`` (no noise), e.g. to train on."""
    lo, hi = _check_range(num_levels, data_range)
    return lo + (hi - lo) * (k.to(dtype) + 0.5) / num_levels


def data_to_levels(x: torch.Tensor, *, num_levels: int, data_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Inverse of :func:`uniform_dequantize`: the bin of each value, clamped to [0, K-1] (long tensor)."""
    lo, hi = _check_range(num_levels, data_range)
    return torch.floor((x - lo) / (hi - lo) * num_levels).clamp(0, num_levels - 1).long()
