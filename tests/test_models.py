"""Networks: the contract the search and the trainer rely on, and the torchvision teacher."""

import math

import pytest
import torch
import torchvision

import blockswap as bs
from blockswap.blocks import Block


def test_wrn_contract_blocks_probes_and_attention_points():
    model = bs.build_model("wrn-40-2", "reference:bs400k")
    assert len(model.blocks) == 18
    assert all(isinstance(b, Block) and isinstance(b.probe, torch.nn.Identity) for b in model.blocks)
    assert [b.block_type.name for b in model.blocks] == bs.load_genotype("reference:bs400k").names
    logits, points = model(torch.randn(2, 3, 32, 32), return_attention=True)
    assert logits.shape == (2, 10)
    assert [tuple(p.shape) for p in points] == [(2, 32, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8)]
    # The attention points are the outputs of the last block of each stage.
    outs = []
    hooks = [model.blocks[i].register_forward_hook(lambda m, i, o: outs.append(o)) for i in (5, 11, 17)]
    model(torch.randn(2, 3, 32, 32), return_attention=True)
    for h in hooks:
        h.remove()
    assert [tuple(o.shape) for o in outs] == [tuple(p.shape) for p in points]


def test_resnet_students_have_16_and_8_blocks_and_four_points():
    model = bs.build_model("resnet34", num_classes=5)
    assert len(model.blocks) == 16
    logits, points = model(torch.randn(1, 3, 224, 224), return_attention=True)
    assert logits.shape == (1, 5)
    assert [tuple(p.shape[1:]) for p in points] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert len(bs.build_model("resnet18").blocks) == 8


def test_plain_call_returns_logits_only():
    out = bs.build_model("wrn-10-1")(torch.randn(3, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10)


def test_initialisation_is_the_authors():
    torch.manual_seed(0)
    model = bs.build_model("wrn-16-8")
    conv = model.blocks[1].body.conv2  # stage 1: 128 -> 128, 3x3
    expected = math.sqrt(2.0 / (3 * 3 * 128))
    assert abs(conv.weight.std().item() / expected - 1) < 0.02
    bn = model.blocks[1].bn
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0) and torch.all(model.fc.bias == 0)


@pytest.mark.parametrize("name,fragment", [
    ("wrn-41-2", "6n\\+4"), ("wrn-40-0", "width k"), ("vgg16", "valid models"), ("resnet50", "valid models"),
])
def test_bad_model_names(name, fragment):
    with pytest.raises(bs.BlockSwapError, match=fragment):
        bs.build_model(name)


def test_genotype_of_another_network_is_refused():
    geno = bs.load_genotype("reference:bs800k")
    with pytest.raises(bs.BlockSwapError, match="is for wrn-40-2"):
        bs.build_model("wrn-16-2", geno)


def test_torchvision_teacher_matches_torchvision_and_loads_local_weights(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    teacher = bs.build_teacher("resnet18", weights=path, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, points = teacher(x, return_attention=True)
        torch.testing.assert_close(logits, reference(x))
        torch.testing.assert_close(points[3], reference.layer4(reference.layer3(reference.layer2(
            reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x)))))))))
    assert [p.shape[1] for p in points] == [64, 128, 256, 512]


def test_teacher_weights_errors(tmp_path):
    with pytest.raises(bs.BlockSwapError, match="does not exist"):
        bs.build_teacher("resnet34", weights=tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(bs.BlockSwapError, match="cannot read"):
        bs.build_teacher("resnet18", weights=bad)
    other = tmp_path / "r18_10.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), other)
    with pytest.raises(bs.BlockSwapError, match="do not fit"):
        bs.build_teacher("resnet18", weights=other, num_classes=1000)
    with pytest.raises(bs.BlockSwapError, match="valid teachers"):
        bs.build_teacher("resnet101")
