"""``scorezoo bpd --dequantization``: the variational dequantizer from the command line."""

import json

import pytest
import torch

from scorezoo import cli
from scorezoo.dequantization import VariationalDequantizer
from tests.dequantization.test_variational import randomised
from tests.helpers import tiny_unet_pipeline

# a fixed-step solve: these tests are about the command line, not about accuracy
FAST = ["--method", "euler", "--step-size", "0.25"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    plain, with_q = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("with_q")
    pipe = tiny_unet_pipeline()
    pipe.extra_config["dataset"] = "digits"
    pipe.save_pretrained(plain)
    pipe.dequantizer = randomised(VariationalDequantizer(data_shape=(1, 8, 8), num_levels=17, hidden_channels=4,
                                                         num_blocks=1))
    pipe.save_pretrained(with_q)
    return plain, with_q


def bpd(capsys, *argv):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks run faster on one thread of a shared CPU
    try:
        code = cli.main(["bpd", *map(str, argv)])
    finally:
        torch.set_num_threads(n)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_variational_dequantization_is_used_and_reported(folders, capsys):
    _, with_q = folders
    runs = {}
    for deq in ("uniform", "variational"):
        code, out, _ = bpd(capsys, "--digits", "2", "--model", with_q, "-k", "1", "--json", "--dequantization", deq,
                           *FAST)
        assert code == 0
        report = json.loads(out)
        assert report["settings"]["dequantization"] == deq
        runs[deq] = [r["bpd"] for r in report["results"]]
    assert runs["uniform"] != runs["variational"]  # the random q moves the answer
    code, out, _ = bpd(capsys, "--digits", "1", "--model", with_q, "-k", "1", "--dequantization", "variational",
                       *FAST)
    assert code == 0 and "variational dequantization draw(s)" in out


def test_a_model_without_a_dequantizer_is_refused_in_one_line(folders, capsys):
    plain, _ = folders
    code, _, err = bpd(capsys, "--digits", "1", "--model", plain, "--dequantization", "variational", *FAST)
    assert code == 2
    assert "has no variational dequantizer: train one with python -m scorezoo.training --task dequantizer" in err
    assert len(err.strip().splitlines()) == 1
