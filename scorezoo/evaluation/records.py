"""The results files of an evaluation: one JSON line per image, streamed as computed, safe against kills.

Each process appends to a file of its own (the main process to ``results.jsonl`` itself, process ``r`` to
``results.jsonl.rank<r>``), one ``write`` per batch, so that no two processes ever write the same file: nothing
interleaves on any file system (NFS included), and a process killed at any point (SIGKILL, a lost node) leaves at
worst a half-written last line in its own file, which :func:`repair` cuts before that file is appended to again.
At the end the main process merges every file into ``results.jsonl``, one line per image sorted by index, through a
temporary file and an atomic rename, so a kill during the merge loses nothing either.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["shard_path", "shard_paths", "repair", "read_records", "append_records", "merge",
           "summarize"]


def shard_path(out: Path, rank: int) -> Path:
    """The file process ``rank`` streams its results to: ``out`` for the main process."""
    return out if rank == 0 else out.with_name(f"{out.name}.rank{rank}")


def shard_paths(out: Path) -> list[Path]:
    """Every results file of ``out`` on disk: ``out`` and the other processes' files, of this run or an earlier
    one with more processes."""
    found = sorted(out.parent.glob(f"{out.name}.rank*"), key=lambda p: p.name)
    return ([out] if out.exists() else []) + [p for p in found if p.name[len(out.name) + 5:].isdigit()]


def repair(path: Path) -> None:
    """Cut a half-written last line (a process killed in the middle of a write) so that appending goes on from
    the last whole line."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_records(paths: Iterable[Path]) -> dict[int, dict]:
    """The whole lines of ``paths`` by image index (the first one of an index wins; lines that are not a JSON
    object with an integer ``index``, such as a half-written last line, are skipped)."""
    out: dict[int, dict] = {}
    for path in paths:
        try:
            lines = path.read_bytes().split(b"\n")
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict) and isinstance(rec.get("index"), int):
                out.setdefault(rec["index"], rec)
    return out


def _line(rec: dict) -> bytes:
    return (json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n").encode()


def append_records(fd: int, records: list[dict]) -> None:
    """Append ``records`` to the file descriptor ``fd`` (opened with ``O_APPEND``) in one ``write`` (repeated
    only if the kernel takes part of it)."""
    data = b"".join(_line(r) for r in records)
    while data:
        data = data[os.write(fd, data):]


def merge(out: Path, records: dict[int, dict], others: list[Path]) -> None:
    """Write ``records`` to ``out``, sorted by index, atomically (temporary file, fsync, rename), then delete
    ``others`` (the processes' files, now merged)."""
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(_line(records[i]) for i in sorted(records)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    for p in others:
        if p != out:
            p.unlink(missing_ok=True)


def summarize(records: dict[int, dict], num_images: int) -> dict:
    """The data-set figures of per-image records.

    ``bpd_mean`` is the mean over the images scored of their bits/dim (each the mean of its K draws) and
    ``bpd_stderr`` its standard error over images, ``s / sqrt(n)``. Part of that spread is the dequantization (and
    Hutchinson probe) noise of each image's estimate: with K >= 2 draws, its share of the variance of the mean is
    ``mean_i(s_i^2 / K) / n`` (``s_i^2``: the sample variance of image i's draws), reported as
    ``bpd_stderr_dequantization`` (its square root) and ``dequantization_variance_fraction``; the rest is the spread
    of the images themselves. ``None`` where undefined (one image, or K = 1).
    """
    ok = [r for r in records.values() if "bpd" in r]
    failed = sorted((r for r in records.values() if "error" in r), key=lambda r: r["index"])
    bpd = np.array([r["bpd"] for r in ok], dtype=np.float64)
    n = len(bpd)
    draws = [np.asarray(r["bpd_draws"], dtype=np.float64) for r in ok]
    k = min((len(d) for d in draws), default=0)
    stderr = float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    noise = float(np.mean([d.var(ddof=1) / len(d) for d in draws]) / n) if n and k > 1 else None
    return {
        "num_images": num_images,
        "num_scored": n,
        "num_failed": len(failed),
        "bpd_mean": float(bpd.mean()) if n else None,
        "bpd_stderr": stderr,
        "bpd_stderr_dequantization": None if noise is None else math.sqrt(noise),
        "dequantization_variance_fraction": None if noise is None or not stderr else noise / stderr**2,
        "nfe_mean": float(np.mean([r["nfe"] for r in ok])) if n else None,
        "seconds_per_image_mean": float(np.mean([r["seconds"] for r in ok])) if n else None,
        "failures": [{"index": r["index"], "source": r["source"], "error": r["error"]} for r in failed],
    }
