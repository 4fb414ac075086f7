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
``"convert from the official checkpoint"`` until a converted copy is cached); a name of such a row that is not found
is answered with where the authors publish the checkpoint and the ``scorezoo convert`` command that makes it. The
front matter is split from the body as the Hub splits it (:data:`huggingface_hub.repocard.REGEX_YAML_BLOCK`) and read
by PyYAML (``yaml.safe_load``).

Held-out figures are printed by one rule, :func:`format_held_out`, from the number on the card.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


__all__ = ["resolve_pretrained", "folder_entry", "published_models", "convert_command", "PUBLISHED_FILE",
           "CONVERT_STATUS", "ZOO_NAMESPACE", "BUNDLED_DIR", "CARDS_DIR", "DEFAULT_MODEL", "bundled_models",
           "ModelNotFoundError", "ZooEntry", "registry", "parse_card", "format_held_out", "default_model",
           "default_photo_model", "size_models", "hf_cache_status"]

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
    raise ModelNotFoundError(_not_found(name, repo_id, short, hub_error, bundled))


def _not_found(name: str, repo_id: str, short: str | None, hub_error: str, bundled: dict[str, Path]) -> str:
    """The one line of :class:`ModelNotFoundError`: for a published checkpoint, where the authors publish it and the
    command that converts it; otherwise where it looked, the zoo name a typo was close to, and a download command
    only for a repo that can exist (a zoo model kept on the Hub, or a repo id of another owner as given)."""
    import difflib

    rows, where = published_models()
    published = {row["name"]: row for row in rows}
    if short in published:
        row = published[short]
        extra = ' (pip install "scorezoo[convert]" first, for msgpack)' if row["source"] == "score_flow" else ""
        return (f"model {name!r} is converted from the authors' published checkpoint, not downloaded: get "
                f"{row['config']} from {row['url']} ({where[row['source']]}), then run `{convert_command(row)}`"
                f"{extra} and load the folder {row['name']!r}.")
    zoo = [e.name for e in registry()[0]]
    close = difflib.get_close_matches(short or name, list(bundled) + [n for n in zoo if n not in bundled], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    hub_error = hub_error if len(hub_error) <= 80 else hub_error[:77] + "..."
    looked = (f"model {name!r} not found.{hint} Looked in: local folders, the Hub as {repo_id!r} and its cache "
              f"({hub_error}), the bundled models (bundled: {', '.join(bundled) or 'none'}).")
    if short is not None and short not in zoo:  # no zoo model of that name, so no repo to download
        return f"{looked} Give a zoo name (scorezoo list), a folder made by save_pretrained or a Hub id 'owner/name'."
    return (f"{looked} Give a folder made by save_pretrained, or download it where there is network: "
            f"hf download {repo_id}")


def convert_command(row: dict[str, Any]) -> str:
    """The ``scorezoo convert`` command that turns the published checkpoint of ``row`` (a row of
    :func:`published_models`) into the pipeline folder ``row["name"]``.

    A score_flow run folder is named after its run, which is its config; a score_sde ``.pth`` takes ``--config``,
    and ``N`` stands for the checkpoint's number in the authors' folder (the larger of two: the checkpoint of the
    reported bits/dim). The same commands as ``docs/official-checkpoints.md``.
    """
    if row["source"] == "score_flow":
        return f"scorezoo convert score_flow {row['config']}/ -o {row['name']}"
    return f"scorezoo convert score_sde checkpoint_N.pth --config {row['config']} -o {row['name']}"


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
        published_at: for a published checkpoint, where its authors publish it (a URL).
        conversion: for a published checkpoint, the ``scorezoo convert`` command that makes its pipeline folder
            (:func:`convert_command`).
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
    published_at: str | None = None
    conversion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every attribute, as a JSON-ready dict (``scorezoo list --json``)."""
        return asdict(self)

    def held_out(self, estimator: str) -> str:
        """The card's held-out figure of ``estimator`` (``"ode"`` or ``"bound"``) as scorezoo prints it
        (:func:`format_held_out`): bits/dim (``"1.805 ± 0.015"``), nats per point for continuous data
        (``"2.301 ± 0.005 nats"``), for a published checkpoint the authors' ODE figure (``"3.16 (reported)"``,
        as published, 2 decimals), else ``"—"``.

        Raises:
            ValueError: ``estimator`` is neither ``"ode"`` nor ``"bound"``.
        """
        if estimator not in ("ode", "bound"):
            raise ValueError(f"estimator must be 'ode' or 'bound', got {estimator!r}.")
        bpd, nll = getattr(self, f"bpd_{estimator}"), getattr(self, f"nll_{estimator}")
        if bpd is not None:
            return format_held_out(bpd, getattr(self, f"bpd_{estimator}_stderr"))
        if nll is not None:
            return format_held_out(nll, getattr(self, f"nll_{estimator}_stderr"), " nats")
        if estimator == "ode" and self.bpd_reported is not None:
            return f"{self.bpd_reported:.2f} (reported)"
        return "—"


def format_held_out(value: float, stderr: float | None = None, unit: str = "") -> str:
    """A held-out figure as every place of scorezoo prints it (cards, README, ``scorezoo list``, the demo):
    ``"3.448 ± 0.026"``, value and standard error with 3 decimals, then ``unit`` (e.g. ``" nats"``).

    Round once, from the number as measured (or as the card's front matter keeps it): a number rounded to 4
    decimals first can round differently (3.44848 -> 3.4485 -> 3.449, where 3.448 is right).
    """
    return f"{value:.3f}" + (f" ± {stderr:.3f}" if stderr is not None else "") + unit


def parse_card(text: str) -> dict[str, Any]:
    """The ``scorezoo:`` mapping of a model card's YAML front matter.

    Args:
        text: the card (Markdown with a leading ``---`` front matter block, split as the Hub splits it).

    Returns:
        The mapping (empty when the card has no front matter or no ``scorezoo:`` key).

    Raises:
        ValueError: front matter that is not valid YAML, or a ``scorezoo:`` entry that is not a mapping.
    """
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(text.lstrip("\ufeff"))
    if match is None:
        return {}
    try:
        meta = yaml.safe_load(match.group(2)) or {}
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
    for key in ("sde", "weighting", "dataset", "resolution", "eval_split", "published_at", "conversion"):
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
            entries[row["name"]] = _entry({**row, "published_at": row.get("url"), "conversion": convert_command(row)},
                                          row["name"], None)
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
    ``url`` (the authors' folder), ``sde``, ``weighting``, ``dataset``, ``bpd_reported``) and, per source, where the
    authors publish them; empty without the file."""
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


def size_models(entries: list[ZooEntry] | None = None) -> dict[tuple[int, int], str]:
    """``{(width, height): name}`` of the colour models that can be loaded here (bundled or cached) and score a
    picture of exactly their size whole, not tile by tile: ``{(32, 32): "vp-mle-cifar10-small"}`` with the zoo of
    scorezoo 0.2. The photo model (``default_photo``) and models of patches are left out; of two models of one size,
    the first by name wins."""
    entries = registry()[0] if entries is None else entries
    out: dict[tuple[int, int], str] = {}
    for e in sorted(entries, key=lambda e: e.name):
        parts = (e.resolution or "").split("x")
        if (e.status in ("bundled", "cached") and not e.default_photo and len(parts) == 3 and parts[2] == "3"
                and e.dataset not in ("photo_patches", "photo_folder")):
            out.setdefault((int(parts[1]), int(parts[0])), e.name)
    return out


def default_photo_model(entries: list[ZooEntry] | None = None) -> str | None:
    """The short name of the model whose card says ``default_photo: true`` and that can be loaded here (bundled or
    cached), else ``None``."""
    entries = registry()[0] if entries is None else entries
    return next((e.name for e in entries if e.default_photo and e.status in ("bundled", "cached")), None)
