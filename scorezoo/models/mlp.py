"""A residual MLP score network for flat data such as 2-D toy sets, as a diffusers model."""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

__all__ = ["ScoreMLP", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of float times ``t: (B,)`` into ``(B, dim)`` (Vaswani et al. 2017, Sec. 3.5)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class ScoreMLP(ModelMixin, ConfigMixin):
    """A residual MLP for flat data: ``(x: (B, D), t_label: (B,)) -> (B, D)``.

    A diffusers ``ModelMixin`` + ``ConfigMixin``: its constructor arguments are its config, and
    ``save_pretrained``/``from_pretrained`` write and read ``config.json`` + ``diffusion_pytorch_model.safetensors``.

    Args:
        dim: data dimension D.
        hidden_dim: width of the hidden layers.
        num_layers: number of residual blocks.
        time_embed_dim: size of the sinusoidal time embedding.
    """

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
