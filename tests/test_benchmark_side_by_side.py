"""benchmarks/side_by_side.py at the tiniest scale: every part runs and prints every row it names.
The structure of the output only; no timed assertion."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
side_by_side = pytest.importorskip("side_by_side")

TINY = ["--model", "wrn-10-1", "--budget", "40k", "--input-size", "16", "--batch", "8", "--candidates", "1",
        "--search-samples", "3", "--search-repeats", "1", "--screen-keep", "2", "--train-model", "wrn-10-1",
        "--train-size", "16", "--train-steps", "2", "--threads", "1", "--profile"]


def test_every_part_prints_its_rows(capsys):
    threads = torch.get_num_threads()
    try:
        out = side_by_side.main(TINY)
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("CPU: ") and "torch " in lines[0]

    def row(name):
        return [line for line in lines if line.startswith(name)]

    for name in ("naive ", "default ", "bf16 ", "exhaustive ", "screened "):
        assert row(name), f"no row {name!r} in:\n{text}"
    assert "screened winner == exhaustive winner: " in text
    assert set(out["scoring"]) == {"naive", "default", "bf16"}
    assert all(len(v) == 1 and v[0] > 0 for v in out["scoring"].values())
    assert all(v[0] > 0 for k, v in out["search"].items() if k != "same_winner")

    if out["training"] is None:
        assert "bf16 columns skipped" in text
    else:
        for model in ("teacher (CE)", "student (CE + AT)"):
            assert [p for p in ("float32", "bf16") if any(p in line for line in row(model))] == ["float32", "bf16"]
            assert all(len(v) == 2 and min(v) > 0 for v in out["training"][model].values())

    for name in ("build (construction + init)", "memory-format conversion", "forward kernels", "backward kernels",
                 "everything else", "total (wall"):
        assert row(name), f"no row {name!r} in the profile:\n{text}"
    assert row("aten::"), "no operator in the profile's top list"
    prof = out["profile"]
    assert prof["wall"] > 0 and prof["forward"] > 0 and prof["backward"] > 0 and prof["build"] > 0
    assert prof["build"] + prof["memory_format"] + prof["forward"] + prof["backward"] <= prof["wall"]
