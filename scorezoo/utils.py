"""Small helpers every layer shares: broadcasting per-sample values, checking batches and numbers, and drawing
random numbers on the generator's device.

Nothing here knows about SDEs, networks or likelihoods; every other module may import it.
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
import torch

__all__ = ["ScoreFn", "bcast", "check_batch", "check_generator", "is_real", "is_int", "randn", "rand", "randint"]

#: the one interface of "the score": ``score_fn(x: (B, *S), t: (B,)) -> (B, *S)``, an estimate of
#: ``grad_x log p_t(x)``
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``(B,)`` tensor (or a scalar) so that it broadcasts against ``x: (B, *S)``."""
    if v.dim() == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


def check_batch(x, what: str = "x") -> None:
    """Check that ``x`` is a non-empty, finite, floating-point batch ``(B, ...)``.

    Raises:
        ValueError: not a tensor, no batch dimension, an empty batch, an integer dtype, or NaN/inf values; the
            message names ``what``.
    """
    if not torch.is_tensor(x):
        raise ValueError(f"{what} must be a torch.Tensor of shape (B, ...), got {type(x).__name__}.")
    if x.dim() < 2:
        raise ValueError(f"{what} must have a batch dimension, shape (B, ...); got shape {tuple(x.shape)}.")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch (B = 0): give at least one sample.")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point in the model's data range, got dtype {x.dtype}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or inf values.")


def check_generator(generator) -> None:
    """Raises ValueError unless ``generator`` is a :class:`torch.Generator` or ``None``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}; e.g. "
                         "torch.Generator().manual_seed(0).")


def is_real(v) -> bool:
    """A real number (Python, numpy or a 0-d tensor), not a bool."""
    if torch.is_tensor(v):
        return v.dim() == 0 and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def is_int(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _device(generator: torch.Generator | None, device) -> torch.device | str | None:
    return generator.device if generator is not None else device


# The draws happen on the generator's device and are then moved, so that a seeded CPU generator gives the same
# numbers whatever device the model is on.
def randn(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal ``shape`` drawn from ``generator`` on its device, returned on ``device``."""
    return torch.randn(shape, generator=generator, device=_device(generator, device), dtype=dtype).to(device)


def rand(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Uniform [0, 1) ``shape`` drawn from ``generator`` on its device, returned on ``device``."""
    return torch.rand(shape, generator=generator, device=_device(generator, device), dtype=dtype).to(device)


def randint(high: int, shape, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` drawn from ``generator`` on its device, returned on ``device``."""
    return torch.randint(0, high, shape, generator=generator, device=_device(generator, device)).to(device)
