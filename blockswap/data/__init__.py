"""Datasets: CIFAR-10/100 (python pickles), ImageNet (class folders), COCO (detection), MNIST and
Fashion-MNIST (idx files), scikit-learn's digits, synthetic; and a user's own tensors.

A dataset is named by a string, as on the command line (`spec.parse_data`: ``cifar10:PATH``,
``fashion-mnist:PATH``, ``digits``, ...; the table `spec.DATASETS` lists them all), or given as
objects: a torch Dataset of (image, label), a pair of tensors, a dict of splits (`data.user`).

Small datasets live on the training device as uint8 tensors and minibatches are made there
(airbench style): normalisation and CIFAR augmentation (pad-4 random crop, horizontal flip,
Cutout 16x16; paper Sec. 5) are batched tensor ops driven by a `torch.Generator`, so a seed
fixes every random choice. ImageNet streams from disk through a `DataLoader` with worker
processes, each image transformed under its own seed drawn from the same generator.

Every split shards its minibatches for data-parallel training (`shard_batches`): each rank
takes a contiguous slice of the same global minibatch, so 2 processes x 64 images see exactly
the images (and augmentations) of 1 process x 128.
"""

from .augment import CIFAR_AUGMENT, Augment, AugmentOffsets, apply_augment, cifar_augment, draw_augment
from .spec import DATASETS, DataSpec, DatasetEntry, parse_data, register_dataset
from .user import UserData
from .load import load_split
from .sharding import epoch_order, shard_batches
from .splits import Split, TensorSplit

__all__ = ["CIFAR_AUGMENT", "DATASETS", "Augment", "AugmentOffsets", "DataSpec", "DatasetEntry", "Split",
           "TensorSplit", "UserData", "apply_augment", "cifar_augment", "draw_augment", "epoch_order", "load_split",
           "parse_data", "register_dataset", "shard_batches"]
