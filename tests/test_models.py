"""Networks: the contract the search and the trainer rely on, and the torchvision teacher."""

import math

import pytest
import torch
import torchvision

import blockswap as bs
from blockswap.nn import Block


def test_wrn_contract_blocks_probes_and_attention_points():
    model = bs.build_model("wrn-40-2", "reference:bs400k")
    assert len(model.blocks) == 18
    assert all(isinstance(b, Block) and isinstance(b.probe, torch.nn.Identity) for b in model.blocks)
    assert [b.block_type.name for b in model.blocks] == bs.load_genotype("reference:bs400k").names
    x = torch.randn(2, 3, 32, 32)
    logits, points = model.forward_intermediates(x)
    assert logits.shape == (2, 10)
    assert list(points) == ["stage1", "stage2", "stage3"]
    assert [tuple(p.shape) for p in points.values()] == [(2, 32, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8)]
    # The attention points are the outputs of the last block of each stage, and the same pass
    # gives the logits of a plain call.
    outs = []
    hooks = [model.blocks[i].register_forward_hook(lambda m, i, o: outs.append(o)) for i in (5, 11, 17)]
    model.eval()
    with torch.no_grad():
        logits, points = model.forward_intermediates(x)
        plain = model(x)
    for h in hooks:
        h.remove()
    for o, p in zip(outs, points.values()):
        torch.testing.assert_close(o, p, rtol=0, atol=0)
    torch.testing.assert_close(plain, logits, rtol=0, atol=0)
    torch.testing.assert_close(model.forward_features(x), points["stage3"], rtol=0, atol=0)


def test_resnet_students_have_16_and_8_blocks_and_four_points():
    model = bs.build_model("resnet34", num_classes=5)
    assert len(model.blocks) == 16
    logits, points = model.forward_intermediates(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 5)
    assert [tuple(p.shape[1:]) for p in points.values()] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert len(bs.build_model("resnet18").blocks) == 8


def test_resnet18_half_is_one_registration_with_the_papers_cost():
    # Paper Table 3: ResNet-18-0.5, the last three stages at half width: 3.2M params, 909M MACs
    # (the paper's counter also counted ReLUs and pooling; ours counts conv + linear MACs).
    c = bs.cost("resnet18-0.5")
    assert round(c.params / 1e5) == 32 and abs(c.macs / 909e6 - 1) < 0.01
    model = bs.build_model("resnet18-0.5")
    assert sum(p.numel() for p in model.parameters()) == c.params
    assert [b.c_out for b in model.blocks] == [64, 64, 64, 64, 128, 128, 256, 256]


def test_frozen_batch_norm_through_norm_layer():
    from torchvision.ops.misc import FrozenBatchNorm2d

    model = bs.build_model("wrn-16-1", norm_layer=FrozenBatchNorm2d)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    frozen = sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert frozen == 6 * 2 + 1  # one per block, one inside each S body, the final BN
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()(torch.randn(4, 3, 32, 32))  # train mode: frozen statistics stay put
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Frozen BN holds its affine terms as buffers: parameters drop by 2 per channel.
    bn_channels = sum(m.weight.numel() for m in model.modules() if isinstance(m, FrozenBatchNorm2d))
    assert sum(p.numel() for p in model.parameters()) == bs.cost("wrn-16-1").params - 2 * bn_channels


def test_version_1_state_dicts_load_by_name():
    # BlockSwap 0.1 saved flat "blocks.I" keys, "fc" and "head.0" / "stem.weight": a checkpoint
    # of that version must load into the network with named stages, every tensor in its place.
    for name, genotype in [("wrn-16-1", "S,G(4),B(2),BG(2,M/4),G(N),S"), ("resnet18", None)]:
        torch.manual_seed(0)
        model = bs.build_model(name, genotype)
        old = {}
        index = {id(b): i for i, b in enumerate(model.blocks)}
        for key, value in model.state_dict().items():
            parts = key.split(".")
            if parts[0] == "stages":
                block = model.stages.get_submodule(f"{parts[1]}.{parts[2]}")
                old[".".join(["blocks", str(index[id(block)]), *parts[3:]])] = value
            elif parts[0] == "stem":
                old[{"conv": "stem.weight" if name.startswith("wrn") else "stem.0." + parts[-1],
                     "bn": "stem.1." + parts[-1]}[parts[1]]] = value
            elif parts[:2] == ["head", "bn"]:
                old["head.0." + parts[-1]] = value
            else:
                old["fc." + parts[-1]] = value
        fresh = bs.build_model(name, genotype)
        fresh.load_state_dict(old)
        for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
            assert torch.equal(a, b), k


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
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0) and torch.all(model.head.fc.bias == 0)


@pytest.mark.parametrize("name,fragment", [
    ("wrn-41-2", "6n\\+4"), ("wrn-40-0", "width k"), ("vgg16", "valid models"), ("resnet50", "resnet18-0.5"),
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
        logits, points = teacher.forward_intermediates(x)
        torch.testing.assert_close(logits, reference(x))
        torch.testing.assert_close(teacher(x), reference(x))
        torch.testing.assert_close(points["layer4"], reference.layer4(reference.layer3(reference.layer2(
            reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x)))))))))
    assert [p.shape[1] for p in points.values()] == [64, 128, 256, 512]


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
        bs.build_teacher("vgg16")  # not a ResNet: every ResNet-style torchvision network is one


@pytest.mark.parametrize("name, size", [("wrn-16-2", 32), ("resnet18", 64)])
def test_feature_info_describes_the_stage_outputs_as_timm(name, size):
    model = bs.build_model(name).eval()
    info = model.feature_info
    assert [set(f) for f in info] == [{"num_chs", "reduction", "module"}] * len(model.stage_names)
    seen = {}
    hooks = [model.get_submodule(f["module"]).register_forward_hook(
        lambda m, i, o, key=f["module"]: seen.__setitem__(key, o)) for f in info]
    with torch.no_grad():
        points = model.forward_intermediates(torch.randn(1, 3, size, size), intermediates_only=True)
    for h in hooks:
        h.remove()
    assert list(points) == list(model.stage_names)
    for f, out in zip(info, points.values()):
        # channels and stride read off the tensor the named module produced
        assert seen[f["module"]] is out
        assert out.shape[1] == f["num_chs"]
        assert (size // out.shape[2], size // out.shape[3]) == (f["reduction"],) * 2
    # the paper's networks: CIFAR stem keeps the resolution, ImageNet stem divides it by 4
    assert [f["reduction"] for f in info] == ([1, 2, 4] if name.startswith("wrn") else [4, 8, 16, 32])
