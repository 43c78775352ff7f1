"""Dataset names as on the command line, parsed once into a `DataSpec`.

==================  ==============================================================================
``cifar10:PATH``    the ``cifar-10-batches-py`` folder (or its parent) of the python-pickle release
``cifar100:PATH``   the ``cifar-100-python`` folder (or its parent)
``imagenet:PATH``   a folder with ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``
``coco:PATH``       ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/`` images
                    (detection only: ``search --task detection``, ``train detector``)
``digits``          scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes),
                    upscaled to the model's input size and repeated over 3 channels
``synthetic``       random class-dependent images, for tests and smoke runs
==================  ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BlockSwapError, choices

DATASETS = ("cifar10:PATH", "cifar100:PATH", "imagenet:PATH", "coco:PATH", "digits", "synthetic")

# Channel statistics used for normalisation (CIFAR: the authors' code; ImageNet: torchvision's).
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class DataSpec:
    """Which dataset: a name and, for on-disk datasets, its folder."""

    name: str
    path: str | None = None

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.name}:{self.path}"

    @property
    def known_classes(self) -> int | None:
        """Classes fixed by the dataset itself; None for ImageNet-layout folders, whose class
        folders decide (read them from the loaded split's `num_classes`)."""
        return {"cifar100": 100, "cifar10": 10, "digits": 10, "synthetic": 10}.get(self.name)


def parse_data(text: "str | DataSpec") -> DataSpec:
    """'cifar10:/data/cifar' -> DataSpec('cifar10', '/data/cifar'); 'digits' -> DataSpec('digits')."""
    if isinstance(text, DataSpec):
        return text
    name, sep, path = str(text).strip().partition(":")
    name = name.lower()
    if name in ("digits", "synthetic"):
        if sep:
            raise BlockSwapError(f"dataset {name!r} is built in and takes no path; write just '{name}'")
        return DataSpec(name)
    if name in ("cifar10", "cifar100", "imagenet", "coco"):
        if not path:
            raise BlockSwapError(f"dataset {name!r} needs a folder: write '{name}:PATH'")
        return DataSpec(name, path)
    raise BlockSwapError(f"unknown dataset {text!r}; valid datasets: {choices(DATASETS)}")
