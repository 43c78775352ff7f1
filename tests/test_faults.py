"""Fault injection: what a user gets when a path, a device, the disk, a second process or the
training itself goes wrong. Every case checks the exit status (or exception), the one-line
message, and that the files the user already had are unchanged.

Runs are tiny (WRN-10-1 on 16x16 synthetic images; 4-candidate WRN-16-1 searches).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import blockswap.files as files
from blockswap import BlockSwapError, RunOptions, SearchConfig, run_search
from blockswap.outdir import LOCK_NAME
from blockswap.report import load_records, run_groups, search_table
from blockswap.train import ModelDesc, load_checkpoint, recipe, train_model
from helpers import ROOT, one_line_error, run_cli

TINY = dict(batch_size=64, cutout=8, eval_batch_size=128)
MODEL = ModelDesc("blockswap", "wrn-10-1", input_size=16)
SEARCH = dict(model="wrn-16-1", budget="60k", samples=4, data="synthetic", batch_size=16)
QUIET = RunOptions(progress=False)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`: 'unchanged' means equal snapshots."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    run_search(SearchConfig(**SEARCH), out, run=QUIET)
    return out


# ---- 1. a wrong answer without a warning -------------------------------------------------------

def _record(path: Path, seed: int, epochs: int, top1: float) -> None:
    path.mkdir(parents=True)
    (path / "record.json").write_text(json.dumps({
        "format": "blockswap.run", "version": 1, "role": "teacher", "data": "digits", "teacher": None,
        "model": {"kind": "blockswap", "name": "wrn-16-2", "genotype": None, "num_classes": 10, "input_size": 32},
        "config": {"epochs": epochs, "lr": 0.1, "seed": seed, "workers": 4, "recipe": "digits"},
        "genotype": None, "params": 1000, "macs": 2000, "top1_error": top1, "top5_error": 0.0,
        "seeds": {"run": seed}}))


def test_runs_that_differ_in_more_than_their_seed_are_not_averaged(tmp_path):
    _record(tmp_path / "a", seed=0, epochs=1, top1=90.0)
    _record(tmp_path / "b", seed=0, epochs=2, top1=86.6)
    _record(tmp_path / "c", seed=1, epochs=2, top1=80.0)
    _record(tmp_path / "copy_of_c", seed=1, epochs=2, top1=80.0)  # the same run twice
    groups = {g["setting"]: g for g in run_groups(load_records([tmp_path]))}
    assert set(groups) == {"epochs=1", "epochs=2"}
    assert groups["epochs=1"]["runs"] == 1 and groups["epochs=1"]["top1_error"] == 90.0
    two = groups["epochs=2"]
    assert two["runs"] == 2 and two["seeds"] == [0, 1]  # seed 1 counted once
    assert two["top1_error"] == pytest.approx((86.6 + 80.0) / 2)
    assert two["top1_std"] == pytest.approx(abs(86.6 - 80.0) / 2 ** 0.5)  # sample std of two values
    assert len(two["repeats"]) == 1
    proc = run_cli("report", "runs", str(tmp_path))
    assert proc.returncode == 0 and "epochs=1" in proc.stdout and "counted once" in proc.stdout


def test_report_search_ranks_the_store_not_a_damaged_csv(search_dir, tmp_path):
    import shutil

    folder = tmp_path / "s"
    shutil.copytree(search_dir, folder)
    winner = ",".join(json.loads((folder / "winner.json").read_text())["blocks"])
    csv_lines = (folder / "candidates.csv").read_text().splitlines()
    (folder / "candidates.csv").write_text("\n".join(csv_lines[:1] + csv_lines[-1:]) + "\n")  # truncated
    assert search_table(folder).ranked()[0]["genotype"] == winner
    proc = run_cli("report", "search", str(folder), "--json")
    assert json.loads(proc.stdout)["top"][0]["genotype"] == winner


def test_a_diverging_run_stops_keeps_its_last_good_checkpoint_and_valid_json(tmp_path, monkeypatch):
    """After epoch 1 every weight is set to NaN, as a too-large step would."""
    steps = {"n": 0}
    real_step = torch.optim.SGD.step

    def poisoned_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] > 8:  # 512 images / 64 per step = 8 steps per epoch
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned_step)
    with pytest.raises(BlockSwapError, match=r"training diverged \(epoch 2.*checkpoint of epoch 1 is kept"):
        train_model(recipe("cifar", epochs=3, **TINY), "synthetic", tmp_path, MODEL, progress=False)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    assert not (tmp_path / "record.json").exists()


def test_cli_divergence_is_an_error_and_leaves_nothing_that_blocks_a_rerun(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "teacher", "--model", "wrn-10-1", "--input-size", "16", "--data", "synthetic",
                   "--out", str(out), "--epochs", "1", "--batch-size", "64", "--lr", "1e30", "--quiet")
    one_line_error(proc, "training diverged", "--lr")
    assert not (out / "record.json").exists() and not (out / "checkpoint.pt").exists()
    for path in out.rglob("*.json*") if out.exists() else []:
        for line in path.read_text().splitlines():
            json.loads(line)  # strict JSON: no bare NaN


def test_json_files_never_hold_bare_nan(tmp_path):
    files.atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.5]})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {"a": None, "b": [None, 1.5]}


# ---- 2. finished work replaced silently ---------------------------------------------------------

def test_a_run_folder_without_its_checkpoint_is_not_replaced(tmp_path):
    train_model(recipe("cifar", epochs=1, **TINY), "synthetic", tmp_path, MODEL, progress=False)
    (tmp_path / "checkpoint.pt").unlink()
    before = snapshot(tmp_path)
    args = ["train", "teacher", "--model", "wrn-10-1", "--input-size", "16", "--data", "synthetic",
            "--out", str(tmp_path), "--epochs", "1", "--batch-size", "64", "--quiet"]
    one_line_error(run_cli(*args), "already holds a training run", "record.json", "--overwrite")
    one_line_error(run_cli(*args, "--resume"), "cannot resume", "checkpoint.pt")
    assert snapshot(tmp_path) == before
    proc = run_cli(*args, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "checkpoint.pt").exists()


def test_a_search_folder_without_its_results_file_is_not_replaced(search_dir, tmp_path):
    import shutil

    folder = tmp_path / "s"
    shutil.copytree(search_dir, folder)
    (folder / "results.sqlite").unlink()
    before = snapshot(folder)
    with pytest.raises(BlockSwapError, match="already holds a search .*winner.json"):
        run_search(SearchConfig(**SEARCH), folder, run=QUIET)
    with pytest.raises(BlockSwapError, match="cannot resume .*results.sqlite"):
        run_search(SearchConfig(**SEARCH), folder, run=QUIET, resume=True)
    assert snapshot(folder) == before
    again = run_search(SearchConfig(**SEARCH), folder, run=QUIET, overwrite=True)
    assert again.best.text == ",".join(json.loads((search_dir / "winner.json").read_text())["blocks"])


# ---- 3. two processes, one folder ---------------------------------------------------------------

HOLD = """
import sys, time
from blockswap.outdir import claim_folder
from blockswap.search.run import SEARCH_FOLDER
with claim_folder(sys.argv[1], SEARCH_FOLDER):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_locked_folder_is_refused_at_once_and_freed_by_kill_9(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BlockSwapError, match=f"{tmp_path}.* is in use by another blockswap run .process {holder.pid}"):
            run_search(SearchConfig(**SEARCH), tmp_path, run=QUIET)
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # nothing written but the holder's lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = run_search(SearchConfig(**SEARCH), tmp_path, run=QUIET)  # the kernel dropped the lock
    assert result.scored == SEARCH["samples"]
    assert not (tmp_path / LOCK_NAME).exists()  # a finished folder holds only results


# ---- 4. the operating system and devices ------------------------------------------------------

def test_bad_output_paths_are_one_line_errors_and_create_nothing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    search = ["search", "--model", "wrn-16-1", "--budget", "60k", "--samples", "2", "--data", "synthetic",
              "--batch-size", "16", "--quiet"]
    one_line_error(run_cli(*search, "--out", str(a_file)), str(a_file), "is a file")
    one_line_error(run_cli(*search, "--out", str(a_file / "sub")), "below the file")
    one_line_error(run_cli(*search, "--out", "/proc/blockswap-test"), "/proc/blockswap-test")
    assert a_file.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_bad_plot_paths_are_refused_before_any_work(search_dir, tmp_path):
    before = snapshot(search_dir)
    for plot, needle in [(tmp_path, "is a folder"), (tmp_path / "x.bmpx", "unknown file type"),
                         (tmp_path / "x", "unknown file type"), (search_dir / "winner.json" / "p.png", "below the file")]:
        one_line_error(run_cli("report", "search", str(search_dir), "--plot", str(plot)), needle)
    proc = run_cli("report", "search", str(search_dir), "--plot", str(tmp_path / "new" / "s.png"))
    assert proc.returncode == 0 and (tmp_path / "new" / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert snapshot(search_dir) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_missing_gpu_is_refused_before_any_file(tmp_path):
    for device in ("cuda", "cuda:7"):
        out = tmp_path / device
        one_line_error(run_cli("search", *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in SEARCH.items()), []),
                               "--out", str(out), "--device", device, "--quiet"), repr(device), "valid devices here: cpu")
        assert not out.exists()
        one_line_error(run_cli("train", "teacher", "--model", "wrn-10-1", "--data", "synthetic", "--out", str(out),
                               "--device", device, "--quiet"), repr(device))
        assert not out.exists()
    one_line_error(run_cli("search", "--data", "synthetic", "--out", str(tmp_path / "x"), "--device", "tpu"),
                   "'tpu'", "valid devices")


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    files.atomic_torch_save(target, {"epoch": 1})
    before = snapshot(tmp_path)

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(BlockSwapError, match=f"cannot write '{target}': No space left on device"):
        files.atomic_torch_save(target, {"epoch": 2, "weights": torch.zeros(1000)})
    with pytest.raises(BlockSwapError, match="No space left on device"):
        files.atomic_write_json(tmp_path / "record.json", {"a": 1})
    assert snapshot(tmp_path) == before  # old checkpoint intact, no temporary file


def test_a_full_disk_during_training_is_one_error_and_the_run_resumes(tmp_path, monkeypatch):
    cfg = recipe("cifar", epochs=2, **TINY)
    calls = {"n": 0}
    real = files.os.fsync

    def full_at_second_checkpoint(fd):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: checkpoint of epoch 1, 2: metrics, 3: checkpoint of epoch 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", full_at_second_checkpoint)
    with pytest.raises(BlockSwapError, match="checkpoint.pt': No space left on device"):
        train_model(cfg, "synthetic", tmp_path, MODEL, progress=False)
    monkeypatch.setattr(files.os, "fsync", real)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    rec = train_model(cfg, "synthetic", tmp_path, MODEL, progress=False, resume=True)
    assert rec["epochs_done"] == 2


# ---- 7. small lies and loose ends --------------------------------------------------------------

def test_resume_compares_parsed_settings_not_their_text(tmp_path):
    run_search(SearchConfig(**{**SEARCH, "budget": "60k"}), tmp_path, run=QUIET)
    again = run_search(SearchConfig(**{**SEARCH, "budget": "60000"}), tmp_path, run=QUIET, resume=True)
    assert again.scored_now == 0 and again.scored == SEARCH["samples"]
    with pytest.raises(BlockSwapError, match="other settings: budget"):
        run_search(SearchConfig(**{**SEARCH, "budget": "61k"}), tmp_path, run=QUIET, resume=True)


def test_halving_counts_each_round_apart(tmp_path):
    config = SearchConfig(**{**SEARCH, "samples": 6, "halving": True, "halving_keep": 0.5})
    result = run_search(config, tmp_path, run=QUIET)
    assert (result.slice_scored, result.slice_scored_now, result.scored, result.scored_now) == (6, 6, 3, 3)
    messages = []
    again = run_search(config, tmp_path, run=QUIET, resume=True, log=messages.append)
    assert (again.slice_scored_now, again.scored_now) == (0, 0)
    assert "6 of 6 slice scores" in messages[0] and "3 of 3 full-minibatch rescores" in messages[0]


def test_train_refuses_a_batch_larger_than_the_training_split_as_search_does(tmp_path):
    with pytest.raises(BlockSwapError, match="batch size 513 is larger than the training split of synthetic"):
        train_model(recipe("cifar", epochs=1, batch_size=513), "synthetic", tmp_path / "run", MODEL, progress=False)
    assert not (tmp_path / "run").exists()


def test_files_get_the_mode_open_would_give_them(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    written = files.atomic_write_text(tmp_path / "atomic", "x")
    assert (written.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_counts_on_the_command_line_must_be_positive(search_dir):
    one_line_error(run_cli("report", "search", str(search_dir), "--top-k", "-3"), "--top-k", ">= 1")
    one_line_error(run_cli("search", "--data", "synthetic", "--out", "x", "--samples", "0"), "--samples")


def test_the_student_network_comes_from_model_then_genotype_file_then_teacher(tmp_path, monkeypatch):
    """Documented order (docs/cli.md): --model, else the genotype file's network, else the teacher's."""
    import argparse

    from blockswap import Genotype
    from blockswap.cli.train import _student_model

    teacher = tmp_path / "teacher"
    train_model(recipe("cifar", epochs=1, **TINY), "synthetic", teacher, MODEL, progress=False)
    geno_file = tmp_path / "g.json"
    Genotype.uniform("wrn-16-1", "G(2)").save(geno_file)
    args = lambda **kw: argparse.Namespace(**{"teacher": str(teacher), "teacher_weights": None, "model": None,  # noqa: E731
                                              "input_size": None, "genotype": str(geno_file), "prune": None,
                                              "prune_params": None, "prune_source": None, **kw})
    assert _student_model(args()).name == "wrn-16-1"  # the genotype file's, not the teacher's wrn-10-1
    assert _student_model(args(genotype="G(2),S,S")).name == "wrn-10-1"  # inline text: the teacher's
    with pytest.raises(BlockSwapError, match="is for wrn-16-1, not wrn-40-1"):
        _student_model(args(model="wrn-40-1"))
