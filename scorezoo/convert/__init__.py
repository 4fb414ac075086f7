"""Converters for the authors' published checkpoints: score_sde_pytorch ``.pth`` and score_flow flax msgpack.

    from scorezoo.convert import convert_score_sde, convert_score_flow
    pipe = convert_score_sde("checkpoint_26.pth", "subvp/cifar10_ddpmpp_deep_continuous", "subvp-cifar10-deep")
    pipe = convert_score_flow("cifar10_deep_subvp_likelihood_iw/", output="subvp-mle-cifar10-deep")

Both build :class:`~scorezoo.models.ncsnpp.NCSNpp` from the official config, load the EMA weights (``weights="raw"``
for the others) strictly, and return a :class:`~scorezoo.pipeline.ScorePipeline` whose score is the official one;
with ``output`` they write a pipeline folder with its model card. The CLI is ``scorezoo convert``.
"""

from . import configs
from .configs import SCORE_SDE_CONFIGS, read_official_config, score_flow_config
from .score_flow import convert_score_flow, read_msgpack
from .score_sde import convert_score_sde, read_checkpoint

__all__ = ["convert_score_sde", "convert_score_flow", "read_checkpoint", "read_msgpack", "read_official_config",
           "score_flow_config", "SCORE_SDE_CONFIGS"]


def __getattr__(name: str):
    if name == "load_config":  # the old name of read_official_config, with configs' DeprecationWarning
        return configs.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
