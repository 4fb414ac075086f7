"""log_likelihood: the probability-flow ODE log-density against the closed form of Gaussian data, for every solver
and time variable; bad input and conflicting arguments."""


import pytest
import torch

from scorezoo import log_likelihood
from scorezoo.likelihood import LikelihoodSchedule

EPS = 1e-5


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(0, 16), "empty batch"),
    (torch.full((2, 16), float("nan")), "NaN or inf"),
    (torch.zeros(16), "batch dimension"),
    (torch.zeros(2, 16, dtype=torch.long), "floating point"),
])
def test_bad_input_raises_value_error(gaussian, bad, match):
    with pytest.raises(ValueError, match=match):
        log_likelihood(gaussian, gaussian.sde, bad)


def test_bad_options_raise_value_error(gaussian):
    x = gaussian.sample(1).float()
    with pytest.raises(ValueError, match="divergence"):
        log_likelihood(gaussian, gaussian.sde, x, divergence="skilling")
    with pytest.raises(ValueError, match="probe"):
        log_likelihood(gaussian, gaussian.sde, x, probe="sphere")
    with pytest.raises(ValueError, match="eps"):
        log_likelihood(gaussian, gaussian.sde, x, eps=1.5)
    with pytest.raises(ValueError, match="num_probes"):
        log_likelihood(gaussian, gaussian.sde, x, num_probes=0)


@pytest.mark.parametrize("solver, time_variable", [("torchdiffeq", "t"), ("torchdiffeq", "rho"),
                                                   ("torchdiffeq", "log_rho"), ("torchode", "t"),
                                                   ("torchode", "rho"), ("torchode", "log_rho")])
def test_solvers_and_time_variables_agree_with_closed_form(gaussian, solver, time_variable):
    """Every solver and time variable reproduces the closed form within 1e-4 nats/dim, and the path of the
    divergence integral matches log p_eps(x) - log p_tau(x_tau) at intermediate times (affine flow)."""
    x = gaussian.sample(4, torch.Generator().manual_seed(8))
    times = torch.tensor([1e-3, 0.1, 0.5], dtype=torch.float64)
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", rtol=1e-7, atol=1e-7,
                         solver=solver, time_variable=time_variable, times=times)
    exact = gaussian.ode_log_likelihood(x, EPS)
    assert ((res.logp - exact).abs() / gaussian.dim).max() < 1e-4
    assert res.delta_logp_path.shape == (3, 4)
    t_eps = torch.full((4,), EPS, dtype=torch.float64)
    for k, tau in enumerate(times.tolist()):
        x_tau = gaussian.flow(x, EPS, tau)
        expected = gaussian.log_prob(x, t_eps) - gaussian.log_prob(x_tau, torch.full((4,), tau, dtype=torch.float64))
        assert ((res.delta_logp_path[k] - expected).abs() / gaussian.dim).max() < 1e-4


def test_per_sample_solver_is_batch_independent(gaussian):
    """With a step size per sample, a sample's answer is the same alone and next to an outlier."""
    x = gaussian.sample(3, torch.Generator().manual_seed(9)).float()
    batch = torch.cat([x, 50 * torch.ones(1, gaussian.dim)])
    kw = dict(solver="torchode", generator=None, divergence="exact")
    alone = log_likelihood(gaussian, gaussian.sde, x[:1], **kw).logp
    together = log_likelihood(gaussian, gaussian.sde, batch, **kw).logp[:1]
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-4)


def test_times_must_be_increasing_within_the_interval(gaussian):
    x = gaussian.sample(1)
    ends = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, times=torch.tensor([EPS, 0.5, 1.0], dtype=torch.float32))
    assert ends.delta_logp_path[0].abs().max() == 0 and torch.equal(ends.delta_logp_path[-1], ends.delta_logp)
    for bad in ([0.5, 0.2], [0.0, 0.5], [0.5, 2.0], []):
        with pytest.raises(ValueError, match="times"):
            log_likelihood(gaussian, gaussian.sde, x, times=torch.tensor(bad))


def test_per_dimension_terms_of_independent_gaussians_match_their_one_dimensional_likelihoods():
    """With a diagonal covariance each coordinate flows on its own, so its share of log p_eps(x) is the 1-D Gaussian's
    ODE log-likelihood (closed form), to 1e-7 nats (the float64 solve at rtol = atol = 1e-10 accumulates ~2e-8). The
    terms sum to logp, and Hutchinson's per-dimension terms sum to its own logp too."""
    from scorezoo import VPSDE
    from scorezoo.models import GaussianScore

    sde = VPSDE()
    var = torch.tensor([0.05, 0.2, 0.5, 1.0], dtype=torch.float64)
    mean = torch.tensor([-0.5, 0.0, 0.3, 0.1], dtype=torch.float64)
    score = GaussianScore(sde, mean, torch.diag(var))
    x = score.sample(3, torch.Generator().manual_seed(0))
    res = log_likelihood(score, sde, x, eps=EPS, divergence="exact", per_dimension=True, rtol=1e-10, atol=1e-10)
    want = torch.stack([GaussianScore(sde, mean[i:i + 1], var[i:i + 1, None]).ode_log_likelihood(x[:, i:i + 1], EPS)
                        for i in range(4)], 1)
    torch.testing.assert_close(res.logp_per_dim, want, rtol=0, atol=1e-7)
    torch.testing.assert_close(res.logp_per_dim.sum(1), res.logp)
    hutch = log_likelihood(score, sde, x, eps=EPS, per_dimension=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hutch.logp_per_dim.sum(1), hutch.logp)


@pytest.mark.parametrize("kwargs, match", [
    ({"schedule": "S", "method": "rk4"}, "drop method"),
    ({"schedule": "S", "rtol": 1e-3}, "drop rtol"),
    ({"schedule": "S", "solver": "torchode"}, "drop solver"),
    ({"schedule": "S", "time_variable": "t"}, "drop time_variable"),
    ({"solver": "torchode", "options": {"step_size": 0.1}}, "is adaptive: .* drop the step size"),
    ({"solver": "torchode", "method": "rk4"}, "torchode does not have the method 'rk4'"),
    ({"solver": "torchdiffeq", "method": "tsit5"}, "torchdiffeq does not have the method 'tsit5'"),
    ({"method": "rk4", "options": {"step_size": 0.1}, "rtol": 1e-3}, "rtol and atol do nothing"),
    ({"method": "rk4"}, "takes fixed steps: give a step size"),
    ({"method": "leapfrog"}, "unknown ODE method 'leapfrog'; adaptive: dopri5"),
    ({"method": "scipy_solver"}, "unknown ODE method"),
    ({"method": "rk4", "options": {"step_size": 0.1, "perturb": True}}, "options takes only 'step_size'"),
    ({"bogus": 1}, r"unknown option\(s\) \['bogus'\]"),
    ({"divergence": "exact", "num_probes": 4}, "draws no probes"),
    ({"time_variable": "sigma"}, "time_variable"),
])
def test_conflicting_or_unknown_solver_arguments_are_refused(gaussian, kwargs, match):
    """As torchdiffeq refuses options without a method: an argument that would be silently ignored or overridden is
    a ValueError that says which one to drop."""
    x = gaussian.sample(2, torch.Generator().manual_seed(0)).float()
    if kwargs.get("schedule") == "S":
        kwargs = {**kwargs, "schedule": LikelihoodSchedule(torch.tensor([EPS, 0.5, 1.0], dtype=torch.float64))}
    with pytest.raises(ValueError, match=match):
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, **kwargs)


def test_a_result_prints_shapes_not_tensors(gaussian):
    x = gaussian.sample(300, torch.Generator().manual_seed(0)).float()
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, method="rk4", options={"step_size": 0.25})
    text = repr(res)
    assert "z=tensor(shape=(300, 16)" in text and len(text) < 600 and res.nfe == 16
