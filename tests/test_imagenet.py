"""ImageNet students end to end (paper Sec. 6) on a tiny ImageNet-layout folder: a search over
the 16 blocks of the pre-activation ResNet-34, a student distilled from a torchvision ResNet-34
at the four stage outputs with the imagenet recipe (beta 750), an interrupted run resumed to the
uninterrupted run's weights, and top-1 / top-5 error recomputed by hand."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from blockswap.cli import main
from blockswap.data import load_split
from blockswap.space.costs import network_cost
from blockswap.train import load_model, parse_model, recipe, train_model
from helpers import make_imagenet


@pytest.mark.slow  # several ResNet-34 trainings: about a minute
def test_resnet34_student_of_a_torchvision_teacher_searches_trains_resumes_and_evaluates(tmp_path, capsys):
    make_imagenet(tmp_path / "inet", per_class=4)
    data = f"imagenet:{tmp_path / 'inet'}"
    weights = tmp_path / "resnet34-3class.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet34(num_classes=3).state_dict(), weights)

    assert main(["search", "--model", "resnet34", "--budget", "3m", "--samples", "3", "--data", data,
                 "--input-size", "64", "--batch-size", "6", "--executor", "local", "--out",
                 str(tmp_path / "search"), "--quiet", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert abs(found["params"] - 3e6) <= 0.025 * 3e6
    # The student is the 3-class network: its cost counts a 512 x 3 + 3 classifier.
    assert found["params"] == network_cost("resnet34", found["best"], 64, num_classes=3).params

    def student(out, cfg, **kw):
        return train_model(cfg, data, out, parse_model("resnet34", found["best"], None, 64),
                           teacher="torchvision:resnet34", teacher_weights=weights, progress=False, **kw)

    cfg = recipe("imagenet", epochs=2, batch_size=6, workers=0, step_epochs=1)
    assert cfg.beta == 750.0  # paper Sec. 6
    whole = student(tmp_path / "whole", cfg)

    class Stop(Exception):
        pass

    def stop(_row):
        raise Stop

    with pytest.raises(Stop):
        student(tmp_path / "cut", cfg, on_epoch_end=stop)
    resumed = student(tmp_path / "cut", cfg, resume=True)
    a, _ = load_model(tmp_path / "whole")
    b, _ = load_model(tmp_path / "cut")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert [r["train_at_loss"] for r in resumed["history"]] == [r["train_at_loss"] for r in whole["history"]]
    assert whole["history"][0]["train_at_loss"] > 0  # attention transfer at the stage outputs is on

    assert main(["evaluate", "--checkpoint", str(tmp_path / "cut"), "--data", data, "--loader-workers", "0", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    # By hand: resize 73 (8/7 of 64), centre crop 64, the network's top-1 and top-5 over the 12 images.
    x, y = next(load_split(data, "val", 64, workers=0).batches(12))
    with torch.no_grad():
        logits = b(x)
    top1 = (logits.argmax(1) != y).float().mean().item() * 100
    top5 = 0.0  # 3 classes: the true class is always in the top 5
    assert shown["top1_error"] == pytest.approx(top1) and shown["top5_error"] == pytest.approx(top5)
    assert shown["top1_error"] == pytest.approx(resumed["top1_error"])
