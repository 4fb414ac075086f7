"""``scorezoo convert``: the authors' score_sde_pytorch ``.pth`` or score_flow checkpoint -> a pipeline folder."""

from __future__ import annotations

import argparse
import shlex

from .common import EXIT_OK, EXIT_USAGE, CLIError, common_parent


def add_parser(sub) -> None:
    p = sub.add_parser("convert", parents=[common_parent()], help="turn an official checkpoint into a pipeline folder",
                       description="Convert the authors' score_sde_pytorch .pth or score_flow checkpoint into a "
                                   "pipeline folder that ScorePipeline.from_pretrained loads (EMA weights).")
    p.add_argument("format", choices=("score_sde", "score_flow"), help="the checkpoint's code base")
    p.add_argument("checkpoint", help="checkpoint_N.pth (score_sde); checkpoint_N or its run folder (score_flow)")
    p.add_argument("--config", default=None,
                   help="a published config (vp/cifar10_ddpmpp_continuous, ...; score_flow: the run name, default "
                        "the run folder's name) or a JSON file of the official config (config.to_dict())")
    p.add_argument("-o", "--output", required=True, help="the pipeline folder to write")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema",
                   help="EMA weights, as the official evaluation (default), or the raw ones")
    p.add_argument("--name", default=None, help="the model's name on its card (default: the folder's name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """An official checkpoint -> a pipeline folder with its model card."""
    from ..convert import convert_score_flow, convert_score_sde

    if args.format == "score_sde" and args.config is None:
        raise CLIError("score_sde checkpoints need --config (e.g. vp/cifar10_ddpmpp_continuous, or a JSON file).",
                       EXIT_USAGE)
    command = shlex.join(["scorezoo", "convert", args.format, args.checkpoint,
                          *(["--config", args.config] if args.config else []), "-o", args.output,
                          *(["--weights", "raw"] if args.weights == "raw" else [])])
    convert = convert_score_sde if args.format == "score_sde" else convert_score_flow
    try:
        pipe = convert(args.checkpoint, args.config, args.output, weights=args.weights, name=args.name,
                       command=command)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise CLIError(str(e)) from None
    params = sum(p.numel() for p in pipe.network.parameters())
    print(f"wrote {args.output}: {pipe.sde.name.upper()} SDE, NCSNpp with {params:,} parameters, "
          f"{args.weights} weights; load it with ScorePipeline.from_pretrained({str(args.output)!r})")
    return EXIT_OK
