"""The training command line: ``--config FILE`` and any config key as ``--key value``.

    accelerate launch train/train_mle.py --config train/configs/vp-mle-digits.yaml [--key value ...]
    python -m scorezoo.training --config train/configs/vp-mle-digits.yaml --max_train_steps 100
    accelerate launch --multi_gpu --num_processes 2 train/train_mle.py --config ...   # data-parallel, CPU too

Values are read as YAML (``--sde.type ve``, ``--network.block_out_channels "[32, 64]"``, a bare ``--overwrite``
is true). ``--help`` lists every key with its default and meaning.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .config import ConfigError, MissingExtraError, describe_keys, load_config, parse_overrides

__all__ = ["main", "build_parser", "run_command"]

_DESCRIPTION = """\
Train a score-based model with the MLE paper's objective (Song, Durkan, Murray & Ermon 2021): denoising score
matching with likelihood weighting and importance-sampled time, with accelerate (processes, mixed precision,
gradient accumulation). Checks the config, the data and the network before the first step; checkpoints every
checkpointing_steps and resumes exactly (--resume_from_checkpoint latest); scores the held-out split every
eval_steps and at the end (final_eval); exports the EMA weights as a ScorePipeline with a model card to
output_dir/pipeline.

Any key below can be given in the YAML file or on the command line as --key VALUE (values are YAML; nested keys
as --sde.type ve; a bare --flag is true); the command line wins."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``--help`` lists every config key with its default and description."""
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="config keys (default, then meaning):\n" + describe_keys())
    parser.add_argument("--config", required=True, metavar="FILE", help="YAML config (train/configs/*.yaml)")
    return parser


def run_command(argv: list[str] | None = None) -> str:
    """The command that started this process, from ``sys.argv`` as run: ``python SCRIPT ARGS``,
    ``python -m MODULE ARGS``, or ``accelerate launch SCRIPT ARGS`` (the launcher's own options are not visible to
    the process; ``results.json`` records the number of processes next to it)."""
    from .loop import launched_by_accelerate

    argv = list(sys.argv if argv is None else argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        target = ["-m", spec.name.removesuffix(".__main__")]
    else:
        target = [argv[0]]
    launcher = "accelerate launch" if launched_by_accelerate() else "python"
    return f"{launcher} {shlex.join(target + argv[1:])}"


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``), load the config and train; exit 2 with one line on a bad config
    or run folder, 1 when a package of the ``train`` extra is missing.

    Returns:
        The results dict of :func:`scorezoo.training.loop.train`.
    """
    parser = build_parser(prog or Path(sys.argv[0]).name)
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, parse_overrides(rest))
        from .loop import train

        return train(cfg, run_command() if argv is None else f"{parser.prog} {shlex.join(argv)}")
    except ConfigError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except MissingExtraError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
