"""Where models come from: local folders, short zoo names, the Hugging Face Hub, bundled copies.

Resolution order of :func:`resolve_pretrained` (the one place that turns a name into a folder):

1. an existing local folder;
2. a short zoo name (``"vp-mle-digits"``) becomes the Hub id ``"scorezoo/vp-mle-digits"``;
3. the Hub through :func:`huggingface_hub.snapshot_download`, which honours ``revision``, the cache
   (``HF_HOME``/``HF_HUB_CACHE``) and ``HF_HUB_OFFLINE=1``; only safetensors, JSON and Markdown files
   are fetched, so a repo's pickles are never downloaded;
4. when the Hub cannot be reached, the copy of a zoo model bundled with the package (``revision=None`` only).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

__all__ = ["resolve_pretrained", "ZOO_NAMESPACE", "BUNDLED_DIR", "bundled_models", "ModelNotFoundError"]

ZOO_NAMESPACE = "scorezoo"
#: zoo models shipped inside the package
BUNDLED_DIR = Path(__file__).parent / "bundled"
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md"]


class ModelNotFoundError(FileNotFoundError):
    """No model under that name: not a local folder, not on the Hub or in its cache, not bundled."""


def bundled_models() -> dict[str, Path]:
    """Short name -> folder of each model bundled with the package."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / "pipeline_config.json").is_file()}


def _repo_id(name: str) -> str:
    return name if "/" in name else f"{ZOO_NAMESPACE}/{name}"


def resolve_pretrained(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The local folder holding the model ``name_or_path`` (see the module docstring for the order).

    Raises:
        ModelNotFoundError: one line saying where it looked and how to get the model.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or not name.strip():
        raise ModelNotFoundError(f"no model folder at {name!r} (and it is not a Hub repo id like 'owner/name').")
    repo_id = _repo_id(name)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        hub_error = str(e).splitlines()[0] if str(e) else type(e).__name__
    short = repo_id.split("/", 1)[1] if repo_id.startswith(ZOO_NAMESPACE + "/") else None
    bundled = bundled_models()
    if short in bundled and revision is None:
        return bundled[short]
    known = ", ".join(bundled) or "none"
    raise ModelNotFoundError(
        f"model {name!r} not found: not a local folder, not on the Hub as {repo_id!r} or in the HF cache "
        f"({hub_error}), and not bundled (bundled: {known}). Pass a folder made by save_pretrained, or "
        f"download it where there is network with `huggingface-cli download {repo_id}`."
    )
