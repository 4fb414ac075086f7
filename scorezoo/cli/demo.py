"""``scorezoo demo``: the Gradio app (``python app.py`` does the same), on 127.0.0.1, offline."""

from __future__ import annotations

import argparse

from .common import EXIT_OK


def add_parser(sub) -> None:
    # no option prefix of its own, so that every word after "demo" (--help, --model ...) is the demo's: argparse
    # would otherwise read a leading "--model" as an unknown option of this parser instead of the remainder
    p = sub.add_parser("demo", help="the Gradio demo: sampling, bits/dim of uploaded images, the zoo "
                                    "(needs scorezoo[app])", add_help=False, prefix_chars="\0")
    p.add_argument("demo_args", nargs=argparse.REMAINDER,
                   help="the demo's own options (scorezoo demo --help lists them)")
    p.set_defaults(func=run, quiet=False, debug=False)


def run(args: argparse.Namespace) -> int:
    import os

    from .common import CLIError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from ..demo import main
    except ImportError as e:
        raise CLIError(f"the demo needs the app extra: pip install 'scorezoo[app]' ({e}).") from None
    main(args.demo_args)
    return EXIT_OK
