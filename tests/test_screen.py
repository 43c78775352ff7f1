"""The screened search (issue 19): round one ranks all on a slice (float32 or bf16), round two
rescores the top k in float32 on the whole minibatch; checked against a separately run
exhaustive search's stored scores."""

import json
import sqlite3
from collections import Counter

import numpy as np
import pytest
import torch

import blockswap
from blockswap import BlockSwapError, RunOptions, SearchConfig, run_search
from blockswap.proxies import fisher_potential
from blockswap.search import Scorer

from helpers import brute_fisher

TINY_TYPES = "S,G(4),B(2),BG(2,M/4),G(N),BG(4,M/8)"
CFG = dict(model="wrn-10-1", budget="40k", tolerance=0.2, candidates=TINY_TYPES, data="synthetic",
           batch_size=8, seed=3, input_size=16)
N = 6
LOCAL = RunOptions("local", progress=False, threads=1)


def stage_scores(out, stage):
    """{genotype: score} of one stage, read from the results file with SQL (not the store)."""
    with sqlite3.connect(out / "results.sqlite") as db:
        return dict(db.execute("SELECT c.genotype, s.score FROM scores s JOIN candidates c USING (idx) "
                               "WHERE s.stage = ?", (stage,)).fetchall())


@pytest.fixture(scope="module")
def exhaustive(tmp_path_factory):
    out = tmp_path_factory.mktemp("exhaustive")
    run_search(SearchConfig(samples=N, **CFG), out, run=LOCAL)
    return stage_scores(out, "full")


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_keeping_all_gives_the_exhaustive_winner_and_scores(tmp_path, exhaustive, precision):
    config = SearchConfig(samples=N, screen=True, screen_keep=N, screen_slice=0.5, screen_precision=precision, **CFG)
    result = run_search(config, tmp_path, run=LOCAL)
    assert result.best.text == max(exhaustive, key=exhaustive.get)
    assert stage_scores(tmp_path, "full") == exhaustive  # exactly: round two is the exhaustive score
    screen = stage_scores(tmp_path, "screen")
    assert set(screen) == set(exhaustive) and not stage_scores(tmp_path, "slice")
    assert all(screen[g] != exhaustive[g] for g in screen)  # another minibatch (a slice), its own stage


def test_round_two_rescores_the_screen_top_k_exactly(tmp_path, exhaustive):
    config = SearchConfig(samples=N, screen=True, screen_keep=3, screen_slice=1.0, screen_precision="bf16", **CFG)
    result = run_search(config, tmp_path, run=LOCAL)
    screen, full = stage_scores(tmp_path, "screen"), stage_scores(tmp_path, "full")
    assert set(full) == set(sorted(screen, key=lambda g: -screen[g])[:3])
    assert all(full[g] == exhaustive[g] for g in full)  # bf16 never lands in the "full" stage
    # bf16 on the whole minibatch: near the float32 score, not equal to it.
    assert all(screen[g] != exhaustive[g] and screen[g] == pytest.approx(exhaustive[g], rel=0.1) for g in screen)
    assert result.best.text == max(full, key=full.get) and result.scored == 3 and result.slice_scored == N
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["config"]["screen_precision"] == "bf16" and record["scored_slice"] == N
    header = (tmp_path / "candidates.csv").read_text().splitlines()[0].split(",")
    assert header[5] == "screen_fisher"


@pytest.mark.parametrize("stop_after", [2, N + 1])  # in round one; in round two
def test_resume_of_an_interrupted_screened_search_scores_nothing_twice(tmp_path, monkeypatch, exhaustive, stop_after):
    config = SearchConfig(samples=N, screen=True, screen_keep=3, screen_precision="bf16", **CFG)
    original, jobs = Scorer.score, []

    def counted(self, job, limit=None):
        if limit is not None and len(jobs) >= limit:
            raise KeyboardInterrupt
        jobs.append((job[0], job[2]))
        return original(self, job)

    monkeypatch.setattr(Scorer, "score", lambda self, job: counted(self, job, stop_after))
    with pytest.raises(KeyboardInterrupt):
        run_search(config, tmp_path, run=LOCAL)
    monkeypatch.setattr(Scorer, "score", lambda self, job: counted(self, job))
    result = run_search(config, tmp_path, resume=True, run=LOCAL)
    assert max(Counter(jobs).values()) == 1 and len(jobs) == N + 3
    assert result.slice_scored_now + result.scored_now == N + 3 - stop_after
    full = stage_scores(tmp_path, "full")
    assert all(full[g] == exhaustive[g] for g in full) and result.best.text == max(full, key=full.get)


def test_bf16_fisher_is_near_float64_and_float32_is_untouched():
    torch.manual_seed(0)
    net = blockswap.build_model("wrn-16-1")
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    ref = float(np.sum(brute_fisher(net.double().to(memory_format=torch.contiguous_format), x.double(), y)))
    net = net.float()
    default = fisher_potential(net, x, y)
    assert fisher_potential(net, x, y, precision="float32") == default  # the same path, bit for bit
    assert default.total == pytest.approx(ref, rel=1e-5)
    bf16 = fisher_potential(net, x, y, precision="bf16")
    assert bf16.total != default.total and bf16.total == pytest.approx(ref, rel=0.1)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast leaves the weights alone


def test_halving_keeps_its_stage_name(tmp_path):
    config = SearchConfig(samples=4, halving=True, halving_slice=0.5, halving_keep=0.5, **CFG)
    run_search(config, tmp_path, run=LOCAL)
    assert len(stage_scores(tmp_path, "slice")) == 4 and not stage_scores(tmp_path, "screen")
    assert len(stage_scores(tmp_path, "full")) == 2


@pytest.mark.parametrize("settings, match", [
    (dict(screen=True, halving=True), "choose one of halving and screen"),
    (dict(screen=True, screen_keep=0), "screen_keep must be a count"),
    (dict(screen=True, screen_keep=1.5), "screen_keep must be a count"),
    (dict(screen=True, screen_slice=0), r"screen_slice must be in \(0, 1\]"),
    (dict(screen=True, screen_precision="fp16"), "valid screen_precisions: float32, bf16"),
    (dict(screen=True, screen_precision="bf16", signals="snip"), "screens by the Fisher potential"),
    (dict(screen=True, rank_by="mean_rank(fisher,macs)"), "ranks its first round by one signal"),
])
def test_bad_screen_settings_are_one_line_errors(settings, match):
    with pytest.raises(BlockSwapError, match=match) as err:
        SearchConfig(**{**CFG, **settings})
    assert "\n" not in str(err.value)


def test_detection_screens_in_float32_only():
    base = dict(task="detection", model="resnet18", budget="5M", data="coco:/nowhere", screen=True)
    assert SearchConfig(**base).first_stage == "screen"
    with pytest.raises(BlockSwapError, match="detection search screens in float32 only"):
        SearchConfig(**base, screen_precision="bf16")


def test_keep_is_a_count_or_a_fraction_of_the_samples():
    assert SearchConfig(samples=300, screen=True, screen_keep=25).keep == 25
    assert SearchConfig(samples=300, screen=True, screen_keep=0.1).keep == 30  # ceil(0.1 * 300)
    assert SearchConfig(samples=20, screen=True, screen_keep=100).keep == 20  # never more than the samples
    assert SearchConfig(samples=300, screen=True, screen_slice=1.0).slice_size == 128


def test_cli_screen_flags(tmp_path, capsys):
    from blockswap.cli import main

    code = main(["search", "--model", "wrn-10-1", "--budget", "40k", "--tolerance", "0.2", "--candidates",
                 TINY_TYPES, "--samples", "4", "--data", "synthetic", "--batch-size", "8", "--input-size", "16",
                 "--executor", "local", "--threads", "1", "--out", str(tmp_path), "--screen",
                 "--screen-keep", "2", "--screen-slice", "0.5", "--screen-precision", "bf16"])
    assert code == 0
    assert "4 ranked on 4 examples in bf16" in capsys.readouterr().out
    assert len(stage_scores(tmp_path, "screen")) == 4 and len(stage_scores(tmp_path, "full")) == 2
