"""Dequantization: integer data ``k in {0, ..., K-1}^D`` into a model's continuous data space, and the bound it gives.

Every dequantizer maps ``u in [0, 1)^D`` to ``x = lo + (hi - lo)(k + u)/K`` and bounds the discrete
negative log-likelihood by ``-log P(k) <= E_q[-log p_X(x) + log q(u | k)] - D log((hi - lo)/K)``
(Theis, van den Oord & Bethge 2016, Sec. 3.1; Ho et al. 2019, Flow++, Sec. 3.1, eq. 11):

* :mod:`~scorezoo.dequantization.uniform`: ``q = U[0, 1)^D`` (``log q = 0``), the bound everyone reports;
* :mod:`~scorezoo.dequantization.variational`: ``q(u | k)`` a conditional normalising flow trained against a frozen
  model (Flow++; Song, Durkan, Murray & Ermon 2021, Sec. 6), a tighter bound when q is good.

:class:`VariationalDequantizer` and :func:`load_dequantizer` are imported on first use (they need diffusers), so that
``import scorezoo`` stays fast.
"""

from .uniform import (bits_per_dim, check_levels, data_to_levels, dequantization_log_jacobian, dequantize,
                      levels_to_data, uniform_dequantize)

__all__ = ["uniform_dequantize", "dequantize", "check_levels", "dequantization_log_jacobian", "bits_per_dim",
           "levels_to_data", "data_to_levels", "VariationalDequantizer", "load_dequantizer", "DEQUANTIZERS"]

_LAZY = {"VariationalDequantizer": "variational", "load_dequantizer": "variational", "DEQUANTIZERS": "variational"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
