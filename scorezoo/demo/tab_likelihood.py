"""The Likelihood tab: bits/dim of uploaded pictures, one library call per file (:func:`~.compute.score_file`).

For each file: the pixels scored (a digit as the model sees it; a photo at its own resolution, tile by tile, under a
model of photo patches), next to the model's bits/dim what PNG, WebP and JPEG XL need losslessly for the same pixels,
the same in plain words (:func:`plain_words`), where the bits go (the per-pixel bits map of the same solve, with a
colour bar in bits per pixel) and the bits accumulated along ODE time. One progress bar, over the results table,
follows the library's own over its ODE solves (and the files, when there are several).
"""

from __future__ import annotations

import math

import gradio as gr

from ..compression import CODECS, codec_available
from ..pipeline import DEQUANTIZER_FOLDER
from ..scoring import AUTO_EXACT_MAX_DIM
from .compute import AUTO, DemoContext, ImageScore, choose_model, score_file, solver_for
from .figures import bits_map_picture, picture, trajectory_figure
from .models import ModelEntry
from .ui import handler, int_in

__all__ = ["build_likelihood_tab", "result_headers", "plain_words", "CODEC_NAMES", "LIGHT_BACKGROUND", "MAP_NOTE",
           "FEWER_IS_BETTER"]

LIGHT_BACKGROUND = ("this picture has a light background; the digits model was trained on light ink on black: "
                    "switch on Invert.")
MAP_NOTE = ("**Where the bits go**: each pixel's bits (channels averaged), from the same solve as the table; their "
            "mean is the bits/dim. Dark blue is few bits, yellow many; the colour bar gives the bits per pixel, its "
            "ends at the 1st and 99th percentiles (the arrows stand for the pixels beyond). Models of up to "
            "{max_exact} values per picture (the 8×8 digits) split the log-density with the exact divergence, so "
            "each pixel's share is exact up to the solver. Larger models (photo patches) use Hutchinson's per-pixel "
            "terms: **noisy but unbiased** (their mean is the bits/dim; read regions, not single pixels). Untick "
            "*bits map* for Hutchinson's divergence without a map, faster on the digits models.")


CODEC_NAMES = {"png": "PNG", "webp": "WebP", "jxl": "JPEG XL"}
#: the results table's columns, each with its share of the table's width (over the columns shown): all of them fit
#: the results column of a 1400-pixel page, headers and numbers unbroken
RESULT_COLUMNS = {"file": 15, "bits/dim": 10, "± stderr": 9, **{CODEC_NAMES[c]: 7 for c in CODECS},
                  "pixels scored": 10, "model": 17, "NFE": 6, "time (s)": 7}
FEWER_IS_BETTER = ("Bits/dim is how many bits the model needs, on average, for each value of the picture (each "
                   "pixel's gray level, or each of its red, green and blue values): **fewer bits/dim means the "
                   "model predicts the picture better.**")


def result_headers() -> list[str]:
    """Columns of the results table (JPEG XL where its Pillow plugin is installed)."""
    missing = {CODEC_NAMES[c] for c in CODECS if not codec_available(c)}
    return [h for h in RESULT_COLUMNS if h not in missing]


def _row(s: ImageScore) -> list:
    lossless = ["—" if v is None else f"{v:.3f}" for v in s.lossless.values()]
    return [s.name, f"{s.bpd:.4f}", "—" if math.isnan(s.stderr) else f"{s.stderr:.4f}", *lossless,
            f"{s.pixels_scored:,}", s.model, s.nfe, f"{s.seconds:.2f}"]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def plain_words(s: ImageScore) -> str:
    """One sentence on ``s`` in plain words: its bits/dim against the lossless coders' for the same pixels (against
    storing each value as it is, ``log2 K`` bits, where no coder applies), and what that means for the space the
    model would store the picture in. Within two standard errors of a coder the two are "about the same"."""
    refs = [(f"{CODEC_NAMES[c]}'s {v:.3f}", v, CODEC_NAMES[c]) for c, v in s.lossless.items() if v is not None]
    if not refs:
        raw = math.log2(s.num_levels)
        refs = [(f"the {raw:.3f} of storing each value as it is (one of {s.num_levels} levels)", raw,
                 "storing the values as they are")]
    margin = 0.0 if math.isnan(s.stderr) else 2 * s.stderr
    fewer = [r for r in refs if s.bpd < r[1] - margin]
    same = [r for r in refs if abs(s.bpd - r[1]) <= margin]
    more = [r for r in refs if s.bpd > r[1] + margin]
    clauses = []
    if fewer:
        clauses.append(f"fewer than {_join([r[0] for r in fewer])}: the model would store this picture in less "
                       "space")
    if same:
        clauses.append(f"about the same as {_join([r[0] for r in same])} (within two standard errors)")
    if more:
        clauses.append(f"more than {_join([r[0] for r in more])}: {_join([r[2] for r in more])} would take less "
                       "space than the model")
    sample = (f" (an estimate from a random sample of {s.num_patches:,} of its {s.total_patches:,} tiles, ± "
              f"{s.stderr:.3f})" if s.estimate else "")
    return f"**{s.name}**: {s.bpd:.3f} bits/dim{sample} is " + "; it is ".join(clauses) + "."


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


def _has_dequantizer(model: ModelEntry) -> bool:
    """Whether ``model`` carries a trained dequantizer (a ``dequantizer/`` folder next to the network)."""
    try:
        return (model.folder() / DEQUANTIZER_FOLDER).is_dir()
    except FileNotFoundError:  # gone from the HF cache since it was listed: a request for it says so
        return False


def _with_dequantizer(ctx: DemoContext) -> str:
    """Which served models carry a trained dequantizer, in words."""
    names = [n for n in ctx.names if _has_dequantizer(ctx.model(n))]
    if not names:
        return "none of the served models has one"
    return f"{_join(names)} {'ships' if len(names) == 1 else 'ship'} one"


def build_likelihood_tab(ctx: DemoContext) -> None:
    """The tab's components and events, inside an open ``gr.Blocks``; API endpoint ``/bits_per_dim`` (files, model,
    seed, draws, invert, bits map, variational) returning the pictures scored, the table, the notes, the plot, the bits
    maps, the raw results and the summary in plain words."""
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

    # track_tqdm: the page's bar follows the library's own bar over its ODE solves (a tiled photo takes one solve
    # per settings.max_patch_batch patches), under a bar over the files when there are several (counted by hand:
    # progress.tqdm(paths) would count each file done as it starts)
    @handler(settings.torch_threads)
    def on_likelihood(files, name, seed, repeats, invert=False, bits_map=True, variational=False,
                      progress=gr.Progress(track_tqdm=True)):
        paths = uploaded(files)
        if name != AUTO:
            ctx.pipelines(name)  # an unknown name fails before any work
        seed = int_in(seed, 0, 2**63 - 1, "seed")
        repeats = int_in(repeats, 0, settings.max_repeats, "dequantization draws")
        scores = []
        several = len(paths) > 1
        if several:
            progress.tqdm(None, desc="files", total=len(paths), unit="file")
        for path in paths:
            model, why = choose_model(path, ctx) if name == AUTO else (name, "")
            scores.append(score_file(ctx.pipelines(model), path, seed=seed, num_repeats=repeats, settings=settings,
                                     bits_map=bool(bits_map), invert=bool(invert), model=model, why=why,
                                     dequantization="variational" if variational else "uniform"))
            if several:
                progress.update()
        gallery = [(picture(s), f"{s.name}: {s.bpd:.3f} bits/dim") for s in scores]
        maps = [(bits_map_picture(s), f"{s.name}: {s.divergence} divergence") for s in scores
                if s.bits_map is not None]
        rows = [_row(s) for s in scores]
        summary = "\n\n".join([FEWER_IS_BETTER, *(plain_words(s) for s in scores)])
        return (gallery, rows, _note(ctx, scores, seed), trajectory_figure(scores), maps,
                [s.as_dict() for s in scores], summary)

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
                                          info="noise from the model's trained dequantizer: a tighter upper bound "
                                               f"than uniform noise ({_with_dequantizer(ctx)})")
                go = gr.Button("Compute bits/dim", variant="primary", elem_id="bpd-button")
            with gr.Column(scale=2):
                gr.Markdown("**The pixels scored** (the model's input; a photo at its own resolution)")
                # no label: it would lie over the first picture
                gallery = gr.Gallery(label="the pixels scored", show_label=False, columns=3, format="png",
                                     height=300, preview=False, fit_columns=False, object_fit="contain",
                                     interactive=False, elem_id="inputs")
                summary = gr.Markdown(elem_id="bpd-summary")
                total = sum(RESULT_COLUMNS[h] for h in headers)
                table = gr.Dataframe(headers=headers, label="bits/dim (fewer is better)", interactive=False,
                                     elem_id="bpd-table", wrap=True,
                                     column_widths=[f"{100 * RESULT_COLUMNS[h] / total:.1f}%" for h in headers])
                note = gr.Markdown(elem_id="bpd-note")
        with gr.Row():
            with gr.Column():
                # one map a row at the column's width, as tall as the maps together (no scroll box of its own)
                maps = gr.Gallery(label="where the bits go", show_label=False, columns=1, height="fit-content",
                                  format="png", preview=False, object_fit="contain", interactive=False,
                                  elem_id="bits-map")
                gr.Markdown(MAP_NOTE.format(max_exact=AUTO_EXACT_MAX_DIM))
            trajectory = gr.Plot(label="bits along ODE time", format="png", show_label=False)
        with gr.Accordion("raw results (JSON)", open=False):
            raw = gr.JSON()
        # one progress bar, over the results table (every output would show its own)
        go.click(on_likelihood, [files, model, seed, repeats, invert, bits_map, variational],
                 [gallery, table, note, trajectory, maps, raw, summary], api_name="bits_per_dim",
                 show_progress_on=table)
