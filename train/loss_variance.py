"""Variance of the likelihood-weighted loss estimator: uniform t versus importance-sampled t (MLE Sec. 5.1).

    python train/loss_variance.py --config train/configs/vp-mle-digits.yaml \
        --pipeline runs/vp-mle-digits/pipeline --out runs/loss_variance.json

For the network at initialisation (built from the config's seed, as the training run does) and for the trained
EMA network, draws ``num_samples`` one-sample estimates of ``J(theta; g^2)`` (MLE eq. 7, nats per image) on
dequantized training images, once with ``t ~ U[eps, 1]`` (weighting ``likelihood``) and once with ``t ~ q`` (weighting
``likelihood-is``), and reports the mean, variance and standard error of each. Both estimate the same number;
importance sampling exists to shrink the variance.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from scorezoo import ScorePipeline, get_sde
from scorezoo.dequantization import uniform_dequantize
from scorezoo.losses import dsm_loss
from scorezoo.models import ScoreModel
from scorezoo.training import build_and_check_network, load_config, load_data


@torch.no_grad()
def estimator_stats(model: ScoreModel, data, weighting: str, eps: float, num_samples: int, seed: int,
                    max_batch_size: int = 256) -> dict:
    """Mean, variance and standard error of ``num_samples`` one-sample loss estimates (nats/image), drawn
    ``max_batch_size`` at a time."""
    g = torch.Generator().manual_seed(seed)
    vals = []
    for start in range(0, num_samples, max_batch_size):
        b = min(max_batch_size, num_samples - start)
        idx = torch.randint(0, len(data.train), (b,), generator=g)
        x0 = uniform_dequantize(data.train[idx], num_levels=data.num_levels, data_range=data.data_range, generator=g)
        vals.append(dsm_loss(model, x0, weighting=weighting, eps=eps, generator=g).double())
    v = torch.cat(vals)
    return {"mean": float(v.mean()), "variance": float(v.var()), "stderr": float(v.std() / math.sqrt(len(v))),
            "num_samples": len(v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--pipeline", required=True, help="the trained pipeline folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--num_samples", type=int, default=8192)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    data = load_data(cfg)
    torch.manual_seed(int(cfg["seed"]))  # the training run's initialisation (accelerate's set_seed)
    init_net = build_and_check_network(cfg, data)
    models = {"init": ScoreModel(init_net.eval(), get_sde(cfg["sde"]), cfg["parameterization"]),
              "trained": ScorePipeline.from_pretrained(args.pipeline).model}
    eps = float(cfg["eps"])
    report = {"eps": eps, "unit": "nats per image (one-sample estimate of J(theta; g^2))"}
    for when, model in models.items():
        report[when] = {w: estimator_stats(model, data, w, eps, args.num_samples, seed=1 if w == "likelihood" else 2)
                        for w in ("likelihood", "likelihood-is")}
        report[when]["variance_ratio_uniform_over_is"] = (report[when]["likelihood"]["variance"]
                                                          / report[when]["likelihood-is"]["variance"])
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
