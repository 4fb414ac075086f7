"""The training command line: ``--config FILE`` and any config key as ``--key value``, for every task.

    python -m scorezoo.training --config train/configs/vp-mle-digits.yaml --max_train_steps 100
    python -m scorezoo.training --task dequantizer --pretrained vp-mle-digits --output_dir runs/deq-mine
    accelerate launch -m scorezoo.training --config ...
    accelerate launch --multi_gpu --num_processes 2 -m scorezoo.training --config ...   # data-parallel, CPU too

``train/train_mle.py`` and ``train/train_dequantizer.py`` of the repository are this command, the second with
``dequantizer`` as the task of a config that names none.

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
Train with accelerate (processes, mixed precision, gradient accumulation) one of two tasks:

  --task score (the default): a score-based model with the MLE paper's objective (Song, Durkan, Murray & Ermon
      2021), denoising score matching with likelihood weighting and importance-sampled time; exports the EMA weights
      as a ScorePipeline with a model card to output_dir/pipeline.
  --task dequantizer: a variational dequantizer for a frozen pretrained model (--pretrained NAME), trained on the
      model's likelihood bound; exports output_dir/dequantizer and output_dir/pipeline (the model with it).

Checks the config, the data and the network before the first step; checkpoints every checkpointing_steps and
resumes exactly (--resume_from_checkpoint latest); stops after max_train_minutes with a checkpoint; scores the
held-out split every eval_steps and at the end (final_eval).

Any key below can be given in the YAML file or on the command line as --key VALUE (values are YAML; nested keys
as --sde.type ve; a bare --flag is true); the command line wins."""


def build_parser(prog: str | None = None, task: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``--help`` lists every config key with its default and description, and names
    ``task``, the task of a config that names none (None: score)."""
    description = _DESCRIPTION + (f"\n\nThis command trains task {task} unless the config names another."
                                  if task else "")
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="config keys (default, then meaning):\n" + describe_keys())
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="YAML config (the repository's train/configs/*.yaml); without it, the keys given here")
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


def main(argv: list[str] | None = None, prog: str | None = None, task: str | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``), load the config and train; exit 2 with one line on a bad config
    or run folder, 1 when a package of the ``train`` extra is missing.

    Args:
        argv: ``--config FILE`` and ``--key value`` overrides.
        prog: the command's name in messages (default: the script's file name).
        task: the task of a config that names none (None: score; ``train/train_dequantizer.py``: dequantizer).

    Returns:
        The results dict of :func:`scorezoo.training.loop.train`.
    """
    parser = build_parser(prog or Path(sys.argv[0]).name, task)
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, parse_overrides(rest), task=task)
        from .loop import train

        return train(cfg, run_command() if argv is None else f"{parser.prog} {shlex.join(argv)}")
    except ConfigError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except MissingExtraError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
