"""The datasets, one table (`DATASETS`), and their names as on the command line (`parse_data`).

======================  ==========================================================================
``cifar10:PATH``        the ``cifar-10-batches-py`` folder (or its parent) of the python-pickle release
``cifar100:PATH``       the ``cifar-100-python`` folder (or its parent)
``imagenet:PATH``       a folder with ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``
``coco:PATH``           ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/`` images
                        (detection only: ``search --task detection``, ``train detector``)
``fashion-mnist:PATH``  the four idx files of the release (``train-images-idx3-ubyte``, ...,
                        gzipped or not); "train" = the 60,000 training images, "val" = the 10,000
                        official test images (as CIFAR's "val" is its test batch: for reporting)
``mnist:PATH``          the same layout for MNIST
``digits``              scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes),
                        upscaled to the model's input size and repeated over 3 channels
``synthetic``           random class-dependent images, for tests and smoke runs
======================  ==========================================================================

Any in-memory dataset's name takes ``?holdout=N``: "val" is then N images carved from the training
split by a fixed seed (the same N images in every run and process), "train" the remaining ones,
and the official test split is not read: protocol choices and any other model selection are made
on it, never on the test set (``fashion-mnist:/data/fm?holdout=10000``).

Adding a dataset is one `DatasetEntry` added to `DATASETS` here: the CLI's ``--data`` help,
error messages and `load_split` read the table. Besides a name, `parse_data` takes a user's own
data objects (a torch Dataset, a pair of tensors, a dict of splits: `data.user`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import BlockSwapError, choices
from ..registry import Registry
from .idx import IDX_CLASSES, idx_reader
from .imagefolder import IMAGENET_STATS, ImageFolderSplit
from .sources import cifar_reader, read_digits, read_synthetic
from .user import USER_DATA_NAME, UserData, find_user_data, parse_user_data

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per RGB channel, units of [0, 1]
# (path, split, input size) -> uint8 images (N, 3, H, W) and int64 labels, held in memory.
Reader = Callable[[str | None, str, int], tuple[torch.Tensor, torch.Tensor]]
# (path, split, input size, device, loader workers) -> a split streamed from disk (`splits.Split`).
Streamer = Callable[[str | None, str, int, Any, int], Any]
TASKS = ("classification", "detection")


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: how it is named, read, normalised, and what it serves."""

    name: str
    help: str  # one line for --data's help
    takes_path: bool = True  # written NAME:PATH (a folder on disk), else just NAME (built in)
    read: Reader | None = None  # in-memory datasets
    stream: Streamer | None = None  # datasets streamed from disk (ImageNet)
    classes: int | None = None  # fixed by the dataset; None: decided by the data (class folders)
    stats: Stats | None = None  # None: computed from the training split as loaded
    input_size: int = 32  # default square input side, pixels
    task: str = "classification"  # or "detection" (read by the detection code, not `load_split`)
    val_images: str = "its validation split"  # what its "val" split is, in words (reports say it)

    def __post_init__(self) -> None:
        if ";" in self.help:  # --data's help joins the entries with "; "
            raise BlockSwapError(f"dataset {self.name!r}: its help may not contain ';'")
        if self.task not in TASKS:
            raise BlockSwapError(f"dataset {self.name!r}: unknown task {self.task!r}; valid tasks: {choices(TASKS)}")
        if self.task == "classification" and (self.read is None) == (self.stream is None):
            raise BlockSwapError(f"dataset {self.name!r} needs exactly one of a reader and a streamer")

    @property
    def form(self) -> str:
        """How the name is written: 'cifar10:PATH' or 'digits'."""
        return f"{self.name}:PATH" if self.takes_path else self.name


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset to the table (a new name only)."""
    return DATASETS.add(entry.name, entry)


def _imagenet(path: str | None, split: str, size: int, device: Any, workers: int) -> ImageFolderSplit:
    return ImageFolderSplit(path, split, size, device, workers)


# Channel statistics: CIFAR's are the authors' code's; ImageNet's torchvision's; the others are
# computed from their training split as loaded.
for _entry in (
    DatasetEntry("cifar10", "CIFAR-10, the python-pickle release (cifar-10-batches-py or its parent)",
                 read=cifar_reader("cifar10", 10), classes=10, val_images="the official test set",
                 stats=((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))),
    DatasetEntry("cifar100", "CIFAR-100, the python-pickle release (cifar-100-python or its parent)",
                 read=cifar_reader("cifar100", 100), classes=100, val_images="the official test set",
                 stats=((0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023))),
    DatasetEntry("imagenet", "class folders PATH/train/<class>/* and PATH/val/<class>/*",
                 stream=_imagenet, stats=IMAGENET_STATS, input_size=224, val_images="the val folder"),
    DatasetEntry("coco", "COCO-layout detection data, with --task detection", task="detection", input_size=800),
    DatasetEntry("fashion-mnist", "Fashion-MNIST's four idx files (.gz or not) in PATH, val = its test set",
                 read=idx_reader("fashion-mnist"), classes=IDX_CLASSES, val_images="the official test set"),
    DatasetEntry("mnist", "MNIST's four idx files (.gz or not) in PATH, val = its test set",
                 read=idx_reader("mnist"), classes=IDX_CLASSES, val_images="the official test set"),
    DatasetEntry("digits", "scikit-learn's bundled 8x8 digits", takes_path=False, read=read_digits, classes=10),
    DatasetEntry("synthetic", "random class-dependent images, for smoke runs", takes_path=False,
                 read=read_synthetic, classes=10, stats=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))),
):
    register_dataset(_entry)


def dataset_forms(task: str | None = None) -> list[str]:
    """How every dataset (of `task`, if given) is written: 'cifar10:PATH', ..., 'digits'."""
    return [e.form for e in DATASETS.values() if task is None or e.task == task]


@dataclass(frozen=True)
class DataSpec:
    """Which dataset: a name and, for on-disk datasets, its folder; or a user's own data (`user`,
    named "tensors" with its fingerprint as the path)."""

    name: str
    path: str | None = None
    holdout: int = 0  # "val" = this many training images carved by a fixed seed, "train" = the rest (0: off)
    # Compared and hashed by its fingerprint (`path`), not its tensors.
    user: UserData | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        text = self.name if self.path is None else f"{self.name}:{self.path}"
        return f"{text}?holdout={self.holdout}" if self.holdout else text

    @property
    def entry(self) -> DatasetEntry | None:
        """The dataset's table entry (None for a user's own data)."""
        return None if self.user is not None else DATASETS[self.name]

    @property
    def known_classes(self) -> int | None:
        """Classes fixed by the dataset itself; None for ImageNet-layout folders, whose class
        folders decide (read them from the loaded split's `num_classes`)."""
        return self.user.classes if self.user is not None else self.entry.classes

    @property
    def task(self) -> str:
        """"classification" or "detection": what the data serves."""
        return "classification" if self.user is not None else self.entry.task

    @property
    def input_size(self) -> int:
        """The default square input side, pixels (a user's: its images' height)."""
        if self.user is not None:
            return int(self.user.splits["train"][0].shape[2])
        return self.entry.input_size


def parse_data(text: "str | DataSpec | Any") -> DataSpec:
    """'cifar10:/data/cifar' -> DataSpec('cifar10', '/data/cifar'); 'digits' -> DataSpec('digits').

    A torch Dataset of (image, label), a pair of tensors (images, labels) or a dict of those
    per split (`data.user`) -> DataSpec('tensors', FINGERPRINT, user=...).
    """
    if isinstance(text, DataSpec):
        return text
    if not isinstance(text, str):
        user = parse_user_data(text)
        return DataSpec(USER_DATA_NAME, user.fingerprint, user=user)
    text, holdout = _holdout(text.strip())
    spec = _parse_name(text)
    if holdout:
        if spec.user is not None or spec.entry.read is None:
            raise BlockSwapError(f"'?holdout=' carves in-memory datasets only, not {text!r}; "
                                 f"valid datasets: {choices([e.form for e in DATASETS.values() if e.read])}")
        spec = DataSpec(spec.name, spec.path, holdout=holdout)
    return spec


_HOLDOUT = re.compile(r"\?holdout=([^?]*)$")


def _holdout(text: str) -> tuple[str, int]:
    """'digits?holdout=300' -> ('digits', 300); no suffix -> (text, 0)."""
    m = _HOLDOUT.search(text)
    if m is None:
        return text, 0
    value = m.group(1)
    if not value.isdigit() or int(value) < 1:
        raise BlockSwapError(f"bad holdout {value!r} in {text!r}: write ?holdout=N with N >= 1 training images "
                             "carved as the validation split")
    return text[:m.start()], int(value)


def _parse_name(text: str) -> DataSpec:
    name, sep, path = text.partition(":")
    name = name.lower()
    if name == USER_DATA_NAME:
        user = find_user_data(path)
        if user is None:
            raise BlockSwapError(f"{text!r} names data given as tensors or a Dataset, not alive in this process; "
                                 "a name cannot bring them back: pass the same object again")
        return DataSpec(USER_DATA_NAME, user.fingerprint, user=user)
    if name not in DATASETS:
        raise BlockSwapError(f"unknown dataset {text!r}; valid datasets: {choices(dataset_forms())}"
                             f"{DATASETS.suggest(name)}")
    entry = DATASETS[name]
    if not entry.takes_path:
        if sep:
            raise BlockSwapError(f"dataset {name!r} is built in and takes no path; write just '{name}'")
        return DataSpec(name)
    if not path:
        raise BlockSwapError(f"dataset {name!r} needs a folder: write '{name}:PATH'")
    return DataSpec(name, path)
