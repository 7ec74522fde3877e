"""The package's layers, read from the code (AST): the floor order of CONTRIBUTING.md's layout
(a unit imports only units of lower floors), no import circle between modules, lower layers never
import the benchmarks, and no module reaches into another module's ``_private`` names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sekd_plugin"
LOWER = ("train", "extractors", "matchers", "io", "ops", "models", "metrics", "common", "geometry")
# CONTRIBUTING.md's floors, bottom first: a unit (a subpackage or a top-level module of
# sekd_plugin) imports only units of lower floors. ``__main__`` files are program entries that
# no module imports (``train/__main__`` runs the top-level ``training`` command): they are exempt.
FLOORS = (
    ("__init__",),  # the package's face: __version__
    ("common",),
    ("ops", "geometry", "io"),
    ("infra",),
    ("models", "matchers", "metrics", "datasets"),
    ("extractors",),
    ("extract_features", "match_features", "pair_selection", "reconstruction", "localize_sfm", "visualize",
     "integrations", "train", "weights"),
    ("pairs", "triangulation"),
    ("benchmark",),
    ("training",),
)
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


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


def _unit(parts: list[str]) -> str:
    return parts[1] if len(parts) > 1 else "__init__"


def _targets(module: str, names: list[str]) -> list[str]:
    """The modules an import names: ``from sekd_plugin import pairs`` names ``sekd_plugin.pairs``."""
    if module == "sekd_plugin" or module.endswith(".__init__"):
        return [f"sekd_plugin.{n}" if (PACKAGE / n).exists() or (PACKAGE / f"{n}.py").exists() else module
                for n in names] or [module]
    return [module]


def _unit_edges():
    for path, parts in _modules():
        if path.name == "__main__.py":
            continue
        for module, names in _imports(path, parts):
            if module.split(".")[0] != "sekd_plugin":
                continue
            for target in _targets(module, names):
                yield path, _unit(parts), _unit(target.split("."))


def test_every_unit_has_a_floor():
    units = {_unit(parts) for _, parts in _modules()}
    assert units - set(FLOOR) == set(), f"add {sorted(units - set(FLOOR))} to FLOORS (and to CONTRIBUTING.md)"
    assert set(FLOOR) - units == set(), f"FLOORS names units that do not exist: {sorted(set(FLOOR) - units)}"


def test_the_floor_order():
    bad = sorted({f"{path.relative_to(PACKAGE.parent)} ({unit}, floor {FLOOR[unit]}) imports {target} "
                  f"(floor {FLOOR.get(target)})" for path, unit, target in _unit_edges()
                  if target != unit and FLOOR.get(target, 99) >= FLOOR.get(unit, -1)})
    assert not bad, "\n".join(bad)


def _module_graph() -> dict[str, set[str]]:
    names = {".".join(parts): path for path, parts in _modules()}
    graph: dict[str, set[str]] = {m: set() for m in names}
    for path, parts in _modules():
        if path.name == "__main__.py":
            continue
        me = ".".join(parts)
        for module, imported in _imports(path, parts):
            for target in [module, *(f"{module}.{n}" for n in imported)]:
                if target in names and target != me and not me.startswith(target + "."):
                    graph[me].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)  # noqa: E702
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1  # noqa: E702
                    stack.append(child); on.add(child)  # noqa: E702
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop(); on.discard(m); component.append(m)  # noqa: E702
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circle_between_modules():
    """Function-level imports count too (``benchmark/sfm/config`` <-> ``pipelines`` was one);
    a package's ``__init__`` importing its own modules is not a circle."""
    graph = _module_graph()
    for m in graph:  # an __init__ re-exporting its children, and children importing the package face
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    assert _cycles(graph) == []


def test_the_floor_checker_sees_a_violation_and_a_circle():
    assert FLOOR["io"] < FLOOR["extractors"] < FLOOR["benchmark"] < FLOOR["training"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_package_file_over_450_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def _reaches_outside(path: Path, text: str) -> list[str]:
    """``Path(__file__)...parents[k]`` above ``sekd_plugin/``, or a ``../shared`` path, in ``text``."""
    import re

    depth = len(path.relative_to(PACKAGE).parts) - 1  # parents[depth] is sekd_plugin/ itself
    bad = [f"parents[{k}]" for k in map(int, re.findall(r"__file__\)?(?:\.resolve\(\))?\.parents\[(\d+)\]", text))
           if k > depth]
    bad += [f"{'.parent' * k}" for k in (m.count(".parent") for m in re.findall(r"__file__\)?(?:\.resolve\(\))?((?:\.parent)+)", text))
            if k > depth + 1]
    tree = ast.parse(text)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and id(n) not in docstrings]  # code, not its comments and docstrings
    return bad + [m for lit in literals for m in re.findall(r"\.\./shared|shared/scenes", lit)]


def test_package_code_never_reaches_outside_the_package():
    """The installed package has no repository around it (tests/test_installed.py runs it so)."""
    bad = {str(p.relative_to(PACKAGE.parent)): found for p in PACKAGE.rglob("*.py")
           if (found := _reaches_outside(p, p.read_text()))}
    assert not bad, bad
    probe = PACKAGE / "benchmark" / "x.py"
    assert _reaches_outside(probe, "R = Path(__file__).resolve().parents[2] / 'benchmark_configs'") == ["parents[2]"]
    assert _reaches_outside(probe, "R = Path(__file__).resolve().parents[1]") == []
    assert _reaches_outside(probe, "d = REPO / '..' / 'shared/scenes'") == ["shared/scenes"]
    assert _reaches_outside(probe, '"""Data in ../shared/scenes."""\n# or ../shared\nx = 1') == []
