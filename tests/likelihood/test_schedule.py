"""Calibrated fixed-step schedules: their error meets the target (measured against closed forms), batch independence,
round trips, refused input."""

import math

import pytest
import torch

from scorezoo import log_likelihood
from scorezoo.likelihood import LikelihoodSchedule, calibrate_schedule

EPS = 1e-5


def _bpd_error(gaussian, res, x):
    """Per-sample error of ``res.logp`` against the closed form, in bits/dim."""
    return (res.logp.double() - gaussian.ode_log_likelihood(x.double(), EPS)) / (gaussian.dim * math.log(2))


@pytest.mark.parametrize("time_variable", ["log_rho", "t"])
def test_calibrated_schedule_meets_its_target_on_held_out_samples(gaussian, time_variable):
    """On the step-doubling estimate alone (``measure=False``): calibrated on 32 samples, a schedule's error
    on 32 other samples is within 2x its target, and the estimate is within a factor 2 of that error (step
    doubling is an estimate, not a bound). A coarser target gives fewer steps and a larger error."""
    xc = gaussian.sample(32, torch.Generator().manual_seed(10))
    xt = gaussian.sample(32, torch.Generator().manual_seed(11))
    fine = calibrate_schedule(gaussian, gaussian.sde, xc, eps=EPS, target=0.005, divergence="exact",
                              time_variable=time_variable, measure=False)
    coarse = calibrate_schedule(gaussian, gaussian.sde, xc, eps=EPS, target=0.05, divergence="exact",
                                time_variable=time_variable, measure=False)
    assert fine.measured_rms_error is None and fine.measured_mean_error is None
    assert fine.estimated_error <= 0.005 and coarse.estimated_error <= 0.05
    assert coarse.num_steps < fine.num_steps
    assert fine.times[0].item() == EPS and fine.times[-1].item() == gaussian.sde.T
    errors = {}
    for name, sch in (("fine", fine), ("coarse", coarse)):
        res = log_likelihood(gaussian, gaussian.sde, xt, eps=EPS, divergence="exact", schedule=sch)
        assert res.nfe == sch.nfe == 4 * sch.num_steps  # rk4: four evaluations per step, nothing else
        errors[name] = _bpd_error(gaussian, res, xt).pow(2).mean().sqrt().item()
    assert errors["fine"] < 2 * 0.005, errors
    assert 0.5 < errors["fine"] / fine.estimated_error < 2, (errors, fine.estimated_error)
    assert errors["coarse"] > errors["fine"]


def test_measured_calibration_reports_the_true_error_and_meets_its_target(gaussian):
    """With ``measure`` (the default) the errors a schedule reports on its calibration points are their true
    errors against the closed-form log-density (the reference is a tight solve of the same ODE); they meet the
    target under either criterion, held-out samples stay within 2x the target, and bounding only the mean
    error never takes more steps than bounding each sample's."""
    xc = gaussian.sample(32, torch.Generator().manual_seed(10))
    xt = gaussian.sample(32, torch.Generator().manual_seed(11))
    steps = {}
    for criterion in ("rms", "mean"):
        sch = calibrate_schedule(gaussian, gaussian.sde, xc, eps=EPS, target=0.005, criterion=criterion,
                                 divergence="exact")
        assert sch.criterion == criterion
        steps[criterion] = sch.num_steps
        for x, name in ((xc, "calibration"), (xt, "held out")):
            res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", schedule=sch)
            true = -_bpd_error(gaussian, res, x)  # the schedule's bits/dim minus the true bits/dim
            value = true.pow(2).mean().sqrt().item() if criterion == "rms" else true.mean().abs().item()
            if name == "calibration":
                assert abs(sch.measured_rms_error - true.pow(2).mean().sqrt().item()) < 1e-4, criterion
                assert abs(sch.measured_mean_error - true.mean().item()) < 1e-4, criterion
                if criterion == "mean":  # the mean plus two standard errors
                    value += 2 * true.std().item() / math.sqrt(len(x))
                assert value <= 0.005 + 1e-4, (criterion, value)
            else:
                assert value < 2 * 0.005, (criterion, value)
    assert steps["mean"] <= steps["rms"], steps


def test_grid_optimiser_finds_a_known_optimum():
    """The calibration's Nelder-Mead step keeps the ends and reaches the interior points that zero a known
    error function from an even start."""
    from scorezoo.likelihood.schedule import _optimize_grid

    goal = [0.2, 0.5, 0.9]
    grid = _optimize_grid([0.0, 0.25, 0.5, 0.75, 1.0], lambda g: torch.tensor(g[1:-1]) - torch.tensor(goal), 400)
    assert grid[0] == 0.0 and grid[-1] == 1.0
    assert max(abs(a - b) for a, b in zip(grid[1:-1], goal)) < 0.01, grid


def test_schedule_is_batch_independent_and_reports_paths(gaussian):
    """Fixed steps: a sample scores the same alone and next to an outlier (float32 rounding only), and the result
    reports the divergence path at the schedule's steps; extra ``times=`` would move the steps, so they are refused."""
    xc = gaussian.sample(16, torch.Generator().manual_seed(12))
    sch = calibrate_schedule(gaussian, gaussian.sde, xc, eps=EPS, target=0.01, divergence="exact")
    x = gaussian.sample(3, torch.Generator().manual_seed(13)).float()
    batch = torch.cat([x, 50 * torch.ones(1, gaussian.dim)])
    alone = log_likelihood(gaussian, gaussian.sde, x[:1], eps=EPS, divergence="exact", schedule=sch).logp
    together = log_likelihood(gaussian, gaussian.sde, batch, eps=EPS, divergence="exact", schedule=sch).logp[:1]
    assert ((alone - together).abs() / gaussian.dim).max() < 1e-5
    res = log_likelihood(gaussian, gaussian.sde, x.double(), eps=EPS, divergence="exact", schedule=sch)
    assert torch.allclose(res.times, sch.times) and res.delta_logp_path.shape == (len(sch.times), 3)
    for k, tau in enumerate(res.times.tolist()):
        expected = gaussian.log_prob(x.double(), torch.full((3,), EPS, dtype=torch.float64)) - gaussian.log_prob(
            gaussian.flow(x.double(), EPS, tau), torch.full((3,), tau, dtype=torch.float64))
        assert ((res.delta_logp_path[k] - expected).abs() / gaussian.dim).max() < 0.02
    with pytest.raises(ValueError, match="drop times"):
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, schedule=sch, times=torch.tensor([0.05, 0.5]))


def test_schedule_round_trips(gaussian):
    x = gaussian.sample(4, torch.Generator().manual_seed(14)).float()
    sch = calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=0.05, divergence="exact")
    again = LikelihoodSchedule.from_dict(sch.to_dict())
    assert torch.equal(again.times, sch.times) and again.to_dict() == sch.to_dict()
    a = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", schedule=sch).logp
    b = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", schedule=sch.to_dict()).logp
    assert torch.equal(a, b)
    assert LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "measured_mean_error": -0.1}).measured_mean_error == -0.1


@pytest.mark.parametrize("bad, match", [
    ({"times": [0.5, 0.1]}, "increasing"),
    ({"times": [1e-5, 1.0], "method": "dopri5"}, "method"),
    ({"times": [1e-5, 1.0], "target": 0.1, "method": ["rk4"]}, "malformed"),
    ({"times": "abc"}, "list of numbers"),
    ({"times": [1e-5, 1.0], "target": -1}, "target must be a finite number"),
    ({"times": [1e-5, 1.0], "measured_rms_error": True}, "measured_rms_error"),
    ({"times": [1e-5, 1.0], "measured_rms_error": -0.1}, "measured_rms_error"),
    ({"times": [1e-5, 1.0], "criterion": "max"}, "criterion"),
    ({"times": [1e-5, 1.0], "target_met": "yes"}, "target_met"),
])
def test_malformed_schedules_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        LikelihoodSchedule.from_dict(bad)


@pytest.mark.parametrize("schedule, match", [
    ("eps", "eps = 0.001"),
    ({"times": [EPS, 0.1, 0.5]}, "ends at 0.5"),
    ([1e-5, 1.0], "LikelihoodSchedule"),
])
def test_log_likelihood_refuses_a_schedule_that_does_not_fit(gaussian, schedule, match):
    x = gaussian.sample(2, torch.Generator().manual_seed(14)).float()
    eps = EPS
    if schedule == "eps":  # a schedule made for eps = 1e-5, asked for at 1e-3
        schedule, eps = LikelihoodSchedule(torch.tensor([EPS, 0.5, 1.0], dtype=torch.float64)), 1e-3
    with pytest.raises(ValueError, match=match):
        log_likelihood(gaussian, gaussian.sde, x, eps=eps, schedule=schedule)


@pytest.mark.parametrize("bad, match", [
    ({"target": float("inf")}, "target must be a finite number"),
    ({"target": 0}, "target"),
    ({"target": True}, "target"),
    ({"method": "dopri5"}, "fixed-step"),
    ({"criterion": "max"}, "criterion"),
    ({"measure": "no"}, "measure"),
    ({"initial_steps": None}, "initial"),
    ({"max_steps": float("inf")}, "max"),
    ({"initial_steps": 8, "max_steps": 4}, "initial_steps"),
    ({"generator": 123}, "generator"),
    ({"optimizer_evals": True}, "optimizer"),
    ({"optimizer_evals": -1}, "optimizer_evals"),
    ({"reference_tol": 0}, "reference_tol"),
])
def test_calibrate_schedule_refuses_bad_options(gaussian, bad, match):
    x = gaussian.sample(4, torch.Generator().manual_seed(14)).float()
    with pytest.raises(ValueError, match=match):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, **bad)


def test_calibrate_schedule_warns_on_few_points_and_at_max_steps(gaussian):
    x = gaussian.sample(4, torch.Generator().manual_seed(14)).float()
    with pytest.warns(UserWarning, match="16 to 64 points"):
        calibrate_schedule(gaussian, gaussian.sde, x[:1], eps=EPS, target=0.5, divergence="exact")
    with pytest.warns(UserWarning, match="max_steps"):
        capped = calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=1e-6, initial_steps=2, max_steps=3,
                                    divergence="exact")
    assert capped.num_steps == 3


def test_calibrate_schedule_says_whether_it_met_its_target(gaussian):
    """A calibration stopped by max_steps above its target says so (target_met False, and warns); one that meets
    it says True; both survive a round trip through the pipeline config's dict."""
    x = gaussian.sample(16, torch.Generator().manual_seed(0)).float()
    with pytest.warns(UserWarning, match="stopped at max_steps"):
        capped = calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=1e-6, initial_steps=2, max_steps=3,
                                    divergence="exact", measure=False)
    met = calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=0.05, divergence="exact", measure=False)
    assert capped.target_met is False and met.target_met is True
    for sch in (capped, met):
        assert LikelihoodSchedule.from_dict(sch.to_dict()).target_met is sch.target_met
