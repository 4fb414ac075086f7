"""Train a variational dequantizer for a frozen zoo model (see :mod:`scorezoo.dequantization.training`).

    accelerate launch train/train_dequantizer.py --config train/configs/deq-vp-mle-digits.yaml
    python train/train_dequantizer.py --pretrained vp-mle-digits --max_train_steps 100 --output_dir runs/deq-test
    python train/train_dequantizer.py --config ... --resume_from_checkpoint latest
"""

from scorezoo.dequantization.training import main

if __name__ == "__main__":
    main()
