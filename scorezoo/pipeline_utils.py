"""The pipeline folder on disk and on the Hub: what :meth:`ScorePipeline.from_pretrained
<scorezoo.pipeline.ScorePipeline.from_pretrained>`, ``save_pretrained`` and ``push_to_hub`` read and write (diffusers
keeps the same in its ``pipeline_utils``); and the checks of what a pipeline is asked to score (:func:`check_points`,
:func:`check_in_data_range`, :func:`resolve_schedule`).

A folder holds ``pipeline_config.json`` (the SDE, eps, data shape, levels, data range, parameterisation, a calibrated
schedule, and free metadata), ``network/`` and optionally ``dequantizer/``, each in diffusers' layout
(``config.json`` + ``diffusion_pytorch_model.safetensors``); only safetensors and the listed classes are read.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .data import Tiles, cover_levels, tile_levels
from .models import load_network, save_network
from .sde import SDE, get_sde
from .utils import check_batch

if TYPE_CHECKING:
    from .likelihood import LikelihoodSchedule

__all__ = ["PIPELINE_CONFIG_NAME", "NETWORK_FOLDER", "DEQUANTIZER_FOLDER", "CONSTRUCTOR_KEYS", "read_pipeline_folder",
           "write_pipeline_folder", "push_folder_to_hub", "check_points", "check_in_data_range", "resolve_schedule",
           "PictureTiling"]

PIPELINE_CONFIG_NAME = "pipeline_config.json"
NETWORK_FOLDER = "network"
DEQUANTIZER_FOLDER = "dequantizer"
#: the keys of ``pipeline_config.json`` that are :class:`~scorezoo.pipeline.ScorePipeline` arguments (besides the SDE)
CONSTRUCTOR_KEYS = ("data_shape", "eps", "sampling_eps", "num_levels", "data_range", "parameterization", "time_scale",
                    "time_label", "likelihood_schedule")


def read_pipeline_folder(folder: Path) -> tuple[nn.Module, SDE, dict]:
    """``(network, sde, keyword arguments of ScorePipeline)`` of a pipeline folder; the other config keys (not
    starting with ``_``) become ``extra_config``, and a ``dequantizer/`` subfolder is loaded as ``dequantizer``.

    Raises:
        ValueError: a missing or invalid config, missing or corrupt weights, an unknown network class.
    """
    cfg_path = folder / PIPELINE_CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(f"{folder} is not a scorezoo pipeline: {PIPELINE_CONFIG_NAME} is missing.")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from None
    missing = {"sde", "data_shape"} - set(cfg)
    if missing:
        raise ValueError(f"{cfg_path} lacks {sorted(missing)}.")
    try:
        network = load_network(folder / NETWORK_FOLDER)
        dequantizer = None
        if (folder / DEQUANTIZER_FOLDER).is_dir():
            from .dequantization import load_dequantizer

            dequantizer = load_dequantizer(folder / DEQUANTIZER_FOLDER)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    try:
        sde = get_sde(cfg["sde"])
    except ValueError as e:
        raise ValueError(f"{cfg_path}: {e}") from None
    kwargs = {k: cfg[k] for k in CONSTRUCTOR_KEYS if k in cfg}
    extra = {k: v for k, v in cfg.items() if k not in (*CONSTRUCTOR_KEYS, "sde") and not k.startswith("_")}
    return network, sde, {**kwargs, "extra_config": extra, "dequantizer": dequantizer}


def write_pipeline_folder(folder: str | Path, config: dict, network: nn.Module, dequantizer: nn.Module | None) -> None:
    """Write ``pipeline_config.json``, ``network/`` and, with a dequantizer, ``dequantizer/`` into ``folder``."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    (d / PIPELINE_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    save_network(network, d / NETWORK_FOLDER)
    if dequantizer is not None:
        dequantizer.save_pretrained(str(d / DEQUANTIZER_FOLDER), safe_serialization=True)


def push_folder_to_hub(save: Callable[[str], None], repo_id: str, *, private: bool | None = None,
                       token: str | None = None, commit_message: str = "Upload scorezoo pipeline",
                       card: str | None = None) -> str:
    """``save(folder)`` into a temporary folder, add ``card`` as README.md, and upload it to the Hub repository
    ``repo_id`` (created if needed). Returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save(tmp)
        if card is not None:
            Path(tmp, "README.md").write_text(card)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


def check_points(x, data_shape: tuple[int, ...], data_range: tuple[float, float], what: str = "x") -> None:
    """Refuse ``x`` unless it is a non-empty, finite, floating-point batch ``(B, *data_shape)`` of points in the data
    space (integer images belong to ``bits_per_dim``).

    Raises:
        ValueError: a wrong shape, an integer dtype, NaN/inf or an empty batch (the message names ``what``).
    """
    if torch.is_tensor(x) and (tuple(x.shape[1:]) != tuple(data_shape) or x.dim() != len(data_shape) + 1):
        raise ValueError(f"{what} has shape {tuple(x.shape)}; this model takes (B, {', '.join(map(str, data_shape))}).")
    if torch.is_tensor(x) and x.dim() > 1 and not x.is_floating_point():
        raise ValueError(f"{what} must be floating point in the data range {tuple(data_range)}, got {x.dtype}; "
                         "for integer images use bits_per_dim().")
    check_batch(x, what)


def check_in_data_range(x: torch.Tensor, data_range: tuple[float, float], num_levels: int | None,
                        hint: str = "log_likelihood takes dequantized points in the data space; for images or integer "
                        "levels use bits_per_dim()") -> None:
    """Points of an integer-data model (``num_levels`` not ``None``) must lie in its ``data_range`` with a 10 %
    margin: values far outside (e.g. 8-bit values) are a mistake, not a question the model can answer.

    Raises:
        ValueError: points outside, with ``hint`` on what to do instead.
    """
    lo, hi = data_range
    if num_levels is not None and (x.min() < lo - 0.1 * (hi - lo) or x.max() > hi + 0.1 * (hi - lo)):
        raise ValueError(f"x spans [{x.min().item() + 0.0:.3g}, {x.max().item():.3g}], outside the model's data "
                         f"range [{lo:g}, {hi:g}]: {hint}.")


def resolve_schedule(schedule: LikelihoodSchedule | str | None, own: LikelihoodSchedule | None
                     ) -> LikelihoodSchedule | None:
    """``schedule=`` of :meth:`ScorePipeline.log_likelihood <scorezoo.pipeline.ScorePipeline.log_likelihood>`:
    ``"calibrated"`` is the model's own schedule ``own``; a :class:`~scorezoo.likelihood.LikelihoodSchedule` or
    ``None`` passes through.

    Raises:
        ValueError: another string, or ``"calibrated"`` for a model without a schedule (``own is None``).
    """
    if not isinstance(schedule, str):
        return schedule
    if schedule != "calibrated":
        raise ValueError(f"schedule must be 'calibrated', a LikelihoodSchedule or None; got {schedule!r}.")
    if own is None:
        raise ValueError("this model has no calibrated likelihood schedule: run pipe.calibrate_likelihood_schedule(x) "
                         "on data like yours, or leave schedule unset for the adaptive solver.")
    return own


class PictureTiling:
    """How a :class:`~scorezoo.pipeline.ScorePipeline` cuts a picture larger than itself, read from its config
    (``extra_config``): patches of the model's size, or a fully convolutional model's whole-picture tiles."""

    extra_config: dict
    data_shape: tuple[int, ...]

    @property
    def tiles_larger_images(self) -> bool:
        """Whether the model scores pictures larger than itself tile by tile by default (models of photo patches:
        ``"tile_larger_images": true`` in the config)."""
        return bool(self.extra_config.get("tile_larger_images", False))

    @property
    def max_tile_size(self) -> int | None:
        """A fully convolutional model's largest tile side, pixels: it scores a picture of at most this size on each
        side whole, in one solve, and a larger one in the fewest equal tiles of at most this size whose sides are
        multiples of :attr:`size_multiple` (:func:`scorezoo.data.cover_levels`; ``"max_tile_size"`` in the config).
        ``None`` for other models, which tile in patches of their own size."""
        size = self.extra_config.get("max_tile_size")
        return None if size is None else int(size)

    @property
    def size_multiple(self) -> int:
        """The sides a fully convolutional model takes are multiples of this (its down-sampling factor;
        ``"size_multiple"`` in the config, default 8)."""
        return int(self.extra_config.get("size_multiple", 8))

    def tile_picture(self, levels: torch.Tensor) -> Tiles:
        """The tiles this model scores a picture ``(C, H, W)`` of levels in, at its own resolution: the fewest equal
        tiles of at most :attr:`max_tile_size` for a fully convolutional model (:func:`scorezoo.data.cover_levels`),
        else patches of the model's size (:func:`scorezoo.data.tile_levels`); the remainder strips are cropped.

        Raises:
            ValueError: a picture smaller than one tile.
        """
        if self.max_tile_size:
            return cover_levels(levels, self.max_tile_size, self.size_multiple)
        return tile_levels(levels, self.data_shape[1:])
