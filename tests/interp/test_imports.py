"""The import graph of the packages: no cycle among `interp`'s modules (nor among `apps`' modules), and the layering
`interp` <- `analyses` <- `apps` holds (interp imports neither analyses nor apps).

The graph is read from the source with `ast`, not by importing anything: every `import` and `from ... import`
statement counts, at module level and inside functions, methods and `if TYPE_CHECKING:` blocks alike (a function-level
import is still a dependency; deferring it only hides the circle until the function runs). Relative imports are
resolved against the importing module's package. `from pkg import name` counts as an import of `pkg.name` when that
is a module, else of `pkg`. Importing `pkg.sub` also runs `pkg/__init__.py`, so an edge to a submodule implies an edge
to each parent package that is part of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_names(package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of `package` (a package's `__init__.py` is the package itself)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_names(path: Path, module: str, is_package: bool) -> set[str]:
    """Every dotted module name `path` imports (absolute; relative imports resolved), candidates included: for
    `from a.b import c` both `a.b.c` and `a.b` are returned and the caller keeps those that are modules."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (directly, see the module docstring for what counts)."""
    modules = {}
    for p in packages:
        modules.update(module_names(p))
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in imported_names(path, name, path.name == "__init__.py"):
            while target and target not in modules:  # `from a.b import func`: the module is a.b
                target = target.rpartition(".")[0]
            parent = target
            while parent:  # importing a.b.c runs a/__init__ and a/b/__init__ first
                if parent in modules and parent != name and not name.startswith(parent + "."):
                    edges.add(parent)
                parent = parent.rpartition(".")[0]
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_names_the_circle():
    """The checker itself: it finds a planted circle and names it in order, and passes a tree."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_relative_and_function_level_imports_are_counted(tmp_path, monkeypatch):
    """A relative import inside a function is an edge of the graph, resolved against the module's package."""
    pkg = tmp_path / "pkgx"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    from . import c\n")
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    (pkg / "c.py").write_text("import pkgx.sub.b\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    graph = import_graph(("pkgx",))
    assert graph["pkgx.a"] == {"pkgx.sub", "pkgx.sub.b", "pkgx.c"}
    assert graph["pkgx.sub.b"] == {"pkgx.a"}
    assert graph["pkgx.c"] == {"pkgx.sub", "pkgx.sub.b"}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] == "pkgx.a" and "pkgx.sub.b" in cycle


@pytest.mark.parametrize("package", ["interp", "apps"])
def test_no_import_cycle(package):
    graph = import_graph((package,))
    assert len(graph) > 5  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle)}"


def test_interp_imports_neither_analyses_nor_apps():
    graph = import_graph(("interp", "analyses", "apps"))
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] == "interp"
                 for t in targets if t.split(".")[0] in ("analyses", "apps"))
    assert not bad, "interp must not import analyses or apps: " + "; ".join(bad)


def test_dense_extraction_does_not_import_sae_lens():
    """sae-lens (and transformer-lens under it) take seconds to import: the extraction, encoding and browser modules
    and the CLI import them only once an SAE is loaded, so `interp extract` of dense hooks never pays for them."""
    import subprocess
    import sys

    code = ("import sys, interp.extract, interp.encode, interp.browser, apps.cli; "
            "print(sorted(m for m in ('sae_lens', 'transformer_lens') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
