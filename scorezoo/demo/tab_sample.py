"""The Sample tab: ``pipe(batch_size, sampler=..., num_inference_steps=..., generator=seed)`` as an image grid; for a
2-D model, the samples next to a heatmap of the exact density ``exp log p_eps(x)`` on a grid."""

from __future__ import annotations

import functools
import time

import gradio as gr
import numpy as np
import torch

from ..sampling import SAMPLERS
from .compute import DemoContext, density_grid, solver_for
from .figures import density_figure, sample_grid
from .ui import handler, int_in

__all__ = ["build_sample_tab"]


def build_sample_tab(ctx: DemoContext, demo: gr.Blocks) -> None:
    """The tab's components and events, inside an open ``gr.Blocks`` (``demo``, whose page load shows the
    output that fits the default model); API endpoint ``/sample``."""
    settings = ctx.settings

    @functools.lru_cache(maxsize=4)
    def cached_density(name: str):
        pipe = ctx.pipelines(name)
        return density_grid(pipe, settings.density_grid, solver_for(pipe, settings))

    def is_image_model(name: str) -> bool:
        return name in ctx.names and len(ctx.pipelines(name).data_shape) == 3

    @handler(settings.torch_threads)
    def on_sample(name, sampler, steps, seed, batch, progress=gr.Progress(track_tqdm=True)):
        pipe = ctx.pipelines(name)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}.")
        steps = int_in(steps, 0, settings.max_steps, "steps")
        is_image = len(pipe.data_shape) == 3
        batch = int_in(batch, 1, settings.max_batch if is_image else settings.max_points, "batch size")
        seed = int_in(seed, 0, 2**63 - 1, "seed")
        progress(0, desc=f"sampling {batch} with {sampler}")
        start = time.perf_counter()
        out = pipe(batch, sampler=sampler, num_inference_steps=steps or None,
                   generator=torch.Generator().manual_seed(seed), output_type="np" if is_image else "pt")
        info = f"{batch} samples from {name}, {sampler} sampler, {out.nfe} score evaluations, " \
               f"{time.perf_counter() - start:.1f} s"
        if is_image:
            return sample_grid(np.rint(out.images * 255).astype(np.uint8)), None, info
        progress(0.5, desc="exact density on a grid (PF-ODE)")
        xs, ys, logp = cached_density(name)
        return None, density_figure(xs, ys, logp, out.samples.double().cpu().numpy()), info

    @handler(settings.torch_threads)
    def on_model(name):
        # an image model fills the grid, a 2-D model the density plot: show the one it fills, with its batch range
        image = is_image_model(name)
        batch = (gr.update(maximum=settings.max_batch, value=min(16, settings.max_batch)) if image else
                 gr.update(maximum=settings.max_points, value=min(512, settings.max_points)))
        return gr.update(visible=image), gr.update(visible=not image), batch

    with gr.Tab("Sample"):
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown(ctx.names, value=ctx.default, label="model")
                sampler = gr.Dropdown(sorted(SAMPLERS), value="ode", label="sampler")
                steps = gr.Slider(0, settings.max_steps, value=0, step=1, label="steps", elem_id="steps",
                                  info="0: adaptive for ode, 1000 for em and pc")
                seed = gr.Number(0, precision=0, label="seed", minimum=0)
                # the widest range, so that API calls for either kind pass; the page narrows it per model
                batch = gr.Slider(1, max(settings.max_batch, settings.max_points), value=16, step=1, label="batch")
                go = gr.Button("Sample", variant="primary")
            with gr.Column(scale=2):
                image = is_image_model(ctx.default)
                grid = gr.Image(label="samples", type="pil", format="png", interactive=False, height=480,
                                visible=image)
                plot = gr.Plot(label="density and samples", format="png", show_label=False, visible=not image)
                info = gr.Markdown()
        # one progress bar, over the picture (every output would show its own)
        go.click(on_sample, [model, sampler, steps, seed, batch], [grid, plot, info], api_name="sample",
                 show_progress_on=[grid, plot])
        model.change(on_model, model, [grid, plot, batch], api_visibility="private")
    demo.load(on_model, model, [grid, plot, batch], api_visibility="private")
