"""A user's own data objects and teacher module through the Python API (issue 17): the example
of docs/api.md runs as written, and what it trains on is exactly the user's tensors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

import blockswap as bs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _example() -> str:
    section = DOCS.read_text().split("## Your own data and teacher", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_user_objects_example_runs(tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(_example(), scope)
    finally:
        os.chdir(cwd)
    record, search = scope["record"], scope["search"]
    # The search's winner lies in its budget window, counted from the built student's parameters.
    student, desc = bs.load_model(tmp_path / "runs/my-student")
    n = sum(p.numel() for p in student.parameters())
    assert desc.genotype == search.best.text and abs(n - 40_000) <= 0.5 * 40_000
    assert record["params"] == n
    # The teacher was the user's module at its three named nodes, identified by a fingerprint.
    teacher = json.loads((tmp_path / "runs/my-student/record.json").read_text())["teacher"]
    assert teacher["source"] == "module" and teacher["nodes"] == ["s1", "s2", "s3"] and teacher["fingerprint"]
    assert record["history"][0]["train_at_loss"] > 0
    assert record["data"].startswith("tensors:") and record["history"][0]["train_images"] == 64
    # evaluate on the user's val pair = an independent top-1 count on those 32 images.
    data = scope["data"]
    images, labels = data["val"]
    err = bs.evaluate(student, data)["top1_error"]
    split = bs.load_split(data, "val", 32)
    x, y = next(iter(split.batches(32)))
    assert torch.equal(y, labels)
    with torch.no_grad():
        hits = (student.eval()(x).argmax(1) == labels).sum().item()
    assert abs(err - 100 * (1 - hits / 32)) < 1e-9
    assert abs(record["top1_error"] - err) < 1e-9
