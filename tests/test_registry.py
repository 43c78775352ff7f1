"""The one strict registry type, and the tables built on it: datasets, executors, networks,
block families, candidate sets, ranking signals, recipes."""

import argparse
import re

import pytest
import torch

import blockswap as bs
from blockswap import BlockSwapError
from blockswap.cli import build_parser
from blockswap.data import DATASETS, DatasetEntry, load_split, parse_data, register_dataset
from blockswap.registry import Registry, nearest
from blockswap.space.networks import network_spec


def test_lookups_are_strict_and_name_the_valid_entries_and_the_nearest():
    colours = Registry("colour")
    colours.add("red", 1)
    colours.add("green", 2)
    assert colours["RED"] == 1 and "Green" in colours and 3 not in colours
    assert colours.names() == ["red", "green"] and len(colours) == 2 and dict(colours) == {"red": 1, "green": 2}
    with pytest.raises(BlockSwapError, match=r"^unknown colour 'gren'; valid colours: red, green; did you mean 'green'\?$"):
        colours["gren"]
    with pytest.raises(BlockSwapError, match=r"valid colours: red, green$"):  # nothing close: no guess
        colours["blue"]


def test_a_name_is_registered_once():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(BlockSwapError, match="thing 'A' is already registered"):
        reg.add("A", 2)  # case-insensitive by default
    with pytest.raises(BlockSwapError, match="non-empty name"):
        reg.add("  ", 3)
    exact = Registry("family", "families", case_sensitive=True)
    exact.add("B", 1)
    exact.add("b", 2)  # a different key when case matters
    assert exact["B"] == 1 and exact["b"] == 2 and "Bg" not in exact
    reg.remove("a")
    assert "a" not in reg
    with pytest.raises(BlockSwapError, match="unknown thing 'a'"):
        reg.remove("a")


def test_patterns_build_their_value_from_the_match_and_offer_their_examples():
    reg = Registry("shape")
    reg.add_pattern(r"square-(\d+)", lambda m: int(m[1]) ** 2, "square-N", examples=("square-4",))
    reg.add("circle", -1)
    assert reg["square-12"] == 144 and reg["SQUARE-3"] == 9 and "square-x" not in reg
    assert reg.forms() == ["circle", "square-N"] and reg.names() == ["circle"]
    with pytest.raises(BlockSwapError, match=r"valid shapes: circle, square-N; did you mean 'square-4'\?"):
        reg["sqare-4"]
    with pytest.raises(BlockSwapError, match="already registered"):
        reg.add_pattern(r"square-(\d+)", lambda m: 0)


def test_nearest_prefers_the_namespaced_name_with_the_same_tail():
    names = ["resnet18", "resnet34", "torchvision:resnet50"]
    assert nearest("resnet50", names) == "torchvision:resnet50"  # difflib alone says resnet18
    assert nearest("torchvision:resnet5O", names) == "torchvision:resnet50"
    assert nearest("vgg", names) is None


@pytest.mark.parametrize("name", ["torchvision:resnet5O", "resnet50"])
def test_an_unknown_network_suggests_the_torchvision_one(name):
    with pytest.raises(BlockSwapError, match=re.escape("did you mean 'torchvision:resnet50'?")):
        network_spec(name)


def test_every_table_suggests_the_nearest_name():
    from blockswap.experiments.runner import ExperimentOptions
    from blockswap.proxies import get_proxy
    from blockswap.space.blocks import family, parse_candidates
    from blockswap.train import recipe

    cases = [(lambda: bs.RunOptions(executor="proces"), "valid executors: local, process, ray", "process"),
             (lambda: ExperimentOptions(executor="rey"), "valid executors: local, ray", "ray"),
             (lambda: recipe("cifra"), "valid recipes: cifar, imagenet, digits", "cifar"),
             (lambda: get_proxy("fishr"), "valid signals: fisher", "fisher"),
             (lambda: family("b"), "valid families: S, G, B, BG", "B"),
             (lambda: parse_candidates("papr"), "valid sets: paper, bottleneck", "paper"),
             (lambda: parse_data("fashion_mnist:/data"), "valid datasets: cifar10:PATH", "fashion-mnist")]
    for make, valid, close in cases:
        with pytest.raises(BlockSwapError, match=f"{re.escape(valid)}.*did you mean {re.escape(repr(close))}"):
            make()


def _help(parser: argparse.ArgumentParser, *path: str) -> str:
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("command, tasks", [(("search",), {"classification", "detection"}),
                                           (("train", "teacher"), {"classification"}),
                                           (("evaluate",), {"classification", "detection"})])
def test_every_dataset_of_the_table_is_in_the_data_help(command, tasks):
    """Each command's --data help lists every dataset of the table it can read (train teacher:
    classification data; detectors train with `train detector`)."""
    text = _help(build_parser(), *command)
    for entry in DATASETS.values():
        # argparse wraps lines, also at a name's hyphen ("fashion-\nmnist"): compare without spaces
        shown = "".join(f"{entry.form}: {entry.help}".split()) in "".join(text.split())
        assert shown == (entry.task in tasks), entry.name
    assert {"cifar10", "cifar100", "imagenet", "coco", "fashion-mnist", "mnist", "digits", "synthetic"} <= set(DATASETS)


def test_the_table_says_what_each_dataset_serves():
    assert parse_data("coco:/x").task == "detection" and parse_data("digits").task == "classification"
    assert parse_data("cifar100:/x").known_classes == 100 and parse_data("imagenet:/x").known_classes is None
    assert parse_data("imagenet:/x").input_size == 224 and parse_data("mnist:/x").input_size == 32
    with pytest.raises(BlockSwapError, match="coco:/x is detection data; classification needs cifar10:PATH"):
        load_split("coco:/x")


def test_a_dataset_added_to_the_table_loads_like_the_built_in_ones():
    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.int64).remainder(256).to(torch.uint8).view(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 1])
    register_dataset(DatasetEntry("four", "four images", takes_path=False, input_size=8,
                                  read=lambda path, split, size: (images, labels)))
    try:
        split = load_split("four", "val")
        assert torch.equal(split.images, images) and split.labels.tolist() == [0, 1, 2, 1]
        assert split.num_classes == 3  # no fixed count: the largest label + 1
        x = images.double() / 255  # statistics of the training split, computed independently
        torch.testing.assert_close(split.mean.view(3).double() / 255, x.mean(dim=(0, 2, 3)), rtol=0, atol=1e-6)
        torch.testing.assert_close(split.std.view(3).double() / 255, x.std(dim=(0, 2, 3)), rtol=0, atol=1e-6)
        with pytest.raises(BlockSwapError, match="already registered"):
            register_dataset(DatasetEntry("four", "again", takes_path=False, read=lambda p, s, n: (images, labels)))
        with pytest.raises(BlockSwapError, match="takes no path"):
            parse_data("four:/x")
    finally:
        DATASETS.remove("four")
    with pytest.raises(BlockSwapError, match="exactly one of a reader and a streamer"):
        DatasetEntry("none", "no reader")


def test_the_documented_dataset_example_runs(tmp_path):
    """docs/architecture.md's "Adding a dataset" block, run on a tiny folder: the split holds the
    file's images (same pixels, no resize at 32 px) and labels, and the CLI's --data accepts it."""
    import re
    from pathlib import Path

    import numpy as np

    from blockswap.data import DATASETS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    section = doc.split("## Adding a dataset", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.arange(6) % 10
    for split in ("train", "val"):
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    try:
        scope: dict = {}
        exec(code.replace("/data/my-images", str(tmp_path)), scope)
        split = scope["split"]
        assert len(split) == 6 and split.num_classes == 10
        images, labels = next(iter(split.batches(6, shuffle=False)))
        assert labels.tolist() == y.tolist()
        # The split normalises with its statistics (held in units of 0..255): undo it and compare
        # with the file's pixels.
        pixels = images.double() * split.std.double() + split.mean.double()
        assert torch.allclose(pixels, torch.from_numpy(x).permute(0, 3, 1, 2).double(), atol=1e-3)
    finally:
        if "npz" in DATASETS:
            DATASETS.remove("npz")
