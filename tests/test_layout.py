"""The package's shape: no import cycles, no private names across modules, a small top level."""

import ast
import subprocess
import sys
from pathlib import Path

import biounet

PACKAGE = Path(biounet.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(module, names) of every biounet import in a file, function-level ones included."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if is_type_checking(node) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "biounet":
                continue
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in known]
            found.append((node.module, names))
            found += [(s, []) for s in subs]
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("biounet.")]
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, _ in imports(path, known):
            if target in known and target != name:
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports, ignoring package __init__ modules that only hold docstrings."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == "biounet":  # the lazy top-level __init__ (only __version__)
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_inside_the_package():
    assert find_cycle(graph()) is None


def test_no_private_name_is_imported_from_another_module():
    mods = modules()
    bad = []
    for name, path in mods.items():
        for target, names in imports(path, set(mods)):
            bad += [f"{name} imports {target}.{n}" for n in names if n.startswith("_")]
    bad = [b for b in bad if not b.endswith(".__version__")]
    assert not bad


def test_at_most_ten_modules_at_the_top_and_the_subpackages_by_role():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 10, top
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {"network", "inference", "training", "evaluation", "io", "viz", "cli"} <= subpackages


def test_command_line_help_does_not_import_torch():
    code = "import sys, biounet.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


#: The layers, lowest first: a module imports only from its own subpackage and lower
#: layers (issue 21: no upward imports such as inference -> viz or options -> inference).
LAYERS = [
    {"biounet", "errors", "plain", "limits"},  # "biounet": the lazy top level (__version__)
    {"signals", "io"},
    {"options"},
    {"device", "synthetic"},
    {"network"},
    {"inference", "evaluation"},
    {"training"},
    {"viz"},
    {"napari", "cli"},
    {"__main__"},
]


def layer(module: str) -> int:
    parts = module.split(".")
    group = parts[1] if len(parts) > 1 else "biounet"
    return next(i for i, names in enumerate(LAYERS) if group in names)


def test_no_upward_imports():
    upward = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in targets
        if a.split(".")[:2] != b.split(".")[:2] and layer(b) >= layer(a) and b != "biounet"
    ]
    assert upward == []
