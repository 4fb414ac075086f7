"""The network of a training config, built and checked against the data before any training."""

from __future__ import annotations

import torch

from ..datasets import TrainingData
from ..models import ScoreModel, build_network
from ..sde import get_sde
from .config import ConfigError

__all__ = ["build_and_check_network", "size_multiple"]


def build_and_check_network(cfg: dict, data: TrainingData) -> torch.nn.Module:
    """Build ``cfg["network"]`` for ``data`` and check it takes the data: the shape rules, then a dry forward pass.

    Missing ``sample_size``/``in_channels``/``out_channels`` (UNet2DModel) or ``dim`` (ScoreMLP) are taken from the
    data's shape.

    Returns:
        The network (a diffusers ``ModelMixin``), initialised from torch's current random state.

    Raises:
        ConfigError: a network that cannot take the data's shape (channels, resolution, dimension), or whose
            output does not have the input's shape.
    """
    net_cfg = dict(cfg["network"])
    shape = data.data_shape
    name = net_cfg.get("_class_name")
    if name == "UNet2DModel":
        if len(shape) != 3:
            raise ConfigError(f"UNet2DModel takes images (C, H, W); the {data.name} data have shape {shape}: "
                              "use ScoreMLP.")
        c, h, w = shape
        blocks = net_cfg.get("down_block_types") or ()
        factor = 2 ** max(len(blocks) - 1, 0)
        if h % factor or w % factor:
            raise ConfigError(f"the network downsamples {len(blocks) - 1} times, so it needs H and W divisible "
                              f"by {factor}; the {data.name} images are {h}x{w}. Change data_shape or the blocks.")
        for key in ("in_channels", "out_channels"):
            if net_cfg.get(key, c) != c:
                raise ConfigError(f"network.{key} = {net_cfg[key]} but the {data.name} images have {c} channel(s).")
        net_cfg.setdefault("sample_size", h)
        net_cfg.setdefault("in_channels", c)
        net_cfg.setdefault("out_channels", c)
        if cfg.get("max_tile_size"):
            attn = [b for b in (*blocks, *(net_cfg.get("up_block_types") or ())) if "Attn" in b]
            if attn or net_cfg.get("add_attention", True):
                raise ConfigError("max_tile_size scores pictures larger than the training crops, which needs a fully "
                                  "convolutional network: no attention blocks (" + (", ".join(attn) or "the middle "
                                  "block's: set add_attention: false") + ").")
            if int(cfg["max_tile_size"]) < max(h, w) or int(cfg["max_tile_size"]) % factor:
                raise ConfigError(f"max_tile_size must be a multiple of {factor} (the network's down-sampling) of at "
                                  f"least the training size {max(h, w)}, got {cfg['max_tile_size']}.")
    elif name == "ScoreMLP":
        if len(shape) != 1:
            raise ConfigError(f"ScoreMLP takes flat data (D,); the {data.name} data have shape {shape}: "
                              "use UNet2DModel.")
        if net_cfg.get("dim", shape[0]) != shape[0]:
            raise ConfigError(f"network.dim = {net_cfg['dim']} but the {data.name} data have dimension {shape[0]}.")
        net_cfg.setdefault("dim", shape[0])
    try:
        net = build_network(net_cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    model = ScoreModel(net, get_sde(cfg["sde"]), cfg["parameterization"])
    try:
        with torch.no_grad():
            out = model.network_output(torch.zeros(2, *shape), torch.full((2,), 0.5))
    except Exception as e:  # any failure of the dry run means the network cannot take this data
        raise ConfigError(f"the network cannot take {data.name} data of shape {shape}: {type(e).__name__}: {e}") \
            from None
    if tuple(out.shape[1:]) != tuple(shape):
        raise ConfigError(f"the network maps {shape} to {tuple(out.shape[1:])}; it must return the input's shape.")
    if cfg.get("init_from"):
        init_weights(net, cfg["init_from"])
    return net


def size_multiple(net: torch.nn.Module) -> int:
    """The sides a ``UNet2DModel`` takes are multiples of this: ``2 ** (levels - 1)``, its down-sampling factor."""
    return 2 ** max(len(net.config.down_block_types) - 1, 0)


def init_weights(net: torch.nn.Module, folder: str) -> None:
    """Copy into ``net`` the weights saved in ``folder``: a pipeline folder (its ``network/``) or a network folder.

    Raises:
        ConfigError: no network there, or one whose config differs from ``net``'s.
    """
    from pathlib import Path

    from ..models import load_network
    from ..models.networks import network_config

    root = Path(folder).expanduser()
    where = root / "network" if (root / "network").is_dir() else root
    try:
        saved = load_network(where)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"init_from {folder!r}: {e}") from None
    if network_config(saved) != network_config(net):
        raise ConfigError(f"init_from {folder!r}: its network config differs from this run's network "
                          "(init_from continues the same network).")
    net.load_state_dict(saved.state_dict())
