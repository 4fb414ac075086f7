"""Samplers: from the prior ``x_T`` to data, by the probability-flow ODE or the reverse-time SDE.

Every sampler has one signature, so they are interchangeable (as in k-diffusion)::

    sampler(score_fn, sde, x_T, *, num_steps=..., eps=1e-3, generator=None, denoise=True, progress=True)
        -> SamplerOutput(samples, nfe)

* :func:`sample_ode`: the probability-flow ODE ``dx/dt = f x - g^2 s / 2`` (Song et al. ICLR 2021, eq. 13),
  solved adaptively with torchdiffeq from T to eps;
* :func:`sample_em`: Euler–Maruyama on the reverse SDE ``dx = [f x - g^2 s] dt + g dw-bar`` (eq. 6);
* :func:`sample_pc`: predictor–corrector (Alg. 1 of the same paper): reverse-diffusion predictor and a
  Langevin corrector whose step follows the signal-to-noise ratio ``snr`` (App. G, Alg. 4–5).

``denoise=True`` ends with Tweedie's formula ``(x + sigma_eps^2 s(x, eps)) / alpha_eps``, the posterior
mean of x_0 given x_eps (Efron 2011; Song et al. ICLR 2021, App. G).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchdiffeq import odeint
from tqdm.auto import tqdm

from .sde import SDE, _bcast

__all__ = ["SamplerOutput", "sample_ode", "sample_em", "sample_pc", "SAMPLERS", "get_sampler"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SamplerOutput:
    """Samples ``(B, *S)`` in the model's data space (not clipped) and the number of score evaluations."""

    samples: torch.Tensor
    nfe: int


def _check(x_T: torch.Tensor, sde: SDE, eps: float, num_steps: int | None) -> None:
    sde._check_eps(eps)
    if x_T.dim() < 2 or x_T.shape[0] == 0:
        raise ValueError(f"x_T must be a non-empty batch (B, ...), got shape {tuple(x_T.shape)}.")
    if num_steps is not None and int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _denoise(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, eps: float) -> torch.Tensor:
    t = torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype)
    alpha, sigma = sde.alpha_sigma(t)
    return (x + _bcast(sigma**2, x) * score_fn(x, t)) / _bcast(alpha, x)


@torch.no_grad()
def sample_ode(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
    *,
    num_steps: int | None = None,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    denoise: bool = True,
    progress: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
) -> SamplerOutput:
    """Probability-flow ODE sampler (adaptive; ``num_steps`` sets a fixed-step RK4 solve instead).

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        sde: the forward SDE.
        x_T: ``(B, *S)`` prior samples (e.g. :meth:`SDE.prior_sampling`).
        num_steps: ``None`` for the adaptive ``method``; an integer for RK4 with that many steps.
        eps: end time in (0, T) (Song et al. use 1e-3 for sampling).
        generator: unused (the ODE is deterministic); accepted for the common signature.
        denoise: finish with Tweedie's denoising step.
        progress: show a progress bar over ODE time.
        rtol, atol, method: torchdiffeq options for the adaptive solve.

    Returns:
        :class:`SamplerOutput`.

    Raises:
        ValueError: bad ``x_T``, ``eps`` or ``num_steps``.
    """
    _check(x_T, sde, eps, num_steps)
    b = x_T.shape[0]
    nfe = 0
    bar = tqdm(total=100, disable=not progress, desc="ODE sampling", unit="%", leave=False)

    def func(t, x):
        nonlocal nfe
        nfe += 1
        # dopri5's first-step heuristic may probe outside [eps, T], where beta(t) < 0 is meaningless
        tb = t.clamp(eps, sde.T).expand(b).to(x.dtype)
        # the solver's stages and rejected steps revisit earlier times: show the furthest point reached
        done = min(100, int(100 * float(sde.T - t) / (sde.T - eps)))
        if done > bar.n:
            bar.n = done
            bar.refresh()
        return _bcast(sde.drift_coef(tb), x) * x - 0.5 * _bcast(sde.diffusion(tb) ** 2, x) * score_fn(x, tb)

    t_span = torch.tensor([sde.T, eps], dtype=x_T.dtype, device=x_T.device)
    if num_steps is None:
        x = odeint(func, x_T, t_span, rtol=rtol, atol=atol, method=method)[-1]
    else:
        x = odeint(func, x_T, t_span, method="rk4", options={"step_size": (sde.T - eps) / int(num_steps)})[-1]
    bar.close()
    if denoise:
        x = _denoise(score_fn, sde, x, eps)
        nfe += 1
    return SamplerOutput(x, nfe)


def _time_grid(sde: SDE, eps: float, num_steps: int, x: torch.Tensor) -> torch.Tensor:
    return torch.linspace(sde.T, eps, int(num_steps) + 1, device=x.device, dtype=x.dtype)


@torch.no_grad()
def sample_em(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
    *,
    num_steps: int | None = 1000,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    denoise: bool = True,
    progress: bool = True,
) -> SamplerOutput:
    """Euler–Maruyama on the reverse-time SDE (Song et al. ICLR 2021, eq. 6), ``num_steps`` uniform steps.

    Each step from ``t`` to ``t - h``: ``x <- x - [f x - g^2 s] h + g sqrt(h) z``.
    Arguments and errors as :func:`sample_ode`.
    """
    num_steps = 1000 if num_steps is None else num_steps
    _check(x_T, sde, eps, num_steps)
    ts = _time_grid(sde, eps, num_steps, x_T)
    x, b = x_T, x_T.shape[0]
    for i in tqdm(range(int(num_steps)), disable=not progress, desc="Euler-Maruyama", leave=False):
        t, h = ts[i].expand(b), ts[i] - ts[i + 1]
        g = _bcast(sde.diffusion(t), x)
        mean = x - (_bcast(sde.drift_coef(t), x) * x - g**2 * score_fn(x, t)) * h
        x = mean + g * h.sqrt() * _randn_like(x, generator)
    nfe = int(num_steps)
    if denoise:
        x, nfe = _denoise(score_fn, sde, x, eps), nfe + 1
    return SamplerOutput(x, nfe)


@torch.no_grad()
def sample_pc(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
    *,
    num_steps: int | None = 1000,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    denoise: bool = True,
    progress: bool = True,
    snr: float = 0.16,
    num_corrector_steps: int = 1,
) -> SamplerOutput:
    """Predictor–corrector sampler (Song et al. ICLR 2021, Alg. 1, App. G).

    Per step: ``num_corrector_steps`` Langevin corrections at time ``t`` with step
    ``2 a (snr ||z|| / ||s||)^2`` (norms averaged over the batch) (Alg. 4–5; ``a = 1 - beta(t) h`` for VP-type SDEs, 1 for VE), then one
    reverse-diffusion predictor step to ``t - h``. ``snr`` is the signal-to-noise ratio of the corrector
    (0.16 is the paper's CIFAR-10 VE value; 0.01–0.1 suits VP). Other arguments and errors as
    :func:`sample_ode`.
    """
    num_steps = 1000 if num_steps is None else num_steps
    _check(x_T, sde, eps, num_steps)
    if snr < 0 or num_corrector_steps < 0:
        raise ValueError("snr and num_corrector_steps must be >= 0.")
    ts = _time_grid(sde, eps, num_steps, x_T)
    x, b, nfe = x_T, x_T.shape[0], 0
    for i in tqdm(range(int(num_steps)), disable=not progress, desc="Predictor-corrector", leave=False):
        t, h = ts[i].expand(b), ts[i] - ts[i + 1]
        # Langevin corrector; "a" is the discrete alpha of DDPM for beta-schedule SDEs
        a = 1 + 2 * sde.drift_coef(t) * h
        for _ in range(num_corrector_steps):
            s = score_fn(x, t)
            nfe += 1
            z = _randn_like(x, generator)
            # norms averaged over the batch, as in the paper's code: a per-sample ratio explodes where ||s|| ~ 0
            ratio = z.flatten(1).norm(dim=1).mean() / s.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            step = _bcast(2 * a * (snr * ratio) ** 2, x)
            x = x + step * s + torch.sqrt(2 * step) * z
        # reverse-diffusion predictor
        g = _bcast(sde.diffusion(t), x)
        x = x - (_bcast(sde.drift_coef(t), x) * x - g**2 * score_fn(x, t)) * h + g * h.sqrt() * _randn_like(x, generator)
        nfe += 1
    if denoise:
        x, nfe = _denoise(score_fn, sde, x, eps), nfe + 1
    return SamplerOutput(x, nfe)


SAMPLERS: dict[str, Callable[..., SamplerOutput]] = {"ode": sample_ode, "em": sample_em, "pc": sample_pc}


def get_sampler(name: str) -> Callable[..., SamplerOutput]:
    """The sampler called ``name`` (``"ode"``, ``"em"`` or ``"pc"``); ``ValueError`` otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}.")
    return SAMPLERS[name]
