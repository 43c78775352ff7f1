"""A small COCO-format detection dataset made from scikit-learn's bundled digits (no download).

Each image is a canvas with one to `max_digits` digits pasted at random sizes, places and
colours, without overlap, on a noisy background. A digit's pixel mask is its strokes (pasted
intensity above one half), its box the tight extent of that mask, its category the digit
(COCO ids 1..10, names "0".."9"). Written as the standard layout::

    OUT/annotations/instances_train2017.json   OUT/train2017/000000000001.png ...
    OUT/annotations/instances_val2017.json     OUT/val2017/...

Masks are stored as COCO run-length encodings (``{"size": [h, w], "counts": "..."}``), which
pycocotools reads for crowd and non-crowd objects alike. Training canvases use digits of the
fixed digits training split, validation canvases those of its validation split.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BlockSwapError
from ..files import atomic_write_bytes, atomic_write_json
from ..seeding import derive_seed


MAX_CANVAS = 2048  # pixels a side: 100 MB of float64 per canvas


@dataclass(frozen=True)
class DigitsCocoConfig:
    train: int = 400  # training canvases
    val: int = 100  # validation canvases
    size: int = 128  # canvas side, pixels
    min_digit: int = 24  # pasted digit side, pixels (uniform in [min_digit, max_digit])
    max_digit: int = 56
    max_digits: int = 3  # digits per canvas: uniform in 1..max_digits
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train", "val", "size", "min_digit", "max_digit", "max_digits"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BlockSwapError(f"{name} must be a positive integer, got {value!r}")
        if self.size > MAX_CANVAS:  # a canvas is drawn in float64 (24 bytes a pixel)
            raise BlockSwapError(f"canvas size must be at most {MAX_CANVAS} pixels, got {self.size}")
        if not 8 <= self.min_digit <= self.max_digit <= self.size:
            raise BlockSwapError(f"digit sizes must satisfy 8 <= min ({self.min_digit}) <= max "
                                 f"({self.max_digit}) <= canvas size ({self.size})")


def _digit_strokes(split: str) -> tuple[torch.Tensor, np.ndarray]:
    from .sources import digits_images

    images, labels = digits_images(split, 8)  # uint8 (N, 3, 8, 8), the fixed split
    return images[:, :1].float() / 255, labels.numpy()


def _canvas(cfg: DigitsCocoConfig, strokes: torch.Tensor, labels: np.ndarray, rng: np.random.Generator):
    """(uint8 image H x W x 3, [(category, bool mask)])."""
    s = cfg.size
    background = rng.uniform(0.0, 0.35, size=3)
    img = np.clip(background + rng.normal(0, 0.04, size=(s, s, 3)), 0, 1)
    taken = np.zeros((s, s), dtype=bool)
    objects = []
    for _ in range(int(rng.integers(1, cfg.max_digits + 1))):
        for _try in range(50):  # rejection: no two digits' squares overlap
            side = int(rng.integers(cfg.min_digit, cfg.max_digit + 1))
            y, x = (int(v) for v in rng.integers(0, s - side + 1, size=2))
            if not taken[y:y + side, x:x + side].any():
                break
        else:
            continue
        k = int(rng.integers(len(labels)))
        alpha = F.interpolate(strokes[k:k + 1], size=(side, side), mode="bilinear",
                              align_corners=False)[0, 0].clamp(0, 1).numpy()
        colour = rng.uniform(0.6, 1.0, size=3)
        region = img[y:y + side, x:x + side]
        img[y:y + side, x:x + side] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        mask = np.zeros((s, s), dtype=bool)
        mask[y:y + side, x:x + side] = alpha > 0.5
        if not mask.any():
            continue
        taken[y:y + side, x:x + side] = True
        objects.append((int(labels[k]) + 1, mask))
    return (img * 255).round().astype(np.uint8), objects


def mask_box(mask: np.ndarray) -> list[float]:
    """COCO box [x, y, width, height] of the tight extent of a boolean mask."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def make_digits_coco(out: "str | Path", cfg: DigitsCocoConfig = DigitsCocoConfig()) -> dict[str, int]:
    """Write the dataset to `out`; returns the number of images and objects per split."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    out = Path(out)
    for split in ("train", "val"):
        for thing in (out / f"{split}2017", out / "annotations" / f"instances_{split}2017.json"):
            if thing.exists():
                raise BlockSwapError(f"{str(thing)!r} exists; give a new folder")
    categories = [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(10)]
    counts: dict[str, int] = {}
    next_ann = 1
    for split, n in (("train", cfg.train), ("val", cfg.val)):
        strokes, labels = _digit_strokes(split)
        images, annotations = [], []
        for i in range(n):
            rng = np.random.default_rng(derive_seed(cfg.seed, "digits-coco", split, i))
            img, objects = _canvas(cfg, strokes, labels, rng)
            image_id = i + 1
            name = f"{image_id:012d}.png"
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            atomic_write_bytes(out / f"{split}2017" / name, buf.getvalue())
            images.append({"id": image_id, "file_name": name, "height": cfg.size, "width": cfg.size})
            for category, mask in objects:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                annotations.append({
                    "id": next_ann, "image_id": image_id, "category_id": category, "iscrowd": 0,
                    "bbox": mask_box(mask), "area": float(mask.sum()),
                    "segmentation": {"size": [cfg.size, cfg.size], "counts": rle["counts"].decode("ascii")}})
                next_ann += 1
        atomic_write_json(out / "annotations" / f"instances_{split}2017.json", {
            "info": {"description": "BlockSwap digits-COCO: scikit-learn digits pasted on canvases",
                     "config": cfg.__dict__},
            "images": images, "annotations": annotations, "categories": categories})
        counts[f"{split}_images"], counts[f"{split}_objects"] = len(images), len(annotations)
    return counts
