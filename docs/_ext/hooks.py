"""MkDocs hooks: pages made from the repository's own files.

The front page is ``README.md``; the changelog, the contribution guide and the benchmark results are
``CHANGELOG.md``, ``CONTRIBUTING.md`` and ``benchmarks/results/*.md`` (:data:`FROM_ROOT`), with their links to
``docs/`` pages and to each other rewritten for the site: one text for GitHub and the site.

The API reference is generated from the package, one page per module.
Every module of ``scorezoo/`` (packages and their submodules; not ``__main__`` or private ``_x`` modules) gets a page
``reference/<dotted.name>.md`` holding ``::: dotted.name``, listed under "API reference" in the navigation in the
package's order. A module added, moved or removed in the code therefore appears, moves or disappears here without an
edit to ``mkdocs.yml``; what the pages render is read from the docstrings by mkdocstrings.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = "scorezoo"
NAV_TITLE = "API reference"
#: site page <- repository file
FROM_ROOT = {"index.md": "README.md", "changelog.md": "CHANGELOG.md", "contributing.md": "CONTRIBUTING.md",
             "benchmark-likelihood.md": "benchmarks/results/likelihood.md",
             "benchmark-cifar-cost.md": "benchmarks/results/cifar_cost.md",
             "benchmark-photo-nfe.md": "benchmarks/results/photo_nfe.md",
             "benchmark-eval-cost.md": "benchmarks/results/eval_cost.md"}


def _modules(root: Path) -> list[tuple[str, bool]]:
    """``(dotted name, is a package)`` of every public module under ``root / PACKAGE``, packages first in their
    folder, then by name."""
    out = []

    def walk(folder: Path, prefix: str) -> None:
        out.append((prefix, True))
        for path in sorted(folder.iterdir(), key=lambda p: (p.is_dir(), p.name)):
            if path.is_dir() and (path / "__init__.py").is_file() and not path.name.startswith("_"):
                walk(path, f"{prefix}.{path.name}")
            elif path.suffix == ".py" and not path.name.startswith("_"):
                out.append((f"{prefix}.{path.stem}", False))

    walk(root / PACKAGE, PACKAGE)
    return out


def _page(name: str) -> str:
    return f"reference/{name}.md"


def _nav(modules: list[tuple[str, bool]]) -> list:
    """Nested navigation: a package is a section holding its own page and its modules."""
    sections: dict[str, list] = {}
    top: list = []
    for name, is_package in modules:
        parent = name.rpartition(".")[0]
        holder = sections.get(parent, top) if name != PACKAGE else top
        if is_package and name != PACKAGE:
            sections[name] = [{name: _page(name)}]
            holder.append({name: sections[name]})
        else:
            holder.append({name: _page(name)})
    return top


def on_config(config, **kwargs):
    root = Path(config.config_file_path).parent
    config["_scorezoo_modules"] = modules = _modules(root)
    for item in config["nav"]:
        if isinstance(item, dict) and NAV_TITLE in item:
            item[NAV_TITLE] = [*item[NAV_TITLE], *_nav(modules)]
            break
    else:
        raise ValueError(f"mkdocs.yml: the nav needs an {NAV_TITLE!r} section for the generated module pages.")
    return config


def _defined_here(init: Path) -> list[str]:
    """The public names a package's ``__init__.py`` defines itself (not those it imports from its modules)."""
    names = []
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def site_links(text: str) -> str:
    """A root Markdown file's relative links as seen from the site: ``docs/x.md`` -> ``x.md``, ``CHANGELOG.md`` ->
    ``changelog.md``. Any other relative link is left as it is, and the build's link check reports it."""
    pages = {src: page for page, src in FROM_ROOT.items()}

    def one(m: re.Match) -> str:
        target, anchor = m.group(2), m.group(3) or ""
        if target.startswith("docs/"):
            target = target[len("docs/"):]
        return f"]({pages.get(target, target)}{anchor})"

    return re.sub(r"\]\((?!https?:|#)(([^)#\s]+))(#[^)\s]*)?\)", one, text)


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File  # here, so that the tests can read this file without mkdocs

    root = Path(config.config_file_path).parent
    for page, src in FROM_ROOT.items():
        files.append(File.generated(config, page, content=site_links((root / src).read_text(encoding="utf-8"))))
    for name, is_package in config["_scorezoo_modules"]:
        options = ""
        if is_package:
            # what the package re-exports is documented on its modules' pages, once
            own = _defined_here(root.joinpath(*name.split("."), "__init__.py"))
            options = f"\n    options:\n      members: {own or 'false'}"
        files.append(File.generated(config, _page(name), content=f"::: {name}{options}\n"))
    return files
