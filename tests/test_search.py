"""Budgeted sampling, the search loop, its results file, resume after kill -9, executors, CLI."""

import csv
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import blockswap
from blockswap import BlockSwapError, RunOptions, SearchConfig, run_search
from blockswap.space import parse_candidates
from blockswap.space import CostTable, parse_budget
from blockswap.space import network_spec
from blockswap.search import Scorer, ScoringData, candidate_seed, sample_genotypes
from blockswap.seeding import derive_seed

from helpers import brute_fisher
from helpers import ROOT, run_cli

TINY_TYPES = "S,G(4),B(2),BG(2,M/4),G(N),BG(4,M/8)"  # BG(4,M/8) cannot split wrn-10-1's 4-wide bottleneck


def enumerate_space(model, types):
    """Every genotype of `model` over `types` where each type fits its position, with its
    cost from `blockswap.cost` (the per-genotype formula, not the sampler's table)."""
    spec = network_spec(model)
    blocks = parse_candidates(types)
    per_slot = [[b for b in blocks if b.problem(s.c_in, s.c_out) is None] for s in spec.slots()]
    out = {}
    for combo in itertools.product(*per_slot):
        text = ",".join(b.name for b in combo)
        out[text] = blockswap.cost(model, text).params
    return out, per_slot


# ---- the sampler --------------------------------------------------------------------------


def test_sampler_matches_brute_force_enumeration():
    space, per_slot = enumerate_space("wrn-10-1", TINY_TYPES)
    assert len(space) == np.prod([len(s) for s in per_slot]) < 6 ** 3  # some types do not fit
    budget = parse_budget("40k", 0.1)
    window = {g for g, p in space.items() if budget.lower <= p <= budget.upper}
    assert 3 <= len(window) < len(space) / 2
    cands = parse_candidates(TINY_TYPES)
    table = CostTable(network_spec("wrn-10-1"), cands)
    report = sample_genotypes(table, budget, 4000, np.random.default_rng(0), unique=False)
    drawn = [",".join(cands[j].name for j in row) for row in report.choices]
    assert set(drawn) <= window  # nothing outside the window, nothing unfit
    # uniform over fitting types per block => uniform over the space => P(window) = |W| / |space|
    p = len(window) / len(space)
    assert abs(report.acceptance - p) < 5 * np.sqrt(p * (1 - p) / report.draws)
    counts = np.array([drawn.count(g) for g in sorted(window)])
    expected = len(drawn) / len(window)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < len(window) + 6 * np.sqrt(2 * len(window))  # far beyond the 99.9% quantile
    unique = sample_genotypes(table, budget, len(window), np.random.default_rng(1))
    assert {",".join(cands[j].name for j in row) for row in unique.choices} == window
    with pytest.raises(BlockSwapError, match=f"only {len(window)} distinct genotypes"):
        sample_genotypes(table, budget, len(window) + 1, np.random.default_rng(1))


def test_impossible_budget_fails_at_once_with_the_feasible_range():
    space, _ = enumerate_space("wrn-10-1", TINY_TYPES)
    low, high = min(space.values()), max(space.values())
    table = CostTable(network_spec("wrn-10-1"), parse_candidates(TINY_TYPES))
    assert table.range("params") == (low, high)

    class NoDraws:  # the budget is refused before a single proposal is drawn
        def integers(self, *args, **kwargs):
            raise AssertionError("a proposal was drawn for an impossible budget")

    with pytest.raises(BlockSwapError, match=f"{low:,}..{high:,}"):
        sample_genotypes(table, parse_budget("5M"), 10, NoDraws())


def test_rare_budget_is_reported_and_sampling_is_reproducible():
    space, _ = enumerate_space("wrn-10-1", TINY_TYPES)
    # the window holding only the cheapest genotype: reachable, rare
    low = min(space.values())
    budget = parse_budget(str(low), 0.001)
    table = CostTable(network_spec("wrn-10-1"), parse_candidates(TINY_TYPES))
    report = sample_genotypes(table, budget, 1, np.random.default_rng(0), min_acceptance=0.05)
    assert report.rare and report.acceptance < 0.05
    a = sample_genotypes(table, parse_budget("40k", 0.1), 5, np.random.default_rng(3)).choices
    b = sample_genotypes(table, parse_budget("40k", 0.1), 5, np.random.default_rng(3)).choices
    assert np.array_equal(a, b)


# ---- the search ---------------------------------------------------------------------------

CFG = dict(model="wrn-10-1", budget="40k", tolerance=0.2, candidates=TINY_TYPES, data="synthetic",
           batch_size=8, seed=3, input_size=16)


def scores_of(out):
    with sqlite3.connect(out / "results.sqlite") as db:
        return dict(db.execute("SELECT c.genotype, s.score FROM scores s JOIN candidates c USING (idx) "
                               "WHERE s.stage = 'full'").fetchall())


def test_search_picks_the_brute_force_argmax_and_writes_its_files(tmp_path):
    config = SearchConfig(samples=6, **CFG)
    result = run_search(config, tmp_path, run=RunOptions("local", progress=False, top_k=3))
    # Recompute every candidate independently: same seed rule, same minibatch, brute-force Fisher.
    split = blockswap.load_split("synthetic", "train", 16)
    x, y = split.sample(8, torch.Generator().manual_seed(derive_seed(3, "minibatch")))
    rows = list(csv.DictReader(open(tmp_path / "candidates.csv")))
    assert len(rows) == 6
    brute = {}
    for row in rows:
        assert int(row["params"]) == blockswap.cost("wrn-10-1", row["genotype"]).params
        assert int(row["macs"]) == blockswap.cost("wrn-10-1", row["genotype"], input_size=16).macs
        with torch.random.fork_rng():
            torch.manual_seed(candidate_seed(config, row["genotype"]))
            model = blockswap.build_model("wrn-10-1", row["genotype"])
        brute[row["genotype"]] = sum(brute_fisher(model, x, y))
        assert float(row["fisher"]) == pytest.approx(brute[row["genotype"]], rel=2e-2)  # channels-last fp32
        assert len(row["fisher_per_block"].split(";")) == 3
    ranked = sorted(brute, key=brute.get, reverse=True)
    assert brute[ranked[0]] > brute[ranked[1]] * 1.02  # a clear winner for this seed
    assert result.best.text == ranked[0]
    winner = blockswap.load_genotype(tmp_path / "winner.json")
    assert winner.text == ranked[0]
    top = json.loads((tmp_path / "top.json").read_text())["top"]
    assert [t["genotype"] for t in top] == ranked[:3]
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["winner"]["genotype"] == ranked[0] and record["seed"] == 3
    assert record["versions"]["torch"] == torch.__version__ and record["config"]["samples"] == 6


def test_scores_do_not_depend_on_order_or_global_rng():
    config = SearchConfig(samples=2, **CFG)
    split = blockswap.load_split("synthetic", "train", 16)
    batch = [split.sample(8, torch.Generator().manual_seed(0))]
    scorer = Scorer(config, ScoringData(tuple(batch), 10))
    a, b = "S,G(4),B(2)", "G(N),S,S"
    state = torch.random.get_rng_state()
    first = [scorer.score((0, a, "full")).score, scorer.score((1, b, "full")).score]
    assert torch.equal(state, torch.random.get_rng_state())
    torch.manual_seed(123)
    second = [scorer.score((1, b, "full")).score, scorer.score((0, a, "full")).score]
    assert first == second[::-1]


def children(pid):
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return out


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


KILL = dict(CFG, model="wrn-16-1", budget="100k", candidates=None)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to find the worker processes")
@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path):
    config = SearchConfig(samples=60, **KILL)
    reference = run_search(config, tmp_path / "ref", run=RunOptions("local", progress=False, threads=1))
    out = tmp_path / "killed"
    args = ["search", "--model", "wrn-16-1", "--budget", "100k", "--tolerance", "0.2", "--samples", "60", "--data", "synthetic", "--batch-size", "8", "--seed", "3",
            "--input-size", "16", "--threads", "1", "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "blockswap", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = out / "results.sqlite"
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    done = con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 10:
                break
    assert proc.poll() is None, f"search ended before it could be killed: {proc.stderr.read()}"
    workers = children(proc.pid)
    assert workers  # the default executor scores in a worker process
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)  # no orphan keeps scoring or holding memory
    with sqlite3.connect(db) as con:
        survived = con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    assert 10 <= survived < 60
    with pytest.raises(BlockSwapError, match="resume=True"):
        run_search(config, out, run=RunOptions("local", progress=False))
    resumed = run_search(config, out, resume=True, run=RunOptions("local", progress=False, threads=1))
    assert resumed.scored_now == 60 - survived  # nothing that was committed is scored again
    assert resumed.best.text == reference.best.text
    assert scores_of(out) == scores_of(tmp_path / "ref")
    with pytest.raises(BlockSwapError, match="seed=3"):
        run_search(SearchConfig(samples=60, **{**KILL, "seed": 4}), out, resume=True)


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_process_and_ray_executors_give_the_sequential_scores(tmp_path):
    pytest.importorskip("ray")
    config = SearchConfig(samples=6, **CFG)
    local = run_search(config, tmp_path / "local", run=RunOptions("local", progress=False, threads=1))
    procs = run_search(config, tmp_path / "process", run=RunOptions("process", workers=2, progress=False))
    ray = run_search(config, tmp_path / "ray", run=RunOptions("ray", workers=2, progress=False))
    assert scores_of(tmp_path / "process") == scores_of(tmp_path / "local")
    assert scores_of(tmp_path / "ray") == scores_of(tmp_path / "local")
    assert local.best == procs.best == ray.best


def test_halving_rescores_the_slice_top_on_the_full_batch(tmp_path):
    config = SearchConfig(samples=6, halving=True, halving_slice=0.5, halving_keep=0.3, **CFG)
    result = run_search(config, tmp_path / "h", run=RunOptions("local", progress=False))
    full = run_search(SearchConfig(samples=6, **CFG), tmp_path / "f", run=RunOptions("local", progress=False))
    with sqlite3.connect(tmp_path / "h" / "results.sqlite") as db:
        slice_scores = dict(db.execute("SELECT idx, score FROM scores WHERE stage = 'slice'").fetchall())
        rescored = {i for (i,) in db.execute("SELECT idx FROM scores WHERE stage = 'full'")}
    assert len(slice_scores) == 6
    assert rescored == set(sorted(slice_scores, key=lambda i: -slice_scores[i])[:2])
    halving_full, all_full = scores_of(tmp_path / "h"), scores_of(tmp_path / "f")
    assert all(all_full[g] == s for g, s in halving_full.items())  # same seeds, same minibatch
    assert result.best.text == max(halving_full, key=halving_full.get)
    assert result.scored == 2 and full.scored == 6


def test_bad_settings_are_one_line_errors():
    with pytest.raises(BlockSwapError, match="unknown executor 'dask'; valid executors: local, process, ray"):
        RunOptions(executor="dask")
    with pytest.raises(BlockSwapError, match="unknown ranking signal"):
        SearchConfig(signals=("fisher", "magic"))
    with pytest.raises(BlockSwapError, match="unknown dataset"):
        SearchConfig(data="svhn")
    with pytest.raises(BlockSwapError, match="unknown budget metric"):
        SearchConfig(budget="flops=3M")


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_cli_json_and_errors(tmp_path):
    out = tmp_path / "cli"
    args = ["search", "--model", "wrn-10-1", "--budget", "40k", "--tolerance", "0.2", "--candidates",
            TINY_TYPES, "--samples", "3", "--data", "synthetic", "--batch-size", "8", "--input-size", "16",
            "--out", str(out)]
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {"best", "params", "macs", "score", "scored", "seconds"} <= set(summary)
    assert summary["scored"] == 3 and summary["params"] == blockswap.cost("wrn-10-1", summary["best"]).params
    bad = run_cli(*[a if a != "40k" else "5M" for a in args[:-1]], str(tmp_path / "bad"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "can reach: 8.2K..77.8K params" in bad.stderr
    assert not (tmp_path / "bad").exists()  # nothing written, so the corrected command just runs
    again = run_cli(*args)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_a_search_scored_by_0_1_is_reexported_but_not_extended(tmp_path):
    # 0.1 scored in channels-last with inexact BN: its store has no "scoring" version.
    config = SearchConfig(samples=3, **CFG)
    run_search(config, tmp_path, run=RunOptions(progress=False))
    db = sqlite3.connect(tmp_path / "results.sqlite")
    with db:
        db.execute("DELETE FROM meta WHERE key = 'scoring'")
    again = run_search(config, tmp_path, resume=True, run=RunOptions(progress=False))  # all scored: fine
    assert again.scored == 3 and again.scored_now == 0
    with db:
        db.execute("DELETE FROM scores WHERE idx = 2")
    db.close()
    with pytest.raises(BlockSwapError, match="scored by BlockSwap 0.1"):
        run_search(config, tmp_path, resume=True, run=RunOptions(progress=False))


def test_a_config_recorded_by_0_2_reads_back_and_records_the_same_keys():
    # run.json / results.sqlite of 0.2, before tasks were values: the task a name, no table held.
    recorded = {"model": "wrn-10-1", "budget": "40K", "tolerance": 0.2, "candidates": ["S", "G(4)", "B(2)"],
                "samples": 3, "data": "synthetic", "batch_size": 8, "seed": 3, "signals": ["fisher"],
                "augment": False, "input_size": 16, "halving": False, "halving_slice": 0.25, "halving_keep": 0.1,
                "micro_batch": None, "latency_table": None, "latency_table_sha256": None,
                "min_acceptance": 1e-3, "max_draws": 20_000_000, "task": "classification"}
    config = SearchConfig.from_dict(recorded)
    assert config == SearchConfig(model="wrn-10-1", budget="40k", tolerance=0.2, candidates="S,G(4),B(2)",
                                  samples=3, data="synthetic", batch_size=8, seed=3, input_size=16)
    assert set(config.to_dict()) == set(recorded) | {"rank_by", "screen", "screen_slice", "screen_keep",
                                                     "screen_precision"}  # recorded since --rank-by, --screen
    assert SearchConfig.from_dict({k: v for k, v in recorded.items() if k != "task"}) == config  # 0.1: no task
