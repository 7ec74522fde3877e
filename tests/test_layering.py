"""The package's layers, read from the code (AST): lower layers never import the benchmarks,
and no module reaches into another module's ``_private`` names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sekd_plugin"
LOWER = ("train", "extractors", "matchers", "io", "ops", "models", "metrics", "common", "geometry")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, parts


def _absolute(parts: list[str], node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, parts: list[str]):
    """``(module, names)`` of every import in the file (``names`` empty for ``import x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            yield _absolute(parts, node, path.name == "__init__.py"), [a.name for a in node.names]


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_the_benchmarks(layer):
    bad = []
    for path, parts in _modules():
        if parts[1:2] != [layer]:
            continue
        for module, names in _imports(path, parts):
            targets = [module] + [f"{module}.{n}" for n in names]
            if any(t == "sekd_plugin.benchmark" or t.startswith("sekd_plugin.benchmark.") for t in targets):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path, parts in _modules():
        for module, names in _imports(path, parts):
            if not module.startswith("sekd_plugin"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{path.relative_to(PACKAGE.parent)}: from {module} import {', '.join(private)}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The AST reading itself: a relative import of the benchmarks and a private name are found."""
    f = tmp_path / "m.py"
    f.write_text("from ..benchmark.core import new_results\nfrom ..io.h5 import list_entries\n")
    found = list(_imports(f, ["sekd_plugin", "train", "m"]))
    assert ("sekd_plugin.benchmark.core", ["new_results"]) in found
    assert ("sekd_plugin.io.h5", ["list_entries"]) in found
