"""Small helpers every layer shares: broadcasting per-sample values, checking batches and numbers, and drawing
random numbers on the generator's device.

Randomness comes in through ``generator=``, as in diffusers: ``None`` (torch's global generator), one
:class:`torch.Generator` for the whole batch, or a list of them, one per sample (row), so that each sample's draws
depend on its own generator alone, not on its batch mates, the batch size or its position in the batch (what a
data-set evaluation split across processes needs: :mod:`scorezoo.evaluation`).

Nothing here knows about SDEs, networks or likelihoods; every other module may import it.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from typing import Callable, Sequence, Union

import numpy as np
import torch

__all__ = ["ScoreFn", "Generators", "bcast", "check_batch", "check_generator", "generator_rows", "is_real", "is_int",
           "randn", "rand", "randint", "torch_threads", "cpu_count"]

#: the one interface of "the score": ``score_fn(x: (B, *S), t: (B,)) -> (B, *S)``, an estimate of
#: ``grad_x log p_t(x)``
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: the source of a batch's random numbers: torch's global generator (``None``), one generator for the batch, or one
#: generator per sample (row 0 of the batch draws from ``generator[0]``, ...)
Generators = Union[torch.Generator, Sequence[torch.Generator], None]


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


def _per_row(generator) -> bool:
    return isinstance(generator, (list, tuple))


def check_generator(generator, batch_size: int | None = None) -> None:
    """Check a ``generator=`` argument (see :data:`Generators`).

    Args:
        generator: ``None``, a :class:`torch.Generator`, or a list or tuple of them, one per sample.
        batch_size: when given, a list must hold exactly this many generators.

    Raises:
        ValueError: anything else, or a list of the wrong length.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not _per_row(generator) or not generator or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(f"generator must be a torch.Generator, a list of them (one per sample) or None, got "
                         f"{type(generator).__name__}; e.g. torch.Generator().manual_seed(0).")
    if batch_size is not None and len(generator) != batch_size:
        raise ValueError(f"a list of generators needs one per sample: got {len(generator)} for a batch of "
                         f"{batch_size}.")


def generator_rows(generator: Generators, index) -> Generators:
    """The generators of the rows ``index`` (a sequence or 1-d tensor of row numbers) of a batch: ``generator``
    itself when it is shared by the whole batch (one generator or ``None``), else the selected entries of the
    per-sample list, e.g. for a batch whose rows are repeats of the samples (``index = [0, 0, 1, 1, ...]``)."""
    if not _per_row(generator):
        return generator
    return [generator[int(i)] for i in index]


def is_real(v) -> bool:
    """A real number (Python, numpy or a 0-d tensor), not a bool."""
    if torch.is_tensor(v):
        return v.dim() == 0 and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def is_int(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


# The draws happen on the generator's device and are then moved, so that a seeded CPU generator gives the same
# numbers whatever device the model is on.
def _draw(fn, shape, generator: Generators, device, **kwargs) -> torch.Tensor:
    if not _per_row(generator):
        where = generator.device if generator is not None else device
        return fn(shape, generator=generator, device=where, **kwargs).to(device)
    shape = torch.Size([shape] if isinstance(shape, int) else shape)
    if not len(shape):
        raise ValueError("per-sample generators need a shape with a batch dimension, (B, ...).")
    check_generator(generator, shape[0])
    return torch.stack([fn(shape[1:], generator=g, device=g.device, **kwargs).to(device) for g in generator])


def randn(shape, *, generator: Generators = None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal ``shape`` drawn from ``generator`` on its device, returned on ``device``; with a list of
    generators, row ``i`` (``shape[1:]``) is drawn from ``generator[i]`` alone.

    Raises:
        ValueError: a list of generators whose length is not ``shape[0]``.
    """
    return _draw(torch.randn, shape, generator, device, dtype=dtype)


def rand(shape, *, generator: Generators = None, device=None, dtype=None) -> torch.Tensor:
    """Uniform [0, 1) ``shape`` drawn from ``generator`` on its device, returned on ``device``; per row with a list,
    as :func:`randn`."""
    return _draw(torch.rand, shape, generator, device, dtype=dtype)


def randint(high: int, shape, *, generator: Generators = None, device=None) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` drawn from ``generator`` on its device, returned on ``device``; per row
    with a list, as :func:`randn`."""
    return _draw(lambda s, **kw: torch.randint(0, high, s, **kw), shape, generator, device)


def cpu_count() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(num_threads: int | None):
    """Run the block with ``num_threads`` torch intra-op threads and give the caller back its own count afterwards,
    also on an error (a library call must not change the process's thread count for the code that comes after it).
    ``None`` or 0 leaves torch's setting as it is.

    Raises:
        ValueError: ``num_threads`` is negative or not an integer.
    """
    if num_threads in (None, 0):
        yield
        return
    if not is_int(num_threads) or int(num_threads) < 0:
        raise ValueError(f"num_threads must be a positive integer or null, got {num_threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
