"""The scorezoo demo: a Gradio app over :class:`~scorezoo.pipeline.ScorePipeline`.

Start it with ``python -m scorezoo.demo``, ``scorezoo demo`` or ``python app.py`` (``--help`` for the options); it
needs the ``app`` extra (gradio, matplotlib) and no network. Three tabs, each a thin shell over the library:

* **Sample**: ``pipe(batch_size, sampler=..., num_inference_steps=..., generator=seed)`` as an image grid; for a
  2-D model, the samples next to a heatmap of the exact density.
* **Likelihood**: each uploaded file is scored by one call of ``pipe.bits_per_dim`` (the bits/dim, its standard
  error, the bits along ODE time and the per-pixel bits map), a colour photo by the photo model at its own
  resolution tile by tile, next to PNG, WebP and JPEG XL lossless for the same pixels and in plain words.
* **Models**: the zoo registry (:func:`scorezoo.zoo.registry`, so a newly bundled model is listed without a change
  here) with the cards' held-out figures, and the cards.

Modules: :mod:`.models` (the models served) and :mod:`.compute` (what is computed; neither needs Gradio),
:mod:`.figures` (what is drawn), one ``tab_*`` module per tab, :mod:`.app` (:func:`~scorezoo.demo.app.build_demo`,
:func:`~scorezoo.demo.app.main`). Requests are served concurrently, one core each.
"""

from .compute import (AUTO, DemoContext, DemoSettings, ImageScore, choose_model, density_grid, plan_for, score_file,
                      solver_for)
from .models import ModelEntry, PipelineCache, card_markdown, folder_model, registry_rows, zoo_models

__all__ = ["build_demo", "main", "AUTO", "DemoContext", "DemoSettings", "ImageScore", "ModelEntry", "PipelineCache",
           "card_markdown", "choose_model", "density_grid", "folder_model", "registry_rows", "score_file",
           "solver_for", "plan_for", "zoo_models"]


def __getattr__(name: str):
    # the app (Gradio) is imported on first use, so that what is computed (.compute) loads without gradio
    if name in ("build_demo", "main"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
