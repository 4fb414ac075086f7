"""``scorezoo sample``: draw samples into an image grid (points for a 2-D model, or ``.npy``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .common import (EXIT_OK, EXIT_USAGE, CLIError, common_parent, load_model, model_parent, positive_float,
                     positive_int)


def add_parser(sub) -> None:
    p = sub.add_parser("sample", parents=[common_parent(), model_parent()], help="draw samples into an image grid")
    p.add_argument("-n", "--num-samples", type=positive_int, default=16, metavar="N", help="samples (default 16)")
    p.add_argument("--sampler", choices=("ode", "em", "pc"), default="ode",
                   help="probability-flow ODE (default), Euler-Maruyama, or predictor-corrector")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="steps (default: adaptive for ode, 1000 for em and pc; fixed rk4 steps for ode)")
    p.add_argument("--rtol", type=positive_float, default=None, help="adaptive ODE sampler's relative tolerance")
    p.add_argument("--atol", type=positive_float, default=None, help="adaptive ODE sampler's absolute tolerance")
    p.add_argument("-o", "--output", default="samples.png",
                   help="image grid (.png, .jpg, ...), or .npy for the raw samples (default samples.png)")
    p.add_argument("--scale", type=positive_int, default=None,
                   help="upscale each tile by this factor, nearest neighbour (default: tiles of >= 64 px)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw samples and write them as an image grid, a picture of 2-D points, or ``.npy``."""
    from PIL import Image

    out = Path(args.output)
    suffix = out.suffix.lower()
    Image.init()
    if suffix != ".npy" and suffix not in Image.registered_extensions():
        raise CLIError(f"-o {args.output}: unknown picture extension {suffix or '(none)'}; use .png, .jpg or .npy.",
                       EXIT_USAGE)
    if (args.rtol or args.atol) and (args.sampler != "ode" or args.steps):
        raise CLIError("--rtol and --atol are for the adaptive ODE sampler (--sampler ode without --steps).",
                       EXIT_USAGE)
    import numpy as np
    import torch

    from .. import zoo
    from ..data import levels_to_uint8
    from ..display import image_grid, points_image

    name = args.model or zoo.default_model()
    pipe, where = load_model(args, name)
    kwargs = {k: v for k, v in (("rtol", args.rtol), ("atol", args.atol)) if v is not None}
    t0 = time.perf_counter()
    res = pipe(args.num_samples, sampler=args.sampler, num_inference_steps=args.steps,
               generator=torch.Generator().manual_seed(args.seed), output_type="pt", **kwargs)
    seconds = time.perf_counter() - t0
    is_image = len(pipe.data_shape) == 3
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".npy":
            np.save(out, res.samples.cpu().numpy())
        elif is_image:
            k = pipe.num_levels or 256
            levels = torch.round(res.images.double() * (k - 1)).long()
            scale = args.scale or max(1, 64 // max(pipe.data_shape[1:]))
            image_grid(levels_to_uint8(levels, k), tile=scale * max(pipe.data_shape[1:])).save(out)
        elif pipe.data_shape == (2,):
            pts = res.samples.double().cpu().numpy()
            # the data range, widened to hold all but the most extreme 1 % of the points
            lo, hi = min(pipe.data_range[0], np.percentile(pts, 0.5)), max(pipe.data_range[1], np.percentile(pts, 99.5))
            pad = 0.05 * (hi - lo)
            points_image(pts, limits=(lo - pad, hi + pad)).save(out)
        else:
            raise CLIError(f"model {name!r} has data of shape {pipe.data_shape}: write them with -o samples.npy.",
                           EXIT_USAGE)
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e}") from None
    steps = "adaptive" if args.sampler == "ode" and not args.steps else f"{args.steps or 1000} steps"
    summary = {"output": str(out), "model": name, "source": where, "num_samples": args.num_samples,
               "sampler": args.sampler, "steps": args.steps, "seed": args.seed, "nfe": res.nfe,
               "time_s": round(seconds, 3)}
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(f"wrote {out}: {args.num_samples} samples of {name} ({where}), sampler {args.sampler} ({steps}, "
              f"{res.nfe} score evaluations), seed {args.seed}, {seconds:.1f}s")
    return EXIT_OK
