"""The ``score`` task: a score model trained by denoising score matching with the MLE paper's weightings.

The loss is :func:`scorezoo.losses.dsm_loss` (Song, Durkan, Murray & Ermon 2021, eq. 7; weighting ``score``,
``likelihood`` or ``likelihood-is``); the network comes from the config (:mod:`scorezoo.training.network`), the data
from :mod:`scorezoo.training.batches`. The EMA weights are scored on the held-out split
(:func:`~scorezoo.training.evaluation.held_out_likelihood`) and exported as a :class:`~scorezoo.pipeline.ScorePipeline`
with a model card (``pipeline/``, :func:`~scorezoo.training.export.export_run`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..losses import dsm_loss, sample_time
from ..models import ScoreModel
from ..pipeline import ScorePipeline
from ..sde import get_sde
from .batches import TrainState, load_data, make_batch
from .evaluation import estimate_eval_seconds, format_evaluation, held_out_likelihood
from .export import export_run, make_pipeline
from .network import build_and_check_network, size_multiple

__all__ = ["ScoreTask", "DSMObjective"]


class DSMObjective(torch.nn.Module):
    """The per-sample loss as a module, so that accelerate's DDP wrapper sees the whole forward pass.

    ``forward(x0 (B, *S), t (B,), z (B, *S)) -> (B,)`` nats per sample (:func:`scorezoo.losses.dsm_loss`).
    """

    def __init__(self, model: ScoreModel, weighting: str, eps: float):
        super().__init__()
        self.model, self.weighting, self.eps = model, weighting, eps

    @property
    def network(self) -> torch.nn.Module:
        """The score network, what is trained."""
        return self.model.network

    def forward(self, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return dsm_loss(self.model, x0, weighting=self.weighting, eps=self.eps, t=t, z=z)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class ScoreTask:
    """Train the score network of ``cfg["network"]`` on ``cfg["dataset"]``; export ``pipeline/`` with its card. A
    :class:`~scorezoo.training.task.TrainingTask`.

    Raises:
        ConfigError: unknown, missing or unreadable data (:func:`~scorezoo.training.batches.load_data`).
    """

    loss_key = "loss"
    outputs = ("pipeline",)

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.data = load_data(cfg)
        self.sde = get_sde(cfg["sde"])
        self.title = cfg["name"] or "a model"

    def build(self) -> DSMObjective:
        """:class:`DSMObjective` of the config's network, checked against the data (and ``init_from``'s weights).

        Raises:
            ConfigError: a network that cannot take the data
                (:func:`~scorezoo.training.network.build_and_check_network`).
        """
        net = build_and_check_network(self.cfg, self.data)
        return DSMObjective(ScoreModel(net, self.sde, self.cfg["parameterization"]), self.cfg["weighting"],
                            float(self.cfg["eps"]))

    def to(self, device: torch.device) -> None:
        """Nothing is frozen."""

    def micro_batches(self, state: TrainState, step: int, parts: list[int], num_parts: int) -> list[tuple]:
        """``(x0, t, z)`` of each part: the whole global batch's data, times and noises are drawn from the step's
        generator, then sliced, so they do not depend on how many processes share it."""
        x, g = make_batch(self.data, state, step, self.cfg["dequantize"], self.cfg["random_flip"])
        t, _ = sample_time(self.sde, len(x), weighting=self.cfg["weighting"], eps=float(self.cfg["eps"]),
                           generator=g)
        z = torch.randn(x.shape, generator=g)
        size = len(x) // num_parts
        return [tuple(v[j * size:(j + 1) * size] for v in (x, t, z)) for j in parts]

    def pipeline(self, network: torch.nn.Module, extra: dict | None = None) -> ScorePipeline:
        """The :class:`ScorePipeline` of ``network`` (:func:`~scorezoo.training.export.make_pipeline`)."""
        return make_pipeline(network, self.cfg, self.data, extra)

    def periodic_evaluation(self, network: torch.nn.Module) -> tuple[dict, str]:
        """ODE and bound of ``eval_num_samples`` held-out items (:func:`held_out_likelihood`)."""
        res = held_out_likelihood(self.pipeline(network), self.cfg, self.data, self.cfg["eval_num_samples"])
        return ({k: res[k] for k in ("ode", "ode_stderr", "bound", "bound_stderr", "unit", "num_eval")},
                format_evaluation(res))

    def finish(self, network: torch.nn.Module, results: dict, output_dir: Path,
               log: Callable[[dict], None]) -> dict:
        """Score the held-out split (``final_eval``: ODE and bound, ``final_eval_num_repeats`` draws, announced with
        a rough duration) and write ``results.json``, ``pipeline/`` and its card (:func:`export_run`)."""
        cfg, data = self.cfg, self.data
        extra = {"dataset": data.name, "weighting": cfg["weighting"], "training_command": results["command"],
                 "training_steps": results["trained_steps"], "batch_size": cfg["batch_size"], "seed": cfg["seed"]}
        if cfg["name"]:
            extra = {"name": cfg["name"], **extra}
        if cfg["dataset_options"]:
            extra["dataset_options"] = cfg["dataset_options"]
        if data.name in ("photo_patches", "photo_folder"):
            # a model of patches scores a larger photo tile by tile at its own resolution, not resized
            extra["tile_larger_images"] = True
            if cfg["max_tile_size"]:
                extra.update(max_tile_size=int(cfg["max_tile_size"]), size_multiple=size_multiple(network))
        pipe = self.pipeline(network, extra)
        results = {"name": cfg["name"], "sde": self.sde.name, "weighting": cfg["weighting"], **results,
                   "data_shape": list(data.data_shape), "num_levels": data.num_levels}
        if cfg["final_eval"]:
            n = len(data.eval_subset(cfg["final_eval_num_samples"]))
            r = cfg["final_eval_num_repeats"] if data.num_levels else 1
            what = (f"ODE and bound {'bits/dim' if data.num_levels else 'NLL'} of "
                    + (f"all {n}" if cfg["final_eval_num_samples"] is None else f"{n}") + " held-out items"
                    + (f" x {r} dequantization draw(s)" if data.num_levels else ""))
            guess = estimate_eval_seconds(pipe, cfg, n, r)
            print(f"final evaluation: {what} with the EMA weights, roughly {_duration(guess)} here "
                  "(final_eval: false skips it)", flush=True)
            t_eval = time.time()
            res = held_out_likelihood(pipe, cfg, data, cfg["final_eval_num_samples"],
                                      num_repeats=cfg["final_eval_num_repeats"])
            results["eval"] = res
            log({"step": results["trained_steps"],
                 "final_eval": {k: v for k, v in res.items() if not k.startswith("per_item")}})
            print(f"final {format_evaluation(res)}; took {_duration(time.time() - t_eval)}", flush=True)
        export_run(pipe, results, cfg, output_dir)
        return results
