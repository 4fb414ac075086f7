"""The model card (README.md with YAML front matter) of a converted pipeline folder."""

from __future__ import annotations

import json

from ..pipeline import ScorePipeline
from ..zoo import published_models

__all__ = ["render_card", "DATASETS"]

#: what each dataset label means; ImageNet 32×32 exists in two versions, the models name theirs
DATASETS = {
    "cifar10": "CIFAR-10 (Krizhevsky 2009), 32×32 RGB: trained on the 50,000 training images; bits/dim on the "
               "10,000 test images.",
    "imagenet32-oord": "ImageNet 32×32 as downsampled by van den Oord et al. (2016, \"Pixel Recurrent Neural "
                       "Networks\"; tfds `downsampled_imagenet/32x32`, the version score_flow's datasets.py loads), "
                       "not the Chrabaszcz et al. (2017) \"Imagenet32\" version, whose images differ (box vs. other "
                       "resizing) and whose bits/dim are not comparable.",
}


def _reported(source: str, config: str) -> tuple[float | None, str]:
    rows, where = published_models()
    for row in rows:
        if row["source"] == source and row["config"] == config:
            return row.get("bpd_reported"), f"{row['url']}, {where.get(source, '')}"
    return None, where.get(source, "")


def render_card(pipe: ScorePipeline, name: str, command: str | None) -> str:
    """The card of a converted pipeline: source checkpoint, conversion command, config, the authors' reported
    bits/dim (marked as not measured here) and the dataset version."""
    prov = pipe.extra_config.get("converted_from", {})
    cfg = pipe.extra_config.get("official_config", {})
    source, config = prov.get("format", "?"), prov.get("config", "?")
    bpd, where = _reported("score_sde" if source == "score_sde_pytorch" else source, config)
    train = cfg.get("training", {})
    weighting = ("likelihood-is" if train.get("importance_weighting") else "likelihood"
                 if train.get("likelihood_weighting") else "score")
    dataset = str(pipe.extra_config.get("dataset", ""))
    c, h, w = pipe.data_shape
    params = sum(p.numel() for p in pipe.network.parameters())
    meta = {"name": name, "sde": pipe.sde.name, "weighting": weighting, "dataset": dataset,
            "resolution": f"{h}x{w}x{c}", "parameters": params, "bpd_reported": bpd,
            "converted_from": f"{source} {prov.get('checkpoint', '?')} ({config}, {prov.get('weights')} weights)"}
    front = "\n".join(f"  {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items())
    reported = (f"**{bpd} bits/dim** on the test set, uniform dequantization — *reported by the authors, not "
                f"measured here* ({where})." if bpd is not None else
                "none attached: the authors report no figure for this checkpoint under uniform dequantization "
                "(*nothing here is measured by scorezoo*).")
    net = ", ".join(f"{k}={v}" for k, v in pipe.network.config.items() if not k.startswith("_"))
    return f"""---
library_name: scorezoo
tags: [score-based-generative-model, likelihood, converted]
scorezoo:
{front}
---

# {name}

The authors' {source} checkpoint, converted to a scorezoo pipeline (`ScorePipeline.from_pretrained`). The weights
are the authors'; only their layout changed. Their score equals the official `get_score_fn(..., continuous=True)`.

- **Source checkpoint**: `{prov.get('checkpoint', '?')}` ({source}, step {prov.get('step')}), {prov.get('weights')}
  weights{' (the EMA, as the official evaluation uses)' if prov.get('weights') == 'ema' else ''}. Published at:
  {where}.
- **Conversion command**: `{command or 'scorezoo.convert (Python API)'}`
- **Config**: `{config}` (the full official config is kept in `pipeline_config.json` under `official_config`).
- **SDE**: {pipe.sde!r}; the network sees {'sigma_t' if pipe.time_label == 'sigma' else f'{pipe.time_scale:g} t'};
  parameterization `{pipe.parameterization}`.
- **Network**: NCSNpp, {params:,} parameters ({net}).
- **Likelihoods**: from t = eps = {pipe.eps:g}, data range {list(pipe.data_range)}, {pipe.num_levels} levels.
- **Reported bits/dim**: {reported}
- **Dataset**: {DATASETS.get(dataset, dataset or 'not stated in the config')}
"""
