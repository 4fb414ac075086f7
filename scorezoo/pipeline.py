"""``ScorePipeline``: load a score model, sample from it, and score data with exact log-likelihoods.

A pipeline folder (local, or a Hub repo) holds::

    pipeline_config.json      the SDE, eps, data shape, levels, data range, parameterisation
    network/config.json                          the network's class name and constructor arguments
    network/diffusion_pytorch_model.safetensors  its weights (diffusers' names: plain diffusers loads them too)
    dequantizer/config.json, dequantizer/diffusion_pytorch_model.safetensors
                                                 a variational dequantizer (optional)
    README.md                                    the model card (optional)

The walk of one image is a straight line: ``data.to_levels`` (decode, resize, quantise) ->
``dequantization`` (uniform noise, or ``u ~ q(u | k)`` of the variational dequantizer) -> ``likelihood.log_likelihood``
(probability-flow ODE with the model's ``score_fn``) -> ``dequantization.bits_per_dim``.
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
from .dequantization import bits_per_dim, data_to_levels, dequantize
from .likelihood import (LikelihoodResult, LikelihoodSchedule, calibrate_schedule, check_schedule, likelihood_bound,
                         log_likelihood)
from .likelihood.ode import ADAPTIVE_METHODS, short_repr
from .models import PARAMETERIZATIONS, ScoreModel, load_network, save_network
from .sampling import get_sampler, get_times_uniform
from .sde import SDE, get_sde
from .utils import Generators, check_batch, check_generator, generator_rows, rand
from .zoo import resolve_pretrained

__all__ = ["ScorePipeline", "ScorePipelineOutput", "BitsPerDimResult", "PIPELINE_CONFIG_NAME", "NETWORK_FOLDER",
           "DEQUANTIZER_FOLDER", "DEQUANTIZATIONS"]

PIPELINE_CONFIG_NAME = "pipeline_config.json"
NETWORK_FOLDER = "network"
DEQUANTIZER_FOLDER = "dequantizer"
#: the dequantizations :meth:`ScorePipeline.bits_per_dim` takes
DEQUANTIZATIONS = ("uniform", "variational")


@dataclass(repr=False)
class ScorePipelineOutput:
    """Output of :meth:`ScorePipeline.__call__`.

    Attributes:
        images: for image models, a list of PIL images, an ``np.ndarray (B, H, W, C)`` or a tensor
            ``(B, C, H, W)``, values in [0, 1] for the last two (quantised to the model's levels; either can be
            passed back to :meth:`ScorePipeline.bits_per_dim`); for flat data, the samples ``(B, D)`` in the data
            space.
        samples: ``(B, *S)`` raw samples in the model's data space (unclipped).
        nfe: score evaluations used.
    """

    images: Any
    samples: torch.Tensor
    nfe: int

    __repr__ = short_repr


@dataclass(repr=False)
class BitsPerDimResult:
    """Output of :meth:`ScorePipeline.bits_per_dim`: one entry per image.

    An image is scored as one model-size input (resized if needed) or, when tiled, as the mean over its
    model-size patches at its own resolution; a patch's bits/dim is the mean over ``num_repeats`` dequantization
    draws.

    Attributes:
        bpd: ``(B,)`` bits/dim per image (a tiled image's mean over its patches, i.e. its total bits over the pixels
            scored).
        stderr: ``(B,)`` standard error of ``bpd``: over the draws for an untiled image (NaN when
            ``num_repeats == 1``), over the patches for a tiled one. It covers the dequantization noise and, with
            Hutchinson's divergence, the probe noise (each draw has its own probe).
        nfe: ``(B,)`` score evaluations of the solve that scored the image (the largest over its solves when
            tiled; one evaluation scores every sample of a solve once); 0 for the bound.
        bpd_repeats: ``(num_repeats, B)`` bits/dim of each draw (a tiled image's mean over its patches).
        transforms: per image, the preprocessing applied, and for a tiled image how it was tiled.
        num_patches: ``(B,)`` patches scored per image (1 when not tiled).
        pixels_scored: ``(B,)`` pixels scored per image (the model's H × W when not tiled).
        times: ``(N,)`` the ODE times of ``bpd_path`` (with ``times=`` or a schedule), else ``None``.
        bpd_path: ``(N, num_repeats, B)``: the bits/dim the probability flow has accounted for by each of ``times``
            (the divergence integral from eps, in bits/dim, a tiled image's mean over its patches), else ``None``.
        bits_maps: with ``per_dimension=True``, per image the bits of each dimension ``(C, H', W')`` at the scored
            size (mean over the draws); their mean is ``bpd``. Else ``None``.
    """

    bpd: torch.Tensor
    stderr: torch.Tensor
    nfe: torch.Tensor
    bpd_repeats: torch.Tensor
    transforms: list[str] = field(default_factory=list)
    num_patches: torch.Tensor | None = None
    pixels_scored: torch.Tensor | None = None
    times: torch.Tensor | None = None
    bpd_path: torch.Tensor | None = None
    bits_maps: list[torch.Tensor] | None = None

    __repr__ = short_repr


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
        dequantizer: a :class:`~scorezoo.dequantization.variational.VariationalDequantizer` trained for this model
            (``train/train_dequantizer.py``), used by ``bits_per_dim(..., dequantization="variational")``.

    Raises:
        ValueError: inconsistent arguments (a dequantizer for other data).
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
        dequantizer: nn.Module | None = None,
    ):
        sde.check_eps(eps)
        sde.check_eps(sampling_eps)
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
            likelihood_schedule = check_schedule(likelihood_schedule, self.eps, sde.T)
        self.likelihood_schedule = likelihood_schedule
        self.dequantizer = dequantizer
        self._progress_bar_config: dict = {}

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
    def dequantizer(self) -> nn.Module | None:
        """The variational dequantizer used by ``bits_per_dim(..., dequantization="variational")``, or ``None``.
        Setting it checks that it was made for this model's data shape and levels (else ``ValueError``)."""
        return self._dequantizer

    @dequantizer.setter
    def dequantizer(self, dequantizer: nn.Module | None) -> None:
        if dequantizer is not None:
            cfg = dequantizer.config
            if self.num_levels is None or tuple(cfg.data_shape) != self.data_shape or \
                    int(cfg.num_levels) != self.num_levels:
                raise ValueError(f"the dequantizer is for data of shape {tuple(cfg.data_shape)} with "
                                 f"{cfg.num_levels} levels; this model takes {self.data_shape} with "
                                 f"{self.num_levels} levels.")
            dequantizer = dequantizer.eval()
        self._dequantizer = dequantizer

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
            "sde": self.sde.config,
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
        """Move the network and the dequantizer (in place) and return the pipeline."""
        self.model.to(device=device, dtype=dtype)
        if self.dequantizer is not None:
            # nn.Module's own to(): diffusers' ModelMixin.to warns about float32 modules whenever dtype is passed
            nn.Module.to(self.dequantizer, device=device, dtype=dtype)
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        """Options of the progress bars (tqdm's keyword arguments, e.g. ``disable=True``), as in diffusers."""
        self._progress_bar_config = dict(kwargs)

    def __repr__(self) -> str:
        return f"ScorePipeline({json.dumps(self.config)})"

    # -- load / save -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        device: torch.device | str | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> "ScorePipeline":
        """Load a pipeline from a local folder, a short zoo name, a Hub repo id or a bundled copy.

        Args:
            name_or_path: a folder made by :meth:`save_pretrained`, ``"vp-mle-digits"``, or ``"owner/name"``.
            revision: Hub branch, tag or commit.
            device: where to put the network (default CPU).
            torch_dtype: the network's dtype (default float32).

        A ``dequantizer/`` subfolder, when there is one, is loaded too (the classes of
        :data:`scorezoo.dequantization.variational.DEQUANTIZERS` only, safetensors only).

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
        dequantizer = None
        if (folder / DEQUANTIZER_FOLDER).is_dir():
            from .dequantization import load_dequantizer

            try:
                dequantizer = load_dequantizer(folder / DEQUANTIZER_FOLDER)
            except FileNotFoundError as e:
                raise ValueError(str(e)) from None
        try:
            pipe = cls(network, get_sde(cfg["sde"]), extra_config=extra, dequantizer=dequantizer, **kwargs)
        except ValueError as e:
            raise ValueError(f"{cfg_path}: {e}") from None
        return pipe.to(device=device or "cpu", dtype=torch_dtype)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write the pipeline folder: ``pipeline_config.json``, ``network/`` and, with a dequantizer,
        ``dequantizer/`` (diffusers' ``save_pretrained``: ``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / PIPELINE_CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        save_network(self.network, d / NETWORK_FOLDER)
        if self.dequantizer is not None:
            self.dequantizer.save_pretrained(str(d / DEQUANTIZER_FOLDER), safe_serialization=True)

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
        shape = ", ".join(map(str, self.data_shape))
        if torch.is_tensor(x) and (tuple(x.shape[1:]) != self.data_shape or x.dim() != len(self.data_shape) + 1):
            raise ValueError(f"{what} has shape {tuple(x.shape)}; this model takes (B, {shape}).")
        if torch.is_tensor(x) and x.dim() > 1 and not x.is_floating_point():
            raise ValueError(f"{what} must be floating point in the data range {self.data_range}, got {x.dtype}; "
                             "for integer images use bits_per_dim().")
        check_batch(x, what)
        return x.to(device=self.device, dtype=self.dtype)

    def _check_in_range(self, x: torch.Tensor) -> None:
        """Points of an integer-data model must lie in its data range (with a 10 % margin): values far outside
        (e.g. 8-bit values) are a mistake, not a question the model can answer."""
        lo, hi = self.data_range
        if self.num_levels is None:
            return
        if x.min() < lo - 0.1 * (hi - lo) or x.max() > hi + 0.1 * (hi - lo):
            raise ValueError(f"x spans [{x.min().item() + 0.0:.3g}, {x.max().item():.3g}], outside the model's data "
                             f"range [{lo:g}, {hi:g}]: log_likelihood takes dequantized points in the data space; "
                             "for images or integer levels use bits_per_dim().")

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
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        sampler: str = "ode",
        denoise: bool = True,
        callback=None,
        **sampler_kwargs,
    ) -> ScorePipelineOutput | tuple:
        """Draw ``batch_size`` samples.

        Args:
            batch_size: number of samples, >= 1.
            num_inference_steps: steps of ``em``/``pc`` (default 1000) or of a fixed-step ODE solve (rk4 unless
                ``method=`` names another fixed-step method); for ``ode``, ``None`` solves adaptively (dopri5).
            generator: seeds the prior draw and the sampler's noise.
            output_type: ``"pil"``, ``"np"`` or ``"pt"`` (see :class:`ScorePipelineOutput`).
            return_dict: return a :class:`ScorePipelineOutput` (else the tuple ``(images,)``).
            sampler: ``"ode"`` (probability flow), ``"em"`` (Euler–Maruyama) or ``"pc"`` (predictor–corrector).
            denoise: finish with Tweedie's denoising step.
            callback: called after every step (see :mod:`scorezoo.sampling`).
            sampler_kwargs: passed to the sampler (``snr``, ``rtol``, ``method``, ...).

        Raises:
            ValueError: bad batch size, sampler, steps or output type, or sampler options that conflict (an adaptive
                ``method`` with ``num_inference_steps``).
        """
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}.")
        is_image = len(self.data_shape) == 3
        if output_type == "pil" and not is_image:
            raise ValueError("output_type='pil' needs an image model; this one has data shape "
                             f"{self.data_shape}: use 'np' or 'pt'.")
        fn = get_sampler(sampler)
        if sampler == "ode":
            if num_inference_steps is None:
                times = get_times_uniform(self.sde, 1, self.sampling_eps)
            else:
                if sampler_kwargs.get("method", "rk4") in ADAPTIVE_METHODS:
                    raise ValueError(f"num_inference_steps sets fixed steps, but method={sampler_kwargs['method']!r} "
                                     "is adaptive: drop one of them.")
                sampler_kwargs.setdefault("method", "rk4")
                times = get_times_uniform(self.sde, num_inference_steps, self.sampling_eps)
        else:
            times = get_times_uniform(self.sde, 1000 if num_inference_steps is None else num_inference_steps,
                                      self.sampling_eps)
        x_T = self.sde.prior_sampling((int(batch_size), *self.data_shape), generator=generator,
                                      dtype=self.dtype).to(self.device)
        out = fn(self.model, self.sde, x_T, times, generator=generator, denoise=denoise, callback=callback,
                 progress=not self._progress_bar_config.get("disable", False), **sampler_kwargs)
        x = out.samples
        if not is_image:
            images = x.cpu().numpy() if output_type == "np" else x
        else:
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
        if not return_dict:
            return (images,)
        return ScorePipelineOutput(images=images, samples=x, nfe=out.nfe)

    # -- likelihoods -----------------------------------------------------------------------------------
    def log_likelihood(self, x: torch.Tensor, **kwargs) -> LikelihoodResult:
        """``log p_eps(x)`` in nats of points ``x: (B, *S)`` in the data space, by the probability-flow ODE; keyword
        arguments as :func:`scorezoo.likelihood.log_likelihood` (``eps`` defaults to the model's; the default
        divergence is Hutchinson's one-probe estimate, ``divergence="exact"`` for the exact one).
        ``schedule="calibrated"`` takes the fixed steps of :attr:`likelihood_schedule` (44 evaluations on
        ``vp-mle-digits`` instead of about 460 at the default tolerances).

        Raises:
            ValueError: wrong shape, NaN/inf, empty batch, points of an integer-data model far outside its data range,
                bad or conflicting options, ``schedule="calibrated"`` on a model without a calibrated schedule.
        """
        x = self._check_x(x)
        self._check_in_range(x)
        return self._log_likelihood(x, **kwargs)

    def _log_likelihood(self, x: torch.Tensor, **kwargs) -> LikelihoodResult:
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
            ValueError: wrong shape, NaN/inf, empty batch, bad options, an ``eps`` other than the model's, integer
                dtype or points outside the model's data range (integer levels instead of dequantized data).

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
        with warnings.catch_warnings():
            # said below, with what the pipeline does about it
            warnings.filterwarnings("ignore", message="calibrate_schedule stopped at max_steps")
            sch = calibrate_schedule(self.model, self.sde, x, **kwargs)
        if not sch.target_met:
            warnings.warn(f"the calibration stopped at max_steps above its target {sch.target:g} bits/dim "
                          f"({sch.criterion}); raise max_steps or the target. The pipeline keeps its previous "
                          "likelihood_schedule; the new one is only returned.", stacklevel=2)
        else:
            self.likelihood_schedule = sch
        return sch

    @property
    def tiles_larger_images(self) -> bool:
        """Whether the model scores pictures larger than itself tile by tile by default (models of photo patches:
        ``"tile_larger_images": true`` in the config)."""
        return bool(self.extra_config.get("tile_larger_images", False))

    def _inputs(self, images: Any, tile: bool | None, invert: bool) -> list[tuple[torch.Tensor, str, tuple | None]]:
        """Each image as ``(patches (N, *S) levels, transform, grid or None)``: one resized input, or its tiles."""
        from .data import is_picture, load_image, tile_levels

        if tile is True and not is_picture(images):
            raise ValueError("tile=True needs pictures (file paths or PIL images), not arrays of levels.")
        if tile is False or not is_picture(images) or (tile is None and not self.tiles_larger_images):
            levels, transforms = to_levels(images, data_shape=self.data_shape, num_levels=self.num_levels,
                                           invert=invert)
            return [(levels[i:i + 1], transforms[i], None) for i in range(len(levels))]
        if len(self.data_shape) != 3:
            raise ValueError(f"this model's data are not images (shape {self.data_shape}): pass an array.")
        items = [images] if not isinstance(images, (list, tuple)) else list(images)
        if not items:
            raise ValueError("empty batch: give at least one image.")
        c, h, w = self.data_shape
        out = []
        for item in items:
            full = load_image(item, data_shape=self.data_shape, num_levels=self.num_levels, invert=invert,
                              resize=False)
            if tile or (full.levels.shape[1] >= h and full.levels.shape[2] >= w):
                tiles = tile_levels(full.levels, (h, w))
                out.append((tiles.patches, f"{full.transform}; tiled at its own resolution: {tiles.border}",
                            tiles.grid))
            else:
                li = load_image(item, data_shape=self.data_shape, num_levels=self.num_levels, invert=invert)
                out.append((li.levels[None], li.transform, None))
        return out

    @torch.no_grad()
    def _variational_draws(self, levels: torch.Tensor, v: torch.Tensor,
                           max_batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``u ~ q(u | k)`` from the uniform draws ``v: (N, R, *S)`` of levels ``(N, *S)``, ``max_batch_size`` at a
        time: ``(u (N, R, *S), log q (N, R, *S))``, ``log q`` per dimension in nats (float64)."""
        k = levels[:, None].expand(v.shape).flatten(0, 1)
        flat = v.flatten(0, 1)
        u, log_q = torch.empty_like(flat), torch.empty(flat.shape, dtype=torch.float64)
        for sl in torch.arange(len(flat)).split(max_batch_size):
            ub, lb = self.dequantizer(k[sl].to(self.device), flat[sl].to(self.device, self.dequantizer.dtype))
            u[sl], log_q[sl] = ub.to(u.device, u.dtype), lb.double().cpu()
        return u.view(v.shape), log_q.view(v.shape)

    def bits_per_dim(
        self,
        images: Any,
        *,
        num_repeats: int = 1,
        divergence: str = "hutchinson",
        generator: Generators = None,
        estimator: str = "ode",
        max_batch_size: int = 64,
        tile: bool | None = None,
        invert: bool = False,
        dequantization: str = "uniform",
        **kwargs,
    ) -> BitsPerDimResult:
        """Bits/dim of integer images under the model, with uniform or variational dequantization.

        For each of ``num_repeats`` draws ``u``, the images' levels ``k`` become ``x = lo + (hi-lo)(k+u)/K``
        and ``bpd = (-log p_eps(x) + log q(u | k) - D log((hi-lo)/K)) / (D ln 2)`` (see
        :func:`scorezoo.dequantization.bits_per_dim`); the result is the mean over draws and its standard error.
        With ``dequantization="uniform"``, ``u ~ U[0, 1)^D`` and ``log q = 0`` (Theis et al. 2016); with
        ``"variational"``, ``u ~ q(u | k)`` of the model's :attr:`dequantizer` (Ho et al. 2019, Flow++, eq. 11; MLE
        paper, Sec. 6). Either mean is an upper bound on the image's bits/dim under the model's discrete distribution
        up to the solver's error (estimated without bias with Hutchinson's divergence), the variational one tighter
        when q is good. Both draw the same uniform numbers from ``generator`` (q transforms them), so the same seed
        gives paired answers.

        A tiled picture is cut at its own resolution into model-size patches (no resize; the remainder strips at the
        right and bottom are cropped, see :func:`scorezoo.data.tile_levels`), every patch is scored, and its bits/dim
        is the mean over the patches: an upper bound on the bits a lossless coder built on this model would need for
        those pixels, patch by patch.

        Args:
            images: integer levels ``(B, H, W)``, ``(B, H, W, C)`` or ``(B, C, H, W)`` in [0, num_levels), images
                in [0, 1] as :meth:`__call__` returns them with ``output_type="pt"`` or ``"np"`` (quantised to the
                nearest level), PIL images, or file paths (converted as in :mod:`scorezoo.data`).
            num_repeats: dequantization draws per image (or patch), >= 1.
            divergence: ``"hutchinson"`` or ``"exact"`` (ODE only).
            generator: seeds dequantization noise and probes: the same seed gives the same answer. One generator
                serves the whole call; a list of ``B * num_repeats`` generators gives each image's draw its own:
                ``generator[i * num_repeats + j]`` draws image ``i``'s ``j``-th dequantization noise and then its
                probes (those of all its patches, in order, when tiled), so an image's numbers do not depend on the
                other images of the call, their number or ``max_batch_size`` (beyond float rounding of batched
                kernels) (used by :func:`scorezoo.evaluation.evaluate`).
            estimator: ``"ode"`` (the probability-flow likelihood) or ``"bound"`` (the MLE paper's upper bound;
                ``kwargs`` as :func:`scorezoo.likelihood.likelihood_bound`).
            max_batch_size: at most this many dequantized inputs (image or patch × draw) per solve; a solve holds all
                ``num_repeats`` draws of its inputs.
            tile: pictures only: ``True`` tiles every picture, ``False`` resizes every picture to the model's size,
                ``None`` (default) tiles those at least as large as the model when the model tiles by default
                (:attr:`tiles_larger_images`), and resizes the rest.
            invert: pictures only: map each value ``v`` in [0, 1] to ``1 - v`` (see :func:`scorezoo.data.load_image`).
            dequantization: ``"uniform"`` or ``"variational"`` (needs a model with a :attr:`dequantizer`; with
                ``per_dimension=True`` each dimension's map also carries its share of ``log q``).
            kwargs: passed to :func:`scorezoo.likelihood.log_likelihood` (``schedule="calibrated"``, ``rtol``,
                ``atol``, ``num_probes``, ``method``, ``options``, ``times``, ``per_dimension``...).

        Returns:
            :class:`BitsPerDimResult`.

        Raises:
            ValueError: a continuous-data model, bad images (shape, values, unreadable files, a picture smaller than
                one patch with ``tile=True``), bad options, ``"variational"`` for a model without a dequantizer.
        """
        from tqdm.auto import tqdm

        if self.num_levels is None:
            raise ValueError("this model is for continuous data (num_levels is None): bits/dim of integer data "
                             "does not apply; use log_likelihood().")
        if isinstance(num_repeats, bool) or int(num_repeats) != num_repeats or num_repeats < 1:
            raise ValueError(f"num_repeats must be an integer >= 1, got {num_repeats!r}.")
        if estimator not in ("ode", "bound"):
            raise ValueError(f"estimator must be 'ode' or 'bound', got {estimator!r}.")
        if dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, got {dequantization!r}.")
        if dequantization == "variational" and self.dequantizer is None:
            raise ValueError("this model has no variational dequantizer: train one with python "
                             "train/train_dequantizer.py --pretrained <model> (docs/dequantization.md), or use "
                             "dequantization='uniform'.")
        if isinstance(max_batch_size, bool) or int(max_batch_size) != max_batch_size or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}.")
        inputs = self._inputs(images, tile, invert)
        owner = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, (p, _, _) in enumerate(inputs)])
        levels = torch.cat([p for p, _, _ in inputs])
        n, b, r = len(levels), len(inputs), int(num_repeats)
        check_generator(generator, b * r)
        # all draws first, so that one solve holds every draw of its inputs; with per-draw generators, row (p, j) of
        # the noise (input p, draw j) is drawn from generator[owner[p] * r + j]
        v = torch.stack([rand(levels.shape, generator=generator_rows(generator, owner * r + j), device=levels.device,
                              dtype=self.dtype) for j in range(r)], 1)
        if dequantization == "variational":
            u, log_q = self._variational_draws(levels, v, int(max_batch_size))
        else:
            u, log_q = v, None
        x = dequantize(levels[:, None], u, num_levels=self.num_levels, data_range=self.data_range)
        bpd = torch.empty(n, r, dtype=torch.float64)
        nfe = torch.zeros(n, dtype=torch.long)
        per_dim, paths, times = [], [], None
        nats_per_bit = self.dim * math.log(2)
        off = bits_per_dim(torch.zeros(1, dtype=torch.float64), self.dim, num_levels=self.num_levels,
                           data_range=self.data_range).item()  # the dequantization offset, bits per dimension
        chunks = torch.arange(n).split(max(1, int(max_batch_size) // r))
        bar = tqdm(chunks, desc="bits/dim", unit="solve", delay=1.0, leave=False,
                   **{"disable": len(chunks) < 2, **self._progress_bar_config})
        for sl in bar:
            xb = x[sl].flatten(0, 1).to(self.device)
            gen = generator_rows(generator, (owner[sl, None] * r + torch.arange(r)).flatten())
            if estimator == "ode":
                res = self._log_likelihood(xb, divergence=divergence, generator=gen, **kwargs)
                logp, nfe[sl] = res.logp, res.nfe
                if res.logp_per_dim is not None:
                    pd = -res.logp_per_dim.double().cpu() / math.log(2) + off
                    if log_q is not None:
                        pd = pd + log_q[sl].flatten(0, 1) / math.log(2)
                    per_dim.append(pd.view(len(sl), r, *self.data_shape).mean(1))
                if res.delta_logp_path is not None:
                    times = res.times.cpu()
                    paths.append((-res.delta_logp_path.double().cpu() / nats_per_bit).view(-1, len(sl), r))
            else:
                kwargs.setdefault("eps", self.eps)
                logp = -likelihood_bound(self.model, self.sde, xb, generator=gen, **kwargs).nll
            lq = None if log_q is None else log_q[sl].flatten(2).sum(2).flatten()
            bpd[sl] = bits_per_dim(logp.double().cpu(), self.dim, num_levels=self.num_levels,
                                   data_range=self.data_range, log_q=lq).view(len(sl), r)
        # per image: the mean over its patches
        count = torch.bincount(owner, minlength=b).double()

        def per_image(v: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (b, ...)
            return torch.zeros(b, *v.shape[1:], dtype=torch.float64).index_add_(0, owner, v.double()) / \
                count.view(-1, *([1] * (v.dim() - 1)))

        repeats = per_image(bpd).T
        mean = repeats.mean(0)
        patch_mean = bpd.mean(1)
        spread = per_image((patch_mean - mean[owner]) ** 2) * count / (count - 1).clamp_min(1)
        stderr = torch.where(count > 1, (spread / count).sqrt(),
                             repeats.std(0) / math.sqrt(r) if r > 1 else torch.full((b,), float("nan")))
        maps = None
        if per_dim:
            from .data import untile

            per_dim = torch.cat(per_dim)
            maps = [untile(per_dim[owner == i], grid) if grid else per_dim[owner == i][0]
                    for i, (_, _, grid) in enumerate(inputs)]
        path = per_image(torch.cat(paths, 1).permute(1, 2, 0)).permute(2, 1, 0) if paths else None
        pixels = math.prod(self.data_shape[1:]) if len(self.data_shape) == 3 else 1
        return BitsPerDimResult(
            bpd=mean, stderr=stderr.double(),
            nfe=torch.zeros(b, dtype=torch.long).scatter_reduce(0, owner, nfe, "amax"),
            bpd_repeats=repeats, transforms=[t for _, t, _ in inputs], num_patches=count.long(),
            pixels_scored=count.long() * pixels,
            times=times, bpd_path=path, bits_maps=maps)
