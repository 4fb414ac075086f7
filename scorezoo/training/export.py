"""From trained weights to a zoo model: the pipeline folder, its model card, its likelihood schedule, the Hub.

A run ends with :func:`export_run`: ``results.json``, ``pipeline/`` (``ScorePipeline.save_pretrained``: the
network in diffusers' layout, the SDE and the data's levels) and ``pipeline/README.md`` (:func:`render_card`).
``train/make_zoo.py`` later re-saves finished runs into ``scorezoo/bundled/`` with a step schedule calibrated by
:func:`calibrate` for fast likelihoods.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..datasets import TrainingData, load_dataset
from ..dequantization import uniform_dequantize
from ..pipeline import ScorePipeline
from ..sde import get_sde
from .cards import render_card

__all__ = ["make_pipeline", "export_run", "write_results", "calibration_points", "calibrate", "NUM_CALIBRATION_POINTS"]

#: training points the likelihood schedule of a zoo model is calibrated on
NUM_CALIBRATION_POINTS = 64


def make_pipeline(net: torch.nn.Module, cfg: dict, data: TrainingData, extra: dict | None = None) -> ScorePipeline:
    """The :class:`ScorePipeline` of network ``net`` trained with ``cfg`` on ``data`` (SDE, eps, levels, range).

    ``extra`` goes into the pipeline's ``extra_config`` (dataset, weighting, training command...).
    """
    return ScorePipeline(net, get_sde(cfg["sde"]), data_shape=data.data_shape, eps=float(cfg["eps"]),
                         num_levels=data.num_levels, data_range=data.data_range,
                         parameterization=cfg["parameterization"], extra_config=extra)


def write_results(output_dir: str | Path, results: dict) -> None:
    """Write ``results`` as ``output_dir/results.json`` (what the zoo scripts read of a finished run)."""
    (Path(output_dir) / "results.json").write_text(json.dumps(results, indent=1) + "\n")


def export_run(pipe: ScorePipeline, results: dict, cfg: dict, output_dir: str | Path) -> str:
    """Write ``results.json``, the pipeline folder ``pipeline/`` and its card ``pipeline/README.md`` into
    ``output_dir``; push to the Hub when ``cfg["push_to_hub"]`` (repository ``hub_model_id`` or
    ``scorezoo/<name>``).

    Returns:
        The card's text.
    """
    output_dir = Path(output_dir)
    write_results(output_dir, results)
    export = output_dir / "pipeline"
    pipe.save_pretrained(export)
    card = render_card(results, cfg)
    (export / "README.md").write_text(card)
    if cfg["push_to_hub"]:
        repo_id = cfg["hub_model_id"] or f"scorezoo/{cfg['name']}"
        url = pipe.push_to_hub(repo_id, private=cfg["hub_private"], card=card)
        print(f"pushed to {url}")
    return card


def calibration_points(pipe: ScorePipeline) -> torch.Tensor:
    """``(64, *S)`` training points of the pipeline's data set (``extra_config["dataset"]`` with its
    ``dataset_options``) in its data space: 64 of the training split drawn with seed 1 (patches of photos come in
    raster order, so the first 64 would all be one corner of one photo), dequantized with seed 1 for integer data.
    The bundled digits schedules were calibrated on the first 64 digits."""
    data = load_dataset(str(pipe.extra_config["dataset"]), options=pipe.extra_config.get("dataset_options"))
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(1))[:NUM_CALIBRATION_POINTS]
    train = data.train[pick]
    if data.num_levels is None:
        return train.to(pipe.dtype)
    return uniform_dequantize(train, num_levels=data.num_levels, data_range=data.data_range,
                              generator=torch.Generator().manual_seed(1), dtype=pipe.dtype)


def calibrate(pipe: ScorePipeline, target: float, **kwargs) -> dict:
    """Calibrate ``pipe``'s fast-likelihood step schedule in place on :func:`calibration_points`, Hutchinson probes
    of seed 0 (:meth:`ScorePipeline.calibrate_likelihood_schedule`).

    Args:
        target: the schedule's error budget in bits/dim (the zoo uses 0.002 for images and 0.005 for the 2-D toys,
            whose sharp edges would need more than 64 steps for 0.002).
        kwargs: more options of :func:`scorezoo.likelihood.calibrate_schedule` (``method``, ``criterion``,
            ``max_steps``, ``optimizer_evals``).

    Returns:
        A summary: ``{"method", "steps", "nfe", "estimated_error_bpd", "measured_mean_error_bpd",
        "measured_rms_error_bpd", "seconds"}`` (an error is ``None`` where it was not computed).
    """
    t0 = time.perf_counter()
    sch = pipe.calibrate_likelihood_schedule(calibration_points(pipe), target=target,
                                             generator=torch.Generator().manual_seed(0), **kwargs)
    r5 = lambda v: None if v is None else round(v, 5)  # noqa: E731
    return {"method": sch.method, "steps": sch.num_steps, "nfe": sch.nfe,
            "estimated_error_bpd": r5(sch.estimated_error),
            "measured_mean_error_bpd": r5(sch.measured_mean_error),
            "measured_rms_error_bpd": r5(sch.measured_rms_error),
            "seconds": round(time.perf_counter() - t0, 1)}
