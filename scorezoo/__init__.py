"""scorezoo: likelihood-trained score-based generative models.

Exact log-likelihoods and bits/dim by the probability-flow ODE, the likelihood bound of Song, Durkan,
Murray & Ermon (2021), samplers, and a zoo of pretrained models behind one pipeline::

    from scorezoo import ScorePipeline
    pipe = ScorePipeline.from_pretrained("scorezoo/vp-mle-digits")
    images = pipe(batch_size=16).images
    bpd = pipe.bits_per_dim(images).bpd
"""

__version__ = "0.1.0"

from .likelihood import BoundResult, LikelihoodResult, bits_per_dim, likelihood_bound, log_likelihood
from .models import GaussianScore, ScoreMLP, ScoreModel
from .pipeline import BitsPerDimResult, ScorePipeline, ScorePipelineOutput
from .sampling import sample_em, sample_ode, sample_pc
from .sde import SDE, SubVPSDE, VESDE, VPSDE, get_sde

__all__ = [
    "ScorePipeline", "ScorePipelineOutput", "BitsPerDimResult",
    "VPSDE", "SubVPSDE", "VESDE", "SDE", "get_sde",
    "log_likelihood", "likelihood_bound", "bits_per_dim", "LikelihoodResult", "BoundResult",
    "sample_ode", "sample_em", "sample_pc",
    "ScoreModel", "ScoreMLP", "GaussianScore",
]
