"""Genotypes: text, JSON and reference-CSV forms, and their checks."""

import json

import pytest

import blockswap as bs
from blockswap.space.genotype import Genotype, reference_names

BS800K_AUTHORS = ['ConvB4', 'Conv', 'A16B2', 'DConvA4', 'DConvA8', 'ConvB4', 'DConvA4', 'Conv', 'DConvA16',
                  'DConvA2', 'Conv', 'DConvG16', 'DConvG8', 'DConvA2', 'DConvA2', 'G8B2', 'G4B2', 'DConvA8']
BS800K_PAPER = "B(4),S,BG(2,16),G(4),G(8),B(4),G(4),S,G(16),G(2),S,G(N/16),G(N/8),G(2),G(2),BG(2,M/8),BG(2,M/4),G(8)"


def test_reference_csv_is_read_in_order(tmp_path):
    path = tmp_path / "bs800k.csv"
    path.write_text(',index,convs,fisher\n0,0,"' + str(BS800K_AUTHORS) + '",0.0\n')
    geno = bs.read_reference_csv(path, "wrn-40-2")
    assert geno.text == BS800K_PAPER
    assert bs.load_genotype(path, "wrn-40-2") == geno
    assert bs.load_genotype("reference:bs800k") == geno  # the copy shipped with the package


def test_all_shipped_reference_genotypes_load():
    names = reference_names()
    assert len(names) == 9
    for name in names:
        geno = bs.load_genotype(f"reference:{name}")
        assert geno.network == ("resnet34" if "imagenet" in name else "wrn-40-2")


def test_text_and_json_round_trip(tmp_path):
    geno = Genotype.from_text(BS800K_PAPER, "wrn-40-2")
    assert Genotype.from_text(geno.text, "wrn-40-2") == geno
    path = geno.save(tmp_path / "g.json", score=1.5)
    data = json.loads(path.read_text())
    assert data["format"] == "blockswap.genotype" and data["version"] == 1
    assert data["blocks"][2] == "BG(2,16)" and data["meta"] == {"score": 1.5}
    assert bs.load_genotype(path) == geno
    assert bs.load_genotype(str(path), "wrn-40-2") == geno
    # The file names its network; the genotype in memory holds the resolved spec (issue 17).
    assert set(data) == {"format", "version", "network", "blocks", "meta"} and data["network"] == "wrn-40-2"
    assert bs.load_genotype(path).spec == bs.network_spec("wrn-40-2")


def test_standard_and_uniform():
    assert Genotype.standard("wrn-16-1").text == "S,S,S,S,S,S"
    assert Genotype.uniform("resnet18", "G(N)").names == ["G(N)"] * 8


@pytest.mark.parametrize("make,fragment", [
    (lambda p: Genotype.from_text("S,S", "wrn-40-2"), "has 2 blocks but wrn-40-2 has 18"),
    (lambda p: Genotype.from_text("", "wrn-40-2"), "empty genotype"),
    (lambda p: Genotype.from_text(",".join(["G(32)"] * 6), "wrn-16-1"), "block 0 (G(32))"),
    (lambda p: bs.load_genotype(p / "missing.json"), "does not exist"),
    (lambda p: bs.load_genotype("S,S,S,S,S,S"), "give the model"),
    (lambda p: bs.load_genotype("reference:bs900k"), "valid names: bs1.6m"),
    (lambda p: bs.load_genotype("reference:bs800k", "resnet34"), "is for wrn-40-2"),
])
def test_bad_genotypes_fail_clearly(tmp_path, make, fragment):
    with pytest.raises(bs.BlockSwapError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        make(tmp_path)


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "cannot read genotype file"),
    ('{"format": "other"}', "not a BlockSwap genotype"),
    ('{"format": "blockswap.genotype", "version": 9, "network": "wrn-16-1", "blocks": []}', "version 9"),
    ('{"format": "blockswap.genotype", "version": 1, "network": "wrn-16-1"}', "needs"),
    ('{"format": "blockswap.genotype", "version": 1, "network": "vgg16", "blocks": ["S"]}', "unknown model"),
])
def test_malformed_json_files(tmp_path, content, fragment):
    path = tmp_path / "g.json"
    path.write_text(content)
    with pytest.raises(bs.BlockSwapError, match=fragment):
        bs.load_genotype(path)


@pytest.mark.parametrize("content,fragment", [
    ("a,b\n1,2\n", "'convs' column"),
    (',index,convs\n0,0,"[Conv, Conv"\n', "not a list"),
    (',index,convs\n0,0,"[\'Conv\', \'Nope\']"\n', "unknown block type 'Nope'"),
])
def test_malformed_csv_files(tmp_path, content, fragment):
    path = tmp_path / "g.csv"
    path.write_text(content)
    with pytest.raises(bs.BlockSwapError, match=fragment):
        bs.load_genotype(path, "wrn-40-2")
