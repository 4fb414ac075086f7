"""What both converters share: strict loading of a converted state dict, and the pipeline folder they write."""

from __future__ import annotations

from pathlib import Path

import torch

from ..models.ncsnpp import NCSNpp
from ..pipeline import ScorePipeline
from .card import render_card
from .configs import network_kwargs, pipeline_kwargs, sde_from_config

__all__ = ["WEIGHTS", "load_strict", "build_pipeline", "save_converted"]

#: which weights to convert: the EMA (what the official evaluation uses) or the raw optimiser target
WEIGHTS = ("ema", "raw")


def load_strict(network: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``network`` after checking every key and shape.

    Raises:
        ValueError: one line naming the first missing key, unexpected key or wrong shape, in the network's order.
    """
    own = network.state_dict()
    for key, ref in own.items():
        if key not in state:
            raise ValueError(f"{what} lacks {key} (shape {tuple(ref.shape)}) that the config's network has: the "
                             "config does not match the weights.")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ValueError(f"{what}: {key} has shape {tuple(state[key].shape)}, the config's network wants "
                             f"{tuple(ref.shape)}: the config does not match the weights.")
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(f"{what} has {extra[0]} (and {len(extra) - 1} more) that the config's network lacks: the "
                         "config does not match the weights.")
    network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def build_pipeline(cfg: dict, source: str, to_state, provenance: dict) -> ScorePipeline:
    """Build the network of ``cfg``, fill it with ``to_state(network)`` and wrap it in a pipeline.

    Args:
        cfg: the official config (nested dicts).
        source: ``"score_sde"`` or ``"score_flow"`` (decides details of the Fourier embedding).
        to_state: ``network -> (state dict, description)`` of the checkpoint's tensors in the network's names.
        provenance: kept in ``pipeline_config.json`` under ``"converted_from"``.
    """
    network = NCSNpp(**network_kwargs(cfg, source))
    state, what = to_state(network)
    load_strict(network, state, what)
    dataset = str(cfg.get("data", {}).get("dataset", ""))
    extra = {"dataset": {"CIFAR10": "cifar10", "ImageNet": "imagenet32-oord"}.get(dataset, dataset.lower()),
             "converted_from": provenance, "official_config": cfg}
    return ScorePipeline(network.eval(), sde_from_config(cfg), extra_config=extra, **pipeline_kwargs(cfg))


def save_converted(pipe: ScorePipeline, output: str | Path, name: str | None, command: str | None) -> None:
    """Write the pipeline folder and its model card (README.md)."""
    pipe.save_pretrained(output)
    Path(output, "README.md").write_text(render_card(pipe, name=name or Path(output).name, command=command))
