"""Forward SDEs of score-based generative modelling.

Three SDEs of Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations"
(ICLR 2021, eqs. 9, 11 and the sub-VP SDE of Sec. 4.3), with what likelihood training needs from
Song, Durkan, Murray & Ermon, "Maximum Likelihood Training of Score-Based Generative Models"
(NeurIPS 2021, hereafter *MLE*): the likelihood weighting lambda(t) = g(t)^2 (MLE Thm. 1) and the
importance-sampling proposal q(t) proportional to g(t)^2 / sigma_t^2 (MLE Sec. 5.1).

Conventions for every SDE here:

* time runs on [0, T] with T = 1; tensors ``x`` are ``(B, *S)``; times ``t`` are ``(B,)``;
* every SDE is linear, ``dx = f(t) x dt + g(t) dw``, so the transition kernel is Gaussian:
  ``p_0t(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I)`` and :meth:`SDE.marginal_prob` returns
  ``(alpha_t x_0, sigma_t)``;
* log-densities are in nats.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from .utils import bcast, rand, randn

__all__ = ["SDE", "VPSDE", "SubVPSDE", "VESDE", "get_sde", "SDE_TYPES"]


def _as_time(t: torch.Tensor | float, x: torch.Tensor | None = None) -> torch.Tensor:
    """Turn ``t`` (float or tensor) into a tensor on ``x``'s device."""
    if not torch.is_tensor(t):
        t = torch.tensor(float(t))
    if x is not None:
        t = t.to(device=x.device, dtype=x.dtype if x.is_floating_point() else t.dtype)
    return t


def _log_expm1(b: torch.Tensor) -> torch.Tensor:
    """log(e^b - 1) for b > 0, accurate for small and large b."""
    return b + torch.log(-torch.expm1(-b))


class SDE(ABC):
    """A linear forward SDE ``dx = f(t) x dt + g(t) dw`` on [0, T], T = 1.

    Subclasses give the scalar drift coefficient ``f(t)``, the diffusion ``g(t)`` and the
    transition kernel's ``(alpha_t, sigma_t)``. Everything a likelihood or a loss needs
    follows from those.
    """

    T: float = 1.0
    #: short name used in configs (``"vp"``, ``"subvp"``, ``"ve"``)
    name: str = ""

    # -- coefficients (all take and return ``(B,)`` or scalar tensors) -----------------------------
    @abstractmethod
    def drift_coef(self, t: torch.Tensor) -> torch.Tensor:
        """``f(t)`` such that the drift is ``f(t) x``."""

    @abstractmethod
    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """``g(t)``, the diffusion coefficient."""

    @abstractmethod
    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` of the kernel ``p_0t(x_t|x_0) = N(alpha_t x_0, sigma_t^2 I)``."""

    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the prior ``pi = N(0, prior_std^2 I)``."""

    @property
    @abstractmethod
    def config(self) -> dict:
        """A JSON-serialisable dict that :func:`get_sde` turns back into this SDE (``{"type": "vp", ...}``)."""

    # -- the interface of the field ----------------------------------------------------------------
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift and diffusion of the forward SDE.

        Args:
            x: ``(B, *S)`` state.
            t: ``(B,)`` times in [0, T].

        Returns:
            ``(drift, diffusion)``: drift ``(B, *S)`` = f(t) x and diffusion ``(B,)`` = g(t).
        """
        t = _as_time(t, x)
        return bcast(self.drift_coef(t), x) * x, self.diffusion(t)

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the transition kernel ``p_0t(x_t | x_0 = x)``.

        Args:
            x: ``(B, *S)`` data at time 0.
            t: ``(B,)`` times in [0, T].

        Returns:
            ``(mean, std)``: mean ``(B, *S)`` = alpha_t x, std ``(B,)`` = sigma_t.
        """
        t = _as_time(t, x)
        alpha, sigma = self.alpha_sigma(t)
        return bcast(alpha, x) * x, sigma

    def reverse_drift(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Drift of the reverse-time SDE, ``f(t) x - g(t)^2 s(x, t)`` (Song et al. ICLR 2021, eq. 6; Anderson 1982):
        the reverse SDE runs ``dx = [f(t) x - g(t)^2 s] dt + g(t) dw-bar`` from T down to 0.

        Args:
            x: ``(B, *S)`` state; t: ``(B,)`` times; score: ``(B, *S)`` the score ``s(x, t)``.

        Returns:
            ``(B, *S)``.
        """
        t = _as_time(t, x)
        return bcast(self.drift_coef(t), x) * x - bcast(self.diffusion(t) ** 2, x) * score

    def probability_flow_drift(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Drift of the probability-flow ODE, ``dx/dt = f(t) x - g(t)^2 s(x, t) / 2`` (Song et al. ICLR 2021,
        eq. 13): the deterministic process with the SDE's marginals p_t.

        Args:
            x: ``(B, *S)`` state; t: ``(B,)`` times; score: ``(B, *S)`` the score ``s(x, t)``.

        Returns:
            ``(B, *S)``.
        """
        t = _as_time(t, x)
        return bcast(self.drift_coef(t), x) * x - 0.5 * bcast(self.diffusion(t) ** 2, x) * score

    def tweedie_denoise(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """``E[x_0 | x_t = x] = (x + sigma_t^2 s(x, t)) / alpha_t``, Tweedie's formula (Efron 2011) for the Gaussian
        kernel: the samplers' last denoising step and the decoder mean of the likelihood bound (MLE App. C).

        Args:
            x: ``(B, *S)`` state at time t; t: ``(B,)`` times; score: ``(B, *S)`` the score at ``(x, t)``.

        Returns:
            ``(B, *S)`` the posterior mean of the clean data.
        """
        t = _as_time(t, x)
        alpha, sigma = self.alpha_sigma(t)
        return (x + bcast(sigma**2, x) * score) / bcast(alpha, x)

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x_t = alpha_t x_0 + sigma_t z``, a draw of the kernel ``p_0t(x_t | x_0)`` from the noise ``z``.

        Args:
            x0: ``(B, *S)`` data at time 0; t: ``(B,)`` times; z: ``(B, *S)`` standard normal noise.

        Returns:
            ``(B, *S)``.
        """
        mean, sigma = self.marginal_prob(x0, t)
        return mean + bcast(sigma, x0) * z

    def dsm_residual(self, score: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The denoising score-matching residual ``sigma_t s(x_t, t) + z`` of ``x_t = alpha_t x_0 + sigma_t z``:
        since ``grad log p_0t(x_t | x_0) = -z / sigma_t``, the weighted loss ``lambda(t) ||s - grad log p_0t||^2`` is
        ``lambda(t) / sigma_t^2 ||residual||^2`` (MLE eq. 7; Vincent 2011). Zero for the ideal conditional score.

        Args:
            score: ``(B, *S)`` the model's score at ``(x_t, t)``; t: ``(B,)`` times; z: ``(B, *S)`` the noise.

        Returns:
            ``(B, *S)``.
        """
        t = _as_time(t, z)
        return bcast(self.alpha_sigma(t)[1], z) * score + z

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Draw ``x_T ~ pi = N(0, prior_std^2 I)`` of shape ``shape`` = ``(B, *S)``."""
        if generator is not None and device is None:
            device = generator.device
        return randn(shape, generator=generator, device=device, dtype=dtype) * self.prior_std()

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of the prior ``pi = N(0, prior_std^2 I)``.

        Args:
            z: ``(B, *S)``.

        Returns:
            ``(B,)`` log pi(z) in nats.
        """
        d = z[0].numel()
        s2 = self.prior_std() ** 2
        sq = z.flatten(1).pow(2).sum(1)
        return -0.5 * d * math.log(2 * math.pi * s2) - 0.5 * sq / s2

    def rho(self, t: torch.Tensor) -> torch.Tensor:
        """Noise-to-signal ratio ``rho_t = sigma_t / alpha_t`` ``(B,)``: the noise level of ``y = x / alpha_t``
        (Karras et al. 2022's sigma; the log-SNR is ``-2 log rho``). Increasing in t."""
        alpha, sigma = self.alpha_sigma(t)
        return sigma / alpha

    @abstractmethod
    def rho_inverse(self, rho: torch.Tensor) -> torch.Tensor:
        """The time ``t`` with ``rho_t = rho`` (closed form), ``(B,)``."""

    def likelihood_weighting(self, t: torch.Tensor) -> torch.Tensor:
        """The likelihood weighting lambda(t) = g(t)^2 (MLE Thm. 1), shape ``(B,)``."""
        return self.diffusion(t) ** 2

    # -- importance-sampled time (MLE Sec. 5.1) ------------------------------------------------------
    def _is_cdf(self, t: torch.Tensor) -> torch.Tensor:
        """An antiderivative of g(t)^2 / sigma_t^2; subclasses override with a closed form."""
        raise NotImplementedError

    def _is_cdf_inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def importance_normalizer(self, eps: float) -> float:
        """``Z = int_eps^T g(t)^2 / sigma_t^2 dt``, the normaliser of the proposal q(t)."""
        self.check_eps(eps)
        t = torch.tensor([eps, self.T], dtype=torch.float64)
        c = self._is_cdf(t)
        return float(c[1] - c[0])

    def importance_density(self, t: torch.Tensor, eps: float) -> torch.Tensor:
        """Density ``q(t) = g(t)^2 / (sigma_t^2 Z)`` of the proposal on [eps, T], shape ``(B,)``."""
        _, sigma = self.alpha_sigma(t)
        return self.diffusion(t) ** 2 / sigma**2 / self.importance_normalizer(eps)

    def sample_importance_weighted_time(
        self,
        batch_size: int,
        eps: float,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        u: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``t ~ q(t)`` proportional to g(t)^2 / sigma_t^2 on [eps, T] by inverting its CDF.

        With this proposal the likelihood-weighted denoising loss
        ``g^2 ||s - grad log p_0t||^2 / q(t)`` becomes ``Z * ||sigma_t s + z||^2``: the
        epsilon-prediction loss times a constant (MLE Sec. 5.1).

        Args:
            batch_size: number of times B.
            eps: lower end of the time interval, in (0, T).
            generator: optional random generator.
            device: device of the output.
            u: optional ``(B,)`` uniforms in [0, 1) to push through the inverse CDF (e.g. stratified).

        Returns:
            ``(t, weight)``: ``t`` ``(B,)`` float32 in [eps, T] and ``weight`` ``(B,)`` = 1/q(t),
            so that ``mean(weight * h(t))`` is an unbiased estimate of ``int_eps^T h(t) dt``.

        Raises:
            ValueError: if ``eps`` is not in (0, T).
        """
        self.check_eps(eps)
        if u is None:
            u = rand(batch_size, generator=generator, dtype=torch.float64)
        u = u.to(torch.float64).cpu()
        lo = self._is_cdf(torch.tensor(eps, dtype=torch.float64))
        hi = self._is_cdf(torch.tensor(self.T, dtype=torch.float64))
        t = self._is_cdf_inverse(lo + u * (hi - lo)).clamp(eps, self.T)
        weight = 1.0 / self.importance_density(t, eps)
        return t.float().to(device), weight.float().to(device)

    def check_eps(self, eps: float) -> float:
        """Check a time truncation and return it as a float.

        Raises:
            ValueError: ``eps`` is not a number in (0, T).
        """
        try:
            ok = 0.0 < float(eps) < self.T and not isinstance(eps, bool)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"eps (time truncation) must be a number in (0, {self.T}), got {eps!r}.")
        return float(eps)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config.items() if k != "type")
        return f"{type(self).__name__}({args})"


class _BetaSchedule(SDE):
    """Shared linear beta schedule: beta(t) = b0 + (b1 - b0) t, B(t) = int_0^t beta."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 <= beta_min < beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}.")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def int_beta(self, t: torch.Tensor) -> torch.Tensor:
        """B(t) = beta_min t + (beta_max - beta_min) t^2 / 2."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def _int_beta_inverse(self, b: torch.Tensor) -> torch.Tensor:
        """Solve B(t) = b for t >= 0 (the positive root of the quadratic)."""
        d = self.beta_max - self.beta_min
        # (-b0 + sqrt(b0^2 + 2 d b)) / d written without cancellation for small b
        return 2 * b / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * b))

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def prior_std(self) -> float:
        return 1.0

    @property
    def config(self) -> dict:
        return {"type": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max}


class VPSDE(_BetaSchedule):
    """Variance-preserving SDE ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dw`` (Song et al. 2021, eq. 11).

    ``alpha_t = exp(-B(t)/2)``, ``sigma_t^2 = 1 - exp(-B(t))``, prior N(0, I).
    Importance sampling: ``g^2/sigma^2 = d/dt log(e^{B(t)} - 1)``, inverted in closed form.
    """

    name = "vp"

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))

    def alpha_sigma(self, t):
        b = self.int_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def _is_cdf(self, t):
        return _log_expm1(self.int_beta(t))

    def rho_inverse(self, rho):
        # rho^2 = e^B - 1
        return self._int_beta_inverse(torch.log1p(rho**2))

    def _is_cdf_inverse(self, y):
        # e^B - 1 = e^y  =>  B = softplus(y)
        return self._int_beta_inverse(torch.nn.functional.softplus(y))


class SubVPSDE(_BetaSchedule):
    """Sub-VP SDE ``dx = -beta/2 x dt + sqrt(beta (1 - e^{-2B(t)})) dw`` (Song et al. 2021, eq. 17).

    ``alpha_t = exp(-B/2)``, ``sigma_t = 1 - exp(-B)``, prior N(0, I).
    Importance sampling: ``g^2/sigma^2 = d/dt [2 log(e^B - 1) - B] = d/dt 2 log(2 sinh(B/2))``,
    inverted in closed form: ``B = 2 asinh(e^{y/2} / 2)``.
    """

    name = "subvp"

    def diffusion(self, t):
        return torch.sqrt(self.beta(t) * -torch.expm1(-2 * self.int_beta(t)))

    def alpha_sigma(self, t):
        b = self.int_beta(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)

    def _is_cdf(self, t):
        b = self.int_beta(t)
        return 2 * _log_expm1(b) - b

    def rho_inverse(self, rho):
        # rho = (1 - e^-B) e^{B/2} = 2 sinh(B/2)
        return self._int_beta_inverse(2 * torch.asinh(0.5 * rho))

    def _is_cdf_inverse(self, y):
        return self._int_beta_inverse(2 * torch.asinh(0.5 * torch.exp(0.5 * y)))


class VESDE(SDE):
    """Variance-exploding SDE ``dx = sqrt(d sigma^2/dt) dw``, sigma(t) = s_min (s_max/s_min)^t
    (Song et al. 2021, eq. 9).

    ``alpha_t = 1``, ``sigma_t = sigma(t)`` (the convention of the paper's code, which neglects
    sigma_min^2 against the data), prior N(0, sigma_max^2 I).
    ``g^2/sigma^2 = 2 log(s_max/s_min)`` is constant, so the importance proposal is uniform t.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}.")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coef(self, t):
        return torch.zeros_like(t)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def alpha_sigma(self, t):
        return torch.ones_like(t), self.sigma(t)

    def prior_std(self) -> float:
        return self.sigma_max

    def _is_cdf(self, t):
        return 2 * self._log_ratio * t

    def rho_inverse(self, rho):
        return torch.log(rho / self.sigma_min) / self._log_ratio

    def _is_cdf_inverse(self, y):
        return y / (2 * self._log_ratio)

    @property
    def config(self) -> dict:
        return {"type": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


SDE_TYPES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def get_sde(config: dict | str) -> SDE:
    """Build an SDE from its config (``{"type": "vp", "beta_min": 0.1, ...}``) or its name.

    Raises:
        ValueError: unknown type or parameters.
    """
    if isinstance(config, str):
        config = {"type": config}
    config = dict(config)
    kind = str(config.pop("type", "")).lower().replace("-", "").replace("_", "")
    if kind not in SDE_TYPES:
        raise ValueError(f"unknown SDE type {kind!r}; choose one of {sorted(SDE_TYPES)}.")
    try:
        return SDE_TYPES[kind](**config)
    except TypeError as e:
        raise ValueError(f"bad parameters for the {kind} SDE: {config} ({e}).") from None
