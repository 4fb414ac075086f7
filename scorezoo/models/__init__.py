"""Score networks and the adapter that turns them into ``score_fn(x, t)``.

:class:`ScoreMLP` (and diffusers itself) is imported on first use, so that ``import scorezoo`` stays fast.
"""

from .adapter import PARAMETERIZATIONS, ScoreModel
from .analytic import GaussianScore
from .networks import NETWORKS, build_network, get_network_class, load_network, network_forward, save_network

__all__ = ["ScoreModel", "GaussianScore", "PARAMETERIZATIONS", "ScoreMLP", "NETWORKS", "build_network",
           "get_network_class", "load_network", "network_forward", "save_network"]


def __getattr__(name: str):
    if name == "ScoreMLP":
        from .mlp import ScoreMLP

        return ScoreMLP
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
