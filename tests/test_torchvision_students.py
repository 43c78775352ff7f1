"""Any torchvision ResNet as a teacher: the student space is discovered by structure (checked
against the torchvision module's own convolutions), bottleneck substitutions cost exactly what
the built modules count, the teacher's classes come from its weights, and a ResNet-50 student is
searched and trained end to end on ImageNet-layout data with a locally saved teacher."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from helpers import check_block_costs
import blockswap as bs
from blockswap.errors import BlockSwapError
from blockswap.nn import register_students_space, students_space
from blockswap.space import network_spec, parse_candidates


def conv_weights(module: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "wide_resnet50_2", "resnext50_32x4d"])
def test_the_unswapped_student_has_the_teachers_convolutions(arch):
    teacher = getattr(torchvision.models, arch)(weights=None, num_classes=7)
    spec = register_students_space(teacher, f"my-{arch}")  # a user's own (fine-tuned) copy
    assert spec.num_classes == 7
    student = bs.build_model(f"my-{arch}")
    # every conv of the teacher (stem, blocks, downsample shortcuts) in the student, same shapes
    assert conv_weights(student) == conv_weights(teacher)
    assert student.head.fc.weight.shape == teacher.fc.weight.shape
    spec_named = network_spec(f"torchvision:{arch}")
    assert (spec_named.widths, spec_named.depths, spec_named.strides) == (spec.widths, spec.depths, spec.strides)


def test_a_network_that_is_not_a_resnet_gets_a_clear_error():
    with pytest.raises(BlockSwapError, match="expected torchvision's ResNet stem"):
        students_space(torchvision.models.mobilenet_v2(weights=None), "mobilenet_v2")
    odd = torchvision.models.resnet18(weights=None)
    odd.layer2[1].conv2 = nn.Conv2d(128, 128, 5, padding=2, bias=False)
    with pytest.raises(BlockSwapError, match=r"layer2\[1\].*two ungrouped 3x3 convs"):
        students_space(odd, "odd")
    with pytest.raises(BlockSwapError, match="valid: resnet18, .*resnet50"):
        network_spec("torchvision:vgg16")


def test_bottleneck_and_structured_types_cost_what_pytorch_counts_at_every_resnet50_position():
    assert check_block_costs("torchvision:resnet50", parse_candidates("bottleneck+structured")) > 0


def test_teacher_classes_come_from_its_weights(tmp_path):
    from blockswap.train import load_model

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=5).state_dict(), path)
    net, desc = load_model("torchvision:resnet18", path)
    assert desc.num_classes == 5
    logits, points = net.forward_intermediates(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5) and list(points) == ["layer1", "layer2", "layer3", "layer4"]
    # The same teacher as a parsed reference (`space.refs`): one parse of "torchvision:NAME".
    from blockswap.space import parse_teacher

    assert load_model(parse_teacher(" TorchVision:ResNet18", path))[1] == desc
    with pytest.raises(BlockSwapError, match="needs its weights file"):
        load_model(parse_teacher("torchvision:resnet18"))


@pytest.mark.slow
def test_resnet50_student_searches_and_trains_on_imagenet_folders(tmp_path):
    from helpers import make_imagenet

    from blockswap.cli import main

    make_imagenet(tmp_path / "inet")
    weights = tmp_path / "resnet50-finetuned.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None, num_classes=3).state_dict(), weights)
    data = f"imagenet:{tmp_path / 'inet'}"
    assert main(["search", "--model", "torchvision:resnet50", "--budget", "12m", "--candidates", "bottleneck",
                 "--samples", "3", "--data", data, "--input-size", "64", "--batch-size", "4",
                 "--out", str(tmp_path / "search"), "--quiet"]) == 0
    winner = json.loads((tmp_path / "search" / "winner.json").read_text())
    assert winner["network"] == "torchvision:resnet50"
    assert main(["train", "student", "--teacher", "torchvision:resnet50", "--teacher-weights", str(weights),
                 "--genotype", str(tmp_path / "search" / "winner.json"), "--data", data, "--input-size", "64",
                 "--epochs", "1", "--batch-size", "4", "--loader-workers", "0", "--out", str(tmp_path / "student"),
                 "--quiet"]) == 0
    record = json.loads((tmp_path / "student" / "record.json").read_text())
    assert record["model"]["name"] == "torchvision:resnet50" and record["teacher"]["model"]["num_classes"] == 3
    assert abs(record["params"] - 12_000_000) <= 0.025 * 12_000_000
    built = bs.build_model("torchvision:resnet50", record["genotype"], 3)
    assert record["params"] == sum(p.numel() for p in built.parameters())


def test_cost_and_search_take_the_classes_of_the_teacher_weights(tmp_path, capsys):
    from blockswap.cli import main

    weights = tmp_path / "r18-7.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), weights)
    assert main(["cost", "--model", "torchvision:resnet18", "--teacher-weights", str(weights), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["num_classes"] == 7
    assert shown["params"] == sum(p.numel() for p in bs.build_model("torchvision:resnet18", None, 7).parameters())
    # digits has 10 classes, the teacher 7: refused before any work, naming both
    assert main(["search", "--model", "torchvision:resnet18", "--teacher-weights", str(weights), "--data", "digits",
                 "--budget", "3m", "--samples", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "7 classes but digits has 10" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
