"""Gradio helpers shared by the tabs: every handler's failure as one plain line, torch's threads per request, and
checked whole numbers."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr
import torch

__all__ = ["handler", "int_in"]

logger = logging.getLogger("scorezoo.demo")


def handler(torch_threads: int) -> Callable[[Callable], Callable]:
    """Decorator for an event handler: it runs torch with ``torch_threads`` intra-op threads (set in the worker
    thread that serves the request, where torch's setting lives), and every failure reaches the user as a
    ``gr.Error`` with one plain line while the trace stays in the log."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            torch.set_num_threads(torch_threads)
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except (ValueError, FileNotFoundError) as e:
                raise gr.Error(str(e), print_exception=False) from None
            except Exception as e:  # noqa: BLE001 - an unexpected failure: log it, show one line
                logger.exception("demo handler failed")
                raise gr.Error(f"Something went wrong ({type(e).__name__}): {e}", print_exception=False) from None

        return wrapper

    return wrap


def int_in(value: Any, lo: int, hi: int, what: str) -> int:
    """``value`` as an int in ``[lo, hi]``.

    Raises:
        gr.Error: not a whole number, or out of range (the message names ``what``).
    """
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} must be a whole number, got {value!r}.", print_exception=False) from None
    if not lo <= v <= hi:
        raise gr.Error(f"{what} must lie in [{lo}, {hi}], got {v}.", print_exception=False)
    return v
