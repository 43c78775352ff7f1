"""Bad inputs as a user (or an attacker's data file) gives them: each is refused with one line
naming the bad value, before any of it runs, hangs or is silently dropped (issue 8)."""

from __future__ import annotations

import builtins
import os
import pickle
import re
import socket

import numpy as np
import pytest
import torch

import blockswap
from blockswap import BlockSwapError, RunOptions, SearchConfig, fisher_potential, parse_signal, run_search
from blockswap.data import load_split
from blockswap.proxies import PROXIES, NonFiniteSignal, rank
from blockswap.search import Scorer
from blockswap.search.scorer import scoring_data
from blockswap.space import Genotype, parse_candidates

from helpers import ROOT, make_cifar10, run_cli

# The tiny search of test_search.py: 2 candidates of wrn-10-1 on 16-pixel synthetic images.
CFG = {"model": "wrn-10-1", "budget": "40k", "tolerance": 0.2, "candidates": "S,G(4),B(2),BG(2,M/4),G(N),BG(4,M/8)",
       "data": "synthetic", "batch_size": 8, "seed": 3, "input_size": 16, "samples": 2}


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ---- 1. a data file cannot run code ---------------------------------------------------------

class _Call:
    """Pickles as "call fn(*args)" (what a crafted data file does), to leave a visible marker."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("fn, extra", [(os.mkdir, ()), (builtins.open, ("w",))], ids=["mkdir", "open"])
def test_a_cifar_pickle_that_calls_code_is_refused_before_the_call(tmp_path, fn, extra):
    folder, _ = make_cifar10(tmp_path)
    marker = tmp_path / "marker"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"labels": [0], b"data": _Call(fn, str(marker), *extra)}, f)
    with pytest.raises(BlockSwapError) as info:
        load_split(f"cifar10:{tmp_path}", "train")
    msg = one_line(info)
    assert str(folder / "data_batch_1") in msg
    assert f"calls {fn.__module__}.{fn.__qualname__}," in msg
    assert not marker.exists()  # refused when the global was looked up, before any call


@pytest.mark.parametrize("protocol", [2, 4, 5, "numpy1"])
def test_genuine_cifar_pickles_load_under_every_protocol_and_numpy_naming(tmp_path, protocol):
    folder, written = make_cifar10(tmp_path)
    for name, (data, labels) in written.items():
        # numpy scalars for labels exercise the scalar global as well as the array ones.
        entry = {b"batch_label": name.encode(), b"labels": [np.int64(v) for v in labels], b"data": data}
        raw = pickle.dumps(entry, protocol=2 if protocol == "numpy1" else protocol)
        if protocol == "numpy1":  # what numpy 1.x writes: numpy.core, not numpy._core
            raw = raw.replace(b"numpy._core.", b"numpy.core.")
            assert b"numpy.core.multiarray" in raw and b"numpy._core" not in raw
        (folder / name).write_bytes(raw)
    train = load_split(f"cifar10:{tmp_path}", "train")
    names = [f"data_batch_{i}" for i in range(1, 6)]
    assert np.array_equal(train.images.numpy(),
                          np.concatenate([written[n][0] for n in names]).reshape(-1, 3, 32, 32))
    assert train.labels.tolist() == [v for n in names for v in written[n][1]]


def test_no_other_module_unpickles_user_files():
    package = ROOT / "blockswap"
    for path in package.rglob("*.py"):
        text = path.read_text()
        if path.name != "pickles.py":
            assert not re.search(r"pickle\.(load|loads|Unpickler)\b", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


# ---- 2. an unreachable Ray cluster fails instead of hanging ---------------------------------

@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_ray_address_is_an_error_and_leaves_nothing_behind(tmp_path, monkeypatch, scheme):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already initialised in this process: no address is dialled")
    monkeypatch.setenv("BLOCKSWAP_RAY_CONNECT_TIMEOUT", "1")  # the probe's bound; nothing else waits
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"{scheme}127.0.0.1:{port}"
    out = tmp_path / "run"
    with pytest.raises(BlockSwapError) as info:
        run_search(SearchConfig(**CFG), out, run=RunOptions(executor="ray", address=address))
    msg = one_line(info)
    assert f"cannot reach a Ray cluster at {address!r}" in msg and "1 s timeout" in msg
    assert "ray start --head" in msg
    # A new search that scored nothing leaves no results file: a plain rerun is accepted.
    assert not (out / "results.sqlite").exists()
    assert run_search(SearchConfig(**CFG), out).scored == CFG["samples"]


# ---- 3. empty entries in block lists ---------------------------------------------------------

@pytest.mark.parametrize("text, position", [("S,,S,S,S,S,S", 2), (",S,S,S,S,S,S", 1),
                                            ("S,S,S,S,S,S,", 7), ("S,S, ,S,S,S,S", 3)])
def test_a_genotype_with_an_empty_entry_is_refused(text, position):
    with pytest.raises(BlockSwapError) as info:
        Genotype.from_text(text, "wrn-16-1")  # 6 blocks: dropping the empty entry would fit
    assert one_line(info).startswith(f"genotype {text!r} has an empty entry at position {position} of 7")


@pytest.mark.parametrize("text, position, count", [("S,,G(2)", 2, 3), ("G(2),", 2, 2), (" ,S", 1, 2),
                                                   ("BG(2,4),,S", 2, 3)])
def test_a_candidate_set_with_an_empty_entry_is_refused(text, position, count):
    with pytest.raises(BlockSwapError) as info:
        parse_candidates(text)
    assert f"candidate set {text!r} has an empty entry at position {position} of {count}" in one_line(info)
    with pytest.raises(BlockSwapError, match=f"empty entry at position {position}"):
        SearchConfig(**{**CFG, "candidates": text})
    # Spaces around entries and commas inside parentheses are still fine.
    assert [b.name for b in parse_candidates(" S , BG(2,4) ,G(2)")] == ["S", "BG(2,4)", "G(2)"]


@pytest.mark.slow
def test_the_cli_refuses_an_empty_genotype_entry_in_one_line():
    proc = run_cli("cost", "--model", "wrn-16-1", "--genotype", "S,,S,S,S,S,S")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        ("blockswap: error: genotype 'S,,S,S,S,S,S' has an empty entry at position 2 of 7; "
         "separate block types with single commas, e.g. 'S,G(4),B(2)'")]


# ---- 4. the signals check their minibatch and their value ------------------------------------

def _model(seed=0):
    torch.manual_seed(seed)
    return blockswap.build_model("wrn-10-1")  # 10 outputs


def _batch(n=4, size=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 10


def _every_entry_point(x, y):
    """fisher_potential and each registered signal, as a user calls them: (name, thunk)."""
    yield "fisher_potential", lambda: fisher_potential(_model(), x, y)
    for name in PROXIES:
        yield name, lambda name=name: parse_signal(name)(_model(), [(x, y)])


def test_labels_outside_the_model_outputs_are_refused_by_every_label_signal():
    x, y = _batch()
    y[2] = 12
    for name, call in _every_entry_point(x, y):
        if name != "fisher_potential" and not PROXIES[name].labels:
            continue  # synflow, naswot and jacob_cov read no labels
        with pytest.raises(BlockSwapError) as info:
            call()
        assert one_line(info) == "labels must be in [0, 10) (the model's outputs): got min 0, max 12", name
    y[2] = -1
    with pytest.raises(BlockSwapError, match="got min -1, max 3"):
        fisher_potential(_model(), x, y)


def test_float_targets_are_refused():
    x, y = _batch()
    for name, call in _every_entry_point(x, y.float()):
        if name != "fisher_potential" and not PROXIES[name].labels:
            continue
        with pytest.raises(BlockSwapError) as info:
            call()
        assert one_line(info) == "targets must be a 1-D tensor of integer class labels, got torch.float32 " \
                                 "of shape (4,)", name


def test_non_finite_inputs_are_refused_by_every_signal():
    x, y = _batch()
    x[1, 0, 3, 3], x[2, 1, 0, 0], x[3, 2, 5, 1] = float("nan"), float("inf"), -float("inf")
    for name, call in _every_entry_point(x, y):
        with pytest.raises(BlockSwapError) as info:
            call()
        assert one_line(info) == "inputs hold 3 NaN/inf values; give finite inputs", name


def test_other_malformed_batches_are_refused():
    x, y = _batch()
    with pytest.raises(BlockSwapError, match=r"inputs are torch.uint8 but the model's weights are torch.float32"):
        fisher_potential(_model(), x.to(torch.uint8), y)
    with pytest.raises(BlockSwapError, match="one target per input: got 4 inputs and 3 targets"):
        parse_signal("snip")(_model(), [(x, y[:3])])
    with pytest.raises(BlockSwapError, match="at least 2 examples .*got 1"):
        parse_signal("naswot")(_model(), [(x[:1], y[:1])])


def _poisoned(model):
    """`model` with one NaN weight in its first block: every Fisher value it gives is NaN."""
    with torch.no_grad():
        weight = next(p for p in model.blocks[0].parameters() if p.ndim == 4)
        weight[(0,) * weight.ndim] = float("nan")
    return model


def test_a_nan_signal_is_an_error_not_a_value():
    x, y = _batch()
    with pytest.raises(NonFiniteSignal) as info:
        fisher_potential(_poisoned(_model()), x, y)
    assert isinstance(info.value, BlockSwapError)
    # Caught at the first block whose output is not finite (before any sum could hide it).
    assert one_line(info).startswith("ranking signal fisher: the activations of block 0 are non-finite")
    with pytest.raises(NonFiniteSignal, match="ranking signal snip"):
        parse_signal("snip")(_poisoned(_model()), [(x, y)])


def test_the_scorer_records_a_nan_candidate_as_unscored_and_ranks_it_last(monkeypatch):
    config = SearchConfig(**{**CFG, "signals": ("fisher", "snip")})
    scorer = Scorer(config, scoring_data(config))
    genotype = "S,S,S"
    fine = scorer.score((0, genotype, "full"))
    assert fine["score"] == fine["signals"]["fisher"] > 0 and len(fine["per_block"]) == 3
    build = scorer.build
    monkeypatch.setattr(scorer, "build", lambda text: _poisoned(build(text)))
    bad = scorer.score((1, genotype, "full"))
    assert bad["score"] is None and bad["signals"] == {"fisher": None, "snip": None} and bad["per_block"] == []
    assert rank({1: bad["score"], 0: fine["score"]}) == [0, 1]


# ---- 5. a batch larger than the training split ------------------------------------------------

def test_one_batch_size_check_in_the_data_layer():
    split = load_split("synthetic", "train")
    split.check_batch_size(len(split))
    with pytest.raises(BlockSwapError) as info:
        split.check_batch_size(len(split) + 1, "training split of synthetic")
    assert one_line(info) == ("batch size 513 is larger than the training split of synthetic (512 images); "
                              "use a batch size of at most 512")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(BlockSwapError, match="batch size must be a positive number of images"):
            split.check_batch_size(bad)
    with pytest.raises(BlockSwapError, match="batch size 600 is larger than the split"):
        split.sample(600, torch.Generator())


def test_search_refuses_a_batch_larger_than_the_training_split_before_writing(tmp_path):
    with pytest.raises(BlockSwapError) as info:
        run_search(SearchConfig(**{**CFG, "batch_size": 513}), tmp_path / "run")
    assert one_line(info) == ("batch size 513 is larger than the training split of synthetic (512 images); "
                              "use a batch size of at most 512")
    assert not (tmp_path / "run" / "results.sqlite").exists()
