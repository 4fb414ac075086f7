"""``python -m scorezoo`` is the ``scorezoo`` command (so ``accelerate launch -m scorezoo eval ...`` works)."""

import sys

from .cli import main

sys.exit(main())
