"""Griffe extension: read the docstrings as written for readers of the source, and check their references.

* Sphinx roles become mkdocstrings cross-references: ``:func:`log_likelihood``` or
  ``:class:`~scorezoo.sde.VPSDE``` is resolved in the scope of the object whose docstring holds it (its members, its
  parents', the imports of its module; an object of the role's kind first), else by its name anywhere in the package
  when one object has it, and becomes ``[`log_likelihood`][scorezoo.likelihood.ode.log_likelihood]``, a link to where
  the object is documented. A role that names nothing in the package stays a cross-reference all the same, so that
  ``mkdocs build --strict`` fails on it: it names a renamed or removed object. Dotted names of other libraries
  (``huggingface_hub.snapshot_download``) become plain code.
* ``#:`` comment lines above a module or class attribute are its docstring (Sphinx's convention, used for the
  constants).
* ``Args:`` entries may document several parameters at once (``rtol, atol: ...``); each name must be a parameter of
  the signature, or the build warns (and ``--strict`` fails).
* A class's ``Attributes:`` entries become the docstrings of its attributes (each one then has its own entry, anchor
  and description, once); each name must be an attribute of the class.
* A paragraph ending in reST's ``::`` before an indented block ends in ``:`` (the block is code in Markdown too).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(func|class|meth|mod|data|attr|exc|obj):`(~?)([\w.]+)(?:\(\))?`")
LITERAL_BLOCK = re.compile(r"::\n(\n[ \t]+\S)")
PACKAGE = "scorezoo"
KINDS = {"func": {"function"}, "meth": {"function"}, "class": {"class"}, "exc": {"class"}, "mod": {"module"},
         "data": {"attribute"}, "attr": {"attribute"}, "obj": {"function", "class", "module", "attribute"}}


def _target(found: griffe.Object | griffe.Alias) -> griffe.Object | None:
    try:
        return found.final_target if found.is_alias else found
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _lookup(root: griffe.Module, path: str) -> griffe.Object | None:
    if path == PACKAGE:
        return root
    try:
        return _target(root[path[len(PACKAGE) + 1:]])
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


class SphinxRoles(griffe.Extension):
    """Rewrite roles, read ``#:`` comments and check grouped parameters, once the package is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: dict[str, list[griffe.Object]] = {}

    def resolve(self, obj: griffe.Object, role: str, target: str) -> str | None:
        """The documented path of ``target`` seen from ``obj``; the target itself for another library's dotted
        name; ``None`` when the package has no such object."""
        root = obj.package
        head, _, rest = target.partition(".")
        kinds = KINDS[role]
        if head == PACKAGE:
            found = _lookup(root, target)
            return found.path if found is not None else None
        fallback = None
        scope = obj
        while scope is not None:
            if head in scope.members or head in getattr(scope, "imports", {}):
                try:
                    path = scope.resolve(head) + (f".{rest}" if rest else "")
                except griffe.NameResolutionError:
                    path = None
                if path is not None and not path.startswith(PACKAGE):
                    return path
                found = _lookup(root, path) if path is not None else None
                if found is not None and found.kind.value in kinds:
                    return found.path
                fallback = fallback or found
            scope = scope.parent
        if fallback is not None:
            return fallback.path
        same = [o for o in self.by_name.get(target, []) if o.kind.value in kinds]
        if len(same) == 1:
            return same[0].path
        return target if "." in target else None

    def rewrite(self, obj: griffe.Object, text: str) -> str:
        def one(m: re.Match) -> str:
            role, short, target = m.group(1), m.group(2) == "~", m.group(3)
            shown = target.rsplit(".", 1)[-1] if short else target
            path = self.resolve(obj, role, target)
            if path is not None and not path.startswith(PACKAGE):
                return f"`{shown}`"  # another library's object: no page of ours to link to
            return f"[`{shown}`][{path or target}]"

        return LITERAL_BLOCK.sub(r":\n\1", ROLE.sub(one, text))

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != PACKAGE:
            return
        objects = list(_walk(pkg))
        for obj in objects:
            self.by_name.setdefault(obj.name, []).append(obj)
        for obj in objects:
            if obj.is_attribute and obj.docstring is None:
                _comment_docstring(obj)
            if obj.docstring is not None:
                obj.docstring.value = self.rewrite(obj, obj.docstring.value)
                _check_parameters(obj)
                if obj.is_class:
                    _attribute_docstrings(obj)


def _walk(obj: griffe.Object, seen: set[int] | None = None):
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member, seen)


def _comment_docstring(attr: griffe.Attribute) -> None:
    """Make the ``#:`` lines right above ``attr`` its docstring."""
    lines = attr.parent.lines if attr.parent is not None else []
    i = (attr.lineno or 0) - 2  # the line above, 0-based
    comment: list[str] = []
    while 0 <= i < len(lines) and lines[i].lstrip().startswith("#:"):
        comment.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    if comment:
        attr.docstring = griffe.Docstring("\n".join(comment), lineno=attr.lineno, parent=attr)


def _split(names: str) -> list[str]:
    return [n for n in (part.strip().lstrip("*") for part in names.split(",")) if n]


def _sections(obj: griffe.Object, kind: str) -> list:
    parsed = obj.docstring.parse("google", warn_unknown_params=False, warn_missing_types=False)
    return [section for section in parsed if section.kind.value == kind]


def _attribute_docstrings(cls: griffe.Class) -> None:
    """Give each attribute named in ``cls``'s ``Attributes:`` section that entry's text as its docstring."""
    for section in _sections(cls, "attributes"):
        for entry in section.value:
            for name in _split(entry.name):
                member = cls.members.get(name)
                if member is None:
                    griffe.logger.warning(f"{cls.relative_filepath}:{cls.docstring.lineno}: {cls.path} documents "
                                          f"attribute {name!r}, which it does not have")
                elif not member.is_alias and member.docstring is None:
                    member.docstring = griffe.Docstring(entry.description, lineno=cls.docstring.lineno,
                                                        parent=member)


def _check_parameters(obj: griffe.Object) -> None:
    """Every name of an ``Args:`` entry (``a, b: ...`` documents a and b) must be a parameter of the signature."""
    function = obj.members.get("__init__") if obj.is_class else obj
    if function is None or not function.is_function or obj.docstring is None:
        return
    names = {p.name for p in function.parameters}
    for section in _sections(obj, "parameters"):
        for param in section.value:
            for name in _split(param.name):
                if name not in names:
                    griffe.logger.warning(f"{obj.relative_filepath}:{obj.docstring.lineno}: {obj.path} documents "
                                          f"parameter {name!r}, which is not in its signature")
