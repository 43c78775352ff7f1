import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads():
    # Two cores on the CI machine: keep each test to the physical cores.
    torch.set_num_threads(2)
    yield


def run_cli(*args: str):
    """Run `python -m blockswap ARGS` in a subprocess; return the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "blockswap", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
