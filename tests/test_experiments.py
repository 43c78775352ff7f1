"""Experiments: the grid a file expands to, runs that resume without repeating, the students each
method trains (checked against the search's own candidates and brute-force costs), the report
(checked against the run records), and clear errors for bad experiment files."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from blockswap import build_model, default_candidates, network_spec
from blockswap.cli import main
from blockswap.errors import BlockSwapError
from blockswap.experiments import (ExperimentOptions, expand, load_experiment, nearest_single_types,
                                   open_experiment, presets, run_experiment)
from blockswap.experiments.runner import run_folder
from blockswap.space.budget import parse_budget

TINY = """
name = "tiny"
model = "wrn-10-2"
data = "digits"
input_size = 16
budgets = ["100k"]
seeds = [0]

[teacher]
recipe = "digits"
epochs = 1
[student]
recipe = "digits"
epochs = 1
[search]
samples = 12

[methods.blockswap]
samples = [4, 12]
[methods.random]
networks = 3
signals = ["fisher", "snip"]
[methods.single]
nearest = 1
[methods.reduced]
models = ["wrn-10-1"]
[methods.l1]
[methods.snip]
"""


def tiny(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY + extra)
    return path


def test_grid_counts_follow_the_file():
    spec = load_experiment("digits-study")
    runs = expand(spec)
    assert len({r.key for r in runs}) == len(runs)  # keys are unique: each is a folder
    by = lambda m: [r for r in runs if r.method == m]  # noqa: E731
    n_budgets = len(spec.budgets)
    assert len(by("teacher")) == len(spec.seeds)
    assert len(by("search")) == 2 * n_budgets  # one BlockSwap search and one random set per budget
    opts = {m.name: (m.options, m.seeds) for m in spec.methods}
    assert len(by("blockswap")) == len(opts["blockswap"][0]["samples"]) * n_budgets * len(opts["blockswap"][1])
    assert len(by("random")) == opts["random"][0]["networks"] * n_budgets * len(opts["random"][1])
    assert len(by("single")) == opts["single"][0]["nearest"] * n_budgets * len(opts["single"][1])
    assert len(by("reduced")) == len(opts["reduced"][0]["models"]) * len(opts["reduced"][1])
    assert len(by("sensitivity")) == (network_spec(spec.model).num_blocks + 1) * len(opts["sensitivity"][1])
    # a student of seed s is distilled from the teacher of seed s: every seed has its teacher
    assert {r.seed for r in runs if r.phase == "student"} <= {r.seed for r in by("teacher")}


def test_sensitivity_swaps_one_block_at_a_time():
    spec = load_experiment("digits-study")
    for r in expand(spec):
        if r.method == "sensitivity" and r.detail["position"] is not None:
            names = r.detail["genotype"].split(",")
            assert [i for i, n in enumerate(names) if n != "S"] == [r.detail["position"]]
            assert names[r.detail["position"]] == "G(4)"


@pytest.mark.parametrize("budget", ["200k", "400k"])
def test_single_blocktypes_are_the_nearest_by_counted_parameters(budget):
    spec = load_experiment("digits-study")
    b = parse_budget(budget)
    counted = {}
    for block in default_candidates():  # brute force: build each uniform network and count
        try:
            net = build_model(spec.model, ",".join([block.name] * network_spec(spec.model).num_blocks), 10)
        except BlockSwapError:
            continue
        counted[block.name] = sum(p.numel() for p in net.parameters())
    want = sorted(counted, key=lambda n: (abs(math.log(counted[n] / b.target)), n))[:2]
    assert [t.name for t in nearest_single_types(spec, b, 2)] == want


def test_candidate_sets_are_compared_one_search_each():
    spec = load_experiment("digits-structured")
    runs = expand(spec)
    searches = {r.key: r.detail["candidates"] for r in runs if r.phase == "search"}
    assert sorted(searches.values()) == ["paper", "paper+structured"]
    for r in runs:
        if r.method == "blockswap":  # each student ranks within its own candidate set's search
            assert searches[r.detail["search"]] == r.detail["candidates"]


def test_bad_experiment_files_get_one_line(tmp_path):
    with pytest.raises(BlockSwapError, match="valid presets: .*digits-small"):
        load_experiment("no-such-preset")
    with pytest.raises(BlockSwapError, match="unknown method 'pruning'.*valid methods: .*snip"):
        load_experiment(tiny(tmp_path, "[methods.pruning]\n"))
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('seeds = [0]', 'seeds = [0, 0]'))
    with pytest.raises(BlockSwapError, match="'seeds' must be distinct"):
        load_experiment(bad)
    bad.write_text(TINY.replace("epochs = 1\n[search]", "epochz = 1\n[search]"))
    with pytest.raises(BlockSwapError, match=r"\[student\].*'epochz'"):
        load_experiment(bad)
    bad.write_text("model = [")
    with pytest.raises(BlockSwapError, match="not valid TOML"):
        load_experiment(bad)


def _fisher_best(search_folder: Path, first: int) -> str:
    """The genotype with the highest Fisher potential among candidates 0..first-1, from the CSV."""
    with open(search_folder / "candidates.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["index"]) < first and r["fisher"]]
    return max(rows, key=lambda r: float(r["fisher"]))["genotype"]


def test_experiment_resumes_without_repeating_and_reports(tmp_path):
    spec = load_experiment(tiny(tmp_path))
    out = tmp_path / "exp"
    total = len(expand(spec))
    seen: list[list[str]] = [[], [], []]

    first = run_experiment(spec, out, ExperimentOptions(limit=3, progress=False),
                           on_run_done=lambda key, _: seen[0].append(key))
    assert first.done == 3 and not first.failed

    def interrupt(key, _):
        seen[1].append(key)
        if len(seen[1]) == 2:
            raise KeyboardInterrupt  # as a user's Ctrl-C between two runs

    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, out, ExperimentOptions(progress=False), on_run_done=interrupt)
    last = run_experiment(spec, out, ExperimentOptions(progress=False), on_run_done=lambda key, _: seen[2].append(key))
    assert last.done == total and not last.failed
    keys = seen[0] + seen[1] + seen[2]
    assert sorted(keys) == sorted(r.key for r in expand(spec))  # every run exactly once

    with open_experiment(out) as store:
        rows = {r["key"]: r for r in store.rows()}
    search = run_folder(out, "search/blockswap/100k")
    for n in (4, 12):  # BlockSwap's student: the best Fisher potential of the first n samples
        assert rows[f"student/blockswap-{n}/100k/s0"]["result"]["genotype"] == _fisher_best(search, n)
    with open(run_folder(out, "search/random/100k") / "candidates.csv") as f:
        cands = {int(r["index"]): r for r in csv.DictReader(f)}
    for i in range(3):  # random students: the i-th uniform draw, its signals carried along
        res = rows[f"student/random/100k/n{i:03d}/s0"]["result"]
        assert res["genotype"] == cands[i]["genotype"]
        assert res["signals"]["snip"] == pytest.approx(float(cands[i]["snip"]), rel=1e-6)
    for key, row in rows.items():  # the store holds what each run's record says
        if row["phase"] != "search":
            record = json.loads((run_folder(out, key) / "record.json").read_text())
            assert row["result"]["top1_error"] == record["top1_error"]
            assert record["epochs_done"] == (spec.teacher if row["phase"] == "teacher" else spec.student).epochs

    report = tmp_path / "report"
    assert main(["report", "experiment", str(out), "--out", str(report)]) == 0
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    for name in ("error_vs_params.png", "error_vs_macs.png", "densities.png", "genotype_100k.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md
    assert html.count("data:image/png;base64,") >= 4 and "src=\"http" not in html  # self-contained
    errors = [json.loads((run_folder(out, f"student/random/100k/n{i:03d}/s0") / "record.json").read_text())["top1_error"]
              for i in range(3)]
    assert f"{statistics.fmean(errors):.2f} +- {statistics.stdev(errors):.2f} (n=3)" in md
    assert "Kendall tau" in md and "Spearman rho" in md
    for method in ("l1", "snip"):  # pruned students count non-zero parameters against the budget
        res = rows[f"student/{method}/100k/s0"]["result"]
        assert res["nonzero_params"] <= 100_000 < res["params"]


def test_changed_settings_are_refused_on_rerun(tmp_path):
    spec = load_experiment(tiny(tmp_path))
    out = tmp_path / "exp"
    run_experiment(spec, out, ExperimentOptions(limit=1, progress=False))
    other = load_experiment(tiny(tmp_path).parent / "tiny.toml")
    other2 = type(other)(**{**other.__dict__, "data": "synthetic"})
    with pytest.raises(BlockSwapError, match="other data"):
        run_experiment(other2, out, ExperimentOptions(limit=1, progress=False))


def test_presets_parse_and_name_the_papers_numbers():
    for name in presets():
        spec = load_experiment(name)
        assert expand(spec)
        for r in expand(spec):  # a run's budget text reads back as the file's budget (3.1m, 811.4k)
            if r.budget is not None:
                assert parse_budget(r.budget) in spec.budgets
    table3 = [r for r in expand(load_experiment("imagenet-table3")) if r.method == "single"]
    assert sorted(r.detail["block"] for r in table3) == ["G(4)", "G(N)"]  # the paper's ResNet-34-G(4), -G(N)


def test_cli_lists_presets_and_refuses_bad_ones(tmp_path, capsys):
    assert main(["experiment", "no-such", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "digits-small" in err
    assert main(["experiment", str(tiny(tmp_path)), "--out", str(tmp_path / "x"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "student/blockswap-12/100k/s0" in out and "new" in out


@pytest.mark.slow
def test_ray_executor_runs_the_grid_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    spec = load_experiment(tiny(tmp_path))
    out = tmp_path / "exp"
    result = run_experiment(spec, out, ExperimentOptions(executor="ray", cpus_per_run=1, progress=False))
    assert result.done == len(expand(spec)) and not result.failed
    with open_experiment(out) as store:
        rows = {r["key"]: r for r in store.rows()}
    search = run_folder(out, "search/blockswap/100k")
    assert rows["student/blockswap-4/100k/s0"]["result"]["genotype"] == _fisher_best(search, 4)


@pytest.mark.slow
def test_cli_killed_experiment_resumes_without_redoing_finished_runs(tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    spec_file = tiny(tmp_path)
    spec_file.write_text(spec_file.read_text().replace("[student]\nrecipe = \"digits\"\nepochs = 1",
                                                       "[student]\nrecipe = \"digits\"\nepochs = 4"))
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "blockswap", "experiment", str(spec_file), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = out / "experiment.sqlite"
    deadline = time.monotonic() + 600
    done_before: dict[str, float] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if not store.exists():
            continue
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            done = [k for (k,) in db.execute("SELECT key FROM runs WHERE status='done' AND phase='student'")]
        if done:
            time.sleep(1.0)  # into the next student's training
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
                done_before = {k: (run_folder(out, k) / "record.json").stat().st_mtime_ns for (k,) in
                               db.execute("SELECT key FROM runs WHERE status='done' AND phase != 'search'")}
            break
    assert done_before, "the experiment finished or stalled before it could be killed"
    rerun = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["done"] == summary["runs"] == len(expand(load_experiment(spec_file)))
    searches = sum(1 for r in expand(load_experiment(spec_file)) if r.phase == "search")
    assert summary["ran_now"] == summary["runs"] - len(done_before) - searches  # the rest, once
    for key, mtime in done_before.items():  # finished before the kill: not run again
        assert (run_folder(out, key) / "record.json").stat().st_mtime_ns == mtime
