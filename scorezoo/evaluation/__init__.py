"""Bits/dim of a whole data set: :func:`evaluate` (``scorezoo eval``), on one process or split across the processes
of an ``accelerate launch`` or ``torchrun``, resumable, with per-image numbers that do not depend on the split.

* :mod:`~scorezoo.evaluation.specs`: the data specs (``digits``, ``photo-patches``, ``cifar10:ROOT``, ``photos``,
  picture files and folders) as a numbered list of images;
* :mod:`~scorezoo.evaluation.records`: the per-image results files, streamed, repaired after a kill, merged;
  per-image seeds; the data-set summary;
* :mod:`~scorezoo.evaluation.run`: :func:`evaluate`.
"""

from .specs import EvalData, load_eval_data
from ..scoring import draw_seed
from .records import summarize
from .run import EvalSummary, evaluate

__all__ = ["evaluate", "EvalSummary", "EvalData", "load_eval_data", "draw_seed", "summarize"]
