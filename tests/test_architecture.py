"""The package shows the architecture: data flows one way, no module imports another in a cycle,
the search space is pure (no torch), and files stay small. Checked on the source, statically."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "blockswap"

# Layers, lowest first: a module may import its own package and the layers below it only.
LAYERS = [
    {"errors"},
    {"files", "seeding", "progress", "outdir", "devices", "registry", "fields", "workers"},
    {"space", "data"},
    {"nn"},
    {"proxies"},
    {"tasks"},
    {"search", "train"},
    {"experiments"},
    {"report", "export"},
    {"cli"},
    {"__init__", "__main__"},
]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(["blockswap", *parts])] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Every blockswap module `name` imports (top level or inside functions)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[:len(base) - node.level + 1]
                target = ".".join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("blockswap"))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {t for t in imports(name, path) if t in mods and t != name} for name, path in mods.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, group in enumerate(LAYERS) if top in group)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in g[node]:
            # A package's __init__ importing its own submodules is not a cycle of concepts.
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in g:
        if node not in state:
            visit(node, [node])


def test_data_flows_one_way():
    bad = []
    for module, targets in graph().items():
        if module == "blockswap":
            continue
        top = module.split(".")[1]
        for t in targets:
            other = t.split(".")[1] if t != "blockswap" else "__init__"
            if other == top:
                continue
            if layer(t) > layer(module) or (layer(t) == layer(module)):
                bad.append(f"{module} imports {t}")
    assert not bad, "\n".join(bad)


def test_space_is_pure():
    # The search space is a description: no torch, no modules.
    for name, path in modules().items():
        if name.startswith("blockswap.space"):
            tree = ast.parse(path.read_text())
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                      and not n.level}
            assert "torch" not in names, name


def test_files_stay_small():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 400}
    assert not long, long
