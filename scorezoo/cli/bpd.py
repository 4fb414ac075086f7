"""``scorezoo bpd``: bits/dim of pictures (and of held-out digits) under a model, beside PNG and WebP.

``--dequantization variational`` draws the dequantization noise from the model's trained dequantizer q(u | k)
instead of uniform noise (a tighter bound; docs/dequantization.md).

Every picture goes through the one transform of :mod:`scorezoo.data`. A model of photo patches scores a larger
picture at its own resolution, tile by tile; other pictures are resized to the model. Without ``--model`` a colour
photo gets the zoo's photo model and a small grayscale picture the default (digits) model, and the choice is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CLIError, add_dequantization_argument, add_solver_arguments,
                     common_parent, default_repeats, plan_options,
                     debug_enabled, finite, fmt, load_model, model_parent, note, positive_int,
                     show_progress)



def add_parser(sub) -> None:
    p = sub.add_parser("bpd", parents=[common_parent(), model_parent()], help="bits/dim of pictures under a model",
                       description="Bits/dim of each picture by the probability-flow ODE, with uniform (or the "
                                   "model's variational) dequantization, beside PNG and WebP lossless for photos.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="picture files of any size and mode")
    p.add_argument("--digits", type=positive_int, metavar="N",
                   help="also score the first N held-out sklearn digits (index %% 6 == 0)")
    p.add_argument("--num-repeats", "-k", type=positive_int, default=None, metavar="K",
                   help="dequantization draws per picture (default 4; 1 for models of photo patches, where a tiled "
                        "photo's standard error is over its patches)")
    add_solver_arguments(p)
    add_dequantization_argument(p)
    p.add_argument("--invert", action="store_true",
                   help="invert the pictures (v -> 1 - v): for dark ink on light paper under the digits models")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="pictures per ODE solve (default 1: each picture's result and NFE are its own)")
    p.add_argument("--patch-batch", type=positive_int, default=256,
                   help="patches of a tiled photo per solve (default 256; bounds the memory)")
    tiling = p.add_mutually_exclusive_group()
    tiling.add_argument("--tile", dest="tile", action="store_const", const=True, default=None,
                        help="score every picture at its own resolution, tile by tile (default for models of photo "
                             "patches and pictures at least as large as the model)")
    tiling.add_argument("--resize", dest="tile", action="store_const", const=False,
                        help="resize every picture to the model's size instead of tiling")
    from ..scoring import DEFAULT_MAX_TILES

    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--max-tiles", type=positive_int, default=DEFAULT_MAX_TILES, metavar="N",
                          help=f"a tiled photo of more than N tiles (default {DEFAULT_MAX_TILES}: a 512×512 photo) is "
                               "scored on a random sample of N of them, drawn from --seed: its bits/dim is then an "
                               "estimate of the whole photo's, with its standard error, in bounded time")
    sampling.add_argument("--all-tiles", action="store_true",
                          help="score every tile, however many (the estimated time is printed first)")
    p.add_argument("--bits-map", metavar="OUT.png", default=None,
                   help="write where the bits go, per pixel, as a picture (one file per input: OUT-<name>.png when "
                        "there are several)")
    p.set_defaults(func=run)


@dataclass
class Item:
    """One input: a file (``path``) or held-out digit levels (``levels``), and the model chosen for it."""

    label: str
    path: str | None = None
    image: object = None
    levels: object = None
    transform: str = ""
    model: str = ""
    why: str = ""
    results: dict = field(default_factory=dict)


def _check_usage(args: argparse.Namespace) -> None:
    """Refuse what no model could make right before any picture is read or model loaded."""
    if not args.images and not args.digits:
        raise CLIError("give picture files, or --digits N for held-out digits (scorezoo bpd --help).", EXIT_USAGE)
    plan_options(args)


def _choose_model(image) -> tuple[str, str]:
    """``(model, why)`` for a picture when no ``--model`` is given (:func:`scorezoo.scoring.choose_model`: by size
    and content)."""
    from .. import zoo
    from ..scoring import choose_model

    entries = zoo.registry()[0]
    return choose_model(image, default=zoo.default_model(entries), photo=zoo.default_photo_model(entries),
                        small_colour=zoo.size_models(entries))


def _plan(args: argparse.Namespace, pipe, name: str):
    """The :class:`~scorezoo.scoring.ScoringPlan` of the command's options for model ``name``: every conflict is
    refused there, with the same words as in ``scorezoo eval`` and the app."""
    from ..scoring import ScoringPlan

    try:
        return ScoringPlan.create(pipe, **plan_options(args), num_repeats=default_repeats(args, pipe), tile=args.tile,
                                  dequantization=args.dequantization, bits_map=bool(args.bits_map),
                                  max_batch_size=args.patch_batch,
                                  max_tiles=None if args.all_tiles else args.max_tiles, tile_seed=args.seed)
    except ValueError as e:
        raise CLIError(f"{name}: {e}", EXIT_USAGE) from None


def _bits_map_path(args: argparse.Namespace, label: str, many: bool) -> Path:
    out = Path(args.bits_map)
    if not many:
        return out
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(label).stem)
    return out.with_name(f"{out.stem}-{stem}{out.suffix or '.png'}")


def _score_group(args: argparse.Namespace, name: str, items: list[Item], failed: list[dict], debug: bool) -> dict:
    """Load one model and score its items in place; returns the model's header facts."""
    import torch

    from .. import zoo
    from ..compression import CODECS, lossless_bits_per_dim
    from ..data import background_is_light, load_image
    from PIL import Image

    from ..display import heatmap
    from ..scoring import draw_generators

    pipe, where = load_model(args, name)
    if pipe.num_levels is None:
        raise CLIError(f"model {name!r} is for continuous data (no levels): bits/dim does not apply.")
    if len(pipe.data_shape) != 3:
        raise CLIError(f"model {name!r} takes data of shape {pipe.data_shape}, not pictures: use the library's "
                       "log_likelihood().")
    if any(i.levels is not None for i in items) and (pipe.data_shape != (1, 8, 8) or pipe.num_levels != 17):
        raise CLIError(f"--digits needs a model of 8×8×1 pictures with 17 levels; {name} takes {pipe.data_shape} "
                       f"with {pipe.num_levels} levels.", EXIT_USAGE)
    plan = _plan(args, pipe, name)
    repeats = plan.num_repeats
    entry = next((e for e in zoo.registry()[0] if e.name == name), None)
    header = {"model": name, "source": where, "data_shape": list(pipe.data_shape), "num_levels": pipe.num_levels,
              "sde": pipe.sde.name, "estimator": plan.describe(), "settings": plan.to_dict(),
              "uniform_bpd": math.log2(pipe.num_levels), "tiles": pipe.tiles_larger_images,
              "max_tile_size": pipe.max_tile_size,
              "card_bpd": None if entry is None else entry.bpd_ode, "eval_split": None if entry is None else
              entry.eval_split}
    if not args.json:  # said before the work starts, so that a long photo's output is not silent until the end
        _print_header(args, header, chosen=not args.model)
    dataset = str(pipe.extra_config.get("dataset", ""))
    light = []
    for it in items:
        if it.path is not None and "digits" in dataset and not args.invert:
            try:
                levels = load_image(it.image, data_shape=pipe.data_shape, num_levels=pipe.num_levels).levels
            except ValueError:
                continue
            if background_is_light(levels, pipe.num_levels):
                light.append(it.label)
    if light:
        note(args, f"note: {', '.join(light[:3])}{' ...' if len(light) > 3 else ''} "
                   f"{'has' if len(light) == 1 else 'have'} a light background; {name} was trained on light ink "
                   "on black (0 = background), so dark ink on paper scores poorly: add --invert to invert them.")
    if plan.max_tiles is None and not args.quiet:
        _say_long_runs(args, pipe, plan, items)
    from ..progress import progress_bar

    bar = progress_bar(total=len(items), desc=f"bits/dim ({name})", unit="picture", delay=1.0, leave=False,
                       disable=not show_progress(args))
    many_maps = sum(1 for _ in items) > 1
    for start in range(0, len(items), args.batch_size):
        batch = items[start:start + args.batch_size]
        t0 = time.perf_counter()
        src = [it.levels if it.levels is not None else it.image for it in batch]
        if all(it.levels is not None for it in batch):
            src = torch.stack(src)
        try:
            res = pipe.bits_per_dim(src, plan=plan.replace(max_batch_size=max(args.patch_batch, repeats * len(batch))),
                                    invert=args.invert,
                                    # every picture gets the draws of a picture scored alone (index 0), as in
                                    # the app and in `scorezoo eval` of that one picture
                                    generator=draw_generators(args.seed, [0] * len(batch), repeats))
        except Exception as e:  # one picture's failed solve must not stop the others
            if debug or not isinstance(e, (ValueError, AssertionError, RuntimeError)):
                raise
            for it in batch:
                msg = str(e).splitlines()[0]
                text = msg if it.path and it.path in msg else f"{it.label}: {msg}"
                failed.append({"input": it.label, "error": text})
                print(f"scorezoo: error: {text}", file=sys.stderr)
            bar.update(len(batch))
            continue
        seconds = (time.perf_counter() - t0) / len(batch)
        for i, it in enumerate(batch):
            tiled = res.tiled[i]
            r = {"input": it.label, "model": name, "bpd": float(res.bpd[i]), "stderr": finite(float(res.stderr[i])),
                 "nfe": int(res.nfe[i]), "time_s": round(seconds, 4),
                 "transform": it.transform or res.transforms[i], "pixels_scored": int(res.pixels_scored[i]),
                 "num_patches": int(res.num_patches[i]), "total_patches": int(res.total_patches[i]),
                 "estimate": res.sampled[i], "tiled": tiled}
            if it.why:
                r["chosen_because"] = it.why
            if pipe.num_levels == 256:
                # the same pixels the model scored, for the lossless coders
                full = load_image(it.image, data_shape=pipe.data_shape, num_levels=256, invert=args.invert,
                                  resize=not tiled).levels if it.path else None
                if full is not None and tiled:
                    tiles = pipe.tile_picture(full)
                    full = full[:, :tiles.grid[0] * tiles.patches.shape[2], :tiles.grid[1] * tiles.patches.shape[3]]
                for codec in CODECS:
                    r[f"{codec}_bpd"] = lossless_bits_per_dim(full, codec) if full is not None else None
            if args.bits_map and res.bits_maps is not None:
                out = _bits_map_path(args, it.label, many_maps)
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    picture = heatmap(res.bits_maps[i].mean(0).numpy())
                    # a small map (a digit, a crop) is enlarged by a whole factor, each pixel a flat square
                    k = max(1, 512 // max(picture.size))
                    picture.resize((picture.width * k, picture.height * k), Image.Resampling.NEAREST).save(out)
                except OSError as e:
                    raise CLIError(f"cannot write {out}: {e}") from None
                r["bits_map"] = str(out)
            it.results = r
        bar.update(len(batch))
    bar.close()
    return header


def _say_long_runs(args: argparse.Namespace, pipe, plan, items: list[Item]) -> None:
    """With ``--all-tiles``: for each photo of more than the default sample, its tiles and the estimated time, said
    before the work starts (timed on a sample of its tiles)."""
    from ..scoring import DEFAULT_MAX_TILES, estimate_seconds

    if not pipe.tiles_larger_images or args.tile is False:
        return
    h, w = pipe.data_shape[1:]
    for it in items:
        if it.image is None:
            continue
        n = (it.image.width // w) * (it.image.height // h)
        if n > DEFAULT_MAX_TILES:
            try:
                secs = estimate_seconds(pipe, it.image, plan, num_tiles=n, invert=args.invert)
            except ValueError:
                continue  # its error is reported when it is scored
            note(args, f"{it.label}: all {n:,} tiles, about {_duration(secs)} on this machine now (timed on a "
                       "sample of them); without --all-tiles a sample of "
                       f"{DEFAULT_MAX_TILES} gives an estimate with its standard error.")


def _duration(seconds: float) -> str:
    """``seconds`` in words: ``"40 s"``, ``"12 min"``, ``"2.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_header(args: argparse.Namespace, h: dict, chosen: bool) -> None:
    c, hh, w = h["data_shape"]
    card = f"; its held-out figure: {h['card_bpd']:.3f} bits/dim" if h["card_bpd"] is not None else ""
    size = (f"fully convolutional (trained on {hh}×{w}×{c}; a picture of up to {h['max_tile_size']} a side is "
            "scored whole)" if h.get("max_tile_size") else f"{hh}×{w}×{c}")
    print(f"model      {h['model']} ({h['source']}): {h['sde'].upper()} SDE, {size}, {h['num_levels']} "
          f"levels" + (" (chosen per picture; --model overrides)" if chosen else ""))
    print(f"scale      uniform noise over the {h['num_levels']} levels: {h['uniform_bpd']:.3f} bits/dim{card}")
    print(f"estimator  {h['estimator']}, seed {args.seed}")
    resize = "at its own resolution, tile by tile, if larger" if h["tiles"] and args.tile is not False else \
        f"centre-crop + resize to {w}×{hh} (exact for integer factors)"
    print(f"transform  EXIF orientation, transparency over {'white' if args.invert else 'black'}, "
          f"{'L' if c == 1 else 'RGB'}, {resize}, {'inversion, ' if args.invert else ''}nearest of "
          f"{h['num_levels']} levels (steps per file below)", flush=True)


def run(args: argparse.Namespace) -> int:
    """Bits/dim per picture, then the mean; exit 1 when some input failed."""
    _check_usage(args)
    debug = debug_enabled(args)
    from ..data import open_image

    failed: list[dict] = []
    items: list[Item] = []
    for path in args.images:
        try:
            image = open_image(path)  # decoded once: the model's choice, the score and the codecs use it
        except ValueError as e:
            failed.append({"input": path, "error": str(e)})
            print(f"scorezoo: error: {e}", file=sys.stderr)
            continue
        items.append(Item(label=path, path=path, image=image))
    if args.digits:
        from ..datasets import load_digits

        try:
            digits = load_digits().eval
        except ImportError as e:
            raise CLIError(f"--digits: {e}") from None
        n = min(args.digits, digits.shape[0])
        levels = 16 - digits[:n] if args.invert else digits[:n]
        items += [Item(label=f"digits[{6 * i}]", levels=levels[i], transform="sklearn digits, held-out split "
                       "(i % 6 == 0): levels as they are" + (", inverted" if args.invert else "")) for i in range(n)]
    if not items:
        print(f"scorezoo: {len(failed)} of {len(failed)} inputs failed (errors above); no model was loaded.",
              file=sys.stderr)
        return EXIT_FAILED
    if args.model:
        for it in items:
            it.model = args.model
    else:
        from .. import zoo

        for it in items:
            it.model, it.why = _choose_model(it.image) if it.path else (zoo.default_model(), "held-out digit")
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.model, []).append(it)
    headers = [_score_group(args, name, group, failed, debug) for name, group in groups.items()]
    results = [it.results for it in items if it.results]
    _print(args, headers, results, failed, chosen=not args.model)
    if failed:
        print(f"scorezoo: {len(failed)} of {len(failed) + len(results)} inputs failed (errors above).",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _print(args: argparse.Namespace, headers: list[dict], results: list[dict], failed: list[dict],
           chosen: bool) -> None:
    import numpy as np

    from ..display import text_table

    bpds = np.array([r["bpd"] for r in results])
    mean = float(bpds.mean()) if len(bpds) else None
    mean_se = float(bpds.std(ddof=1) / math.sqrt(len(bpds))) if len(bpds) > 1 else None
    if args.json:
        h = headers[0]
        report = {"model": h["model"] if len(headers) == 1 else [x["model"] for x in headers],
                  "source": h["source"], "data_shape": h["data_shape"], "num_levels": h["num_levels"],
                  "settings": {"seed": args.seed, **h["settings"]},
                  "models": headers, "results": results, "failed": failed, "mean_bpd": mean,
                  "mean_bpd_stderr": mean_se}
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    if not results:
        return
    photo = any("png_bpd" in r for r in results)
    head = ["input"] + (["model"] if len(headers) > 1 else []) + ["bits/dim", "± s.e."] + \
        (["PNG", "WebP", "JPEG XL", "pixels"] if photo else []) + ["NFE", "time", "preprocessing"]
    rows = [head]
    for r in results:
        row = [r["input"]] + ([r["model"]] if len(headers) > 1 else []) + [fmt(r["bpd"]), fmt(r["stderr"])]
        if photo:
            row += [fmt(r.get("png_bpd"), 3), fmt(r.get("webp_bpd"), 3), fmt(r.get("jxl_bpd"), 3),
                    f"{r['pixels_scored']:,}"]
        row += [str(r["nfe"]), f"{r['time_s']:.2f}s", r["transform"]]
        rows.append(row)
    last = ["" for _ in head]
    last[0], last[head.index("bits/dim")], last[head.index("± s.e.")] = f"mean of {len(results)}", fmt(mean), \
        fmt(mean_se)
    last[-1] = "± s.e. over pictures" if mean_se is not None else ""
    rows.append(last)
    right = {i for i, name in enumerate(head) if name not in ("input", "model", "preprocessing")}
    print(text_table(rows, right=right))
    if photo:
        print("PNG (optimize), WebP lossless and JPEG XL lossless (pip install 'scorezoo[jxl]'): bits/dim of the same "
              "pixels, file headers included; the model's bits/dim bounds what a coder built on it needs for them.")
    sampled = [r for r in results if r.get("estimate")]
    if sampled:
        print(f"estimates  {', '.join(r['input'] for r in sampled[:3])}{' ...' if len(sampled) > 3 else ''}: scored "
              "on a seeded random sample of tiles (see preprocessing), so the bits/dim is an estimate of the whole "
              "photo's with the standard error shown; --all-tiles scores every tile.")
    maps = [r["bits_map"] for r in results if r.get("bits_map")]
    if maps:
        print(f"bits maps  {', '.join(maps)} (bits per pixel, channels averaged; dark = few bits)")
