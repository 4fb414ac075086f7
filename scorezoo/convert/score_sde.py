"""score_sde_pytorch ``.pth`` checkpoints -> scorezoo pipelines.

``run_lib.train`` of yang-song/score_sde_pytorch saves ``{'optimizer', 'model', 'ema', 'step'}`` with
``torch.save`` (``utils.save_checkpoint``): ``'model'`` is the state dict of the ``DataParallel``-wrapped network
(keys ``module.all_modules.{i}...`` plus the unused ``module.sigmas`` buffer); ``'ema'`` holds ``shadow_params``,
a list in the order of the parameters that require grad (``models/ema.py``), so without the fixed Fourier ``W``,
which comes from ``'model'``. The official evaluation uses the EMA weights (``ema.copy_to``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..pipeline import ScorePipeline
from .common import WEIGHTS, build_pipeline, save_converted
from .configs import read_official_config

__all__ = ["read_checkpoint", "convert_score_sde"]


def _numpy_globals() -> list:
    # the official optimization_manager leaves the warm-up lr as a numpy float64 in the optimiser's param_groups:
    # a plain value that weights_only refuses unless its numpy scalar/dtype classes are allowed (no code runs)
    # numpy's own pickle names the function that rebuilds a scalar (numpy.core in 1.x, numpy._core in 2.x)
    scalar = np.float64(0).__reduce__()[0]
    dtypes = [type(np.dtype(c)) for c in ("float16", "float32", "float64", "int32", "int64", "bool")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, *dtypes]


def read_checkpoint(path: str | Path) -> dict:
    """Read a score_sde_pytorch checkpoint with ``torch.load(weights_only=True)`` (tensors, plain containers and
    numpy scalars only: a pickle that would run code is refused before anything runs).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a torch checkpoint, a pickle that names code, or keys other than the official ones.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found.")
    try:
        if hasattr(torch.serialization, "safe_globals"):
            with torch.serialization.safe_globals(_numpy_globals()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                      str(e).splitlines()[0] if str(e) else "")
        raise ValueError(f"{path} is refused: unpickling it would run code that is not plain tensors ({detail}); "
                         "scorezoo reads .pth files with torch.load(weights_only=True) only.") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable torch checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or not {"model", "ema"} <= set(ckpt):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a score_sde_pytorch checkpoint: it holds {keys}, not the keys optimizer, "
                         "model, ema, step of utils.save_checkpoint.")
    return ckpt


def _state_from(ckpt: dict, network: torch.nn.Module, weights: str, path: Path) -> tuple[dict, str]:
    model = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in ckpt["model"].items()}
    model.pop("sigmas", None)
    what = f"{path} ('model')"
    if weights == "raw":
        return model, what
    shadow = ckpt["ema"].get("shadow_params") if isinstance(ckpt["ema"], dict) else None
    names = [n for n, p in network.named_parameters() if p.requires_grad]
    if not isinstance(shadow, list) or len(shadow) != len(names):
        count = len(shadow) if isinstance(shadow, list) else "no"
        raise ValueError(f"{path}: 'ema' holds {count} shadow_params, the config's network has {len(names)} "
                         "trainable parameters: the config does not match the weights.")
    for name, tensor in zip(names, shadow):
        if name in model and tuple(model[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: EMA tensor for {name} has shape {tuple(tensor.shape)}, 'model' has "
                             f"{tuple(model[name].shape)}: the checkpoint's EMA does not follow its model.")
        model[name] = tensor
    return model, f"{path} ('ema' over 'model')"


def convert_score_sde(checkpoint: str | Path, config: str | Path | dict, output: str | Path | None = None, *,
                      weights: str = "ema", name: str | None = None, command: str | None = None) -> ScorePipeline:
    """Convert a score_sde_pytorch checkpoint into a :class:`~scorezoo.pipeline.ScorePipeline`.

    Args:
        checkpoint: ``checkpoint_N.pth`` as saved by score_sde_pytorch's training loop.
        config: a published config name (``"subvp/cifar10_ddpmpp_deep_continuous"``, see
            :data:`~scorezoo.convert.configs.SCORE_SDE_CONFIGS`), a JSON file of the official config, or its dict.
        output: if given, the pipeline folder to write (with a model card).
        weights: ``"ema"`` (as the official evaluation) or ``"raw"``.
        name: the model's name on its card (default: the folder's name).
        command: the conversion command, recorded on the card.

    Returns:
        The pipeline; its ``score(x, t)`` is the official ``get_score_fn(sde, model, continuous=True)(x, t)``.

    Raises:
        ValueError: an unreadable or unsafe checkpoint, an unsupported config, or a config that does not match the
            weights (one line naming the first mismatch).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
    path = Path(checkpoint)
    cfg, cfg_name = read_official_config(config, "score_sde")
    ckpt = read_checkpoint(path)
    provenance = {"format": "score_sde_pytorch", "checkpoint": path.name, "config": cfg_name, "weights": weights,
                  "step": int(ckpt["step"]) if isinstance(ckpt.get("step"), (int, np.integer)) else None}
    pipe = build_pipeline(cfg, "score_sde", lambda net: _state_from(ckpt, net, weights, path), provenance)
    if output is not None:
        save_converted(pipe, output, name, command)
    return pipe
