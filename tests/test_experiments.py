"""Experiments: the grid a file expands to, runs that resume without repeating, the students each
method trains (checked against the search's own candidates and brute-force costs), the report
(checked against the run records), and clear errors for bad experiment files."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest

from blockswap import build_model, default_candidates, network_spec
from blockswap.cli import main
from blockswap.errors import BlockSwapError
from blockswap.experiments import (ExperimentOptions, expand, load_experiment, nearest_single_types,
                                   open_experiment, presets, run_experiment)
from blockswap.experiments import METHODS, ExperimentStore, Method, Run
from blockswap.experiments.runner import plan, run_folder
from blockswap.report.document import Section, Table
from blockswap.report.experiment import experiment_report
from blockswap.report.studies import STUDIES, Study
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


def _raw_preset(name: str) -> dict:
    import tomllib
    from importlib import resources

    return tomllib.loads((resources.files("blockswap.experiments") / "presets" / f"{name}.toml").read_text())


def test_grid_counts_follow_the_file():
    # Brute force: enumerate every (budget, n, seed), (budget, network, seed), ... combination the
    # TOML file names, straight from its raw tables, and count the grid's runs per method.
    import itertools

    raw = _raw_preset("digits-study")
    runs = expand(load_experiment("digits-study"))
    assert len({r.key for r in runs}) == len(runs)  # keys are unique: each is a folder
    methods = raw["methods"]
    seeds = lambda m: methods[m].get("seeds", raw["seeds"])  # noqa: E731
    depth = int(raw["model"].split("-")[1])
    blocks = (depth - 4) // 6 * 3  # WRN-d-k: (d-4)/6 blocks in each of 3 stages
    want = {
        "teacher": list(itertools.product(sorted({s for m in methods for s in seeds(m)}))),
        "search": list(itertools.product(raw["budgets"], ["blockswap", "random"])),
        "blockswap": list(itertools.product(raw["budgets"], methods["blockswap"]["samples"], seeds("blockswap"))),
        "random": list(itertools.product(raw["budgets"], range(methods["random"]["networks"]), seeds("random"))),
        "single": list(itertools.product(raw["budgets"], range(methods["single"]["nearest"]), seeds("single"))),
        "reduced": list(itertools.product(methods["reduced"]["models"], seeds("reduced"))),
        "l1": list(itertools.product(raw["budgets"], seeds("l1"))),
        "snip": list(itertools.product(raw["budgets"], seeds("snip"))),
        "sensitivity": list(itertools.product([None, *range(blocks)], seeds("sensitivity"))),
    }
    got = {m: sum(1 for r in runs if r.method == m) for m in want}
    assert got == {m: len(combos) for m, combos in want.items()}
    assert len(runs) == sum(len(c) for c in want.values())
    # a student of seed s is distilled from the teacher of seed s: every seed has its teacher
    assert {r.seed for r in runs if r.phase == "student"} <= {r.seed for r in runs if r.method == "teacher"}


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


# ---- registered values: a new method or study is one entry ----------------------------------
@dataclass(frozen=True)
class UniformOptions:
    blocks: tuple[str, ...] = ("G(4)",)  # each block type everywhere, whatever the budget


def _uniform_students(spec, m, seed):
    return [Run(f"student/uniform-{b}/s{seed}", "student", m.name, None, seed,
                {"genotype": ",".join([b] * network_spec(spec.model).num_blocks), "block": b})
            for b in m.options.blocks]


@pytest.fixture
def uniform_method():
    """A baseline registered by a test, as a plug-in would: one entry, no other edit."""
    METHODS.add("uniform", Method("uniform", _uniform_students, lambda d: f"uniform {d['block']}", rank=4,
                                  options=UniformOptions))
    STUDIES.add("uniform-count", Study(
        "uniform-count", lambda rows: any(r["method"] == "uniform" for r in rows),
        lambda ctx: Section("Uniform students counted", [], [Table(["students"], [[len(ctx.done)]])])))
    try:
        yield
    finally:
        METHODS.remove("uniform")
        STUDIES.remove("uniform-count")


UNIFORM = TINY.split("[methods.blockswap]")[0] + '[methods.uniform]\nblocks = ["G(4)", "G(2)"]\nseeds = [0, 1]\n'


def _store_with(out: Path, spec, results: dict[str, dict]) -> None:
    """An experiment store of `spec` whose runs `results` are done (nothing trained)."""
    out.mkdir(parents=True, exist_ok=True)
    runs = expand(spec)
    with ExperimentStore(out / "experiment.sqlite") as store:
        store.bind(spec.to_dict(), runs)
        store.add(runs)
        for key, result in results.items():
            store.mark(key, "done", result=result)


def test_a_registered_method_joins_the_grid_and_the_report(tmp_path, uniform_method):
    path = tmp_path / "uniform.toml"
    path.write_text(UNIFORM)
    spec = load_experiment(path)
    keys = {r.key for r in expand(spec) if r.phase == "student"}
    assert keys == {f"student/uniform-{b}/s{s}" for b in ("G(4)", "G(2)") for s in (0, 1)}  # 2 blocks x 2 seeds
    path.write_text(UNIFORM.replace('blocks = ["G(4)", "G(2)"]', 'blocks = "G(4)"'))
    with pytest.raises(BlockSwapError, match=r"\[methods.uniform\]: 'blocks' must be a non-empty list"):
        load_experiment(path)
    path.write_text(UNIFORM + "colour = 1\n")
    with pytest.raises(BlockSwapError, match="unknown key 'colour'; valid keys: blocks"):
        load_experiment(path)

    errors = {"G(4)": [10.0, 14.0], "G(2)": [8.0, 9.0]}
    out = tmp_path / "exp"
    _store_with(out, spec, {f"student/uniform-{b}/s{s}": {"top1_error": errors[b][s], "params": 90_000 + s,
                                                           "macs": 10**6, "genotype": "G(4)"}
                            for b in errors for s in (0, 1)})
    summary = experiment_report(out, tmp_path / "report")
    assert summary["sections"] == ["Students at each budget (Table 2, Figure 3, Appendix C)", "Uniform students counted"]
    md = (tmp_path / "report" / "report.md").read_text()
    for b, e in errors.items():  # mean and sample std over the two seeds, by hand
        mean, std = (e[0] + e[1]) / 2, abs(e[0] - e[1]) / math.sqrt(2)
        row = next(line for line in md.splitlines() if line.startswith(f"| uniform {b} |"))
        assert row.endswith(f"| {mean:.2f} +- {std:.2f} (n=2) |")
    assert md.index("uniform G(2)") < md.index("uniform G(4)")  # one rank: by label
    assert "| 4 |" in md  # the registered study's table: four finished students


# ---- issue 21: reruns, type checks, dry runs, stale states ---------------------------------
def test_rerun_that_would_change_a_finished_search_is_refused_in_one_line(tmp_path, capsys):
    spec = load_experiment(tiny(tmp_path))
    out = tmp_path / "exp"
    _store_with(out, spec, {"search/blockswap/100k": {"genotype": "S"}, "search/random/100k": {"genotype": "S"}})
    cases = [("samples = [4, 12]", "samples = [4, 12, 20]", r"search/blockswap/100k finished with samples=12; "
              r"the file now asks samples=20"),
             ("networks = 3", "networks = 4", r"search/random/100k finished with samples=3; the file now asks samples=4"),
             ('signals = ["fisher", "snip"]', 'signals = ["fisher", "snip", "synflow"]',
              r'search/random/100k finished with signals=\["fisher", "snip"\]; the file now asks signals=\['
              r'"fisher", "snip", "synflow"\]')]
    for old, new, message in cases:
        path = tmp_path / "changed.toml"
        path.write_text(TINY.replace(old, new))
        with pytest.raises(BlockSwapError, match=message):
            run_experiment(load_experiment(path), out, ExperimentOptions(progress=False))
        assert main(["experiment", str(path), "--out", str(out), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "finished with" in err
    with open_experiment(out) as store:  # nothing was run or changed by the refused reruns
        assert store.counts([r.key for r in expand(spec)])["done"] == 2


@pytest.mark.parametrize("old, new, message", [
    ("seeds = [0]", 'seeds = [0]\ndistill = "false"', "'distill' must be true or false, got 'false'"),
    ("samples = 12", 'samples = 12\nhalving = "yes"', r"\[search\]: 'halving' must be true or false, got 'yes'"),
    ("samples = 12", 'samples = "3"', r"\[search\]: 'samples' must be an integer, got '3'"),
    ("samples = 12", "samples = 0", r"\[search\]: 'samples' must be a positive integer, got 0"),
    ("networks = 3", "networks = 3.0", r"\[methods.random\]: 'networks' must be an integer, got 3.0"),
    ("samples = [4, 12]", 'samples = [4, "12"]', r"\[methods.blockswap\]: 'samples' must be an integer"),
    ('data = "digits"', 'data = "svhn"', "unknown dataset 'svhn'; valid datasets:"),
    ("epochs = 1\n[search]", 'epochs = "1"\n[search]', r"\[student\]: 'epochs' must be an integer"),
])
def test_every_value_is_type_checked_and_the_dry_run_refuses_it(tmp_path, capsys, old, new, message):
    path = tmp_path / "bad.toml"
    assert old in TINY
    path.write_text(TINY.replace(old, new, 1))
    with pytest.raises(BlockSwapError, match=message):
        load_experiment(path)
    assert main(["experiment", str(path), "--out", str(tmp_path / "x"), "--dry-run"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_dry_run_checks_what_a_run_would(tmp_path, capsys):
    given = TINY.replace("seeds = [0]", 'seeds = [0]\nteacher_model = "torchvision:resnet18"\n'
                                        f'teacher_weights = "{tmp_path / "missing.pth"}"').replace("[methods.l1]\n", "")
    path = tmp_path / "given.toml"
    path.write_text(given)
    assert main(["experiment", str(path), "--out", str(tmp_path / "x"), "--dry-run"]) == 2
    assert "teacher_weights" in capsys.readouterr().err and not (tmp_path / "x").exists()
    path.write_text(TINY.replace('data = "digits"', f'data = "cifar10:{tmp_path / "nowhere"}"'))
    assert main(["experiment", str(path), "--out", str(tmp_path / "x"), "--dry-run"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_spec_that_never_finished_a_run_does_not_lock_the_store(tmp_path):
    spec = load_experiment(tiny(tmp_path), data="synthetic")
    out = tmp_path / "exp"
    _store_with(out, spec, {})
    with ExperimentStore(out / "experiment.sqlite") as store:
        store.mark("teacher/s0", "failed", error="bad data")
    fixed = load_experiment(tiny(tmp_path))  # data = "digits": accepted, nothing finished
    assert [s for _, s in plan(fixed, out)].count("done") == 0
    with ExperimentStore(out / "experiment.sqlite") as store:
        store.bind(fixed.to_dict(), expand(fixed))
        store.mark("teacher/s0", "done", result={"top1_error": 1.0})
    with pytest.raises(BlockSwapError, match="other data"):  # now a finished run holds it to digits
        plan(spec, out)


def test_stale_running_states_show_as_interrupted(tmp_path, capsys):
    from blockswap.experiments.runner import EXPERIMENT_FOLDER
    from blockswap.outdir import claim_folder

    spec = load_experiment(tiny(tmp_path))
    out = tmp_path / "exp"
    _store_with(out, spec, {"teacher/s0": {"top1_error": 1.0}})
    with ExperimentStore(out / "experiment.sqlite") as store:
        store.mark("search/blockswap/100k", "running")  # as after a Ctrl-C or a kill
    status = dict((r.key, s) for r, s in plan(spec, out))
    assert status["search/blockswap/100k"] == "interrupted" and status["teacher/s0"] == "done"
    assert main(["experiment", str(tiny(tmp_path)), "--out", str(out), "--dry-run"]) == 0
    assert "interrupted" in capsys.readouterr().out
    with claim_folder(out, EXPERIMENT_FOLDER, resume=True):  # a live run holds the folder: running
        assert dict((r.key, s) for r, s in plan(spec, out))["search/blockswap/100k"] == "running"


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
