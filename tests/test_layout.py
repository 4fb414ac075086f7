"""The package's layout: no module reaches into another's private (``_``-prefixed) names, every exported name
resolves, and no module is over 500 lines."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scorezoo"


def _private_uses(path: Path) -> list[str]:
    """``from X import _name`` and ``module._name`` of an imported module in ``path`` (dunders and ``os._exit``,
    the standard library's documented exit without clean-up, are not private names of ours)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            modules.update(a.asname or a.name for a in node.names)
            found += [f"{path.name}:{node.lineno} from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and (node.value.id, node.attr) != ("os", "_exit")):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    """convert/score_flow.py used eight private classes of models/ncsnpp.py; what a module needs of another is public
    and documented there."""
    assert [use for path in sorted(PACKAGE.rglob("*.py")) for use in _private_uses(path)] == []


def _packages_with_all() -> list[str]:
    """Every package and module of scorezoo whose source defines ``__all__``."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__all__" not in path.read_text(encoding="utf-8") or path.name == "__main__.py":
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_exported_name_resolves():
    """Each name in a module's ``__all__`` can be got from it, the lazily imported ones included: a renamed module
    (training.data became training.batches) once left ``from scorezoo.training import TrainState`` failing."""
    import importlib

    missing = []
    for name in _packages_with_all():
        module = importlib.import_module(name)
        missing += [f"{name}.{attr}" for attr in module.__all__ if not _resolves(module, attr)]
    assert missing == []


def _resolves(module, attr: str) -> bool:
    try:
        getattr(module, attr)
    except (AttributeError, ImportError):
        return False
    return True


#: the longest a module of the package may be: past it, a module holds more than one concept (issue "One scoring plan,
#: one solver table, one training runner": ncsnpp, scoring, demo.compute and pipeline were split along their seams)
MAX_MODULE_LINES = 500


def _long_modules(root: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    """``path: lines`` of every ``.py`` file under ``root`` longer than ``limit`` lines."""
    counts = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in sorted(root.rglob("*.py"))}
    return [f"{path.relative_to(root)}: {n}" for path, n in counts.items() if n > limit]


def test_no_module_is_over_500_lines():
    assert _long_modules(PACKAGE) == []


def test_the_line_limit_catches_a_501_line_module(tmp_path):
    """The check itself: 500 lines pass, 501 do not, in a sub-package too."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    (tmp_path / "sub" / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert _long_modules(tmp_path) == [f"{Path('sub', 'long.py')}: {MAX_MODULE_LINES + 1}"]
