"""``ScorePipeline``: load a score model, sample from it, and score data with exact log-likelihoods.

A pipeline folder (local, or a Hub repo) holds ``pipeline_config.json``, ``network/``, optionally ``dequantizer/``
and a model card ``README.md`` (:mod:`scorezoo.pipeline_utils`). Scoring pictures walks a straight line, written in
:mod:`scorezoo.scoring`: ``data`` (decode, resize or tile, quantise) -> ``dequantization`` (uniform noise, or
``u ~ q(u | k)`` of the variational dequantizer) -> ``likelihood`` (probability-flow ODE with the model's
``score_fn``) -> bits/dim.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .data import levels_to_images
from .dequantization import data_to_levels
from .likelihood import (LikelihoodResult, LikelihoodSchedule, calibrate_schedule, check_schedule, log_likelihood)
from .likelihood.ode import short_repr
from .models import PARAMETERIZATIONS, ScoreModel
from .sampling import get_sampler, sampling_times
from .sde import SDE
from .utils import Generators
from .pipeline_utils import (DEQUANTIZER_FOLDER, NETWORK_FOLDER, PIPELINE_CONFIG_NAME, PictureTiling,
                             check_in_data_range, check_points, push_folder_to_hub, read_pipeline_folder,
                             resolve_schedule, write_pipeline_folder)
from .scoring import DEQUANTIZATIONS, BitsPerDimResult, ScoringPlan, plan_from_options, score_images
from .zoo import resolve_pretrained

__all__ = ["ScorePipeline", "ScorePipelineOutput", "BitsPerDimResult", "PIPELINE_CONFIG_NAME", "NETWORK_FOLDER",
           "DEQUANTIZER_FOLDER", "DEQUANTIZATIONS"]


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


class ScorePipeline(PictureTiling):
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
            (``python -m scorezoo.training --task dequantizer``), used by
            ``bits_per_dim(..., dequantization="variational")``.

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
        return {"_class_name": type(self).__name__, "_scorezoo_version": __version__, "sde": self.sde.config,
                "data_shape": list(self.data_shape), "eps": self.eps, "sampling_eps": self.sampling_eps,
                "num_levels": self.num_levels, "data_range": list(self.data_range),
                "parameterization": self.parameterization, "time_scale": self.time_scale, "time_label": self.time_label,
                **({"likelihood_schedule": self.likelihood_schedule.to_dict()} if self.likelihood_schedule else {}),
                **self.extra_config}

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

    @property
    def progress_bar_config(self) -> dict:
        """The options set by :meth:`set_progress_bar_config`."""
        return dict(self._progress_bar_config)

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
        network, sde, kwargs = read_pipeline_folder(folder)
        try:
            pipe = cls(network, sde, **kwargs)
        except ValueError as e:
            raise ValueError(f"{folder / PIPELINE_CONFIG_NAME}: {e}") from None
        return pipe.to(device=device or "cpu", dtype=torch_dtype)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write the pipeline folder: ``pipeline_config.json``, ``network/`` and, with a dequantizer,
        ``dequantizer/`` (diffusers' ``save_pretrained``: ``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
        write_pipeline_folder(save_directory, self.config, self.network, self.dequantizer)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload scorezoo pipeline", card: str | None = None) -> str:
        """Save to a temporary folder and upload it to the Hub repo ``repo_id`` (created if needed).

        Args:
            card: optional model-card Markdown written as README.md.

        Returns:
            The URL of the commit.
        """
        return push_folder_to_hub(self.save_pretrained, repo_id, private=private, token=token,
                                  commit_message=commit_message, card=card)

    # -- the score ------------------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        check_points(x, self.data_shape, self.data_range, what)
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
        times = sampling_times(self.sde, sampler, num_inference_steps, self.sampling_eps, sampler_kwargs)
        x_T = self.sde.prior_sampling((int(batch_size), *self.data_shape), generator=generator,
                                      dtype=self.dtype).to(self.device)
        out = fn(self.model, self.sde, x_T, times, generator=generator, denoise=denoise, callback=callback,
                 progress=not self._progress_bar_config.get("disable", False), **sampler_kwargs)
        x = out.samples
        if not is_image:
            images = x.cpu().numpy() if output_type == "np" else x
        else:
            images = levels_to_images(data_to_levels(x, num_levels=self.num_levels or 256, data_range=self.data_range),
                                      self.num_levels or 256, output_type)
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
        check_in_data_range(x, self.data_range, self.num_levels)
        return self._log_likelihood(x, **kwargs)

    def _log_likelihood(self, x: torch.Tensor, **kwargs) -> LikelihoodResult:
        kwargs.setdefault("eps", self.eps)
        if "schedule" in kwargs:
            kwargs["schedule"] = resolve_schedule(kwargs["schedule"], self.likelihood_schedule)
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
        check_in_data_range(x, self.data_range, self.num_levels, dequantize)
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

    def bits_per_dim(
        self,
        images: Any,
        *,
        plan: ScoringPlan | None = None,
        generator: Generators = None,
        invert: bool = False,
        times: torch.Tensor | None = None,
        num_repeats: int = 1,
        divergence: str | None = None,
        estimator: str = "ode",
        max_batch_size: int = 64,
        tile: bool | None = None,
        dequantization: str = "uniform",
        schedule: str | None = None,
        per_dimension: bool = False,
        **solver_options,
    ) -> BitsPerDimResult:
        """Bits/dim of integer images under the model, with uniform or variational dequantization: the
        probability-flow likelihood (or the MLE paper's bound) of each dequantization draw, averaged over the draws,
        and over the patches of a picture tiled at its own resolution (:func:`scorezoo.scoring.score_images`, where
        the formula and its sources are). Either dequantization gives an upper bound on the image's bits/dim under
        the model's discrete distribution, up to the solver's error, the variational one tighter when its q is good.

        The options make a :class:`~scorezoo.scoring.ScoringPlan` (:meth:`ScoringPlan.create
        <scorezoo.scoring.ScoringPlan.create>` checks them together; the library's defaults are the adaptive solver,
        one draw and Hutchinson's divergence); or pass ``plan=`` and none of them.

        Args:
            images: integer levels ``(B, H, W)``, ``(B, H, W, C)`` or ``(B, C, H, W)`` in [0, num_levels), images
                in [0, 1] as :meth:`__call__` returns them with ``output_type="pt"`` or ``"np"`` (quantised to the
                nearest level), PIL images, or file paths (converted as in :mod:`scorezoo.data`).
            plan: a :class:`~scorezoo.scoring.ScoringPlan` for this model (then give none of the options below).
            generator: seeds dequantization noise and probes: the same seed gives the same answer. One generator
                serves the whole call; a list of ``B * num_repeats`` generators gives each image's draw its own:
                ``generator[i * num_repeats + j]`` draws image ``i``'s ``j``-th dequantization noise and then its
                probes (those of all its patches, in order, when tiled), so an image's numbers do not depend on the
                other images of the call, their number or ``max_batch_size`` (beyond float rounding of batched
                kernels) (:func:`scorezoo.scoring.draw_generators`).
            invert: pictures only: map each value ``v`` in [0, 1] to ``1 - v`` (see :func:`scorezoo.data.load_image`).
            times: ODE times at which to report the bits/dim accounted for so far (``bpd_path``).
            num_repeats: dequantization draws per image (or patch), >= 1.
            divergence: ``"hutchinson"`` (default for the ODE), ``"exact"`` or ``"auto"`` (ODE only: the bound takes
                none; see :meth:`ScoringPlan.create <scorezoo.scoring.ScoringPlan.create>`).
            estimator: ``"ode"`` (the probability-flow likelihood) or ``"bound"`` (the MLE paper's upper bound;
                ``num_time_points``, ``num_decoder_samples`` as :func:`scorezoo.likelihood.likelihood_bound`).
            max_batch_size: at most this many dequantized inputs (image or patch × draw) per solve; a solve holds all
                ``num_repeats`` draws of its inputs.
            tile: pictures only: ``True`` tiles every picture, ``False`` resizes every picture to the model's size,
                ``None`` (default) tiles those at least as large as the model when the model tiles by default
                (:attr:`tiles_larger_images`), and resizes the rest.
            dequantization: ``"uniform"`` or ``"variational"`` (needs a model with a :attr:`dequantizer`; with
                ``per_dimension=True`` each dimension's map also carries its share of ``log q``).
            schedule: ``"calibrated"``: the fixed steps of :attr:`likelihood_schedule` (default: the adaptive
                solver).
            per_dimension: also return each image's bits per dimension (``bits_maps``).
            solver_options: the solver's (``method``, ``rtol``, ``atol``, ``step_size``/``options``, ``solver``,
                ``time_variable``; :func:`scorezoo.likelihood.log_likelihood`), Hutchinson's ``num_probes`` and
                ``probe``, or the bound's ``num_time_points`` and ``num_decoder_samples``.

        Returns:
            :class:`~scorezoo.scoring.BitsPerDimResult`.

        Raises:
            ValueError: a continuous-data model, bad images (shape, values, unreadable files, a picture smaller than
                one patch with ``tile=True``), bad or conflicting options, ``"variational"`` for a model without a
                dequantizer, ``plan=`` together with options.
        """
        if plan is None:
            if divergence is None:
                divergence = "hutchinson" if estimator == "ode" else "auto"
            plan = plan_from_options(self, num_repeats=num_repeats, divergence=divergence, estimator=estimator,
                                 max_batch_size=max_batch_size, tile=tile, dequantization=dequantization,
                                 schedule=schedule, per_dimension=per_dimension, **solver_options)
        elif solver_options or (num_repeats, divergence, estimator, max_batch_size, tile, dequantization, schedule,
                                per_dimension) != (1, None, "ode", 64, None, "uniform", None, False):
            raise ValueError("give the options as plan= or as keyword arguments, not both.")
        return score_images(self, images, plan, generator=generator, invert=invert, times=times)
