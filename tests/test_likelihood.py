"""Probability-flow ODE likelihoods against the closed-form answer for Gaussian data."""

import math

import pytest
import torch

from scorezoo import log_likelihood
from scorezoo.likelihood import LikelihoodSchedule, calibrate_schedule, divergence_fn

EPS = 1e-5


def test_exact_divergence_matches_closed_form(gaussian):
    """ODE logp with the exact divergence equals log p_eps(x) - log p_T(x_T) + log pi(x_T) within 1e-4 nats/dim.

    Tolerance: the solver runs at rtol = atol = 1e-7 in float64, so the only error left is the solver's."""
    x = gaussian.sample(8, torch.Generator().manual_seed(1))
    res = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", rtol=1e-7, atol=1e-7)
    exact = gaussian.ode_log_likelihood(x, EPS)
    assert res.logp.shape == (8,)
    assert ((res.logp - exact).abs() / gaussian.dim).max() < 1e-4
    torch.testing.assert_close(res.logp, res.prior_logp + res.delta_logp)
    torch.testing.assert_close(res.z, gaussian.flow(x, EPS, 1.0), rtol=1e-4, atol=1e-4)
    assert res.nfe > 0


def test_default_tolerances_in_float32_are_accurate(gaussian):
    """At the default rtol = atol = 1e-5 in float32 the error stays below 1e-4 nats/dim."""
    x = gaussian.sample(4, torch.Generator().manual_seed(2))
    res = log_likelihood(gaussian, gaussian.sde, x.float(), eps=EPS, divergence="exact")
    exact = gaussian.ode_log_likelihood(x, EPS)
    assert ((res.logp.double() - exact).abs() / gaussian.dim).max() < 1e-4


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_seeded(gaussian, probe):
    """Over 40 seeds, the mean Hutchinson estimate is within 4 standard errors of the exact value; the
    same seed gives bit-identical output."""
    x = gaussian.sample(2, torch.Generator().manual_seed(3))
    exact = gaussian.ode_log_likelihood(x, EPS)
    runs = torch.stack([
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, probe=probe, rtol=1e-6, atol=1e-6,
                       generator=torch.Generator().manual_seed(s)).logp
        for s in range(40)
    ])
    mean, se = runs.mean(0), runs.std(0) / math.sqrt(runs.shape[0])
    assert (runs.std(0) > 0).all(), "the estimator should vary across seeds"
    assert ((mean - exact).abs() < 4 * se + 1e-3).all(), (mean - exact, se)
    a = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, probe=probe, generator=torch.Generator().manual_seed(7))
    b = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, probe=probe, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.logp, b.logp)


def test_more_probes_reduce_variance(gaussian):
    x = gaussian.sample(1, torch.Generator().manual_seed(4))

    def spread(p):
        return torch.stack([log_likelihood(gaussian, gaussian.sde, x, num_probes=p, rtol=1e-4, atol=1e-4,
                                           generator=torch.Generator().manual_seed(s)).logp for s in range(16)]).std()

    assert spread(8) < spread(1)


def test_divergence_fn_exact_matches_jacobian_trace():
    """On a small nonlinear network the batched exact divergence equals the trace of the autograd Jacobian."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6)).double()

    def score_fn(x, t):
        return net(x) * (1 + t[:, None])

    x, t = torch.randn(3, 6, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    # one, four or all six dimensions per replicated batch of 3 samples
    for max_batch_size in (3, 12, None):
        s, div = divergence_fn(score_fn, x, t, max_batch_size=max_batch_size)
        jac = torch.stack([torch.autograd.functional.jacobian(lambda y: score_fn(y[None], t[i:i + 1])[0], x[i])
                           for i in range(3)])
        torch.testing.assert_close(div, jac.diagonal(dim1=1, dim2=2).sum(1))
        torch.testing.assert_close(s, score_fn(x, t))


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


def test_reduce_false_gives_terms_that_sum_to_the_divergence(gaussian):
    x = gaussian.sample(3, torch.Generator().manual_seed(10))
    t = torch.full((3,), 0.3, dtype=torch.float64)
    probes = torch.randint(0, 2, (2, *x.shape), generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    for p in (None, probes):
        _, div = divergence_fn(gaussian, x, t, probes=p)
        _, terms = divergence_fn(gaussian, x, t, probes=p, reduce=False)
        assert terms.shape == x.shape
        torch.testing.assert_close(terms.sum(1), div)
    # the exact diagonal of the Gaussian score's Jacobian is -diag(C_t^-1)
    _, diag = divergence_fn(gaussian, x, t, reduce=False)
    alpha, c = gaussian._c(t)
    prec = gaussian.eigvecs @ torch.diag(1 / c[0]) @ gaussian.eigvecs.T
    torch.testing.assert_close(diag[0], -prec.diagonal())


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


def test_schedule_round_trips_and_rejects_bad_input(gaussian):
    x = gaussian.sample(4, torch.Generator().manual_seed(14)).float()
    sch = calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=0.05, divergence="exact")
    again = LikelihoodSchedule.from_dict(sch.to_dict())
    assert torch.equal(again.times, sch.times) and again.to_dict() == sch.to_dict()
    a = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", schedule=sch).logp
    b = log_likelihood(gaussian, gaussian.sde, x, eps=EPS, divergence="exact", schedule=sch.to_dict()).logp
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="eps = 0.001"):
        log_likelihood(gaussian, gaussian.sde, x, eps=1e-3, schedule=sch)
    with pytest.raises(ValueError, match="increasing"):
        LikelihoodSchedule.from_dict({"times": [0.5, 0.1]})
    with pytest.raises(ValueError, match="method"):
        LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "method": "dopri5"})
    with pytest.raises(ValueError, match="malformed"):
        LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "target": 0.1, "method": ["rk4"]})
    with pytest.raises(ValueError, match="ends at 0.5"):
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, schedule={"times": [EPS, 0.1, 0.5]})
    with pytest.raises(ValueError, match="list of numbers"):
        LikelihoodSchedule.from_dict({"times": "abc"})
    with pytest.raises(ValueError, match="target must be a finite number"):
        LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "target": -1})
    with pytest.raises(ValueError, match="target must be a finite number"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=float("inf"))
    with pytest.warns(UserWarning, match="16 to 64 points"):
        calibrate_schedule(gaussian, gaussian.sde, x[:1], eps=EPS, target=0.5, divergence="exact")
    with pytest.raises(ValueError, match="LikelihoodSchedule"):
        log_likelihood(gaussian, gaussian.sde, x, eps=EPS, schedule=[1e-5, 1.0])
    with pytest.raises(ValueError, match="fixed-step"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, method="dopri5")
    with pytest.raises(ValueError, match="target"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, target=0)
    with pytest.raises(ValueError, match="criterion"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, criterion="max")
    for bad in ({"measure": "no"}, {"initial_steps": None}, {"max_steps": float("inf")}, {"generator": 123},
                {"target": True}, {"optimizer_evals": True}):
        with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
            calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, **bad)
    with pytest.raises(ValueError, match="measured_rms_error"):
        LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "measured_rms_error": True})
    with pytest.raises(ValueError, match="reference_tol"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, reference_tol=0)
    with pytest.raises(ValueError, match="optimizer_evals"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, optimizer_evals=-1)
    with pytest.raises(ValueError, match="criterion"):
        LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "criterion": "max"})
    with pytest.raises(ValueError, match="measured_rms_error"):
        LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "measured_rms_error": -0.1})
    assert LikelihoodSchedule.from_dict({"times": [1e-5, 1.0], "measured_mean_error": -0.1}).measured_mean_error == -0.1
    with pytest.raises(ValueError, match="initial_steps"):
        calibrate_schedule(gaussian, gaussian.sde, x, eps=EPS, initial_steps=8, max_steps=4)
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
