"""The package's layout: no import cycle between align's modules (counting imports inside functions), and no
module importing another package's private module (``align.engine`` may not import ``align.metrics._ridge``).

Run ``python -m pytest tests/test_layout.py -q`` to check; a failure names the cycle or the private import."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "align"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the align modules it imports anywhere in its body (``from align.x import y`` counts ``align.x``,
    or ``align.x.y`` when that is a module)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                found |= {t for t in targets if t in modules} or {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _package_graph(graph):
    """package -> packages it imports, a package's __init__ re-exporting its own modules not counted."""
    out = {}
    for m, targets in graph.items():
        out.setdefault(_package(m), set()).update(_package(t) for t in targets if _package(t) != _package(m))
    return out


def test_no_import_cycle_between_modules():
    graph = _imports()
    # a package's __init__ re-exports its modules, which import each other through it by public name: follow a
    # public name to the module that defines it instead of to the __init__ (that edge is not a dependency of code)
    inits = {m for m in graph if (ROOT.parent / m.replace(".", "/") / "__init__.py").exists()}
    code = {m: {t for t in ts if t not in inits or not m.startswith(t + ".")} for m, ts in graph.items()}
    assert _cycle(code) is None, f"import cycle: {' -> '.join(_cycle(code))}"


def test_no_private_module_imported_from_another_package():
    bad = [(m, t) for m, ts in _imports().items() for t in ts
           if t.rsplit(".", 1)[-1].startswith("_") and _package(t) != _package(m) and t != "align._version"
           and _package(t).count(".") == 1 and not t.startswith("align._")]
    assert not bad, "private modules imported across packages:\n" + "\n".join(f"  {m} imports {t}" for m, t in bad)


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_packages():
    packages = _package_graph(_imports())
    assert _cycle(packages) is None, f"package import cycle: {' -> '.join(_cycle(packages))}"
    assert packages["align.stats"] <= {"align._locks"}, "align.stats is the bottom layer: it imports no align package"
