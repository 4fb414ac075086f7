"""Log-likelihoods of score-based models, one module per concept:

* :mod:`~scorezoo.likelihood.divergence`: the score's divergence, exact or by Hutchinson's estimator;
* :mod:`~scorezoo.likelihood.flow`: the probability-flow ODE and its divergence integral in t, rho or log rho;
* :mod:`~scorezoo.likelihood.ode`: :func:`log_likelihood`, exact ``log p_eps(x)`` by solving that ODE;
* :mod:`~scorezoo.likelihood.schedule`: calibrated fixed-step schedules (:func:`calibrate_schedule`);
* :mod:`~scorezoo.likelihood.bound`: :func:`likelihood_bound`, the MLE paper's upper bound on ``-log p(x)``.

All log-densities are in nats of the continuous data space; turning them into bits/dim of integer data is the
dequantization's business (:func:`scorezoo.dequantization.bits_per_dim`).
"""

from ..dequantization import bits_per_dim  # noqa: F401  (kept importable from here, where it used to live)
from ..utils import ScoreFn
from .bound import BoundResult, likelihood_bound
from .divergence import divergence_fn, draw_probes
from .flow import LogDensityODE, ProbabilityFlow
from .ode import LikelihoodResult, log_likelihood
from .schedule import LikelihoodSchedule, calibrate_schedule, check_schedule

__all__ = ["log_likelihood", "LikelihoodResult", "likelihood_bound", "BoundResult", "divergence_fn", "draw_probes",
           "ProbabilityFlow", "LogDensityODE", "LikelihoodSchedule", "calibrate_schedule", "check_schedule",
           "ScoreFn"]
