"""The package shows the architecture: data flows one way, no module imports another in a cycle,
the search space is pure (no torch), and files stay small. Checked on the source, statically."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "blockswap"

# Layers, lowest first: a module may import its own package and the layers below it only.
LAYERS = [
    {"errors", "_version"},
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


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of `package` under the name its importers use: a package by its own name
    (the root package is `blockswap`, not `blockswap.__init__`, because that is what
    `from . import x` in a submodule resolves to)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package.name, *parts])] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Every module of `name`'s top package that `name` imports (top level or inside functions)."""
    root = name.split(".")[0]
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
        found.update(c for c in candidates if c == root or c.startswith(root + "."))
    return found


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(package)
    return {name: {t for t in imports(name, path) if t in mods and t != name} for name, path in mods.items()}


def top(module: str) -> str:
    """The layer name of a module: its first subpackage, `__init__` for the root package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    found = [i for i, group in enumerate(LAYERS) if top(module) in group]
    assert found, f"{top(module)!r} is in no layer of LAYERS"
    return found[0]


def violations(package: Path = PACKAGE) -> list[str]:
    """Imports of a layer above, or of another package of the same layer."""
    bad = []
    for module, targets in graph(package).items():
        for t in targets:
            if top(t) == top(module):
                continue  # a package may import its own modules
            if layer(t) >= layer(module):
                bad.append(f"{module} imports {t}")
    return sorted(bad)


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
    bad = violations()
    assert not bad, "\n".join(bad)


def test_every_package_has_a_layer():
    tops = {top(name) for name in modules()}
    missing = tops - set().union(*LAYERS)
    assert not missing, f"add {sorted(missing)} to LAYERS"
    assert {"tasks", "registry"} <= set().union(*LAYERS)


def test_the_root_package_is_walked_under_the_name_its_importers_use():
    mods = modules()
    assert "blockswap" in mods and "blockswap.__init__" not in mods
    assert mods["blockswap"] == PACKAGE / "__init__.py"


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "blockswap"
    for rel, text in {"__init__.py": "from .errors import E\n", "errors.py": "E = 1\n", **files}.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    return package


@pytest.mark.parametrize("line", ["from . import __version__", "from .. import __version__",
                                  "import blockswap", "from blockswap import thing"])
def test_an_import_of_the_root_package_from_below_is_reported(tmp_path, line):
    # files.py did `from . import __version__` (layer 1 importing the top) and the walk dropped it.
    where = "data/load.py" if line.startswith("from ..") else "files.py"
    package = _fake_package(tmp_path, {where: f"def f():\n    {line}\n", "data/__init__.py": ""})
    module = "blockswap." + where[:-3].replace("/", ".")
    assert violations(package) == [f"{module} imports blockswap"]


def test_a_clean_fake_package_has_no_violations(tmp_path):
    package = _fake_package(tmp_path, {"files.py": "from .errors import E\n", "data/__init__.py": "",
                                       "data/load.py": "from ..files import x\nfrom . import spec\n",
                                       "data/spec.py": ""})
    assert violations(package) == []
    assert graph(package)["blockswap.data.load"] == {"blockswap.files", "blockswap.data", "blockswap.data.spec"}


def test_a_same_layer_import_between_packages_is_reported(tmp_path):
    package = _fake_package(tmp_path, {"space/__init__.py": "from ..data import load\n",
                                       "data/__init__.py": "", "data/load.py": ""})
    assert violations(package) == ["blockswap.space imports blockswap.data", "blockswap.space imports blockswap.data.load"]


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


def test_no_test_file_imports_another_test_file():
    # Shared pieces live in tests/helpers.py; a test file imported by another runs its module-level
    # code twice and couples two files' fixtures.
    tests = Path(__file__).resolve().parent
    bad = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names if not node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad += [f"{path.name}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[-1].startswith("test_") or n.startswith("tests.test_")]
    assert not bad, "\n".join(bad)


def test_the_version_is_written_in_one_place(capsys):
    import re

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    import blockswap
    from blockswap._version import __version__
    from blockswap.cli import main

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "blockswap._version.__version__"}
    written = [name for name, path in modules().items() if re.search(r"^__version__\s*=", path.read_text(), re.M)]
    assert written == ["blockswap._version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__) and blockswap.__version__ == __version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"blockswap {__version__}"
