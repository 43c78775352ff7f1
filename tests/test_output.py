"""Output a person reads (issue 20): run tables, epoch and final lines, progress in a log,
timings with their spread, evaluate's input size, refusals in the caller's own words."""

import io
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from blockswap import BlockSwapError
from blockswap.cli import main
from blockswap.outdir import RunFolder, calling_interface, claim_folder
from helpers import ROOT, counted


def _record(folder, *, seed, top1, lr=0.1, model=None, nonzero=None):
    folder.mkdir(parents=True)
    model = model or {"kind": "blockswap", "name": "wrn-16-2", "genotype": None, "num_classes": 10,
                      "input_size": 32, "prune": None, "prune_params": None, "prune_source": None}
    rec = {"format": "blockswap.run", "version": 1, "role": "student", "data": "digits", "model": model,
           "config": {"beta": 1000.0, "kd_weight": 0.0, "lr": lr}, "teacher": {"source": "t"},
           "genotype": model["genotype"], "params": 691_674, "macs": 101_000_000, "top1_error": top1,
           "top5_error": 1.0, "seeds": {"run": seed}, **({"nonzero_params": nonzero} if nonzero else {})}
    (folder / "record.json").write_text(json.dumps(rec))


def test_report_runs_short_labels_a_differs_column_and_n1_without_spread(tmp_path, capsys):
    _record(tmp_path / "a0", seed=0, top1=5.0)
    _record(tmp_path / "a1", seed=1, top1=7.0)
    _record(tmp_path / "b0", seed=0, top1=86.35, lr=0.05)
    pruned = {"kind": "blockswap", "name": "wrn-16-2", "genotype": None, "num_classes": 10, "input_size": 32,
              "prune": "l1", "prune_params": 175_100, "prune_source": "runs/teacher"}
    _record(tmp_path / "p0", seed=0, top1=9.0, model=pruned, nonzero=175_100)
    assert main(["report", "runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert all(len(line) < 160 for line in lines), out  # was ~400 characters of JSON
    assert "{" not in out
    assert lines[0].split()[:3] == ["method", "differs", "in"]
    two = next(line for line in lines if "lr=0.1" in line)
    one = next(line for line in lines if "lr=0.05" in line)
    std = math.sqrt(((5 - 6) ** 2 + (7 - 6) ** 2) / (2 - 1))  # sample std of 5 and 7
    assert f"6.00 +- {std:.2f}" in two and "n=2" in two
    assert "86.35" in one and "n=1" in one and "86.35 +-" not in one
    prow = next(line for line in lines if "pruned" in line)
    assert "all S, l1-pruned to 175.1K" in prow and "175.1K of 691.7K" in prow


def test_epoch_line_names_the_attention_transfer_loss():
    from blockswap.train.classify import Classification

    row = {"epoch": 1, "lr": 0.1, "train_loss": 3.7628, "train_at_loss": 1.4778, "train_top1_error": 50.0,
           "val_loss": 2.0, "val_top1_error": 40.0, "val_top5_error": 10.0, "train_img_per_s": 100.0}
    line = Classification.summary(row)
    assert "AT loss 1.4778" in line and " at 1.4778" not in line


def test_refusals_name_the_interface_of_the_caller(tmp_path):
    spec = RunFolder("training run", "checkpoint.pt", ("checkpoint.pt", "record.json"))
    (tmp_path / "record.json").write_text("{}")
    (tmp_path / "checkpoint.pt").write_text("")
    with pytest.raises(BlockSwapError) as api:
        with claim_folder(tmp_path, spec):
            pass
    assert "resume=True" in str(api.value) and "overwrite=True" in str(api.value) and "--" not in str(api.value)
    with calling_interface("cli"), pytest.raises(BlockSwapError) as cli:
        with claim_folder(tmp_path, spec):
            pass
    assert "--resume" in str(cli.value) and "--overwrite" in str(cli.value) and "=True" not in str(cli.value)
    with pytest.raises(BlockSwapError, match="resume=True continues .* overwrite=True replaces"):
        with claim_folder(tmp_path, spec, resume=True, overwrite=True):
            pass


def test_cli_train_final_line_names_the_role_and_a_rerun_names_the_flags(tmp_path, capsys):
    out = str(tmp_path / "t")
    args = ["train", "teacher", "--model", "wrn-10-1", "--data", "synthetic", "--out", out, "--epochs", "1",
            "--batch-size", "64", "--cutout", "8", "--input-size", "16"]  # not --quiet: the final line is read
    assert main(args) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    assert final.startswith("teacher wrn-10-1 ")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and "resume=True" not in err
    # evaluate --input-size: the data resized to it, and the MACs those of that size
    assert main(["evaluate", "--checkpoint", out, "--data", "synthetic", "--input-size", "24", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    from blockswap.train import load_model

    net, _ = load_model(out, None, "cpu")
    import torch

    assert result["input_size"] == 24
    assert result["macs"] == counted(net, torch.zeros(1, 3, 24, 24))[1]


def test_progress_in_a_log_is_one_line_per_30_seconds(monkeypatch):
    import tqdm.std

    from blockswap import progress as progress_mod

    clock = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_mod.progress(120, "timing blocks", "entry")
    for _ in range(120):  # 120 steps of one (fake) second each
        clock[0] += 1.0
        bar.set_postfix(loss="1.0", refresh=False)
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 120 / 30 + 1, text  # at 30, 60, 90, 120 s and the final line
    assert all(line.startswith("timing blocks") for line in lines)


def test_spread_is_the_interquartile_range_over_the_median(monkeypatch):
    from blockswap.export import timing

    durations = [0.010, 0.011, 0.012, 0.010, 0.500, 0.013, 0.011]  # one outlier call
    stamps = iter(np.cumsum([0.0, *[x for d in durations for x in (d, 1.0)]]).tolist())
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(stamps))
    median, spread = timing.median_seconds(lambda: None, 0, len(durations))
    q1, q3 = np.percentile(durations, [25, 75])
    assert median == pytest.approx(np.median(durations))
    assert spread == pytest.approx((q3 - q1) / np.median(durations))
    assert not timing.is_noisy(spread)  # the outlier alone does not make the machine noisy
    assert timing.format_ms(0.0123, 0.05) == "12.30 ms +- 5%"
    assert timing.format_ms(0.0123, 0.72).startswith("noisy (12.30 ms, spread 72% > 20%)")


@pytest.mark.parametrize("spread,noisy", [(0.05, False), (0.72, True)])
def test_benchmark_shows_the_spread_and_flags_a_noisy_machine(monkeypatch, capsys, spread, noisy):
    import blockswap.export.speed as speed

    monkeypatch.setattr(speed, "median_seconds", lambda run, warmup, repeats: (0.004, spread))
    assert main(["benchmark", "--model", "wrn-10-1", "--runtimes", "torch", "--batch-sizes", "1",
                 "--repeats", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert f"+- {spread:.0%}" in out or f"spread {spread:.0%}" in out
    assert ("noisy" in out) == noisy and ("not reported as speeds" in out) == noisy
    assert ("250" in out) != noisy  # 1 / 4 ms = 250 img/s only when it is a speed


def test_export_verify_timings_show_their_spread(monkeypatch, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    import blockswap.export.onnx as onnx_mod

    monkeypatch.setattr(onnx_mod, "median_seconds", lambda run, warmup, repeats: (0.524, 0.9))
    assert main(["export", "--model", "wrn-10-1", "--input-size", "16", "--out", str(tmp_path / "m.onnx"),
                 "--verify"]) == 0
    out = capsys.readouterr().out
    assert "noisy (524.00 ms, spread 90% > 20%)" in out and "not reported as speeds" in out


@pytest.mark.slow  # a subprocess
def test_latency_table_piped_to_a_file_does_not_flood_it(tmp_path):
    log = tmp_path / "log.txt"
    start = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "blockswap", "latency-table", "--model", "wrn-10-1",
                               "--candidates", "S,B(2),G(2)", "--input-size", "16", "--warmup", "1",
                               "--repeats", "2", "--out", str(tmp_path / "t.json")],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f, timeout=600)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, log.read_text()
    text = log.read_text()
    progress_lines = [line for line in text.replace("\r", "\n").splitlines() if "timing blocks" in line]
    assert len(progress_lines) <= 1 + elapsed / 30, text
