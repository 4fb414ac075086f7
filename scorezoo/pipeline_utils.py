"""The pipeline folder on disk and on the Hub: what :meth:`ScorePipeline.from_pretrained
<scorezoo.pipeline.ScorePipeline.from_pretrained>`, ``save_pretrained`` and ``push_to_hub`` read and write (diffusers
keeps the same in its ``pipeline_utils``).

A folder holds ``pipeline_config.json`` (the SDE, eps, data shape, levels, data range, parameterisation, a calibrated
schedule, and free metadata), ``network/`` and optionally ``dequantizer/``, each in diffusers' layout
(``config.json`` + ``diffusion_pytorch_model.safetensors``); only safetensors and the listed classes are read.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

from torch import nn

from .models import load_network, save_network
from .sde import SDE, get_sde

__all__ = ["PIPELINE_CONFIG_NAME", "NETWORK_FOLDER", "DEQUANTIZER_FOLDER", "CONSTRUCTOR_KEYS", "read_pipeline_folder",
           "write_pipeline_folder", "push_folder_to_hub"]

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
