"""Training with the MLE paper's objective (Song, Durkan, Murray & Ermon 2021), as the math and the user see it.

* :mod:`~scorezoo.training.config`: every config key with its default and meaning; load, merge, override, check.
* :mod:`~scorezoo.training.data`: deterministic batches (:class:`TrainState`, :func:`make_batch`).
* :mod:`~scorezoo.training.network`: the network of a config, checked against the data.
* :mod:`~scorezoo.training.loop`: the accelerate loop, checkpoints and exact resume
  (:func:`~scorezoo.training.loop.train`).
* :mod:`~scorezoo.training.evaluation`: held-out ODE likelihood and bound, with the uniform reference.
* :mod:`~scorezoo.training.export`: pipeline folder, model card (:mod:`~scorezoo.training.cards`), schedule.
* :mod:`~scorezoo.training.cli`: ``python -m scorezoo.training`` and ``train/train_mle.py``.

accelerate and pyyaml come with the ``train`` extra (``pip install 'scorezoo[train]'``) and are imported when
used. The names below are imported on first use, so that ``--help`` does not wait for torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "DEFAULTS": "config", "DESCRIPTIONS": "config", "ConfigError": "config", "load_config": "config",
    "parse_overrides": "config", "check_config": "config",
    "TrainState": "data", "make_batch": "data", "load_data": "data",
    "build_and_check_network": "network",
    "train": "loop", "resolve_checkpoint": "loop",
    "evaluate": "evaluation",
    "make_pipeline": "export", "export_run": "export",
    "render_card": "cards",
    "main": "cli",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
