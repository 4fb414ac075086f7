"""The documentation's machinery: README's commands, the site's link rewriting, and the docstring extension that
turns Sphinx roles into checked cross-references (``mkdocs build --strict`` itself runs in ``.ci/run``)."""

import importlib.util
import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    """A module of ``docs/_ext`` (not a package: mkdocs loads these files by path, and so do the tests)."""
    spec = importlib.util.spec_from_file_location(f"docs_ext_{name}", ROOT / "docs" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_runs_the_test_command_of_ci():
    """The README's second set-up command ends with a test command that .ci/run runs, exactly."""
    readme_test = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[1].strip().split(" && ")[-1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert readme_test in ci_lines


def test_readme_installs_torch_first_and_names_the_cpu_build():
    blocks = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    for block in blocks[:2]:
        steps = block.strip().split(" && ")
        assert steps.index("pip install torch==2.13.0") < next(i for i, s in enumerate(steps) if "pip install ." in s
                                                                  or "pip install -e" in s)
    assert "--index-url https://download.pytorch.org/whl/cpu" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_site_links_rewrite_root_files_for_the_site():
    hooks = _load("hooks")
    text = ("[a](docs/likelihoods.md#calibrating-your-own) [b](CHANGELOG.md) [c](https://x.org/docs/y.md) "
            "[d](#local) [e](benchmarks/results/likelihood.md) [f](other.md)")
    assert hooks.site_links(text) == ("[a](likelihoods.md#calibrating-your-own) [b](changelog.md) "
                                      "[c](https://x.org/docs/y.md) [d](#local) [e](benchmark-likelihood.md) "
                                      "[f](other.md)")


def test_every_module_gets_a_reference_page():
    """Each public module of the package has a page, packages before their modules; private ones have none."""
    hooks = _load("hooks")
    modules = dict(hooks._modules(ROOT))
    files = {p for p in (ROOT / "scorezoo").rglob("*.py") if not p.name.startswith("_")}
    expected = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in files}
    assert {m for m, is_package in modules.items() if not is_package} == expected
    assert modules["scorezoo.likelihood"] and not modules["scorezoo.likelihood.ode"]
    names = list(modules)
    assert names.index("scorezoo.likelihood") < names.index("scorezoo.likelihood.ode")


def test_the_reference_overview_lists_every_module():
    """docs/reference/index.md links each public module's page (a new module, e.g. scoring.plan, is listed there)."""
    hooks = _load("hooks")
    text = (ROOT / "docs" / "reference" / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\[(scorezoo[\w.]*)\]", text))
    # the package's own page by its file: the identifier "scorezoo" is also the front page's heading
    assert "](scorezoo.md)" in text
    assert {name for name, _ in hooks._modules(ROOT)} - linked == {"scorezoo"}


@pytest.fixture(scope="module")
def roles():
    griffe = pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]')")
    module = _load("sphinx_roles")
    extension = module.SphinxRoles()
    package = griffe.load("scorezoo", search_paths=[str(ROOT)], extensions=griffe.Extensions(extension))
    return module, extension, package


def test_roles_become_cross_references_to_where_objects_are_documented(roles):
    _, extension, package = roles
    doc = package["likelihood.ode.log_likelihood"].docstring.value
    # a name imported into the module links to the module that defines it; "~" shows the last part only
    assert "[`LikelihoodSchedule`][scorezoo.likelihood.schedule.LikelihoodSchedule]" in doc
    assert ":class:" not in doc and ":func:" not in doc
    f = package["likelihood.ode.log_likelihood"]
    assert extension.rewrite(f, ":func:`scorezoo.likelihood.log_likelihood`") == \
        "[`scorezoo.likelihood.log_likelihood`][scorezoo.likelihood.ode.log_likelihood]"  # a re-export: its source
    assert extension.rewrite(f, ":func:`huggingface_hub.snapshot_download`") == "`huggingface_hub.snapshot_download`"
    # a name that is nowhere stays a cross-reference, which mkdocs --strict reports as broken
    assert extension.rewrite(f, ":func:`no_such_function`") == "[`no_such_function`][no_such_function]"


def test_roles_prefer_the_kind_they_name(roles):
    """demo.compute.DemoSettings has a field density_grid; :func:`density_grid` in its docstring is the function."""
    _, extension, package = roles
    settings = package["demo.compute.DemoSettings"]
    assert extension.rewrite(settings, ":func:`density_grid`") == \
        "[`density_grid`][scorezoo.demo.compute.density_grid]"


def test_comments_and_attribute_sections_become_docstrings(roles):
    _, _, package = roles
    assert package["likelihood.ode.FIXED_STEP_METHODS"].docstring.value.startswith("fixed-step methods of")
    assert package["pipeline.BitsPerDimResult.bpd"].docstring.value.startswith("``(B,)`` bits/dim per image")


def test_a_parameter_the_signature_lacks_is_reported(roles, tmp_path, caplog, monkeypatch):
    griffe = pytest.importorskip("griffe")
    module, _, _ = roles
    # another package name: griffe's finder remembers where it found "scorezoo"
    monkeypatch.setattr(module, "PACKAGE", "tinypkg")
    (tmp_path / "tinypkg").mkdir()
    (tmp_path / "tinypkg" / "__init__.py").write_text(
        'def f(a, b):\n    """Doc.\n\n    Args:\n        a, c: grouped.\n        b: one.\n    """\n')
    with caplog.at_level(logging.WARNING):
        griffe.load("tinypkg", search_paths=[str(tmp_path)], extensions=griffe.Extensions(module.SphinxRoles()))
    assert "documents parameter 'c'" in caplog.text
    assert "parameter 'a'" not in caplog.text and "parameter 'b'" not in caplog.text
