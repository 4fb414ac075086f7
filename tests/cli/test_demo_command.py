"""``scorezoo demo ...`` hands every word after ``demo`` to :func:`scorezoo.demo.main`, options included."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("gradio")

import scorezoo.demo.app  # noqa: E402
from scorezoo.cli import main  # noqa: E402


@pytest.mark.parametrize("argv", [[], ["--help"], ["--model", "runs/x", "--port", "7999"], ["--adaptive"]])
def test_demo_options_reach_the_demo(argv, monkeypatch):
    # the command sets the app's environment (offline, no analytics): keep it out of the other tests' processes
    monkeypatch.setattr(os, "environ", dict(os.environ))
    seen = []
    monkeypatch.setattr(scorezoo.demo.app, "main", seen.append)
    assert main(["demo", *argv]) == 0
    assert seen == [argv]


def test_demo_help_lists_the_demos_options(capsys):
    with pytest.raises(SystemExit) as e:
        scorezoo.demo.app.main(["--help"])
    assert e.value.code == 0 and "--photo-default" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter importing gradio: ~10 s, several times that on a busy machine
def test_python_m_scorezoo_demo_starts(tmp_path):
    # the package runs as a module: its --help answers (gradio imported, nothing served)
    import subprocess
    import sys
    from pathlib import Path

    root = Path(scorezoo.demo.app.__file__).parents[2]
    run = subprocess.run([sys.executable, "-m", "scorezoo.demo", "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 0 and "--photo-default" in run.stdout
