"""Training, as the math and the user see it: one runner, and a task that says what it trains.

* :mod:`~scorezoo.training.config`: every config key with its default and meaning (the runner's and each task's);
  load, merge, override, check.
* :mod:`~scorezoo.training.loop`: the runner (:func:`~scorezoo.training.loop.train`): accelerate, the run folder,
  checkpoints and exact resume, the EMA, the time limit, logging.
* :mod:`~scorezoo.training.task`: what differs between trainings (:class:`~scorezoo.training.task.TrainingTask`):
  what is trained, its loss per micro-batch, its evaluation and export. The tasks:

  * :mod:`~scorezoo.training.score`: a score model with the MLE paper's objective (Song, Durkan, Murray & Ermon
    2021), on :mod:`~scorezoo.training.batches` (deterministic batches), :mod:`~scorezoo.training.network` (the
    network of a config, checked against the data), :mod:`~scorezoo.training.evaluation` (held-out ODE likelihood
    and bound, with the uniform reference) and :mod:`~scorezoo.training.export` (pipeline folder, model card
    :mod:`~scorezoo.training.cards`, schedule);
  * :mod:`~scorezoo.training.dequantizer`: a variational dequantizer for a frozen pretrained model.

* :mod:`~scorezoo.training.cli`: ``python -m scorezoo.training`` (and the repository's ``train/train_mle.py``,
  ``train/train_dequantizer.py``).

accelerate and pyyaml come with the ``train`` extra (``pip install 'scorezoo[train]'``) and are imported when
used. The names below are imported on first use, so that ``--help`` does not wait for torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "DEFAULTS": "config", "DESCRIPTIONS": "config", "ConfigError": "config", "load_config": "config",
    "parse_overrides": "config", "check_config": "config", "defaults": "config",
    "TrainState": "batches", "make_batch": "batches", "load_data": "batches",
    "build_and_check_network": "network",
    "train": "loop", "resolve_checkpoint": "loop",
    "TrainingTask": "task", "TASKS": "task",
    "ScoreTask": "score", "DequantizerTask": "dequantizer",
    "held_out_likelihood": "evaluation",
    "make_pipeline": "export", "export_run": "export",
    "render_card": "cards",
    "main": "cli",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
