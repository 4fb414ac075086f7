"""Score networks and the adapter that turns them into ``score_fn(x, t)``."""

from .adapter import PARAMETERIZATIONS, TIME_LABELS, ScoreModel
from .analytic import GaussianScore
from .ncsnpp import NCSNpp
from .networks import NETWORKS, ScoreMLP, build_network, load_network, network_forward, save_network

__all__ = ["ScoreModel", "GaussianScore", "PARAMETERIZATIONS", "TIME_LABELS", "ScoreMLP", "NCSNpp", "NETWORKS",
           "build_network", "load_network", "network_forward", "save_network"]
