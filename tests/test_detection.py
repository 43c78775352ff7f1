"""COCO detection (paper Sec. 7): the digits-COCO maker, the COCO reader and its errors, the
backbone's cost, the detector's Fisher potential, COCO metrics, and the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from blockswap.data.coco import CocoSplit, read_coco
from blockswap.data.digits_coco import DigitsCocoConfig, make_digits_coco
from blockswap.errors import BlockSwapError
from blockswap.nn.detection import build_detector
from blockswap.nn.exact_bn import exact_batch_norm
from blockswap.proxies.detection import detector_fisher
from blockswap.seeding import torch_seed
from blockswap.space.costs import network_cost
from blockswap.space.genotype import Genotype, load_genotype
from blockswap.space.networks import network_spec
from blockswap.train.coco_eval import coco_metrics
from blockswap.train.detector import DetectorConfig, load_detector, train_detector
from helpers import counted, run_cli

SMALL = DigitsCocoConfig(train=6, val=3, size=64, min_digit=16, max_digit=30, max_digits=2, seed=1)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits-coco")
    make_digits_coco(root, SMALL)
    return root


def _pixels(path):
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_digits_coco_boxes_are_the_extent_of_their_masks(coco):
    from pycocotools import mask as mask_utils

    data = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    assert len(data["images"]) == SMALL.train and [c["id"] for c in data["categories"]] == list(range(1, 11))
    for im in data["images"]:
        assert _pixels(coco / "train2017" / im["file_name"]).shape == (SMALL.size, SMALL.size, 3)
    assert data["annotations"]
    for ann in data["annotations"]:
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        mask = mask_utils.decode(rle)
        # Brute force: the smallest rectangle holding every mask pixel, by a loop over pixels.
        xs = [x for y in range(mask.shape[0]) for x in range(mask.shape[1]) if mask[y, x]]
        ys = [y for y in range(mask.shape[0]) for x in range(mask.shape[1]) if mask[y, x]]
        assert ann["bbox"] == [min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1]
        assert ann["area"] == len(xs) and 1 <= ann["category_id"] <= 10


def test_loader_targets_and_seeded_flips(coco):
    split = CocoSplit(str(coco), "train", workers=0)
    data = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    seen = 0
    for hflip in (0.0, 1.0):
        for images, targets in split.batches(4, shuffle=True, hflip=hflip, generator=torch.Generator().manual_seed(0)):
            for x, t in zip(images, targets):
                anns = by_image[int(t["image_id"])]
                w = SMALL.size
                expect = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
                if hflip:
                    expect = [[w - b[2], b[1], w - b[0], b[3]] for b in expect]
                assert t["boxes"].tolist() == expect
                assert t["labels"].tolist() == [a["category_id"] for a in anns]  # ids 1..10 map to 1..10
                pixels = torch.from_numpy(_pixels(coco / "train2017" / f"{int(t['image_id']):012d}.png")).permute(2, 0, 1)
                ref = pixels.float() / 255
                assert torch.equal(x, ref.flip(-1) if hflip else ref)
                for box, m in zip(t["boxes"].tolist(), t["masks"]):
                    ys, xs = torch.nonzero(m, as_tuple=True)
                    assert [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1] == box
                seen += 1
    assert seen == 2 * SMALL.train


def _corrupt(coco, tmp_path, edit):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(coco, root)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    edit(data, root)
    path.write_text(json.dumps(data))
    return root


def test_bad_coco_input_gets_one_clear_error(coco, tmp_path):
    with pytest.raises(BlockSwapError, match="missing annotation file .*instances_train2017.json"):
        read_coco(tmp_path, "train")
    root = _corrupt(coco, tmp_path, lambda d, r: (r / "train2017" / d["images"][0]["file_name"]).unlink())
    with pytest.raises(BlockSwapError, match="names image '000000000001.png' .*does not hold"):
        read_coco(root, "train")

    def degenerate(data, _root):
        data["annotations"][0]["bbox"][2] = 0

    root2 = tmp_path / "deg"
    root2.mkdir()
    bad = _corrupt(coco, root2, degenerate)
    ann = json.loads((bad / "annotations" / "instances_train2017.json").read_text())["annotations"][0]
    with pytest.raises(BlockSwapError, match=f"annotation {ann['id']} .*degenerate box .*--skip-bad-boxes"):
        read_coco(bad, "train")
    kept, _ = read_coco(bad, "train", skip_bad_boxes=True)
    assert ann["id"] not in kept.anns and len(kept.anns) == len(json.loads(
        (coco / "annotations" / "instances_train2017.json").read_text())["annotations"]) - 1
    root3 = tmp_path / "cat"
    root3.mkdir()
    bad = _corrupt(coco, root3, lambda d, r: d["annotations"][0].update(category_id=99))
    with pytest.raises(BlockSwapError, match="category 99; declared"):
        read_coco(bad, "train")
    (bad / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(BlockSwapError, match="cannot read .*as JSON"):
        read_coco(bad, "val")


def test_backbone_cost_is_what_the_detector_builds():
    """The budget counts the backbone as the detector holds it: stem and stages, no classifier."""
    geno = Genotype.from_text(",".join(["G(N)", "B(2)", "BG(2,4)", "S"] * 2), "resnet18")
    with torch_seed(0):
        det = build_detector("resnet18", geno, 11, min_size=64)
    body = det.backbone.body
    cost = network_cost(network_spec("resnet18").backbone(), geno, 64)
    params, macs = counted(body, torch.zeros(1, 3, 64, 64))
    assert (cost.params, cost.macs) == (params, macs)
    # ...which is the classifier network's cost less its 512 x 1000 + 1000 classifier
    assert network_cost("resnet18", geno, 64).params - cost.params == 512 * 1000 + 1000


def test_detector_fisher_equals_a_brute_force_mask_gradient(coco):
    """Per block: 1/(2N) sum_n (dL/dm[n,c])^2 with a mask m on each probe, L the detector's summed
    loss, by plain backward and explicit loops (independent of proxies.fisher)."""
    split = CocoSplit(str(coco), "train", workers=0)
    images, targets = split.sample(2, torch.Generator().manual_seed(0))
    geno = "G(N),B(2),BG(2,4),S,G(4),S,B(4),G(N/4)"

    def detector():
        with torch_seed(5):
            return build_detector("resnet18", geno, split.num_classes, min_size=64)

    fp = detector_fisher(detector(), images, targets, seed=11)
    det = detector().train()
    masks = []

    def hook(_m, _i, out):
        m = torch.ones(out.shape[0], out.shape[1], requires_grad=True)
        masks.append(m)
        return out * m[:, :, None, None]

    handles = [b.probe.register_forward_hook(hook) for b in det.backbone.body.blocks]
    with exact_batch_norm(det), torch_seed(11):
        losses = det(images, targets)
        sum(losses.values()).backward()
    for h in handles:
        h.remove()
    brute = []
    for m in masks:
        g = m.grad.double().tolist()
        brute.append(sum(g[i][c] ** 2 for c in range(len(g[0])) for i in range(2)) / (2 * 2))
    assert fp.per_block == pytest.approx(brute, rel=1e-5)
    assert fp.total > 0
    assert detector_fisher(detector(), images, targets, seed=11).total == fp.total  # reproducible


def test_coco_metrics_of_the_ground_truth_is_100_and_of_wrong_labels_0(coco):
    split = CocoSplit(str(coco), "val", workers=0, training=False)
    gt = split.coco
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
                "segmentation": a["segmentation"]} for a in gt.anns.values()]
    m = coco_metrics(gt, perfect)
    assert m["bbox_AP"] == pytest.approx(100) and m["segm_AP"] == pytest.approx(100)
    assert m["bbox_AP50"] == pytest.approx(100) and m["bbox_AP75"] == pytest.approx(100)
    wrong = [{**r, "category_id": r["category_id"] % 10 + 1} for r in perfect]
    assert coco_metrics(gt, wrong)["bbox_AP"] == pytest.approx(0)
    assert coco_metrics(gt, [])["segm_AP"] == 0.0


def test_detector_training_resumes_exactly(coco, tmp_path):
    """2 epochs straight = 1 epoch, then --resume to 2: the same weights, bit for bit (CPU)."""
    cfg = DetectorConfig(epochs=2, batch_size=2, lr=0.01, warmup_iters=2, min_size=64, rois_per_image=16,
                         workers=0, lr_steps=(1,), eval_batch_size=4)
    geno = load_genotype("uniform:G(N)", "resnet18")
    whole = train_detector(cfg, f"coco:{coco}", tmp_path / "a", network="resnet18", genotype=geno, progress=False)
    train_detector(DetectorConfig(**{**cfg.to_dict(), "epochs": 1, "lr_steps": (1,)}), f"coco:{coco}",
                   tmp_path / "b", network="resnet18", genotype=geno, progress=False)
    resumed = train_detector(cfg, f"coco:{coco}", tmp_path / "b", network="resnet18", genotype=geno,
                             resume=True, progress=False)
    a, _ = load_detector(tmp_path / "a")
    b, _ = load_detector(tmp_path / "b")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    for r, w in zip(resumed["history"], whole["history"], strict=True):
        assert {k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} == \
            {k: v for k, v in w.items() if "seconds" not in k and "per_s" not in k}
    assert whole["backbone_params"] == network_cost(network_spec("resnet18").backbone(), geno, 64).params
    assert all(k in whole for k in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP"))
    with pytest.raises(BlockSwapError, match="cannot resume .*lr"):
        train_detector(DetectorConfig(**{**cfg.to_dict(), "lr": 0.02, "lr_steps": (1,)}), f"coco:{coco}",
                       tmp_path / "b", network="resnet18", genotype=geno, resume=True, progress=False)


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_cli_search_train_evaluate_detection(tmp_path):
    data = tmp_path / "dc"
    res = run_cli("data", "make-digits-coco", str(data), "--train", "4", "--val", "2", "--size", "64",
                  "--min-digit", "16", "--max-digit", "30")
    assert res.returncode == 0, res.stderr
    gn = network_cost(network_spec("resnet18").backbone(), load_genotype("uniform:G(N)", "resnet18"), 64).params
    res = run_cli("search", "--task", "detection", "--model", "resnet18", "--budget", f"params={gn}",
                  "--samples", "2", "--batch-size", "2", "--input-size", "64", "--data", f"coco:{data}",
                  "--out", str(tmp_path / "s"), "--executor", "local", "--json")
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert abs(found["params"] - gn) <= 0.025 * gn and found["network"] == "resnet18"
    assert found["params"] == network_cost(network_spec("resnet18").backbone(), found["best"], 64).params
    common = ("--data", f"coco:{data}", "--epochs", "1", "--batch-size", "2", "--min-size", "64",
              "--rois-per-image", "16", "--decode-workers", "0", "--quiet")
    res = run_cli("train", "detector", "--genotype", str(tmp_path / "s" / "winner.json"), "--out",
                  str(tmp_path / "d"), *common)
    assert res.returncode == 0, res.stderr
    res = run_cli("train", "detector", "--genotype", str(tmp_path / "s" / "winner.json"), "--out",
                  str(tmp_path / "d"), *common)
    assert res.returncode != 0 and "--resume" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("evaluate", "--task", "detection", "--checkpoint", str(tmp_path / "d"), "--data",
                  f"coco:{data}", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    record = json.loads((tmp_path / "d" / "record.json").read_text())
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP"):
        assert out[key] == record[key]  # the same weights, evaluated again
    assert out["genotype"] == found["best"] and out["images"] == 2
    res = run_cli("search", "--task", "detection", "--model", "resnet18", "--data", "digits", "--out", str(tmp_path / "x"))
    assert res.returncode != 0 and "coco:PATH" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("train", "detector", "--genotype", "uniform:G(N)", "--data", f"coco:{tmp_path}", "--out", str(tmp_path / "y"))
    assert res.returncode != 0 and "missing annotation file" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_detector_trains_data_parallel_under_torchrun(coco, tmp_path):
    """2 gloo processes, each half of every global minibatch; rank 0 writes one record."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "blockswap", "train", "detector", "--model", "resnet18", "--genotype", "uniform:G(N)",
         "--data", f"coco:{coco}", "--out", str(tmp_path / "ddp"), "--epochs", "1", "--batch-size", "2",
         "--min-size", "64", "--rois-per-image", "16", "--decode-workers", "0", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert record["world_size"] == 2 and record["epochs_done"] == 1
    # Every validation image evaluated once over the two ranks: AP from the gathered detections
    # equals a single-process evaluation of the saved weights.
    model, _ = load_detector(tmp_path / "ddp")
    from blockswap.train.coco_eval import evaluate_detector

    alone = evaluate_detector(model, CocoSplit(str(coco), "val", workers=0, training=False), 4)
    assert alone["detections"] == record["detections"]
    assert alone["bbox_AP"] == pytest.approx(record["bbox_AP"])


@pytest.mark.parametrize("network", ["resnet18", "wrn-16-1"])
def test_fpn_reads_the_stage_outputs_as_the_explicit_stage_loop_does(network):
    """The FPN is built from the body's feature_info and fed by its forward_intermediates: the
    output equals an FPN fed by walking stem and stages by hand, key for key, bit for bit."""
    from collections import OrderedDict

    with torch_seed(0):
        fpn = build_detector(network, None, 3, min_size=64).backbone.eval()
    body = fpn.body
    assert [blk[0].in_channels for blk in fpn.fpn.inner_blocks] == list(network_spec(network).widths)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h, points = body.stem(x), OrderedDict()
        for i, stage in enumerate(body.stages):
            h = stage(h)
            points[str(i)] = h
        expect = fpn.fpn(points)
        got = fpn(x)
    assert list(got) == list(expect) == [*map(str, range(len(body.stages))), "pool"]
    for key in expect:
        assert torch.equal(got[key], expect[key]), key


TINY_DET = dict(batch_size=2, lr=0.01, warmup_iters=2, min_size=64, rois_per_image=16, workers=0, eval_batch_size=4)
# torchvision's Mask R-CNN training losses (its roi_heads and rpn), independent of our code.
MASK_RCNN_LOSSES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def test_detector_metrics_hold_the_training_losses_and_the_epoch_line_prints_them(coco, tmp_path, capsys):
    """The bug of issue 17: the train_* entries were commented out, so metrics.jsonl had no
    training loss and the epoch line (progress on) died with KeyError: 'train_loss'."""
    record = train_detector(DetectorConfig(epochs=1, **TINY_DET), f"coco:{coco}", tmp_path, network="resnet18",
                            genotype=load_genotype("uniform:G(N)", "resnet18"), progress=True)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == json.loads((tmp_path / "record.json").read_text())["history"] == record["history"]
    row = rows[0]
    assert {k[6:] for k in row if k.startswith("train_loss_")} == MASK_RCNN_LOSSES
    # The total is the sum of torchvision's losses (per-step means, averaged over the epoch).
    assert row["train_loss"] == pytest.approx(sum(row[f"train_{k}"] for k in MASK_RCNN_LOSSES), rel=1e-6)  # float32 sum
    assert all(math.isfinite(row[f"train_{k}"]) and row[f"train_{k}"] >= 0 for k in MASK_RCNN_LOSSES)
    assert row["train_images"] == SMALL.train
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch 1:")]
    assert line and f"train loss {row['train_loss']:.4f}" in line[0]
    assert all(f"{k[5:]} {row['train_' + k]:.4f}" in line[0] for k in MASK_RCNN_LOSSES)


@pytest.mark.parametrize("field, value, message", [
    ("momentum", -1.0, "momentum must be a number in [0, 1)"),
    ("weight_decay", -1.0, "weight_decay must be a number >= 0"),
    ("lr_gamma", float("nan"), "lr_gamma must be a factor in (0, 1]"),
    ("warmup_factor", -5.0, "warmup_factor must be a factor in [0, 1]"),
    ("lr", float("inf"), "lr must be a positive number"),
    ("momentum", "0.9", "momentum must be a number"),
    ("warmup_iters", -1, "warmup_iters must be an integer >= 0"),
])
def test_detector_config_names_the_bad_field(field, value, message):
    with pytest.raises(BlockSwapError) as err:
        DetectorConfig(**{field: value})
    assert message in str(err.value) and repr(value) in str(err.value)


def test_detector_cli_refuses_bad_settings_and_a_three_stage_backbone_in_one_line(coco, tmp_path, capsys):
    from blockswap.cli import main

    base = ["train", "detector", "--data", f"coco:{coco}", "--out", str(tmp_path / "o"), "--decode-workers", "0"]
    for extra, msg in [
        (["--genotype", "uniform:G(N)", "--momentum", "-1"], "momentum must be a number in [0, 1), got -1.0"),
        (["--genotype", "uniform:G(N)", "--weight-decay", "-1"], "weight_decay must be a number >= 0, got -1.0"),
        (["--genotype", "uniform:G(N)", "--lr-gamma", "nan"], "lr_gamma must be a factor in (0, 1], got nan"),
        (["--genotype", "uniform:G(N)", "--warmup-factor=-5"], "warmup_factor must be a factor in [0, 1], got -5.0"),
        (["--genotype", "uniform:G(N)", "--model", "wrn-16-1"], "needs a network with 4 stages"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    with pytest.raises(BlockSwapError, match="4 stages .*wrn-16-1 has 3"):
        train_detector(DetectorConfig(epochs=1, **TINY_DET), f"coco:{coco}", tmp_path / "p", network="wrn-16-1")


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_cli_train_detector_with_progress_on_prints_each_epoch(coco, tmp_path):
    """`blockswap train detector` as the README shows it: no --quiet."""
    res = run_cli("train", "detector", "--model", "resnet18", "--genotype", "uniform:G(N)", "--data", f"coco:{coco}",
                  "--out", str(tmp_path / "d"), "--epochs", "2", "--batch-size", "3", "--min-size", "64",
                  "--rois-per-image", "16", "--decode-workers", "0", "--warmup-iters", "1", "--eval-batch-size", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    history = json.loads((tmp_path / "d" / "record.json").read_text())["history"]
    for row in history:
        assert f"epoch {row['epoch']}: lr {row['lr']:.4g}  train loss {row['train_loss']:.4f}" in res.stdout
    assert [r["epoch"] for r in history] == [1, 2]
