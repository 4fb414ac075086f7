"""How a picture is scored: one plan, made once from the user's options and the model, and the one function that
carries it out.

:class:`ScoringPlan` holds every choice of a bits/dim computation (estimator, solver and its steps or tolerances,
divergence, dequantization draws, tiling, dequantization, batch size) and refuses, in :meth:`ScoringPlan.create`,
every combination that conflicts. ``scorezoo bpd``, ``scorezoo eval``, the demo and
:meth:`ScorePipeline.bits_per_dim <scorezoo.pipeline.ScorePipeline.bits_per_dim>` all make their plan here, so an
option means the same everywhere and the same picture with the same options and seed gets the same number from each.

:func:`score_images` walks the pictures in a straight line: file -> :mod:`scorezoo.data` (decode, resize or tile,
quantise) -> :mod:`scorezoo.dequantization` (uniform noise, or ``u ~ q(u | k)`` of the variational dequantizer) ->
:mod:`scorezoo.likelihood` (the probability-flow ODE with the model's score, or the bound) -> bits/dim per image.

Randomness: draw ``j`` of image ``i`` has its own generator, seeded by :func:`draw_seed` from ``(seed, i, j)``
(:func:`draw_generators`); it draws that draw's dequantization noise and then its Hutchinson probes. An image's
numbers therefore do not depend on the other images of the call, their number or the batch size (beyond the float
rounding of batched kernels), which is what lets ``scorezoo eval`` split a data set over processes and resume it.

The plan is in :mod:`scorezoo.scoring.plan`, the walk in :mod:`scorezoo.scoring.run`; every name of both is
importable from ``scorezoo.scoring``.
"""

from .plan import (AUTO_EXACT_MAX_DIM, BOUND_DECODER_SAMPLES, BOUND_TIME_POINTS, DEFAULT_MAX_TILES, DEFAULT_REPEATS,
                   DEQUANTIZATIONS, DIVERGENCES, ESTIMATORS, SMALL_GRAYSCALE, SOLVES, ScoringPlan, check_choices,
                   choose_model, plan_from_options)
from .run import (BitsPerDimResult, draw_generators, draw_seed, estimate_seconds, open_pictures, sample_tiles,
                  score_images)

__all__ = ["choose_model", "SMALL_GRAYSCALE", "ScoringPlan", "BitsPerDimResult", "score_images", "draw_seed",
           "draw_generators", "open_pictures", "plan_from_options", "check_choices", "ESTIMATORS", "SOLVES",
           "DIVERGENCES", "DEQUANTIZATIONS", "AUTO_EXACT_MAX_DIM", "DEFAULT_REPEATS", "BOUND_TIME_POINTS",
           "BOUND_DECODER_SAMPLES", "DEFAULT_MAX_TILES", "sample_tiles", "estimate_seconds"]

