"""Score networks and their on-disk format (``config.json`` + ``model.safetensors``).

Three networks, all :class:`diffusers.ConfigMixin` so their constructor arguments are their config:

* :class:`diffusers.UNet2DModel` for images ``(B, C, H, W)``, conditioned on continuous time
  (its sinusoidal embedding takes float timesteps);
* :class:`~scorezoo.models.ncsnpp.NCSNpp`, the official NCSN++/DDPM++ of Song et al. (images; its label is
  ``999 t`` or sigma_t, see :class:`~scorezoo.models.ScoreModel`'s ``time_label``);
* :class:`ScoreMLP` for flat data ``(B, D)`` such as 2-D toy sets.

Every network is called as ``net(x, t_label)`` through :func:`network_forward`, where
``t_label = time_scale * t`` (the continuous analogue of a discrete timestep, as in Song et al.'s code).
Loading is strict: a missing, unexpected or mis-shaped tensor is an error. Only the classes in
:data:`NETWORKS` can be built from a config: nothing from the Hub is ever executed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .ncsnpp import NCSNpp

__all__ = ["ScoreMLP", "NETWORKS", "network_forward", "save_network", "load_network",
           "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of float times ``t: (B,)`` into ``(B, dim)`` (Vaswani et al. 2017, Sec. 3.5)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class ScoreMLP(nn.Module, ConfigMixin):
    """A residual MLP for flat data: ``(x: (B, D), t_label: (B,)) -> (B, D)``.

    Args:
        dim: data dimension D.
        hidden_dim: width of the hidden layers.
        num_layers: number of residual blocks.
        time_embed_dim: size of the sinusoidal time embedding.
    """

    config_name = CONFIG_NAME

    @register_to_config
    def __init__(self, dim: int = 2, hidden_dim: int = 128, num_layers: int = 3, time_embed_dim: int = 64):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, hidden_dim), nn.SiLU(),
                                      nn.Linear(hidden_dim, hidden_dim))
        self.inp = nn.Linear(dim, hidden_dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
            for _ in range(num_layers)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor, t_label: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t_label, self.config.time_embed_dim).to(x.dtype))
        h = self.inp(x) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


#: the network classes a config may name (``"_class_name"``)
NETWORKS: dict[str, type] = {"UNet2DModel": UNet2DModel, "ScoreMLP": ScoreMLP, "NCSNpp": NCSNpp}


def network_forward(network: nn.Module, x: torch.Tensor, t_label: torch.Tensor) -> torch.Tensor:
    """Call any network of :data:`NETWORKS` as ``(x: (B, *S), t_label: (B,)) -> (B, *S)``."""
    if isinstance(network, UNet2DModel):
        return network(x, t_label).sample
    return network(x, t_label)


def network_config(network: nn.Module) -> dict:
    """The public constructor arguments of ``network`` plus its ``_class_name``."""
    name = type(network).__name__
    if name not in NETWORKS:
        raise ValueError(f"cannot save a {name}: scorezoo networks are {sorted(NETWORKS)}.")
    cfg = {k: v for k, v in dict(network.config).items() if not k.startswith("_")}
    return {"_class_name": name, **cfg}


def save_network(network: nn.Module, folder: str | Path) -> None:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (contiguous, detached copies)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(network_config(network), indent=2, default=list) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


def build_network(config: dict) -> nn.Module:
    """Build an untrained network from a config dict with ``_class_name``.

    Raises:
        ValueError: unknown class or arguments it does not take.
    """
    config = dict(config)
    name = config.pop("_class_name", None)
    if name not in NETWORKS:
        raise ValueError(f"unknown network class {name!r} in config; scorezoo networks are {sorted(NETWORKS)}.")
    cls = NETWORKS[name]
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot build {name} from its config: {e}") from None


def load_network(folder: str | Path) -> nn.Module:
    """Load a network saved by :func:`save_network`; strict about every tensor.

    Raises:
        FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing (pickles are never read).
        ValueError: unreadable config, truncated or corrupt safetensors, missing/unexpected keys, wrong shapes.
    """
    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            pickles = sorted(q.name for q in folder.glob("*") if q.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"})
            hint = (f" It holds only pickle files ({', '.join(pickles)}), which scorezoo refuses to load: "
                    "convert them to safetensors." if pickles else "")
            raise FileNotFoundError(f"{p} not found: a scorezoo network folder needs {CONFIG_NAME} and "
                                    f"{WEIGHTS_NAME}.{hint}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from None
    network = build_network(config)
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
