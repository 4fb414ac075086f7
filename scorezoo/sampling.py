"""Samplers: from the prior ``x_T`` to data, by the probability-flow ODE or the reverse-time SDE.

Every sampler has one signature, so they are interchangeable (as in k-diffusion)::

    sampler(score_fn, sde, x_T, times, *, generator=None, callback=None, denoise=True, progress=True, **options)
        -> SamplerOutput(samples, nfe)

``times`` is the time grid ``(N + 1,)``, decreasing from ``T`` to the end time ``eps`` (Song et al. use 1e-3 for
sampling); :func:`get_times_uniform` and :func:`get_times_log_rho` make one.

* :func:`sample_ode`: the probability-flow ODE ``dx/dt = f x - g^2 s / 2`` (Song et al. ICLR 2021, eq. 13;
  :class:`scorezoo.likelihood.flow.ProbabilityFlow`), solved with torchdiffeq: an adaptive method from the grid's
  first to its last time, a fixed-step method along the grid;
* :func:`sample_em`: Euler–Maruyama on the reverse SDE ``dx = [f x - g^2 s] dt + g dw-bar`` (eq. 6), one step per
  interval of the grid;
* :func:`sample_pc`: predictor–corrector (Alg. 1 of the same paper): reverse-diffusion predictor and a Langevin
  corrector whose step follows the signal-to-noise ratio ``snr`` (App. G, Alg. 4–5).

``callback`` is called as ``callback({"i": i, "t": t, "x": x})`` after every step (for the ODE, at every evaluation
of its drift, ``i`` counting them). ``denoise=True`` ends with Tweedie's formula ``(x + sigma_eps^2 s(x, eps)) /
alpha_eps``, the posterior mean of x_0 given x_eps (Efron 2011; Song et al. ICLR 2021, App. G).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from .likelihood.flow import ProbabilityFlow
from .likelihood.solvers import get_solver, solve
from .sde import SDE
from .utils import ScoreFn, bcast, randn

__all__ = ["SamplerOutput", "sample_ode", "sample_em", "sample_pc", "SAMPLERS", "get_sampler", "get_times_uniform",
           "get_times_log_rho"]

Callback = Callable[[dict], None]


@dataclass
class SamplerOutput:
    """Samples ``(B, *S)`` in the model's data space (not clipped) and the number of score evaluations."""

    samples: torch.Tensor
    nfe: int


def get_times_uniform(sde: SDE, num_steps: int, eps: float = 1e-3) -> torch.Tensor:
    """``(num_steps + 1,)`` float64 times evenly spaced from ``T`` down to ``eps``.

    Raises:
        ValueError: ``num_steps < 1`` or ``eps`` outside (0, T).
    """
    eps = sde.check_eps(eps)
    _check_steps(num_steps)
    return torch.linspace(sde.T, eps, int(num_steps) + 1, dtype=torch.float64)


def get_times_log_rho(sde: SDE, num_steps: int, eps: float = 1e-3) -> torch.Tensor:
    """``(num_steps + 1,)`` float64 times from ``T`` down to ``eps``, evenly spaced in ``log rho_t =
    log(sigma_t / alpha_t)`` (minus the half log-SNR): few-step ODE solves of VP models step evenly in it
    (Lu et al. 2022, DPM-Solver, Sec. 3.3).

    Raises:
        ValueError: ``num_steps < 1`` or ``eps`` outside (0, T).
    """
    eps = sde.check_eps(eps)
    _check_steps(num_steps)
    ends = torch.log(sde.rho(torch.tensor([sde.T, eps], dtype=torch.float64)))
    times = sde.rho_inverse(torch.exp(torch.linspace(ends[0].item(), ends[1].item(), int(num_steps) + 1,
                                                     dtype=torch.float64)))
    times[0], times[-1] = sde.T, eps
    return times


def _check_steps(num_steps) -> None:
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")


def _check(x_T: torch.Tensor, sde: SDE, times) -> torch.Tensor:
    """The checked grid ``(N + 1,)`` float64, decreasing from T to an end time in (0, T)."""
    if not torch.is_tensor(x_T) or x_T.dim() < 2 or x_T.shape[0] == 0:
        raise ValueError(f"x_T must be a non-empty batch (B, ...), got shape {tuple(getattr(x_T, 'shape', ()))}.")
    times = torch.as_tensor(times, dtype=torch.float64).flatten().cpu()
    if len(times) < 2 or not torch.isfinite(times).all() or (times.diff() >= 0).any():
        raise ValueError("times must be at least two finite times decreasing from T to the end time eps "
                         "(e.g. get_times_uniform(sde, num_steps, eps)).")
    if abs(times[0].item() - sde.T) > 1e-9:
        raise ValueError(f"times must start at T = {sde.T:g} (the prior), got {times[0].item():g}.")
    sde.check_eps(times[-1].item())
    return times


def _denoise(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, eps: float) -> torch.Tensor:
    t = torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype)
    return sde.tweedie_denoise(x, t, score_fn(x, t))


@torch.no_grad()
def sample_ode(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
    times: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    denoise: bool = True,
    progress: bool = True,
    method: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
) -> SamplerOutput:
    """Probability-flow ODE sampler (Song et al. ICLR 2021, eq. 13).

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        sde: the forward SDE.
        x_T: ``(B, *S)`` prior samples (e.g. :meth:`SDE.prior_sampling`).
        times: ``(N + 1,)`` from T down to the end time; an adaptive ``method`` solves from its first to its last
            time (``get_times_uniform(sde, 1, eps)`` is enough), a fixed-step one steps along it.
        generator: unused (the ODE is deterministic); accepted for the common signature.
        callback: called at every evaluation of the drift with ``{"i", "t", "x"}``.
        denoise: finish with Tweedie's denoising step.
        progress: show a progress bar over ODE time.
        method: a method of :data:`~scorezoo.likelihood.solvers.SOLVERS` that torchdiffeq has: adaptive
            (``"dopri5"``, ...) or fixed-step (``"rk4"``, ``"euler"``, ...).
        rtol, atol: tolerances of an adaptive method (default 1e-5); refused for a fixed-step one.

    Returns:
        :class:`SamplerOutput`.

    Raises:
        ValueError: bad ``x_T`` or ``times``, an unknown method, or tolerances for a fixed-step method.
    """
    times = _check(x_T, sde, times)
    eps = times[-1].item()
    if not get_solver(method).adaptive and (rtol is not None or atol is not None):
        raise ValueError(f"{method!r} steps along `times`, so rtol and atol do nothing: drop them, or choose an "
                         "adaptive method such as 'dopri5'.")
    b = x_T.shape[0]
    flow = ProbabilityFlow(score_fn, sde)
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
        if callback is not None:
            callback({"i": nfe - 1, "t": tb[0].item(), "x": x})
        return flow.drift(x, tb)

    # one step size for the batch (torchdiffeq): a sample's path need not be independent of its batch mates
    x = solve(func, x_T, times.to(x_T.dtype).to(x_T.device), method=method, backend="torchdiffeq", rtol=rtol,
              atol=atol)[-1]
    bar.close()
    if denoise:
        x = _denoise(score_fn, sde, x, eps)
        nfe += 1
    return SamplerOutput(x, nfe)


@torch.no_grad()
def sample_em(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
    times: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    denoise: bool = True,
    progress: bool = True,
) -> SamplerOutput:
    """Euler–Maruyama on the reverse-time SDE (Song et al. ICLR 2021, eq. 6), one step per interval of ``times``.

    Each step from ``t`` to ``t - h``: ``x <- x - [f x - g^2 s] h + g sqrt(h) z``. Arguments and errors as
    :func:`sample_ode`; ``generator`` draws the noise.
    """
    times = _check(x_T, sde, times).to(x_T.dtype).to(x_T.device)
    x, b = x_T, x_T.shape[0]
    for i in tqdm(range(len(times) - 1), disable=not progress, desc="Euler-Maruyama", leave=False):
        t, h = times[i].expand(b), times[i] - times[i + 1]
        g = bcast(sde.diffusion(t), x)
        x = x - sde.reverse_drift(x, t, score_fn(x, t)) * h + g * h.sqrt() * randn(x.shape, generator=generator,
                                                                                     device=x.device, dtype=x.dtype)
        if callback is not None:
            callback({"i": i, "t": times[i + 1].item(), "x": x})
    nfe = len(times) - 1
    if denoise:
        x, nfe = _denoise(score_fn, sde, x, times[-1].item()), nfe + 1
    return SamplerOutput(x, nfe)


@torch.no_grad()
def sample_pc(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
    times: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    denoise: bool = True,
    progress: bool = True,
    snr: float = 0.16,
    num_corrector_steps: int = 1,
) -> SamplerOutput:
    """Predictor–corrector sampler (Song et al. ICLR 2021, Alg. 1, App. G).

    Per interval of ``times``: ``num_corrector_steps`` Langevin corrections at time ``t`` with step
    ``2 a (snr ||z|| / ||s||)^2`` (norms averaged over the batch) (Alg. 4–5; ``a = 1 - beta(t) h`` for VP-type SDEs,
    1 for VE), then one reverse-diffusion predictor step to ``t - h``. ``snr`` is the signal-to-noise ratio of the
    corrector (0.16 is the paper's CIFAR-10 VE value; 0.01–0.1 suits VP). Other arguments and errors as
    :func:`sample_ode`.

    Raises:
        ValueError: also for ``snr < 0`` or ``num_corrector_steps < 0``.
    """
    times = _check(x_T, sde, times).to(x_T.dtype).to(x_T.device)
    if snr < 0 or num_corrector_steps < 0:
        raise ValueError("snr and num_corrector_steps must be >= 0.")
    x, b, nfe = x_T, x_T.shape[0], 0

    def noise():
        return randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    for i in tqdm(range(len(times) - 1), disable=not progress, desc="Predictor-corrector", leave=False):
        t, h = times[i].expand(b), times[i] - times[i + 1]
        # Langevin corrector; "a" is the discrete alpha of DDPM for beta-schedule SDEs
        a = 1 + 2 * sde.drift_coef(t) * h
        for _ in range(num_corrector_steps):
            s = score_fn(x, t)
            nfe += 1
            z = noise()
            # norms averaged over the batch, as in the paper's code: a per-sample ratio explodes where ||s|| ~ 0
            ratio = z.flatten(1).norm(dim=1).mean() / s.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            step = bcast(2 * a * (snr * ratio) ** 2, x)
            x = x + step * s + torch.sqrt(2 * step) * z
        # reverse-diffusion predictor
        g = bcast(sde.diffusion(t), x)
        x = x - sde.reverse_drift(x, t, score_fn(x, t)) * h + g * h.sqrt() * noise()
        nfe += 1
        if callback is not None:
            callback({"i": i, "t": times[i + 1].item(), "x": x})
    if denoise:
        x, nfe = _denoise(score_fn, sde, x, times[-1].item()), nfe + 1
    return SamplerOutput(x, nfe)


def sampling_times(sde: SDE, sampler: str, num_inference_steps: int | None, eps: float,
                   sampler_kwargs: dict) -> torch.Tensor:
    """The time grid of a sampler, from T down to ``eps``: for ``"ode"``, one interval for the adaptive solve when
    ``num_inference_steps`` is None, else that many fixed steps (rk4 unless ``sampler_kwargs["method"]`` names another
    fixed-step method; set in ``sampler_kwargs``); for ``"em"``/``"pc"``, ``num_inference_steps`` steps (default 1000).

    Raises:
        ValueError: ``num_inference_steps`` with an adaptive ODE method.
    """
    if sampler == "ode":
        if num_inference_steps is None:
            return get_times_uniform(sde, 1, eps)
        method = sampler_kwargs.setdefault("method", "rk4")
        if get_solver(method).adaptive:
            raise ValueError(f"num_inference_steps sets fixed steps, but method={method!r} is adaptive: drop one of "
                             "them.")
        return get_times_uniform(sde, num_inference_steps, eps)
    return get_times_uniform(sde, 1000 if num_inference_steps is None else num_inference_steps, eps)


SAMPLERS: dict[str, Callable[..., SamplerOutput]] = {"ode": sample_ode, "em": sample_em, "pc": sample_pc}


def get_sampler(name: str) -> Callable[..., SamplerOutput]:
    """The sampler called ``name`` (``"ode"``, ``"em"`` or ``"pc"``); ``ValueError`` otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}.")
    return SAMPLERS[name]
