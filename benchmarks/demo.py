"""The demo under load: concurrent uploads against the same uploads one after another, and one 512×512 photo.

    OMP_NUM_THREADS=1 python benchmarks/demo.py --requests 8 --out benchmarks/results/demo.md

1. Concurrency. The app (:func:`scorezoo.demo.build_demo` with its defaults: one request per core, torch on one thread
   per request) is launched on 127.0.0.1 with the bundled digits models; ``--requests`` held-out digits are sent
   through ``gradio_client`` first one after another, then all at once, side by side in one run. Reported: the wall
   time of each and their ratio (1 = no overlap; 1 / cores at best).
2. A photo. ``astronaut`` (512×512, a training photo of the photo model) is uploaded with the ``auto`` model choice:
   the zoo's photo model when it is installed, else a stand-in: an untrained tiny UNet on 16×16 RGB patches with
   ``vp-mle-digits``' calibrated schedule (so the cost per evaluation, not the numbers, is what it measures).
   Reported: bits/dim, NFE, patches, seconds in the library call and for the whole request (with the bits map).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradio_client import Client, handle_file  # noqa: E402

from scorezoo import ScorePipeline, zoo  # noqa: E402
from scorezoo.datasets import load_digits, photo_path  # noqa: E402
from scorezoo.demo import DemoSettings, build_demo, folder_model, zoo_models  # noqa: E402


def stand_in_photo_model(folder: Path) -> None:
    """An untrained photo-patch model (the tests' tiny UNet on 16×16 RGB patches) with the calibrated schedule of
    ``vp-mle-digits``."""
    from tests.helpers import tiny_unet_pipeline

    pipe = tiny_unet_pipeline(channels=3, size=16, num_levels=256,
                              extra_config={"tile_larger_images": True, "dataset": "photo_patches"})
    pipe.likelihood_schedule = ScorePipeline.from_pretrained("vp-mle-digits").likelihood_schedule
    pipe.save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=8, help="uploads sent at once (default 8)")
    ap.add_argument("--bits-map", action="store_true",
                    help="with the bits map (exact divergence on the digits models; default: off, Hutchinson)")
    ap.add_argument("--out", type=Path, help="also write the report here (Markdown)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scorezoo-demo-bench-"))
    digits = load_digits().eval
    files = []
    for i in range(args.requests):
        path = work / f"digit{i}.png"
        Image.fromarray((digits[i, 0].numpy() * 255 // 16).astype(np.uint8)).save(path)
        files.append(path)
    models, _ = zoo_models()
    photo_default = zoo.default_photo_model([m.info for m in models])
    if photo_default is None:
        stand_in_photo_model(work / "photo-stand-in")
        models.append(folder_model(work / "photo-stand-in"))
        photo_default = models[-1].name
    settings = DemoSettings()
    demo = build_demo(models, settings=settings, photo_default=photo_default)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
    client = Client(url, verbose=False)

    def upload(path: Path, bits_map: bool = args.bits_map):
        # the page's defaults: the model picked per picture, automatic draws (4 per digit, 1 per photo patch)
        return client.predict([handle_file(str(path))], "auto", 0, 0, False, bits_map, api_name="/bits_per_dim")

    try:
        upload(files[0])  # load the model and warm up
        start = time.perf_counter()
        calls = [upload(f)[-1][0]["seconds"] for f in files]
        sequential, sequential_calls = time.perf_counter() - start, sum(calls)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            calls = [out[-1][0]["seconds"] for out in pool.map(upload, files)]
        concurrent, concurrent_calls = time.perf_counter() - start, sum(calls)
        print(f"{args.requests} uploads: {sequential:.1f} s one after another, {concurrent:.1f} s at once, ratio "
              f"{concurrent / sequential:.2f}", flush=True)

        photo = work / "astronaut.png"
        Image.open(photo_path("astronaut")).convert("RGB").save(photo)
        start = time.perf_counter()
        raw = upload(photo, bits_map=True)[-1][0]  # Hutchinson's per-pixel terms: the map costs nothing extra
        request = time.perf_counter() - start
    finally:
        demo.close()
    stand_in = " (untrained stand-in, vp-mle-digits' schedule)" if "stand-in" in raw["model"] else ""
    lines = [
        "# The demo under load", "",
        f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python benchmarks/demo.py "
        f"--requests {args.requests}{' --bits-map' if args.bits_map else ''}` on {platform.processor() or 'CPU'}, "
        f"{os.cpu_count()} cores (shared with other jobs), concurrency limit {settings.concurrency_limit}, torch "
        f"{settings.torch_threads} thread per request.", "",
        f"## {args.requests} digit uploads (vp-mle-digits, calibrated schedule, 4 draws each, bits map "
        f"{'on' if args.bits_map else 'off'})", "",
        "| one after another | all at once | ratio | library calls, summed: one after another | all at once |",
        "|---|---|---|---|---|",
        f"| {sequential:.1f} s | {concurrent:.1f} s | {concurrent / sequential:.2f} | {sequential_calls:.1f} s | "
        f"{concurrent_calls:.1f} s |", "",
        "The wall times include the client's round trips; the summed library calls show what each request computed "
        "(concurrent calls share the cores, so each takes longer).", "",
        "## One 512×512 photo (astronaut; one draw per patch, bits map on)", "",
        "| model | bits/dim | ± s.e. | PNG | WebP | patches | NFE | library call | request |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {Path(raw['model']).name}{stand_in} | {raw['bpd']:.3f} | {raw['stderr']:.3f} | {raw['png_bpd']:.3f} | "
        f"{raw['webp_bpd']:.3f} | {raw['num_patches']} | {raw['nfe']} | {raw['seconds']:.1f} s | {request:.1f} s |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
