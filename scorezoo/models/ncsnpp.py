"""NCSN++ and DDPM++ (continuous), the score networks of Song et al. (ICLR 2021) and of the MLE paper.

A PyTorch port of ``models/ncsnpp.py``, ``models/layerspp.py``, ``models/layers.py`` and
``models/up_or_down_sampling.py`` of ``yang-song/score_sde_pytorch`` (same equations as the flax originals in
``yang-song/score_sde`` and ``yang-song/score_flow``), as a diffusers ``ModelMixin`` + ``ConfigMixin``:

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
:class:`Downsample`, :class:`Combine`, and the FIR-resampling :class:`FIRConv2d`): flax names a checkpoint's
parameters after these classes, so :mod:`scorezoo.convert` reads a score_flow checkpoint by them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["NCSNpp", "GROUPNORM_EPS", "upfirdn2d", "GaussianFourierProjection", "ResnetBlockDDPMpp",
           "ResnetBlockBigGANpp", "AttnBlockpp", "Upsample", "Downsample", "Combine", "FIRConv2d"]

#: GroupNorm epsilon of the official networks (flax's default; a wrong eps shows only as ~1e-4 relative)
GROUPNORM_EPS = 1e-6

_ACTIVATIONS = {"swish": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2)}


def _default_init_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """DDPM's initialiser, in place: uniform variance scaling, fan_avg, fans from axes 1 (in) and 0 (out)
    (``default_init`` of score_sde's ``layers.py``); ``scale=0`` means 1e-10 (near-zero output layers)."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def _conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, padding: int | None = None,
          init_scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if padding is None else padding)
    _default_init_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = min(channels // 4, 32)
    if groups == 0 or channels % groups:
        raise ValueError(f"NCSNpp: a width of {channels} channels cannot be split into min(C // 4, 32) = {groups} "
                         "GroupNorm groups; use an nf that is a multiple of 4, and of 32 for wide levels (128 in the "
                         "papers).")
    return nn.GroupNorm(groups, channels, eps=GROUPNORM_EPS)


def positional_embedding(labels: torch.Tensor, dim: int, max_positions: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B,) -> (B, dim)``, sines first, frequencies ``max_positions^(-i / (dim/2 - 1))``
    (``get_timestep_embedding`` of DDPM and score_sde; differs from diffusers' by the ``- 1`` and the order)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=labels.device)
                      * -(math.log(max_positions) / (half - 1)))
    args = labels.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


# -- FIR resampling (StyleGAN2, Karras et al. 2020; score_sde's up_or_down_sampling.py) ----------------------
def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the 2-D FIR ``kernel`` and keep every ``down``-th pixel.

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(k, k)`` filter (applied as a true convolution, i.e. flipped).
        up, down: integer factors.
        pad: ``(before, after)`` zero padding of both spatial axes after the upsampling (negative crops).

    Returns:
        ``(B, C, (H*up + before + after - k) // down + 1, same for W)``; equal to the pure-PyTorch
        ``upfirdn2d_native`` that score_sde_pytorch runs on CPU.
    """
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, 1, w, 1)
    x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1)).reshape(b * c, 1, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    x = F.conv2d(x, torch.flip(kernel, (0, 1)).to(x)[None, None])
    x = x[:, :, ::down, ::down]
    return x.reshape(b, c, x.shape[-2], x.shape[-1])


def _fir_kernel(k: tuple[int, ...], gain: float) -> torch.Tensor:
    k = np.asarray(k, dtype=np.float32)
    k = np.outer(k, k) if k.ndim == 1 else k
    return torch.from_numpy(k / k.sum() * gain)


def upsample_2d(x: torch.Tensor, k: tuple[int, ...], factor: int = 2) -> torch.Tensor:
    """FIR upsampling ``(B, C, H, W) -> (B, C, 2H, 2W)`` (constant images keep their value)."""
    kern = _fir_kernel(k, factor**2)
    p = kern.shape[0] - factor
    return upfirdn2d(x, kern, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, k: tuple[int, ...], factor: int = 2) -> torch.Tensor:
    """FIR downsampling ``(B, C, H, W) -> (B, C, H/2, W/2)``."""
    kern = _fir_kernel(k, 1.0)
    p = kern.shape[0] - factor
    return upfirdn2d(x, kern, down=factor, pad=((p + 1) // 2, p // 2))


def _naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def _naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.avg_pool2d(x, factor)


class FIRConv2d(nn.Module):
    """3×3 convolution fused with FIR up- or downsampling (StyleGAN2's ``upsample_conv_2d`` /
    ``conv_downsample_2d``; score_sde's ``up_or_down_sampling.Conv2d``): ``(B, in_ch, H, W) -> (B, out_ch, 2H, 2W)``
    with ``up``, else ``(B, out_ch, H/2, W/2)``. Parameters ``weight (out_ch, in_ch, 3, 3)`` and ``bias (out_ch,)``.

    Args:
        in_ch, out_ch: input and output channels.
        up: upsample (a transposed convolution, then the FIR filter), else downsample (the filter, then a stride-2
            convolution).
        fir_kernel: the 1-D FIR taps (``(1, 3, 3, 1)`` in the official configs), used as their outer product.
    """

    def __init__(self, in_ch: int, out_ch: int, up: bool, fir_kernel: tuple[int, ...]):
        super().__init__()
        self.weight = nn.Parameter(_default_init_(torch.empty(out_ch, in_ch, 3, 3)))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.up = up
        self.fir_kernel = tuple(fir_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor, conv = 2, self.weight.shape[-1]
        if self.up:
            kern = _fir_kernel(self.fir_kernel, factor**2)
            p = (kern.shape[0] - factor) - (conv - 1)
            # the transposed convolution of the flax original, whose kernel is flipped and in/out swapped
            w = torch.flip(self.weight, (2, 3)).transpose(0, 1)
            x = F.conv_transpose2d(x, w, stride=factor)
            x = upfirdn2d(x, kern, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))
        else:
            kern = _fir_kernel(self.fir_kernel, 1.0)
            p = (kern.shape[0] - factor) + (conv - 1)
            x = F.conv2d(upfirdn2d(x, kern, pad=((p + 1) // 2, p // 2)), self.weight, stride=factor)
        return x + self.bias[None, :, None, None]


# -- layers (score_sde's layerspp.py) -------------------------------------------------------------------------
class GaussianFourierProjection(nn.Module):
    """Random Fourier features ``(B,) -> (B, 2 * embedding_size)``: ``[sin(2 pi x W), cos(2 pi x W)]`` (Tancik et al.
    2020), the NCSN++ time embedding of ``log sigma_t``.

    Args:
        embedding_size: number of frequencies.
        scale: standard deviation of the frequencies ``W ~ N(0, scale^2)``, drawn once and not trained (a checkpoint
            brings its own).
    """

    def __init__(self, embedding_size: int, scale: float):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * 2 * np.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class _NIN(nn.Module):
    """Per-pixel linear map (a 1×1 convolution stored as ``W: (in, out)``, ``b: (out,)``)."""

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(_default_init_(torch.empty(in_dim, num_units), init_scale))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b[None, :, None, None]


class Combine(nn.Module):
    """Merge the progressive input path ``x (B, dim1, H, W)`` into the features ``y (B, dim2, H, W)``: a 1×1
    convolution of ``x`` to ``dim2`` channels, then concatenated (``(B, 2 dim2, H, W)``) or added (``(B, dim2, H, W)``).

    Args:
        dim1, dim2: channels of ``x`` and of ``y``.
        method: ``"cat"`` or ``"sum"``.
    """

    def __init__(self, dim1: int, dim2: int, method: str):
        super().__init__()
        self.Conv_0 = _conv(dim1, dim2, kernel=1)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


class AttnBlockpp(nn.Module):
    """Self-attention over all pixels, one head, residual (DDPM's attention block): ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: ``C``.
        skip_rescale: divide the residual sum by sqrt 2.
        init_scale: initial scale of the output projection (0 gives 1e-10, as DDPM: the block starts near the
            identity).
    """

    def __init__(self, channels: int, skip_rescale: bool, init_scale: float):
        super().__init__()
        self.GroupNorm_0 = _group_norm(channels)
        self.NIN_0 = _NIN(channels, channels)
        self.NIN_1 = _NIN(channels, channels)
        self.NIN_2 = _NIN(channels, channels)
        self.NIN_3 = _NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(y), self.NIN_1(y), self.NIN_2(y)
        att = torch.einsum("bchw,bcij->bhwij", q, k).reshape(b, h, w, h * w) * (int(c) ** -0.5)
        att = F.softmax(att, dim=-1).reshape(b, h, w, h, w)
        y = self.NIN_3(torch.einsum("bhwij,bcij->bchw", att, v))
        return (x + y) / np.sqrt(2.0) if self.skip_rescale else x + y


class Upsample(nn.Module):
    """×2 upsampling ``(B, in_ch, H, W) -> (B, out_ch, 2H, 2W)``: nearest neighbour (then a 3×3 convolution when
    ``with_conv``), or FIR (fused with the convolution, :class:`FIRConv2d`, when ``with_conv``).

    Args:
        in_ch: input channels.
        out_ch: output channels (``None``: ``in_ch``; without ``with_conv`` they must be equal).
        with_conv: follow (or fuse) the resampling with a 3×3 convolution.
        fir: FIR resampling (StyleGAN2) instead of nearest neighbour.
        fir_kernel: the FIR taps.
    """

    def __init__(self, in_ch: int, out_ch: int | None, with_conv: bool, fir: bool, fir_kernel: tuple[int, ...]):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and fir:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, up=True, fir_kernel=fir_kernel)
        elif with_conv:
            self.Conv_0 = _conv(in_ch, out_ch)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fir:
            h = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.Conv_0(h) if self.with_conv else h
        return self.Conv2d_0(x) if self.with_conv else upsample_2d(x, self.fir_kernel)


class Downsample(nn.Module):
    """×2 downsampling ``(B, in_ch, H, W) -> (B, out_ch, H/2, W/2)``: a stride-2 3×3 convolution (``with_conv``) or a
    2×2 average, or FIR (fused with the convolution, :class:`FIRConv2d`, when ``with_conv``).

    Args:
        in_ch: input channels.
        out_ch: output channels (``None``: ``in_ch``; without ``with_conv`` they must be equal).
        with_conv: resample with a convolution.
        fir: FIR resampling (StyleGAN2) instead of the plain one.
        fir_kernel: the FIR taps.
    """

    def __init__(self, in_ch: int, out_ch: int | None, with_conv: bool, fir: bool, fir_kernel: tuple[int, ...]):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and fir:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, up=False, fir_kernel=fir_kernel)
        elif with_conv:
            self.Conv_0 = _conv(in_ch, out_ch, stride=2, padding=0)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fir:
            # TF/flax 'SAME' padding of a stride-2 3×3 conv on an even size pads only bottom and right
            return self.Conv_0(F.pad(x, (0, 1, 0, 1))) if self.with_conv else F.avg_pool2d(x, 2)
        return self.Conv2d_0(x) if self.with_conv else downsample_2d(x, self.fir_kernel)


class _ResnetBlock(nn.Module):
    """The layers both residual blocks share, created in the official order (score_sde's EMA lists parameters in
    that order): GroupNorm, conv, the time embedding's dense layer, GroupNorm, dropout, conv."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float, init_scale: float):
        super().__init__()
        self.GroupNorm_0 = _group_norm(in_ch)
        self.Conv_0 = _conv(in_ch, out_ch)
        self.Dense_0 = nn.Linear(temb_dim, out_ch)
        _default_init_(self.Dense_0.weight)
        nn.init.zeros_(self.Dense_0.bias)
        self.GroupNorm_1 = _group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = _conv(out_ch, out_ch, init_scale=init_scale)


class ResnetBlockDDPMpp(_ResnetBlock):
    """DDPM's residual block with the time embedding added after the first convolution (DDPM++):
    ``x (B, in_ch, H, W), temb (B, temb_dim) -> (B, out_ch, H, W)``.

    Args:
        act: the activation module (SiLU in the official configs).
        in_ch: input channels.
        out_ch: output channels (``None``: ``in_ch``; otherwise a per-pixel linear map takes the skip path there).
        temb_dim: size of the time embedding.
        dropout: dropout rate before the second convolution.
        skip_rescale: divide the residual sum by sqrt 2.
        init_scale: initial scale of the second convolution (0 gives 1e-10, as DDPM).
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None, temb_dim: int, dropout: float,
                 skip_rescale: bool, init_scale: float):
        out_ch = out_ch or in_ch
        super().__init__(in_ch, out_ch, temb_dim, dropout, init_scale)
        if in_ch != out_ch:
            self.NIN_0 = _NIN(in_ch, out_ch)
        self.act, self.skip_rescale, self.out_ch = act, skip_rescale, out_ch

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if x.shape[1] != self.out_ch:
            x = self.NIN_0(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class ResnetBlockBigGANpp(_ResnetBlock):
    """BigGAN's residual block, which resamples both branches inside (NCSN++):
    ``x (B, in_ch, H, W), temb (B, temb_dim) -> (B, out_ch, H', W')`` with ``H' = 2H`` for ``up``, ``H/2`` for
    ``down``, else ``H``.

    Args:
        act, in_ch, out_ch, temb_dim, dropout, skip_rescale, init_scale: as :class:`ResnetBlockDDPMpp` (the skip
            path gets a 1×1 convolution when the channels change or the block resamples).
        fir: FIR resampling (StyleGAN2) instead of nearest neighbour / 2×2 average.
        fir_kernel: the FIR taps.
        up, down: upsample or downsample by 2 (at most one of them).
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None, temb_dim: int, dropout: float,
                 skip_rescale: bool, init_scale: float, fir: bool, fir_kernel: tuple[int, ...],
                 up: bool = False, down: bool = False):
        out_ch = out_ch or in_ch
        super().__init__(in_ch, out_ch, temb_dim, dropout, init_scale)
        if in_ch != out_ch or up or down:
            self.Conv_2 = _conv(in_ch, out_ch, kernel=1)
        self.act, self.skip_rescale, self.up, self.down = act, skip_rescale, up, down
        self.fir, self.fir_kernel = fir, tuple(fir_kernel)
        self.in_ch, self.out_ch = in_ch, out_ch

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_2d(x, self.fir_kernel) if self.fir else _naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.fir_kernel) if self.fir else _naive_downsample_2d(x)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self._resample(self.act(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self.Conv_0(h) + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if self.in_ch != self.out_ch or self.up or self.down:
            x = self.Conv_2(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


# -- the network ------------------------------------------------------------------------------------------------
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
                   "nonlinearity": (nonlinearity, tuple(_ACTIVATIONS))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"NCSNpp: {key}={value!r} is not one of {allowed}.")
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"NCSNpp: image_size {image_size} is not divisible by 2^(len(ch_mult) - 1) = "
                             f"{2 ** (len(ch_mult) - 1)}; drop a level of ch_mult or change the size.")
        if scale_by_sigma and embedding_type != "fourier":
            raise ValueError("NCSNpp: scale_by_sigma needs the label to be sigma_t (Fourier embedding, VE); with the "
                             "positional embedding it is the discrete-time NCSN++, which is not supported.")
        self.act = act = _ACTIVATIONS[nonlinearity]()
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
            _default_init_(modules[-1].weight)
            nn.init.zeros_(modules[-1].bias)

        # parameter-free pyramid resamplers live outside all_modules, as in the official network
        if progressive == "output_skip":
            self.pyramid_upsample = Upsample(num_channels, None, False, fir, fir_kernel)
        if progressive_input == "input_skip":
            self.pyramid_downsample = Downsample(num_channels, None, False, fir, fir_kernel)

        modules.append(_conv(num_channels, nf))
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
                modules += [_group_norm(in_ch), _conv(in_ch, num_channels, init_scale=init_scale)]
            elif progressive == "residual" and level == num_resolutions - 1:
                modules += [_group_norm(in_ch), _conv(in_ch, in_ch)]
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
            modules += [_group_norm(in_ch), _conv(in_ch, num_channels, init_scale=init_scale)]
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
