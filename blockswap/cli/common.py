"""Help strings and argument types shared by several commands."""

from __future__ import annotations

import argparse
from typing import Callable

DATA_HELP = "cifar10:PATH, cifar100:PATH, imagenet:PATH, digits (bundled) or synthetic"
DEVICE_HELP = "cpu, cuda, cuda:1 (default: cuda if present)"
OVERWRITE_HELP = "delete the results already in --out and start again (default: refuse such a folder)"


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, else argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}; give an integer >= {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive = integer(1)  # counts: samples, workers, threads, batch sizes, rows, epochs
non_negative = integer(0)  # seeds
