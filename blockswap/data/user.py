"""A user's own data, given as objects instead of a name (issue 17).

`parse_data` accepts, besides a dataset name:

* a torch ``Dataset`` whose items are ``(image, label)``: an image tensor C x H x W (C = 1 or 3;
  float in [0, 1], as ``transforms.ToTensor`` gives, or uint8 0..255) and an integer label;
* a pair of tensors ``(images, labels)``: images N x C x H x W (or N x H x W), labels N;
* a dict ``{"train": ..., "val": ...}`` of either (``"val"`` optional), with an optional
  ``"classes"`` count.

One object serves as both splits (``"val"`` is then the same images; pass a dict to hold data
out). The images are converted once to uint8 (N, 3, H, W), a 1-channel image repeated over
3 channels; classes are the given count (a dict's ``"classes"``, a Dataset's ``classes``
list), else the largest label + 1. Channel statistics are those of the training images.

The result prints as a stable fingerprint, ``tensors:<16 hex digits of a SHA-256 of the
pixels, labels and classes>``: run records hold it and resuming compares it, so the same data
given again is recognised and other data is not.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import BlockSwapError

USER_DATA_NAME = "tensors"
_WHAT = "data"
# The user data alive in this process, by fingerprint: a config written out as text
# ("tensors:<fingerprint>") and read back in the same process finds its data again.
_ALIVE: "weakref.WeakValueDictionary[str, UserData]" = weakref.WeakValueDictionary()


def _fail(what: str, problem: str) -> BlockSwapError:
    return BlockSwapError(f"{what}: {problem}; give a torch Dataset of (image tensor CxHxW, int label), "
                          "a pair of tensors (images NxCxHxW, labels N), or a dict {'train': ..., 'val': ...} "
                          "of those")


def _as_images(x: Any, what: str) -> torch.Tensor:
    """uint8 (N, 3, H, W) from images N x C x H x W or N x H x W (float in [0, 1] or integer 0..255)."""
    if not isinstance(x, torch.Tensor):
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        else:
            raise _fail(what, f"images must be a tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0 or 0 in x.shape[2:]:
        raise _fail(what, f"images of shape {tuple(x.shape)}; expected N x C x H x W with C = 1 or 3 and N >= 1")
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
            raise _fail(what, f"float images must lie in [0, 1] (as transforms.ToTensor gives), got "
                              f"{float(x.min()):g} .. {float(x.max()):g}")
        x = (x.float() * 255).round().to(torch.uint8)
    elif x.dtype == torch.bool or x.is_complex():
        raise _fail(what, f"images of dtype {x.dtype}")
    elif x.dtype != torch.uint8:
        if int(x.min()) < 0 or int(x.max()) > 255:
            raise _fail(what, f"integer images must lie in 0..255, got {int(x.min())} .. {int(x.max())}")
        x = x.to(torch.uint8)
    return x.cpu().expand(-1, 3, -1, -1).contiguous()


def _as_labels(y: Any, n: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y)) if not isinstance(y, torch.Tensor) else y
    if y.ndim != 1 or y.shape[0] != n or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise _fail(what, f"labels must be {n} integers (one per image), got a {y.dtype} tensor of shape "
                          f"{tuple(y.shape)}")
    y = y.to(torch.int64).cpu()
    if int(y.min()) < 0:
        raise _fail(what, f"label {int(y.min())} is negative")
    return y


def _label(value: Any, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise _fail(what, f"label {value!r} is not an integer")


def _from_dataset(ds: torch.utils.data.Dataset, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        n = len(ds)  # type: ignore[arg-type]
    except TypeError:
        raise _fail(what, f"the {type(ds).__name__} has no length") from None
    if n == 0:
        raise _fail(what, f"the {type(ds).__name__} is empty")
    images, labels = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise _fail(what, f"item {i} is a {type(item).__name__}, not an (image, label) pair")
        image, label = item
        if not isinstance(image, torch.Tensor) or image.ndim not in (2, 3):
            raise _fail(what, f"item {i}'s image is a {type(image).__name__}"
                              f"{'' if not isinstance(image, torch.Tensor) else f' of shape {tuple(image.shape)}'}, "
                              "not a C x H x W tensor (add transforms.ToTensor())")
        image = image if image.ndim == 3 else image[None]
        if images and image.shape != images[0].shape:
            raise _fail(what, f"item {i}'s image has shape {tuple(image.shape)}, item 0's {tuple(images[0].shape)}; "
                              "all images must have one size")
        images.append(image)
        labels.append(_label(label, what))
    return _as_images(torch.stack(images), what), torch.tensor(labels, dtype=torch.int64)


def _one(obj: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(obj, torch.utils.data.Dataset):
        return _from_dataset(obj, what)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        images = _as_images(obj[0], what)
        return images, _as_labels(obj[1], images.shape[0], what)
    raise _fail(what, f"got {type(obj).__name__}")


def _given_classes(obj: Any, what: str) -> int | None:
    classes = obj.get("classes") if isinstance(obj, Mapping) else getattr(obj, "classes", None)
    if classes is None:
        return None
    if isinstance(classes, (list, tuple)):
        classes = len(classes)
    if not isinstance(classes, (int, np.integer)) or isinstance(classes, bool) or classes < 1:
        raise _fail(what, f"classes must be a positive integer (or a list of class names), got {classes!r}")
    return int(classes)


class UserData:
    """A user's images and labels, converted once: uint8 (N, 3, H, W) and int64 per split."""

    def __init__(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: int):
        self.splits = splits
        self.classes = classes
        digest = hashlib.sha256(f"classes={classes}".encode())
        for name in ("train", "val"):
            images, labels = splits[name]
            digest.update(f";{name}:{tuple(images.shape)}".encode())
            digest.update(images.numpy().tobytes())
            digest.update(labels.numpy().astype("<i8").tobytes())
        self.fingerprint = digest.hexdigest()[:16]
        _ALIVE.setdefault(self.fingerprint, self)

    def __reduce__(self):  # unpickled copies register themselves too (a worker's config)
        return (UserData, (self.splits, self.classes))

    def __str__(self) -> str:
        return f"{USER_DATA_NAME}:{self.fingerprint}"

    def __repr__(self) -> str:
        n = {k: v[1].shape[0] for k, v in self.splits.items()}
        return f"UserData({self}, train={n['train']}, val={n['val']}, classes={self.classes})"


def find_user_data(fingerprint: str) -> UserData | None:
    """The user data of `fingerprint` if it is alive in this process, else None."""
    return _ALIVE.get(fingerprint)


def parse_user_data(obj: Any, what: str = _WHAT) -> UserData:
    """A Dataset, a pair of tensors, or a dict of them (see the module docstring) as `UserData`;
    `what` names the argument in messages. Bad objects raise `BlockSwapError`."""
    if isinstance(obj, Mapping):
        unknown = sorted(set(map(str, obj)) - {"train", "val", "classes"})
        if unknown or "train" not in obj:
            raise _fail(what, f"a dict needs the key 'train' (and optionally 'val', 'classes'), got keys "
                              f"{sorted(map(str, obj))}")
        train = _one(obj["train"], f"{what}['train']")
        val = _one(obj["val"], f"{what}['val']") if obj.get("val") is not None else train
        classes = _given_classes(obj, what)
    else:
        train = _one(obj, what)
        val, classes = train, _given_classes(obj, what)
    top = max(int(train[1].max()), int(val[1].max()))
    if classes is None:
        classes = top + 1
    elif top >= classes:
        raise _fail(what, f"label {top} is outside 0..{classes - 1} for {classes} classes")
    return UserData({"train": train, "val": val}, classes)
