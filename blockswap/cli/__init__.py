"""The ``blockswap`` command.

One module per command (``cli/blocks.py``, ``cost.py``, ``search.py``, ``train.py``,
``evaluate.py``, ``report.py``), each with `register(subparsers)`. Errors in user input are
`BlockSwapError`s: printed as one line, exit status 2, never a stack trace. An `OSError` or
SQLite error that reaches `main` (each command turns the ones it foresees into a
`BlockSwapError` first) is printed the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys

from ..errors import BlockSwapError, os_error
from ..outdir import calling_interface

# Modules that define `register(subparsers)`; listed here so `blockswap --help` shows them all.
COMMAND_MODULES = ("blocks", "cost", "search", "train", "evaluate", "report", "experiment", "export", "benchmark",
                   "latency", "data")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (``--help`` shows the usage). No
    abbreviations: ``--sample 5`` is refused, not read as ``--samples 5`` (a later flag
    starting the same way would silently change its meaning). Subcommand parsers are made
    by `add_parser` with this class, so the rule holds for all of them."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"blockswap: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = _Parser(
        prog="blockswap",
        description="Shrink a CNN to a budget by Fisher-guided block substitution (BlockSwap, ICLR 2020).")
    parser.add_argument("--version", action="version", version=f"blockswap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with calling_interface("cli"):  # folder refusals name --resume / --overwrite, not keywords
            return int(args.func(args) or 0)
    except BlockSwapError as exc:
        print(f"blockswap: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the last net: a path problem the commands did not foresee
        print(f"blockswap: error: {os_error(exc, doing='use')}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"blockswap: error: results file: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blockswap: interrupted; finished work is saved (rerun with --resume where offered)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
