"""The ``dequantizer`` task: a variational dequantizer ``q(u | k)`` for a frozen pretrained score model.

    python -m scorezoo.training --task dequantizer --pretrained vp-mle-digits --output_dir runs/deq-vp-mle-digits
    python -m scorezoo.training --config train/configs/deq-vp-mle-digits.yaml --max_train_steps 100

The objective is the variational bound of Flow++ (Ho et al. 2019, eq. 11) with the score model's likelihood bound
(Song, Durkan, Murray & Ermon 2021, Thm. 3) in place of ``-log p``
(:func:`scorezoo.dequantization.training.dequantization_loss`), as score_flow trains its dequantizer. The held-out
checks compare uniform and variational dequantization, paired
(:func:`scorezoo.dequantization.training.compare_dequantizations`). A finished run holds ``dequantizer/`` (the EMA
weights), ``pipeline/`` (the frozen model with them) and ``results.json``, which ``train/make_zoo.py`` and
``train/make_photo_zoo.py`` read from ``runs/deq-<name>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..datasets import TrainingData, load_dataset
from ..dequantization.training import compare_dequantizations, dequantization_loss
from ..dequantization.variational import VariationalDequantizer
from ..pipeline import ScorePipeline
from .config import ConfigError
from .batches import TrainState
from .export import write_results

__all__ = ["DequantizerTask", "DequantizationObjective", "load_frozen"]


class DequantizationObjective(nn.Module):
    """The dequantizer and its loss as one module, so that accelerate's DDP wrapper sees the whole forward pass; the
    frozen pipeline is held outside the module tree (it is not trained, saved or synchronised).

    ``forward(levels (B, *S), generator) -> (B,)`` bits/dim
    (:func:`~scorezoo.dequantization.training.dequantization_loss`).
    """

    def __init__(self, network: VariationalDequantizer, pipe: ScorePipeline, num_time_points: int):
        super().__init__()
        self.network = network
        self._pipe = (pipe,)
        self.num_time_points = num_time_points

    def forward(self, levels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return dequantization_loss(self.network, self._pipe[0], levels, generator=generator,
                                   num_time_points=self.num_time_points)


def load_frozen(cfg: dict) -> tuple[ScorePipeline, TrainingData]:
    """The frozen pipeline ``cfg["pretrained"]`` (weights not requiring grad, any dequantizer it came with dropped)
    and its training data (``dataset`` or the one its config names), checked against each other.

    Raises:
        ConfigError: a model that cannot be loaded or models continuous data; data it does not take.
    """
    try:
        pipe = ScorePipeline.from_pretrained(cfg["pretrained"])
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"pretrained {cfg['pretrained']!r}: {e}") from None
    if pipe.num_levels is None:
        raise ConfigError(f"{cfg['pretrained']} models continuous data: there is nothing to dequantize.")
    name = cfg["dataset"] or pipe.extra_config.get("dataset")
    if not name:
        raise ConfigError(f"{cfg['pretrained']} does not say which data set it was trained on: give --dataset.")
    try:
        data = load_dataset(name, data_dir=cfg["data_dir"], data_shape=pipe.data_shape, num_levels=pipe.num_levels,
                            options=cfg["dataset_options"] or None)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"dataset {name!r}: {e}") from None
    if (tuple(data.data_shape), data.num_levels, tuple(data.data_range)) != \
            (pipe.data_shape, pipe.num_levels, pipe.data_range):
        raise ConfigError(f"the {name} data are {tuple(data.data_shape)} with {data.num_levels} levels in "
                          f"{data.data_range}; {cfg['pretrained']} takes {pipe.data_shape} with {pipe.num_levels} "
                          f"levels in {pipe.data_range}.")
    for p in pipe.model.parameters():
        p.requires_grad_(False)
    pipe.dequantizer = None  # a dequantizer shipped with the model is replaced, not trained further
    return pipe, data


class DequantizerTask:
    """Train a :class:`~scorezoo.dequantization.variational.VariationalDequantizer` for the frozen model
    ``cfg["pretrained"]``; export ``dequantizer/`` and ``pipeline/``. A :class:`~scorezoo.training.task.TrainingTask`.

    Raises:
        ConfigError: see :func:`load_frozen`.
    """

    loss_key = "loss_bpd"
    outputs = ("dequantizer", "pipeline")

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.pipe, self.data = load_frozen(cfg)
        self.title = f"a dequantizer for {cfg['pretrained']}"

    def build(self) -> DequantizationObjective:
        """:class:`DequantizationObjective` of a new dequantizer of the config's size (uniform dequantization at
        the start: its last layers are zero)."""
        c = self.cfg
        q = VariationalDequantizer(data_shape=self.pipe.data_shape, num_levels=self.pipe.num_levels,
                                   hidden_channels=c["hidden_channels"], num_couplings=c["num_couplings"],
                                   num_blocks=c["num_blocks"], num_components=c["num_components"])
        return DequantizationObjective(q, self.pipe, c["num_time_points"])

    def to(self, device: torch.device) -> None:
        """Move the frozen pipeline to ``device``."""
        self.pipe.to(device)

    def micro_batches(self, state: TrainState, step: int, parts: list[int], num_parts: int) -> list[tuple]:
        """``(levels, generator)`` of each part. ``u``, the bound's times and noises are drawn inside the loss, so
        each part draws from its own generator, seeded from the step's: a part's noise is a function of (seed,
        step, part), and a run on one process with one micro-batch draws from the step's generator itself."""
        g = state.step_generator(step)
        levels = self.data.train[state.batch_indices(step)]
        size = len(levels) // num_parts
        if num_parts == 1:
            return [(levels, g)]
        base = int(torch.randint(2**62, (1,), generator=g))
        return [(levels[j * size:(j + 1) * size], torch.Generator().manual_seed(base + j)) for j in parts]

    def _compare(self, network: nn.Module, levels: torch.Tensor, estimator: str, num_repeats: int, **kwargs) -> dict:
        self.pipe.dequantizer = network
        try:
            return compare_dequantizations(self.pipe, levels, estimator=estimator, num_repeats=num_repeats,
                                           seed=self.cfg["eval_seed"], max_batch_size=self.cfg["eval_batch_size"],
                                           **kwargs)
        finally:
            self.pipe.dequantizer = None

    def periodic_evaluation(self, network: nn.Module) -> tuple[dict, str]:
        """The bound of ``eval_num_samples`` held-out images, uniform vs variational, paired, one draw each."""
        res = self._compare(network, self.data.eval_subset(self.cfg["eval_num_samples"]), "bound", 1,
                            num_time_points=self.cfg["bound_num_time_points"])
        line = (f"held-out bound, uniform {res['uniform']:.4f}, variational {res['variational']:.4f}, gain "
                f"{res['gain']:.4f} ± {res['gain_stderr']:.4f} bits/dim")
        return {k: v for k, v in res.items() if not k.startswith("per_image")}, line

    def finish(self, network: nn.Module, results: dict, output_dir: Path,
               log: Callable[[dict], None]) -> dict:
        """Write ``dequantizer/`` and ``pipeline/``, then compare uniform and variational dequantization on
        ``final_eval_num_samples`` held-out images, paired, by each of ``final_eval_estimators``
        (``final_eval_num_repeats`` draws), and write ``results.json`` (``eval``: one entry per estimator)."""
        cfg = self.cfg
        network.save_pretrained(str(output_dir / "dequantizer"), safe_serialization=True)
        self.pipe.dequantizer = network
        self.pipe.extra_config["dequantizer_training_command"] = results["command"]
        self.pipe.save_pretrained(output_dir / "pipeline")
        self.pipe.dequantizer = None
        results = {"pretrained": str(cfg["pretrained"]), "num_time_points": cfg["num_time_points"], **results,
                   "eval": {}}
        levels = self.data.eval_subset(cfg["final_eval_num_samples"])
        ode = {"schedule": "calibrated"} if cfg["ode_schedule"] else {"rtol": cfg["ode_rtol"], "atol": cfg["ode_atol"]}
        for est in cfg["final_eval_estimators"] if cfg["final_eval"] else []:
            kw = {"num_time_points": cfg["bound_num_time_points"]} if est == "bound" else ode
            res = self._compare(network, levels, est, cfg["final_eval_num_repeats"], **kw)
            results["eval"][est] = {**res, "settings": kw}
            log({"step": results["trained_steps"], "final_eval": est,
                 **{k: v for k, v in res.items() if not k.startswith("per_")}})
            print(f"held-out {est}: uniform {res['uniform']:.4f} ± {res['uniform_stderr']:.4f}, variational "
                  f"{res['variational']:.4f} ± {res['variational_stderr']:.4f}, gain {res['gain']:.4f} ± "
                  f"{res['gain_stderr']:.4f} bits/dim ({res['num_images']} images)", flush=True)
        write_results(output_dir, results)
        return results
