"""One scoring plan (scorezoo.scoring): its defaults, every refused combination in one line, and the same number for
the same picture, options and seed from ``scorezoo bpd``, ``scorezoo eval`` and the app."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import cli
from scorezoo.demo.compute import DemoSettings, score_file
from scorezoo.likelihood import LikelihoodSchedule
from scorezoo.likelihood.solvers import SOLVERS, SolverSettings, solve
from scorezoo.scoring import ScoringPlan, draw_generators
from tests.helpers import tiny_unet_pipeline


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Bit-equal numbers across the three entry points: the CLI and eval set no threads, the app sets 1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scheduled(pipe):
    pipe.likelihood_schedule = LikelihoodSchedule(torch.linspace(pipe.eps, 1.0, 3, dtype=torch.float64))
    return pipe


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A grayscale 8×8 model that resizes pictures and a colour 16×16 model of patches that tiles them, both with
    a calibrated schedule (two rk4 steps), saved as folders."""
    root = tmp_path_factory.mktemp("models")
    _scheduled(tiny_unet_pipeline()).save_pretrained(root / "gray")
    _scheduled(tiny_unet_pipeline(channels=3, size=16, num_levels=256,
                                  extra_config={"tile_larger_images": True, "dataset": "photo_folder"})
               ).save_pretrained(root / "photo")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(root / "digit.png")
    Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(root / "photo.png")
    return root


# -- the plan's rules --------------------------------------------------------------------------------------------
def test_defaults_follow_the_model():
    pipe = tiny_unet_pipeline()
    plan = ScoringPlan.create(pipe)
    assert plan.solver.adaptive and plan.solver.method == "dopri5" and plan.solver.backend == "torchode"
    assert plan.divergence == "exact" and plan.num_repeats == 4  # 64 dimensions; an untiled picture: 4 draws
    sch = ScoringPlan.create(_scheduled(pipe))
    assert sch.solver.schedule is pipe.likelihood_schedule and sch.nfe == 8
    photo = tiny_unet_pipeline(channels=3, size=16, num_levels=256, extra_config={"tile_larger_images": True})
    p = ScoringPlan.create(photo)
    assert p.divergence == "hutchinson" and p.num_repeats == 1  # 768 dimensions; one draw per patch
    assert ScoringPlan.create(photo, tile=False).num_repeats == 4
    assert ScoringPlan.create(pipe, method="tsit5").solver.backend == "torchode"
    assert ScoringPlan.create(pipe, method="bosh3").solver.backend == "torchdiffeq"
    fixed = ScoringPlan.create(pipe, method="rk4", step_size=0.5)
    assert not fixed.solver.adaptive and fixed.to_dict()["solver"] == "fixed" and fixed.to_dict()["step_size"] == 0.5
    assert "bound" in ScoringPlan.create(pipe, estimator="bound").describe()


@pytest.mark.parametrize("kwargs, match", [
    ({"solver": "calibrated"}, "has no calibrated likelihood schedule: drop --fast"),
    ({"method": "bogus"}, "unknown ODE method 'bogus'; adaptive: dopri5, tsit5"),
    ({"method": "scipy_solver"}, "unknown ODE method"),
    ({"method": "rk4"}, "'rk4' takes fixed steps: give a step size"),
    ({"step_size": 0.1}, "'dopri5' is adaptive: .*drop the step size"),
    ({"method": "rk4", "step_size": 0.1, "rtol": 1e-3}, "rtol and atol do nothing"),
    ({"solver": "adaptive", "method": "rk4", "step_size": 0.1}, "'rk4' is a fixed-step method, but the adaptive"),
    ({"method": "tsit5", "backend": "torchdiffeq"}, "torchdiffeq does not have the method 'tsit5'"),
    ({"estimator": "bound", "rtol": 1e-3}, "the likelihood bound solves no ODE: drop rtol"),
    ({"estimator": "bound", "bits_map": True}, "drop bits map"),
    ({"estimator": "integral"}, "estimator must be one of ode, bound"),
    ({"divergence": "sometimes"}, "divergence must be one of auto, exact, hutchinson"),
    ({"divergence": "exact", "num_probes": 4}, "exact divergence draws no probes"),
    ({"num_repeats": 0}, "num_repeats must be an integer >= 1"),
    ({"dequantization": "variational"}, "has no variational dequantizer"),
    ({"num_time_points": 10}, "are the bound's"),
])
def test_every_conflict_is_refused_in_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        ScoringPlan.create(tiny_unet_pipeline(), **kwargs)
    assert "\n" not in str(e.value)


def test_calibrated_with_solver_options_is_refused():
    with pytest.raises(ValueError, match="the calibrated schedule .* fixes the solve: drop method, rtol"):
        ScoringPlan.create(_scheduled(tiny_unet_pipeline()), solver="calibrated", method="dopri5", rtol=1e-3)


def test_the_command_line_checks_solver_options_before_any_model(capsys):
    """``scorezoo bpd --method bogus`` and ``--method tsit5 --step-size`` say what is wrong, before reading a file."""
    assert cli.main(["bpd", "nowhere.png", "--method", "bogus"]) == 2
    assert "unknown ODE method 'bogus'" in capsys.readouterr().err
    assert cli.main(["bpd", "nowhere.png", "--method", "tsit5", "--step-size", "0.1"]) == 2
    assert "'tsit5' is adaptive" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no calibrated likelihood schedule"):
        SolverSettings.choose(None, solver="calibrated")


def test_the_solver_table_runs_every_method_on_a_linear_ode():
    """dy/du = -y from 1: every method of the table, on every backend it names, lands near exp(-1)."""
    y0 = torch.ones(2, 3, dtype=torch.float64)
    grid = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for name, spec in SOLVERS.items():
        for backend in spec.backends:
            if backend == "scorezoo":  # the likelihood's own multistep methods: tests/likelihood/test_multistep.py
                continue
            kw = {"rtol": 1e-7, "atol": 1e-9} if spec.adaptive else {"step_size": 1e-3}
            y = solve(lambda u, y: -y, y0, grid, method=name, backend=backend, **kw)[-1]
            # the tolerance is that of the least accurate method, Euler at h = 1e-3: error ~ h e^-1 / 2
            torch.testing.assert_close(y, torch.full_like(y, np.exp(-1)), rtol=0, atol=2e-4)
    assert SolverSettings.create(method="rk4", step_size=0.1).describe() == "rk4, fixed step 0.1"


# -- the same number everywhere -----------------------------------------------------------------------------------
#: the solver flags (the same for scorezoo bpd and scorezoo eval) and the app's ode_kwargs of each kind of solve
SOLVES = {"calibrated": (["--fast"], {"solver": "calibrated"}),
          "adaptive": (["--rtol", "1e-3", "--atol", "1e-3"], {"solver": "adaptive", "rtol": 1e-3, "atol": 1e-3}),
          "fixed": (["--method", "euler", "--step-size", "0.25"],
                    {"solver": "fixed", "method": "euler", "step_size": 0.25}),
          "tsit5": (["--method", "tsit5", "--rtol", "1e-3"], {"solver": "adaptive", "method": "tsit5", "rtol": 1e-3}),
          "multistep": (["--method", "dpmpp3m", "--step-size", "1.0"],
                        {"solver": "fixed", "method": "dpmpp3m", "step_size": 1.0})}


@pytest.mark.parametrize("tiling", ["resize", "tile"])
@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
@pytest.mark.parametrize("solve_name", sorted(SOLVES))
def test_cli_eval_and_app_give_the_same_number(models, tmp_path, capsys, tiling, divergence, solve_name):
    """One picture, one set of options, one seed: ``scorezoo bpd``, ``scorezoo eval`` and the app each make the plan
    in scorezoo.scoring and draw the picture's noise and probes from (seed, 0, draw), so they agree to float
    rounding (batched kernels may round differently: 1e-9 relative)."""
    if tiling == "tile" and divergence == "exact":
        pytest.skip("768 dimensions: the exact divergence of a 16×16×3 patch is slow and adds nothing here")
    name, picture = ("photo", models / "photo.png") if tiling == "tile" else ("gray", models / "digit.png")
    model = models / name
    cli_args, app_kwargs = SOLVES[solve_name]
    common = ["--model", str(model), "--divergence", divergence, "-k", "2", "--seed", "5", "--threads", "1"]
    assert cli.main(["bpd", str(picture), "--json", *common, *cli_args]) == 0
    via_cli = json.loads(capsys.readouterr().out)["results"][0]["bpd"]
    spec = f"photos:{picture}" if tiling == "tile" else str(picture)
    out = tmp_path / "r.jsonl"
    assert cli.main(["eval", "--data", spec, "--out", str(out), "-q", *common, *cli_args]) == 0
    capsys.readouterr()
    via_eval = json.loads(out.read_text().splitlines()[0])["bpd"]
    from scorezoo import ScorePipeline

    pipe = ScorePipeline.from_pretrained(model)
    torch.set_num_threads(1)
    kw = {k: v for k, v in app_kwargs.items() if k != "solver"}
    settings = DemoSettings(ode_kwargs={"solver": app_kwargs["solver"], **kw})
    plan = ScoringPlan.create(pipe, solver=app_kwargs["solver"], divergence=divergence, num_repeats=2, **kw)
    via_lib = pipe.bits_per_dim(str(picture), plan=plan, generator=draw_generators(5, [0], 2)).bpd.item()
    if divergence == "exact":
        via_app = score_file(pipe, picture, seed=5, num_repeats=2, settings=settings, bits_map=False).bpd
    else:  # the app has no divergence switch: its auto rule gives Hutchinson for the 768-dimensional patches
        via_app = via_lib if tiling == "resize" else score_file(pipe, picture, seed=5, num_repeats=2,
                                                                settings=settings, bits_map=False).bpd
    assert via_cli == pytest.approx(via_lib, rel=1e-9)
    assert via_eval == pytest.approx(via_lib, rel=1e-9)
    assert via_app == pytest.approx(via_lib, rel=1e-9)


def test_the_pipelines_defaults_serve_the_bound_and_refuse_a_divergence_with_it():
    """``pipe.bits_per_dim(x, estimator="bound")`` with the other options at their defaults: the default divergence
    is the ODE's, so the bound takes none (it once raised "drop divergence"); one given with the bound is refused."""
    pipe = tiny_unet_pipeline()
    x = torch.randint(0, pipe.num_levels, (1, *pipe.data_shape))
    res = pipe.bits_per_dim(x, estimator="bound", num_time_points=4, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.bpd).all()
    with pytest.raises(ValueError, match="drop divergence"):
        pipe.bits_per_dim(x, estimator="bound", divergence="hutchinson")
