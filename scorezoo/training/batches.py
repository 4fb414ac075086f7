"""Deterministic training batches: the data order and every step's noise are functions of (seed, step).

The data order of epoch ``e`` is ``randperm(N, seed + e)`` and every step's flips, dequantization noise, times and
noises come from a generator seeded with ``(seed, step)``. The step is checkpointed (:class:`TrainState`), so a run
killed at any step, mid-epoch too, resumes with the same batches. The global batch is drawn in full and then
sliced per process and per accumulation micro-batch, so its noise does not depend on the number of processes.
"""

from __future__ import annotations

import torch

from ..datasets import TrainingData, load_dataset
from ..dequantization import levels_to_data, uniform_dequantize
from .config import ConfigError

__all__ = ["TrainState", "make_batch", "load_data"]


def load_data(cfg: dict) -> TrainingData:
    """Load the configured data set (``dataset``, ``data_dir``, ``data_shape``, ``num_levels``, ``dataset_options``).

    Raises:
        ConfigError: unknown, missing or unreadable data; ``random_flip`` on data that are not images.
    """
    try:
        data = load_dataset(cfg["dataset"], data_dir=cfg["data_dir"], data_shape=cfg["data_shape"],
                            num_levels=cfg["num_levels"], seed=cfg["seed"],
                            options=cfg["dataset_options"])
    except (ValueError, ImportError) as e:
        raise ConfigError(f"dataset {cfg['dataset']!r}: {e}") from None
    if cfg["random_flip"] and len(data.data_shape) != 3:
        raise ConfigError(f"random_flip flips images; the {cfg['dataset']} data have shape {data.data_shape}.")
    return data


class TrainState:
    """The step and the data-order seed, checkpointed with ``accelerator.register_for_checkpointing``.

    The data order is a pure function of (seed, epoch) and each step's noise of (seed, step), so the step
    is the whole state of the data pipeline.

    Args:
        seed: the run's seed.
        num_items: size of the training split.
        batch_size: the global batch; the incomplete last batch of an epoch is dropped.
    """

    def __init__(self, seed: int, num_items: int, batch_size: int):
        self.seed, self.num_items, self.batch_size = int(seed), int(num_items), int(batch_size)
        self.step = 0
        self.steps_per_epoch = num_items // batch_size
        self._perm: tuple[int, torch.Tensor] | None = None  # (epoch, its order): one randperm per epoch

    @property
    def epoch(self) -> int:
        """The epoch of the current step, from 0."""
        return self.step // self.steps_per_epoch

    def batch_indices(self, step: int) -> torch.Tensor:
        """``(batch_size,)`` indices of the items of global step ``step`` (0-based)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = (epoch, torch.randperm(self.num_items, generator=g))
        return self._perm[1][pos * self.batch_size:(pos + 1) * self.batch_size]

    def step_generator(self, step: int) -> torch.Generator:
        """CPU generator of step ``step``'s flips, dequantization noise, times and Gaussian noise."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * step + 1)

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "num_items": self.num_items, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Restore the step.

        Raises:
            ConfigError: the checkpoint was made with another seed, data set size or batch size.
        """
        for k in ("seed", "num_items", "batch_size"):
            if int(state[k]) != getattr(self, k):
                raise ConfigError(f"the checkpoint was made with {k}={state[k]}, this run has {getattr(self, k)}: "
                                  "resume with the config it was made with.")
        self.step = int(state["step"])


def make_batch(data: TrainingData, state: TrainState, step: int, dequantize: bool,
               random_flip: bool = False) -> tuple[torch.Tensor, torch.Generator]:
    """The global batch of step ``step`` and the step's generator.

    Returns:
        ``x``: ``(batch_size, *data_shape)`` float in the model's data space (integer data dequantized with
        uniform noise when ``dequantize``, else mapped to the levels' centres); and the step's generator, advanced
        past the flips and the dequantization noise, for the loss's times and noises.
    """
    g = state.step_generator(step)
    items = data.train[state.batch_indices(step)]
    if random_flip:
        flip = torch.rand(len(items), generator=g) < 0.5
        items = torch.where(flip[:, None, None, None], items.flip(-1), items)
    if data.num_levels is None:
        return items.float(), g
    if dequantize:
        return uniform_dequantize(items, num_levels=data.num_levels, data_range=data.data_range, generator=g), g
    return levels_to_data(items, num_levels=data.num_levels, data_range=data.data_range), g
