"""No import cycle anywhere in ``lhtrio``, and no module of the product past about 500 lines
(issue 17).

import-linter checks the layers (``pyproject.toml``); this checks what layers between modules of
one package cannot: that no module imports, however indirectly, a module that imports it back.
Every import counts: inside functions and under ``TYPE_CHECKING`` too (a cycle that only type
checking sees is still two modules that cannot be understood apart). A package's
``__init__`` importing its own children is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lhtrio

ROOT = Path(lhtrio.__file__).resolve().parent


def _module_name(path: Path, root: Path) -> str:
    parts = ["lhtrio", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the lhtrio modules it imports (``from pkg import name`` counts ``pkg.name``
    when that is a module, else ``pkg``)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for imported in targets:
                target = imported
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
        if path.name == "__init__.py":  # a package importing its own children is no cycle
            graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_cycle_through_type_checking(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("from . import a\n")
    (tmp_path / "a.py").write_text("from lhtrio.b import x\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lhtrio.a import A\n"
    )
    (tmp_path / "c.py").write_text("import lhtrio.a\n")
    assert cycles(import_graph(tmp_path)) == [["lhtrio.a", "lhtrio.b"]]


def test_no_module_of_lhtrio_is_in_an_import_cycle() -> None:
    assert cycles(import_graph()) == []


#: Modules of one job stay readable on a few screens; the benchmarks may be longer.
MAX_LINES = 500


def test_no_module_of_the_product_is_longer_than_about_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in ROOT.rglob("*.py")
        if "bench" not in path.relative_to(ROOT).parts
        and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
