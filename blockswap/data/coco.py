"""COCO detection data in its standard layout (paper Sec. 7), checked as untrusted input.

``coco:PATH`` names a folder with ``annotations/instances_{train,val}2017.json`` and the image
folders ``train2017/`` and ``val2017/``. Every record the JSON gives is checked before any
work: an image the JSON names but the folder lacks, a box with no area or outside its image, a
category that is not declared, a mask that is neither polygons nor run-length encoding: each
is one clear error naming the file and the record.

Training targets follow torchvision's detection reference: crowd objects are left out (the
evaluator still sees them) and images without any other object are skipped; categories are
numbered 1..K in the order of their COCO ids (0 is the background).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import BlockSwapError
from ..seeding import torch_seed
from .sharding import BatchSizeCheck, epoch_order, shard_batches

Target = dict[str, torch.Tensor]


def _fail(where: str, what: str) -> BlockSwapError:
    return BlockSwapError(f"coco: {where}: {what}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_annotations(data: Any, where: str, skip_bad_boxes: bool) -> dict:
    """The parsed JSON, every field the loader uses checked; bad boxes dropped if asked."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise _fail(where, "expected a JSON object with lists 'images', 'annotations' and 'categories'")
    cats = set()
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise _fail(where, f"category {c!r} needs an integer 'id' and a string 'name'")
        cats.add(c["id"])
    if not cats:
        raise _fail(where, "no categories")
    sizes = {}
    for im in data["images"]:
        ok = isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str) \
            and all(isinstance(im.get(k), int) and im[k] > 0 for k in ("width", "height"))
        if not ok or "/" in im["file_name"] or im["file_name"] in ("", ".", ".."):
            raise _fail(where, f"image record {str(im)[:120]} needs an integer 'id', a plain 'file_name' "
                               "and positive integer 'width' and 'height'")
        if im["id"] in sizes:  # pycocotools indexes by id: a duplicate would hide an image
            raise _fail(where, f"image id {im['id']} is given twice")
        sizes[im["id"]] = (im["width"], im["height"])
    kept, ids = [], set()
    for a in data["annotations"]:
        if not isinstance(a, dict) or not isinstance(a.get("id"), int):
            raise _fail(where, f"annotation {str(a)[:120]} has no integer 'id'")
        name = f"annotation {a['id']}"
        if a["id"] in ids:
            raise _fail(where, f"{name} is given twice (annotation ids must be unique)")
        ids.add(a["id"])
        if a.get("image_id") not in sizes:
            raise _fail(where, f"{name} refers to image {a.get('image_id')!r}, which is not in 'images'")
        if a.get("category_id") not in cats:
            raise _fail(where, f"{name} has category {a.get('category_id')!r}; declared: {sorted(cats)}")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
            raise _fail(where, f"{name} has bbox {box!r}; expected [x, y, width, height] of finite numbers")
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = box
        problem = None
        if bw <= 0 or bh <= 0:
            problem = f"a degenerate box {box} (width and height must be > 0)"
        elif x < -1 or y < -1 or x + bw > w + 1 or y + bh > h + 1:
            problem = f"a box {box} outside its {w}x{h} image"
        problem = problem or _mask_problem(a.get("segmentation"), h, w)
        if problem:
            if skip_bad_boxes:
                continue
            raise _fail(where, f"{name} (image {a['image_id']}) has {problem}; fix or remove it, "
                               "or pass --skip-bad-boxes to leave such objects out")
        if a.get("iscrowd", 0) not in (0, 1):
            raise _fail(where, f"{name} has iscrowd {a.get('iscrowd')!r}; expected 0 or 1")
        if "area" in a and not (_number(a["area"]) and a["area"] >= 0):
            raise _fail(where, f"{name} has area {a['area']!r}; expected a finite number >= 0 (pixels)")
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(bw * bh))
        kept.append(a)
    return {**data, "annotations": kept}


def _mask_problem(seg: Any, h: int, w: int) -> str | None:
    """What is wrong with a segmentation of an `h` x `w` image, checked before pycocotools reads
    it (which fails with "Invalid RLE mask representation", or takes a 2-point polygon for a box)."""
    shape = (f"neither a list of polygons [x1, y1, x2, y2, x3, y3, ...] nor an RLE "
             f"{{'size': [{h}, {w}], 'counts': ...}}")
    if isinstance(seg, list):
        if not seg:
            return f"an empty segmentation (expected {shape})"
        for poly in seg:
            if not (isinstance(poly, list) and all(_number(v) for v in poly) and len(poly) % 2 == 0):
                return f"a polygon {str(poly)[:60]} that is not an even list of finite numbers"
            if len(poly) < 6:
                return f"a polygon of {len(poly) // 2} points {poly} (a polygon needs at least 3)"
        return None
    if not isinstance(seg, dict) or not isinstance(seg.get("counts"), (str, list)):
        return f"a segmentation that is {shape}"
    if seg.get("size") != [h, w]:
        return f"an RLE of size {seg.get('size')!r}, not its image's [{h}, {w}]"
    counts = seg["counts"]
    if isinstance(counts, str):
        counts = _rle_counts(counts)
        if counts is None:
            return "an invalid compressed RLE string (COCO's run-length encoding)"
    elif not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return "an RLE whose counts are not all integers"
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        return f"an RLE whose runs cover {sum(counts)} pixels, not its image's {h} x {w} = {h * w}"
    return None


def _rle_counts(text: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``: 5 bits per
    character from '0', a continuation bit, sign-extended, each run after the second stored as
    the difference to the run two before); None if the string is not one."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text):
                return None  # ends inside a number
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def read_coco(root: "str | Path", split: str, skip_bad_boxes: bool = False):
    """(pycocotools COCO index, image folder) of `split` ("train" or "val"), checked."""
    from pycocotools.coco import COCO

    base = Path(root).expanduser()
    path = base / "annotations" / f"instances_{split}2017.json"
    folder = base / f"{split}2017"
    if not path.is_file():
        raise BlockSwapError(f"coco: missing annotation file {str(path)!r}; expected PATH/annotations/"
                             f"instances_{{train,val}}2017.json and PATH/{{train,val}}2017/ (COCO 2017 layout)")
    if not folder.is_dir():
        raise BlockSwapError(f"coco: missing image folder {str(folder)!r} (COCO 2017 layout)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BlockSwapError(f"coco: cannot read {str(path)!r} as JSON: {exc}") from None
    data = _check_annotations(data, repr(str(path)), skip_bad_boxes)
    present = {p.name for p in folder.iterdir()}
    for im in data["images"]:
        if im["file_name"] not in present:
            raise BlockSwapError(f"coco: {str(path)!r} names image {im['file_name']!r} (id {im['id']}), "
                                 f"which {str(folder)!r} does not hold")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco, folder


class CocoSplit(BatchSizeCheck):
    """One split of a COCO-layout folder as minibatches of (images, targets) lists.

    Images are float tensors in [0, 1] (the detector normalises and resizes them); a target has
    ``boxes`` (x1, y1, x2, y2 pixels), ``labels`` (1..K), ``masks`` (uint8 N x H x W) and
    ``image_id``. Decoding runs in DataLoader worker processes. Training flips each image
    horizontally with probability `hflip`, drawn from a per-image seed as in `ImageFolderSplit`.
    (Decoding with PIL: torchvision 0.29 deprecates its own decoders for TorchCodec.)
    """

    def __init__(self, root: str | None, split: str, device="cpu", workers: int = 2,
                 skip_bad_boxes: bool = False, training: bool | None = None):
        self.coco, self.folder = read_coco(root or "", split, skip_bad_boxes)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.num_classes = len(self.cat_ids) + 1  # with the background
        training = split == "train" if training is None else training
        ids = sorted(self.coco.getImgIds())
        if training:  # torchvision's reference: images with no (non-crowd) object teach nothing
            ids = [i for i in ids if any(not a["iscrowd"] for a in self.coco.imgToAnns[i])]
        if not ids:
            raise BlockSwapError(f"coco: no usable images in {str(self.folder)!r}")
        self.ids = ids
        self.device = torch.device(device)
        self.workers = workers

    def __len__(self) -> int:
        return len(self.ids)

    def _loader(self, picks: list[tuple[int, int]], chunks: list[list[int]], hflip: float):
        data = _CocoImages(self.coco, self.folder, self.label_of, picks, hflip)
        return torch.utils.data.DataLoader(data, batch_sampler=chunks, num_workers=self.workers,
                                           collate_fn=_as_lists, persistent_workers=False)

    def _iterate(self, loader) -> Iterator[tuple[list[torch.Tensor], list[Target]]]:
        from .imagefolder import _worker_message

        try:
            for images, targets in loader:
                yield ([x.to(self.device) for x in images],
                       [{k: v.to(self.device) for k, v in t.items()} for t in targets])
        except BlockSwapError as exc:
            raise BlockSwapError(_worker_message(exc)) from None

    def batches(self, batch_size: int, *, shuffle: bool = False, hflip: float = 0.0,
                generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1,
                pad_last: bool = False):
        """Minibatches of one epoch (this rank's share of each global minibatch)."""
        order = epoch_order(len(self), shuffle, generator)
        picks, chunks = [], []
        for batch, pos in shard_batches(order, batch_size, rank, world_size, False, pad_last):
            seeds = torch.randint(0, 2**62, (batch.shape[0],), generator=generator)
            if pos.numel():
                chunks.append(list(range(len(picks), len(picks) + pos.numel())))
                picks += [(self.ids[int(batch[p])], int(seeds[p])) for p in pos]
        if chunks:
            yield from self._iterate(self._loader(picks, chunks, hflip))

    def sample(self, batch_size: int, generator: torch.Generator):
        """`batch_size` distinct images drawn with `generator`, unflipped (the search's minibatch)."""
        self.check_batch_size(batch_size)
        idx = torch.randperm(len(self), generator=generator)[:batch_size]
        picks = [(self.ids[int(i)], 0) for i in idx]
        return next(self._iterate(self._loader(picks, [list(range(batch_size))], 0.0)))


def _as_lists(batch):
    images, targets = zip(*batch)
    return list(images), list(targets)


class _CocoImages(torch.utils.data.Dataset):
    """Image ``picks[i] = (image id, seed)`` decoded, with its target, flipped under its seed."""

    def __init__(self, coco, folder: Path, label_of: dict[int, int], picks, hflip: float):
        self.coco, self.folder, self.label_of, self.picks, self.hflip = coco, folder, label_of, picks, hflip

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        from PIL import Image

        image_id, seed = self.picks[i]
        info = self.coco.imgs[image_id]
        path = self.folder / info["file_name"]
        try:
            with Image.open(path) as pil:
                img = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BlockSwapError(f"coco: cannot read {str(path)!r} as an image (JPEG, PNG, ...): {exc}") from None
        if tuple(img.shape[1:]) != (info["height"], info["width"]):
            raise BlockSwapError(f"coco: {str(path)!r} is {img.shape[2]}x{img.shape[1]} pixels but the "
                                 f"annotations say {info['width']}x{info['height']}")
        anns = [a for a in self.coco.imgToAnns[image_id] if not a["iscrowd"]]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else \
            np.zeros((0, info["height"], info["width"]), dtype=np.uint8)
        target = {"boxes": boxes, "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
                  "masks": torch.from_numpy(masks), "image_id": torch.tensor(image_id)}
        x = img.float() / 255
        if self.hflip > 0:
            with torch_seed(seed):
                flip = bool(torch.rand(()) < self.hflip)
            if flip:
                w = info["width"]
                x = x.flip(-1)
                target["masks"] = target["masks"].flip(-1)
                target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        return x, target
