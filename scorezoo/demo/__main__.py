"""``python -m scorezoo.demo``: serve the demo on 127.0.0.1 (``--help`` for the options)."""

from . import main

main()
