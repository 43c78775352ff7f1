"""Every config field is type- and range-checked, named, on every path (`fields.check_fields`)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from blockswap.errors import BlockSwapError
from blockswap.search.config import RunOptions, SearchConfig
from blockswap.train.config import recipe

BAD_TRAIN = [("augment", "false"), ("flip", "no"), ("amp", 1), ("epochs", 1.5), ("epochs", True),
             ("momentum", math.nan), ("weight_decay", math.inf), ("beta", math.nan),
             ("kd_temperature", math.inf), ("lr", "0.1"), ("kd_weight", 1.5), ("workers", -1),
             ("schedule", 3), ("seed", "0"), ("batch_size", 0)]


@pytest.mark.parametrize("name,value", BAD_TRAIN)
def test_recipe_refuses_bad_values_by_name(name, value):
    with pytest.raises(BlockSwapError, match=rf"^(unknown )?{name}\b"):
        recipe("digits", **{name: value})


BAD_SEARCH = [("halving", "false"), ("augment", "true"), ("tolerance", "0.1"), ("tolerance", math.nan),
              ("samples", 2.0), ("samples", True), ("halving_slice", math.inf), ("min_acceptance", "0"),
              ("micro_batch", 1.5), ("task", 1), ("input_size", True)]


@pytest.mark.parametrize("name,value", BAD_SEARCH)
def test_search_config_refuses_bad_values_by_name(name, value):
    with pytest.raises(BlockSwapError, match=rf"^{name} must be"):
        SearchConfig(model="wrn-10-1", budget="50k", data="synthetic", **{name: value})


@pytest.mark.parametrize("name,value", [("workers", True), ("checkpoint", "false"), ("progress", "no"),
                                        ("threads", 2.0), ("top_k", "3"), ("device", 0)])
def test_run_options_refuse_bad_values_by_name(name, value):
    with pytest.raises(BlockSwapError, match=rf"^{name} must be"):
        RunOptions(**{name: value})


def test_good_values_still_accepted():
    cfg = recipe("digits", lr=1, momentum=0, augment=False, kd_weight=1)
    assert (cfg.lr, cfg.momentum, cfg.augment, cfg.kd_weight) == (1, 0, False, 1)
    search = SearchConfig(model="wrn-10-1", budget="50k", data="synthetic", tolerance=0.1, halving=True)
    assert search.tolerance == pytest.approx(0.1) and search.halving is True
    assert RunOptions(workers=2, threads=None).workers == 2


def test_latency_table_path_may_be_a_pathlike(tmp_path):
    # A path object is as good as its text; a number is not a path.
    config = SearchConfig(model="wrn-10-1", budget="latency=1ms", data="synthetic", latency_table=Path(tmp_path / "t.json"))
    assert config.latency_table == str(tmp_path / "t.json")  # the config reads no file: the search does
    with pytest.raises(BlockSwapError, match="does not exist"):
        config.with_latency_table()
    with pytest.raises(BlockSwapError, match="^latency_table must be a string"):
        SearchConfig(model="wrn-10-1", budget="latency=1ms", data="synthetic", latency_table=3)
