"""COCO annotations are untrusted input: every field the loader uses is checked up front, naming
the file and the annotation (issue 21), so that nothing malformed reaches pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from blockswap import BlockSwapError
from blockswap.data.coco import CocoSplit, _rle_counts, read_coco

H, W = 12, 16


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _folder(root, annotations: list[dict]):
    """A COCO-layout folder of one H x W image (train and val) with `annotations` in train."""
    from PIL import Image

    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(parents=True)
        Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(root / f"{split}2017" / "a.png")
    (root / "annotations").mkdir()
    for split, anns in (("train", annotations), ("val", annotations[:1])):
        data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
                "categories": [{"id": 1, "name": "thing"}], "annotations": anns}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return root


def _ann(i: int, segmentation, **kw) -> dict:
    return {"id": i, "image_id": 1, "category_id": 1, "bbox": [2, 2, 6, 5], "iscrowd": 0,
            "segmentation": segmentation, **kw}


SQUARE = [[2, 2, 8, 2, 8, 7, 2, 7]]


def _box_mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[2:7, 2:8] = True
    return m


def test_rle_strings_decode_as_pycocotools_encodes_them():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((H, W)) < rng.random()
        counts = _rle_counts(_rle(mask)["counts"])
        flat = mask.T.reshape(-1)  # COCO runs go down the columns (Fortran order), starting with zeros
        runs, value, n = [], False, 0
        for v in flat:
            if v != value:
                runs.append(n)
                value, n = v, 0
            n += 1
        runs.append(n)
        assert counts == runs


BAD = [
    ({"size": [H, W], "counts": "abc"}, "invalid compressed RLE"),  # pycocotools: Invalid RLE mask representation
    ({"size": [H, W], "counts": [50, 60]}, f"cover 110 pixels, not its image's {H} x {W}"),
    ({"size": [H, W], "counts": [-5, H * W + 5]}, "cover"),
    ({"size": [W, H], "counts": [H * W]}, f"not its image's \\[{H}, {W}\\]"),
    ([[2, 2, 8, 2]], "a polygon of 2 points"),  # pycocotools: Argument 'bb' has incorrect type
    ([[2, 2, 8, 2, 8]], "not an even list"),
    ([], "empty segmentation"),
    ("mask", "neither a list of polygons"),
]


@pytest.mark.parametrize("segmentation,problem", BAD)
def test_a_bad_mask_is_one_error_naming_file_and_annotation(tmp_path, segmentation, problem):
    root = _folder(tmp_path, [_ann(7, SQUARE), _ann(8, segmentation)])
    with pytest.raises(BlockSwapError, match=rf"instances_train2017.json.*annotation 8 \(image 1\) has .*{problem}"
                                             r".*--skip-bad-boxes") as info:
        read_coco(root, "train")
    assert "\n" not in str(info.value)


def test_skip_bad_boxes_also_leaves_bad_masks_out_and_the_rest_loads(tmp_path):
    root = _folder(tmp_path, [_ann(7, SQUARE), _ann(8, [[2, 2, 8, 2]]), _ann(9, {"size": [H, W], "counts": "abc"}),
                              _ann(10, _rle(_box_mask()))])
    coco, _ = read_coco(root, "train", skip_bad_boxes=True)
    assert sorted(coco.anns) == [7, 10]
    split = CocoSplit(str(root), "train", workers=0, skip_bad_boxes=True)
    (images,), (target,) = next(split.batches(1))
    assert images.shape == (3, H, W)
    # The polygon and the RLE of the same rectangle give the same mask as drawn by hand.
    assert target["masks"].shape == (2, H, W)
    assert torch.equal(target["masks"][1].bool(), torch.from_numpy(_box_mask()))
    assert target["masks"][0].sum() > 0


@pytest.mark.parametrize("edit,problem", [
    (lambda a: a.update(area=float("nan")), "area nan"),
    (lambda a: a.update(area="big"), "area 'big'"),
    (lambda a: a.update(iscrowd=2), "iscrowd 2"),
    (lambda a: a.update(id=7), "annotation 7 is given twice"),
])
def test_other_annotation_fields_are_checked(tmp_path, edit, problem):
    second = _ann(8, SQUARE)
    edit(second)
    root = _folder(tmp_path, [_ann(7, SQUARE), second])
    with pytest.raises(BlockSwapError, match=problem):
        read_coco(root, "train")
