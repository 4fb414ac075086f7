"""Where models come from: local folders, short zoo names, the Hugging Face Hub, bundled copies.

Resolution order of :func:`resolve_pretrained` (the one place that turns a name into a folder):

1. an existing local folder;
2. a short zoo name (``"vp-mle-digits"``) becomes the Hub id ``"scorezoo/vp-mle-digits"``;
3. the Hub through :func:`huggingface_hub.snapshot_download`, which honours ``revision``, the cache
   (``HF_HOME``/``HF_HUB_CACHE``) and ``HF_HUB_OFFLINE=1``; only safetensors, JSON and Markdown files
   are fetched, so a repo's pickles are never downloaded;
4. when the Hub cannot be reached, the copy of a zoo model bundled with the package (``revision=None`` only).

Only safetensors are ever read (:func:`scorezoo.models.load_network` refuses a folder of pickles) and network
classes come from a fixed list: there is no ``trust_remote_code``.

The registry (:func:`registry`) is read from the model cards inside the package, the one source of truth:
``bundled/NAME/README.md`` for the bundled models and ``cards/NAME.md`` for models that are listed but not bundled.
A card is a Hugging Face model card whose YAML front matter has a ``scorezoo:`` mapping (``name``, ``repo_id``,
``sde``, ``weighting``, ``dataset``, ``resolution``, ``parameters``, ``bpd_ode``, ``bpd_ode_stderr``, ``bpd_bound``,
``bpd_bound_stderr``, ``nll_ode``, ``nll_ode_stderr``, ``nll_bound``, ``nll_bound_stderr`` (nats per point, for
continuous data), ``eval_split``, ``default``, ``default_photo``, ``bpd_reported``). The authors' published
checkpoints that ``scorezoo convert`` turns into pipelines are rows too (``convert/published.json``, status
``"convert from the official checkpoint"`` until a converted copy is cached). PyYAML reads it when installed;
otherwise a small parser reads that mapping
(flat ``key: scalar`` lines), so the core install needs no YAML library.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


__all__ = ["resolve_pretrained", "folder_entry", "published_models", "PUBLISHED_FILE", "CONVERT_STATUS",
           "ZOO_NAMESPACE", "BUNDLED_DIR", "CARDS_DIR", "DEFAULT_MODEL", "bundled_models", "ModelNotFoundError",
           "ZooEntry", "registry", "parse_card", "default_model", "default_photo_model", "hf_cache_status"]

ZOO_NAMESPACE = "scorezoo"
#: zoo models shipped inside the package
BUNDLED_DIR = Path(__file__).parent / "bundled"
#: cards of models the zoo lists without bundling them
CARDS_DIR = Path(__file__).parent / "cards"
#: the model ``scorezoo bpd`` uses when no card says ``default: true``
DEFAULT_MODEL = "vp-mle-digits"
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md"]
#: the authors' published checkpoints (read as JSON: this module imports nothing of scorezoo.convert)
PUBLISHED_FILE = Path(__file__).parent / "convert" / "published.json"
CONVERT_STATUS = "convert from the official checkpoint"
#: the files a cached snapshot needs to load without the Hub: each entry is a file or a tuple of alternatives
#: (diffusers' weights name, or scorezoo 0.1's)
REQUIRED_FILES = ("pipeline_config.json", "network/config.json",
                  ("network/diffusion_pytorch_model.safetensors", "network/model.safetensors"))


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
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        hub_error = str(e).splitlines()[0] if str(e) else type(e).__name__
    short = repo_id.split("/", 1)[1] if repo_id.startswith(ZOO_NAMESPACE + "/") else None
    bundled = bundled_models()
    if short in bundled and revision is None:
        return bundled[short]
    import difflib

    known = ", ".join(bundled) or "none"
    names = list(bundled) + [e.name for e in registry()[0] if e.name not in bundled]
    close = difflib.get_close_matches(short or name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    hub_error = hub_error if len(hub_error) <= 80 else hub_error[:77] + "..."
    raise ModelNotFoundError(
        f"model {name!r} not found.{hint} Looked in: local folders, the Hub as {repo_id!r} and its cache ({hub_error}),"
        f" the bundled models (bundled: {known}). Give a folder made by save_pretrained, or download it where there "
        f"is network: hf download {repo_id}"
    )


@dataclass
class ZooEntry:
    """One model of the registry, from its card (``None`` where the card says nothing).

    Attributes:
        name: short zoo name (``"vp-mle-digits"``).
        repo_id: Hub repo id (``"scorezoo/vp-mle-digits"``).
        sde, weighting, dataset, resolution, eval_split: as written on the card (resolution e.g. ``"8x8x1"``).
        parameters: trainable parameters of the network.
        bpd_ode, bpd_ode_stderr: held-out bits/dim by the probability-flow ODE and its standard error.
        bpd_bound, bpd_bound_stderr: held-out bits/dim of the likelihood bound and its standard error.
        nll_ode, nll_ode_stderr, nll_bound, nll_bound_stderr: the same in nats per point, for continuous data.
        default: the model ``scorezoo bpd`` uses without ``--model`` (for small grayscale pictures).
        default_photo: the model ``scorezoo bpd`` and the demo use for colour photos.
        bpd_reported: bits/dim reported by the model's authors (not measured by scorezoo).
        status: ``"bundled"``, ``"cached"`` (complete in the local HF cache), ``"remote"`` (Hub only) or
            :data:`CONVERT_STATUS` (a published checkpoint that ``scorezoo convert`` turns into a pipeline).
        card: the card file read.
    """

    name: str
    repo_id: str
    sde: str | None = None
    weighting: str | None = None
    dataset: str | None = None
    resolution: str | None = None
    parameters: int | None = None
    bpd_ode: float | None = None
    bpd_ode_stderr: float | None = None
    bpd_bound: float | None = None
    bpd_bound_stderr: float | None = None
    nll_ode: float | None = None
    nll_ode_stderr: float | None = None
    nll_bound: float | None = None
    nll_bound_stderr: float | None = None
    eval_split: str | None = None
    default: bool = False
    default_photo: bool = False
    bpd_reported: float | None = None
    status: str = "remote"
    card: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scalar(text: str) -> Any:
    """A YAML 1.2 plain or quoted scalar as PyYAML would read it (null, booleans, ints, floats, strings)."""
    t = text.strip()
    if " #" in t and not t.startswith(("'", '"')):
        t = t.split(" #", 1)[0].rstrip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return json.loads(t) if t[0] == '"' else t[1:-1].replace("''", "'")
    low = t.lower()
    if low in ("", "~", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def _front_matter(text: str) -> str | None:
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for i, line in enumerate(lines[1:], 1):
        if line.strip() == "---":
            return "\n".join(lines[1:i])
    return None


def _scorezoo_mapping_fallback(yaml_text: str) -> dict[str, Any]:
    """The ``scorezoo:`` block of the front matter without PyYAML: its indented ``key: scalar`` lines."""
    out: dict[str, Any] = {}
    inside, indent = False, None
    for line in yaml_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        depth = len(line) - len(line.lstrip(" "))
        if depth == 0:
            inside = line.split(":", 1)[0].strip() == "scorezoo"
            indent = None
            continue
        if not inside:
            continue
        indent = depth if indent is None else indent
        if depth == indent and ":" in line:
            key, value = line.strip().split(":", 1)
            out[key.strip().strip("'\"")] = _scalar(value)
    return out


def parse_card(text: str) -> dict[str, Any]:
    """The ``scorezoo:`` mapping of a model card's YAML front matter.

    Args:
        text: the card (Markdown with a leading ``---`` front matter block).

    Returns:
        The mapping (empty when the card has no front matter or no ``scorezoo:`` key).

    Raises:
        ValueError: front matter that is not valid YAML, or a ``scorezoo:`` entry that is not a mapping.
    """
    fm = _front_matter(text)
    if fm is None:
        return {}
    try:
        import yaml
    except ImportError:
        return _scorezoo_mapping_fallback(fm)
    try:
        meta = yaml.safe_load(fm) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"the card's YAML front matter cannot be parsed: {str(e).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise ValueError("the card's YAML front matter is not a mapping.")
    zoo = meta.get("scorezoo") or {}
    if not isinstance(zoo, dict):
        raise ValueError("the card's 'scorezoo:' entry is not a mapping.")
    return zoo


def hf_cache_status(repo_id: str, revision: str | None = None) -> bool:
    """Whether the local HF cache holds every file needed to load ``repo_id`` (no network call; honours
    ``HF_HOME``/``HF_HUB_CACHE``)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(f: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str)

    return all(any(cached(f) for f in ((req,) if isinstance(req, str) else req)) for req in REQUIRED_FILES)


def _entry(fields: dict[str, Any], fallback_name: str, card: Path | None) -> ZooEntry:
    known = {k: fields[k] for k in ZooEntry.__dataclass_fields__ if k in fields and k not in ("status", "card")}
    name = str(known.pop("name", None) or fallback_name)
    repo_id = str(known.pop("repo_id", None) or _repo_id(name))
    for key in ("bpd_ode", "bpd_ode_stderr", "bpd_bound", "bpd_bound_stderr", "nll_ode", "nll_ode_stderr", "nll_bound",
                "nll_bound_stderr", "bpd_reported"):
        if known.get(key) is not None:
            known[key] = float(known[key])
    if known.get("parameters") is not None:
        known["parameters"] = int(known["parameters"])
    for key in ("sde", "weighting", "dataset", "resolution", "eval_split"):
        if known.get(key) is not None:
            known[key] = str(known[key])
    known["default"] = bool(known.get("default", False))
    known["default_photo"] = bool(known.get("default_photo", False))
    return ZooEntry(name=name, repo_id=repo_id, card=str(card) if card else None, **known)


def registry(cards_dir: str | Path | None = None) -> tuple[list[ZooEntry], list[str]]:
    """The zoo: one entry per model card, with where each model is available.

    Cards are read from every bundled model's ``README.md``, then from ``cards_dir`` (default
    :data:`CARDS_DIR`); a name seen twice keeps its first card. A bundled model
    without a card is still listed, with the SDE and resolution of its ``pipeline_config.json``.

    Returns:
        ``(entries sorted by name, problems)``: ``problems`` holds one line per card that could not be read
        (the card is skipped, the rest is listed).
    """
    bundled = bundled_models()
    sources: list[tuple[str, Path]] = [(name, folder / "README.md") for name, folder in bundled.items()]
    folder = Path(cards_dir) if cards_dir is not None else CARDS_DIR
    if folder.is_dir():
        sources += [(p.stem, p) for p in sorted(folder.glob("*.md"))]
    entries: dict[str, ZooEntry] = {}
    problems: list[str] = []
    for stem, card in sources:
        try:
            fields = parse_card(card.read_text(encoding="utf-8")) if card.is_file() else {}
            if not fields and stem in bundled:
                fields = _fields_from_config(bundled[stem])
            elif not fields:
                continue
            entry = _entry(fields, stem, card if card.is_file() else None)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
            problems.append(f"{card}: skipped, {e}")
            continue
        entries.setdefault(entry.name, entry)
    convertible = set()
    for row in published_models()[0]:
        if row["name"] not in entries:
            entries[row["name"]] = _entry(row, row["name"], None)
            convertible.add(row["name"])
    for entry in entries.values():
        if entry.name in bundled:
            entry.status = "bundled"
        elif hf_cache_status(entry.repo_id):
            entry.status = "cached"
        elif entry.name in convertible:
            entry.status = CONVERT_STATUS
    return sorted(entries.values(), key=lambda e: e.name), problems


def published_models() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``(rows, where)``: the published checkpoints of :data:`PUBLISHED_FILE` (``name``, ``source``, ``config``,
    ``sde``, ``weighting``, ``dataset``, ``bpd_reported``) and, per source, where the authors publish them; empty
    without the file."""
    if not PUBLISHED_FILE.is_file():
        return [], {}
    data = json.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))
    return data["models"], data["where"]


def _fields_from_config(folder: Path) -> dict[str, Any]:
    cfg = json.loads((folder / "pipeline_config.json").read_text())
    shape = cfg.get("data_shape") or []
    resolution = "x".join(str(v) for v in (shape[1:] + shape[:1] if len(shape) == 3 else shape))
    sde = cfg.get("sde", {})
    return {"name": folder.name, "sde": sde.get("type") if isinstance(sde, dict) else None,
            "dataset": cfg.get("dataset"), "resolution": resolution or None}


def folder_entry(folder: str | Path) -> ZooEntry:
    """The registry entry of a pipeline folder: its card's ``scorezoo:`` mapping (``README.md``), else the SDE,
    data set and resolution of its ``pipeline_config.json``, named by the folder's path.

    Raises:
        FileNotFoundError: no ``pipeline_config.json`` in ``folder``.
        ValueError: a card whose front matter cannot be read.
    """
    folder = Path(folder)
    if not (folder / "pipeline_config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a scorezoo pipeline folder: pipeline_config.json is missing.")
    card = folder / "README.md"
    try:
        fields = parse_card(card.read_text(encoding="utf-8")) if card.is_file() else {}
    except ValueError as e:
        raise ValueError(f"{card}: {e}") from None
    return _entry(fields or {**_fields_from_config(folder), "name": None}, str(folder), card if fields else None)


def default_model(entries: list[ZooEntry] | None = None) -> str:
    """The short name of the model whose card says ``default: true`` (else :data:`DEFAULT_MODEL`)."""
    entries = registry()[0] if entries is None else entries
    return next((e.name for e in entries if e.default), DEFAULT_MODEL)


def default_photo_model(entries: list[ZooEntry] | None = None) -> str | None:
    """The short name of the model whose card says ``default_photo: true`` and that can be loaded here (bundled or
    cached), else ``None``."""
    entries = registry()[0] if entries is None else entries
    return next((e.name for e in entries if e.default_photo and e.status in ("bundled", "cached")), None)
