"""Progress of long work on stderr: a tqdm bar on a terminal, plain rate-limited lines when stderr is a file or a pipe
(a log, ``2> log.txt``, a CI job), so that a long photo scored with its output redirected still says how far it is.

:func:`progress_bar` is what the library's long loops use (the solves of :func:`scorezoo.scoring.score_images`,
``scorezoo eval``'s images); ``disable=True`` (``scorezoo -q``, :meth:`ScorePipeline.set_progress_bar_config
<scorezoo.pipeline.ScorePipeline.set_progress_bar_config>`) silences both.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

__all__ = ["progress_bar", "PlainProgress", "PLAIN_INTERVAL_S"]

#: seconds between two plain progress lines
PLAIN_INTERVAL_S = 10.0


class PlainProgress(tqdm):
    """A tqdm whose display is one plain line (no carriage returns, no bar) at most every
    :data:`PLAIN_INTERVAL_S` seconds and at the end: ``bits/dim: 120/1024 solves (12%), 35 s, about 4 min left``."""

    def __init__(self, *args, interval: float = PLAIN_INTERVAL_S, **kwargs):
        self._interval, self._last = float(interval), None
        kwargs.setdefault("file", sys.stderr)
        # tqdm's own refresh writes nothing (display is replaced); its delay still holds back short work
        super().__init__(*args, **{**kwargs, "mininterval": 0.0, "dynamic_ncols": False})

    def display(self, msg=None, pos=None):
        now = time.monotonic()
        end = self.total is not None and self.n >= self.total
        if self.disable or (self._last is not None and now - self._last < self._interval and not end):
            return True
        if self._last is None and self.n == 0:  # the start: say what is coming once
            self._last = now
            self.fp.write(f"{self.desc or 'working'}: 0/{self.total or '?'} {self.unit}s\n")
            self.fp.flush()
            return True
        self._last = now
        elapsed = self.format_dict["elapsed"]
        line = f"{self.desc or 'working'}: {self.n}/{self.total or '?'} {self.unit}s"
        if self.total:
            line += f" ({100 * self.n / self.total:.0f}%)"
        line += f", {_duration(elapsed)}"
        if self.total and 0 < self.n < self.total:
            line += f", about {_duration(elapsed * (self.total - self.n) / self.n)} left"
        self.fp.write(line + "\n")
        self.fp.flush()
        return True

    def close(self):
        if not self.disable and self._last is not None and (self.total is None or self.n < self.total):
            self._last = None if self.n == 0 else self._last - self._interval
            self.display()
        super().close()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, **kwargs) -> tqdm:
    """A progress bar over ``iterable`` (or ``total`` steps, updated by hand): tqdm on a terminal,
    :class:`PlainProgress` lines otherwise; nothing when ``disable``. Other keyword arguments go to tqdm
    (``delay``, ``leave``...)."""
    cls = tqdm if sys.stderr.isatty() else PlainProgress
    if cls is tqdm:
        kwargs.pop("interval", None)
    return cls(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)
