"""Log-likelihoods of score-based models, one module per concept:

* :mod:`~scorezoo.likelihood.divergence`: the score's divergence, exact or by Hutchinson's estimator;
* :mod:`~scorezoo.likelihood.flow`: the probability-flow ODE and its divergence integral in t, rho or log rho;
* :mod:`~scorezoo.likelihood.ode`: :func:`log_likelihood`, exact ``log p_eps(x)`` by solving that ODE;
* :mod:`~scorezoo.likelihood.schedule`: calibrated fixed-step schedules (:func:`calibrate_schedule`);
* :mod:`~scorezoo.likelihood.bound`: :func:`likelihood_bound`, the MLE paper's upper bound on ``-log p(x)``.

All log-densities are in nats of the continuous data space; turning them into bits/dim of integer data is the
dequantization's business (:func:`scorezoo.dequantization.bits_per_dim`). ``scorezoo.likelihood.bits_per_dim``, where
scorezoo 0.1 had it, still answers, with a ``DeprecationWarning``.
"""

from ..utils import ScoreFn
from .bound import BoundResult, likelihood_bound
from .divergence import divergence_fn, draw_probes
from .flow import LogDensityODE, ProbabilityFlow
from .ode import LikelihoodResult, log_likelihood
from .schedule import LikelihoodSchedule, calibrate_schedule, check_schedule

__all__ = ["log_likelihood", "LikelihoodResult", "likelihood_bound", "BoundResult", "divergence_fn", "draw_probes",
           "ProbabilityFlow", "LogDensityODE", "LikelihoodSchedule", "calibrate_schedule", "check_schedule",
           "ScoreFn"]


def __getattr__(name: str):
    # scorezoo 0.1's public path; imported on use, so that this package imports nothing of the dequantization above it
    if name == "bits_per_dim":
        import warnings

        from ..dequantization import bits_per_dim

        warnings.warn("scorezoo.likelihood.bits_per_dim moved: import it from scorezoo.dequantization (or scorezoo).",
                      DeprecationWarning, stacklevel=2)
        return bits_per_dim
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
