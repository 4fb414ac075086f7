"""Turn finished runs into the zoo: pipeline folders with their model cards in ``scorezoo/bundled/``.

    python train/make_zoo.py --runs runs

For each model of :data:`ZOO` it reads ``runs/<name>/{results.json, config.yaml, log.jsonl, pipeline/}``, renders
the card (with the digits ablation table, the loss-variance numbers and the 2-D density check when present),
re-saves the pipeline to ``scorezoo/bundled/<name>/`` with the canonical training command and a calibrated
likelihood schedule (:func:`scorezoo.training.export.calibrate`) in its config, and writes the card there as
``README.md``: the one copy, which the zoo's registry reads. A variational dequantizer trained by
``train/train_dequantizer.py`` into ``runs/deq-<name>/`` is bundled with its model (``dequantizer/``) and its held-out
ODE result fills the table's "variational" column. It also writes ``runs/zoo_table.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import yaml

from scorezoo import ScorePipeline
from scorezoo.dequantization import load_dequantizer
from scorezoo.training.cards import ablation_table, dequantizer_run_section, render_card
from scorezoo.training.export import calibrate

REPO = Path(__file__).resolve().parents[1]
ABLATION = ["vp-baseline-digits", "vp-lw-digits", "vp-mle-digits"]
ZOO = [*ABLATION, "vp-mle-checkerboard"]
REFERENCE = "vp-mle-digits"


def _paired(a: list[float], b: list[float]) -> dict:
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((v - m) ** 2 for v in d) / (len(d) - 1))
    return {"diff": m, "stderr": sd / math.sqrt(len(d))}


def _budget(run: Path, results: dict) -> str:
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [r["steps_per_s"] for r in logs if "steps_per_s" in r]
    rate = rates[len(rates) // 2] if rates else float("nan")
    line = (f"{results['max_train_steps']} steps × batch {results['batch_size']} on 1 CPU thread of a shared "
            f"2-core machine, median {rate:.2f} steps/s while other jobs ran "
            f"(≈{results['max_train_steps'] / rate / 60:.0f} min of wall time")
    if results["dataset"] == "digits":
        line += ("; a bare forward, backward and Adam step of this UNet at batch 128 runs at ~5.7 steps/s on one "
                 "idle thread of this machine")
    return line + ")."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs")
    args = ap.parse_args()
    runs = Path(args.runs)
    results = {n: json.loads((runs / n / "results.json").read_text())
               for n in ZOO if (runs / n / "results.json").is_file()}
    ref = results.get(REFERENCE)
    rows = []
    for n in ABLATION:
        if n in results:
            r = dict(results[n])
            if ref is not None and n != REFERENCE:
                r["paired"] = _paired(r["eval"]["per_item_ode"], ref["eval"]["per_item_ode"])
            deq = runs / f"deq-{n}" / "results.json"
            if deq.is_file() and "ode" in json.loads(deq.read_text())["eval"]:
                r["variational"] = json.loads(deq.read_text())["eval"]["ode"]
            rows.append(r)
    table = ablation_table(rows) if rows else None

    extra: dict[str, str] = {}
    lv_path = runs / "loss_variance.json"
    if lv_path.is_file():
        lv = json.loads(lv_path.read_text())
        lines = ["### Variance of the likelihood-weighted loss estimator", "",
                 f"One-sample estimates of J(θ; g²) in nats/image on dequantized training digits, "
                 f"{lv['init']['likelihood']['num_samples']} draws each, ε = {lv['eps']:g} "
                 "(`train/loss_variance.py`):", "",
                 "| network | t ~ U[ε, 1]: mean ± se | variance | t ~ q(t): mean ± se | variance | ratio |",
                 "|---|---|---|---|---|---|"]
        for when in ("init", "trained"):
            u, i = lv[when]["likelihood"], lv[when]["likelihood-is"]
            lines.append(f"| {when} | {u['mean']:.1f} ± {u['stderr']:.1f} | {u['variance']:.3g} | "
                         f"{i['mean']:.1f} ± {i['stderr']:.1f} | {i['variance']:.3g} | "
                         f"{lv[when]['variance_ratio_uniform_over_is']:.0f}× |")
        lines += ["", "Both columns estimate the same number; with uniform t the rare draws near ε, weighted "
                  "g²/σ² ~ 1/t, carry much of the mean, so at this sample size its sample mean and sample variance "
                  "both tend to come out low (a heavy tail), so the ratio more likely understates than overstates the "
                  "variance reduction."]
        extra["vp-mle-digits"] = extra["vp-lw-digits"] = "\n".join(lines)
    for n in ABLATION:
        if (runs / f"deq-{n}" / "results.json").is_file():
            extra[n] = "\n\n".join(filter(None, [extra.get(n, ""), dequantizer_run_section(runs / f"deq-{n}", n)]))
    figures: dict[str, Path] = {}
    dens = runs / "vp-mle-checkerboard" / "density.json"
    if dens.is_file():
        d = json.loads(dens.read_text())
        figures["vp-mle-checkerboard"] = dens.with_suffix(".png")
        extra["vp-mle-checkerboard"] = "\n".join([
            "### Density on a grid", "",
            "![data and model density](vp-mle-checkerboard.png)", "",
            f"exp(log p_ε(x)) by the probability-flow ODE ({d['solver']}), {d['grid']}: "
            f"∫p = **{d['integral']:.4f}** (|∫p − 1| = {d['abs_error']:.1e}); `python train/density_2d.py "
            "runs/vp-mle-checkerboard/pipeline --out runs/vp-mle-checkerboard/density --n 160 --tol 1e-4`. "
            "The held-out NLL above cannot go below the data's entropy, log 8 = 2.079 nats/point."])

    for n, res in results.items():
        cfg = yaml.safe_load((runs / n / "config.yaml").read_text())
        card = render_card(res, cfg, table=table if n in ABLATION else None, body_extra=extra.get(n, ""),
                           budget=_budget(runs / n, res))
        pipe = ScorePipeline.from_pretrained(runs / n / "pipeline")
        if (runs / f"deq-{n}" / "dequantizer").is_dir():
            pipe.dequantizer = load_dequantizer(runs / f"deq-{n}" / "dequantizer")
        pipe.extra_config["training_command"] = f"accelerate launch train/train_mle.py --config train/configs/{n}.yaml"
        # 2-D toys have sharp edges: 0.002 bits/dim would take more than 64 steps there
        target = 0.002 if pipe.num_levels is not None else 0.005
        print(f"{n}: likelihood schedule {calibrate(pipe, target=target)}")
        dest = REPO / "scorezoo" / "bundled" / n
        if dest.exists():
            shutil.rmtree(dest)
        pipe.save_pretrained(dest)
        (dest / "README.md").write_text(card)
        if n in figures:
            shutil.copyfile(figures[n], dest / f"{n}.png")
        for f in dest.rglob("*"):
            if f.is_file():
                f.chmod(0o644)  # safetensors writes 0600; installed package data must be readable by all
        print(f"{n}: card and bundled pipeline written")
    if table:
        (runs / "zoo_table.md").write_text(table + "\n")
        print(table)


if __name__ == "__main__":
    main()
