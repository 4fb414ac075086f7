"""Turn the finished photo run into the zoo's photo model: ``scorezoo/bundled/vp-mle-photo16/`` with its card.

    python train/make_photo_zoo.py --run runs/vp-mle-photo16 [--out scorezoo/bundled/vp-mle-photo16] [--threads 2]

From the run's ``pipeline/`` (EMA weights), ``config.yaml``, ``results.json`` and ``log.jsonl`` it:

1. marks the pipeline as a model of patches (``tile_larger_images``, the data set's options) and records the canonical
   training command;
2. calibrates its fast-likelihood schedule on 64 training patches (target 0.005 bits/dim on the mean: a photo's
   bits/dim is the mean over its patches);
3. scores the held-out tiles (ODE with dopri5 at 1e-5 and the bound,
   :func:`scorezoo.training.evaluation.held_out_likelihood`);
4. scores each held-out photo whole, at its own resolution, tile by tile on the schedule, next to PNG, WebP and JPEG XL
   lossless of the same pixels, and times a 512 × 512 photo;
5. draws 64 samples for the card's grid, and writes the card (training data and licences, budget, results).

With ``--dequantizer runs/deq-vp-mle-photo16`` (a finished ``train/train_dequantizer.py`` run for this model) it also
bundles that variational dequantizer (``dequantizer/``) and its held-out section in the card; ``--only-dequantizer``
does just that to an existing bundle.

``--refresh-photos`` re-scores step 4 with the bundle at ``--out`` as it is (e.g. after ``train/calibrate_zoo.py``
gave it a new schedule), rewrites ``photos.json`` (keeping its other entries) and prints the card's table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from scorezoo import ScorePipeline
from scorezoo.compression import CODECS, codec_available, lossless_bits_per_dim
from scorezoo.data import load_image, untile
from scorezoo.datasets import PHOTOS, load_dataset, photo_path
from scorezoo.display import image_grid
from scorezoo.dequantization import load_dequantizer
from scorezoo.training.cards import dequantizer_run_section, render_card
from scorezoo.training.config import DEFAULTS
from scorezoo.training.evaluation import held_out_likelihood
from scorezoo.training.export import calibration_points

REPO = Path(__file__).resolve().parents[1]
NAME = "vp-mle-photo16"
TARGET = 0.005


def photo_rows(pipe: ScorePipeline, names: list[str]) -> list[dict]:
    """Each photo scored whole (tiled, on the schedule, one draw per patch, seed 0) beside the lossless coders."""
    rows = []
    for name in names:
        path = str(photo_path(name))
        t0 = time.perf_counter()
        res = pipe.bits_per_dim(path, tile=True, schedule="calibrated", generator=torch.Generator().manual_seed(0),
                                max_batch_size=256)
        seconds = time.perf_counter() - t0
        full = load_image(path, data_shape=pipe.data_shape, num_levels=256, resize=False).levels
        tiles = pipe.tile_picture(full)
        pixels = untile(tiles.patches, tiles.grid)
        row = {"photo": name, "size": f"{full.shape[2]}×{full.shape[1]}", "bpd": res.bpd.item(),
               "stderr": res.stderr.item(), "pixels": int(res.pixels_scored), "patches": int(res.num_patches),
               "nfe": int(res.nfe), "seconds": seconds, "border": tiles.border}
        row.update({c: lossless_bits_per_dim(pixels, c) for c in CODECS if codec_available(c)})
        rows.append(row)
    return rows


def refresh_photos(out: Path) -> None:
    """Step 4 again with the bundle at ``out``: ``photos.json``'s rows and timing rewritten, its other entries kept."""
    pipe = ScorePipeline.from_pretrained(out)
    table = json.loads((out / "photos.json").read_text())
    table["heldout"] = photo_rows(pipe, [p.name for p in PHOTOS if p.split == "heldout"])
    table["timing_512"] = photo_rows(pipe, ["astronaut"])[0]
    (out / "photos.json").write_text(json.dumps(table, indent=1) + "\n")
    print(photo_table(table["heldout"]))
    t = table["timing_512"]
    print(f"512×512 (astronaut): {t['seconds']:.1f} s, {t['patches']} tiles of {t['nfe']} NFE")


def photo_table(rows: list[dict]) -> str:
    head = "| photo | pixels scored | model bits/dim | PNG | WebP lossless | JPEG XL lossless | seconds |"
    out = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        jxl = f"{r['jxl']:.3f}" if r.get("jxl") is not None else "—"
        out.append(f"| {r['photo']} ({r['size']}) | {r['pixels']:,} | **{r['bpd']:.3f} ± {r['stderr']:.3f}** | "
                   f"{r['png']:.3f} | {r['webp']:.3f} | {jxl} | {r['seconds']:.1f} |")
    return "\n".join(out)


def attach_dequantizer(out: Path, deq_run: Path) -> None:
    """Bundle the dequantizer of the finished run ``deq_run`` with the model in ``out``: its EMA weights as
    ``out/dequantizer/`` and its held-out section in the card, before the card's limitations."""
    pipe = ScorePipeline.from_pretrained(out)
    pipe.dequantizer = load_dequantizer(deq_run / "dequantizer")
    pipe.save_pretrained(out)
    card = (out / "README.md").read_text()
    head, sep, tail = card.partition("\n## Limitations")
    section = dequantizer_run_section(deq_run, NAME, items="tiles spread evenly over the held-out photos")
    start = head.find("\n### Variational dequantization")
    if start >= 0:  # replace an earlier one
        head = head[:start]
    (out / "README.md").write_text(head.rstrip("\n") + "\n\n" + section + "\n" + sep + tail)
    print(f"bundled the dequantizer of {deq_run} with {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/vp-mle-photo16")
    ap.add_argument("--out", default=str(REPO / "scorezoo" / "bundled" / NAME))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cpu-hours", type=float, default=None,
                    help="the training process's CPU time (ps TIME), for the card's budget line")
    ap.add_argument("--dequantizer", default=None, help="a finished train_dequantizer.py run for this model to bundle")
    ap.add_argument("--only-dequantizer", action="store_true", help="only bundle --dequantizer with the model in --out")
    ap.add_argument("--refresh-photos", action="store_true",
                    help="re-score the held-out photos and the 512×512 timing with the bundle at --out; rewrite "
                         "photos.json and print the card's table")
    args = ap.parse_args(argv)
    if args.refresh_photos:
        if args.threads:
            torch.set_num_threads(args.threads)
        refresh_photos(Path(args.out))
        return
    if args.only_dequantizer:
        if not args.dequantizer:
            ap.error("--only-dequantizer needs --dequantizer RUN")
        attach_dequantizer(Path(args.out), Path(args.dequantizer))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    run, out = Path(args.run), Path(args.out)
    # the defaults first: a run older than a config key (eval_batch_size) evaluates with its default
    cfg = {**DEFAULTS, **yaml.safe_load((run / "config.yaml").read_text()),
           **{k: v for k, v in yaml.safe_load((REPO / "train" / "configs" / f"{NAME}.yaml").read_text()).items()
              if k == "card"}}
    results = json.loads((run / "results.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    pipe = ScorePipeline.from_pretrained(run / "pipeline")
    command = f"accelerate launch train/train_mle.py --config train/configs/{NAME}.yaml"
    pipe.extra_config.update(tile_larger_images=True, dataset_options=cfg["dataset_options"], training_command=command)

    t0 = time.perf_counter()
    sch = pipe.calibrate_likelihood_schedule(calibration_points(pipe), target=TARGET, criterion="mean",
                                             generator=torch.Generator().manual_seed(0))
    calibration = time.perf_counter() - t0
    print(f"schedule: {sch.num_steps} steps ({sch.nfe} NFE), measured mean error {sch.measured_mean_error:+.4f}, "
          f"rms {sch.measured_rms_error:.4f} bits/dim, {calibration:.0f} s", flush=True)

    data = load_dataset("photo_patches", options=cfg["dataset_options"])
    t0 = time.perf_counter()
    ev = held_out_likelihood(pipe, cfg, data, None, num_repeats=1)
    print(f"held-out tiles: ODE {ev['ode']:.4f} ± {ev['ode_stderr']:.4f}, bound {ev['bound']:.4f} ± "
          f"{ev['bound_stderr']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    results["eval"] = {k: v for k, v in ev.items() if not k.startswith("per_item")}

    heldout = [p.name for p in PHOTOS if p.split == "heldout"]
    rows = photo_rows(pipe, heldout)
    timing = photo_rows(pipe, ["astronaut"])[0]
    for r in rows + [timing]:
        print(json.dumps(r), flush=True)

    out.mkdir(parents=True, exist_ok=True)
    samples = pipe(64, generator=torch.Generator().manual_seed(0), output_type="np")
    image_grid((samples.images * 255).round().astype("uint8"), tile=64).save(out / "samples.png")

    rates = [r["steps_per_s"] for r in log if "steps_per_s" in r]
    cpu = f"{args.cpu_hours:.1f} h of CPU time, " if args.cpu_hours else ""
    budget = (f"{results['max_train_steps']} steps × batch {results['batch_size']} on one CPU thread "
              f"(`num_threads: {cfg['num_threads']}`) of a 2-core machine shared with other jobs: {cpu}"
              f"{results['max_train_steps'] / rates[-1] / 3600:.1f} h of wall time (mean {rates[-1]:.2f} steps/s).")
    licences = "\n".join(f"| {p.name} | {p.split} | {p.license} | `{p.package}`, `{p.file}` |" for p in PHOTOS)
    body = f"""
### Whole held-out photos, at their own resolution, next to lossless coders

Each photo is cut into 16×16 tiles at its own resolution (no resize; the strip of fewer than 16 pixels left at the
right and bottom edges is cropped and not scored: the table counts the pixels scored, and `scorezoo bpd` says per
photo what was cropped), every tile is scored by the probability-flow ODE on the model's
calibrated schedule ({sch.nfe} score evaluations per tile, Hutchinson divergence, one dequantization draw per tile,
seed 0), and the photo's bits/dim is the mean over its tiles, ± the standard error over tiles. PNG (Pillow,
`optimize=True`), WebP lossless (`method=6`) and JPEG XL lossless (`effort=9`, pillow-jxl-plugin) encode exactly the
pixels scored; their sizes include the file headers. The model's number is an upper bound on what a lossless coder
built on it would need for those pixels, patch by patch (no context across tiles).

{photo_table(rows)}

`scorezoo bpd photo.png` prints the same numbers. A 512×512 photo (astronaut, a training photo, for the timing only)
takes {timing['seconds']:.0f} s with {timing['patches']} tiles of {timing['nfe']} NFE each on this machine's 2 cores.

### Fast likelihoods

The pipeline ships a calibrated schedule: {sch.num_steps} rk4 steps in log ρ ({sch.nfe} NFE), placed on 64 training
patches so that the error of the mean bits/dim is at most {TARGET} (measured against a tight dopri5 solve with the
same probes: {sch.measured_mean_error:+.4f} on the mean, {sch.measured_rms_error:.4f} rms per patch), calibrated in
{calibration / 60:.0f} min.

### Samples

![64 samples (probability-flow ODE, seed 0)](samples.png)

### Training data

{len(data.train):,} training patches of 16×16 from the photographs that ship inside scikit-image's and
scikit-learn's wheels, with stride 8 at full resolution and at half resolution (2 × 2 box filter), and their mirror
images; the held-out photos are held out whole (no pixel of them is trained on). scikit-image's `retina.jpg` is left
out: a fundus photograph whose black surround would be a fifth of all patches.

| photo | split | licence (as stated by the package) | file |
|---|---|---|---|
{licences}
"""
    card = render_card(results, cfg, body_extra=body, budget=budget)
    pipe.save_pretrained(out)
    (out / "README.md").write_text(card)
    table = {"heldout": rows, "timing_512": timing, "calibration_seconds": calibration}
    (out / "photos.json").write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {out}")
    if args.dequantizer:
        attach_dequantizer(out, Path(args.dequantizer))


if __name__ == "__main__":
    main()
