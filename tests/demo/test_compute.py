"""What the demo computes, without Gradio (:mod:`scorezoo.demo.compute`): the solver it picks per model, the model it
picks per picture, and the pipelines it shares between concurrent requests."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import ScorePipeline
from scorezoo.demo.compute import (DemoContext, DemoSettings, ModelEntry, PipelineCache, choose_model, folder_model,
                                   score_file, solver_for, takes_colour)
from tests.helpers import tiny_unet_pipeline

FAST_ODE = {"method": "euler", "step_size": 0.1}


@pytest.fixture(scope="module")
def digits() -> ScorePipeline:
    return ScorePipeline.from_pretrained("vp-mle-digits")


def test_solver_is_the_calibrated_schedule_when_there_is_one(digits):
    solver = solver_for(digits, DemoSettings())
    assert solver.schedule is digits.likelihood_schedule
    assert "calibrated schedule" in solver.describe() and f"{digits.likelihood_schedule.nfe} score evaluations" in \
        solver.describe()
    adaptive = solver_for(digits, DemoSettings(use_schedule=False, tol=3e-4))
    assert (adaptive.method, adaptive.rtol, adaptive.atol, adaptive.schedule) == ("dopri5", 3e-4, 3e-4, None)
    untrained = solver_for(tiny_unet_pipeline(), DemoSettings())
    assert (untrained.rtol, untrained.atol) == (1e-4, 1e-4)
    given = solver_for(digits, DemoSettings(ode_kwargs=FAST_ODE))
    assert (given.method, given.step_size) == ("euler", 0.1) and given.describe() == "euler, fixed step 0.1"
    with pytest.raises(ValueError, match=r"not \['divergence'\]"):
        solver_for(digits, DemoSettings(ode_kwargs={"divergence": "exact", "rtol": 1e-3}))


def test_a_digit_on_the_schedule_is_the_librarys_number(digits, tmp_path):
    """The app's default for vp-mle-digits: its schedule (44 evaluations), 4 draws, the exact divergence (the plan's
    auto rule for 64 dimensions on fixed steps), the draws of a picture scored alone: the same floats as the
    library's call with that plan and generators."""
    from scorezoo.scoring import ScoringPlan, draw_generators

    levels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(levels).save(tmp_path / "d.png")
    score = score_file(digits, tmp_path / "d.png", seed=1, settings=DemoSettings(), bits_map=False)
    # the app's plan also carries its sample of a large photo's tiles, drawn from the request's seed
    plan = ScoringPlan.create(digits, num_repeats=4, max_batch_size=256, max_tiles=1024, tile_seed=1)
    lib = digits.bits_per_dim(str(tmp_path / "d.png"), plan=plan, generator=draw_generators(1, [0], 4))
    assert (score.bpd, score.stderr, score.nfe) == (lib.bpd.item(), lib.stderr.item(), digits.likelihood_schedule.nfe)
    assert score.num_repeats == 4 and score.bits_map is None and score.divergence == "exact"
    assert score.plan == plan.to_dict()
    # the path at the schedule's steps, from 0 at eps
    assert torch.equal(score.times, lib.times) and (score.bpd_path[0] == 0).all()


def test_variational_dequantization_is_the_librarys_and_refused_without_a_dequantizer(digits, tmp_path):
    # vp-mle-digits ships a trained dequantizer: the app's variational number is the library's for the same plan
    from scorezoo.scoring import ScoringPlan, draw_generators

    levels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(levels).save(tmp_path / "d.png")
    score = score_file(digits, tmp_path / "d.png", seed=1, settings=DemoSettings(), bits_map=False,
                       dequantization="variational")
    plan = ScoringPlan.create(digits, num_repeats=4, dequantization="variational")
    lib = digits.bits_per_dim(str(tmp_path / "d.png"), plan=plan, generator=draw_generators(1, [0], 4))
    assert score.bpd == lib.bpd.item() and score.plan["dequantization"] == "variational"
    with pytest.raises(ValueError, match="dequantizer"):
        score_file(tiny_unet_pipeline(), tmp_path / "d.png", seed=1, settings=DemoSettings(ode_kwargs=FAST_ODE),
                   bits_map=False, dequantization="variational")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, ModelEntry]:
    root = tmp_path_factory.mktemp("models")
    tiny_unet_pipeline().save_pretrained(root / "gray")
    tiny_unet_pipeline(channels=3, size=16, num_levels=256,
                       extra_config={"tile_larger_images": True, "dataset": "photo_patches"}).save_pretrained(
        root / "photo")
    return {name: folder_model(root / name) for name in ("gray", "photo")}


def test_models_take_colour_or_not(folders):
    assert not takes_colour(folders["gray"]) and takes_colour(folders["photo"])


def test_colour_pictures_get_the_photo_model(folders, tmp_path):
    models = list(folders.values())
    gray, photo = (m.name for m in models)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "digit.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    ctx = DemoContext.create(models, default=gray, photo_default=photo)
    # the rule of scorezoo bpd and eval (scorezoo.scoring.choose_model), in the same words
    assert choose_model(tmp_path / "digit.png", ctx) == (gray, "a small grayscale picture of 8×8")
    assert choose_model(tmp_path / "p.png", ctx) == (photo, "a colour picture of 40×40: the photo model")
    alone = DemoContext.create(models, default=gray)
    model, why = choose_model(tmp_path / "p.png", alone)
    assert model == gray and "no photo model is installed" in why


def test_pipelines_are_loaded_once_and_shared(folders, monkeypatch):
    # four threads ask for one model while it loads: one load, one pipeline, its weights frozen for inference
    loads = []
    original = ScorePipeline.from_pretrained

    def slow_load(source, *args, **kwargs):
        loads.append(source)
        time.sleep(0.5)  # long enough for the other threads to arrive during the load
        return original(source, *args, **kwargs)

    monkeypatch.setattr(ScorePipeline, "from_pretrained", staticmethod(slow_load))
    cache = PipelineCache(folders, maxsize=1)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache("gray"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(got) == 4 and all(p is got[0] for p in got)
    assert not any(p.requires_grad for p in got[0].network.parameters())
    # maxsize=1: the photo model replaces it, and asking again loads it again
    cache("photo")
    assert cache("gray") is not got[0] and len(loads) == 3
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        cache("nope")
