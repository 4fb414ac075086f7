"""``scorezoo eval``: bits/dim of a whole data set, on one process or many, resumable.

    scorezoo eval --data digits                                   # held-out digits under the default model
    accelerate launch --multi_gpu --num_processes 2 -m scorezoo eval --model M --data cifar10:ROOT

A thin shell over :func:`scorezoo.evaluation.evaluate`: the per-image results stream to ``--out`` (JSON lines), the
summary goes to the ``.json`` beside it and is printed by the main process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from .common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CLIError, add_dequantization_argument, add_solver_arguments,
                     common_parent, fmt, model_parent, plan_options, positive_int, show_progress)

DATA_HELP = ("digits (held-out split), photo-patches (held-out tiles of the photos), cifar10 or cifar10:ROOT "
             "(CIFAR-10's --split, from ROOT, $SCOREZOO_CIFAR10 or ./data/cifar10: torchvision's "
             "cifar-10-batches-py or a train|test/<class>/*.png tree), photos (held-out photos, tiled), "
             "photos:PATH (pictures, tiled), a picture file, a folder (recursive), @LIST (a text file of paths); "
             "several pictures specs are joined")


def add_parser(sub) -> None:
    p = sub.add_parser("eval", parents=[common_parent(), model_parent()],
                       help="bits/dim of a whole data set (resumable; accelerate launch for many processes)",
                       description="Bits/dim of every image of a data set, streamed to a JSON-lines file; resumable "
                                   "(run the same command again), and the same per-image numbers on 1 or N "
                                   "processes (accelerate launch --multi_gpu --num_processes N -m scorezoo eval ...).")
    p.add_argument("--data", "-d", nargs="+", required=True, metavar="SPEC", help=DATA_HELP)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="the split of CIFAR-10 to score (default test, the benchmark's 10,000 images)")
    p.add_argument("--out", "-o", default="results.jsonl",
                   help="per-image results, one JSON line per image (default results.jsonl); the summary goes "
                        "beside it as .json")
    p.add_argument("--num-repeats", "-k", type=positive_int, default=1, metavar="K",
                   help="dequantization draws per image (default 1; 2 or more also measure the dequantization noise)")
    subset = p.add_mutually_exclusive_group()
    subset.add_argument("--limit", type=positive_int, default=None, metavar="N", help="score only the first N images")
    subset.add_argument("--sample", type=positive_int, default=None, metavar="N",
                        help="score a uniform random sample of N images (drawn with --seed, the same on every run): "
                             "an estimate of the whole set's mean, its standard error included")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per solve (default 64; patches per solve for tiled photos, default 256); it fixes "
                        "which images share a batch, so keep it when resuming")
    add_dequantization_argument(p)
    p.add_argument("--bound", action="store_true",
                   help="score with the likelihood bound (Song et al. 2021, Thm. 3) instead of the ODE")
    add_solver_arguments(p)
    p.add_argument("--plot", metavar="HIST.png", default=None,
                   help="write a histogram of the per-image bits/dim (needs matplotlib)")
    p.set_defaults(func=run)


def _default_model(data: list[str]) -> tuple[str, str]:
    """``(model, why)``: the zoo's model for the data when ``--model`` is not given: the default model for the digits,
    the model of 32×32 colour pictures for CIFAR-10, the photo model for the photos, and for picture files the model
    :func:`scorezoo.scoring.choose_model` picks for the first of them (by size and content)."""
    from .. import zoo
    from ..evaluation.specs import first_picture
    from ..scoring import choose_model

    if data == ["digits"]:
        return zoo.default_model(), "the digits"
    if data[0] == "cifar10" or data[0].startswith("cifar10:"):
        model = zoo.size_models().get((32, 32))
        if model is None:
            raise CLIError("no model of 32×32 colour pictures is installed: give --model (scorezoo list).",
                           EXIT_USAGE)
        return model, "CIFAR-10: the zoo's model of 32×32 colour pictures"
    photo = zoo.default_photo_model()
    if data[0] in ("photo-patches", "photos") or data[0].startswith("photos:"):
        if photo is None:
            raise CLIError("no photo model is installed: give --model (scorezoo list).", EXIT_USAGE)
        return photo, "photos"
    try:
        first = first_picture(data)
    except ValueError as e:
        raise CLIError(str(e), EXIT_USAGE) from None
    if first is None:
        raise CLIError("give --model for this data (scorezoo list shows the zoo).", EXIT_USAGE)
    model, why = choose_model(str(first), default=zoo.default_model(), photo=photo, small_colour=zoo.size_models())
    return model, f"its first picture, {first.name}, is {why}"


def run(args: argparse.Namespace) -> int:
    """Score the data set, print the summary on the main process; exit 1 when some image failed.

    In a launch of several processes each one ends with ``os._exit`` once its part is done and its output flushed
    (after a final barrier, with every result on disk): a gloo process group can abort a process while it is taken
    down or at the interpreter's exit ("terminate called without an active exception"), which would turn a
    finished run into a failed command.
    """
    code = _run(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    options = plan_options(args)
    main = int(os.environ.get("RANK", "0")) == 0
    model = args.model
    if model is None:
        model, why = _default_model(args.data)
        if main and not args.quiet:
            print(f"scorezoo: no --model: {model} ({why}); --model chooses another", file=sys.stderr)
    if not (show_progress(args) and sys.stderr.isatty()):  # the Hub's download bars have no plain form
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    from ..evaluation import evaluate
    from ..zoo import ModelNotFoundError

    argv = getattr(args, "argv", None)
    try:
        s = evaluate(model, args.data, args.out, split=args.split, revision=args.revision,
                     seed=args.seed, limit=args.limit, sample=args.sample, batch_size=args.batch_size,
                     plan={**options, "estimator": "bound" if args.bound else "ode", "num_repeats": args.num_repeats,
                           "dequantization": args.dequantization}, plot=args.plot,
                     progress=show_progress(args), keep_process_group=True,
                     command=shlex.join(["scorezoo", *argv]) if argv is not None else None)
    except (ValueError, ModelNotFoundError) as e:
        if not main:  # every process stops on the same problem; the main one says it, once
            return EXIT_USAGE
        raise CLIError(str(e), EXIT_USAGE) from None
    if not main:
        return EXIT_FAILED if s.num_failed else EXIT_OK
    if args.json:
        print(json.dumps(json.loads(s.summary_path.read_text()), indent=2, ensure_ascii=False))
    else:
        _print(args, model, s)
    if s.num_failed:
        print(f"scorezoo: {s.num_failed} of {s.num_images} images failed (listed in {s.summary_path} and "
              f"{s.out}).", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _print(args: argparse.Namespace, model: str, s) -> None:
    summary = json.loads(s.summary_path.read_text())
    print(f"model      {model}")
    print(f"data       {summary['data_description']}" + (f" (first {args.limit})" if args.limit else ""))
    print(f"estimator  {s.solver}, seed {args.seed}")
    if s.bpd is None:
        print("bits/dim   — (no image was scored)")
    else:
        line = f"bits/dim   {fmt(s.bpd)} ± {fmt(s.stderr)} (standard error over {s.num_scored} images"
        if s.stderr_dequantization is not None:
            frac = summary["summary"]["dequantization_variance_fraction"]
            line += f"; dequantization noise ± {fmt(s.stderr_dequantization)}"
            line += f", {100 * frac:.1f}% of the variance" if frac is not None else ""
        print(line + ")")
        print(f"NFE        {s.nfe_mean:.1f} score evaluations per image's solve (mean)")
    speed = (f"{s.images_per_second:.3g} images/s on {s.num_processes} process(es)" if s.images_per_second else
             "nothing left to score")
    print(f"speed      {speed}; this run {s.seconds:.1f} s")
    print(f"results    {s.out} (one line per image), {s.summary_path} (summary)" +
          (f", {args.plot}" if args.plot and s.num_scored else ""))
