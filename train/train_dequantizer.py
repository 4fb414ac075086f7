"""Train a variational dequantizer for a frozen zoo model: a shell over :mod:`scorezoo.training`.

    python train/train_dequantizer.py --config train/configs/deq-vp-mle-digits.yaml
    python train/train_dequantizer.py --pretrained vp-mle-digits --max_train_steps 100 --output_dir runs/deq-test
    python train/train_dequantizer.py --config ... --resume_from_checkpoint latest

Same as ``python -m scorezoo.training --task dequantizer`` (which works without the repository); ``--help`` lists
every config key, and docs/dequantization.md explains the objective.
"""

from scorezoo.training.cli import main

if __name__ == "__main__":
    main(task="dequantizer")
