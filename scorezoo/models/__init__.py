"""Score networks and the adapter that turns them into ``score_fn(x, t)``.

:class:`ScoreMLP`, :class:`NCSNpp` (and diffusers itself) are imported on first use, so that ``import scorezoo`` stays
fast.
"""

from .adapter import PARAMETERIZATIONS, TIME_LABELS, ScoreModel
from .analytic import GaussianScore
from .networks import NETWORKS, build_network, get_network_class, load_network, network_forward, save_network

__all__ = ["ScoreModel", "GaussianScore", "PARAMETERIZATIONS", "TIME_LABELS", "ScoreMLP", "NCSNpp", "NETWORKS",
           "build_network", "get_network_class", "load_network", "network_forward", "save_network"]


def __getattr__(name: str):
    if name in ("ScoreMLP", "NCSNpp"):
        return get_network_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
