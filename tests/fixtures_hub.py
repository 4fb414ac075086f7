"""A loopback stand-in for the Hugging Face Hub: the endpoints ``snapshot_download`` calls, served from memory.

* ``GET /api/models/{repo}/revision/{rev}``: model info with the commit ``sha`` and ``siblings``;
* ``GET /api/models/{repo}/tree/{rev}``: the file list (``recursive`` listing, one page);
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: a file, with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length`` as the Hub sends them.

Anything else is a 404 carrying the Hub's ``X-Error-Code``. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class Repo:
    """Files of one repo at one commit, reachable under the revision names ``revisions``."""

    def __init__(self, files: dict[str, bytes], commit: str, revisions: tuple[str, ...] = ("main",)):
        self.files, self.commit, self.revisions = files, commit, revisions

    @classmethod
    def from_folder(cls, folder: Path, commit: str, revisions: tuple[str, ...] = ("main",)) -> "Repo":
        return cls({p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                    if p.is_file()}, commit, revisions)


class FakeHub:
    """``with FakeHub({"owner/name": Repo(...)}) as hub:`` serves at ``hub.url``; ``hub.requests`` logs
    ``(method, path)`` of every request."""

    def __init__(self, repos: dict[str, Repo]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _not_found(self, code: str, head: bool):
                self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code,
                                                                       "Content-Type": "application/json"}, head)

            def _handle(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo_id, kind, rev = "/".join(parts[2:4]), parts[4], parts[5]
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._not_found("RepoNotFound", head)
                    if rev not in repo.revisions and rev != repo.commit:
                        return self._not_found("RevisionNotFound", head)
                    if kind == "revision":
                        body = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                                "siblings": [{"rfilename": f} for f in repo.files]}
                    else:
                        body = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                for f, b in repo.files.items()]
                    return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = hub.repos.get("/".join(parts[:2]))
                    if repo is None:
                        return self._not_found("RepoNotFound", head)
                    rev, fname = parts[3], "/".join(parts[4:])
                    if rev not in repo.revisions and rev != repo.commit:
                        return self._not_found("RevisionNotFound", head)
                    if fname not in repo.files:
                        return self._not_found("EntryNotFound", head)
                    body = repo.files[fname]
                    return self._send(200, body, {"X-Repo-Commit": repo.commit,
                                                  "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                                                  "Content-Type": "application/octet-stream"}, head)
                return self._not_found("NotFound", head)

            def do_GET(self):
                self._handle(head=False)

            def do_HEAD(self):
                self._handle(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def card(name: str, *, default: bool = False, bpd: float = 1.95) -> str:
    """A zoo model card as the training recipe writes them (front matter with nested lists and comments)."""
    return f"""---
library_name: scorezoo
license: apache-2.0
tags: [score-based, likelihood]
datasets:
- sklearn-digits
scorezoo:
  name: {name}
  repo_id: scorezoo/{name}
  sde: vp
  weighting: 'likelihood+is'
  dataset: digits
  resolution: "8x8x1"
  parameters: 12345
  bpd_ode: {bpd}
  bpd_ode_stderr: 0.02
  bpd_bound: 2.1
  bpd_bound_stderr: null   # not measured
  eval_split: "i % 6 == 0 (300 images)"
  default: {str(default).lower()}
model-index:
- name: {name}
  results:
  - task: {{type: density-estimation}}
    metrics:
    - {{type: bits-per-dim, value: {bpd}}}
---
# {name}

A test card.
"""


def make_zoo(root: Path, pipeline) -> dict[str, Path]:
    """A zoo under ``root``: ``bundled/tiny-zoo`` (default, with its card), ``cards/`` for it, for
    ``cached-one`` (filled into ``hub/`` as ``scorezoo/cached-one``) and for ``remote-one``."""
    from tests.helpers import fill_hf_cache

    bundled = root / "bundled" / "tiny-zoo"
    pipeline.save_pretrained(bundled)
    (bundled / "README.md").write_text(card("tiny-zoo", default=True))
    cards = root / "cards"
    cards.mkdir()
    for name in ("tiny-zoo", "cached-one", "remote-one"):
        (cards / f"{name}.md").write_text(card(name, default=name == "tiny-zoo"))
    fill_hf_cache(bundled, root / "hub", "scorezoo/cached-one")
    return {"bundled": root / "bundled", "cards": cards, "hub": root / "hub"}
