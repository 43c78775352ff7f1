"""`blockswap blocks` and `blockswap cost` as a user runs them."""

import json

from helpers import run_cli


def test_cost_json_for_the_papers_800k_student():
    res = run_cli("cost", "--model", "wrn-40-2", "--genotype", "reference:bs800k", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["params"] == 811_370  # paper: 811.4K
    assert len(data["per_block"]) == 18
    assert data["params"] == data["fixed_params"] + sum(b["params"] for b in data["per_block"])
    assert data["per_block"][0]["block"] == "B(4)"


def test_cost_table_and_inline_genotype():
    res = run_cli("cost", "--model", "wrn-16-1", "--genotype", "S,G(4),B(2),BG(2,M/8),G(N),S")
    assert res.returncode == 0, res.stderr
    assert "wrn-16-1" in res.stdout and "BG(2,M/8)" in res.stdout


def test_blocks_lists_the_zoo_with_formula_costs():
    res = run_cli("blocks", "--channels", "64", "--size", "8", "--json")
    data = json.loads(res.stdout)
    assert len(data["blocks"]) == 23
    s = data["blocks"][0]
    # S at 64 -> 64: two 3x3 convs plus the block's and the inner BN.
    assert s["params"] == 2 * 9 * 64 * 64 + 2 * 64 + 2 * 64
    assert s["macs"] == 2 * 9 * 64 * 64 * 8 * 8


def test_bad_input_gives_one_line_and_exit_2():
    for args in (["cost", "--genotype", "S,S,Foo(2)", "--model", "wrn-10-1"],
                 ["cost", "--model", "wrn-40-2", "--genotype", "S,S"],
                 ["cost", "--model", "vgg", "--genotype", "S"],
                 ["cost", "--genotype", "/no/such/file.json"],
                 ["blocks", "--candidates", "S,G(5)", "--channels", "0"]):
        res = run_cli(*args)
        assert res.returncode == 2, args
        assert "Traceback" not in res.stderr
        assert res.stderr.startswith("blockswap: error: ") and res.stderr.count("\n") == 1, res.stderr


def test_cost_table_rows_hold_every_column_of_the_json(capsys):
    # The table and --json are two views of one count: every block's row shows its stage,
    # type, channels, stride and parameters as --json gives them.
    from blockswap.cli import main

    assert main(["cost", "--model", "wrn-10-1", "--json"]) == 0
    blocks = json.loads(capsys.readouterr().out)["per_block"]
    assert main(["cost", "--model", "wrn-10-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for b in blocks:
        row = next(line.split() for line in lines if line.split()[:1] == [str(b["index"])])
        assert row[1:6] == [str(b["stage"]), b["block"], f"{b['c_in']}->{b['c_out']}", str(b["stride"]), str(b["params"])]
