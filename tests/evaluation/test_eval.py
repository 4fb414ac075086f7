"""`scorezoo eval` / :func:`scorezoo.evaluation.evaluate`: bits/dim of a data set, the same per-image numbers on one
process or two, with any batch size, and after a kill and a restart."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scorezoo import cli
from scorezoo.evaluation import evaluate, load_eval_data, summarize
from scorezoo.evaluation.records import read_records, repair, shard_path
from scorezoo.likelihood import LikelihoodSchedule
from scorezoo.scoring import open_pictures
from tests.helpers import accelerate_launch, tiny_unet_pipeline

REPO = Path(__file__).resolve().parents[2]
# the tiny network on a 3-step schedule with one Hutchinson probe: these tests are about who scores what, not accuracy
KW = dict(divergence="hutchinson", progress=False)
pytestmark = pytest.mark.usefixtures("one_thread")



def _save(folder: Path, channels: int) -> Path:
    pipe = tiny_unet_pipeline(channels=channels)
    pipe.likelihood_schedule = LikelihoodSchedule(torch.tensor([1e-5, 0.1, 0.4, 1.0], dtype=torch.float64),
                                                  method="euler", time_variable="t")
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """1×8×8, 17 levels: fits the digits."""
    return _save(tmp_path_factory.mktemp("gray"), 1)


@pytest.fixture(scope="module")
def rgb_model_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("rgb"), 3)


def numbers(out: Path) -> list[dict]:
    """The per-image records without their timing (the only field that differs between runs)."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in out.read_text().splitlines()]


def run_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run_ok(cmd: list[str], timeout: float = 600) -> None:
    """Run a command; a failure shows the end of its stderr."""
    out = subprocess.run(cmd, env=run_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]


def test_a_run_scores_every_image_and_summarizes(model_dir, tmp_path):
    out = tmp_path / "results.jsonl"
    s = evaluate(str(model_dir), "digits", out, limit=5, batch_size=2, num_repeats=2, **KW)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in recs] == list(range(5))
    assert [r["source"] for r in recs] == [f"digits[{6 * i}]" for i in range(5)]
    for r in recs:
        assert len(r["bpd_draws"]) == 2 and r["bpd"] == pytest.approx(np.mean(r["bpd_draws"]), rel=1e-12)
        assert r["nfe"] == 3 and r["seconds"] >= 0
    bpd = np.array([r["bpd"] for r in recs])
    assert s.bpd == pytest.approx(bpd.mean(), rel=1e-12)
    assert s.stderr == pytest.approx(bpd.std(ddof=1) / np.sqrt(5), rel=1e-12)
    assert s.num_scored == 5 and s.num_failed == 0 and s.num_processes == 1 and "calibrated schedule" in s.solver
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["status"] == "done" and summary["config"]["seed"] == 0 and summary["summary"]["num_scored"] == 5
    assert summary["versions"]["torch"] == torch.__version__
    # the draws of one image differ (dequantization and probe noise), and another seed gives other numbers
    assert all(r["bpd_draws"][0] != r["bpd_draws"][1] for r in recs)
    other = evaluate(str(model_dir), "digits", tmp_path / "seed1.jsonl", limit=5, batch_size=2, num_repeats=2,
                     seed=1, **KW)
    assert other.records[0]["bpd"] != recs[0]["bpd"]


def test_summary_figures_against_a_hand_computation():
    recs = {0: {"index": 0, "source": "a", "bpd": 2.0, "bpd_draws": [1.0, 3.0], "nfe": 10, "seconds": 1.0},
            1: {"index": 1, "source": "b", "bpd": 2.0, "bpd_draws": [2.0, 2.0], "nfe": 20, "seconds": 1.0},
            2: {"index": 2, "source": "c", "bpd": 5.0, "bpd_draws": [4.0, 6.0], "nfe": 30, "seconds": 1.0},
            3: {"index": 3, "source": "d", "error": "unreadable"}}
    s = summarize(recs, 4)
    assert s["bpd_mean"] == pytest.approx(3.0)
    assert s["bpd_stderr"] == pytest.approx(np.sqrt(3.0 / 3))  # sample variance of 2, 2, 5 is 3
    # within-image variances 2, 0, 2 over K = 2 draws: mean 2/3, over n = 3 images
    assert s["bpd_stderr_dequantization"] == pytest.approx(np.sqrt(2 / 9))
    assert s["dequantization_variance_fraction"] == pytest.approx((2 / 9) / 1.0)
    assert s["nfe_mean"] == 20 and s["num_failed"] == 1 and s["failures"][0]["error"] == "unreadable"


def test_results_do_not_depend_on_batch_size(model_dir, tmp_path):
    runs = {b: numbers(evaluate(str(model_dir), "digits", tmp_path / f"b{b}.jsonl", limit=6, batch_size=b,
                                **KW).out) for b in (1, 4, 6)}
    for b in (4, 6):
        for a, c in zip(runs[1], runs[b]):
            # batched and single kernels round differently in float32: ~1e-7 relative
            np.testing.assert_allclose(c["bpd_draws"], a["bpd_draws"], rtol=1e-5, atol=0)
    # the same batch size gives the same numbers bit for bit (each image's randomness is its own)
    assert numbers(evaluate(str(model_dir), "digits", tmp_path / "again.jsonl", limit=6, batch_size=4,
                            **KW).out) == runs[4]


def test_a_killed_run_resumes_to_the_same_results(model_dir, tmp_path):
    """What a kill leaves (two whole lines, a half-written third, a line in another process's file, a summary
    that says running), resumed with the same settings, ends as a straight run: same file, sorted by index."""
    straight = evaluate(str(model_dir), "digits", tmp_path / "straight" / "r.jsonl", limit=6, batch_size=2, **KW)
    lines = straight.out.read_text().splitlines(keepends=True)
    out = tmp_path / "killed" / "r.jsonl"
    out.parent.mkdir()
    out.write_text(lines[0] + lines[3] + lines[1][:25])
    shard_path(out, 1).write_text(lines[4])
    summary = json.loads(straight.summary_path.read_text())
    out.with_suffix(".json").write_text(json.dumps({"status": "running", "config": summary["config"]}))
    resumed = evaluate(str(model_dir), "digits", out, limit=6, batch_size=2, **KW)
    assert numbers(out) == numbers(straight.out)
    assert json.loads(resumed.summary_path.read_text())["summary"]["scored_this_run"] == 3
    assert not shard_path(out, 1).exists()  # merged
    # a second resume has nothing to do and changes nothing
    again = evaluate(str(model_dir), "digits", out, limit=6, batch_size=2, **KW)
    assert numbers(out) == numbers(straight.out) and again.images_per_second is None


def test_the_bound_and_variational_dequantization(model_dir, tmp_path):
    """The likelihood bound and the bundled digits model's variational dequantizer go through the same per-draw
    generators: an image's numbers are those it gets alone (batch size 1), up to float rounding."""
    bound = evaluate(str(model_dir), "digits", tmp_path / "bound.jsonl", limit=2, estimator="bound", progress=False)
    assert bound.num_scored == 2 and "likelihood bound" in bound.solver and bound.records[0]["nfe"] == 0
    runs = [evaluate("vp-mle-digits", "digits", tmp_path / f"vd{b}.jsonl", limit=2, batch_size=b,
                     dequantization="variational", **KW) for b in (1, 2)]
    assert "variational dequantization" in runs[0].solver
    # float32 rounding of batched kernels (network and dequantizer flow): ~1e-7 relative
    np.testing.assert_allclose(runs[1].records[1]["bpd_draws"], runs[0].records[1]["bpd_draws"], rtol=1e-5)
    uniform = evaluate("vp-mle-digits", "digits", tmp_path / "u.jsonl", limit=2, **KW)
    assert uniform.records[1]["bpd"] != runs[0].records[1]["bpd"]
    with pytest.raises(ValueError, match="has no variational dequantizer"):
        evaluate(str(model_dir), "digits", tmp_path / "x.jsonl", dequantization="variational", **KW)


def test_resume_with_other_settings_is_refused(model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    evaluate(str(model_dir), "digits", out, limit=2, **KW)
    with pytest.raises(ValueError, match="other settings \\(seed: 0 then, 1 now\\)"):
        evaluate(str(model_dir), "digits", out, limit=2, seed=1, **KW)
    with pytest.raises(ValueError, match="must be a .jsonl file"):
        evaluate(str(model_dir), "digits", tmp_path / "r.json", **KW)
    with pytest.raises(ValueError, match="no calibrated likelihood schedule"):
        evaluate(tiny_unet_pipeline(), "digits", tmp_path / "x.jsonl", solver="calibrated", **KW)
    with pytest.raises(ValueError, match="solves no ODE: drop rtol"):
        evaluate(str(model_dir), "digits", tmp_path / "x.jsonl", estimator="bound", rtol=1e-3, **KW)


def test_repair_cuts_a_half_written_last_line(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_bytes(b'{"index": 0, "bpd": 1.0}\n{"index": 1, "bp')
    assert set(read_records([f])) == {0}
    repair(f)
    assert f.read_bytes() == b'{"index": 0, "bpd": 1.0}\n'


def _picture(path: Path, size: tuple[int, int], seed: int = 0, mode: str = "L") -> Path:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def test_data_specs(tmp_path):
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    b = _picture(tmp_path / "pics" / "b.png", (8, 8))
    a = _picture(tmp_path / "pics" / "sub" / "a.jpg", (8, 8))
    (tmp_path / "pics" / "notes.txt").write_text("not a picture")
    shape = dict(data_shape=(1, 8, 8), num_levels=17)
    folder = load_eval_data(str(tmp_path / "pics"), **shape)
    assert folder.paths == [str(b), str(a)] and not folder.tile  # sorted by path, recursive, pictures only
    (tmp_path / "list.txt").write_text("# pictures\npics/b.png\n\nmissing.png\n")
    listed = load_eval_data("@" + str(tmp_path / "list.txt"), **shape)
    assert listed.paths == [str(b), str(tmp_path / "missing.png")]  # a missing listed file fails by its index
    both = load_eval_data([str(a), str(tmp_path / "pics")], **shape)
    assert both.paths == [str(a), str(b), str(a)]
    assert load_eval_data("photos:" + str(tmp_path / "pics"), **shape).tile
    assert len(load_eval_data("digits", **shape)) == 300
    for spec, match in (("nothing-here", "no such file or folder, and not one of digits"),
                        (["digits", str(a)], "whole data set: give it alone"),
                        (["photos:" + str(a), str(a)], "mixes tiled photos"),
                        ("cifar10:" + str(tmp_path), "cifar10")):
        with pytest.raises(ValueError, match=match):
            load_eval_data(spec, **shape)
    with pytest.raises(ValueError, match="does not fit --data digits: its images are 8×8×1 with 17 levels, the "
                                         "model takes 8×8×3"):
        load_eval_data("digits", data_shape=(3, 8, 8), num_levels=17)


def test_cli_unreadable_files_are_failures_and_the_rest_is_scored(model_dir, tmp_path, capsys):
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(3):
        _picture(pics / f"{i}.png", (16, 12), seed=i)
    (pics / "1b.png").write_bytes(b"not a png at all")
    (pics / "2b.jpg").write_bytes(b"")
    out = tmp_path / "r.jsonl"
    code = cli.main(["eval", "--model", str(model_dir), "--data", str(pics), "--out", str(out), "-k", "2",
                     "--divergence", "hutchinson", "--plot", str(tmp_path / "hist.png")])
    text = capsys.readouterr()
    assert code == 1 and "2 of 5 images failed" in text.err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("error", "ok").split(": ")[-1] for r in recs] == \
        ["ok", "ok", "not an image file that PIL can read.", "ok", "the file is empty."]
    assert recs[2]["source"].endswith("1b.png") and recs[2]["error"].startswith(recs[2]["source"])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [f["index"] for f in summary["summary"]["failures"]] == [2, 4]
    assert summary["command"].startswith("scorezoo eval --model")
    assert "bits/dim   " in text.out and "3 images" in text.out and "dequantization noise" in text.out
    assert Image.open(tmp_path / "hist.png").size[0] > 100


def test_a_picture_smaller_than_the_model_is_a_failure_not_an_upscale(rgb_model_dir, tmp_path, capsys):
    """As scorezoo bpd: a picture smaller than the model on either side would be scored on pixels the upscale
    invented, so it is refused with bpd's message, a failure of its own; the others are scored."""
    pics = tmp_path / "pics"
    pics.mkdir()
    big = _picture(pics / "a.png", (12, 10), mode="RGB")
    small = _picture(pics / "b.png", (6, 6), mode="RGB")
    narrow = _picture(pics / "c.png", (12, 7), mode="RGB")  # wide enough, one row short
    s = evaluate(str(rgb_model_dir), str(pics), tmp_path / "r.jsonl", **KW)
    ok, *bad = s.records
    assert ok["source"] == str(big) and "bpd" in ok and s.num_scored == 1 and s.num_failed == 2
    for rec, path in zip(bad, (small, narrow)):
        with pytest.raises(ValueError) as refused:
            open_pictures(path, (3, 8, 8))
        assert rec["source"] == str(path) and rec["error"] == str(refused.value) and "bpd" not in rec
    assert bad[0]["error"] == (f"{small} is 6×6, smaller than the model's 8×8: scoring it would mean upscaling it, "
                               "and the bits/dim would be those of invented pixels; give a picture of at least 8×8, "
                               "or a model of smaller pictures.")
    code = cli.main(["eval", "--model", str(rgb_model_dir), "--data", str(small), "--out", str(tmp_path / "c.jsonl")])
    assert code == 1 and "1 of 1 images failed" in capsys.readouterr().err


def test_cli_a_model_that_does_not_fit_is_one_line_before_any_work(rgb_model_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code = cli.main(["eval", "--model", str(rgb_model_dir), "--data", "digits", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not fit --data digits" in err
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert cli.main(["eval", "--model", str(rgb_model_dir), "--data", "digits", "--fast", "--rtol", "1e-3"]) == 2


def test_tiled_photos_one_line_per_photo(rgb_model_dir, tmp_path):
    pics = tmp_path / "photos"
    pics.mkdir()
    _picture(pics / "a.png", (36, 20), mode="RGB")  # 2 × 4 patches of 8, 4 columns and 4 rows cropped
    _picture(pics / "b.png", (4, 4), mode="RGB")  # smaller than one patch
    s = evaluate(str(rgb_model_dir), "photos:" + str(pics), tmp_path / "r.jsonl", **KW)
    ok, bad = s.records
    assert ok["num_patches"] == 8 and ok["pixels_scored"] == 8 * 64 and "bpd" in ok
    assert "smaller than the model" in bad["error"] and s.num_failed == 1


@pytest.mark.slow
def test_sigkill_midway_then_the_same_command_gives_a_straight_runs_results(model_dir, tmp_path):
    cmd = [sys.executable, "-m", "scorezoo", "eval", "-q", "--model", str(model_dir), "--data", "digits",
           "--limit", "40", "--batch-size", "1", "--divergence", "exact"]
    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(cmd + ["--out", str(out)], env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and (not out.exists() or out.stat().st_size < 300):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_records([out])) < 40, "the run finished before it was killed"
    run_ok(cmd + ["--out", str(out)])
    straight = evaluate(str(model_dir), "digits", tmp_path / "straight.jsonl", limit=40, batch_size=1,
                        divergence="exact", progress=False)
    assert numbers(out) == numbers(straight.out) and len(straight.records) == 40


@pytest.mark.slow
def test_two_processes_give_the_same_per_image_numbers_as_one(model_dir, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo): images are split by unit across the
    processes, each image's numbers are bit for bit those of a single process."""
    args = ["eval", "-q", "--model", str(model_dir), "--data", "digits", "--limit", "9", "--batch-size", "2",
            "-k", "2", "--divergence", "hutchinson"]
    two = accelerate_launch(2) + ["-m", "scorezoo"] + args + ["--out", str(tmp_path / "two.jsonl")]
    run_ok(two)
    one = evaluate(str(model_dir), "digits", tmp_path / "one.jsonl", limit=9, batch_size=2, num_repeats=2, **KW)
    assert numbers(tmp_path / "two.jsonl") == numbers(one.out) and len(one.records) == 9
    summary = json.loads((tmp_path / "two.json").read_text())["summary"]
    assert summary["num_processes"] == 2 and summary["scored_this_run"] == 9
    assert not list(tmp_path.glob("two.jsonl.rank*"))


@pytest.mark.slow
def test_shards_of_very_different_difficulty_finish_without_a_hang(rgb_model_dir, tmp_path):
    """Process 1 gets the two large photos (hundreds of patches each), process 0 one-patch pictures: no collective
    runs while scoring, so the early process waits once, at the end, and both finish."""
    pics = tmp_path / "photos"
    pics.mkdir()
    for i in range(6):
        _picture(pics / f"{i}.png", (160, 160) if i % 2 else (8, 8), seed=i, mode="RGB")
    args = ["eval", "-q", "--model", str(rgb_model_dir), "--data", f"photos:{pics}", "--divergence", "hutchinson"]
    t0 = time.time()
    two = accelerate_launch(2) + ["-m", "scorezoo"] + args + ["--out", str(tmp_path / "two.jsonl")]
    run_ok(two)
    assert time.time() - t0 < 600
    recs = numbers(tmp_path / "two.jsonl")
    assert [r["num_patches"] for r in recs] == [1, 400] * 3
    one = evaluate(str(rgb_model_dir), f"photos:{pics}", tmp_path / "one.jsonl", **KW)
    assert recs == numbers(one.out)


@pytest.mark.slow
def test_the_photo_data_sets():
    """The held-out tiles of load_photo_patches at the model's patch size, and the held-out photos, whole."""
    from scorezoo.datasets import load_photo_patches

    patches = load_eval_data("photo-patches", data_shape=(3, 16, 16), num_levels=256)
    assert torch.equal(patches.levels, load_photo_patches().eval.long())
    assert len(patches) == 2469 and patches.sources[5] == "photo-patches[5]" and not patches.tile
    photos = load_eval_data("photos", data_shape=(3, 16, 16), num_levels=256)
    assert photos.tile and [Path(p).stem for p in photos.paths] == ["chelsea", "coffee", "china"]
    with pytest.raises(ValueError, match="does not fit --data photo-patches"):
        load_eval_data("photo-patches", data_shape=(3, 16, 16), num_levels=17)


def test_a_sample_is_a_seeded_uniform_subset(model_dir, tmp_path):
    """--sample N scores N distinct images drawn with the seed (the same on every run, in the data's order), says so
    in the description, and is refused together with --limit."""
    from scorezoo.evaluation.specs import load_eval_data

    full = load_eval_data("digits", data_shape=(1, 8, 8), num_levels=17)
    picked = full.sample(7, seed=3)
    assert picked.sources == full.sample(7, seed=3).sources != full.sample(7, seed=4).sources
    assert len(set(picked.sources)) == 7 and set(picked.sources) <= set(full.sources)
    order = [full.sources.index(s) for s in picked.sources]
    assert order == sorted(order) and order != list(range(7))
    at = {s: i for i, s in enumerate(full.sources)}
    assert all(torch.equal(picked.levels[k], full.levels[at[s]]) for k, s in enumerate(picked.sources))
    assert full.sample(10_000, seed=0) is full
    s = evaluate(str(model_dir), "digits", tmp_path / "s.jsonl", sample=4, seed=3, batch_size=2, **KW)
    assert [r["source"] for r in s.records] == full.sample(4, seed=3).sources
    assert "random sample of 4 of its" in json.loads(s.summary_path.read_text())["data_description"]
    with pytest.raises(ValueError, match="not both"):
        evaluate(str(model_dir), "digits", tmp_path / "t.jsonl", sample=4, limit=2, **KW)
