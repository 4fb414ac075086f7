"""The models the demo lists and serves: the zoo's and those given with ``--model``, their cards and registry rows,
and the loaded pipelines shared by concurrent requests (no Gradio).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import zoo
from ..pipeline import PIPELINE_CONFIG_NAME, ScorePipeline

__all__ = ["ModelEntry", "zoo_models", "folder_model", "takes_colour", "card_markdown", "REGISTRY_HEADERS",
           "registry_rows", "PipelineCache"]


@dataclass
class ModelEntry:
    """A model the app lists: its registry entry and where to load it from.

    Attributes:
        info: the zoo's :class:`~scorezoo.zoo.ZooEntry` (from the card; from ``pipeline_config.json`` for a
            folder without one). ``info.status`` is ``"bundled"``, ``"cached"``, ``"remote"``, ``"folder"`` or
            :data:`scorezoo.zoo.CONVERT_STATUS`.
        source: a folder, or a Hub repo id complete in the local HF cache (loaded from the cache only); ``None``
            for a model the offline app lists but cannot load.
    """

    info: zoo.ZooEntry
    source: str | Path | None

    @property
    def name(self) -> str:
        return self.info.name

    def folder(self) -> Path:
        """The local folder of the model, never asking the Hub (a cached repo's snapshot).

        Raises:
            FileNotFoundError: a model with no local copy.
        """
        if self.source is None:
            raise FileNotFoundError(f"{self.name} is on the Hub only; this offline app cannot load it.")
        if Path(self.source).is_dir():
            return Path(self.source)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(self.source, local_files_only=True))
        except LocalEntryNotFoundError:
            raise FileNotFoundError(f"{self.source} is no longer in the local Hugging Face cache.") from None


def zoo_models() -> tuple[list[ModelEntry], list[str]]:
    """The zoo as :func:`scorezoo.zoo.registry` lists it: ``(entries, one line per card that was skipped)``."""
    entries, problems = zoo.registry()
    bundled = zoo.bundled_models()
    source = {"bundled": lambda e: bundled[e.name], "cached": lambda e: e.repo_id}
    return [ModelEntry(e, source[e.status](e) if e.status in source else None) for e in entries], problems


def folder_model(folder: str | Path, taken: set[str] = frozenset()) -> ModelEntry:
    """A pipeline folder given with ``--model``, read as the registry reads a bundled model: its card's
    ``scorezoo:`` mapping (``README.md``), else the SDE and resolution of its ``pipeline_config.json``.

    Named by its card; by the path as given without a card's name or when that name is ``taken`` (a run's
    folder is often just ``pipeline``).

    Raises:
        FileNotFoundError: no ``pipeline_config.json`` in ``folder``.
        ValueError: a card whose front matter cannot be read.
    """
    folder = Path(folder)
    info = zoo.folder_entry(folder)
    info.status = "folder"
    if info.name in taken:
        info.name = str(folder)
    return ModelEntry(info, folder)


def takes_colour(model: ModelEntry) -> bool:
    """Whether a model with a local copy takes 3-channel pictures (``data_shape`` of its pipeline config)."""
    config = json.loads((model.folder() / PIPELINE_CONFIG_NAME).read_text(encoding="utf-8"))
    shape = config.get("data_shape") or []
    return len(shape) == 3 and shape[0] == 3


def card_markdown(model: ModelEntry) -> str:
    """The card's Markdown body (front matter dropped); without a card, the model's pipeline config."""
    if model.info.card:
        from huggingface_hub import ModelCard

        return ModelCard(Path(model.info.card).read_text(encoding="utf-8"), ignore_metadata_errors=True).text
    if model.source is None:
        return f"*{model.name} has no model card.*"
    config = (model.folder() / PIPELINE_CONFIG_NAME).read_text(encoding="utf-8")
    return f"*{model.name} has no model card.* Its `{PIPELINE_CONFIG_NAME}`:\n\n```json\n{config.strip()}\n```"


# the eval split, a sentence on each card, is left to the card below the table
REGISTRY_HEADERS = ["model", "status", "default", "SDE", "weighting", "dataset", "resolution", "parameters",
                    "held-out (ODE)", "held-out (bound)"]


def registry_rows(models: list[ModelEntry]) -> list[list[str]]:
    """One row of strings per model under :data:`REGISTRY_HEADERS` (status :data:`scorezoo.zoo.CONVERT_STATUS`
    shortened to ``"convert"``). The likelihood columns give what the card
    measured: bits/dim for images (``"2.100 ± 0.010"``), nats per point for continuous data (``"2.301 ± 0.005
    nats/point"``), or the authors' figure for a published checkpoint (``"3.16 (reported)"``)."""

    def pm(v: float | None, e: float | None, unit: str = "") -> str | None:
        return None if v is None else f"{v:.3f}" + (f" ± {e:.3f}" if e is not None else "") + unit

    def column(e: zoo.ZooEntry, kind: str) -> str:
        bpd = pm(getattr(e, f"bpd_{kind}"), getattr(e, f"bpd_{kind}_stderr"))
        nll = pm(getattr(e, f"nll_{kind}"), getattr(e, f"nll_{kind}_stderr"), " nats/point")
        reported = f"{e.bpd_reported:.2f} (reported)" if kind == "ode" and e.bpd_reported is not None else None
        return bpd or nll or reported or "—"

    return [[e.name, "convert" if e.status == zoo.CONVERT_STATUS else e.status, "✓" if e.default else "",
             e.sde or "—", e.weighting or "—", e.dataset or "—", e.resolution or "—",
             "—" if e.parameters is None else f"{e.parameters:,}", column(e, "ode"), column(e, "bound")]
            for e in (m.info for m in models)]


class PipelineCache:
    """Loaded pipelines by name, safe to share between the threads that serve concurrent requests: a model is
    loaded once (a per-name lock: two requests for a model being loaded wait for the one load), and at most
    ``maxsize`` stay loaded (least recently used dropped).

    The app only infers, so each pipeline's weights are frozen once at load (``requires_grad=False``): the
    likelihood then never toggles them during a request, which concurrent requests would see.
    """

    def __init__(self, models: dict[str, ModelEntry], maxsize: int = 8):
        self.models, self.maxsize = models, maxsize
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._pipes: dict[str, ScorePipeline] = {}

    def __call__(self, name: str) -> ScorePipeline:
        """The pipeline ``name``.

        Raises:
            ValueError: a name that is not served.
        """
        if name not in self.models:
            raise ValueError(f"unknown model {name!r}; choose one of {sorted(self.models)}.")
        with self._lock:
            if name in self._pipes:
                self._pipes[name] = self._pipes.pop(name)  # most recently used last
                return self._pipes[name]
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:
            with self._lock:
                if name in self._pipes:
                    return self._pipes[name]
            pipe = ScorePipeline.from_pretrained(self.models[name].folder())
            if isinstance(pipe.network, torch.nn.Module):
                pipe.network.requires_grad_(False)
            with self._lock:
                self._pipes[name] = pipe
                while len(self._pipes) > self.maxsize:
                    self._pipes.pop(next(iter(self._pipes)))
            return pipe
