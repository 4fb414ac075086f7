"""Train a score-based model with the MLE paper's objective: a shell over :mod:`scorezoo.training`.

    accelerate launch train/train_mle.py --config train/configs/vp-mle-digits.yaml [--key value ...]
    python train/train_mle.py --config train/configs/vp-mle-digits.yaml --max_train_steps 100
    accelerate launch --multi_gpu --num_processes 2 train/train_mle.py --config ...   # data-parallel, also on CPU

Same as ``python -m scorezoo.training``; ``--help`` lists every config key with its default and meaning, and
docs/training.md explains the objective, resume, multi-process runs and the export to the zoo.
"""

from scorezoo.training.cli import main

if __name__ == "__main__":
    main()
