"""Names to models: the registry read from cards, the HF cache without network, the bundled fallback, and a
real download through huggingface_hub from a loopback Hub."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scorezoo import ScorePipeline
from scorezoo.zoo import (BUNDLED_DIR, CARDS_DIR, ModelNotFoundError, default_model, parse_card, registry,
                          resolve_pretrained)
from tests.fixtures_hub import FakeHub, Repo, card
from tests.helpers import tiny_unet_pipeline

ROOT = Path(__file__).resolve().parents[1]
DIGITS = np.array([[[0, 3, 16, 9, 0, 0, 0, 0]] * 8])


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails, as on a machine without network."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


EXPECTED = {"name": "tiny-zoo", "repo_id": "scorezoo/tiny-zoo", "sde": "vp", "weighting": "likelihood+is",
            "dataset": "digits", "resolution": "8x8x1", "parameters": 12345, "bpd_ode": 1.95,
            "bpd_ode_stderr": 0.02, "bpd_bound": 2.1, "bpd_bound_stderr": None,
            "eval_split": "i % 6 == 0 (300 images)", "default": True}


def test_card_front_matter_is_read_as_the_hub_reads_it(tmp_path):
    """The scorezoo mapping of a card is what huggingface_hub's own reader finds in its front matter, for the test
    card (nested lists, flow mappings, comments, quoting) and every card shipped with the package."""
    from huggingface_hub.repocard import metadata_load

    text = card("tiny-zoo", default=True)
    assert parse_card(text) == EXPECTED
    assert parse_card("\ufeff" + text) == EXPECTED  # a byte-order mark, as some editors write
    for path in [*sorted(BUNDLED_DIR.glob("*/README.md")), *sorted(CARDS_DIR.glob("*.md"))]:
        assert parse_card(path.read_text(encoding="utf-8")) == metadata_load(path)["scorezoo"], path
    assert parse_card("# no front matter\n") == {}
    with pytest.raises(ValueError, match="cannot be parsed"):
        parse_card("---\nscorezoo: [not, closed\n---\n")
    with pytest.raises(ValueError, match="'scorezoo:' entry is not a mapping"):
        parse_card("---\nscorezoo: [a, b]\n---\n")


def test_registry_status_from_bundle_cache_and_cards(fake_zoo):
    entries, problems = registry()
    assert problems == []
    assert [(e.name, e.status) for e in entries] == [
        ("cached-one", "cached"), ("remote-one", "remote"), ("tiny-zoo", "bundled")]
    assert default_model(entries) == "tiny-zoo"
    assert entries[2].card == str(fake_zoo["bundled"] / "tiny-zoo" / "README.md")
    # a cache that lacks the weights does not count as cached
    (Path(resolve_pretrained("scorezoo/cached-one")) / "network" / "diffusion_pytorch_model.safetensors").unlink()
    assert {e.name: e.status for e in registry()[0]}["cached-one"] == "remote"


def test_registry_skips_a_broken_card_and_lists_the_rest(fake_zoo):
    (fake_zoo["cards"] / "broken.md").write_text("---\nscorezoo: [not, a, mapping\n---\n")
    (fake_zoo["cards"] / "notes.md").write_text("plain markdown, no front matter\n")
    entries, problems = registry()
    assert len(entries) == 3 and len(problems) == 1 and "broken.md" in problems[0]


def test_cache_and_bundled_copy_load_while_every_network_call_fails(fake_zoo, no_network):
    """Without HF_HUB_OFFLINE: a repo id in the HF cache loads from it, a bundled zoo name falls back to the
    bundled copy, and anything else is one line saying where it looked."""
    pipe = tiny_unet_pipeline()
    cached = ScorePipeline.from_pretrained("scorezoo/cached-one")
    assert Path(resolve_pretrained("cached-one")).is_relative_to(fake_zoo["hub"])
    assert resolve_pretrained("tiny-zoo") == fake_zoo["bundled"] / "tiny-zoo"
    bundled = ScorePipeline.from_pretrained("scorezoo/tiny-zoo")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for loaded in (cached, bundled):
        assert torch.equal(loaded.score(x, 0.5), pipe.score(x, 0.5))
    with pytest.raises(ModelNotFoundError) as e:
        resolve_pretrained("remote-one")
    msg = str(e.value)
    assert "\n" not in msg and "scorezoo/remote-one" in msg and "hf download scorezoo/remote-one" in msg
    assert "bundled: tiny-zoo" in msg and len(msg) < 400
    with pytest.raises(ModelNotFoundError, match="Did you mean 'tiny-zoo'") as e:
        resolve_pretrained("tiny-zo")
    # no zoo model is called that, so there is no repo to download
    assert "hf download" not in str(e.value) and "scorezoo list" in str(e.value)
    with pytest.raises(ModelNotFoundError):  # a bundled copy stands for the default revision only
        resolve_pretrained("tiny-zoo", revision="v2")



def test_a_published_checkpoint_is_answered_with_where_it_is_and_the_convert_command(fake_zoo, no_network,
                                                                                       monkeypatch):
    """A zoo name of the authors' checkpoints (status "convert") has no Hub repo: the error says where the authors
    publish the checkpoint and the exact `scorezoo convert` command (the one README and the docs show), and invents
    no download; a typo of it gets the close name, also without a download line."""
    from scorezoo import zoo

    monkeypatch.setattr(zoo, "PUBLISHED_FILE", ROOT / "scorezoo" / "convert" / "published.json")
    for name in ("subvp-mle-cifar10-deep", "scorezoo/subvp-mle-cifar10-deep"):
        with pytest.raises(ModelNotFoundError) as e:
            ScorePipeline.from_pretrained(name)
        msg = str(e.value)
        assert "\n" not in msg and "hf download" not in msg and "not found" not in msg
        assert "`scorezoo convert score_flow cifar10_deep_subvp_likelihood_iw/ -o subvp-mle-cifar10-deep`" in msg
        assert "https://drive.google.com/drive/folders/1gbDrVrFVSupFMRoK7HZo8aFgPvOtpmqB" in msg
    with pytest.raises(ModelNotFoundError) as e:
        resolve_pretrained("sde-vp-cifar10-ddpmpp")
    assert ("`scorezoo convert score_sde checkpoint_N.pth --config vp/cifar10_ddpmpp_continuous -o "
            "sde-vp-cifar10-ddpmpp`") in str(e.value) and "1xYjVMx10N9ivQQBIsEoXEeu9nvSGTBrC" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="Did you mean 'vp-mle-cifar10'") as e:
        resolve_pretrained("vp-mle-cifar")
    assert "hf download" not in str(e.value)
    assert {x.name: x.status for x in registry()[0]}["vp-mle-cifar10"] == zoo.CONVERT_STATUS


def test_every_published_checkpoint_has_a_command_that_scorezoo_convert_accepts():
    """The command of each row parses as `scorezoo convert` arguments, names a config the converter knows, writes the
    folder of the row's name, and the README's and the docs' example is the command of its row."""
    import shlex

    from scorezoo.cli import build_parser
    from scorezoo.convert.configs import SCORE_SDE_CONFIGS, read_official_config
    from scorezoo.zoo import convert_command, published_models

    rows, where = published_models()
    assert rows and set(where) == {row["source"] for row in rows}
    for row in rows:
        argv = shlex.split(convert_command(row))
        assert argv[0] == "scorezoo"
        args = build_parser().parse_args(argv[1:])
        assert args.format == row["source"] and args.output == row["name"]
        assert row["url"].startswith("https://drive.google.com/drive/folders/")
        if row["source"] == "score_sde":
            assert args.config in SCORE_SDE_CONFIGS
        else:
            assert args.config is None and read_official_config(args.checkpoint.rstrip("/"), "score_flow")
    example = convert_command(next(r for r in rows if r["name"] == "subvp-mle-cifar10-deep"))
    for doc in ("README.md", "docs/official-checkpoints.md"):
        assert example in (ROOT / doc).read_text()


def _run(args, env, cwd):
    return subprocess.run([sys.executable, *args], env={**os.environ, "PYTHONPATH": str(ROOT),
                                                        "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_XET": "1",
                                                        "HF_HUB_DISABLE_TELEMETRY": "1", **env},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_download_through_loopback_hub_then_offline(tmp_path):
    """`scorezoo bpd --model owner/name --revision v1` downloads through huggingface_hub's real path (model info,
    tree, HEAD + GET of each file) from a loopback Hub, skips the repo's pickle, and gives the bits/dim of the
    same model loaded locally; afterwards the cache alone serves it with HF_HUB_OFFLINE=1."""
    pipe = tiny_unet_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"a pickle that must never be fetched")
    commit = "c" * 40
    pickles_only = {"pipeline_config.json": (tmp_path / "m" / "pipeline_config.json").read_bytes(),
                    "network/config.json": (tmp_path / "m" / "network" / "config.json").read_bytes(),
                    "network/pytorch_model.bin": b"pickle"}
    repos = {"someone/tiny": Repo.from_folder(tmp_path / "m", commit, ("main", "v1")),
             "someone/pickles": Repo(pickles_only, "d" * 40)}
    np.save(tmp_path / "digits.npy", DIGITS)
    from PIL import Image
    Image.fromarray(np.rint(DIGITS[0] * 255 / 16).astype(np.uint8)).save(tmp_path / "d.png")
    cli = ["-m", "scorezoo.cli", "bpd", "d.png", "--model", "someone/tiny", "--revision", "v1", "--json",
           "--num-repeats", "1", "--method", "euler", "--step-size", "0.25", "--divergence", "hutchinson", "--quiet"]
    env = {"HF_HUB_CACHE": str(tmp_path / "cache")}
    with FakeHub(repos) as hub:
        first = _run(cli, {**env, "HF_ENDPOINT": hub.url}, tmp_path)
        bad = _run(["-m", "scorezoo.cli", "bpd", "d.png", "--model", "someone/pickles"],
                   {**env, "HF_ENDPOINT": hub.url}, tmp_path)
        missing = _run(["-m", "scorezoo.cli", "bpd", "d.png", "--model", "someone/nothing"],
                       {**env, "HF_ENDPOINT": hub.url}, tmp_path)
    assert first.returncode == 0, first.stderr
    paths = [p for _, p in hub.requests]
    assert "/api/models/someone/tiny/revision/v1" in paths
    assert ("GET", f"/someone/tiny/resolve/{commit}/network/diffusion_pytorch_model.safetensors") in hub.requests
    assert not any(p.endswith(".bin") for p in paths)
    got = json.loads(first.stdout)["results"][0]["bpd"]
    # the command line draws image i's noise and probe from draw_generators(seed, [i], ...), as eval and the app do
    from scorezoo.scoring import draw_generators
    expected = pipe.bits_per_dim(DIGITS[:1], generator=draw_generators(0, [0], 1), method="euler",
                                 options={"step_size": 0.25}).bpd[0].item()
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    # refused and missing models: exit 1, one line, no traceback
    for r, match in ((bad, "diffusion_pytorch_model.safetensors"), (missing, "not found")):
        assert r.returncode == 1 and match in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    # the Hub is gone: the cache answers for the revision it recorded
    again = _run(cli, {**env, "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"][0]["bpd"] == got


def test_size_models_pick_whole_picture_colour_models_and_choose_model_uses_them(tmp_path):
    """A 32×32 colour picture goes to the zoo's model of 32×32 colour pictures, a larger one to the photo model, a
    small grey one to the digits model; models of patches and the photo model are not size models."""
    from PIL import Image

    from scorezoo.scoring import choose_model
    from scorezoo.zoo import ZooEntry, size_models

    entries = [ZooEntry("c32", "o/c32", dataset="cifar10", resolution="32x32x3", status="bundled"),
               ZooEntry("c32-remote", "o/r", dataset="cifar10", resolution="32x32x3", status="remote"),
               ZooEntry("patches", "o/p", dataset="photo_patches", resolution="16x16x3", status="bundled",
                        default_photo=True),
               ZooEntry("wide", "o/w", dataset="image_folder", resolution="24x48x3", status="cached"),
               ZooEntry("digits", "o/d", dataset="digits", resolution="8x8x1", status="bundled")]
    assert size_models(entries) == {(32, 32): "c32", (48, 24): "wide"}
    rng = np.random.default_rng(0)
    for name, shape in (("c.png", (32, 32, 3)), ("big.png", (40, 40, 3)), ("d.png", (8, 8))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / name)
    pick = {n: choose_model(str(tmp_path / n), default="digits", photo="patches", small_colour=size_models(entries))
            for n in ("c.png", "big.png", "d.png")}
    assert pick["c.png"] == ("c32", "a colour picture of 32×32: the model of 32×32 colour pictures")
    assert pick["big.png"][0] == "patches" and pick["d.png"][0] == "digits"
