"""The layers of the package, checked from the modules' own imports.

core < config < store < (guard, imports, facts) < (pbx, evidence, scrub) < http
< service < cli, with `logs` usable from anywhere. A module may import its own layer's
package or a lower layer, never a higher one nor a sibling of its own rank:
that is what lets the pure rules be read, tested and replayed without a
store, a PBX or a command line, and what keeps import circles out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "agi" / "sentinelle"

# package (or top-level module) -> rank
LAYERS: dict[str, int] = {
    "sentinelle.logs": 0,
    "sentinelle.core": 1,
    "sentinelle.config": 2,
    "sentinelle.store": 3,
    "sentinelle.guard": 4,
    "sentinelle.imports": 4,
    "sentinelle.facts": 4,
    "sentinelle.pbx": 5,
    "sentinelle.evidence": 5,
    "sentinelle.scrub": 5,
    "sentinelle.http": 6,  # above evidence (explain) and scrub, below the service that starts it
    "sentinelle.service": 7,
    "sentinelle.cli": 8,
}
EVERYWHERE = {"sentinelle", "sentinelle.logs"}  # the version string and the log helpers


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str | None:
    """The layer unit a module belongs to (its package, or itself)."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every sentinelle import."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are module level too
        if isinstance(node, ast.If):
            top |= {id(n) for n in node.body}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module in ("sentinelle", *LAYERS):  # from sentinelle.cli import decide
                names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "sentinelle" or name.startswith("sentinelle."):
                out.append((name, id(node) in top))
        assert not (isinstance(node, ast.ImportFrom) and node.level), \
            f"{path}: relative import; use absolute sentinelle.* imports"
    return out


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_module_is_in_a_layer():
    for path in MODULES:
        name = module_name(path)
        assert name == "sentinelle" or unit(name) is not None, f"{name} has no layer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_go_down_the_layers(path):
    me = module_name(path)
    mine = unit(me)
    if mine is None:
        return
    for imported, _ in imports_of(path):
        other = unit(imported)
        if imported in EVERYWHERE or other is None or other == mine:
            continue
        assert LAYERS[other] < LAYERS[mine], (
            f"{me} (layer {mine}) imports {imported} (layer {other}): only lower layers may be imported")


def test_no_import_circle():
    """Module-level imports form no cycle (lazy imports inside functions are
    allowed for heavy optional parts, but never to dodge a circle)."""
    graph: dict[str, set[str]] = {}
    names = {module_name(p) for p in MODULES}
    for path in MODULES:
        deps = set()
        for imported, top in imports_of(path):
            if not top:
                continue
            while imported not in names and "." in imported:  # from x.y import name
                imported = imported.rsplit(".", 1)[0]
            if imported in names and imported != module_name(path):
                deps.add(imported)
        graph[module_name(path)] = deps
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            if dep.startswith(node + ".") or node == "sentinelle":
                continue  # a package's __init__ re-exporting its own modules
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join([*trail, node, dep]))
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_a_higher_layer_import_is_caught(tmp_path):
    """The check above can fail: a core module importing the store is reported."""
    bad = ROOT / "core" / "_probe_layers.py"
    bad.write_text("from sentinelle.store import Store\n")
    try:
        with pytest.raises(AssertionError, match="only lower layers"):
            test_imports_go_down_the_layers(bad)
    finally:
        bad.unlink()
