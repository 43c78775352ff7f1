"""Tasks as values (classification, detection): what each budget counts, against the built
network; resolution from names; their data checks; the API's argument checks; and that
`import blockswap` loads no detection code."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from blockswap import BlockSwapError, RunOptions, SearchConfig, run_search
from blockswap.seeding import torch_seed
from blockswap.space import load_genotype, network_cost, network_spec
from blockswap.space.latency import LatencyTable
from blockswap.tasks import DETECTION_BATCH, DETECTION_MIN_SIZE, TASKS, ScoreRow, get_task

from helpers import ROOT

GENO = "G(N),B(2),BG(2,M/4),S"


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_classification_budget_counts_the_whole_built_network():
    task = TASKS["classification"]
    spec = network_spec("wrn-10-1", 7)
    assert task.counted_spec(spec) == spec
    geno = load_genotype("G(N),B(2),S", "wrn-10-1")
    with torch_seed(0):
        model = task.build("wrn-10-1", geno.text, 7, SimpleNamespace(spec_input_size=32))
    assert network_cost(task.counted_spec(spec), geno).params == numel(model)
    assert task.input_size(spec, None) == 32 and task.input_size(spec, 16) == 16


def test_the_detection_budget_counts_the_backbone_the_detector_holds():
    task = TASKS["detection"]
    geno = load_genotype(",".join([GENO] * 2), "resnet18")
    with torch_seed(0):
        detector = task.build("resnet18", geno.text, 11, SimpleNamespace(spec_input_size=64))
    counted = network_cost(task.counted_spec(network_spec("resnet18", 11)), geno, 64).params
    assert counted == numel(detector.backbone.body)  # stem and stages, no pool or classifier
    assert numel(detector) > counted  # the FPN and heads are outside the budget (the same for all)
    assert detector.transform.min_size == (64,)
    assert task.input_size(network_spec("resnet18"), None) == DETECTION_MIN_SIZE == 800


def test_a_task_is_resolved_once_and_recorded_by_name():
    config = SearchConfig(model="resnet18", task="detection", data="coco:/nowhere", budget="3M")
    assert config.task is TASKS["detection"] and config.task == get_task("detection")
    assert config.batch_size == DETECTION_BATCH and config.spec_input_size == 800
    assert config.to_dict()["task"] == "detection"
    assert SearchConfig.from_dict(config.to_dict()) == config
    assert SearchConfig().batch_size == 128 and SearchConfig(batch_size=8).batch_size == 8
    with pytest.raises(BlockSwapError, match="unknown task 'detecton'.*did you mean 'detection'"):
        SearchConfig(task="detecton")


def test_each_task_refuses_the_others_data_and_options():
    with pytest.raises(BlockSwapError, match=r"reads COCO-layout data \(coco:PATH\), not digits"):
        SearchConfig(model="resnet18", task="detection", data="digits")
    with pytest.raises(BlockSwapError, match="is detection data; add --task detection"):
        SearchConfig(data="coco:/nowhere")
    with pytest.raises(BlockSwapError, match="ranks by fisher alone"):
        SearchConfig(model="resnet18", task="detection", data="coco:/x", signals=("fisher", "snip"))
    with pytest.raises(BlockSwapError, match="no micro_batch"):
        SearchConfig(model="resnet18", task="detection", data="coco:/x", micro_batch=4)


def test_the_config_reads_no_file_and_holds_a_parsed_latency_table(tmp_path):
    missing = tmp_path / "missing.json"
    config = SearchConfig(model="wrn-10-1", budget="latency=5ms", latency_table=str(missing))  # no read
    assert config.latency is None
    with pytest.raises(BlockSwapError, match="missing.json"):
        config.with_latency_table()
    with pytest.raises(BlockSwapError, match="missing.json"):
        run_search(config, tmp_path / "s", run=RunOptions(progress=False))
    assert not (tmp_path / "s" / "results.sqlite").exists()
    table = LatencyTable("wrn-10-1", 32, 1, "cpu", "torch", 1, 1e-4, {})
    held = SearchConfig(model="wrn-10-1", budget="latency=5ms", latency=table)
    assert held.latency is table and held.latency_table_sha256 == table.sha256()
    assert "latency" not in held.to_dict() and held.to_dict()["latency_table_sha256"] == table.sha256()
    with pytest.raises(BlockSwapError, match="latency must be a LatencyTable"):
        SearchConfig(latency="t.json")


def test_public_functions_name_their_bad_arguments(tmp_path):
    config = SearchConfig(model="wrn-10-1", budget="40k", samples=1, data="synthetic", batch_size=4)
    cases = [(lambda: run_search(config.to_dict(), tmp_path), "config must be a SearchConfig, got dict"),
             (lambda: run_search(config, None), "out must be a folder path"),
             (lambda: run_search(config, tmp_path, run="local"), "run must be a RunOptions"),
             (lambda: run_search(config, tmp_path, resume="yes"), "resume must be True or False"),
             (lambda: SearchConfig(candidates=123), "candidates must be block types"),
             (lambda: SearchConfig(candidates=[1, 2]), "candidates must be block types"),
             (lambda: SearchConfig(task=3), "task must be a task name"),
             (lambda: SearchConfig.from_dict([]), "a search config is a dict")]
    for call, message in cases:
        with pytest.raises(BlockSwapError, match=message):
            call()
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_score_row_is_a_value_with_the_stored_fields():
    row = ScoreRow(3, "full", 1.5, {"fisher": 1.5}, [1.0, 0.5], 0.1)
    assert row["score"] == row.score == 1.5 and row.to_dict()["per_block"] == [1.0, 0.5]
    with pytest.raises(KeyError):
        row["genotype"]


_NO_DETECTION = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import blockswap as bs
from blockswap.search import executors  # what a search worker process imports
cfg = bs.SearchConfig(model="wrn-10-1", budget="40k", tolerance=0.2, candidates="S,G(4),B(2)", samples=2,
                      data="synthetic", batch_size=4, input_size=16)
bs.run_search(cfg, sys.argv[1], run=bs.RunOptions(progress=False))
assert "torchvision.models.detection" not in sys.modules, "a classification search loaded detection"
assert "build_detector" in dir(bs) and "build_detector" in bs.__all__
det = bs.build_detector("resnet18", None, 3, min_size=64)
assert "torchvision.models.detection" in sys.modules and bs.DetectorConfig() is not None
"""


@pytest.mark.slow  # subprocesses: a fresh interpreter's imports
def test_import_blockswap_and_a_classification_search_load_no_detection(tmp_path):
    for module in ("blockswap", "blockswap.cli"):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"| {module}\n" in done.stderr  # the import was timed
        assert "torchvision.models.detection" not in done.stderr, module
    done = subprocess.run([sys.executable, "-c", _NO_DETECTION, str(tmp_path / "s")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s" / "winner.json").exists()


def test_cost_counts_a_genotype_as_the_task_search_does(capsys):
    from blockswap.cli import main

    geno = ",".join([GENO] * 2)
    assert main(["cost", "--model", "resnet18", "--task", "detection", "--genotype", geno, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    with torch_seed(0):
        body = TASKS["detection"].build("resnet18", geno, 2, SimpleNamespace(spec_input_size=800)).backbone.body
    assert shown["params"] == numel(body) and shown["input_size"] == DETECTION_MIN_SIZE
    assert main(["cost", "--model", "resnet18", "--genotype", geno, "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["params"] - shown["params"] == 512 * 1000 + 1000 and whole["input_size"] == 224
