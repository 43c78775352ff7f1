"""`blockswap report`: grouping over seeds, ranking, and plots a user can open."""

import json

import pytest

import blockswap as bs
from blockswap.report import load_records, plot_runs, plot_search, run_groups, search_table
from helpers import run_cli


def write_record(folder, role, genotype, seed, top1, top5, teacher=True, beta=1000.0):
    folder.mkdir(parents=True)
    rec = {"format": "blockswap.run", "version": 1, "role": role, "data": "digits",
           "model": {"kind": "blockswap", "name": "wrn-16-2", "genotype": genotype},
           "config": {"beta": beta, "kd_weight": 0.0}, "teacher": {"source": "t"} if teacher else None,
           "genotype": genotype, "params": 1000 if genotype else 5000, "macs": 10, "top1_error": top1,
           "top5_error": top5, "seeds": {"run": seed}}
    (folder / "record.json").write_text(json.dumps(rec))


@pytest.fixture
def runs(tmp_path):
    errors = {"teacher": [2.0, 3.0, 4.0], "at": [5.0, 6.0, 8.0], "ce": [7.0, 7.5]}
    for seed, e in enumerate(errors["teacher"]):
        write_record(tmp_path / f"teacher-{seed}", "teacher", None, seed, e, 0.5, teacher=False)
    for seed, e in enumerate(errors["at"]):
        write_record(tmp_path / f"at-{seed}", "student", "S,G(4)", seed, e, 1.0)
    for seed, e in enumerate(errors["ce"]):
        write_record(tmp_path / "nested" / f"ce-{seed}", "student", "S,G(4)", seed, e, 1.0, teacher=False)
    return tmp_path, errors


def test_groups_give_mean_and_sample_std_over_seeds(runs):
    folder, errors = runs
    groups = {g["method"]: g for g in run_groups(load_records([folder]))}
    assert set(groups) == {"teacher", "student (AT beta=1000)", "student (no distillation)"}
    for name, key in [("teacher", "teacher"), ("student (AT beta=1000)", "at"), ("student (no distillation)", "ce")]:
        values = errors[key]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        assert groups[name]["top1_error"] == pytest.approx(mean)
        assert groups[name]["top1_std"] == pytest.approx(std)
        assert groups[name]["runs"] == len(values)


def test_plots_are_real_png_files(runs, tmp_path):
    folder, _ = runs
    path = plot_runs(run_groups(load_records([folder])), tmp_path / "plots" / "runs.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_search_report_ranks_by_the_signal_from_the_store(tmp_path):
    # The results file is the truth: an exported candidates.csv that disagrees (truncated, or
    # edited) must not change the ranking.
    from blockswap.search import Candidate, ResultStore, ScoreRow, SearchConfig

    config = SearchConfig(model="wrn-10-1", budget="10k", samples=4, data="synthetic")
    scores = {0: 0.5, 1: 2.5, 2: None, 3: 1.5}
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.start(config, {"accepted": 4}, [Candidate(i, f"G({2 ** i}),S,S", 100 + i, 10 + i, 7) for i in scores])
        for i, value in scores.items():
            if value is not None:
                store.add(ScoreRow(i, "full", value, {"fisher": value}, [value], 0.1))
    (tmp_path / "candidates.csv").write_text("index,genotype,params,macs,seed,fisher\n0,\"G(1),S,S\",100,10,7,9.9\n")
    table = search_table(tmp_path)
    assert [r["index"] for r in table.ranked()] == [1, 3, 0]  # highest first, unscored left out
    assert len(table.rows) == 4 and len(table.scored) == 3
    assert plot_search(table, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    res = run_cli("report", "search", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["top"][0]["genotype"] == "G(2),S,S"


def test_report_errors_are_one_line(tmp_path):
    with pytest.raises(bs.BlockSwapError, match="not a search folder"):
        search_table(tmp_path)
    (tmp_path / "record.json").write_text("{}")
    with pytest.raises(bs.BlockSwapError, match="not a BlockSwap run record"):
        load_records([tmp_path])
    res = run_cli("report", "runs", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and res.stderr.startswith("blockswap: error:") and "Traceback" not in res.stderr


def test_runs_of_two_datasets_show_the_dataset_column(tmp_path):
    # Issue 21: one setting on two datasets gave two identical-looking rows (86.35 vs 70.31).
    for data, error in (("digits", 86.35), ("synthetic", 70.31)):
        write_record(tmp_path / data, "student", "S,G(4)", 0, error, 1.0)
        rec = json.loads((tmp_path / data / "record.json").read_text())
        (tmp_path / data / "record.json").write_text(json.dumps({**rec, "data": data}))
    res = run_cli("report", "runs", str(tmp_path))
    assert res.returncode == 0, res.stderr
    header, _, *rows = res.stdout.splitlines()[:4]
    assert header.split()[:4] == ["method", "data", "network", "genotype"]
    assert sorted(r.split()[3] for r in rows[:2]) == ["digits", "synthetic"]  # after "student (AT beta=1000)"
    single = run_cli("report", "runs", str(tmp_path / "digits"))
    assert "data" not in single.stdout.splitlines()[0].split()  # one dataset: no column


def test_html_renders_the_inline_markdown_of_reports():
    from blockswap.report.document import _inline, plain

    # Expected HTML written out by hand: code verbatim (escaped, no markup inside), strong,
    # emphasis, links; arithmetic stars and G(N/16) left alone.
    assert _inline("`BG(2,16),G(N/16)` **17.46** *n=3* [report](a/report.md) 2*3*4 <x>") == (
        '<code>BG(2,16),G(N/16)</code> <strong>17.46</strong> <em>n=3</em> '
        '<a href="a/report.md">report</a> 2*3*4 &lt;x&gt;')
    assert _inline("`**not bold**`") == "<code>**not bold**</code>"
    assert plain("`a` **b** [c](d)") == "a b c"


def test_read_markdown_inverts_write_markdown(tmp_path):
    from blockswap.report.document import Section, Table, read_markdown, write_markdown

    sections = [Section("One", ["first `para`", "second"], [Table(["a", "b"], [["1", "`G(4)`"], ["-", "x"]], "cap")],
                        [("f.png", "a figure")]),
                Section("Two", ["only text"])]
    write_markdown("T", ["intro one", "intro two"], sections, tmp_path / "r.md")
    title, intro, read = read_markdown(tmp_path / "r.md")
    assert (title, intro) == ("T", ["intro one", "intro two"])
    assert [(s.title, s.text, s.images) for s in read] == [(s.title, s.text, s.images) for s in sections]
    assert [(t.headers, t.rows, t.caption) for t in read[0].tables] == [(["a", "b"], [["1", "`G(4)`"], ["-", "x"]], "cap")]


def test_count_text_names_counts_in_k_and_m():
    from blockswap.report.figures import count_text

    assert [count_text(x) for x in (7.5e6, 2e5, 999, 1.5e9)] == ["7.5M", "200K", "999", "1.5G"]
