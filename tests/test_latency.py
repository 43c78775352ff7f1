"""Latency tables and latency budgets: the table's arithmetic, its file, the measurement's resume,
and a search whose every candidate's predicted latency lies in the window. No timing is asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest

import blockswap.export.latency as latency_module
from blockswap import BlockSwapError, RunOptions, SearchConfig, run_search
from blockswap.export.latency import Protocol, measure_table, validate_table
from blockswap.report.search import search_table
from blockswap.space.blocks import parse_candidates
from blockswap.space.budget import parse_budget
from blockswap.space.costs import CostTable
from blockswap.space.latency import LatencyTable, load_latency_table, shape_key
from blockswap.space.networks import network_spec
from helpers import one_line_error, run_cli

NET, SIZE = "wrn-16-1", 32
CANDS = "S,G(4),B(2)"


def _hand_table(path=None) -> LatencyTable:
    """A made-up table: each block type costs a different number of milliseconds per shape."""
    spec = network_spec(NET)
    keys = list(dict.fromkeys(shape_key(s) for s in spec.slots(SIZE)))
    per_type = {"S": 1.0, "G(4)": 0.4, "B(2)": 0.6}
    blocks = {k: {b: 1e-3 * (v + 0.1 * i) for b, v in per_type.items()} for i, k in enumerate(keys)}
    table = LatencyTable(NET, SIZE, 1, "cpu", "torch", 2, 0.5e-3, blocks, offset=0.2e-3)
    if path is not None:
        table.save(path)
    return table


def test_prediction_is_stem_head_offset_and_the_sum_of_blocks(tmp_path):
    table = _hand_table(tmp_path / "t.json")
    assert load_latency_table(tmp_path / "t.json") == table  # round trip
    genotype = ["S", "G(4)", "B(2)", "S", "G(4)", "B(2)"]
    keys = [shape_key(s) for s in network_spec(NET).slots(SIZE)]
    by_hand = 0.5e-3 + 0.2e-3 + sum(table.blocks[k][b] for k, b in zip(keys, genotype))
    assert table.predict(genotype) == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(BlockSwapError, match="no time for G\\(8\\) at block 0"):
        table.predict(["G(8)"] + genotype[1:])


def test_cost_table_latency_totals_equal_a_brute_force_sum():
    table = _hand_table()
    cands = parse_candidates(CANDS)
    costs = CostTable(network_spec(NET), cands, SIZE, latency=table)
    choices = np.random.default_rng(0).integers(0, len(cands), size=(50, 6))
    totals = costs.totals(choices, "latency")
    for row, total in zip(choices, totals):
        assert total == pytest.approx(table.predict([cands[j].name for j in row]), rel=1e-12)
    low, high = costs.range("latency")
    assert low == pytest.approx(table.predict(["G(4)"] * 6)) and high == pytest.approx(table.predict(["S"] * 6))


def test_malformed_tables_are_refused_in_one_line(tmp_path):
    good = _hand_table().to_dict()
    cases = [({**good, "fixed": -1}, "'fixed'"), ({**good, "network": "vgg"}, "vgg"),
             ({**good, "blocks": {"1x1->1/s1": {"S": 1e-3}}}, "not a block position"),
             ({**good, "blocks": {k: {"S": "fast"} for k in good["blocks"]}}, "non-negative seconds"),
             ({**good, "version": 9}, "version 9"), ({**good, "machine": ["cpu"]}, "'machine' must be an object"),
             ({**good, "blocks": {k: {"Conv": 1e-3} for k in good["blocks"]}}, "must be written 'S'"),
             ({**good, "blocks": {k: {"X(3)": 1e-3} for k in good["blocks"]}}, "unknown block type 'X\\(3\\)'")]
    for data, needle in cases:
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(BlockSwapError, match=needle):
            load_latency_table(tmp_path / "bad.json")


def test_latency_budgets_parse_and_need_a_table():
    assert parse_budget("latency=12ms").target == pytest.approx(0.012)
    assert parse_budget("latency=800us").target == pytest.approx(8e-4)
    assert parse_budget(parse_budget("latency=1.5ms").text) == parse_budget("latency=1.5ms")
    with pytest.raises(BlockSwapError, match="bad latency '12'"):
        parse_budget("latency=12")
    with pytest.raises(BlockSwapError, match="needs a latency table"):
        SearchConfig(model=NET, budget="latency=4ms", data="synthetic")


def test_a_latency_search_samples_only_inside_the_window(tmp_path):
    table = _hand_table(tmp_path / "t.json")
    config = SearchConfig(model=NET, budget="latency=5ms", tolerance=0.05, candidates=CANDS, samples=6,
                          data="synthetic", batch_size=16, latency_table=str(tmp_path / "t.json"))
    result = run_search(config, tmp_path / "s", run=RunOptions(progress=False))
    record = json.loads((tmp_path / "s" / "run.json").read_text())
    import csv

    with open(tmp_path / "s" / "candidates.csv") as f:
        genotypes = [row["genotype"] for row in csv.DictReader(f)]
    assert len(genotypes) == 6
    for text in genotypes:
        assert 0.95 * 5e-3 <= table.predict(text.split(",")) <= 1.05 * 5e-3
    assert record["winner"]["predicted_latency_s"] == pytest.approx(table.predict(result.best.blocks))
    # Resume compares the table's content, not its path.
    (tmp_path / "copy.json").write_text((tmp_path / "t.json").read_text())
    again = run_search(SearchConfig(**{**config.to_dict(), "latency_table": str(tmp_path / "copy.json")}),
                       tmp_path / "s", resume=True, run=RunOptions(progress=False))
    assert again.scored_now == 0
    changed = _hand_table()
    changed = LatencyTable(**{**changed.__dict__, "fixed": 0.6e-3})
    changed.save(tmp_path / "changed.json")
    with pytest.raises(BlockSwapError, match="latency table's content"):
        run_search(SearchConfig(**{**config.to_dict(), "latency_table": str(tmp_path / "changed.json")}),
                   tmp_path / "s", resume=True, run=RunOptions(progress=False))
    # Changed in place, at the recorded path: the recorded digest tells (as the command line builds it).
    (tmp_path / "t.json").write_text((tmp_path / "changed.json").read_text())
    with pytest.raises(BlockSwapError, match="latency table's content"):
        run_search(SearchConfig(**{**config.to_dict(), "latency_table_sha256": None}), tmp_path / "s",
                   resume=True, run=RunOptions(progress=False))
    # Gone: the search's record stays readable (its report needs no table).
    (tmp_path / "t.json").unlink()
    assert len(search_table(tmp_path / "s").scored) == 6


def test_measuring_writes_every_entry_and_resumes_without_timing_twice(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(latency_module, "time_module",
                        lambda module, shape, protocol, seed=0, backend="torch": calls.append(shape) or 1e-3)
    cands = parse_candidates("S,G(4),B(2)")
    out = tmp_path / "t.json"
    protocol = Protocol(batch_size=1, warmup=1, repeats=1)
    table = measure_table("wrn-10-1", cands, out, input_size=16, protocol=protocol)
    spec = network_spec("wrn-10-1")
    expected = {(shape_key(s), b.name) for s in spec.slots(16) for b in cands if b.problem(s.c_in, s.c_out) is None}
    assert {(k, b) for k, row in table.blocks.items() for b in row} == expected
    assert len(calls) == len(expected) + 2  # + stem and head
    with pytest.raises(BlockSwapError, match="exists; add resume=True"):
        measure_table("wrn-10-1", cands, out, input_size=16, protocol=protocol)
    calls.clear()
    more = parse_candidates("S,G(4),B(2),G(2)")
    measure_table("wrn-10-1", more, out, input_size=16, protocol=protocol, resume=True)
    assert len(calls) == 3  # only G(2), at the 3 shapes
    fitted, figures = validate_table(load_latency_table(out), more, n=4, seed=1, protocol=protocol)
    # measured = 1 ms per network, predicted = stem+head+blocks: the offset is their median gap.
    gaps = [1e-3 - r["predicted_s"] for r in figures["rows"]]
    assert fitted.offset == pytest.approx(float(np.median(gaps)))


@pytest.mark.slow
def test_cli_cost_shows_the_predicted_latency(tmp_path):
    table = _hand_table(tmp_path / "t.json")
    genotype = "S,G(4),B(2),S,G(4),B(2)"
    proc = run_cli("cost", "--model", NET, "--genotype", genotype, "--latency-table", str(tmp_path / "t.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["latency_s"] == pytest.approx(table.predict(genotype.split(",")))
    one_line_error(run_cli("search", "--model", NET, "--budget", "latency=5ms", "--data", "synthetic",
                           "--out", str(tmp_path / "x")), "needs a latency table")


def test_the_onnxruntime_backend_times_exported_blocks_and_resumes_only_with_it(tmp_path):
    pytest.importorskip("onnxruntime")
    cands = parse_candidates("S")
    protocol = Protocol(batch_size=1, warmup=1, repeats=2)
    table = measure_table("wrn-10-1", cands, tmp_path / "t.json", input_size=16, protocol=protocol,
                          backend="onnxruntime")
    assert table.backend == "onnxruntime" and load_latency_table(tmp_path / "t.json").backend == "onnxruntime"
    assert all(row["S"] > 0 for row in table.blocks.values()) and len(table.blocks) == 3 and table.fixed > 0
    with pytest.raises(BlockSwapError, match="cannot resume .*backend"):
        measure_table("wrn-10-1", cands, tmp_path / "t.json", input_size=16, protocol=protocol, resume=True)
    with pytest.raises(BlockSwapError, match="unknown backend 'tvm'"):
        measure_table("wrn-10-1", cands, tmp_path / "u.json", input_size=16, protocol=protocol, backend="tvm")


@pytest.mark.slow
def test_cli_latency_table_measures_validates_and_stores_the_offset(tmp_path):
    out = tmp_path / "t.json"
    args = ("latency-table", "--model", "wrn-10-1", "--candidates", "S,G(4),B(2)", "--input-size", "16",
            "--warmup", "1", "--repeats", "2", "--out", str(out))
    # Timings are physical: on a loaded machine a 2-repeat table can fit an offset that predicts a
    # negative latency, which the CLI refuses in one line (check_offset). Such a refusal is retried
    # on a fresh table.
    for _ in range(3):
        proc = run_cli(*args, "--validate", "3", "--json")
        if proc.returncode == 0:
            break
        one_line_error(proc, "a latency must be positive")
        out.unlink()
    assert proc.returncode == 0, proc.stderr
    shown, table = json.loads(proc.stdout), load_latency_table(out)
    spec = network_spec("wrn-10-1")
    assert {(k, b) for k, row in table.blocks.items() for b in row} == {
        (shape_key(s), b.name) for s in spec.slots(16) for b in parse_candidates("S,G(4),B(2)")
        if b.problem(s.c_in, s.c_out) is None}
    rows = shown["validation"]["rows"]
    assert len(rows) == 3 and table.offset == pytest.approx(float(np.median([r["measured_s"] - r["predicted_s"]
                                                                             for r in rows])))
    for row in rows:  # the uncorrected prediction is the table's sum
        assert row["predicted_s"] == pytest.approx(table.predict(row["genotype"].split(",")) - table.offset)
    one_line_error(run_cli(*args, "--resume", "--backend", "tvm"), "unknown backend 'tvm'", "torch, onnxruntime")
    one_line_error(run_cli(*args, "--resume", "--device", "cuda:3"), "cuda:3")
