"""Names imported on first use (PEP 562), so that importing a package does not wait for torch or diffusers."""

from __future__ import annotations

import importlib
import sys
from typing import Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, in which ``name`` of ``exports`` is
    ``package.<exports[name]>.name``, imported when first used.

    Use as ``__getattr__, __dir__ = lazy_exports(__name__, {"ScorePipeline": "pipeline", ...})``.
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
