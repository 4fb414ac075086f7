"""Model cards of the zoo: Hugging Face model cards (YAML front matter + Markdown).

The front matter holds the Hub's keys (``library_name``, ``license``, ``tags``, ``datasets``, ``pipeline_tag``,
``model-index``) and a ``scorezoo:`` mapping with exactly the keys of :data:`SCOREZOO_KEYS`, which the CLI
reads as the zoo registry (:func:`scorezoo.zoo.registry`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import require_train_extra

__all__ = ["render_card", "SCOREZOO_KEYS", "ablation_table", "dequantizer_section", "dequantizer_run_section"]

SCOREZOO_KEYS = ("name", "repo_id", "sde", "weighting", "dataset", "resolution", "parameters", "bpd_ode",
                 "bpd_ode_stderr", "bpd_bound", "bpd_bound_stderr", "nll_ode", "nll_ode_stderr", "nll_bound",
                 "nll_bound_stderr", "eval_split", "default", "default_photo")
DEFAULT_MODEL = "vp-mle-digits"

_WEIGHTING_TEXT = {
    "score": "score weighting λ(t) = σ(t)², t ~ U[ε, 1] (the usual denoising score matching baseline)",
    "likelihood": "likelihood weighting λ(t) = g(t)², t ~ U[ε, 1] (MLE Thm. 1, no importance sampling)",
    "likelihood-is": "likelihood weighting λ(t) = g(t)² with importance-sampled t ~ q(t) ∝ g(t)²/σ(t)² "
                     "(MLE Sec. 5.1), i.e. the ε-prediction loss times Z",
}
_TIME_TEXT = {"score": "uniform", "likelihood": "uniform", "likelihood-is": "importance (∝ g²/σ²)"}


def _resolution(shape: list[int]) -> str:
    return "x".join(str(v) for v in [*shape[1:], shape[0]]) if len(shape) == 3 else f"{shape[0]}-D"


def _r(v, nd=4):
    return None if v is None else round(float(v), nd)


def ablation_table(rows: list[dict]) -> str:
    """Markdown table of held-out bits/dim; ``rows`` are results dicts of :func:`scorezoo.training.loop.train`, each
    with ``eval`` and optionally ``paired`` (difference to the reference and its paired standard error) and
    ``variational`` (the ODE entry of a dequantizer run's ``results.json``: bits/dim with the model's variational
    dequantizer, and its gain over uniform dequantization, paired), which adds a column when any row has it."""
    variational = any("variational" in r for r in rows)
    out = ["| model | weighting λ(t) | time sampling | ODE bits/dim | bound bits/dim "
           "| ODE − vp-mle-digits (paired) |" + (" variational (ODE; gain, paired) |" if variational else ""),
           "|---|---|---|---|---|---|" + ("---|" if variational else "")]
    lam = {"score": "σ²", "likelihood": "g²", "likelihood-is": "g²"}
    for r in rows:
        e = r["eval"]
        p = r.get("paired")
        paired = "—" if p is None else f"{p['diff']:+.3f} ± {p['stderr']:.3f}"
        v = r.get("variational")
        var = "" if not variational else " — |" if v is None else \
            f" {v['variational']:.3f} ± {v['variational_stderr']:.3f}; −{v['gain']:.3f} ± {v['gain_stderr']:.3f} |"
        out.append(f"| `{r['name']}` | {lam[r['weighting']]} | {_TIME_TEXT[r['weighting']]} | "
                   f"{e['ode']:.3f} ± {e['ode_stderr']:.3f} | {e['bound']:.3f} ± {e['bound_stderr']:.3f} "
                   f"| {paired} |{var}")
    return "\n".join(out)


def dequantizer_run_section(run: Path, name: str, items: str = "images") -> str:
    """:func:`dequantizer_section` of the finished ``train/train_dequantizer.py`` run folder ``run`` (its
    ``results.json``, ``config.yaml`` and ``log.jsonl``, whose median steps/s gives the budget line) for the zoo model
    ``name``; ``items`` names what was scored (``"images"``, ``"tiles spread evenly over the held-out photos"``)."""
    import yaml

    run = Path(run)
    res = json.loads((run / "results.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rates = [json.loads(line).get("steps_per_s") for line in (run / "log.jsonl").read_text().splitlines()]
    rates = sorted(r for r in rates if r)
    rate = rates[len(rates) // 2]
    budget = (f"{cfg['max_train_steps']} steps × batch {cfg['batch_size']} on 1 CPU thread of a shared 2-core "
              f"machine, median {rate:.2f} steps/s while other jobs ran "
              f"(≈{cfg['max_train_steps'] / rate / 60:.0f} min of wall time).")
    return dequantizer_section(res, {**cfg, "pretrained": name}, budget, items=items)


def dequantizer_section(results: dict, cfg: dict, budget: str, items: str = "images") -> str:
    """The card's section on its variational dequantizer, from the ``results.json`` and config of
    ``train/train_dequantizer.py`` (held-out paired comparisons per estimator) and a budget line; ``cfg["pretrained"]``
    names the zoo model (its config file ``train/configs/deq-<name>.yaml``)."""
    est_text = {"ode": "probability-flow ODE, " + ("the model's calibrated schedule (rk4, Hutchinson)"
                                                   if cfg.get("ode_schedule") else
                                                   f"dopri5, rtol = atol = {cfg.get('ode_rtol')}, Hutchinson"),
                "bound": f"likelihood bound (MLE Thm. 3, {cfg.get('bound_num_time_points')} time points per draw)"}
    ev = results["eval"]
    any_ev = next(iter(ev.values()))
    lines = ["### Variational dequantization", "",
             f"`dequantizer/` holds a variational dequantizer q(u | k) for this model: a conditional flow "
             f"(`VariationalDequantizer`, {results['parameters']:,} parameters; `docs/dequantization.md`) trained "
             "against the frozen model on its likelihood bound, as score_flow trains its dequantizer:", "",
             "```bash", f"python train/train_dequantizer.py --config train/configs/deq-{cfg['pretrained']}.yaml",
             "```", "", f"Budget: {budget}", "",
             f"Held-out bits/dim ({any_ev['num_images']} {items}, {any_ev['num_repeats']} "
             f"draw{'s' if any_ev['num_repeats'] > 1 else ''} each), uniform vs "
             "variational dequantization, paired (the same seed: the same uniform numbers, which q transforms, and "
             "the same probes and times), mean ± standard error over images:", "",
             "| estimator | uniform | variational | gain (paired) |", "|---|---|---|---|"]
    for est in ("ode", "bound"):
        if est in ev:
            r = ev[est]
            lines.append(f"| {est_text[est]} | {r['uniform']:.3f} ± {r['uniform_stderr']:.3f} | "
                         f"{r['variational']:.3f} ± {r['variational_stderr']:.3f} | "
                         f"{r['gain']:.3f} ± {r['gain_stderr']:.3f} |")
    lines += ["", "Use it with `pipe.bits_per_dim(levels, dequantization=\"variational\")` or `scorezoo bpd "
              "--dequantization variational`. The authors report a gain of 0.10–0.14 bits/dim on CIFAR-10 (MLE paper, "
              "Sec. 6) and Kim et al. (Soft Truncation) reproduced 0.02–0.05; plausibly, a model trained on "
              "uniformly dequantized data learns to be nearly flat on each cell, which leaves little for q to gain."]
    return "\n".join(lines)


def render_card(results: dict, cfg: dict, *, table: str | None = None, body_extra: str = "",
                budget: str | None = None) -> str:
    """The model card of one trained model.

    Args:
        results: the ``results.json`` of a run (``name``, ``sde``, ``weighting``, ``dataset``, ``parameters``,
            ``data_shape``, ``num_levels``, ``eval`` ...).
        cfg: the run's config.
        table: Markdown of the ablation table, when the model is part of one.
        body_extra: more Markdown (figures, checks) appended to the results section.
        budget: one line on the compute spent.

    Returns:
        The card text (YAML front matter, then Markdown), ending with a newline.
    """
    name = results.get("name") or cfg.get("name") or "model"
    shape = list(results.get("data_shape") or [])
    is_image = len(shape) == 3
    discrete = results.get("num_levels") is not None
    ev = results.get("eval") or {}
    bpd = discrete and bool(ev)
    dataset = results.get("dataset", cfg.get("dataset"))
    command = f"accelerate launch train/train_mle.py --config train/configs/{name}.yaml"
    front: dict = {
        "library_name": "scorezoo",
        "license": (cfg.get("card") or {}).get("license", "apache-2.0"),
        "tags": ["scorezoo", "score-based-generative-modeling", "diffusion", "maximum-likelihood",
                 f"{results.get('sde', 'vp')}-sde", f"weighting-{results.get('weighting')}"]
                + (["unconditional-image-generation"] if is_image else ["density-estimation", "2d-toy"]),
        "datasets": [dataset],
    }
    if is_image:
        front["pipeline_tag"] = "unconditional-image-generation"
    metrics = []
    if ev:
        unit = "bits_per_dim" if bpd else "nll_nats"
        label = "bits/dim" if bpd else "NLL (nats/point)"
        metrics = [{"type": unit, "name": f"held-out {label}, probability-flow ODE", "value": _r(ev["ode"])}]
        if ev.get("bound") is not None:
            metrics += [{"type": unit, "name": f"held-out {label}, likelihood bound (MLE Thm. 3)",
                         "value": _r(ev["bound"])}]
    front["model-index"] = [{"name": name, "results": [{
        "task": {"type": "unconditional-image-generation" if is_image else "density-estimation",
                 "name": "Density estimation"},
        "dataset": {"type": dataset, "name": dataset, "split": "held-out"},
        "metrics": metrics}]}]
    front["scorezoo"] = {
        "name": name, "repo_id": f"scorezoo/{name}", "sde": results.get("sde"), "weighting": results.get("weighting"),
        "dataset": dataset, "resolution": _resolution(shape) if shape else None,
        "parameters": int(results.get("parameters", 0)),
        "bpd_ode": _r(ev.get("ode")) if bpd else None, "bpd_ode_stderr": _r(ev.get("ode_stderr")) if bpd else None,
        "bpd_bound": _r(ev.get("bound")) if bpd else None,
        "bpd_bound_stderr": _r(ev.get("bound_stderr")) if bpd else None,
        "nll_ode": _r(ev.get("ode")) if ev and not bpd else None,
        "nll_ode_stderr": _r(ev.get("ode_stderr")) if ev and not bpd else None,
        "nll_bound": _r(ev.get("bound")) if ev and not bpd else None,
        "nll_bound_stderr": _r(ev.get("bound_stderr")) if ev and not bpd else None,
        "eval_split": results.get("eval_split", ""), "default": name == DEFAULT_MODEL,
        "default_photo": bool((cfg.get("card") or {}).get("default_photo", False)),
    }
    fm = require_train_extra("yaml").safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)

    lines = [f"# scorezoo/{name}", ""]
    what = (f"A score-based generative model of **{dataset}** ({_resolution(shape)}"
            + (f", {results['num_levels']} levels" if discrete else ", continuous") + f"), {results.get('sde')} SDE, "
            f"trained with {_WEIGHTING_TEXT.get(results.get('weighting'), results.get('weighting'))} "
            "(Song, Durkan, Murray & Ermon, *Maximum Likelihood Training of Score-Based Generative Models*, "
            f"NeurIPS 2021). {int(results.get('parameters', 0)):,} parameters, "
            f"{'`UNet2DModel` (diffusers)' if is_image else '`ScoreMLP`'}, ε-prediction, EMA weights.")
    lines += [what, "", "## Use", "", "```python", "import torch", "from scorezoo import ScorePipeline", "",
              f'pipe = ScorePipeline.from_pretrained("scorezoo/{name}")   # works offline: bundled with scorezoo']
    if is_image:
        lines += ["images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0)).images   # PIL images"]
        if dataset == "digits":
            lines += ["from sklearn.datasets import load_digits",
                      "levels = load_digits().images[::6].astype(int)   # the held-out split, levels 0..16",
                      "print(pipe.bits_per_dim(levels[:8]).bpd)          # bits/dim per image"]
        elif dataset == "photo_patches":
            lines += ["from scorezoo.datasets import photo_path",
                      "res = pipe.bits_per_dim(str(photo_path(\"chelsea\")), schedule=\"calibrated\")  # tile by tile",
                      "print(res.bpd, res.stderr, res.pixels_scored)   # bits/dim of the whole photo"]
        elif dataset == "photo_folder":
            lines += ["from scorezoo.datasets import photo_path",
                      "res = pipe.bits_per_dim(str(photo_path(\"chelsea\")), schedule=\"calibrated\")  # whole, "
                      "one solve",
                      "print(res.bpd, res.pixels_scored)   # bits/dim of the whole photo"]
        elif dataset == "cifar10":
            lines += ["from scorezoo.datasets import load_cifar10_split",
                      "test, labels, source = load_cifar10_split(\"../shared/data/cifar10\", \"test\")  # or None: "
                      "$SCOREZOO_CIFAR10",
                      "print(pipe.bits_per_dim(test[:8], schedule=\"calibrated\").bpd)   # bits/dim per image"]
    else:
        lines += ["x = pipe(batch_size=1000, output_type='pt', generator=torch.Generator().manual_seed(0)).images",
                  "logp = pipe.log_likelihood(torch.zeros(1, 2), divergence='exact').logp   # nats"]
    lines += ["```", "", "## Training", "", "```bash", command, "```", "",
              f"Same as `python train/train_mle.py --config train/configs/{name}.yaml` (one process). "
              f"{results.get('max_train_steps')} steps of batch {results.get('batch_size')}, Adam, lr "
              f"{cfg.get('learning_rate')} with {cfg.get('warmup_steps')} warm-up steps, gradient clipping at "
              f"{cfg.get('max_grad_norm')}, EMA {cfg.get('ema_decay')}, time truncation ε = {cfg.get('eps')}, "
              f"seed {cfg.get('seed')}" + (", uniform dequantization of the training data at every step." if discrete
                                           else ".")]
    if budget:
        lines += ["", f"Budget: {budget}"]
    lines += ["", "## Results", ""]
    if ev:
        solver = ev.get("solver") or f"dopri5, rtol = atol = {cfg.get('ode_rtol')}"
        bound_of = f", on {ev['num_eval_bound']} of the images" if ev.get("num_eval_bound") else ""
        if bpd:
            lines += [f"Held-out split: {results.get('eval_split')}. Bits/dim of the integer data under uniform "
                      f"dequantization ({ev['num_repeats']} dequantization "
                      f"draw{'s' if ev['num_repeats'] > 1 else ''} per image), mean ± standard error "
                      f"over the {ev['num_eval']} images:", "",
                      f"* probability-flow ODE (exact likelihood, Hutchinson divergence, {solver}): "
                      f"**{ev['ode']:.3f} ± {ev['ode_stderr']:.3f}** bits/dim"]
            if ev.get("bound") is not None:
                lines += [f"* likelihood bound (MLE Thm. 3, {cfg.get('bound_num_time_points')} importance-sampled "
                          f"time points per image{bound_of}): **{ev['bound']:.3f} ± {ev['bound_stderr']:.3f}** "
                          "bits/dim"]
        else:
            lines += [f"Held-out split: {results.get('eval_split')}. Negative log-likelihood in nats per point, "
                      f"mean ± standard error over the {ev['num_eval']} points:", "",
                      f"* probability-flow ODE (exact divergence): **{ev['ode']:.3f} ± {ev['ode_stderr']:.3f}**",
                      f"* likelihood bound (MLE Thm. 3): **{ev['bound']:.3f} ± {ev['bound_stderr']:.3f}**"]
    if table:
        lines += ["", "### The paper's ablation on digits (same network, budget, seed and evaluation)", "", table, "",
                  "Errors are standard errors over the 300 held-out images. All models are scored with the same "
                  "dequantization noise and probes, so the last column (per-image differences to vp-mle-digits) "
                  "has a paired standard error. For scale on the same split: independent per-pixel categorical 2.42, "
                  "10-component Gaussian mixture 2.61 bits/dim."]
    if body_extra:
        lines += ["", body_extra.strip()]
    lines += ["", "## Limitations", "",
              "A small model on a small data set, trained on a CPU: it reproduces the paper's recipe, not its "
              "CIFAR-10 numbers. Bits/dim of other data (other sizes, levels or styles) are not comparable."]
    if (cfg.get("card") or {}).get("limitations"):
        lines[-1] += " " + " ".join(str(cfg["card"]["limitations"]).split())
    return f"---\n{fm}---\n\n" + "\n".join(lines).rstrip() + "\n"
