"""The likelihood bound of Song, Durkan, Murray & Ermon (NeurIPS 2021, Thm. 3): an upper bound on ``-log p(x)`` from
the score alone, without solving an ODE.

With the likelihood weighting ``lambda(t) = g(t)^2`` the denoising score-matching objective is this bound up to a
constant, which is why training on it is maximum-likelihood training (MLE paper, Thm. 1 and eq. 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..sde import SDE
from ..utils import Generators, ScoreFn, check_batch, check_generator, generator_rows, rand, randn
from .ode import short_repr

__all__ = ["likelihood_bound", "BoundResult"]


@dataclass(repr=False)
class BoundResult:
    """Result of :func:`likelihood_bound`; all values ``(B,)`` in nats.

    Attributes:
        nll: the upper bound on ``-log p(x)``.
        stderr: Monte Carlo standard error of ``nll`` (the time points are stratified, so this is conservative).
        prior_term: ``E[-log pi(x_T)]``, ``x_T ~ p_0T(.|x)`` (closed form).
        diffusion_term: the time integral over [eps, T].
        decoder_term: ``E[-log N(x; mean, var)] - H(p_0eps(.|x))`` for [0, eps].
    """

    nll: torch.Tensor
    stderr: torch.Tensor
    prior_term: torch.Tensor
    diffusion_term: torch.Tensor
    decoder_term: torch.Tensor

    __repr__ = short_repr


def likelihood_bound(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    eps: float = 1e-5,
    num_time_points: int = 1000,
    num_decoder_samples: int = 16,
    generator: Generators = None,
    network_batch_size: int = 4096,
    max_batch_size: int | None = None,
) -> BoundResult:
    """Upper bound on ``-log p(x)`` for data ``x`` at time 0 (MLE paper, Thm. 3, denoising form).

    ``-log p(x) <= prior + diffusion + decoder`` with

    * prior ``= E[-log pi(x_T)]``, ``x_T ~ N(alpha_T x, sigma_T^2 I)``, in closed form;
    * diffusion ``= 1/2 int_eps^T E[g^2 ||s - grad log p_0t||^2 - g^2 ||grad log p_0t||^2 - 2 div f] dt``
      with ``grad log p_0t(x_t|x) = -z / sigma_t``. The first term is estimated with ``t`` drawn from the
      proposal ``q(t)`` proportional to ``g^2/sigma^2`` (uniform for VE, where that ratio is constant),
      stratified over ``num_time_points`` strata, which turns it into ``Z ||sigma_t s + z||^2 / 2``; the other
      two are integrated in closed form: ``-D Z / 2`` and ``-D log(alpha_T / alpha_eps)``;
    * decoder ``= E_{x_eps}[-log N(x; (x_eps + sigma^2 s(x_eps, eps)) / alpha, (sigma/alpha)^2 I)]
      - H(N(alpha x, sigma^2 I))`` at ``t = eps``: the variational step from ``p_eps`` back to data
      (Tweedie's mean as decoder).

    Args:
        score_fn: ``(B, *S), (B,) -> (B, *S)``.
        sde: any :mod:`scorezoo.sde` SDE.
        x: ``(B, *S)`` data in the model's data space.
        eps: time truncation in (0, T).
        num_time_points: Monte Carlo time points per sample.
        num_decoder_samples: draws of ``x_eps`` per sample for the decoder term.
        generator: source of the time points and noises: one generator, or a list of B, one per sample, each
            drawing its sample's time points and noises alone.
        network_batch_size: at most this many (sample, time) pairs through the network at once.
        max_batch_size: its name in scorezoo 0.1 (still taken).

    Returns:
        :class:`BoundResult`, values ``(B,)`` in nats. When ``x`` requires grad (and grad mode is on), ``nll`` is
        differentiable with respect to ``x``, through the score too (to train a variational dequantizer on the bound);
        otherwise no graph is recorded.

    Raises:
        ValueError: bad ``x``, ``eps`` outside (0, T), or ``num_time_points < 1``.
    """
    network_batch_size = max_batch_size or network_batch_size
    check_batch(x)
    eps = sde.check_eps(eps)
    check_generator(generator, len(x))
    if num_time_points < 1 or num_decoder_samples < 1:
        raise ValueError("num_time_points and num_decoder_samples must be >= 1.")
    b, d = x.shape[0], x[0].numel()
    dev, dt = x.device, x.dtype
    grad = torch.is_grad_enabled() and x.requires_grad

    # prior term, closed form: E||x_T||^2 = alpha_T^2 ||x||^2 + sigma_T^2 D
    tT = torch.tensor([sde.T], dtype=torch.float64)
    a_T, s_T = (v.item() for v in sde.alpha_sigma(tT))
    s_p2 = sde.prior_std() ** 2
    sq = x.flatten(1).pow(2).sum(1).double()
    prior_term = 0.5 * d * math.log(2 * math.pi * s_p2) + (a_T**2 * sq + s_T**2 * d) / (2 * s_p2)

    # diffusion term: stratified importance-sampled time for the score term
    n = num_time_points
    u = torch.arange(n, dtype=torch.float64).repeat(b) + \
        rand((b, n), generator=generator, dtype=torch.float64).cpu().flatten()
    u = u / n
    t_all, w_all = sde.sample_importance_weighted_time(b * n, eps, u=u, device=dev)
    idx_all = torch.arange(b, device=dev).repeat_interleave(n)
    vals = torch.empty(b * n, dtype=torch.float64, device=dev)
    with torch.set_grad_enabled(grad):
        for sl in torch.arange(b * n, device=dev).split(network_batch_size):
            t, w, xi = t_all[sl].to(dt), w_all[sl].double(), x[idx_all[sl]]
            z = randn(xi.shape, generator=generator_rows(generator, idx_all[sl]), device=dev, dtype=dt)
            xt = sde.perturb(xi, t, z)
            g2_over_s2 = (sde.diffusion(t) ** 2 / sde.alpha_sigma(t)[1] ** 2).double()
            residual = sde.dsm_residual(score_fn(xt, t), t, z)
            vals[sl] = 0.5 * w * g2_over_s2 * residual.flatten(1).pow(2).sum(1).double()
    vals = vals.view(b, n)
    z_norm = sde.importance_normalizer(eps)
    a_eps, s_eps = (v.item() for v in sde.alpha_sigma(torch.tensor([eps], dtype=torch.float64)))
    const = -0.5 * d * z_norm - d * math.log(a_T / a_eps)
    diffusion_term = vals.mean(1) + const
    stderr = vals.std(1) / math.sqrt(n) if n > 1 else torch.full((b,), float("nan"), dtype=torch.float64)

    # decoder term at eps (Tweedie mean), minus the entropy of p_0eps(.|x)
    m = num_decoder_samples
    with torch.set_grad_enabled(grad):
        xr = x.repeat_interleave(m, 0)
        z = randn(xr.shape, generator=generator_rows(generator, torch.arange(b).repeat_interleave(m)), device=dev,
                  dtype=dt)
        te = torch.full((b * m,), eps, dtype=dt, device=dev)
        x_eps = a_eps * xr + s_eps * z
        s = torch.cat([score_fn(x_eps[sl], te[sl]) for sl in torch.arange(b * m, device=dev).split(network_batch_size)])
        mean = sde.tweedie_denoise(x_eps, te, s)
        var = (s_eps / a_eps) ** 2
        nll_dec = 0.5 * d * math.log(2 * math.pi * var) + (xr - mean).flatten(1).pow(2).sum(1).double() / (2 * var)
    entropy = 0.5 * d * math.log(2 * math.pi * math.e * s_eps**2)
    decoder_term = nll_dec.view(b, m).mean(1) - entropy

    nll = prior_term + diffusion_term + decoder_term
    return BoundResult(nll=nll.to(dt), stderr=stderr.to(dt), prior_term=prior_term.to(dt),
                       diffusion_term=diffusion_term.to(dt), decoder_term=decoder_term.to(dt))
