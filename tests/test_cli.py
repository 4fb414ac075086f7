"""The command line: `scorezoo list | bpd | sample`, its output, exit codes and one-line errors."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import ScorePipeline, cli
from tests.fixtures_images import CORPUS, make_corpus
from tests.helpers import tiny_mlp_pipeline, tiny_unet_pipeline

# a fixed-step solve: these tests are about the command line, not about accuracy
FAST = ["--method", "euler", "--step-size", "0.25"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny networks run faster on one thread than on a CPU shared with other work."""
    monkeypatch.delenv("SCOREZOO_DEBUG", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    pipe = tiny_unet_pipeline()
    pipe.extra_config["dataset"] = "digits"
    pipe.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_list_shows_every_model_with_its_status(fake_zoo, capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert set(rows) == {"cached-one", "remote-one", "tiny-zoo"}
    assert rows["tiny-zoo"].split()[1:3] == ["*", "bundled"]
    assert rows["cached-one"].split()[1] == "cached" and rows["remote-one"].split()[1] == "remote"
    assert "1.950 ± 0.020" in rows["remote-one"] and "12,345" in rows["remote-one"]
    code, out, _ = run(capsys, "list", "--wide")
    wide = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert "scorezoo/remote-one" in wide["remote-one"] and "8x8x1" in wide["remote-one"]
    assert "i % 6 == 0 (300 images)" in wide["remote-one"]
    code, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    assert [d["status"] for d in data] == ["cached", "remote", "bundled"] and data[2]["bpd_ode"] == 1.95
    (fake_zoo["cards"] / "broken.md").write_text("---\nscorezoo: [1, 2\n---\n")
    code, out, err = run(capsys, "list")
    assert code == 1 and "broken.md" in err and "tiny-zoo" in out



def test_list_fits_a_terminal_and_shows_every_reported_and_held_out_figure(capsys):
    """The real zoo: the table and its note stay within 120 columns; the published checkpoints say "convert" and
    carry the authors' figure where they published one; --wide and --json keep what the table leaves out (the eval
    split, the conversion command); every held-out figure is printed by the one rule, from the card's number."""
    from scorezoo import zoo

    code, out, _ = run(capsys, "list")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 120
    entries = {e.name: e for e in zoo.registry()[0]}
    rows = {line.split()[0]: line for line in out.splitlines()[1:len(entries) + 1]}
    assert set(rows) == set(entries)
    for name, e in entries.items():
        if e.status == zoo.CONVERT_STATUS:
            assert rows[name].split()[1] == "convert"
            if e.bpd_reported is not None:
                assert f"{e.bpd_reported:.2f} (reported)" in rows[name]
        for kind in ("ode", "bound"):
            if getattr(e, f"bpd_{kind}") is not None:
                assert zoo.format_held_out(getattr(e, f"bpd_{kind}"), getattr(e, f"bpd_{kind}_stderr")) in rows[name]
    assert "2.99 (reported)" in rows["sde-subvp-cifar10-ddpmpp-deep"]
    assert "3.448 ± 0.026" in rows["vp-mle-photo16"]  # as the card's body and README say
    code, out, _ = run(capsys, "list", "--wide")
    assert "scorezoo convert score_flow cifar10_vp_likelihood_iw/ -o vp-mle-cifar10" in out
    assert entries["vp-mle-digits"].eval_split in out
    code, out, _ = run(capsys, "list", "--json")
    data = {d["name"]: d for d in json.loads(out)}
    conversion = "scorezoo convert score_flow cifar10_vp_likelihood_iw/ -o vp-mle-cifar10"
    assert data["vp-mle-cifar10"]["conversion"] == conversion
    assert data == {name: e.to_dict() for name, e in entries.items()}
    assert cli.main(["list", "--wide", "--json"]) == 2 and "not allowed" in capsys.readouterr().err


def test_bpd_on_the_corpus(model_dir, corpus, capsys):
    """Every good file gets bits/dim with its preprocessing, every bad one one line naming it; the batch goes
    on past broken files, exits 1, and a file scores the same alone as among broken ones."""
    files = [corpus[n] for n in sorted(CORPUS)]
    code, out, err = run(capsys, "bpd", *files, "--model", model_dir, "--num-repeats", "2", "--json", *FAST)
    assert code == 1
    res = json.loads(out)
    good = sorted(str(corpus[n]) for n, m in CORPUS.items() if m is None)
    assert sorted(r["input"] for r in res["results"]) == good
    assert sorted(f["input"] for f in res["failed"]) == sorted(str(corpus[n]) for n, m in CORPUS.items() if m)
    for r in res["results"]:
        # 4 Euler steps of 0.25 over [eps, 1]; both draws of a picture are solved together
        assert np.isfinite(r["bpd"]) and r["stderr"] > 0 and r["nfe"] == 4
        assert r["transform"].endswith("nearest of 17 levels")
    errors = [line for line in err.splitlines() if line.startswith("scorezoo: error:")]
    for name, match in CORPUS.items():
        if match:
            line = next(e for e in errors if str(corpus[name]) in e)
            assert re.search(match, line)
    assert "scorezoo: 5 of 12 inputs failed" in err
    assert res["mean_bpd"] == pytest.approx(np.mean([r["bpd"] for r in res["results"]]))
    code, out, _ = run(capsys, "bpd", corpus["rgba.png"], "--model", model_dir, "--num-repeats", "2", "--json", *FAST)
    alone = json.loads(out)["results"][0]
    assert code == 0 and alone["bpd"] == next(r for r in res["results"] if r["input"] == alone["input"])["bpd"]


def test_bpd_table_default_model_and_invert_hint(fake_zoo, tmp_path, capsys):
    """Without --model the card's default model is used; the table states model, estimator and transform;
    a light background is pointed out (never inverted silently) and --invert inverts."""
    a = np.full((16, 16), 255, np.uint8)
    a[2:14, 7:9] = 0
    Image.fromarray(a).save(tmp_path / "ink.png")
    pipe_cfg = fake_zoo["bundled"] / "tiny-zoo" / "pipeline_config.json"
    pipe_cfg.write_text(pipe_cfg.read_text().replace('"dataset": "test"', '"dataset": "digits"'))
    code, out, err = run(capsys, "bpd", tmp_path / "ink.png", "-k", "1", *FAST)
    assert code == 0
    assert out.startswith("model      tiny-zoo (bundled copy")
    assert ("transform  EXIF orientation, transparency over black, L, centre-crop + resize to 8×8 (exact for integer "
            "factors)") in out
    assert "scale      uniform noise over the 17 levels: 4.087 bits/dim; its held-out figure: 1.950 bits/dim" in out
    row = next(line for line in out.splitlines() if line.startswith(str(tmp_path / "ink.png")))
    assert ("L 16×16: box-filter downscale ×2 to 8×8 (blocks averaged: pixel values changed), nearest of 17 "
            "levels") in row
    assert "—" in row  # no standard error from a single draw
    assert "light background" in err and "--invert" in err
    code, out, err = run(capsys, "bpd", tmp_path / "ink.png", "-k", "1", "--invert", *FAST)
    assert code == 0 and "light background" not in err and "inverted (v → 1 − v)" in out
    code, out, err = run(capsys, "bpd", tmp_path / "ink.png", "-k", "1", "--quiet", *FAST)
    assert err == ""


def test_bpd_held_out_digits(model_dir, capsys):
    pytest.importorskip("sklearn")
    code, out, _ = run(capsys, "bpd", "--digits", "2", "--model", model_dir, "-k", "1", "--json", *FAST)
    assert code == 0 and [r["input"] for r in json.loads(out)["results"]] == ["digits[0]", "digits[6]"]


@pytest.mark.parametrize("argv", [
    ["bpd"], ["bpd", "x.png", "--num-repeats", "0"], ["bpd", "x.png", "--divergence", "sometimes"],
    ["bpd", "x.png", "--step-size", "0.1"], ["sample", "-o", "grid.xyz"], ["frobnicate"], [],
])
def test_usage_errors_exit_2(argv, capsys):
    code = cli.main(argv)
    assert code == 2 and "Traceback" not in capsys.readouterr().err


def test_model_errors_are_one_line(tmp_path, model_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    x = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(x)
    code, _, err = run(capsys, "bpd", x, "--model", tmp_path / "missing")
    assert code == 1 and err.count("\n") == 1 and "no model folder" in err
    code, _, err = run(capsys, "bpd", x, "--model", "nobody/nothing")
    assert code == 1 and err.count("\n") == 1 and "hf download nobody/nothing" in err
    # a published checkpoint is converted, not downloaded: the command that makes it, no made-up repo
    code, _, err = run(capsys, "bpd", x, "--model", "vp-mle-cifar10")
    assert code == 1 and err.count("\n") == 1 and "hf download" not in err
    assert "`scorezoo convert score_flow cifar10_vp_likelihood_iw/ -o vp-mle-cifar10`" in err
    # every input unreadable: one line each and a summary, and no model is loaded
    code, _, err = run(capsys, "bpd", tmp_path / "none.png", "--model", "nobody/nothing")
    assert code == 1 and "none.png: no such file" in err and "no model was loaded" in err and "nobody" not in err
    bad = tmp_path / "bad"
    tiny_unet_pipeline().save_pretrained(bad)
    w = bad / "network" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:500])
    code, _, err = run(capsys, "sample", "--model", bad, "-o", tmp_path / "g.png")
    assert code == 1 and err.count("\n") == 1 and "truncated or corrupt" in err
    code, _, err = run(capsys, "bpd", x, "--model", _save(tiny_mlp_pipeline(), tmp_path / "mlp"))
    assert code == 1 and "continuous data" in err


def _save(pipe, folder):
    pipe.save_pretrained(folder)
    return folder


def test_sample_writes_a_grid(model_dir, tmp_path, capsys):
    code, out, _ = run(capsys, "sample", "--model", model_dir, "-n", "5", "--sampler", "em", "--steps", "3",
                       "--seed", "1", "-o", tmp_path / "grid.png")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'grid.png'}: 5 samples")
    grid = Image.open(tmp_path / "grid.png")
    assert grid.mode == "L" and grid.size == (3 * 66 + 2, 2 * 66 + 2)  # 3 columns of 8×8 tiles ×8, 2-px gutters
    code, _, _ = run(capsys, "sample", "--model", model_dir, "-n", "5", "--sampler", "em", "--steps", "3",
                     "--seed", "1", "-o", tmp_path / "again.png")
    assert np.array_equal(np.asarray(grid), np.asarray(Image.open(tmp_path / "again.png")))
    code, _, _ = run(capsys, "sample", "--model", model_dir, "-n", "2", "--sampler", "pc", "--steps", "2",
                     "-o", tmp_path / "s.npy")
    assert code == 0 and np.load(tmp_path / "s.npy").shape == (2, 1, 8, 8)
    code, _, _ = run(capsys, "sample", "--model", _save(tiny_mlp_pipeline(), tmp_path / "mlp"), "-n", "50",
                     "--sampler", "em", "--steps", "3", "-o", tmp_path / "points.png")
    points = Image.open(tmp_path / "points.png")
    # 50 points drawn as dots, not a nearly empty histogram
    assert code == 0 and points.size == (512, 512) and (np.asarray(points.convert("L")) < 128).sum() > 50 * 4


def test_unexpected_errors_one_line_unless_debug(model_dir, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("a bug")
    monkeypatch.setattr(ScorePipeline, "__call__", broken)
    argv = ["sample", "--model", str(model_dir), "-o", str(tmp_path / "g.png")]
    code, _, err = run(capsys, *argv)
    assert code == 1 and err.startswith("scorezoo: internal error: TypeError: a bug") and err.count("\n") == 1
    with pytest.raises(TypeError, match="a bug"):
        cli.main([*argv, "--debug"])
    monkeypatch.setenv("SCOREZOO_DEBUG", "1")
    with pytest.raises(TypeError, match="a bug"):
        cli.main(argv)


def test_bpd_fast_uses_the_models_schedule(model_dir, tmp_path, capsys):
    """--fast takes the model's calibrated schedule (NFE = steps x 4 for rk4) and says so; on a model
    without one it is a usage error that says what to do."""
    pytest.importorskip("sklearn")
    from scorezoo.likelihood import LikelihoodSchedule

    code, _, err = run(capsys, "bpd", "--digits", "1", "--model", model_dir, "--fast")
    assert code == 2 and "no calibrated likelihood schedule" in err and "drop --fast" in err
    pipe = tiny_unet_pipeline()
    pipe.extra_config["dataset"] = "digits"
    pipe.likelihood_schedule = LikelihoodSchedule(torch.linspace(pipe.eps, 1.0, 7, dtype=torch.float64),
                                                  estimated_error=0.004)
    folder = _save(pipe, tmp_path / "scheduled")
    code, out, _ = run(capsys, "bpd", "--digits", "2", "--model", folder, "-k", "1", "--fast", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["settings"]["schedule"]["steps"] == 6
    assert [r["nfe"] for r in report["results"]] == [24, 24]
    code, out, _ = run(capsys, "bpd", "--digits", "1", "--model", folder, "-k", "1", "--fast")
    assert code == 0 and ("rk4, 6 fixed steps in log rho (24 score evaluations); estimated error 0.0040 bits/dim "
                          "(step doubling") in out
    sch = pipe.likelihood_schedule
    sch.measured_rms_error, sch.measured_mean_error, sch.target, sch.criterion = 0.003, -0.0012, 0.01, "mean"
    folder = _save(pipe, tmp_path / "measured")
    code, out, _ = run(capsys, "bpd", "--digits", "1", "--model", folder, "-k", "1", "--fast")
    assert code == 0 and ("calibrated to 0.01 bits/dim (on the mean); error measured on 0 points, schedule minus "
                          "tight solve: 0.0030 rms, -0.0012 mean") in out
    for extra in (["--rtol", "1e-3"], ["--method", "euler"], ["--step-size", "0.1"]):
        code, _, err = run(capsys, "bpd", "--digits", "1", "--model", folder, "--fast", *extra)
        assert code == 2 and "drop --rtol, --atol, --method and --step-size" in err, extra


def test_bpd_fast_takes_hutchinson_with_more_draws_for_small_models(tmp_path, capsys):
    """--fast on an 8×8 model: Hutchinson's divergence and FAST_REPEATS draws per picture (the exact divergence's 64
    backward passes per evaluation were most of the main job's minutes); -k and --divergence still win; without
    --fast the auto rule stays exact."""
    pytest.importorskip("sklearn")
    from scorezoo.cli.common import FAST_REPEATS
    from scorezoo.likelihood import LikelihoodSchedule

    pipe = tiny_unet_pipeline()
    pipe.extra_config["dataset"] = "digits"
    pipe.likelihood_schedule = LikelihoodSchedule(torch.linspace(pipe.eps, 1.0, 3, dtype=torch.float64))
    folder = _save(pipe, tmp_path / "scheduled")

    def settings(*extra):
        code, out, _ = run(capsys, "bpd", "--digits", "1", "--model", folder, "--json", *extra)
        assert code == 0, extra
        report = json.loads(out)
        return report["settings"]["divergence"], report["settings"]["num_repeats"]

    assert FAST_REPEATS == 16
    assert settings("--fast") == ("hutchinson", FAST_REPEATS)
    assert settings("--fast", "-k", "3") == ("hutchinson", 3)
    assert settings("--fast", "--divergence", "exact") == ("exact", 4)
    assert settings() == ("exact", 4)


def test_bpd_uses_the_schedule_by_default_and_the_exact_divergence_for_small_models(tmp_path, capsys):
    """A model with a calibrated schedule is scored on it without --fast, with the exact divergence for an 8×8 model
    (a single picture's number is then not mostly probe noise); solver options take that solver instead, still with
    the exact divergence at 64 dimensions (the one auto rule of scorezoo.scoring), and --divergence hutchinson
    asks for the estimate."""
    pytest.importorskip("sklearn")
    from scorezoo.likelihood import LikelihoodSchedule

    pipe = tiny_unet_pipeline()
    pipe.extra_config["dataset"] = "digits"
    pipe.likelihood_schedule = LikelihoodSchedule(torch.linspace(pipe.eps, 1.0, 3, dtype=torch.float64))
    folder = _save(pipe, tmp_path / "scheduled")
    code, out, _ = run(capsys, "bpd", "--digits", "1", "--model", folder, "-k", "1", "--json")
    settings = json.loads(out)["settings"]
    assert code == 0 and settings["schedule"]["steps"] == 2 and settings["divergence"] == "exact"
    code, out, _ = run(capsys, "bpd", "--digits", "1", "--model", folder, "-k", "1", "--json", *FAST)
    settings = json.loads(out)["settings"]
    assert code == 0 and "schedule" not in settings and settings["divergence"] == "exact"
    code, out, _ = run(capsys, "bpd", "--digits", "1", "--model", folder, "-k", "1", "--json", *FAST,
                       "--divergence", "hutchinson")
    settings = json.loads(out)["settings"]
    assert code == 0 and settings["solver"] == "fixed" and settings["divergence"] == "hutchinson"
    code, _, err = run(capsys, "bpd", "--digits", "1", "--model", folder, "--fast", "--adaptive")
    assert code == 2 and "not allowed with argument" in err


def test_commands_take_half_the_cores_unless_told(monkeypatch, tmp_path, capsys):
    """The thread rule (default_threads): OMP_NUM_THREADS wins; else half the cores, shared among a launch's
    processes, at least 1; --threads N for this command only (torch's count is given back afterwards)."""
    from scorezoo.cli.common import default_threads

    assert default_threads({"OMP_NUM_THREADS": "3"}, cores=16) is None
    assert default_threads({}, cores=2) == 1 and default_threads({}, cores=1) == 1
    assert default_threads({}, cores=16) == 8
    assert default_threads({"LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8"}, cores=16) == 4
    assert default_threads({"WORLD_SIZE": "2"}, cores=2) == 1
    seen = []
    from scorezoo.cli import bpd

    monkeypatch.setattr(bpd, "run", lambda args: seen.append(torch.get_num_threads()) or 0)
    before = torch.get_num_threads()
    assert cli.main(["bpd", "--digits", "1", "--threads", "3"]) == 0
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cli.main(["bpd", "--digits", "1"]) == 0
    assert seen == [3, default_threads()] and torch.get_num_threads() == before
    code, _, err = run(capsys, "bpd", "--digits", "1", "--threads", "0")
    assert code == 2 and "expected a positive integer" in err
