"""What a run trains: the task, the one part of a training run that differs between a score model and a dequantizer.

The runner (:func:`scorezoo.training.loop.train`) does everything else once: accelerate, the run folder and its
guard, the deterministic data order, micro-batches over processes and accumulation steps, Adam with warm-up,
clipping, the EMA, checkpoints and exact resume, the time limit, logging and the progress bar. A task says

* what is trained and its loss per micro-batch (:meth:`TrainingTask.build`, :meth:`TrainingTask.micro_batches`);
* how the EMA weights are checked on held-out data now and then (:meth:`TrainingTask.periodic_evaluation`);
* what a finished run evaluates and exports (:meth:`TrainingTask.finish`).

The tasks, named by the config key ``task``: ``score`` (:class:`scorezoo.training.score.ScoreTask`) and
``dequantizer`` (:class:`scorezoo.training.dequantizer.DequantizerTask`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    import torch

    from ..datasets import TrainingData
    from .batches import TrainState

__all__ = ["TrainingTask", "TASKS", "make_task"]

#: task name (the config key ``task``) -> ``module:class`` of its :class:`TrainingTask`
TASKS: dict[str, str] = {"score": "scorezoo.training.score:ScoreTask",
                         "dequantizer": "scorezoo.training.dequantizer:DequantizerTask"}


class TrainingTask(Protocol):
    """The interface of a task, made from a checked config by ``Task(cfg)``, which loads and checks the data and
    anything frozen (raising :class:`~scorezoo.training.config.ConfigError`) before the runner builds anything.

    Attributes:
        data: the training data; the runner draws the global batch's indices into ``data.train`` from (seed, step).
        title: what is trained, for the first line of the run (``"vp-mle-digits"``, ``"a dequantizer for ..."``).
        loss_key: the log.jsonl key of the mean loss (``"loss"``: nats per item; ``"loss_bpd"``: bits/dim).
        outputs: what :meth:`finish` writes into the run folder, which ``overwrite`` deletes with the runner's files.
    """

    data: TrainingData
    title: str
    loss_key: str
    outputs: tuple[str, ...]

    def build(self) -> torch.nn.Module:
        """The objective: a module whose ``network`` attribute is what is trained (its parameters are optimised,
        averaged and checkpointed) and whose ``forward(*inputs)`` returns the ``(B,)`` loss of one micro-batch, the
        ``inputs`` of :meth:`micro_batches`. Initialised from torch's random state, which the runner has seeded.

        Raises:
            ConfigError: a network that cannot take the data.
        """

    def to(self, device: torch.device) -> None:
        """Move what is frozen (held outside the objective's module tree, so neither trained nor saved) to
        ``device``."""

    def micro_batches(self, state: TrainState, step: int, parts: list[int], num_parts: int) -> list[tuple]:
        """The inputs of the objective for the parts ``parts`` of step ``step``'s global batch cut into ``num_parts``
        equal parts (one per process and accumulation step): each a tuple of CPU tensors of ``batch_size /
        num_parts`` items (and generators), functions of (seed, step) alone, so that a resumed run repeats them."""

    def periodic_evaluation(self, network: torch.nn.Module) -> tuple[dict, str]:
        """Held-out check of the EMA weights ``network`` every ``eval_steps``: ``(summary for log.jsonl, one line)``."""

    def finish(self, network: torch.nn.Module, results: dict, output_dir: Path,
               log: Callable[[dict], None]) -> dict:
        """Evaluate (``final_eval``) and export the EMA weights ``network`` into ``output_dir``, with
        ``results.json``: the runner's ``results`` (steps, batch, processes, command...) and the task's.

        Returns:
            The results written to ``results.json``.
        """


def make_task(cfg: dict) -> TrainingTask:
    """The task ``cfg["task"]`` of a checked config, its data and frozen parts loaded and checked.

    Raises:
        ConfigError: data or a frozen model that cannot be trained on.
    """
    module, name = TASKS[cfg["task"]].split(":")
    return getattr(importlib.import_module(module), name)(cfg)
