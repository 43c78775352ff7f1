"""Values, not names (issue 17): a genotype holds its network's spec, references to networks and
teachers are parsed once, and a space registered at run time is scored by spawned workers."""

from __future__ import annotations

import json
import pickle
import uuid

import pytest
from torch import nn
from torchvision.models.resnet import BasicBlock

import blockswap as bs
from blockswap.errors import BlockSwapError
from blockswap.nn import register_students_space
from blockswap.space import network_spec
from blockswap.space.genotype import Genotype, as_genotype, load_genotype
from blockswap.space.networks import NetworkSpec
from blockswap.space.refs import TeacherRef, is_torchvision, parse_teacher, torchvision_arch


class TinyResNet(nn.Module):
    """A user's own torchvision-style ResNet: 7x7/2 stem, two stages of one basic block each."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1, self.relu, self.maxpool = nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, down))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, classes)


def unregistered_spec() -> NetworkSpec:
    # A WRN-10-1 layout under a name no registry knows: only the value can describe it.
    return NetworkSpec(f"nowhere-{uuid.uuid4().hex[:6]}", "cifar", 16, (16, 32, 64), (1, 1, 1), (1, 2, 2),
                       num_classes=10, input_size=32, final_bn=True)


def test_a_genotype_holds_its_spec_and_needs_no_registry():
    spec = unregistered_spec()
    with pytest.raises(BlockSwapError, match="unknown model"):
        network_spec(spec.name)
    geno = Genotype.from_text("S,G(4),B(2)", spec)
    assert geno.spec is spec and geno.network == spec.name
    again = pickle.loads(pickle.dumps(geno))
    assert again == geno and again.spec == spec
    net = bs.build_model(spec, geno)
    assert bs.cost(spec, geno).params == sum(p.numel() for p in net.parameters())
    assert net.genotype == geno
    # The JSON form keeps storing the name; read back against the spec it needs no look-up.
    data = geno.to_dict()
    assert data["network"] == spec.name and data["blocks"] == ["S", "G(4)", "B(2)"]
    assert Genotype.from_dict(json.loads(json.dumps(data)), network=spec) == geno
    with pytest.raises(BlockSwapError, match=f"is for {spec.name}, not wrn-10-1"):
        Genotype.from_dict(data, network="wrn-10-1")


def test_genotypes_from_names_are_those_from_specs():
    by_name = Genotype("wrn-16-1", ("S",) * 6)
    assert by_name.spec == network_spec("wrn-16-1") and by_name.network == "wrn-16-1"
    assert by_name == Genotype(network_spec("wrn-16-1"), ("S",) * 6) == Genotype(network="wrn-16-1", blocks=["S"] * 6)
    assert by_name == Genotype("WRN-16-1", ("S",) * 6) and hash(by_name) == hash(Genotype("wrn-16-1", ["S"] * 6))
    assert by_name != Genotype("wrn-16-1", ("S",) * 5 + ("G(4)",))


def test_as_genotype_of_none_is_the_standard_genotype():
    assert as_genotype(None, "wrn-16-1").names == ["S"] * 6
    r50 = network_spec("torchvision:resnet50")
    assert as_genotype(None, r50).names == ["B(4)"] * 16  # the teacher's own bottlenecks
    g = Genotype.uniform("wrn-16-1", "G(4)")
    assert as_genotype(g, network_spec("wrn-16-1", 100)) is g  # the classes do not change the genotype
    with pytest.raises(BlockSwapError, match="is for wrn-16-1, not wrn-10-1"):
        as_genotype(g, "wrn-10-1")
    assert load_genotype("uniform:S", unregistered_spec()).names == ["S"] * 3


def test_network_references_are_parsed_in_one_place():
    assert torchvision_arch("torchvision:ResNet50 ") == "resnet50"
    assert torchvision_arch(" TorchVision: resnet18") == "resnet18"
    for other in ("wrn-40-2", "runs/teacher", "C:/runs/teacher", None, network_spec("resnet18")):
        assert torchvision_arch(other) is None and not is_torchvision(other)
    with pytest.raises(BlockSwapError, match="names no network"):
        torchvision_arch("torchvision:")


def test_teacher_references():
    ref = parse_teacher("torchvision:ResNet34", "r34.pth")
    assert ref == TeacherRef("torchvision", "resnet34", "r34.pth") and ref.text == "torchvision:resnet34"
    assert parse_teacher(ref) is ref
    from pathlib import Path

    assert parse_teacher(Path("runs/teacher")) == TeacherRef("checkpoint", "runs/teacher")
    assert TeacherRef.from_dict(ref.to_dict()) == ref
    assert pickle.loads(pickle.dumps(ref)) == ref
    with pytest.raises(BlockSwapError, match="a weights file goes with torchvision:NAME"):
        parse_teacher("runs/teacher", "w.pth")
    with pytest.raises(BlockSwapError, match="unknown teacher kind 'url'; valid kinds: checkpoint, torchvision, module"):
        TeacherRef("url", "http://x")
    with pytest.raises(BlockSwapError, match="a weights file goes with a torchvision:NAME teacher, not with a module"):
        TeacherRef("module", "TinyResNet", "w.pth")
    assert TeacherRef("module", "TinyResNet").text == "module:TinyResNet"


def test_a_search_config_carries_its_spec():
    spec = unregistered_spec()
    config = bs.SearchConfig(model=spec, budget="40k", tolerance=0.5, candidates="S,G(4)", samples=2,
                             data="synthetic", batch_size=4, input_size=16)
    assert config.model == spec.name and config.spec is spec
    assert "spec" not in config.to_dict()  # run.json keeps the name
    assert pickle.loads(pickle.dumps(config)).spec == spec
    named = bs.SearchConfig(model="WRN-10-1", budget="40k", tolerance=0.5, candidates="S,G(4)")
    assert named.spec == network_spec("wrn-10-1") and named.to_dict()["model"] == "wrn-10-1"


@pytest.mark.slow  # spawns worker processes
def test_a_space_registered_at_run_time_searches_with_the_process_executor(tmp_path):
    name = f"tiny-resnet-{uuid.uuid4().hex[:6]}"  # registered in this process only
    spec = register_students_space(TinyResNet(), name)
    total = bs.cost(name).params
    config = bs.SearchConfig(model=name, budget=str(total // 2), tolerance=0.6, candidates="S,G(4),B(2)",
                             samples=3, data="synthetic", batch_size=4, input_size=32, seed=1)
    found = bs.run_search(config, tmp_path / "s", run=bs.RunOptions(executor="process", workers=2, progress=False))
    assert found.scored_now == 3 and found.best.network == name
    built = bs.build_model(spec, found.best, 10)  # synthetic data: 10 classes
    assert found.params == sum(p.numel() for p in built.parameters())
    winner = json.loads((tmp_path / "s" / "winner.json").read_text())
    assert winner["network"] == name and winner["blocks"] == found.best.names
    # Resuming reads run.json's name-based config back and re-scores nothing.
    again = bs.run_search(bs.SearchConfig.from_dict(json.loads((tmp_path / "s" / "run.json").read_text())["config"]),
                          tmp_path / "s", resume=True, run=bs.RunOptions(progress=False))
    assert again.best == found.best and again.scored_now == 0
