"""Reliability (issue 21): teacher weights, latency tables, exports, build arguments, full disks,
signals at worker start-up. Each case is refused with one line naming the bad value."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from blockswap import BlockSwapError
from blockswap.cli import main


def _fake_state(arch: str, classes: int = 7, drop_every: int = 0) -> dict[str, torch.Tensor]:
    """The keys of torchvision `arch` (built on the meta device) with tiny tensors, except a real
    ``fc.weight`` of `classes` rows: enough for a check that only reads the classifier to pass."""
    with torch.device("meta"):
        keys = torchvision.models.__dict__[arch](num_classes=classes).state_dict()
    state = {k: torch.zeros(v.shape) if k.startswith("fc.") else torch.zeros(1) for k, v in keys.items()}
    if drop_every:
        state = {k: v for i, (k, v) in enumerate(state.items()) if i % drop_every or k.startswith("fc.")}
    return state


@pytest.mark.parametrize("arch,drop", [("resnet34", 0), ("resnet18", 2)])
def test_teacher_weights_of_another_architecture_are_refused_by_cost_and_search(tmp_path, capsys, arch, drop):
    weights = tmp_path / "w.pth"
    torch.save(_fake_state(arch, drop_every=drop), weights)
    assert main(["cost", "--model", "torchvision:resnet18", "--teacher-weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "do not fit torchvision resnet18" in err and str(weights) in err and len(err.splitlines()) == 1
    out = tmp_path / "s"
    assert main(["search", "--model", "torchvision:resnet18", "--teacher-weights", str(weights), "--data", "digits",
                 "--budget", "3m", "--samples", "2", "--out", str(out), "--quiet"]) == 2
    assert "do not fit torchvision resnet18" in capsys.readouterr().err
    assert not out.exists()


def test_a_teacher_weights_file_of_the_wrong_shape_names_the_tensor(tmp_path):
    from blockswap.nn.teacher import check_weights

    state = {k: torch.zeros(v.shape) for k, v in torchvision.models.resnet18(num_classes=3).state_dict().items()}
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(BlockSwapError, match=r"'layer2.0.conv1.weight' is \(128, 64, 1, 1\), not \(128, 64, 3, 3\)"):
        check_weights("resnet18", tmp_path / "w.pth")
    del state["layer2.0.conv1.weight"]  # a valid file once the tensor is right
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 3, 3)
    torch.save(state, tmp_path / "w.pth")
    assert check_weights("torchvision:resnet18", tmp_path / "w.pth")[1] == 3


def test_an_unreadable_teacher_weights_file_is_one_line_without_torch_advice(tmp_path, capsys):
    pickled = tmp_path / "model.pth"
    torch.save(nn.Linear(2, 2), pickled)  # a whole pickled module: weights_only refuses it
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file")
    for path in (pickled, garbage):
        assert main(["cost", "--model", "torchvision:resnet18", "--teacher-weights", str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and str(path) in err and "state dict" in err
        assert "weights_only" not in err and "Traceback" not in err


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = torch.relu(self.a(x))
        y = self.b(x) + 1
        return self.fc(y.mean((2, 3)))


def test_module_teacher_gives_the_logits_and_the_named_nodes():
    from blockswap.nn.teacher import module_teacher

    torch.manual_seed(0)
    m = _Tiny().eval()
    teacher = module_teacher(m, ["relu", "add"])
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        logits, points = teacher.forward_intermediates(x)
        relu = torch.relu(nn.functional.conv2d(x, m.a.weight, m.a.bias, padding=1))  # by hand
        add = nn.functional.conv2d(relu, m.b.weight, m.b.bias, stride=2, padding=1) + 1
        torch.testing.assert_close(logits, add.mean((2, 3)) @ m.fc.weight.T + m.fc.bias)
    torch.testing.assert_close(points["relu"], relu)
    torch.testing.assert_close(points["add"], add)
    assert list(points) == ["relu", "add"]


def test_module_teacher_refuses_unknown_nodes_and_needs_nodes_off_resnets():
    from blockswap.nn.teacher import module_teacher

    with pytest.raises(BlockSwapError, match=r"unknown node 'nope' of _Tiny; valid nodes: x, a, relu, b, add"):
        module_teacher(_Tiny(), ["nope"])
    with pytest.raises(BlockSwapError, match="give nodes="):
        module_teacher(_Tiny())
    assert module_teacher(torchvision.models.resnet18(num_classes=3)).stage_names == ("layer1", "layer2", "layer3",
                                                                                      "layer4")


# ---- a full disk (ENOSPC, simulated) ---------------------------------------------------------

SEARCH = {"model": "wrn-10-1", "budget": "40k", "tolerance": 0.2, "candidates": "S,G(4),B(2),BG(2,M/4),G(N),BG(4,M/8)",
          "data": "synthetic", "batch_size": 8, "seed": 3, "input_size": 16, "samples": 2}


def _full_database(monkeypatch, pages: int) -> None:
    """SQLite connections of the results file that may grow to `pages` pages: SQLite's own
    'database or disk is full' (SQLITE_FULL), as on a full disk."""
    import sqlite3

    import blockswap.search.store as store

    connect = sqlite3.connect

    def small(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.execute(f"PRAGMA max_page_count={pages}")
        return db

    monkeypatch.setattr(store.sqlite3, "connect", small)


@pytest.mark.parametrize("pages", [1, 5])  # 1: full while writing the schema; 5: while recording the search
def test_a_search_failing_on_a_full_disk_leaves_nothing_that_blocks_its_rerun(tmp_path, monkeypatch, pages):
    from blockswap import RunOptions, SearchConfig, run_search

    out = tmp_path / "s"
    out.mkdir()
    config = SearchConfig(**{**SEARCH, "samples": 40, "tolerance": 0.9})
    with monkeypatch.context() as m:
        _full_database(m, pages)
        with pytest.raises(BlockSwapError, match=r"(database or disk is full|No space left)"):
            run_search(config, out, run=RunOptions(progress=False))
    assert sorted(p.name for p in out.iterdir()) == []  # no results.sqlite, -wal or -shm
    result = run_search(SearchConfig(**SEARCH), out, run=RunOptions(progress=False))  # the rerun is not refused
    assert result.scored == 2


def test_a_full_disk_while_taking_the_lock_names_the_lock_file(tmp_path, monkeypatch):
    import errno
    import os

    import blockswap.outdir as outdir
    from blockswap.search.run import SEARCH_FOLDER

    def full(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outdir.os, "pwrite", full)
    with pytest.raises(BlockSwapError) as info:
        with outdir.claim_folder(tmp_path / "run", SEARCH_FOLDER):
            pass
    msg = str(info.value)
    assert f"cannot write the lock file '{tmp_path / 'run' / outdir.LOCK_NAME}': No space left on device" in msg
    assert "'?'" not in msg
    assert not (tmp_path / "run").exists()  # created by the claim, removed with its lock file


def test_an_os_error_without_a_path_names_no_placeholder():
    import errno

    from blockswap.errors import os_error

    assert str(os_error(OSError(errno.EIO, "Input/output error"), doing="use")) == "cannot use: Input/output error"


# ---- latency tables ---------------------------------------------------------------------------

def _latency_table(offset: float):
    from blockswap.space.latency import LatencyTable, shape_key
    from blockswap.space.networks import network_spec

    keys = dict.fromkeys(shape_key(s) for s in network_spec("wrn-10-1").slots(16))
    blocks = {k: {"S": 1e-4, "G(4)": 2e-4} for k in keys}  # 3 positions, fastest 0.1 ms each
    return LatencyTable("wrn-10-1", 16, 1, "cpu", "torch", 1, 5e-4, blocks, offset=offset)


def test_a_latency_table_predicting_a_negative_latency_is_refused(tmp_path):
    import json

    from blockswap.space.latency import load_latency_table

    path = tmp_path / "t.json"
    good = _latency_table(-0.7e-3)  # fastest: 0.5 + 3 x 0.1 - 0.7 = 0.1 ms > 0: kept
    good.save(path)
    assert load_latency_table(path).offset == pytest.approx(-0.7e-3)
    data = good.to_dict() | {"offset": -1.0}  # fastest: 0.8 - 1000 ms
    path.write_text(json.dumps(data))
    with pytest.raises(BlockSwapError, match=r"offset -1000.000 ms predicts -999.200 ms for the fastest network"):
        load_latency_table(path)
    with pytest.raises(BlockSwapError, match="a latency must be positive"):
        good.with_offset(-0.8e-3, {})  # fastest exactly 0 ms


def test_latency_table_out_an_existing_folder_is_refused_as_a_folder(tmp_path, capsys):
    folder = tmp_path / "tables"
    folder.mkdir()
    for extra in ([], ["--resume"]):
        assert main(["latency-table", "--model", "wrn-10-1", "--input-size", "16", "--candidates", "S",
                     "--out", str(folder), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert f"--out '{folder}' is a folder; give the table's file name" in err
        assert "--resume" not in err and "does not exist" not in err
    assert list(folder.iterdir()) == []


# ---- export opsets and made data sizes ----------------------------------------------------------

@pytest.mark.parametrize("opset", ["1", "9999"])
def test_export_refuses_an_opset_it_cannot_write(tmp_path, capsys, opset):
    import onnx

    out = tmp_path / "m.onnx"
    assert main(["export", "--model", "wrn-10-1", "--input-size", "16", "--opset", opset, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"blockswap: error: ONNX opset {opset} is not supported; "
                           f"valid opsets: 18..{onnx.defs.onnx_opset_version()}")
    assert not out.exists()


def test_export_writes_the_opset_asked_for(tmp_path):
    import onnx

    from blockswap.export.onnx import export_module

    out = tmp_path / "m.onnx"
    info = export_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (1, 3, 8, 8), out, opset=19)
    written = {o.domain: o.version for o in onnx.load(out).opset_import}
    assert info.opset == written.get("", written.get("ai.onnx")) == 19


@pytest.mark.parametrize("what", ["make-imagefolder", "make-digits-coco"])
def test_data_makers_bound_the_image_size(tmp_path, capsys, what):
    out = tmp_path / "d"
    assert main(["data", what, str(out), "--size", "100000"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "100000" in err
    assert not out.exists()


# ---- build_model arguments ----------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (("wrn-10-1", None, 10**12), "num_classes must be an integer in 1..1,000,000, got 1000000000000"),
    (("wrn-10-1", None, True), "num_classes must be an integer"),
    (("wrn-10-1", b"S,S,S"), "genotype must be a Genotype, .* got bytes"),
    (("wrn-10-1", [1, 2, 3]), "genotype entries must be block type names"),
    ((123,), "name must be a network name"),
])
def test_build_model_names_the_bad_argument(args, needle):
    from blockswap import build_model

    with pytest.raises(BlockSwapError, match=needle):
        build_model(*args)


def test_build_model_refuses_a_network_too_large_to_hold():
    import re

    from blockswap import build_model

    with pytest.raises(BlockSwapError, match="would have") as info:
        build_model("wrn-10-10000")
    params = int(re.search(r"would have ([\d,]+) parameters", str(info.value))[1].replace(",", ""))
    # WRN-10-k: one block per stage of widths 16k, 32k, 64k; its 3x3 convs (c_in x c_out x 9) and
    # 1x1 shortcuts (c_in x c_out) dominate; BN, stem and classifier add under 0.1%.
    k = 10_000
    convs = 9 * (16 * 16 * k + (16 * k) ** 2 + 16 * k * 32 * k + (32 * k) ** 2 + 32 * k * 64 * k + (64 * k) ** 2)
    shortcuts = 16 * 16 * k + 16 * k * 32 * k + 32 * k * 64 * k
    assert convs + shortcuts < params < 1.001 * (convs + shortcuts)


# ---- signals while the workers of a process-executor search start --------------------------------

def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""


def _importing_torch(pid: int) -> bool:
    try:
        return "libtorch" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigint-group", "sigterm", "sigkill"])
def test_workers_die_quietly_when_signalled_during_start_up(tmp_path, how):
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import ROOT

    cmd = [sys.executable, "-m", "blockswap", "search", "--model", "wrn-10-1", "--budget", "40k", "--tolerance",
           "0.2", "--data", "synthetic", "--batch-size", "8", "--input-size", "16", "--samples", "300",
           "--executor", "process", "--score-workers", "2", "--out", str(tmp_path / "s"), "--quiet"]
    # 300 samples: seconds of scoring after start-up, so that a loaded machine whose poll below first
    # sees the workers late still signals a running search, not one already finished.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored across
    # exec: the search would then never see the Ctrl-C. Give it what a terminal gives (a handled
    # signal is reset to the default on exec, an ignored one is not).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, before)
    # Wait (no timing asserted) until both workers are importing torch: the middle of their start-up,
    # after they read what the parent sends first (a kill -9 before that cannot be caught by anyone).
    deadline = time.monotonic() + 120

    def starting() -> bool:
        workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
        return len(workers) == 2 and all(map(_importing_torch, workers))

    while time.monotonic() < deadline and proc.poll() is None and not starting():
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    if how == "sigint-group":  # Ctrl-C in a terminal: the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    _, err = proc.communicate(timeout=300)  # until every worker has closed the stderr pipe
    for noise in ("Traceback", "KeyboardInterrupt", "UnpicklingError", "truncated"):
        assert noise not in err, err
    if how == "sigint-group":
        assert proc.returncode != 0 and err.strip().splitlines()[-1].startswith("blockswap: interrupted"), err
