"""How the packages import each other: no cycle, the query path clear of the build pipeline, and the
refsearch library clear of colorize (which builds on it)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("refsearch", "colorize")
# What reads an index must not load what writes one.
BUILD_PIPELINE = ("refsearch.build", "refsearch.writer", "refsearch.removal", "refsearch.pca_sample",
                  "refsearch.engines", "refsearch.batch_query")
# refsearch's applications, which import both packages; the rest of refsearch is the library colorize uses.
APPLICATIONS = ("refsearch.cli", "refsearch.server")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, whether it is a package's __init__)."""
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under `if TYPE_CHECKING:`, which never run."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return hidden


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports, at module level or inside functions (importing a
    module runs its packages' __init__ too)."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text())
        hidden = _type_checking_only(tree)
        own_package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = own_package.split(".")[:len(own_package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in modules else base)
        graph[name] = {ancestor for target in targets for ancestor in _ancestors(target)
                       if ancestor in modules and ancestor not in _ancestors(name)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    order, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in order:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], order[successor])
        if low[node] == order[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return found


def test_the_walker_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert "refsearch.search" in graph["refsearch.engines.requests"]  # imports inside functions count
    assert cycles(graph) == []


def test_the_refsearch_library_never_imports_colorize():
    graph = import_graph()
    library = [name for name in graph if name.startswith("refsearch")
               and not any(name == app or name.startswith(app + ".") for app in APPLICATIONS)]
    assert {name: sorted(t for t in graph[name] if t.startswith("colorize"))
            for name in library if any(t.startswith("colorize") for t in graph[name])} == {}


def test_the_query_path_statically_reaches_no_module_of_the_build_pipeline():
    graph = import_graph()
    reached, todo = set(), ["refsearch.search"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    assert sorted(name for name in reached if name.startswith(BUILD_PIPELINE)) == []


def test_opening_an_index_and_searching_it_loads_no_module_of_the_build_pipeline(demo_index_path, demo_queries):
    script = ("import json, sys, refsearch\n"
              f"with refsearch.Index.open({str(demo_index_path)!r}) as index:\n"
              f"    index.search({str(demo_queries[0])!r}, k=3)\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('refsearch'))))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=REPO)
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert "refsearch.search" in loaded and "refsearch.network" in loaded
    assert [name for name in loaded if name.startswith(BUILD_PIPELINE)] == []
