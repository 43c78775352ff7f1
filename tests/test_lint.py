"""The code passes the linter configured in pyproject.toml (`[tool.ruff]`): the rules its `# noqa`
markers already name. Skipped when ruff is not installed (it is in the `dev` extra)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT


def ruff_command() -> list[str] | None:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    return [found] if found else None


@pytest.mark.slow  # a subprocess
def test_ruff_passes_on_the_package_tests_and_benchmarks():
    command = ruff_command()
    if command is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([*command, "check", "--no-cache", "blockswap", "tests", "benchmarks"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_selects_the_rules_the_noqa_markers_name():
    # A noqa marker only means something if the rule family it names is checked.
    import re

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    selected = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["select"]
    codes = set()
    for folder in ("blockswap", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for marker in re.findall(r"#\s*noqa:\s*([A-Z]+[0-9]+(?:,\s*[A-Z]+[0-9]+)*)", path.read_text()):
                codes.update(c.strip() for c in marker.split(","))
    assert codes, "no noqa markers found: the scan is broken"
    unchecked = sorted(c for c in codes if not any(c.startswith(rule) for rule in selected))
    assert not unchecked, f"noqa markers name rules that ruff does not select: {unchecked}"
