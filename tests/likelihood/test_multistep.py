"""The multistep exponential integrators (DPM-Solver++(kM) with the Adams quadrature of the divergence): closed-form
answers on Gaussian data for every SDE, their order of convergence, the bits map's terms, calibration, refusals."""

import math

import pytest
import torch

from scorezoo import log_likelihood
from scorezoo.likelihood import LikelihoodSchedule, calibrate_schedule
from scorezoo.likelihood.multistep import adams_weights
from scorezoo.likelihood.solvers import SolverSettings, solve

EPS = 1e-5


def _error(gaussian, x, **kwargs) -> torch.Tensor:
    """Per-sample error of the solve against the closed form, nats/dim."""
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", **kwargs)
    return (res.logp - gaussian.ode_log_likelihood(x, EPS)) / gaussian.dim


def test_adams_weights_integrate_polynomials_exactly():
    """Known integrals: int_2^3 u^2 du = 19/3 from the nodes 0, 1, 2; int_0^1 e^-u du = 1 - 1/e from one node;
    int_0^1 u e^-u du = 1 - 2/e from the nodes 0 and 1."""
    w = adams_weights([0.0, 1.0, 2.0], 2.0, 3.0, exponential=False)
    assert sum(wi * u**2 for wi, u in zip(w, [0.0, 1.0, 2.0])) == pytest.approx(19 / 3, rel=1e-12)
    assert adams_weights([0.5], 0.0, 1.0, exponential=True)[0] == pytest.approx(1 - math.exp(-1), rel=1e-12)
    w = adams_weights([0.0, 1.0], 0.0, 1.0, exponential=True)
    assert w[1] == pytest.approx(1 - 2 / math.e, rel=1e-12)
    with pytest.raises(ValueError, match="distinct"):
        adams_weights([0.0, 0.0], 0.0, 1.0, exponential=False)


@pytest.mark.parametrize("method, order", [("dpmpp2m", 2), ("dpmpp3m", 3)])
def test_multistep_reaches_the_closed_form_at_its_order(gaussian, method, order):
    """On Gaussian data (exact score and divergence; VP, sub-VP and VE): 96 steps are within 1e-4 nats/dim of the
    closed-form log-likelihood, and halving the step divides the error by at least 0.75 * 2^order (measured: 3.8
    for dpmpp2m, 15 to 18 for dpmpp3m)."""
    x = gaussian.sample(8, torch.Generator().manual_seed(3))
    h = 0.25
    coarse = _error(gaussian, x, method=method, step_size=h).abs().max().item()
    fine = _error(gaussian, x, method=method, step_size=h / 2).abs().max().item()
    assert coarse / fine > 0.75 * 2**order, (coarse, fine)
    finest = _error(gaussian, x, method=method, step_size=0.125 * 12 / 96).abs().max().item()
    assert finest < 1e-4, finest


def test_multistep_is_one_evaluation_per_step_and_its_bits_map_sums_to_the_total(gaussian):
    x = gaussian.sample(4, torch.Generator().manual_seed(4)).float()
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", method="dpmpp3m", step_size=0.5,
                         per_dimension=True)
    settings = SolverSettings.create(method="dpmpp3m", step_size=0.5)
    assert settings.backend == "scorezoo" and settings.time_variable == "log_rho"
    rho = gaussian.sde.rho(torch.tensor([EPS, gaussian.sde.T], dtype=torch.float64))
    assert res.nfe == math.ceil(float(torch.log(rho[1] / rho[0])) / 0.5)
    assert torch.allclose(res.logp_per_dim.sum(1), res.logp, atol=1e-3)


def test_a_multistep_schedule_is_calibrated_on_its_measured_error(gaussian):
    """A dpmpp3m schedule calibrated to 0.002 bits/dim (mean) has that true error on its points against the closed
    form, costs one evaluation per step, and round-trips."""
    x = gaussian.sample(16, torch.Generator().manual_seed(10))
    sch = calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=0.002, criterion="mean", method="dpmpp3m",
                             divergence="exact", optimizer_evals=10)
    assert sch.target_met and sch.estimated_error is None and sch.nfe == sch.num_steps
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", schedule=sch)
    assert res.nfe == sch.num_steps
    true = -(res.logp - gaussian.ode_log_likelihood(x, EPS)) / (gaussian.dim * math.log(2))
    assert true.mean().abs().item() <= 0.002
    assert true.mean().item() == pytest.approx(sch.measured_mean_error, abs=1e-4)
    assert LikelihoodSchedule.from_dict(sch.to_dict()).nfe == sch.nfe


def test_the_warped_grid_family_and_its_fit_find_known_answers():
    """The two-parameter grids of the multistep search: (0, 0) is the uniform grid; a > 1 (b > 1) widens the
    steps at the start (end) and keeps the ends; the points are the Kumaraswamy quantiles (checked against the
    CDF 1 - (1 - s^a)^b at each point); Nelder-Mead recovers a known warp from the uniform start."""
    from scorezoo.likelihood.multistep import optimize_warp, warped_grid

    assert warped_grid(-2.0, 6.0, 4, (0.0, 0.0)) == pytest.approx([-2.0, 0.0, 2.0, 4.0, 6.0], abs=1e-12)
    for warp in ((0.7, 0.0), (0.0, 0.7), (0.5, 0.9), (-0.4, 0.3)):
        g = warped_grid(-2.0, 6.0, 10, warp)
        assert g[0] == -2.0 and g[-1] == 6.0 and all(b > a for a, b in zip(g, g[1:]))
        a, b = math.exp(warp[0]), math.exp(warp[1])
        cdf = [1 - (1 - ((u + 2.0) / 8.0) ** a) ** b for u in g]
        assert cdf == pytest.approx([i / 10 for i in range(11)], abs=1e-9)
    assert warped_grid(0.0, 1.0, 10, (0.7, 0.0))[1] > 0.1 > warped_grid(0.0, 1.0, 10, (-0.7, 0.0))[1]
    assert 1 - warped_grid(0.0, 1.0, 10, (0.0, 0.7))[-2] > 0.1
    goal = torch.tensor(warped_grid(0.0, 1.0, 8, (0.6, -0.4)), dtype=torch.float64)
    warp = optimize_warp(0.0, 1.0, 8, lambda g: torch.tensor(g, dtype=torch.float64) - goal, 200, (0.0, 0.0))
    assert warp == pytest.approx((0.6, -0.4), abs=0.02)


def test_the_multistep_search_takes_fewer_steps_than_the_uniform_grid():
    """Fitting the warp while the target holds needs fewer steps than the uniform grids alone (no optimiser),
    and meets the same target (VP only: the search is the same code for every SDE, and it is costly)."""
    from scorezoo import VPSDE
    from scorezoo.models import GaussianScore

    from ..conftest import gaussian_params

    gaussian = GaussianScore(VPSDE(), *gaussian_params())
    x = gaussian.sample(16, torch.Generator().manual_seed(11))
    kw = dict(eps=EPS, target=0.002, criterion="rms", method="dpmpp3m", divergence="exact")
    fitted = calibrate_schedule(gaussian, gaussian.sde, x, optimizer_evals=12, **kw)
    uniform = calibrate_schedule(gaussian, gaussian.sde, x, optimizer_evals=0, **kw)
    assert fitted.target_met and uniform.target_met
    assert fitted.num_steps < uniform.num_steps, (fitted.num_steps, uniform.num_steps)
    assert fitted.measured_rms_error <= 0.002


def test_multistep_methods_are_refused_where_they_do_not_apply(gaussian):
    x = gaussian.sample(4, torch.Generator().manual_seed(5)).float()
    with pytest.raises(ValueError, match="log rho"):
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, method="dpmpp3m", step_size=0.5, time_variable="t")
    with pytest.raises(ValueError, match="likelihood only"):
        solve(lambda u, y: y, x, torch.tensor([0.0, 1.0]), method="dpmpp3m")
    with pytest.raises(ValueError, match="log_rho"):
        LikelihoodSchedule(torch.tensor([EPS, 1.0], dtype=torch.float64), method="dpmpp3m", time_variable="t")
    with pytest.raises(ValueError, match="measure=True"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, method="dpmpp3m", measure=False)


def test_times_asked_for_are_reported_from_within_the_steps(gaussian):
    """As torchdiffeq's fixed-step methods: ``times=`` does not move the steps (the same answer and NFE), and the
    divergence integral reported at them (dense output) matches log p_eps(x) - log p_tau(x_tau) in closed form."""
    x = gaussian.sample(4, torch.Generator().manual_seed(8))
    plain = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", method="dpmpp3m", step_size=0.05)
    times = torch.tensor([1e-3, 0.1, 0.5], dtype=torch.float64)
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", method="dpmpp3m", step_size=0.05,
                         times=times)
    assert torch.equal(res.logp, plain.logp) and res.nfe == plain.nfe
    t_eps = torch.full((4,), EPS, dtype=torch.float64)
    for k, tau in enumerate(times.tolist()):
        x_tau = gaussian.flow(x, EPS, tau)
        expected = gaussian.log_prob(x, t_eps) - gaussian.log_prob(x_tau, torch.full((4,), tau, dtype=torch.float64))
        assert ((res.delta_logp_path[k] - expected).abs() / gaussian.dim).max() < 1e-4
