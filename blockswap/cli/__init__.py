"""The ``blockswap`` command.

One module per command (``cli/blocks.py``, ``cost.py``, ``search.py``, ``train.py``,
``evaluate.py``, ``report.py``), each with `register(subparsers)`. Errors in user input are
`BlockSwapError`s: printed as one line, exit status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import BlockSwapError

# Modules that define `register(subparsers)`; listed here so `blockswap --help` shows them all.
COMMAND_MODULES = ("blocks", "cost", "search", "train", "evaluate", "report")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
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
        return int(args.func(args) or 0)
    except BlockSwapError as exc:
        print(f"blockswap: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blockswap: interrupted; finished work is saved (rerun with --resume where offered)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
