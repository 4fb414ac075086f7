"""The app: :func:`build_demo` puts the three tabs together over a :class:`~.compute.DemoContext`; :func:`main` is
the command line (``python -m scorezoo.demo``, ``scorezoo demo``, ``python app.py``)."""

from __future__ import annotations

import argparse
import logging
import os

import gradio as gr

from .compute import DemoContext, DemoSettings
from .models import ModelEntry, folder_model, takes_colour, zoo_models
from .tab_likelihood import build_likelihood_tab
from .tab_models import build_models_tab
from .tab_sample import build_sample_tab

__all__ = ["build_demo", "main", "parse_args"]

logger = logging.getLogger("scorezoo.demo")


def build_demo(models: list[ModelEntry], default: str | None = None, settings: DemoSettings | None = None,
               problems: list[str] | tuple[str, ...] = (), photo_default: str | None = None) -> gr.Blocks:
    """The Gradio app over ``models``; those with a local copy are served, all are listed in the Models tab.

    Args:
        models: e.g. :func:`~.compute.zoo_models` followed by :func:`~.compute.folder_model` entries.
        default: the model selected first and the one for grayscale pictures; by default the zoo's default
            (:func:`scorezoo.zoo.default_model`) when it is served, else the first served model.
        settings: limits and solver options.
        problems: lines shown in the Models tab (cards the registry skipped).
        photo_default: the model for colour pictures; by default the zoo's photo model
            (:func:`scorezoo.zoo.default_photo_model`) when it is served, else none (colour pictures then get
            ``default``, and the page says so).

    Raises:
        ValueError: no model to serve, two models of one name, or a default not among the served ones.
    """
    ctx = DemoContext.create(models, default, photo_default, settings)
    with gr.Blocks(title="scorezoo", analytics_enabled=False) as demo:
        gr.Markdown("# scorezoo\nScore-based generative models with exact likelihoods through the "
                    "probability-flow ODE.")
        build_sample_tab(ctx, demo)
        build_likelihood_tab(ctx)
        build_models_tab(ctx, problems)
    demo.queue(default_concurrency_limit=ctx.settings.concurrency_limit, max_size=ctx.settings.queue_size)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of :func:`main`."""
    defaults = DemoSettings()
    ap = argparse.ArgumentParser(prog="scorezoo demo",
                                 description="scorezoo demo: sampling, bits/dim of pictures, the model zoo. Serves "
                                             "local models only (bundled, in the HF cache, or --model folders).")
    ap.add_argument("--model", action="append", default=[], metavar="FOLDER",
                    help="a pipeline folder to serve next to the zoo's models (repeatable); the first 1-channel one "
                         "becomes the default, the first 3-channel one the photo model")
    ap.add_argument("--default", help="the model selected first and used for grayscale pictures (a name of the "
                                      "Models tab)")
    ap.add_argument("--photo-default", help="the model used for colour pictures (default: the zoo's photo model)")
    ap.add_argument("--tol", type=float, default=defaults.tol,
                    help="rtol and atol of the adaptive ODE solver for models without a calibrated schedule "
                         "(default %(default)g; the library's 1e-5 is several times slower)")
    ap.add_argument("--adaptive", action="store_true",
                    help="use the adaptive solver at --tol even for models with a calibrated schedule")
    ap.add_argument("--concurrency", type=int, default=defaults.concurrency_limit, metavar="N",
                    help="requests served at once, each on one core (default: the cores available, %(default)s)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = ap.parse_args(argv)
    if args.tol <= 0:
        ap.error(f"--tol must be > 0, got {args.tol:g}")
    if args.concurrency < 1:
        ap.error(f"--concurrency must be >= 1, got {args.concurrency}")
    return args


def main(argv: list[str] | None = None) -> None:
    """``python -m scorezoo.demo``: serve the zoo on 127.0.0.1. Options (``--help`` lists them): ``--model FOLDER``
    (repeatable), ``--default NAME``, ``--photo-default NAME``, ``--tol TOL``, ``--adaptive``, ``--concurrency N``,
    ``--host HOST``, ``--port N``."""
    args = parse_args(argv)
    settings = DemoSettings(tol=args.tol, use_schedule=not args.adaptive, concurrency_limit=args.concurrency)
    try:
        models, problems = zoo_models()
        folders = []
        for folder in args.model:
            folders.append(folder_model(folder, taken={m.name for m in models + folders}))
        for line in problems:
            logger.warning("%s", line)
        colour = [takes_colour(m) for m in folders]
        default = args.default or next((m.name for m, c in zip(folders, colour) if not c), None)
        photo = args.photo_default or next((m.name for m, c in zip(folders, colour) if c), None)
        demo = build_demo(models + folders, default, settings, problems, photo)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"scorezoo demo: {e}") from None
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=settings.max_file_size,
                ssr_mode=False, show_error=True)
