"""Variational dequantization: a conditional normalising flow ``q(u | k)`` on ``u in (0, 1)^D`` given integer levels.

With ``x = lo + (hi - lo)(k + u)/K`` every density ``q(u | k)`` on the unit cube bounds the discrete
negative log-likelihood (Ho et al. 2019, Flow++, Sec. 3.1, eq. 11):

    -log P(k) <= E_{u ~ q}[-log p_X(x) + log q(u | k)] - D log((hi - lo)/K),

with equality when ``q(u | k)`` is the model's own density on the cell of ``k``. Uniform noise (``log q = 0``) is the
special case every score model reports; Song, Durkan, Murray & Ermon (2021, Sec. 6) trained a Flow++
dequantizer against the frozen score model for their headline bits/dim.

The flow (Flow++, Sec. 3.1-3.3, smaller): a standard logistic base ``eps = logit(v)``, ``v ~ U(0, 1)^D``; then
``num_couplings`` times an element-wise affine map and a checkerboard coupling whose other half is transformed by a
mixture-of-logistics CDF followed by an affine map (Flow++ eq. 7), its parameters from a small convolutional network
of the fixed half and of a context network of ``k``; finally a sigmoid onto (0, 1). Every network's last layer starts
at zero, so an untrained dequantizer is the identity on ``v``: exactly uniform dequantization (``log q = 0``).

Only the sampling direction ``v -> u`` is needed (the bound is an expectation under q), so no layer is inverted.

Data of shape ``(D,)`` are treated as one row ``(1, 1, D)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..utils import check_generator, rand
from .uniform import check_levels

__all__ = ["sample_dequantization", "VariationalDequantizer", "load_dequantizer", "DEQUANTIZERS"]

#: the dequantizer classes a ``dequantizer/config.json`` may name, as ``(module, attribute)``
DEQUANTIZERS: dict[str, tuple[str, str]] = {
    "VariationalDequantizer": ("scorezoo.dequantization.variational", "VariationalDequantizer"),
}

# a uniform draw is a multiple of 2^-24 in float32 and may be 0: keep logit(v) finite
_V_MIN = 2.0**-26
# the smallest logistic scale of a mixture component (Flow++'s code clamps at the same place)
_LOG_SCALE_MIN = -7.0


def _image_shape(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(data_shape) == 3:
        return tuple(int(v) for v in data_shape)
    if len(data_shape) == 1:
        return (1, 1, int(data_shape[0]))
    raise ValueError(f"data_shape must be (C, H, W) or (D,), got {tuple(data_shape)}.")


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.silu(self.conv1(F.silu(h))))


class _ConvNet(nn.Module):
    """``in_channels -> hidden`` by a 3x3 convolution, then ``num_blocks`` residual blocks, then (if ``out_channels``)
    a zero-initialised 3x3 convolution."""

    def __init__(self, in_channels: int, hidden: int, num_blocks: int, out_channels: int | None = None):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(hidden) for _ in range(num_blocks)])
        self.out = None
        if out_channels is not None:
            self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.proj(h))
        return h if self.out is None else self.out(F.silu(h))


def mixture_logistic_coupling(h: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow++'s element-wise transform ``y = logit(MixLogCDF(h; pi, mu, s)) exp(a) + b`` (Ho et al. 2019, eq. 7).

    Args:
        h: ``(B, C, H, W)``.
        params: ``(B, C, 2 + 3M, H, W)``: ``a`` (squashed to (-2, 2) by ``2 tanh(a/2)``), ``b``, then ``M`` mixture
            logits, ``M`` means and ``M`` log-scales.

    Returns:
        ``(y, log|dy/dh|)``, both ``(B, C, H, W)``; all logarithms by ``logsigmoid``, so no CDF is rounded to 0 or 1.
    """
    m = (params.shape[2] - 2) // 3
    a = 2.0 * torch.tanh(params[:, :, 0] / 2.0)
    b = params[:, :, 1]
    log_pi = torch.log_softmax(params[:, :, 2:2 + m], dim=2)
    mu = params[:, :, 2 + m:2 + 2 * m]
    log_s = params[:, :, 2 + 2 * m:].clamp_min(_LOG_SCALE_MIN)
    z = (h.unsqueeze(2) - mu) * torch.exp(-log_s)
    log_cdf = torch.logsumexp(log_pi + F.logsigmoid(z), dim=2)
    log_sf = torch.logsumexp(log_pi + F.logsigmoid(-z), dim=2)
    log_pdf = torch.logsumexp(log_pi + F.logsigmoid(z) + F.logsigmoid(-z) - log_s, dim=2)
    # d logit(c)/dh = pdf / (c (1 - c))
    y = (log_cdf - log_sf) * torch.exp(a) + b
    return y, log_pdf - log_cdf - log_sf + a


class VariationalDequantizer(ModelMixin, ConfigMixin):
    """``q(u | k)``: a conditional flow from uniform noise to ``u in (0, 1)^D`` given integer levels ``k``.

    A diffusers model (``ModelMixin`` + ``ConfigMixin``): saved as ``config.json`` +
    ``diffusion_pytorch_model.safetensors``, in a pipeline folder under ``dequantizer/``.

    Args:
        data_shape: ``(C, H, W)`` (or ``(D,)``) of the model it dequantizes for.
        num_levels: K, the integer levels of the data.
        hidden_channels: width of the context and coupling networks.
        num_couplings: checkerboard couplings (alternating halves), >= 2 so that every dimension is transformed.
        num_blocks: residual blocks per network.
        num_components: logistic mixture components per coupling.

    Raises:
        ValueError: a bad shape or non-positive sizes.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, data_shape: tuple[int, ...] = (1, 8, 8), num_levels: int = 256, hidden_channels: int = 32,
                 num_couplings: int = 4, num_blocks: int = 2, num_components: int = 4):
        super().__init__()
        c, h, w = _image_shape(tuple(data_shape))
        if int(num_levels) < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}.")
        if num_couplings < 2 or hidden_channels < 1 or num_blocks < 0 or num_components < 1:
            raise ValueError("need num_couplings >= 2, hidden_channels >= 1, num_blocks >= 0 and "
                             f"num_components >= 1; got {num_couplings}, {hidden_channels}, {num_blocks}, "
                             f"{num_components}.")
        self.image_shape = (c, h, w)
        self.context = _ConvNet(c, hidden_channels, num_blocks)
        self.couplings = nn.ModuleList(
            _ConvNet(c + 1 + hidden_channels, hidden_channels, num_blocks, c * (2 + 3 * num_components))
            for _ in range(num_couplings))
        # Flow++'s element-wise affine ("Norm") before each coupling, here without data-dependent initialisation
        self.log_scale = nn.Parameter(torch.zeros(num_couplings, c, h, w))
        self.shift = nn.Parameter(torch.zeros(num_couplings, c, h, w))
        parity = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2
        self.register_buffer("checkerboard", parity.float()[None, None], persistent=False)

    def forward(self, levels: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The flow from uniform noise ``v`` to ``u``.

        Args:
            levels: ``(B, *data_shape)`` integer levels in [0, K) (not checked here: see :meth:`sample_and_log_prob`).
            v: ``(B, *data_shape)`` uniform noise in [0, 1).

        Returns:
            ``(u, log_q)``: ``u (B, *data_shape)`` in (0, 1) and ``log q(u | k)`` per dimension
            ``(B, *data_shape)`` in nats (the base log-density minus the log-Jacobian of each dimension's diagonal
            entries: the Jacobian of every layer is triangular, so these sum to ``log q(u | k)``).
        """
        shape = v.shape
        b = shape[0]
        k = levels.reshape(b, *self.image_shape).to(v.dtype)
        eps = torch.logit(v.reshape(b, *self.image_shape).clamp(_V_MIN, 1.0 - _V_MIN))
        # the standard logistic density of eps
        log_q = F.logsigmoid(eps) + F.logsigmoid(-eps)
        ctx = self.context(2.0 * k / (self.config.num_levels - 1) - 1.0)
        h = eps
        for i, net in enumerate(self.couplings):
            h = h * torch.exp(self.log_scale[i]) + self.shift[i]
            log_q = log_q - self.log_scale[i]
            active = self.checkerboard if i % 2 == 0 else 1.0 - self.checkerboard
            params = net(torch.cat([h * (1.0 - active), (1.0 - active).expand(b, 1, -1, -1), ctx], 1))
            y, log_det = mixture_logistic_coupling(h, params.view(b, h.shape[1], -1, *h.shape[2:]))
            h = torch.where(active.bool(), y, h)
            log_q = log_q - log_det * active
        u = torch.sigmoid(h)
        log_q = log_q - F.logsigmoid(h) - F.logsigmoid(-h)
        return u.reshape(shape), log_q.reshape(shape)

    def sample_and_log_prob(self, levels: torch.Tensor, *, generator: torch.Generator | None = None,
                            per_dimension: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``u ~ q(u | k)`` and its log-density.

        Gradients flow to the dequantizer's parameters (for training); wrap in ``torch.no_grad()`` to score.

        Args:
            levels: ``(B, *data_shape)`` integer levels in [0, K) (any integer or integral float dtype).
            generator: source of the uniform noise ``v`` (drawn as :func:`~scorezoo.dequantization.uniform_dequantize`
                draws its ``u``, so the same generator gives the same ``v``: paired comparisons with uniform
                dequantization).
            per_dimension: return ``log q`` per dimension ``(B, *data_shape)`` instead of its sum.

        Returns:
            ``(u, log_q)``: ``u (B, *data_shape)`` in (0, 1) in the dequantizer's dtype; ``log q(u | k)`` in nats,
            ``(B,)`` (or per dimension).

        Raises:
            ValueError: a shape other than ``(B, *data_shape)``, non-integer or out-of-range levels, a bad generator.
        """
        data_shape = tuple(self.config.data_shape)
        if not torch.is_tensor(levels) or levels.dim() != len(data_shape) + 1 or \
                tuple(levels.shape[1:]) != data_shape or levels.shape[0] == 0:
            got = tuple(levels.shape) if torch.is_tensor(levels) else type(levels).__name__
            raise ValueError(f"levels must have shape (B, {', '.join(map(str, data_shape))}) with B >= 1, got {got}.")
        check_levels(levels, self.config.num_levels)
        check_generator(generator)
        v = rand(levels.shape, generator=generator, device=self.device, dtype=self.dtype)
        u, log_q = self(levels.to(self.device), v)
        return u, log_q if per_dimension else log_q.flatten(1).sum(1)

    def extra_repr(self) -> str:
        return f"data_shape={tuple(self.config.data_shape)}, num_levels={self.config.num_levels}"


@torch.no_grad()
def sample_dequantization(dequantizer: "VariationalDequantizer", levels: torch.Tensor, v: torch.Tensor,
                          network_batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``u ~ q(u | k)`` from uniform draws: the dequantizer maps ``v: (N, R, *S)`` in [0, 1) of the levels
    ``k = levels: (N, *S)`` to its noise, ``network_batch_size`` rows at a time.

    Returns:
        ``(u (N, R, *S) in (0, 1), log q (N, R, *S))``: the noise and ``log q(u | k)`` per dimension in nats (float64,
        on the CPU).
    """
    dev, dt = next(dequantizer.parameters()).device, dequantizer.dtype
    k = levels[:, None].expand(v.shape).flatten(0, 1)
    flat = v.flatten(0, 1)
    u, log_q = torch.empty_like(flat), torch.empty(flat.shape, dtype=torch.float64)
    for sl in torch.arange(len(flat)).split(network_batch_size):
        ub, lb = dequantizer(k[sl].to(dev), flat[sl].to(dev, dt))
        u[sl], log_q[sl] = ub.to(u.device, u.dtype), lb.double().cpu()
    return u.view(v.shape), log_q.view(v.shape)


def load_dequantizer(folder) -> VariationalDequantizer:
    """Load a dequantizer folder (``config.json`` + ``diffusion_pytorch_model.safetensors``); only the classes of
    :data:`DEQUANTIZERS` are built and only safetensors are read, strictly (see
    :func:`scorezoo.models.load_network`).

    Raises:
        FileNotFoundError: the config or the weights are missing.
        ValueError: an unknown class, an unreadable config, corrupt or mismatched weights.
    """
    from ..models.networks import load_network

    return load_network(folder, registry=DEQUANTIZERS, kind="dequantizer")
