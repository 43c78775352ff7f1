"""The study protocol of the Fashion-MNIST evidence: students picked from one search by other
signals and by an aggregate (checked by brute force on the search's CSV), the seed-noise networks
of the random method, the report's noise-against-spread and top-1 regret (checked by hand with
numpy), the per-run CSV from which every table can be recomputed, and splitting by budget."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata

from blockswap.cli import main
from blockswap.errors import BlockSwapError
from blockswap.experiments import ExperimentOptions, ExperimentStore, expand, load_experiment, run_experiment
from blockswap.experiments.runner import run_folder
from blockswap.report.experiment import experiment_report

BASE = """
name = "study"
model = "wrn-10-2"
data = "digits"
input_size = 16
budgets = ["100k"]
seeds = [0]
distill = false

[teacher]
recipe = "digits"
epochs = 1
[student]
recipe = "digits"
epochs = 1
[search]
samples = 12
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(BASE + text)
    return path


def test_students_are_picked_from_one_search_by_other_signals_and_an_aggregate(tmp_path):
    spec = load_experiment(_file(tmp_path, '[methods.blockswap]\nsamples = [4, 12]\n'
                                           'rank_by = ["fisher", "macs", "mean_rank(fisher,macs)"]\n'))
    students = {r.key for r in expand(spec) if r.phase == "student"}
    # Sec. 4.3's curve by Fisher at every n; the other pickers at the largest n only
    assert students == {"student/blockswap-4/100k/s0", "student/blockswap-12/100k/s0",
                        "student/blockswap-12-by-macs/100k/s0", "student/blockswap-12-by-mean_rank-fisher_macs/100k/s0"}
    out = tmp_path / "exp"
    result = run_experiment(spec, out, ExperimentOptions(progress=False))
    assert result.done == result.total and not result.failed
    with open(run_folder(out, "search/blockswap/100k") / "candidates.csv") as f:
        rows = [r for r in csv.DictReader(f)]
    fisher = np.array([float(r["fisher"]) for r in rows])
    macs = np.array([int(r["macs"]) for r in rows])
    index = np.array([int(r["index"]) for r in rows])
    # the aggregate by hand: ranks 1 = best (highest) under each signal, ties averaged, then the mean
    mean_rank = (rankdata(-fisher) + rankdata(-macs)) / 2
    want = {"student/blockswap-4/100k/s0": rows[int(np.argmax(np.where(index < 4, fisher, -np.inf)))]["genotype"],
            "student/blockswap-12/100k/s0": rows[int(np.argmax(fisher))]["genotype"],
            # equal MACs go to the lower index, as equal mean ranks do
            "student/blockswap-12-by-macs/100k/s0": rows[int(np.flatnonzero(macs == macs.max())[0])]["genotype"],
            "student/blockswap-12-by-mean_rank-fisher_macs/100k/s0":
                rows[int(np.flatnonzero(mean_rank == mean_rank.min())[0])]["genotype"]}
    from blockswap.experiments import open_experiment

    with open_experiment(out) as store:
        got = {r["key"]: r["result"]["genotype"] for r in store.rows() if r["phase"] == "student"}
    assert got == want
    report = experiment_report(out, tmp_path / "report")
    md = Path(report["report"]).read_text()
    assert "BlockSwap (best of 12, by macs)" in md and "BlockSwap (best of 12, by mean rank of 2 signals)" in md


def test_bad_rank_by_gets_one_line(tmp_path):
    with pytest.raises(BlockSwapError, match=r"\[methods.blockswap\]: unknown ranking signal 'fishr'.*did you mean 'fisher'"):
        load_experiment(_file(tmp_path, '[methods.blockswap]\nrank_by = ["fishr"]\n'))
    with pytest.raises(BlockSwapError, match="rank_by names a signal twice"):
        load_experiment(_file(tmp_path, '[methods.blockswap]\nrank_by = ["fisher", "fisher"]\n'))


def test_repeat_trains_the_first_random_networks_with_every_seed(tmp_path):
    spec = load_experiment(_file(tmp_path, '[methods.random]\nnetworks = 6\nrepeat = 2\nseeds = [3, 4, 5]\n'
                                           'signals = ["fisher"]\n'))
    got = sorted((r.detail["candidate"], r.seed) for r in expand(spec) if r.method == "random")
    want = sorted([(i, 3) for i in range(6)] + [(i, s) for i in range(2) for s in (4, 5)])
    assert got == want
    with pytest.raises(BlockSwapError, match="repeat must be an integer from 0 to networks"):
        load_experiment(_file(tmp_path, '[methods.random]\nnetworks = 2\nrepeat = 3\n'))


# Fake finished runs (nothing trained): errors and signals chosen so the hand computations differ.
ERRORS = {(0, 0): 10.0, (1, 0): 12.5, (2, 0): 9.0, (3, 0): 15.0, (4, 0): 11.0,
          (0, 1): 10.6, (0, 2): 9.7, (1, 1): 12.1, (1, 2): 13.3}
FISHER = [3.0, 1.0, 2.0, 0.5, 4.0]  # ranks network 4 first
MACS = [10, 30, 20, 40, 5]  # ranks network 3 first


def _fake_store(tmp_path: Path) -> Path:
    spec = load_experiment(_file(tmp_path, '[methods.random]\nnetworks = 5\nrepeat = 2\nseeds = [0, 1, 2]\n'
                                           'signals = ["fisher", "macs"]\n'
                                           '[methods.blockswap]\nrank_by = ["fisher", "mean_rank(fisher,macs)"]\n'))
    return _store(tmp_path / "exp", spec, {
        f"student/random/100k/n{i:03d}/s{seed}": {"top1_error": e, "params": 99_000 + i, "macs": MACS[i] * 10**6,
                                                  "genotype": f"G{i}",
                                                  "signals": {"fisher": FISHER[i], "macs": MACS[i] * 10**6}}
        for (i, seed), e in ERRORS.items()})


def _store(out: Path, spec, results: dict[str, dict]) -> Path:
    """An experiment store of `spec` in `out` whose runs `results` are done (nothing trained)."""
    out.mkdir()
    runs = expand(spec)
    with ExperimentStore(out / "experiment.sqlite") as store:
        store.bind(spec.to_dict(), runs)
        store.add(runs)
        for key, result in results.items():
            store.mark(key, "done", result=result)
    return out


def test_report_states_seed_noise_spread_and_each_signals_top1(tmp_path):
    out = _fake_store(tmp_path)
    summary = experiment_report(out, tmp_path / "report")
    assert summary["sections"][0] == "Protocol: seed noise against the spread across networks"
    tables = __import__("json").loads((tmp_path / "report" / "summary.json").read_text())["tables"]
    protocol = tables["Protocol: seed noise against the spread across networks"][0]["rows"][0]
    # by hand: pooled within-network variance of the two networks with three seeds
    v0 = np.var([10.0, 10.6, 9.7], ddof=1)
    v1 = np.var([12.5, 12.1, 13.3], ddof=1)
    noise = math.sqrt((v0 + v1) / 2)
    spread = np.std([ERRORS[i, 0] for i in range(5)], ddof=1)
    assert protocol[1].startswith(f"{noise:.2f} (2 networks, 6 runs)")
    assert protocol[2].startswith(f"{spread:.2f} (5 networks)")
    assert protocol[4] == f"{spread / noise:.1f}x"
    signals = {row[0]: row for row in tables["Ranking signals against final error (Table 1)"][0]["rows"]}
    mean_err = [statistics.fmean([e for (i, _), e in ERRORS.items() if i == n]) for n in range(5)]
    best = min(mean_err)
    assert signals["fisher"][4] == f"{mean_err[4]:.2f}" and signals["fisher"][5] == f"{mean_err[4] - best:+.2f}"
    assert signals["macs"][4] == f"{mean_err[3]:.2f}"
    ranks = (rankdata([-f for f in FISHER]) + rankdata([-m for m in MACS])) / 2
    first = int(np.flatnonzero(ranks == ranks.min())[0])
    assert signals["mean_rank(fisher,macs)"][4] == f"{mean_err[first]:.2f}"


def test_the_protocol_states_the_noise_net_of_seed_offsets_and_the_spread_of_m_seed_means(tmp_path):
    # seed 1 (its teacher, its data order) makes every network about 1.2 pp worse
    errors = {(0, 0): 10.0, (0, 1): 11.6, (1, 0): 12.5, (1, 1): 13.1, (2, 0): 9.0, (2, 1): 10.9,
              (3, 0): 15.0, (3, 1): 15.2, (4, 0): 11.0, (4, 1): 12.8}
    spec = load_experiment(_file(tmp_path, '[methods.random]\nnetworks = 5\nrepeat = 5\nseeds = [0, 1]\n'
                                           'signals = ["fisher"]\n'))
    out = _store(tmp_path / "exp", spec, {
        f"student/random/100k/n{i:03d}/s{seed}": {"top1_error": e, "params": 99_000, "macs": 10**6, "genotype": "G",
                                                  "signals": {"fisher": FISHER[i]}}
        for (i, seed), e in errors.items()})
    experiment_report(out, tmp_path / "report")
    tables = __import__("json").loads((tmp_path / "report" / "summary.json").read_text())["tables"]
    rows = tables["Protocol: seed noise against the spread across networks"][0]["rows"]
    # by hand: the additive model error = network + seed fitted by least squares (numpy), its
    # residual std with (5 - 1)(2 - 1) degrees of freedom; the std of the five pair means
    x = np.zeros((10, 5 + 2))
    y = np.zeros(10)
    for row, ((i, seed), e) in enumerate(sorted(errors.items())):
        x[row, i], x[row, 5 + seed], y[row] = 1.0, 1.0, e
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    net = math.sqrt(float(np.sum((y - x @ coef) ** 2)) / 4)
    raw = math.sqrt(statistics.fmean(np.var([errors[i, 0], errors[i, 1]], ddof=1) for i in range(5)))
    spread = np.std([errors[i, 0] for i in range(5)], ddof=1)
    assert net < raw  # the raw noise counts seed 1's offset as noise
    assert rows[0][1].startswith(f"{raw:.2f} (5 networks, 10 runs)")
    assert rows[1][0].endswith("net of seed offsets")
    assert rows[1][1].startswith(f"{net:.2f} (5 networks x 2 seeds)")
    assert rows[1][4] == f"{spread / net:.1f}x"
    means = [(errors[i, 0] + errors[i, 1]) / 2 for i in range(5)]
    assert rows[2][0].endswith("mean of 2 seeds")
    assert rows[2][1].startswith(f"{net / math.sqrt(2):.2f}")
    assert rows[2][2].startswith(f"{np.std(means, ddof=1):.2f} (5 networks)")
    assert rows[2][4] == f"{np.std(means, ddof=1) / (net / math.sqrt(2)):.1f}x"
    md = (tmp_path / "report" / "report.md").read_text()
    offset = statistics.fmean(errors[i, 1] for i in range(5)) - statistics.fmean(errors.values())
    assert f"seed 1 {offset:+.2f}" in md and f"seed 0 {-offset:+.2f}" in md


def test_a_study_stopped_part_way_holds_networks_complete_on_every_seed(tmp_path):
    # 3 random networks x 2 seeds; stopped (--limit) after the search and two students: those two
    # are network 0 on both seeds, so its seed noise is measurable, not networks 0 and 1 on seed 0.
    spec = load_experiment(_file(tmp_path, '[methods.random]\nnetworks = 3\nrepeat = 3\nseeds = [0, 1]\n'
                                           'signals = ["params"]\n'))
    others = sum(r.phase != "student" for r in expand(spec))
    out = tmp_path / "exp"
    result = run_experiment(spec, out, ExperimentOptions(limit=others + 2, progress=False))
    assert result.done == others + 2 and not result.failed
    with ExperimentStore(out / "experiment.sqlite") as store:
        done = {r.key for r in expand(spec) if r.phase == "student" and store.status(r.key) == "done"}
    assert done == {"student/random/100k/n000/s0", "student/random/100k/n000/s1"}


def test_runs_csv_recomputes_the_comparison_table(tmp_path):
    out = _fake_store(tmp_path)
    experiment_report(out, tmp_path / "report")
    with open(tmp_path / "report" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ERRORS)
    assert {(int(r["candidate"]), int(r["seed"])): float(r["top1_error"]) for r in rows} == ERRORS
    assert {float(r["fisher"]) for r in rows} == set(FISHER)
    errors = [float(r["top1_error"]) for r in rows if r["method"] == "random"]
    md = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| random |"))
    assert f"{statistics.fmean(errors):.2f} +- {statistics.stdev(errors):.2f} (n={len(errors)})" in row


def test_budgets_flag_runs_a_subset_of_the_files_budgets(tmp_path, capsys):
    path = _file(tmp_path, '[methods.random]\nnetworks = 2\nsignals = ["fisher"]\n')
    path.write_text(path.read_text().replace('budgets = ["100k"]', 'budgets = ["100k", "150k"]'))
    assert main(["experiment", str(path), "--out", str(tmp_path / "e"), "--dry-run", "--budgets", "150k"]) == 0
    listing = capsys.readouterr().out
    assert "random/150k" in listing and "random/100k" not in listing
    assert main(["experiment", str(path), "--out", str(tmp_path / "e"), "--dry-run", "--budgets", "300k"]) == 2
    err = capsys.readouterr().err
    assert "--budgets: params=300000 is not a budget of study; its budgets: params=100000, params=150000" in err


def test_a_reduced_network_far_from_every_budget_run_so_far_is_left_out(tmp_path):
    # A 200K-only sitting of a 200K/400K study: WRN-10-2 (303,706 params, 1.52x 200K) belongs to 400K.
    text = (BASE.replace('model = "wrn-10-2"', 'model = "wrn-16-2"').replace('"100k"', '"200k"')
            + '[methods.reduced]\nmodels = ["wrn-16-1", "wrn-10-2"]\n')
    path = tmp_path / "r.toml"
    path.write_text(text)
    spec = load_experiment(path)
    out = _store(tmp_path / "exp", spec, {
        f"student/reduced/{model}/s0": {"top1_error": 20.0, "params": n, "macs": 10**6, "genotype": None, "model": model}
        for model, n in (("wrn-16-1", 175_066), ("wrn-10-2", 303_706))})
    md = Path(experiment_report(out, tmp_path / "report")["report"]).read_text()
    assert "| WRN-16-1 |" in md and "WRN-10-2" not in md


def test_the_comparison_caption_describes_only_the_methods_the_report_has(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(BASE + '[methods.reduced]\nmodels = ["wrn-10-1"]\n[methods.snip]\n')
    spec = load_experiment(path)
    out = _store(tmp_path / "exp", spec, {
        "student/reduced/wrn-10-1/s0": {"top1_error": 20.0, "params": 78_042, "macs": 10**6, "genotype": None,
                                        "model": "wrn-10-1"},
        "student/snip/100k/s0": {"top1_error": 15.0, "params": 300_000, "nonzero_params": 100_000, "macs": 10**7,
                                 "genotype": None}})
    md = Path(experiment_report(out, tmp_path / "report")["report"]).read_text()
    caption = next(line for line in md.splitlines() if line.startswith("Students at each budget"))
    assert "reduced: smaller networks" in caption and "SNIP: unstructured SNIP" in caption
    assert "random" not in caption and "BlockSwap" not in caption and "single" not in caption and "L1" not in caption


def test_teacher_seed_makes_one_teacher_for_every_student(tmp_path):
    spec = load_experiment(_teacher_seed_file(tmp_path))
    runs = expand(spec)
    assert [r.key for r in runs if r.phase == "teacher"] == ["teacher/s1"]  # one teacher, not one per seed
    from blockswap.experiments.runner import _resolve

    class Done:  # a store in which every run is finished
        def result(self, key):
            return {}

    for r in runs:
        if r.phase == "student" and r.method == "l1":
            need = _resolve(r, spec, tmp_path / "exp", Done())
            assert need["teacher"].endswith("teacher/s1") and need["start_from"] == need["teacher"]
    with pytest.raises(BlockSwapError, match="teacher_seed must be an integer >= 0"):
        load_experiment(_teacher_seed_file(tmp_path, -1))


def _teacher_seed_file(tmp_path: Path, seed: int = 1) -> Path:
    path = tmp_path / "one-teacher.toml"
    path.write_text(BASE.replace("distill = false", f"distill = true\nteacher_seed = {seed}")
                    + '[methods.random]\nnetworks = 2\nseeds = [0, 1, 2]\nsignals = ["fisher"]\n[methods.l1]\n')
    return path


def test_every_phase_runs_in_one_wave_and_students_after_what_they_need():
    from blockswap.experiments.grid import PHASES
    from blockswap.experiments.runner import WAVES

    assert sorted(p for w in WAVES for p in w) == sorted(PHASES)  # each phase in exactly one wave
    assert WAVES[-1] == ("student",)  # students need teachers and searches: the last wave
