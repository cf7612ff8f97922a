"""No import cycles between the modules of nexus-core and of each plugin.

Every ``import`` counts, at module level and inside functions: a lazy import hides a cycle
from Python, not from a reader, who still has to hold both modules in mind at once.
Imports under ``if TYPE_CHECKING:`` do not count (they are for the type checker only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent

#: Cycles allowed to exist (none: keep it that way). Each entry is the set of modules in one cycle.
KNOWN_CYCLES: list[frozenset[str]] = []


def packages() -> list[Path]:
    """``nexus_core`` and each plugin's package (``plugins/NAME/PKG/__init__.py``)."""
    found = [ROOT / "nexus_core"]
    for init in sorted(ROOT.glob("plugins/*/*/__init__.py")):
        found.append(init.parent)
    return found


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` imports (anywhere but TYPE_CHECKING)."""
    out: set[str] = set()
    base = name if is_package else name.rpartition(".")[0]

    def target(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found = target(alias.name)
                if found:
                    out.add(found)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{anchor}.{node.module}" if node.module else anchor
            else:
                source = node.module or ""
            for alias in node.names:
                found = target(f"{source}.{alias.name}") if f"{source}.{alias.name}" in modules else target(source)
                if found:
                    out.add(found)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(name)
    return out


def import_graph() -> nx.DiGraph:
    """Edges ``a -> b``: module ``a`` imports module ``b`` (both ours)."""
    files: dict[str, tuple[Path, bool]] = {}
    for package in packages():
        for path in package.rglob("*.py"):
            files[module_name(path, package)] = (path, path.name == "__init__.py")
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    names = set(files)
    for name, (path, is_package) in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for dep in imported(tree, name, is_package, names):
            graph.add_edge(name, dep)
    return graph


def cycles(graph: nx.DiGraph) -> list[frozenset[str]]:
    """Each group of modules that import each other, directly or not."""
    return [frozenset(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def describe(graph: nx.DiGraph, group: frozenset[str]) -> str:
    loop = nx.find_cycle(graph.subgraph(group))
    return " -> ".join([a for a, _ in loop] + [loop[0][0]])


def test_the_graph_sees_our_modules_and_their_lazy_imports() -> None:
    graph = import_graph()
    assert "nexus_core.cli.application" in graph
    assert "nexus_core.session" in graph
    # a function-level import counts: the CLI's run command imports the session lazily
    assert nx.has_path(graph, "nexus_core.cli.running", "nexus_core.session")


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()
    new = [c for c in cycles(graph) if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, "import cycles:\n" + "\n".join(describe(graph, c) for c in new)


def test_a_cycle_is_found_even_through_a_lazy_import() -> None:
    tree_a = ast.parse("def f():\n    from pkg import b\n")
    tree_b = ast.parse("import pkg.a\n")
    names = {"pkg", "pkg.a", "pkg.b"}
    graph = nx.DiGraph()
    graph.add_edges_from(("pkg.a", d) for d in imported(tree_a, "pkg.a", False, names))
    graph.add_edges_from(("pkg.b", d) for d in imported(tree_b, "pkg.b", False, names))
    assert cycles(graph) == [frozenset({"pkg.a", "pkg.b"})]
