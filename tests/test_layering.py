"""Who imports whom in mtl/: no import cycles (module-level and function-level imports alike), and the
library layers (models, balancers, data, metrics) never reach up into the engine, the benchmarks or the
command-line edges."""

import ast
import pathlib

import mtl

ROOT = pathlib.Path(mtl.__file__).parent
UPPER = ("mtl.train", "mtl.bench", "mtl.cli", "mtl.config", "mtl.rundir")
LOWER = ("mtl.models", "mtl.balancers", "mtl.data", "mtl.metrics")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imported(path: pathlib.Path, name: str, modules) -> set[str]:
    """The mtl modules ``path`` imports anywhere in its body: ``from mtl.a import b`` is ``mtl.a.b`` when
    that is a module, else ``mtl.a``; relative imports are resolved against the importing package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # import mtl.a.b.c (an attribute path) -> the module that defines it
                t = t.rpartition(".")[0]
            if (t == "mtl" or t.startswith("mtl.")) and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_sees_the_known_edges():
    graph = import_graph()
    assert len(graph) > 80
    assert "mtl.rundir" in graph["mtl.train.run"] and "mtl.config" in graph["mtl.train.run"]
    assert "mtl.bench.results" in graph["mtl.bench.figures"]  # module level
    assert "mtl.bench.figures" in graph["mtl.bench.report"]  # inside a function
    assert "mtl.balancers" in graph["mtl.config"]  # `import mtl.balancers as mb` inside a function


def test_find_cycle_on_small_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "d"}, "b": set(), "d": {"d2"}, "d2": {"d"}}) == ["d", "d2", "d"]


def test_no_import_cycles_in_mtl():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_library_layers_never_import_the_edges():
    bad = [f"{m} imports {t}" for m, targets in import_graph().items() if m.startswith(LOWER)
           for t in targets if t.startswith(UPPER)]
    assert not bad, bad
