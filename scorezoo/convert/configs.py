"""The official configs of the published checkpoints, and what a scorezoo pipeline needs from a config.

A config is the official ``ml_collections`` config as nested dicts (``config.to_dict()``, tuples as lists): the
published ones are written here (only the fields that decide the network, the SDE and the evaluation), a user with
their own run gives the JSON of theirs. Sources:

* score_sde_pytorch ``configs/default_cifar10_configs.py`` and ``configs/{vp,subvp,ve}/cifar10_*_continuous.py``
  (Song et al., ICLR 2021);
* score_flow ``configs/default_{cifar10,imagenet32}_configs.py`` and ``configs/{vp,subvp}/*_continuous.py``
  (Song, Durkan, Murray & Ermon, NeurIPS 2021); a run ``<cifar10|imagenet32>_(deep)_<vp|subvp>_(likelihood)_(iw)_
  (flip)`` is that config with ``training.likelihood_weighting``, ``training.importance_weighting`` and
  ``data.random_flip`` set as its name says (score_flow README).
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any

from ..sde import SDE, SubVPSDE, VESDE, VPSDE

__all__ = ["SCORE_SDE_CONFIGS", "score_flow_config", "read_official_config", "network_kwargs", "sde_from_config",
           "pipeline_kwargs", "SCORE_FLOW_RUN"]

_MODEL = {"name": "ncsnpp", "normalization": "GroupNorm", "nonlinearity": "swish", "nf": 128,
          "ch_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16], "resamp_with_conv": True,
          "conditional": True, "fir": False, "fir_kernel": [1, 3, 3, 1], "skip_rescale": True,
          "resblock_type": "biggan", "progressive": "none", "progressive_input": "none",
          "progressive_combine": "sum", "attention_type": "ddpm", "init_scale": 0.0, "embedding_type": "positional",
          "fourier_scale": 16, "conv_size": 3, "scale_by_sigma": False, "dropout": 0.1, "ema_rate": 0.9999,
          "sigma_min": 0.01, "sigma_max": 50, "num_scales": 1000, "beta_min": 0.1, "beta_max": 20.0}
_CIFAR10 = {"dataset": "CIFAR10", "image_size": 32, "num_channels": 3, "random_flip": True, "centered": True}


def _config(sde: str, deep: bool, data: dict | None = None, **model: Any) -> dict:
    return {"training": {"sde": sde, "continuous": True},
            "data": {**_CIFAR10, **(data or {})},
            "model": {**_MODEL, "num_res_blocks": 8 if deep else 4, **model}}


_NCSNPP_VE = dict(fir=True, progressive_input="residual", embedding_type="fourier", scale_by_sigma=True,
                  ema_rate=0.999)

#: score_sde_pytorch configs of the published continuous NCSN++/DDPM++ CIFAR-10 checkpoints (README table)
SCORE_SDE_CONFIGS: dict[str, dict] = {
    "vp/cifar10_ddpmpp_continuous": _config("vpsde", False),
    "vp/cifar10_ddpmpp_deep_continuous": _config("vpsde", True),
    "subvp/cifar10_ddpmpp_continuous": _config("subvpsde", False),
    "subvp/cifar10_ddpmpp_deep_continuous": _config("subvpsde", True),
    "ve/cifar10_ncsnpp_continuous": _config("vesde", False, {"centered": False}, **_NCSNPP_VE),
    "ve/cifar10_ncsnpp_deep_continuous": _config("vesde", True, {"centered": False}, **_NCSNPP_VE),
}

#: a score_flow run name (its Drive folder): dataset, deep, SDE, likelihood weighting, importance sampling, flips
SCORE_FLOW_RUN = re.compile(r"^(cifar10|imagenet32)(_deep)?_(vp|subvp)(_likelihood)?(_iw)?(_flip)?$")


def score_flow_config(run: str) -> dict:
    """The score_flow config of a run name such as ``cifar10_deep_subvp_likelihood_iw``.

    ImageNet 32×32 is tfds ``downsampled_imagenet/32x32`` (van den Oord et al. 2016), no dropout, no flips by
    default; sub-VP runs train and evaluate likelihoods from ``smallest_time`` 1e-2, VP runs from 1e-5.

    Raises:
        ValueError: a name that does not follow the score_flow folder pattern.
    """
    m = SCORE_FLOW_RUN.match(run)
    if not m:
        raise ValueError(f"{run!r} is not a score_flow run name: expected <cifar10|imagenet32>_(deep)_<vp|subvp>_"
                         "(likelihood)_(iw)_(flip), e.g. cifar10_deep_subvp_likelihood_iw.")
    dataset, deep, sde, likelihood, iw, flip = m.groups()
    data = {"dataset": "CIFAR10"} if dataset == "cifar10" else {"dataset": "ImageNet"}
    cfg = _config("vpsde" if sde == "vp" else "subvpsde", bool(deep), data,
                  dropout=0.1 if dataset == "cifar10" else 0.0, trainable_embedding=False)
    cfg["data"]["random_flip"] = bool(flip)
    cfg["training"].update(likelihood_weighting=bool(likelihood), importance_weighting=bool(iw),
                           smallest_time=1e-5 if sde == "vp" else 1e-2, reduce_mean=True)
    return cfg


def read_official_config(config: str | Path | dict, source: str) -> tuple[dict, str]:
    """``(config dict, its name)`` of an official config (the research code's, not scorezoo's training config:
    :func:`scorezoo.training.config.load_config`) from a published name, a JSON file of ``config.to_dict()``, or a dict.

    Args:
        config: ``"vp/cifar10_ddpmpp_continuous"`` (``source="score_sde"``), a score_flow run name
            (``source="score_flow"``), a path to a JSON file, or the dict itself.
        source: ``"score_sde"`` or ``"score_flow"``.

    Raises:
        ValueError: an unknown name, or a file that is not JSON of nested dicts.
    """
    if isinstance(config, dict):
        return copy.deepcopy(config), "(given as a dict)"
    text = str(config)
    path = Path(text).expanduser()
    if path.is_file():
        try:
            cfg = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"config file {path} is not JSON ({e}); write it with "
                             "json.dump(config.to_dict(), f) from the official ml_collections config.") from None
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
            raise ValueError(f"config file {path} has no 'model' section: it must hold the official config as "
                             "nested dicts (config.to_dict()).")
        return cfg, path.name
    if source == "score_sde" and text in SCORE_SDE_CONFIGS:
        return copy.deepcopy(SCORE_SDE_CONFIGS[text]), text
    if source == "score_flow" and SCORE_FLOW_RUN.match(text):
        return score_flow_config(text), text
    known = (", ".join(SCORE_SDE_CONFIGS) if source == "score_sde"
             else "<cifar10|imagenet32>_(deep)_<vp|subvp>_(likelihood)_(iw)_(flip)")
    raise ValueError(f"unknown {source} config {text!r}: not a file and not a published config ({known}).")


def _get(cfg: dict, dotted: str, default: Any = KeyError) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is KeyError:
                raise ValueError(f"the config lacks {dotted}: give the full official config (config.to_dict()).")
            return default
        node = node[part]
    return node


def _sde_name(cfg: dict) -> str:
    name = str(_get(cfg, "training.sde")).lower()
    if name not in ("vpsde", "subvpsde", "vesde"):
        raise ValueError(f"training.sde = {name!r}: scorezoo converts vpsde, subvpsde and vesde models.")
    return name


def network_kwargs(cfg: dict, source: str) -> dict:
    """The :class:`~scorezoo.models.ncsnpp.NCSNpp` arguments of an official config.

    Raises:
        ValueError: a model other than the continuous, time-conditional NCSN++/DDPM++ with GroupNorm.
    """
    m = _get(cfg, "model")
    checks = {"model.name": "ncsnpp", "model.conditional": True, "training.continuous": True}
    for key, want in checks.items():
        if _get(cfg, key) != want:
            raise ValueError(f"{key} = {_get(cfg, key)!r}: scorezoo converts the continuous, time-conditional "
                             f"NCSN++/DDPM++ ({key} = {want!r}).")
    for key, want in {"model.normalization": "GroupNorm", "model.attention_type": "ddpm", "model.conv_size": 3}.items():
        if _get(cfg, key, want) != want:
            raise ValueError(f"{key} = {_get(cfg, key)!r}: the official NCSN++ uses {want!r}.")
    if _get(cfg, "model.trainable_embedding", False):
        raise ValueError("model.trainable_embedding = True is not supported (the Fourier features are fixed).")
    sde = _sde_name(cfg)
    fourier = str(m["embedding_type"]).lower() == "fourier"
    if fourier and sde == "vesde":
        fourier_of_log = True
    else:
        # score_sde_pytorch embeds log(label) always; score_flow only for the VE SDE
        fourier_of_log = source == "score_sde"
    return {
        "image_size": int(_get(cfg, "data.image_size")), "num_channels": int(_get(cfg, "data.num_channels")),
        "nf": int(m["nf"]), "ch_mult": [int(v) for v in m["ch_mult"]], "num_res_blocks": int(m["num_res_blocks"]),
        "attn_resolutions": [int(v) for v in m["attn_resolutions"]], "dropout": float(m["dropout"]),
        "resamp_with_conv": bool(m["resamp_with_conv"]), "fir": bool(m["fir"]),
        "fir_kernel": [int(v) for v in m["fir_kernel"]], "skip_rescale": bool(m["skip_rescale"]),
        "resblock_type": str(m["resblock_type"]).lower(), "progressive": str(m["progressive"]).lower(),
        "progressive_input": str(m["progressive_input"]).lower(),
        "progressive_combine": str(m["progressive_combine"]).lower(), "init_scale": float(m["init_scale"]),
        "embedding_type": str(m["embedding_type"]).lower(), "fourier_scale": float(m["fourier_scale"]),
        "fourier_of_log": fourier_of_log, "scale_by_sigma": bool(m["scale_by_sigma"]),
        "centered": bool(_get(cfg, "data.centered")), "nonlinearity": str(m["nonlinearity"]).lower(),
    }


def sde_from_config(cfg: dict) -> SDE:
    """The scorezoo SDE of an official config (``model.beta_min/beta_max`` or ``model.sigma_min/sigma_max``)."""
    sde = _sde_name(cfg)
    if sde == "vesde":
        if _get(cfg, "model.linear", False):
            raise ValueError("a linear VE SDE (score_flow 'linearvesde') is not supported.")
        return VESDE(float(_get(cfg, "model.sigma_min")), float(_get(cfg, "model.sigma_max")))
    cls = VPSDE if sde == "vpsde" else SubVPSDE
    return cls(float(_get(cfg, "model.beta_min")), float(_get(cfg, "model.beta_max")))


def pipeline_kwargs(cfg: dict) -> dict:
    """What :class:`~scorezoo.pipeline.ScorePipeline` takes besides the network and the SDE.

    The official ``get_score_fn(..., continuous=True)``: VP and sub-VP networks see ``999 t`` and predict
    ``-sigma_t * score`` (epsilon); VE networks see sigma_t and output the score. ``eps`` is the time the official
    evaluation integrates the likelihood from: ``training.smallest_time`` in score_flow, 1e-5 in score_sde.
    """
    ve = _sde_name(cfg) == "vesde"
    c = int(_get(cfg, "data.num_channels"))
    s = int(_get(cfg, "data.image_size"))
    return {"data_shape": (c, s, s), "eps": float(_get(cfg, "training.smallest_time", 1e-5)), "num_levels": 256,
            "data_range": (-1.0, 1.0) if _get(cfg, "data.centered") else (0.0, 1.0),
            "parameterization": "score" if ve else "epsilon", "time_scale": 999.0,
            "time_label": "sigma" if ve else "t"}


def __getattr__(name: str):
    # the name of read_official_config before the rename: scorezoo.training.load_config reads scorezoo's own configs
    if name == "load_config":
        warnings.warn("scorezoo.convert.load_config is now scorezoo.convert.read_official_config (load_config is the "
                      "training runner's, scorezoo.training.load_config).", DeprecationWarning, stacklevel=2)
        return read_official_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
