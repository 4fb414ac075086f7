"""``scorezoo``: the zoo, bits/dim of pictures and data sets, samples, the demo, from the shell.

    scorezoo list [--json]
    scorezoo bpd IMAGES... [--model NAME] [--num-repeats K] [--fast] [--bits-map out.png] [--json]
    scorezoo bpd --digits N                      # held-out sklearn digits
    scorezoo eval --data digits|photo-patches|cifar10:ROOT|FOLDER [--model NAME] [--out results.jsonl]
                                                 # a whole data set; accelerate launch ... -m scorezoo eval for many
    scorezoo sample [--model NAME] [-n 16] [--sampler ode|em|pc] [--steps N] [--seed S] [-o grid.png]
    scorezoo convert score_sde|score_flow CHECKPOINT [--config CONFIG] -o FOLDER   # the authors' checkpoints
    scorezoo demo [--model FOLDER]               # the Gradio app (needs scorezoo[app])

Each sub-command is a module of this package with ``add_parser(sub)`` and ``run(args)``; building the parser imports
no torch, so ``--help`` and usage errors answer at once.

Exit codes: 0 all fine; 1 some inputs failed, or the model could not be loaded; 2 usage errors. Errors are one line
on stderr naming the file or model; ``--debug`` (or ``SCOREZOO_DEBUG=1``) shows tracebacks and lets unexpected
exceptions through.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from .. import __version__
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CLIError, debug_enabled, default_threads

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "COMMANDS"]

#: sub-command name -> module of this package
COMMANDS = {"list": "listing", "bpd": "bpd", "eval": "eval", "sample": "sample", "convert": "convert", "demo": "demo"}


def build_parser() -> argparse.ArgumentParser:
    """The ``scorezoo`` argument parser, one sub-parser per module of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="scorezoo", description="Likelihood-trained score-based models: "
                                     "exact bits/dim by the probability-flow ODE, and samples.")
    parser.add_argument("--version", action="version", version=f"scorezoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", required=True)
    for module in COMMANDS.values():
        importlib.import_module(f".{module}", __name__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scorezoo`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code (0, 1 or 2).

    User errors become one line on stderr; unexpected exceptions too, unless ``--debug`` or ``SCOREZOO_DEBUG=1``,
    which re-raise them (and print tracebacks of user errors).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version exit 0, usage errors 2
        return int(e.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that record how they were run
    debug = debug_enabled(args)
    try:
        if hasattr(args, "threads"):  # the commands that compute; the others import no torch
            from ..utils import torch_threads

            with torch_threads(args.threads or default_threads()):
                return args.func(args)
        return args.func(args)
    except CLIError as e:
        if debug:
            traceback.print_exc()
        print(f"scorezoo: error: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:  # `scorezoo bpd ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("scorezoo: interrupted.", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"scorezoo: internal error: {type(e).__name__}: {first} (run again with --debug for the traceback, "
              "and report it).", file=sys.stderr)
        return EXIT_FAILED
