"""COCO evaluation of a detector with pycocotools (paper Table 4: box and mask AP, AP50, AP75,
APs, APm, APl), in percent, over every image of a split, gathered over data-parallel ranks."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from ..data.coco import CocoSplit

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


def detections_to_coco(outputs: list[dict[str, torch.Tensor]], image_ids: list[int],
                       cat_ids: list[int]) -> list[dict[str, Any]]:
    """torchvision detector outputs as COCO result records (boxes [x, y, w, h], RLE masks)."""
    from pycocotools import mask as mask_utils

    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu().double()
        scores = out["scores"].detach().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        masks = out["masks"].detach().cpu()[:, 0] > 0.5 if "masks" in out else None
        for i, (box, score, label) in enumerate(zip(boxes.tolist(), scores, labels)):
            rec = {"image_id": image_id, "category_id": cat_ids[label - 1], "score": float(score),
                   "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]}
            if masks is not None:
                rle = mask_utils.encode(np.asfortranarray(masks[i].numpy().astype(np.uint8)))
                rec["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            results.append(rec)
    return results


def coco_metrics(coco_gt, results: list[dict[str, Any]], iou_types=("bbox", "segm")) -> dict[str, float | None]:
    """``{bbox_AP: .., segm_AP50: ..}`` in percent; None where COCO has nothing to measure
    (-1: e.g. APl when no object is large). No detections at all score 0."""
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, float | None] = {}
    for iou in iou_types:
        if not results:
            metrics.update({f"{iou}_{m}": 0.0 for m in METRICS})
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
            ev = COCOeval(coco_gt, coco_dt, iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for name, value in zip(METRICS, ev.stats[:6]):
            metrics[f"{iou}_{name}"] = None if value < 0 else 100.0 * float(value)
    return metrics


@torch.no_grad()
def evaluate_detector(model: torch.nn.Module, split: CocoSplit, batch_size: int = 8, dist=None) -> dict[str, Any]:
    """Box and mask metrics of `model` on every image of `split` (each rank takes its share)."""
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    was_training = model.training
    model.eval()
    results = []
    for images, targets in split.batches(batch_size, rank=rank, world_size=world):
        outputs = model(images)
        results += detections_to_coco(outputs, [int(t["image_id"]) for t in targets], split.cat_ids)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    model.train(was_training)
    return {**coco_metrics(split.coco, results), "detections": len(results)}
