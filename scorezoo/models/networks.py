"""Score networks on disk: diffusers' format, a fixed list of classes, safetensors only.

The networks: diffusers' :class:`~diffusers.UNet2DModel` for images; :class:`~scorezoo.models.ncsnpp.NCSNpp`, the
official NCSN++/DDPM++ of Song et al. (images; its label is ``999 t`` or sigma_t, see
:class:`~scorezoo.models.ScoreModel`'s ``time_label``); :class:`~scorezoo.models.mlp.ScoreMLP` for flat data.

Every network is a diffusers ``ModelMixin`` + ``ConfigMixin`` (its constructor arguments are its config) and is
saved by diffusers' own ``save_pretrained`` as ``config.json`` + ``diffusion_pytorch_model.safetensors``, so that
``UNet2DModel.from_pretrained(<pipeline folder or Hub repo>, subfolder="network")`` works in plain diffusers.
Folders of scorezoo 0.1, whose weights are ``model.safetensors``, still load.

Loading is strict: a missing, unexpected or mis-shaped tensor is an error. Only the classes of :data:`NETWORKS` can
be built from a config, and only safetensors are read: nothing from the Hub is ever executed. diffusers is imported
when a network is first built, so that ``import scorezoo`` stays fast.

Every network is called as ``net(x, t_label)`` through :func:`network_forward`, where ``t_label`` is the
network's time input (``time_scale * t`` for the zoo's networks, as in Song et al.'s code).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from torch import nn

__all__ = ["NETWORKS", "get_network_class", "network_forward", "network_config", "save_network", "build_network",
           "load_network", "CONFIG_NAME", "WEIGHTS_NAME", "LEGACY_WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
#: diffusers' name for a model's weights
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
#: the weights' name in folders written by scorezoo 0.1
LEGACY_WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl"}

#: the network classes a config may name (``"_class_name"``), as ``(module, attribute)``, imported on first use
NETWORKS: dict[str, tuple[str, str]] = {
    "UNet2DModel": ("diffusers", "UNet2DModel"),
    "ScoreMLP": ("scorezoo.models.mlp", "ScoreMLP"),
    "NCSNpp": ("scorezoo.models.ncsnpp", "NCSNpp"),
}


def get_network_class(name: str, *, registry: dict[str, tuple[str, str]] = NETWORKS, kind: str = "network") -> type:
    """The class of ``registry`` (default :data:`NETWORKS`) called ``name``; ``kind`` names what the registry holds
    in the error (e.g. ``"dequantizer"`` for :data:`scorezoo.dequantization.variational.DEQUANTIZERS`).

    Raises:
        ValueError: a name not in the list (scorezoo never builds other classes).
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} class {name!r}; scorezoo {kind}s are {sorted(registry)}.")
    module, attr = registry[name]
    return getattr(importlib.import_module(module), attr)


def network_forward(network: nn.Module, x: torch.Tensor, t_label: torch.Tensor) -> torch.Tensor:
    """Call a network as ``(x: (B, *S), t_label: (B,)) -> (B, *S)``; diffusers' UNets return their output's
    ``.sample``."""
    out = network(x, t_label)
    return getattr(out, "sample", out)


def network_config(network: nn.Module) -> dict:
    """The public constructor arguments of ``network`` plus its ``_class_name``.

    Raises:
        ValueError: a class that is not in :data:`NETWORKS`.
    """
    name = type(network).__name__
    if name not in NETWORKS:
        raise ValueError(f"cannot save a {name}: scorezoo networks are {sorted(NETWORKS)}.")
    cfg = {k: v for k, v in dict(network.config).items() if not k.startswith("_")}
    return {"_class_name": name, **cfg}


def save_network(network: nn.Module, folder: str | Path) -> None:
    """Write ``folder/config.json`` and ``folder/diffusion_pytorch_model.safetensors`` with diffusers'
    ``save_pretrained``.

    Raises:
        ValueError: a class that is not in :data:`NETWORKS`.
    """
    network_config(network)  # refuses classes outside the list
    network.save_pretrained(str(folder), safe_serialization=True)


def build_network(config: dict, *, registry: dict[str, tuple[str, str]] = NETWORKS, kind: str = "network") -> nn.Module:
    """Build an untrained network from a config dict with ``_class_name``, a class of ``registry`` (see
    :func:`get_network_class`).

    Raises:
        ValueError: unknown class or arguments it does not take.
    """
    config = dict(config)
    name = config.pop("_class_name", None)
    cls = get_network_class(name, registry=registry, kind=kind)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot build {name} from its config: {e}") from None


def _weights_file(folder: Path) -> Path:
    for name in (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME):
        if (folder / name).is_file():
            return folder / name
    pickles = sorted(q.name for q in folder.glob("*") if q.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    hint = (f" It holds only pickle files ({', '.join(pickles)}), which scorezoo refuses to load: convert them to "
            "safetensors." if pickles else "")
    raise FileNotFoundError(f"{folder / WEIGHTS_NAME} not found: a scorezoo network folder needs {CONFIG_NAME} and "
                            f"{WEIGHTS_NAME} (or {LEGACY_WEIGHTS_NAME}).{hint}")


def load_network(folder: str | Path, *, registry: dict[str, tuple[str, str]] = NETWORKS,
                 kind: str = "network") -> nn.Module:
    """Load a network saved by :func:`save_network` (or by scorezoo 0.1); strict about every tensor. Only classes of
    ``registry`` are built (see :func:`get_network_class`).

    Raises:
        FileNotFoundError: ``config.json`` or the safetensors weights are missing (pickles are never read).
        ValueError: unreadable config, an unknown class, truncated or corrupt safetensors, missing/unexpected keys,
            wrong shapes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / CONFIG_NAME
    w_path = _weights_file(folder)
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: a scorezoo network folder needs {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}.")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from None
    network = build_network(config, registry=registry, kind=kind)
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{w_path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shapes (e.g. {k}: file {tuple(state[k].shape)}, "
                         f"config {tuple(own[k].shape)})")
        raise ValueError(f"{w_path} does not match {cfg_path}: " + "; ".join(parts) + ".")
    network.load_state_dict(state, strict=True)
    return network.eval()
