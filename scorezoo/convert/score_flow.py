"""score_flow (flax) checkpoints -> scorezoo pipelines, read with msgpack and numpy only (no jax, no TensorFlow).

``run_lib.train`` of yang-song/score_flow saves ``models/utils.py``'s ``State`` with
``flax.training.checkpoints.save_checkpoint`` as ``<run>/checkpoints/checkpoint_N``: one msgpack map
(``flax.serialization.to_bytes``) with keys ``step, optimizer{target, state}, lr, model_state, ema_rate,
params_ema, rng``, arrays as msgpack ExtType 1 holding ``[shape, dtype name, C-order bytes]``.

Parameters are nested by module: flax names the submodules of a compact module ``ClassName_k``, numbered per class
in the order they are called. :class:`~scorezoo.models.ncsnpp.NCSNpp` keeps the official PyTorch layout, whose
``all_modules`` follow the same order, so recording the order in which our network calls its modules (forward
pre-hooks on one small forward pass) gives every flax name. Layouts: conv kernels HWIO -> OIHW, dense kernels
``(in, out)`` transposed, GroupNorm ``scale`` (``(1, 1, 1, C)`` in flax 0.3) -> ``weight (C,)``, NIN ``W`` as is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import ncsnpp
from ..pipeline import ScorePipeline
from .common import WEIGHTS, build_pipeline, save_converted
from .configs import SCORE_FLOW_RUN, read_official_config

__all__ = ["read_msgpack", "find_checkpoint", "flax_names", "convert_score_flow"]

# flax class of each top-level module of NCSNpp.all_modules (and of its pyramid resamplers)
_FLAX_CLASS = {ncsnpp.GaussianFourierProjection: "GaussianFourierProjection", nn.Linear: "Dense",
               nn.Conv2d: "Conv", nn.GroupNorm: "GroupNorm", ncsnpp.ResnetBlockBigGANpp: "ResnetBlockBigGANpp",
               ncsnpp.ResnetBlockDDPMpp: "ResnetBlockDDPMpp", ncsnpp.AttnBlockpp: "AttnBlockpp",
               ncsnpp.Upsample: "Upsample", ncsnpp.Downsample: "Downsample", ncsnpp.Combine: "Combine"}


def _ext_hook(code: int, data: bytes) -> Any:
    import msgpack

    if code in (1, 3):  # ndarray, numpy scalar
        shape, dtype, buffer = msgpack.unpackb(data, raw=True)
        name = dtype.decode() if isinstance(dtype, bytes) else str(dtype)
        if name == "bfloat16":
            raise ValueError("bfloat16 arrays are not supported: convert the checkpoint to float32 first.")
        arr = np.frombuffer(buffer, dtype=np.dtype(name)).reshape(shape)
        return arr[()] if code == 3 else arr
    if code == 2:
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    raise ValueError(f"unknown msgpack extension type {code} (flax uses 1 for arrays, 2 complex, 3 scalars).")


def read_msgpack(path: str | Path) -> dict:
    """Read a flax msgpack checkpoint into nested dicts of numpy arrays (``flax.serialization.msgpack_restore``).

    Raises:
        ImportError: msgpack is not installed (``pip install scorezoo[convert]``).
        ValueError: not a msgpack map.
    """
    try:
        import msgpack
    except ImportError:
        raise ImportError("reading score_flow checkpoints needs msgpack: pip install 'scorezoo[convert]' "
                          "(or pip install msgpack).") from None
    try:
        state = msgpack.unpackb(Path(path).read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a flax msgpack checkpoint: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a flax checkpoint: it holds a {type(state).__name__}, not a map.")
    return state


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint file of ``path``: the file itself, or the newest ``checkpoint_N`` of a run folder or of its
    ``checkpoints/`` folder (the highest N, as ``flax.training.checkpoints.latest_checkpoint``).

    Raises:
        FileNotFoundError: nothing there, or a folder without ``checkpoint_N`` files.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} not found.")
    for folder in (path / "checkpoints", path):
        found = [(int(m.group(1)), p) for p in folder.glob("checkpoint_*")
                 if (m := re.fullmatch(r"checkpoint_(\d+)", p.name)) and p.is_file()]
        if found:
            return max(found)[1]
    raise FileNotFoundError(f"{path} holds no checkpoint_N file (nor does {path / 'checkpoints'}).")


def flax_names(network: ncsnpp.NCSNpp) -> dict[str, str]:
    """``{"all_modules.<i>": "<Class>_<k>"}``: the flax name of each top-level module of ``network``.

    The call order depends on the architecture only, so it is recorded on a copy with ``nf = 4`` (one cheap
    forward pass); parameter-free calls (pyramid resamplers) are counted as flax counts them.
    """
    cfg = {k: v for k, v in network.config.items() if not k.startswith("_")}
    probe = ncsnpp.NCSNpp(**{**cfg, "nf": 4}).eval()
    calls: list[tuple[str, nn.Module]] = []
    named = [(f"all_modules.{i}", m) for i, m in enumerate(probe.all_modules)]
    named += [(n, getattr(probe, n)) for n in ("pyramid_upsample", "pyramid_downsample") if hasattr(probe, n)]
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: calls.append((name, mod))) for name, m in named]
    try:
        with torch.no_grad():
            c, s = cfg["num_channels"], cfg["image_size"]
            probe(torch.zeros(1, c, s, s), torch.ones(1))
    finally:
        for h in hooks:
            h.remove()
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for name, mod in calls:
        cls = _FLAX_CLASS[type(mod)]
        names.setdefault(name, f"{cls}_{counts.get(cls, 0)}")
        counts[cls] = counts.get(cls, 0) + 1
    return {k: v for k, v in names.items() if k.startswith("all_modules.")}


def _leaf(module: nn.Module, param: str) -> tuple[str, Any]:
    """flax leaf name of ``module.<param>`` and the map from the flax array to the torch layout."""
    if isinstance(module, (nn.Conv2d, ncsnpp.FIRConv2d)) and param == "weight":
        return ("kernel" if isinstance(module, nn.Conv2d) else "weight"), lambda a: a.transpose(3, 2, 0, 1)
    if isinstance(module, nn.Linear) and param == "weight":
        return "kernel", lambda a: a.T
    if isinstance(module, nn.GroupNorm):
        return ("scale" if param == "weight" else "bias"), lambda a: a.reshape(-1)
    return param, lambda a: a


def _flatten(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(tree, dict):
        out: dict[tuple, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, prefix + (str(k),)))
        return out
    return {prefix: tree}


def _state_from(params: dict, network: ncsnpp.NCSNpp, what: str) -> tuple[dict, str]:
    flat = _flatten(params)
    top = flax_names(network)
    state: dict[str, torch.Tensor] = {}
    used: set[tuple] = set()
    for key, ref in network.state_dict().items():
        owner, param = key.rsplit(".", 1)
        parts = owner.split(".")
        path_prefix = (top[".".join(parts[:2])], *parts[2:])
        leaf, to_torch = _leaf(network.get_submodule(owner), param)
        path = (*path_prefix, leaf)
        if path not in flat:
            raise ValueError(f"{what} lacks {'/'.join(path)} (for {key}, shape {tuple(ref.shape)}): the config "
                             "does not match the weights.")
        arr = np.asarray(flat[path])
        if not isinstance(flat[path], np.ndarray) or arr.size != ref.numel():
            raise ValueError(f"{what}: {'/'.join(path)} has shape {tuple(arr.shape)}, the config's network wants "
                             f"{tuple(ref.shape)} for {key}: the config does not match the weights.")
        state[key] = torch.from_numpy(np.ascontiguousarray(to_torch(arr)).astype(np.float32))
        used.add(path)
    extra = [p for p in flat if p not in used]
    if extra:
        raise ValueError(f"{what} has {'/'.join(extra[0])} (and {len(extra) - 1} more) that the config's network "
                         "lacks: the config does not match the weights.")
    return state, what


def convert_score_flow(checkpoint: str | Path, config: str | Path | dict | None = None,
                       output: str | Path | None = None, *, weights: str = "ema", name: str | None = None,
                       command: str | None = None) -> ScorePipeline:
    """Convert a score_flow checkpoint into a :class:`~scorezoo.pipeline.ScorePipeline`.

    Args:
        checkpoint: a ``checkpoint_N`` file, its ``checkpoints/`` folder or the run folder (newest N).
        config: a run name (``"cifar10_deep_subvp_likelihood_iw"``), a JSON file of the official config or its
            dict; default: the run folder's name when it is a run name.
        output: if given, the pipeline folder to write (with a model card).
        weights: ``"ema"`` (``params_ema``, as the official evaluation) or ``"raw"`` (``optimizer.target``).
        name: the model's name on its card (default: the folder's name).
        command: the conversion command, recorded on the card.

    Returns:
        The pipeline; its score is the official ``get_score_fn(sde, model, params, states, continuous=True)``
        except that it divides by the exact sigma_t where score_flow's ``high_precision`` ``marginal_prob`` uses a
        first-order expansion (``|log mean coeff| <= 1e-3``, t below about 0.01: ~5e-4 relative).

    Raises:
        ValueError: an unreadable checkpoint, an unsupported config, or a config that does not match the weights
            (one line naming the first mismatch).
        FileNotFoundError: no checkpoint there.
        ImportError: msgpack is missing.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
    path = find_checkpoint(checkpoint)
    if config is None:
        # <run>/checkpoints/checkpoint_N: the run folder's name is its config
        config = next((p.name for p in (Path(checkpoint), *path.parents[:3]) if SCORE_FLOW_RUN.match(p.name)), None)
        if config is None:
            raise ValueError(f"no config given and no score_flow run name around {checkpoint}: pass --config "
                             "(a run name such as cifar10_deep_subvp_likelihood_iw, or a JSON file).")
    cfg, cfg_name = read_official_config(config, "score_flow")
    state = read_msgpack(path)
    key = "params_ema" if weights == "ema" else "optimizer"
    params = state.get(key)
    if weights == "raw" and isinstance(params, dict):
        params = params.get("target")
    if not isinstance(params, dict):
        raise ValueError(f"{path} has no {'params_ema' if weights == 'ema' else 'optimizer.target'}: not a "
                         f"score_flow training state (it holds {sorted(state)}).")
    what = f"{path} ({'params_ema' if weights == 'ema' else 'optimizer.target'})"
    step = state.get("step")
    provenance = {"format": "score_flow", "checkpoint": path.name, "config": cfg_name, "weights": weights,
                  "step": int(step) if isinstance(step, (int, np.integer, np.ndarray)) else None}
    pipe = build_pipeline(cfg, "score_flow", lambda net: _state_from(params, net, what), provenance)
    if output is not None:
        save_converted(pipe, output, name, command)
    return pipe
