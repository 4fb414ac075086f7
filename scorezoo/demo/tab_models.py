"""The Models tab: the zoo registry (:func:`scorezoo.zoo.registry`, plus ``--model`` folders) with each card's
held-out likelihood, and the cards themselves."""

from __future__ import annotations

import gradio as gr

from .compute import DemoContext
from .models import REGISTRY_HEADERS, card_markdown, registry_rows
from .ui import handler

__all__ = ["build_models_tab", "STATUS_NOTE"]

STATUS_NOTE = ("status: *bundled* = installed with scorezoo; *cached* = in the local Hugging Face cache; "
               "*folder* = given with `--model`; *remote* = on the Hub only, listed here but not served by this "
               "offline app; *convert* = the authors' published checkpoint, which `scorezoo convert` turns into a "
               "pipeline. Held-out likelihoods in bits/dim for images, in nats per point where marked "
               "(2-D data); *(reported)* = the authors' published figure, not measured here.")

#: the likelihood columns (the last two) wide enough for "2.301 ± 0.005 nats/point" within a 1280-pixel page
COLUMN_WIDTHS = ["17%", "7%", "7%", "5%", "10%", "10%", "9%", "9%", "13%", "13%"]
#: pixels per row that the table's height allows (a row wrapped to three lines), so that it shows every model
#: without a scroll box of its own
ROW_HEIGHT = 80


def build_models_tab(ctx: DemoContext, problems: list[str] | tuple[str, ...] = ()) -> None:
    """The tab's components and events, inside an open ``gr.Blocks``; ``problems`` (cards the registry skipped)
    are listed under the table. API endpoint ``/card``."""

    @handler(ctx.settings.torch_threads)
    def on_card(name):
        return card_markdown(ctx.model(name))

    with gr.Tab("Models"):
        rows = registry_rows(ctx.models)
        gr.Dataframe(value=rows, headers=REGISTRY_HEADERS, interactive=False,
                     label="the zoo (held-out likelihood on each card's eval split, ± standard error)", elem_id="zoo",
                     wrap=True, column_widths=COLUMN_WIDTHS, max_height=ROW_HEIGHT * (len(rows) + 1))
        gr.Markdown(STATUS_NOTE + "".join(f"\n\n⚠ {p}" for p in problems))
        name = gr.Dropdown([m.name for m in ctx.models], value=ctx.default, label="model card")
        card = gr.Markdown(card_markdown(ctx.model(ctx.default)))
        name.change(on_card, name, card, api_name="card")
