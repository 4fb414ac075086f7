"""The building blocks of NCSN++ and DDPM++ (:class:`~scorezoo.models.ncsnpp.NCSNpp`), under the official class
names.

A PyTorch port of ``models/layerspp.py``, ``models/layers.py`` and ``models/up_or_down_sampling.py`` of
``yang-song/score_sde_pytorch`` (same equations as the flax originals in ``yang-song/score_sde`` and
``yang-song/score_flow``):

* DDPM's initialiser (:func:`default_init_`), convolutions (:func:`ddpm_conv`) and GroupNorm with
  ``min(C // 4, 32)`` groups and eps 1e-6 (:func:`group_norm`);
* time embeddings: sinusoids (:func:`positional_embedding`) or random Fourier features
  (:class:`GaussianFourierProjection`);
* FIR resampling (StyleGAN2's upfirdn2d, written in plain PyTorch: no CUDA op; :func:`upfirdn2d`,
  :func:`upsample_2d`, :func:`downsample_2d`, :class:`FIRConv2d`);
* the blocks :class:`ResnetBlockDDPMpp`, :class:`ResnetBlockBigGANpp`, :class:`AttnBlockpp`, :class:`Upsample`,
  :class:`Downsample` and :class:`Combine`.

The classes are public under the official names because flax names a checkpoint's parameters after them:
:mod:`scorezoo.convert` reads a score_flow checkpoint by them. The submodules' attribute names (``Conv_0``,
``GroupNorm_0``, ``NIN_0``, ...) keep the official state-dict layout.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GROUPNORM_EPS", "ACTIVATIONS", "default_init_", "ddpm_conv", "group_norm", "positional_embedding",
           "upfirdn2d", "upsample_2d", "downsample_2d", "FIRConv2d", "GaussianFourierProjection", "Combine",
           "AttnBlockpp", "Upsample", "Downsample", "ResnetBlockDDPMpp", "ResnetBlockBigGANpp"]

#: GroupNorm epsilon of the official networks (flax's default; a wrong eps shows only as ~1e-4 relative)
GROUPNORM_EPS = 1e-6

#: the ``nonlinearity`` choices of :class:`~scorezoo.models.ncsnpp.NCSNpp`: name -> module class (or factory)
ACTIVATIONS = {"swish": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2)}


def default_init_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """DDPM's initialiser, in place: uniform variance scaling, fan_avg, fans from axes 1 (in) and 0 (out)
    (``default_init`` of score_sde's ``layers.py``); ``scale=0`` means 1e-10 (near-zero output layers)."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def ddpm_conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, padding: int | None = None,
              init_scale: float = 1.0) -> nn.Conv2d:
    """A ``kernel``×``kernel`` convolution (``padding`` default ``kernel // 2``) with :func:`default_init_` weights at
    ``init_scale`` and zero bias (``ddpm_conv3x3`` / ``ddpm_conv1x1`` of score_sde's ``layers.py``)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if padding is None else padding)
    default_init_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm of the official networks: ``min(channels // 4, 32)`` groups, eps :data:`GROUPNORM_EPS`.

    Raises:
        ValueError: a width that these groups do not divide.
    """
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
        self.weight = nn.Parameter(default_init_(torch.empty(out_ch, in_ch, 3, 3)))
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
        self.W = nn.Parameter(default_init_(torch.empty(in_dim, num_units), init_scale))
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
        self.Conv_0 = ddpm_conv(dim1, dim2, kernel=1)
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
        self.GroupNorm_0 = group_norm(channels)
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
            self.Conv_0 = ddpm_conv(in_ch, out_ch)
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
            self.Conv_0 = ddpm_conv(in_ch, out_ch, stride=2, padding=0)
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
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = ddpm_conv(in_ch, out_ch)
        self.Dense_0 = nn.Linear(temb_dim, out_ch)
        default_init_(self.Dense_0.weight)
        nn.init.zeros_(self.Dense_0.bias)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = ddpm_conv(out_ch, out_ch, init_scale=init_scale)


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
            self.Conv_2 = ddpm_conv(in_ch, out_ch, kernel=1)
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
