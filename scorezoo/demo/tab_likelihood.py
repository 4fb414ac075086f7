"""The Likelihood tab: bits/dim of uploaded pictures, one library call per file (:func:`~.compute.score_file`).

For each file: the pixels scored (a digit as the model sees it; a photo at its own resolution, tile by tile, under a
model of photo patches), where the bits go (the per-pixel bits map of the same solve), the bits accumulated along
ODE time, and next to the model's bits/dim what PNG, WebP and JPEG XL need losslessly for the same pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import gradio as gr

from ..compression import CODECS, codec_available
from ..scoring import AUTO_EXACT_MAX_DIM
from .compute import AUTO, DemoContext, ImageScore, choose_model, score_file, solver_for
from .figures import bits_map_picture, picture, trajectory_figure
from .ui import handler, int_in

__all__ = ["build_likelihood_tab", "result_headers", "CODEC_NAMES", "LIGHT_BACKGROUND", "MAP_NOTE"]

LIGHT_BACKGROUND = ("this picture has a light background; the digits model was trained on light ink on black: "
                    "switch on Invert.")
MAP_NOTE = ("**Where the bits go**: each pixel's bits (channels averaged), from the same solve as the table; their "
            "mean is the bits/dim. Dark blue is few bits, yellow many; the caption gives the bits at the two ends of "
            "the scale (1st and 99th percentiles). Models of up to {max_exact} values per picture (the 8×8 digits) "
            "split the log-density with the exact divergence, so each pixel's share is exact up to the solver. Larger "
            "models (photo patches) use Hutchinson's per-pixel terms: **noisy but unbiased** (their mean is the "
            "bits/dim; read regions, not single pixels). Untick *bits map* for Hutchinson's divergence without a map, "
            "faster on the digits models.")


CODEC_NAMES = {"png": "PNG", "webp": "WebP", "jxl": "JPEG XL"}


def result_headers() -> list[str]:
    """Columns of the results table (JPEG XL where its Pillow plugin is installed)."""
    codecs = [CODEC_NAMES[c] for c in CODECS if codec_available(c)]
    return ["file", "bits/dim", "± stderr", *codecs, "pixels scored", "model", "NFE", "time (s)"]


def _row(s: ImageScore) -> list:
    lossless = ["—" if v is None else f"{v:.3f}" for v in s.lossless.values()]
    return [s.name, f"{s.bpd:.4f}", "—" if math.isnan(s.stderr) else f"{s.stderr:.4f}", *lossless,
            f"{s.pixels_scored:,}", s.model, s.nfe, f"{s.seconds:.2f}"]


def _note(ctx: DemoContext, scores: list[ImageScore], seed: int) -> str:
    """The settings, the library call per model, the model chosen per file and the transform per file."""
    lines = []
    for model in dict.fromkeys(s.model for s in scores):
        first = next(s for s in scores if s.model == model)
        solver = solver_for(ctx.pipelines(model), ctx.settings)
        lines.append(f"**{model}**: probability-flow ODE with {solver.describe()}; {first.divergence} divergence; seed "
                     f"{seed}, {first.num_repeats} dequantization draw(s) per picture (per patch when tiled). Each "
                     f"file is scored alone by `{first.call}`")
    for s in scores:
        if s.why:
            lines.append(f"**{s.name}** → {s.model} ({s.why}).")
        if s.light_background:
            lines.append(f"⚠ **{s.name}**: {LIGHT_BACKGROUND}")
    lines.append("**Transform to the model's input** (and, for a tiled photo, the pixels scored and the border)")
    lines.append("\n".join(f"* **{s.name}**: {s.transform}" for s in scores))
    if any(v is not None for s in scores for v in s.lossless.values()):
        lines.append("PNG (optimize), WebP lossless and JPEG XL lossless: bits/dim of the same pixels, file headers "
                     "included. The model's bits/dim bounds what a coder built on it needs for them.")
    return "\n\n".join(lines)


def build_likelihood_tab(ctx: DemoContext) -> None:
    """The tab's components and events, inside an open ``gr.Blocks``; API endpoint ``/bits_per_dim``
    (files, model, seed, draws, invert, bits map)."""
    settings = ctx.settings
    headers = result_headers()

    def uploaded(files) -> list[str]:
        if not files:
            raise gr.Error("Upload one or more images first.", print_exception=False)
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]
        if len(paths) > settings.max_files:
            raise gr.Error(f"{len(paths)} files is over the limit of {settings.max_files} per request.",
                           print_exception=False)
        return paths

    @handler(settings.torch_threads)
    def on_likelihood(files, name, seed, repeats, invert=False, bits_map=True, variational=False,
                      progress=gr.Progress()):
        paths = uploaded(files)
        if name != AUTO:
            ctx.pipelines(name)  # an unknown name fails before any work
        seed = int_in(seed, 0, 2**63 - 1, "seed")
        repeats = int_in(repeats, 0, settings.max_repeats, "dequantization draws")
        scores = []
        for i, path in enumerate(paths):
            model, why = choose_model(path, ctx) if name == AUTO else (name, "")
            progress(i / len(paths), desc=f"{Path(path).name}: probability-flow ODE ({model})")
            scores.append(score_file(ctx.pipelines(model), path, seed=seed, num_repeats=repeats, settings=settings,
                                     bits_map=bool(bits_map), invert=bool(invert), model=model, why=why,
                                     dequantization="variational" if variational else "uniform"))
        gallery = [(picture(s), f"{s.name}: {s.bpd:.3f} bits/dim") for s in scores]
        maps = []
        for s in scores:
            if s.bits_map is not None:
                img, lo, hi = bits_map_picture(s)
                maps.append((img, f"{s.name}: {lo:.2f}–{hi:.2f} bits ({s.divergence})"))
        rows = [_row(s) for s in scores]
        return (gallery, rows, _note(ctx, scores, seed), trajectory_figure(scores), maps,
                [s.as_dict() for s in scores])

    auto_info = (f"auto: colour photos → {ctx.photo_default}, grayscale pictures → {ctx.default}"
                 if ctx.photo_default else f"auto: {ctx.default} (no photo model is installed)")
    with gr.Tab("Likelihood"):
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                label=f"images (up to {settings.max_files}, {settings.max_file_size} each)",
                                elem_id="upload")
                model = gr.Dropdown([AUTO, *ctx.names], value=AUTO, label="model", info=auto_info,
                                    elem_id="bpd-model")
                seed = gr.Number(0, precision=0, label="seed", minimum=0)
                repeats = gr.Slider(0, settings.max_repeats, value=0, step=1, label="dequantization draws",
                                    info=f"0: auto, {settings.default_repeats} per picture and 1 per patch of a tiled "
                                         "photo; the standard error is over the draws (over the patches of a photo)")
                invert = gr.Checkbox(False, label="Invert (v → 1 − v)", elem_id="invert",
                                     info="for dark ink on light paper under the digits models")
                bits_map = gr.Checkbox(True, label="bits map", elem_id="bits-map-switch",
                                       info=f"exact divergence up to {AUTO_EXACT_MAX_DIM} values per picture "
                                            "(about 15× slower on the digits models), Hutchinson's terms above")
                variational = gr.Checkbox(False, label="variational dequantization", elem_id="variational",
                                          info="noise from the model's trained dequantizer (vp-mle-digits ships "
                                               "one): a tighter upper bound than uniform noise")
                go = gr.Button("Compute bits/dim", variant="primary", elem_id="bpd-button")
            with gr.Column(scale=2):
                gr.Markdown("**The pixels scored** (the model's input; a photo at its own resolution)")
                # no label: it would lie over the first picture
                gallery = gr.Gallery(label="the pixels scored", show_label=False, columns=3, format="png",
                                     height=300, preview=False, fit_columns=False, object_fit="contain",
                                     interactive=False, elem_id="inputs")
                table = gr.Dataframe(headers=headers, label="bits/dim", interactive=False, elem_id="bpd-table")
                note = gr.Markdown(elem_id="bpd-note")
        with gr.Row():
            with gr.Column():
                maps = gr.Gallery(label="where the bits go", show_label=False, columns=3, format="png", height=300,
                                  preview=False, fit_columns=False, object_fit="contain", interactive=False,
                                  elem_id="bits-map")
                gr.Markdown(MAP_NOTE.format(max_exact=AUTO_EXACT_MAX_DIM))
            trajectory = gr.Plot(label="bits along ODE time", format="png", show_label=False)
        with gr.Accordion("raw results (JSON)", open=False):
            raw = gr.JSON()
        go.click(on_likelihood, [files, model, seed, repeats, invert, bits_map, variational],
                 [gallery, table, note, trajectory, maps, raw], api_name="bits_per_dim")
