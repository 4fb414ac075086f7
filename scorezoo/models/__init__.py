"""Score networks and the adapter that turns them into ``score_fn(x, t)``."""

from .adapter import PARAMETERIZATIONS, ScoreModel
from .analytic import GaussianScore
from .networks import NETWORKS, ScoreMLP, build_network, load_network, network_forward, save_network

__all__ = ["ScoreModel", "GaussianScore", "PARAMETERIZATIONS", "ScoreMLP", "NETWORKS", "build_network", "load_network",
           "network_forward", "save_network"]
