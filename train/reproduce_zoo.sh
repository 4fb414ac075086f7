#!/usr/bin/env bash
# Train every shipped zoo model with the exact commands of its card, then measure and package them.
# CPU only; each command is independent (run them in parallel if you have cores). Outputs go to runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in vp-baseline-digits vp-lw-digits vp-mle-digits vp-mle-checkerboard; do
    accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
        train/train_mle.py --config "train/configs/${name}.yaml"
done
python train/loss_variance.py --config train/configs/vp-mle-digits.yaml \
    --pipeline runs/vp-mle-digits/pipeline --out runs/loss_variance.json
python train/density_2d.py runs/vp-mle-checkerboard/pipeline --out runs/vp-mle-checkerboard/density --n 160 --tol 1e-4
python train/make_zoo.py --runs runs
