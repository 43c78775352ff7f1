"""Every `blockswap ...` command shown in README.md and docs/cli.md still parses with the CLI's
own parser (so no flag in the docs can drift from the code), and the cheap ones run for real,
scaled down (3 samples, 1 epoch) in a temporary folder."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/cli.md")
pytestmark = pytest.mark.slow

# Commands the docs show that this test cannot parse as one `blockswap` command line, and why.
SKIP = {
    "torchrun": "a torchrun launch (data parallel over processes): its blockswap part is elided",
}
# What an elided command ("blockswap search ... --budget macs=90M") needs to parse: the
# required flags of its subcommand, put where the "..." stands.
FILL = {
    "search": ["--data", "digits", "--out", "runs/elided"],
    "train student": ["--teacher", "runs/teacher", "--genotype", "G(4)", "--data", "digits", "--out", "runs/elided"],
    "train detector": ["--genotype", "uniform:G(N)", "--data", "coco:runs/elided", "--out", "runs/elided"],
    "train teacher": ["--data", "digits", "--out", "runs/elided"],
}
# Scaled-down values for the commands run for real.
SCALE = {"--samples": "3", "--epochs": "1"}


def _commands(doc: str) -> list[tuple[int, str]]:
    """(line number, command) of each command line in the doc's bash code blocks, with
    backslash continuations joined."""
    out, in_block, pending, start = [], False, "", 0
    for n, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block and line.strip() in ("```bash", "```sh", "```console")
            continue
        if not in_block:
            continue
        if not pending:
            start = n
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if pending.strip():
                out.append((start, pending.strip()))
            pending = ""
    return out


def _argv(command: str) -> list[str] | None:
    """The arguments after `blockswap` (or `python -m blockswap`), comments dropped; None when
    the line is not a blockswap command."""
    words = shlex.split(command, comments=True)
    for head in (["blockswap"], ["python", "-m", "blockswap"]):
        if words[:len(head)] == head:
            return words[len(head):]
    return None


def _filled(argv: list[str]) -> list[str]:
    if "..." not in argv:
        return argv
    at = argv.index("...")
    key = " ".join(argv[:2]) if " ".join(argv[:2]) in FILL else argv[0]
    return argv[:at] + FILL.get(key, []) + argv[at + 1:]


def _shown(command: str) -> bool:
    """A blockswap command line (pip, pytest, python -c and comment lines are not)."""
    return _argv(command) is not None or command.split()[0] in SKIP


ALL = [(doc, n, c) for doc in DOCS for n, c in _commands(doc) if _shown(c)]


def test_the_docs_show_commands():
    shown = [c for _, _, c in ALL if _argv(c) is not None]
    assert len(shown) > 20, shown
    subcommands = {_argv(c)[0] for c in shown if _argv(c)}
    # Every subcommand of the CLI is shown somewhere in the docs.
    from blockswap.cli import COMMAND_MODULES

    names = {"latency": "latency-table"}
    assert {names.get(m, m) for m in COMMAND_MODULES} <= subcommands


@pytest.mark.parametrize("doc,line,command", ALL, ids=[f"{d}:{n}" for d, n, _ in ALL])
def test_every_documented_command_parses(doc, line, command, capsys):
    first = command.split()[0]
    if first in SKIP:
        pytest.skip(SKIP[first])
    argv = _argv(command)
    from blockswap.cli import build_parser

    try:
        build_parser().parse_args(_filled(argv))
    except SystemExit as exc:  # argparse's one-line usage error
        pytest.fail(f"{doc}:{line}: {command!r} does not parse ({exc.code}): {capsys.readouterr().err.strip()}")


def _cheap(argv: list[str]) -> bool:
    """Commands that run in seconds on the bundled digits, with nothing needed beforehand."""
    if "..." in argv or not argv:
        return False
    if argv[0] == "blocks":
        return True
    if argv[0] == "cost":
        return "--checkpoint" not in argv
    if argv[0] == "search":
        value = dict(zip(argv, argv[1:]))
        return value.get("--data") == "digits" and "--executor" not in argv and "--task" not in argv \
            and not value.get("--model", "").startswith("torchvision:")
    return argv[:2] == ["report", "search"]


INPUTS = ("--genotype", "--checkpoint", "--latency-table", "--teacher", "--teacher-weights", "--candidates")


def _missing_input(argv: list[str]) -> bool:
    values = [v for flag, v in zip(argv, argv[1:]) if flag in INPUTS]
    if argv[:2] == ["report", "search"]:
        values.append(argv[2])
    return any(("/" in v or v.endswith((".json", ".pth", ".pt", ".csv", ".txt"))) and not Path(v).exists() for v in values)


def _scaled(argv: list[str]) -> list[str]:
    return [SCALE.get(prev, word) if prev in SCALE else word for prev, word in zip(["", *argv], argv)]


@pytest.mark.parametrize("doc", DOCS)
def test_the_cheap_documented_commands_run(doc, tmp_path, monkeypatch, capsys):
    from blockswap.cli import main

    monkeypatch.chdir(tmp_path)  # the docs' relative runs/... folders land here
    ran = []
    for line, command in _commands(doc):
        argv = _argv(command)
        if argv is None or not _cheap(argv):
            continue
        if _missing_input(argv):
            continue  # it reads a file of a command not run here (a checkpoint, your own genotype)
        argv = _scaled(argv)
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, f"{doc}:{line}: {' '.join(argv)} exited {code}: {out.err.strip()}"
        ran.append(argv[0])
    assert ran, f"no cheap command in {doc}"
    if doc == "README.md":  # the tour: a search on digits and its report really run
        assert {"blocks", "cost", "search", "report"} <= set(ran), ran
