"""The bundled first checkpoint of vp-mle-cifar10-small (session of 2026-12-05), without a calibrated schedule or a
full test-set run: fp16 weights of a finished run folder, test8.json, 64 samples and the card from the run's own
held-out check at its last step and the codecs of `make_cifar_zoo.py codecs`. Run from the repository root:

    SCOREZOO_CIFAR10=../shared/data/cifar10 python train/bundle_cifar_checkpoint.py

The card was then edited by hand: its budget line (1.1 h in all, a crash at step 1,000 resumed from step 750) and
a Commands section. Later sessions use `make_cifar_zoo.py bundle` and `card` (calibrated schedule, test sample).
"""
import json
import time
import sys
from pathlib import Path
import torch
import yaml
sys.path.insert(0, "train")
from make_cifar_zoo import save_fp16, NAME, OUT, PUBLISHED, _mean_se
from scorezoo import ScorePipeline
from scorezoo.compression import CODECS
from scorezoo.datasets import load_cifar10_split
from scorezoo.display import image_grid
from scorezoo.training.cards import render_card
from scorezoo.training.config import DEFAULTS
torch.set_num_threads(2)
run = Path("runs/vp-mle-cifar10-small")
cmd = ("OMP_NUM_THREADS=1 accelerate launch train/train_mle.py --config train/configs/vp-mle-cifar10-small.yaml "
       "--max_train_minutes 140")
pipe = ScorePipeline.from_pretrained(run / "pipeline")
pipe.network.half().float()
pipe.extra_config.update(name=NAME, dataset="cifar10", training_command=cmd)
save_fp16(pipe, OUT)
pipe = ScorePipeline.from_pretrained(OUT)
test, _, _ = load_cifar10_split(None, "test")
t0 = time.perf_counter()
first = pipe.bits_per_dim(test[:8], rtol=1e-4, atol=1e-4, generator=torch.Generator().manual_seed(0))
print("test8", first.bpd.tolist(), time.perf_counter() - t0, flush=True)
(OUT / "test8.json").write_text(json.dumps({
    "how": "pipe.bits_per_dim(test[:8], rtol=1e-4, atol=1e-4, generator=torch.Generator().manual_seed(0)), "
           "test = scorezoo.datasets.load_cifar10_split(ROOT, 'test')[0] (dopri5, Hutchinson, one draw)",
    "bpd": [round(float(v), 6) for v in first.bpd]}, indent=1) + "\n")
t0 = time.perf_counter()
samples = pipe(64, generator=torch.Generator().manual_seed(0), output_type="np")
image_grid((samples.images * 255).round().astype("uint8"), tile=64).save(OUT / "samples.png")
print("samples", time.perf_counter() - t0, flush=True)
cfg = {**DEFAULTS, **yaml.safe_load((run / "config.yaml").read_text())}
results = json.loads((run / "results.json").read_text())
log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
ev = [r for r in log if "eval" in r][-1]["eval"]
results["eval"] = {**ev, "num_repeats": 1, "solver": f"dopri5, rtol = atol = {cfg['ode_rtol']}"}
results["eval_split"] = "CIFAR-10 test, the training run's fixed 64 held-out test images"
rows = [json.loads(line) for line in Path("runs/cifar10-test-codecs.jsonl").read_text().splitlines()]
codec = {c: _mean_se([r[c] for r in rows if r.get(c) is not None]) for c in CODECS}
names = {"png": "PNG (Pillow, optimize)", "webp": "WebP lossless (method 6)", "jxl": "JPEG XL lossless (effort 9)"}
table = ["| model or codec | test bits/dim | images | compute |", "|---|---|---|---|",
         f"| **{NAME}**, step 1,000 (probability-flow ODE) | **{ev['ode']:.3f} ± {ev['ode_stderr']:.3f}** | 64 | "
         "0.75 CPU h (one thread) |",
         f"| {NAME}, step 1,000, likelihood bound | {ev['bound']:.3f} ± {ev['bound_stderr']:.3f} | 64 | |"]
table += [f"| {names[c]}, measured here | {m:.3f} ± {se:.3f} | {k:,} | one CPU core |"
          for c, (m, se, k) in codec.items()]
table += [f"| {who} | {v} | 10,000 | {what} |" for who, v, what in PUBLISHED]
curve = "\n".join(["| step | images seen | held-out ODE bits/dim (64 test images) | bound |", "|---|---|---|---|"] + [
    f"| {r['step']:,} | {r['step'] * 64:,} | {r['eval']['ode']:.3f} ± {r['eval']['ode_stderr']:.3f} | "
    f"{r['eval']['bound']:.3f} ± {r['eval']['bound_stderr']:.3f} |" for r in log if "eval" in r])
body = f"""
### Status: a first checkpoint, not yet the zoo's CIFAR-10 result

This is the model after **1,000 steps of batch 64** (64,000 images, 1.3 epochs; about 0.75 h of one CPU thread).
It trains on across sessions from these weights (`init_from` this folder, or `--resume_from_checkpoint` where the
run folder was kept). At this step it is **above JPEG XL lossless** on CIFAR-10 test images ({ev['ode']:.3f} ±
{ev['ode_stderr']:.3f} against {codec['jxl'][0]:.3f}), below PNG and WebP lossless, and far from the published
models. The test-set evaluation of all 10,000 images (`scorezoo eval --model {NAME} --data cifar10 --split test`)
and a calibrated likelihood schedule are still to come; the number below is the training run's own held-out
check on 64 test images.

{chr(10).join(table)}

The codecs encode each 32×32 test image alone (file headers included), as `scorezoo bpd` does; the published codec
figures were measured differently (e.g. on one file of many images) and are listed as reported.

### Training curve

{curve}

A pilot on a GPU in an earlier session (1,200 steps of batch 256, weights not kept): a 4.2 M-parameter UNet reached
3.94 and an 8.9 M-parameter one 3.62 bits/dim on 256 test images; on this CPU a step of those networks costs 2.3× and
3.9× the 1.6 M one (batch 64, one thread, measured side by side), which is why this model is small.

### Samples

![64 samples (probability-flow ODE, seed 0)](samples.png)

### Data

CIFAR-10 (Krizhevsky 2009), the official 50,000 training and 10,000 test images, read from torchvision's
`cifar-10-batches-py` or an image-folder tree (`scorezoo.datasets.load_cifar10`); horizontal flips. Not shipped.
`test8.json` holds this model's bits/dim of the first 8 test images (fixed rk4 steps, seed 0); a test checks them.
"""
cfg["card"] = {"license": "apache-2.0",
               "limitations": "A first checkpoint of a CPU training: above JPEG XL lossless on CIFAR-10."}
text = render_card(results, cfg, body_extra=body, budget="1,000 steps × batch 64 on one CPU thread of a 2-core "
                   "machine shared with other jobs: about 0.65 h of steps (0.43 steps/s).")
(OUT / "README.md").write_text(text)
print("done")
