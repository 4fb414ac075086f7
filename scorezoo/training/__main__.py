"""``python -m scorezoo.training --config FILE [--key value ...]``: see :mod:`scorezoo.training.cli`."""

from .cli import main

if __name__ == "__main__":
    main(prog="python -m scorezoo.training")
