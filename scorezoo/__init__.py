"""scorezoo: likelihood-trained score-based generative models.

Exact log-likelihoods and bits/dim by the probability-flow ODE, the likelihood bound of Song, Durkan,
Murray & Ermon (2021), samplers, and a zoo of pretrained models behind one pipeline::

    from scorezoo import ScorePipeline
    pipe = ScorePipeline.from_pretrained("scorezoo/vp-mle-digits")
    images = pipe(batch_size=16).images
    bpd = pipe.bits_per_dim(images).bpd

The names below are imported on first use, so that ``import scorezoo`` (and the command line's ``--help``) does not
wait for torch, diffusers or torchdiffeq.
"""

from .lazy import lazy_exports

__version__ = "0.2.0"

_EXPORTS = {
    "ScorePipeline": "pipeline", "ScorePipelineOutput": "pipeline", "BitsPerDimResult": "pipeline",
    "VPSDE": "sde", "SubVPSDE": "sde", "VESDE": "sde", "SDE": "sde", "get_sde": "sde",
    "log_likelihood": "likelihood", "likelihood_bound": "likelihood", "LikelihoodResult": "likelihood",
    "BoundResult": "likelihood", "LikelihoodSchedule": "likelihood", "calibrate_schedule": "likelihood",
    "bits_per_dim": "dequantization", "uniform_dequantize": "dequantization",
    "VariationalDequantizer": "dequantization",
    "sample_ode": "sampling", "sample_em": "sampling", "sample_pc": "sampling",
    "ScoreModel": "models", "ScoreMLP": "models", "GaussianScore": "models",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
