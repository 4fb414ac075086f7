"""NCSN++ and DDPM++ (continuous), the score networks of Song et al. (ICLR 2021) and of the MLE paper.

A PyTorch port of ``models/ncsnpp.py`` of ``yang-song/score_sde_pytorch`` (same equations as the flax originals in
``yang-song/score_sde`` and ``yang-song/score_flow``), as a diffusers ``ModelMixin`` + ``ConfigMixin``; its layers
(``layerspp.py``, ``layers.py``, ``up_or_down_sampling.py``) are in :mod:`scorezoo.models.ncsnpp_layers`:

* time embeddings: ``"positional"`` (DDPM++: sinusoids of the label ``999 t``) or ``"fourier"`` (NCSN++: random
  Fourier features of ``log sigma_t``);
* residual blocks: ``"biggan"`` (resampling inside the block) or ``"ddpm"`` (separate resampling layers);
* ``skip_rescale`` (sums divided by sqrt 2), self-attention at ``attn_resolutions``, ``ch_mult``,
  ``num_res_blocks``, dropout, GroupNorm with ``min(C // 4, 32)`` groups and eps 1e-6;
* FIR resampling with the ``fir_kernel`` (StyleGAN2's upfirdn2d, written in plain PyTorch: no CUDA op);
* progressive output (``"output_skip"``, ``"residual"``) and input (``"input_skip"``, ``"residual"``) paths;
* ``scale_by_sigma`` (the output divided by the label sigma_t, so a VE network outputs the score) and
  ``centered`` data (``False``: inputs in [0, 1] are mapped to [-1, 1] inside the network).

The state dict keeps the official layout (``all_modules.{i}.<Name>_k.<param>``): a score_sde_pytorch checkpoint
loads once its ``module.`` prefix and its unused ``sigmas`` buffer are dropped (:mod:`scorezoo.convert`).
Only continuous-time, time-conditional networks exist here (the published likelihood models all are).

The building blocks are public under the official class names (:class:`GaussianFourierProjection`,
:class:`ResnetBlockDDPMpp`, :class:`ResnetBlockBigGANpp`, :class:`AttnBlockpp`, :class:`Upsample`,
:class:`Downsample`, :class:`Combine`, and the FIR-resampling :class:`FIRConv2d`), importable from here as from
:mod:`scorezoo.models.ncsnpp_layers`: flax names a checkpoint's parameters after these classes, so
:mod:`scorezoo.convert` reads a score_flow checkpoint by them.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .ncsnpp_layers import (ACTIVATIONS, GROUPNORM_EPS, AttnBlockpp, Combine, Downsample, FIRConv2d,
                            GaussianFourierProjection, ResnetBlockBigGANpp, ResnetBlockDDPMpp, Upsample, ddpm_conv,
                            default_init_, downsample_2d, group_norm, positional_embedding, upfirdn2d, upsample_2d)

# the building blocks are importable from here, where they were before ncsnpp_layers
__all__ = ["NCSNpp", "GROUPNORM_EPS", "upfirdn2d", "GaussianFourierProjection", "ResnetBlockDDPMpp",
           "ResnetBlockBigGANpp", "AttnBlockpp", "Upsample", "Downsample", "Combine", "FIRConv2d",
           "positional_embedding", "upsample_2d", "downsample_2d"]


class NCSNpp(ModelMixin, ConfigMixin):
    """NCSN++ / DDPM++ (continuous time): ``(x: (B, C, H, W), label: (B,)) -> (B, C, H, W)``.

    The label is what the official ``get_score_fn(..., continuous=True)`` feeds the network: ``999 t`` for VP and
    sub-VP (the output is then ``-sigma_t * score``, epsilon-prediction), ``sigma_t`` for VE (with
    ``scale_by_sigma`` the output is the score). The arguments are the official ``config.model`` / ``config.data``
    fields of the same names (score_sde_pytorch ``configs/``; Song et al. 2021, App. H).

    Args:
        image_size: H = W, a multiple of ``2 ** (len(ch_mult) - 1)``.
        num_channels: C.
        nf: base width; level ``i`` has ``nf * ch_mult[i]`` channels.
        ch_mult: channel multipliers per resolution.
        num_res_blocks: residual blocks per resolution (the upsampling side has one more).
        attn_resolutions: resolutions (H) with self-attention after each block.
        dropout: dropout rate inside the residual blocks (active in ``train()`` mode only).
        resamp_with_conv: ``"ddpm"`` blocks' resampling layers have a convolution.
        fir: FIR resampling with ``fir_kernel`` instead of nearest / average.
        fir_kernel: the separable FIR kernel.
        skip_rescale: divide residual sums by sqrt 2.
        resblock_type: ``"biggan"`` or ``"ddpm"``.
        progressive: output path ``"none"``, ``"output_skip"`` or ``"residual"``.
        progressive_input: input path ``"none"``, ``"input_skip"`` or ``"residual"``.
        progressive_combine: ``"sum"`` or ``"cat"`` (``input_skip`` merging).
        init_scale: initial scale of the output layers (0 gives 1e-10, as DDPM).
        embedding_type: ``"positional"`` or ``"fourier"``.
        fourier_scale: standard deviation of the Fourier frequencies.
        fourier_of_log: the Fourier features take ``log(label)`` (score_sde_pytorch always; score_flow for VE) or the
            label itself (score_flow for VP / sub-VP).
        scale_by_sigma: divide the output by the label, which must be sigma_t (VE).
        centered: inputs are in [-1, 1]; ``False``: inputs in [0, 1] are mapped to [-1, 1] first.
        nonlinearity: ``"swish"``, ``"elu"``, ``"relu"`` or ``"lrelu"``.

    Raises:
        ValueError: an unknown option, or a combination the official network does not build (one line naming it).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, image_size: int = 32, num_channels: int = 3, nf: int = 128,
                 ch_mult: tuple[int, ...] = (1, 2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: tuple[int, ...] = (16,), dropout: float = 0.1, resamp_with_conv: bool = True,
                 fir: bool = False, fir_kernel: tuple[int, ...] = (1, 3, 3, 1), skip_rescale: bool = True,
                 resblock_type: str = "biggan", progressive: str = "none", progressive_input: str = "none",
                 progressive_combine: str = "sum", init_scale: float = 0.0, embedding_type: str = "positional",
                 fourier_scale: float = 16.0, fourier_of_log: bool = True, scale_by_sigma: bool = False,
                 centered: bool = True, nonlinearity: str = "swish"):
        super().__init__()
        choices = {"resblock_type": (resblock_type, ("ddpm", "biggan")),
                   "progressive": (progressive, ("none", "output_skip", "residual")),
                   "progressive_input": (progressive_input, ("none", "input_skip", "residual")),
                   "progressive_combine": (progressive_combine, ("sum", "cat")),
                   "embedding_type": (embedding_type, ("positional", "fourier")),
                   "nonlinearity": (nonlinearity, tuple(ACTIVATIONS))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"NCSNpp: {key}={value!r} is not one of {allowed}.")
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"NCSNpp: image_size {image_size} is not divisible by 2^(len(ch_mult) - 1) = "
                             f"{2 ** (len(ch_mult) - 1)}; drop a level of ch_mult or change the size.")
        if scale_by_sigma and embedding_type != "fourier":
            raise ValueError("NCSNpp: scale_by_sigma needs the label to be sigma_t (Fourier embedding, VE); with the "
                             "positional embedding it is the discrete-time NCSN++, which is not supported.")
        self.act = act = ACTIVATIONS[nonlinearity]()
        num_resolutions = len(ch_mult)
        resolutions = [image_size // 2**i for i in range(num_resolutions)]
        attn_resolutions = tuple(attn_resolutions)
        fir_kernel = tuple(fir_kernel)
        temb_dim = nf * 4

        def block(in_ch: int, out_ch: int | None = None, up: bool = False, down: bool = False) -> nn.Module:
            if resblock_type == "ddpm":
                return ResnetBlockDDPMpp(act, in_ch, out_ch, temb_dim, dropout, skip_rescale, init_scale)
            return ResnetBlockBigGANpp(act, in_ch, out_ch, temb_dim, dropout, skip_rescale, init_scale, fir,
                                        fir_kernel, up=up, down=down)

        def attn(channels: int) -> nn.Module:
            return AttnBlockpp(channels, skip_rescale, init_scale)

        modules: list[nn.Module] = []
        if embedding_type == "fourier":
            modules.append(GaussianFourierProjection(nf, fourier_scale))
        for fan_in in (2 * nf if embedding_type == "fourier" else nf, temb_dim):
            modules.append(nn.Linear(fan_in, temb_dim))
            default_init_(modules[-1].weight)
            nn.init.zeros_(modules[-1].bias)

        # parameter-free pyramid resamplers live outside all_modules, as in the official network
        if progressive == "output_skip":
            self.pyramid_upsample = Upsample(num_channels, None, False, fir, fir_kernel)
        if progressive_input == "input_skip":
            self.pyramid_downsample = Downsample(num_channels, None, False, fir, fir_kernel)

        modules.append(ddpm_conv(num_channels, nf))
        hs_c = [nf]
        in_ch, input_pyramid_ch = nf, num_channels
        for level in range(num_resolutions):
            for _ in range(num_res_blocks):
                modules.append(block(in_ch, nf * ch_mult[level]))
                in_ch = nf * ch_mult[level]
                if resolutions[level] in attn_resolutions:
                    modules.append(attn(in_ch))
                hs_c.append(in_ch)
            if level != num_resolutions - 1:
                if resblock_type == "ddpm":
                    modules.append(Downsample(in_ch, None, resamp_with_conv, fir, fir_kernel))
                else:
                    modules.append(block(in_ch, down=True))
                if progressive_input == "input_skip":
                    modules.append(Combine(input_pyramid_ch, in_ch, progressive_combine))
                    if progressive_combine == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    modules.append(Downsample(input_pyramid_ch, in_ch, True, fir, fir_kernel))
                    input_pyramid_ch = in_ch
                hs_c.append(in_ch)

        in_ch = hs_c[-1]
        modules += [block(in_ch), attn(in_ch), block(in_ch)]

        pyramid_ch = 0
        for level in reversed(range(num_resolutions)):
            for _ in range(num_res_blocks + 1):
                modules.append(block(in_ch + hs_c.pop(), nf * ch_mult[level]))
                in_ch = nf * ch_mult[level]
            if resolutions[level] in attn_resolutions:
                modules.append(attn(in_ch))
            if progressive == "output_skip":
                modules += [group_norm(in_ch), ddpm_conv(in_ch, num_channels, init_scale=init_scale)]
            elif progressive == "residual" and level == num_resolutions - 1:
                modules += [group_norm(in_ch), ddpm_conv(in_ch, in_ch)]
                pyramid_ch = in_ch
            elif progressive == "residual":
                modules.append(Upsample(pyramid_ch, in_ch, True, fir, fir_kernel))
                pyramid_ch = in_ch
            if level != 0:
                if resblock_type == "ddpm":
                    modules.append(Upsample(in_ch, None, resamp_with_conv, fir, fir_kernel))
                else:
                    modules.append(block(in_ch, up=True))

        if progressive != "output_skip":
            modules += [group_norm(in_ch), ddpm_conv(in_ch, num_channels, init_scale=init_scale)]
        self.all_modules = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The network output ``(B, C, H, W)``.

        Args:
            x: ``(B, C, H, W)`` in [-1, 1] (``centered``) or [0, 1].
            label: ``(B,)`` time labels: ``999 t`` (positional) or sigma_t > 0 (Fourier of log sigma).

        Raises:
            ValueError: wrong input shape or label shape.
        """
        cfg = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.num_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"NCSNpp takes x of shape (B, {cfg.num_channels}, {cfg.image_size}, {cfg.image_size}), "
                             f"got {tuple(x.shape)}.")
        if label.shape != (x.shape[0],):
            raise ValueError(f"NCSNpp takes one label per sample, shape ({x.shape[0]},), got {tuple(label.shape)}.")
        modules = iter(self.all_modules)
        if cfg.embedding_type == "fourier":
            temb = next(modules)(torch.log(label) if cfg.fourier_of_log else label)
        else:
            temb = positional_embedding(label, cfg.nf)
        temb = next(modules)(temb)
        temb = next(modules)(self.act(temb)).to(x.dtype)

        if not cfg.centered:
            x = 2 * x - 1.0
        num_resolutions = len(cfg.ch_mult)
        attn_resolutions = tuple(cfg.attn_resolutions)
        input_pyramid = x
        hs = [next(modules)(x)]
        for level in range(num_resolutions):
            for _ in range(cfg.num_res_blocks):
                h = next(modules)(hs[-1], temb)
                if h.shape[-1] in attn_resolutions:
                    h = next(modules)(h)
                hs.append(h)
            if level != num_resolutions - 1:
                h = next(modules)(hs[-1]) if cfg.resblock_type == "ddpm" else next(modules)(hs[-1], temb)
                if cfg.progressive_input == "input_skip":
                    input_pyramid = self.pyramid_downsample(input_pyramid)
                    h = next(modules)(input_pyramid, h)
                elif cfg.progressive_input == "residual":
                    input_pyramid = self._skip(next(modules)(input_pyramid), h)
                    h = input_pyramid
                hs.append(h)

        h = next(modules)(hs[-1], temb)
        h = next(modules)(h)
        h = next(modules)(h, temb)

        pyramid = None
        for level in reversed(range(num_resolutions)):
            for _ in range(cfg.num_res_blocks + 1):
                h = next(modules)(torch.cat([h, hs.pop()], dim=1), temb)
            if h.shape[-1] in attn_resolutions:
                h = next(modules)(h)
            if cfg.progressive == "output_skip":
                pyramid = None if pyramid is None else self.pyramid_upsample(pyramid)
                out = self._norm_act_conv(modules, h)
                pyramid = out if pyramid is None else pyramid + out
            elif cfg.progressive == "residual" and level == num_resolutions - 1:
                pyramid = self._norm_act_conv(modules, h)
            elif cfg.progressive == "residual":
                pyramid = self._skip(next(modules)(pyramid), h)
                h = pyramid
            if level != 0:
                h = next(modules)(h) if cfg.resblock_type == "ddpm" else next(modules)(h, temb)

        h = pyramid if cfg.progressive == "output_skip" else self._norm_act_conv(modules, h)
        if cfg.scale_by_sigma:
            h = h / label.to(h.dtype)[:, None, None, None]
        return h

    def _norm_act_conv(self, modules, h: torch.Tensor) -> torch.Tensor:
        norm = next(modules)
        return next(modules)(self.act(norm(h)))

    def _skip(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b) / np.sqrt(2.0) if self.config.skip_rescale else a + b
