"""``ScorePipeline``: load a score model, sample from it, and score data with exact log-likelihoods.

A pipeline folder (local, or a Hub repo) holds::

    pipeline_config.json      the SDE, eps, data shape, levels, data range, parameterisation
    network/config.json       the network's constructor arguments and class name
    network/model.safetensors its weights
    README.md                 the model card (optional)

The walk of one image is a straight line: ``data.to_levels`` (decode, resize, quantise) ->
``dequantization.uniform_dequantize`` -> ``likelihood.log_likelihood`` (probability-flow ODE with the
model's ``score_fn``) -> ``likelihood.bits_per_dim``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import __version__
from .data import levels_to_uint8, to_levels
from .dequantization import data_to_levels, uniform_dequantize
from .likelihood import (LikelihoodResult, LikelihoodSchedule, _calibrate, _check_schedule, bits_per_dim,
                         likelihood_bound, log_likelihood)
from .models import PARAMETERIZATIONS, ScoreModel, load_network, save_network
from .sampling import get_sampler
from .sde import SDE, get_sde
from .zoo import resolve_pretrained

__all__ = ["ScorePipeline", "ScorePipelineOutput", "BitsPerDimResult", "PIPELINE_CONFIG_NAME", "NETWORK_FOLDER"]

PIPELINE_CONFIG_NAME = "pipeline_config.json"
NETWORK_FOLDER = "network"


@dataclass
class ScorePipelineOutput:
    """Output of :meth:`ScorePipeline.__call__`.

    Attributes:
        images: for image models, a list of PIL images, an ``np.ndarray (B, H, W, C)`` or a tensor
            ``(B, C, H, W)``, values in [0, 1] for the last two (quantised to the model's levels);
            for flat data, the samples ``(B, D)`` in the data space.
        samples: ``(B, *S)`` raw samples in the model's data space (unclipped).
        nfe: score evaluations used.
    """

    images: Any
    samples: torch.Tensor
    nfe: int


@dataclass
class BitsPerDimResult:
    """Output of :meth:`ScorePipeline.bits_per_dim`.

    Attributes:
        bpd: ``(B,)`` bits/dim per image, the mean over ``num_repeats`` dequantization draws.
        stderr: ``(B,)`` standard error of that mean over the draws (NaN when ``num_repeats == 1``).
        nfe: ``(B,)`` ODE function evaluations of the solve that scored each image (all its draws are solved
            together, each with its own step size); 0 for the bound.
        bpd_repeats: ``(num_repeats, B)`` bits/dim of each draw.
        transforms: per image, the preprocessing applied (``"array"`` for integer arrays).
    """

    bpd: torch.Tensor
    stderr: torch.Tensor
    nfe: torch.Tensor
    bpd_repeats: torch.Tensor
    transforms: list[str] = field(default_factory=list)


class ScorePipeline:
    """A score-based model ready to sample and to score data.

    Args:
        network: a scorezoo network (``UNet2DModel`` or ``ScoreMLP``).
        sde: the forward SDE it was trained for.
        data_shape: shape of one sample, ``(C, H, W)`` for images or ``(D,)``.
        eps: time truncation for likelihoods (MLE paper: 1e-5 for VP).
        sampling_eps: end time of the samplers (Song et al.: 1e-3).
        num_levels: integer levels of the data (256 for 8-bit images, 17 for sklearn digits); ``None`` for
            continuous data, which has no bits/dim.
        data_range: ``(lo, hi)`` of the data space the network was trained on.
        parameterization: ``"epsilon"``, ``"x0"`` or ``"score"``.
        time_scale: the network sees ``time_scale * t``.
        time_label: ``"t"`` (the network sees ``time_scale * t``) or ``"sigma"`` (it sees sigma_t: the official VE
            models); see :class:`~scorezoo.models.ScoreModel`.
        extra_config: other JSON-able metadata kept in the config (e.g. dataset, training command).
        likelihood_schedule: a fixed step schedule for fast likelihoods (:meth:`calibrate_likelihood_schedule`),
            a :class:`~scorezoo.likelihood.LikelihoodSchedule` or its dict; used with ``schedule="calibrated"``.

    Raises:
        ValueError: inconsistent arguments.
    """

    def __init__(
        self,
        network: nn.Module,
        sde: SDE,
        *,
        data_shape: tuple[int, ...],
        eps: float = 1e-5,
        sampling_eps: float = 1e-3,
        num_levels: int | None = 256,
        data_range: tuple[float, float] = (-1.0, 1.0),
        parameterization: str = "epsilon",
        time_scale: float = 999.0,
        time_label: str = "t",
        extra_config: dict | None = None,
        likelihood_schedule: LikelihoodSchedule | dict | None = None,
    ):
        sde._check_eps(eps)
        sde._check_eps(sampling_eps)
        if num_levels is not None and int(num_levels) < 2:
            raise ValueError(f"num_levels must be >= 2 or None, got {num_levels}.")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}.")
        self.model = ScoreModel(network, sde, parameterization, time_scale, time_label).eval()
        self.sde = sde
        self.data_shape = tuple(int(v) for v in data_shape)
        self.eps = float(eps)
        self.sampling_eps = float(sampling_eps)
        self.num_levels = None if num_levels is None else int(num_levels)
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.parameterization = parameterization
        self.time_scale = float(time_scale)
        self.time_label = time_label
        self.extra_config = dict(extra_config or {})
        if likelihood_schedule is not None:
            likelihood_schedule = _check_schedule(likelihood_schedule, self.eps, sde.T)
        self.likelihood_schedule = likelihood_schedule

    # -- properties ------------------------------------------------------------------------------------
    @property
    def network(self) -> nn.Module:
        return self.model.network

    def _first_tensor(self) -> torch.Tensor:
        for t in (*self.network.parameters(), *self.network.buffers()):
            return t
        return torch.empty(0)

    @property
    def device(self) -> torch.device:
        return self._first_tensor().device

    @property
    def dtype(self) -> torch.dtype:
        return self._first_tensor().dtype

    @property
    def dim(self) -> int:
        """Dimensions per sample, D."""
        return math.prod(self.data_shape)

    @property
    def config(self) -> dict:
        """The JSON-serialisable pipeline config written to ``pipeline_config.json``."""
        return {
            "_class_name": type(self).__name__,
            "_scorezoo_version": __version__,
            "sde": self.sde.config(),
            "data_shape": list(self.data_shape),
            "eps": self.eps,
            "sampling_eps": self.sampling_eps,
            "num_levels": self.num_levels,
            "data_range": list(self.data_range),
            "parameterization": self.parameterization,
            "time_scale": self.time_scale,
            "time_label": self.time_label,
            **({"likelihood_schedule": self.likelihood_schedule.to_dict()} if self.likelihood_schedule else {}),
            **self.extra_config,
        }

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ScorePipeline":
        """Move the network (in place) and return the pipeline."""
        self.model.to(device=device, dtype=dtype)
        return self

    def __repr__(self) -> str:
        return f"ScorePipeline({json.dumps(self.config)})"

    # -- load / save -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "ScorePipeline":
        """Load a pipeline from a local folder, a short zoo name, a Hub repo id or a bundled copy.

        Args:
            name_or_path: a folder made by :meth:`save_pretrained`, ``"vp-mle-digits"``, or ``"owner/name"``.
            revision: Hub branch, tag or commit.
            device: where to put the network (default CPU).
            dtype: the network's dtype (default float32).

        Raises:
            scorezoo.zoo.ModelNotFoundError: nothing found under that name (a ``FileNotFoundError``).
            ValueError: a folder whose config or weights are missing, corrupt or do not match.
        """
        folder = resolve_pretrained(name_or_path, revision=revision)
        cfg_path = folder / PIPELINE_CONFIG_NAME
        if not cfg_path.is_file():
            raise ValueError(f"{folder} is not a scorezoo pipeline: {PIPELINE_CONFIG_NAME} is missing.")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{cfg_path} is not valid JSON: {e}") from None
        try:
            network = load_network(folder / NETWORK_FOLDER)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        known = {"data_shape", "eps", "sampling_eps", "num_levels", "data_range", "parameterization", "time_scale",
                 "time_label", "likelihood_schedule"}
        missing = {"sde", "data_shape"} - set(cfg)
        if missing:
            raise ValueError(f"{cfg_path} lacks {sorted(missing)}.")
        kwargs = {k: cfg[k] for k in known if k in cfg}
        extra = {k: v for k, v in cfg.items() if k not in known | {"sde"} and not k.startswith("_")}
        try:
            pipe = cls(network, get_sde(cfg["sde"]), extra_config=extra, **kwargs)
        except ValueError as e:
            raise ValueError(f"{cfg_path}: {e}") from None
        return pipe.to(device=device or "cpu", dtype=dtype)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write the pipeline folder (config + ``network/`` as config.json and model.safetensors)."""
        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / PIPELINE_CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        save_network(self.network, d / NETWORK_FOLDER)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload scorezoo pipeline", card: str | None = None) -> str:
        """Save to a temporary folder and upload it to the Hub repo ``repo_id`` (created if needed).

        Args:
            card: optional model-card Markdown written as README.md.

        Returns:
            The URL of the commit.
        """
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            if card is not None:
                Path(tmp, "README.md").write_text(card)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        return str(getattr(info, "commit_url", info))

    # -- the score ------------------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        if not torch.is_tensor(x):
            raise ValueError(f"{what} must be a torch.Tensor of shape (B, {', '.join(map(str, self.data_shape))}).")
        if tuple(x.shape[1:]) != self.data_shape or x.dim() != len(self.data_shape) + 1:
            raise ValueError(f"{what} has shape {tuple(x.shape)}; this model takes (B, "
                             f"{', '.join(map(str, self.data_shape))}).")
        if x.shape[0] == 0:
            raise ValueError(f"{what} is an empty batch: give at least one sample.")
        if not x.is_floating_point():
            raise ValueError(f"{what} must be floating point in the data range {self.data_range}, got {x.dtype}; "
                             "for integer images use bits_per_dim().")
        if not torch.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or inf values.")
        return x.to(device=self.device, dtype=self.dtype)

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``score_fn(x, t)`` with checked input: ``x: (B, *S)``, ``t`` a float or ``(B,)`` in [eps, T].

        Raises:
            ValueError: wrong shape, NaN/inf, or ``t`` outside [eps, T].
        """
        x = self._check_x(x)
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a float or shape ({x.shape[0]},), got {tuple(t.shape)}.")
        if not torch.isfinite(t).all() or t.min() < self.eps or t.max() > self.sde.T:
            raise ValueError(f"t must lie in [eps, T] = [{self.eps:g}, {self.sde.T:g}]; got values in "
                             f"[{t.min().item():g}, {t.max().item():g}].")
        with torch.no_grad():
            return self.model(x, t)

    # -- sampling --------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        *,
        sampler: str = "ode",
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        denoise: bool = True,
        progress: bool = True,
        **sampler_kwargs,
    ) -> ScorePipelineOutput:
        """Draw ``batch_size`` samples.

        Args:
            batch_size: number of samples, >= 1.
            sampler: ``"ode"`` (probability flow, adaptive), ``"em"`` (Euler–Maruyama) or ``"pc"``
                (predictor–corrector).
            num_steps: steps of ``em``/``pc`` (default 1000); for ``ode``, ``None`` is adaptive.
            generator: seeds the prior draw and the sampler's noise.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` (see :class:`ScorePipelineOutput`).
            denoise: finish with Tweedie's denoising step.
            progress: show a progress bar.
            sampler_kwargs: passed to the sampler (``snr``, ``rtol``, ...).

        Raises:
            ValueError: bad batch size, sampler, steps or output type.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}.")
        is_image = len(self.data_shape) == 3
        if output_type == "pil" and not is_image:
            raise ValueError("output_type='pil' needs an image model; this one has data shape "
                             f"{self.data_shape}: use 'np' or 'pt'.")
        fn = get_sampler(sampler)
        x_T = self.sde.prior_sampling((int(batch_size), *self.data_shape), generator=generator,
                                      dtype=self.dtype).to(self.device)
        out = fn(self.model, self.sde, x_T, num_steps=num_steps, eps=self.sampling_eps, generator=generator,
                 denoise=denoise, progress=progress, **sampler_kwargs)
        x = out.samples
        if not is_image:
            images = x.cpu().numpy() if output_type == "np" else x
            return ScorePipelineOutput(images=images, samples=x, nfe=out.nfe)
        k = self.num_levels or 256
        levels = data_to_levels(x, num_levels=k, data_range=self.data_range)
        if output_type == "pt":
            images = levels.float() / (k - 1)
        else:
            u8 = levels_to_uint8(levels, k)
            if output_type == "np":
                images = u8.astype(np.float32) / 255.0
            else:
                images = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in u8]
        return ScorePipelineOutput(images=images, samples=x, nfe=out.nfe)

    # -- likelihoods -----------------------------------------------------------------------------------
    def log_likelihood(self, x: torch.Tensor, **kwargs) -> LikelihoodResult:
        """Exact ``log p_eps(x)`` in nats of points ``x: (B, *S)`` in the data space, by the probability-flow
        ODE; keyword arguments as :func:`scorezoo.likelihood.log_likelihood` (``eps`` defaults to the
        model's). ``schedule="calibrated"`` takes the fixed steps of :attr:`likelihood_schedule`
        (44 evaluations on ``vp-mle-digits`` instead of about 460 at the default tolerances).

        Raises:
            ValueError: wrong shape, NaN/inf, empty batch, bad options, ``schedule="calibrated"`` on a model
                without a calibrated schedule.
        """
        x = self._check_x(x)
        kwargs.setdefault("eps", self.eps)
        if isinstance(kwargs.get("schedule"), str):
            if kwargs["schedule"] != "calibrated":
                raise ValueError(f"schedule must be 'calibrated', a LikelihoodSchedule or None; "
                                 f"got {kwargs['schedule']!r}.")
            if self.likelihood_schedule is None:
                raise ValueError("this model has no calibrated likelihood schedule: run "
                                 "pipe.calibrate_likelihood_schedule(x) on data like yours, or leave schedule unset "
                                 "for the adaptive solver.")
            kwargs["schedule"] = self.likelihood_schedule
        return log_likelihood(self.model, self.sde, x, **kwargs)

    def calibrate_likelihood_schedule(self, x: torch.Tensor, **kwargs) -> LikelihoodSchedule:
        """Calibrate, keep (as :attr:`likelihood_schedule`, saved by :meth:`save_pretrained`) and return a fixed
        step schedule for fast likelihoods of data like ``x``.

        Args:
            x: ``(B, *S)`` points in the data space, e.g. dequantized training images
                (:func:`scorezoo.dequantization.uniform_dequantize`); 16 to 64 are plenty.
            kwargs: as :func:`scorezoo.likelihood.calibrate_schedule` (``target`` in bits/dim, default 0.002 as
                for the zoo; ``criterion`` ``"rms"`` or ``"mean"``; ``measure=False`` to decide on the step-doubling
                estimate alone, faster); ``eps`` is the model's.

        Raises:
            ValueError: wrong shape, NaN/inf, empty batch, bad options, an ``eps`` other than the model's.

        Raises (also):
            ValueError: integer dtype or points outside the model's data range (integer levels instead of
                dequantized data).

        Warns:
            UserWarning: as :func:`scorezoo.likelihood.calibrate_schedule`; a schedule that stopped at
                ``max_steps`` above its target is returned but not kept.
        """
        dequantize = ("dequantize integer levels first: scorezoo.dequantization.uniform_dequantize(levels, "
                      f"num_levels={self.num_levels}, data_range={tuple(self.data_range)})")
        if torch.is_tensor(x) and not x.is_floating_point():
            raise ValueError(f"calibration needs points in the model's data space, got integer dtype {x.dtype}; "
                             f"{dequantize}.")
        x = self._check_x(x)
        if "eps" in kwargs:
            try:
                other = abs(float(kwargs["eps"]) - self.eps) > 1e-6 * self.eps
            except (TypeError, ValueError):
                raise ValueError(f"eps must be a number, got {kwargs['eps']!r}.") from None
            if other:
                raise ValueError(f"the pipeline computes likelihoods at its eps = {self.eps:g}, so its schedule must "
                                 f"start there; got eps = {kwargs['eps']}. Use scorezoo.likelihood.calibrate_schedule "
                                 "for another eps.")
        kwargs["eps"] = self.eps
        lo, hi = self.data_range
        if self.num_levels is not None and (x.min() < lo - 0.1 * (hi - lo) or x.max() > hi + 0.1 * (hi - lo)):
            raise ValueError(f"x spans [{x.min().item() + 0.0:.3g}, {x.max().item():.3g}], outside the model's data "
                             f"range [{lo:g}, {hi:g}]: {dequantize}.")
        sch, error = _calibrate(self.model, self.sde, x, **kwargs)
        if error > sch.target:
            warnings.warn(f"the calibration stopped at max_steps with an error of {error:.3g} bits/dim "
                          f"({sch.criterion}) > target {sch.target:g}; raise max_steps or the target. The pipeline "
                          "keeps its previous likelihood_schedule; the new one is only returned.", stacklevel=2)
        else:
            self.likelihood_schedule = sch
        return sch

    def bits_per_dim(
        self,
        images: Any,
        *,
        num_repeats: int = 1,
        divergence: str = "hutchinson",
        generator: torch.Generator | None = None,
        estimator: str = "ode",
        batch_size: int = 64,
        **kwargs,
    ) -> BitsPerDimResult:
        """Bits/dim of integer images under the model, with uniform dequantization.

        For each of ``num_repeats`` draws ``u``, the images' levels ``k`` become ``x = lo + (hi-lo)(k+u)/K``
        and ``bpd = (-log p_eps(x) - D log((hi-lo)/K)) / (D ln 2)`` (see
        :func:`scorezoo.likelihood.bits_per_dim`); the result is the mean over draws and its standard error.

        Args:
            images: integer array ``(B, H, W)``, ``(B, H, W, C)`` or ``(B, C, H, W)`` of levels in
                [0, num_levels), PIL images, or file paths (converted as in :mod:`scorezoo.data`).
            num_repeats: dequantization draws per image (>= 1).
            divergence: ``"hutchinson"`` or ``"exact"`` (ODE only).
            generator: seeds dequantization noise and probes: the same seed gives the same answer.
            estimator: ``"ode"`` (exact likelihood) or ``"bound"`` (the MLE paper's upper bound; ``kwargs``
                as :func:`scorezoo.likelihood.likelihood_bound`).
            batch_size: images per solve; a solve holds all ``num_repeats`` draws of its images.
            kwargs: passed to :func:`scorezoo.likelihood.log_likelihood` (``rtol``, ``atol``, ``num_probes``,
                ``method``, ``options``...).

        Returns:
            :class:`BitsPerDimResult`.

        Raises:
            ValueError: a continuous-data model, bad images (shape, values, unreadable files), bad options.
        """
        if self.num_levels is None:
            raise ValueError("this model is for continuous data (num_levels is None): bits/dim of integer data "
                             "does not apply; use log_likelihood().")
        if int(num_repeats) < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
        if estimator not in ("ode", "bound"):
            raise ValueError(f"estimator must be 'ode' or 'bound', got {estimator!r}.")
        levels, transforms = to_levels(images, data_shape=self.data_shape, num_levels=self.num_levels)
        b, r = levels.shape[0], int(num_repeats)
        # all draws first, so that one solve holds every draw of its images (the solver steps per sample)
        x = torch.stack([uniform_dequantize(levels, num_levels=self.num_levels, data_range=self.data_range,
                                            generator=generator, dtype=self.dtype) for _ in range(r)], 1)
        bpd = torch.empty(b, r, dtype=torch.float64)
        nfe = torch.zeros(b, dtype=torch.long)
        for sl in torch.arange(b).split(int(batch_size)):
            xb = x[sl].flatten(0, 1).to(self.device)
            if estimator == "ode":
                res = self.log_likelihood(xb, divergence=divergence, generator=generator, **kwargs)
                logp = res.logp
                nfe[sl] += res.nfe
            else:
                kwargs.setdefault("eps", self.eps)
                logp = -likelihood_bound(self.model, self.sde, xb, generator=generator, **kwargs).nll
            bpd[sl] = bits_per_dim(logp.double().cpu(), self.dim, num_levels=self.num_levels,
                                   data_range=self.data_range).view(len(sl), r)
        bpd = bpd.T
        mean = bpd.mean(0)
        stderr = bpd.std(0) / math.sqrt(num_repeats) if num_repeats > 1 else torch.full((b,), float("nan"))
        return BitsPerDimResult(bpd=mean, stderr=stderr.double(), nfe=nfe, bpd_repeats=bpd, transforms=transforms)
