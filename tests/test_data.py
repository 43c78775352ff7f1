"""Datasets as a user gives them: CIFAR pickles, ImageNet class folders, digits; augmentation; sharding."""

import pickle
import re

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from blockswap import BlockSwapError
from blockswap.data import (Augment, apply_augment, draw_augment, epoch_order, load_split,
                            parse_data, shard_batches)
from helpers import make_cifar10, make_imagenet, write_pickle

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def test_cifar10_reader_keeps_pixels_and_labels_in_file_order(tmp_path):
    folder, written = make_cifar10(tmp_path)
    for path in (tmp_path, folder):  # the folder itself or its parent
        train = load_split(f"cifar10:{path}", "train")
        names = [f"data_batch_{i}" for i in range(1, 6)]
        expect = np.concatenate([written[n][0] for n in names]).reshape(-1, 3, 32, 32)
        assert np.array_equal(train.images.numpy(), expect)
        assert train.labels.tolist() == sum((written[n][1] for n in names), [])
        val = load_split(f"cifar10:{path}", "val")
        assert len(val) == 3 and val.num_classes == 10
    # Row layout of the release: 1024 red values row-major, then green, then blue.
    data = written["test_batch"][0]
    assert val.images[1, 2, 0, 5].item() == data[1, 2 * 1024 + 0 * 32 + 5]
    # Evaluation batches are normalised with the CIFAR-10 channel statistics.
    x, _ = next(val.batches(3))
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    ref = (torch.from_numpy(data.reshape(-1, 3, 32, 32)).float() / 255 - mean) / std
    torch.testing.assert_close(x, ref, rtol=1e-5, atol=1e-5)


def test_cifar100_reader_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        write_pickle(folder / name, {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                                      b"fine_labels": [99, 0, 42, 7], b"coarse_labels": [1, 2, 3, 4]})
    split = load_split(f"cifar100:{tmp_path}", "train")
    assert split.num_classes == 100 and split.labels.tolist() == [99, 0, 42, 7]


def test_cifar_errors_name_the_file_and_what_was_expected(tmp_path):
    folder, _ = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(BlockSwapError, match=r"missing file .*data_batch_3.*python-pickle"):
        load_split(f"cifar10:{tmp_path}", "train")
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(BlockSwapError, match=r"cannot read .*data_batch_3.* as a CIFAR pickle; expected"):
        load_split(f"cifar10:{tmp_path}", "train")
    write_pickle(folder / "data_batch_3", {b"data": np.zeros((3, 1024), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(BlockSwapError, match=r"data_batch_3.* shape \(3, 1024\)"):
        load_split(f"cifar10:{tmp_path}", "train")
    write_pickle(folder / "data_batch_3", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 12]})
    with pytest.raises(BlockSwapError, match=r"labels outside 0..9"):
        load_split(f"cifar10:{tmp_path}", "train")
    with pytest.raises(BlockSwapError, match="missing file"):
        load_split(f"cifar10:{tmp_path / 'nowhere'}", "val")


def test_dataset_names_are_checked():
    with pytest.raises(BlockSwapError, match="valid datasets: cifar10:PATH.*did you mean 'cifar10'"):
        parse_data("cifar-10:/data")
    with pytest.raises(BlockSwapError, match="needs a folder: write 'fashion-mnist:PATH'"):
        parse_data("fashion-mnist")
    with pytest.raises(BlockSwapError, match="needs a folder"):
        parse_data("cifar10")
    with pytest.raises(BlockSwapError, match="valid splits"):
        load_split("synthetic", "test")


def test_digits_are_real_upscaled_three_channel_images():
    train, val = load_split("digits", "train"), load_split("digits", "val")
    assert len(train) + len(val) == 1797 and train.num_classes == 10
    assert train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey repeated over channels
    assert sorted(set(val.labels.tolist())) == list(range(10))
    small = load_split("digits", "val", input_size=16)
    assert small.images.shape[1:] == (3, 16, 16)


# --------------------------------------------------------------------------------------------
# CIFAR augmentation: batched tensor ops vs an explicit per-image pipeline (torchvision functional)
# --------------------------------------------------------------------------------------------


def _reference_augment(img_u8, dy, dx, flip, cy, cx, mean, std, pad=4, hole=16):
    """The authors' pipeline for one image: RandomCrop(pad) -> flip -> Normalize -> Cutout."""
    h, w = img_u8.shape[1:]
    x = TF.pad(img_u8, [pad], fill=0)  # black padding on the raw image
    x = TF.crop(x, dy, dx, h, w)
    if flip:
        x = TF.hflip(x)
    x = TF.normalize(x.float() / 255, mean, std)
    y1, y2 = np.clip(cy - hole // 2, 0, h), np.clip(cy + hole // 2, 0, h)
    x1, x2 = np.clip(cx - hole // 2, 0, w), np.clip(cx + hole // 2, 0, w)
    x[:, y1:y2, x1:x2] = 0.0
    return x


def test_augmentation_matches_explicit_crop_flip_cutout_pixelwise(tmp_path):
    make_cifar10(tmp_path, per_batch=8)
    split = load_split(f"cifar10:{tmp_path}", "train")
    n = len(split)  # 40 images
    g = torch.Generator().manual_seed(5)
    offsets = draw_augment(n, 32, 32, Augment(), g)
    mean, std = split.mean / 255, split.std / 255
    x = (split.images.float() - split.mean) / split.std
    got = apply_augment(x, offsets, Augment(), fill=-split.mean / split.std)
    for i in range(n):
        ref = _reference_augment(split.images[i], int(offsets.dy[i]), int(offsets.dx[i]),
                                 bool(offsets.flip[i]), int(offsets.cy[i]), int(offsets.cx[i]),
                                 mean.flatten().tolist(), std.flatten().tolist())
        torch.testing.assert_close(got[i], ref, rtol=1e-5, atol=1e-5)
    # The offsets span the whole range of the recipe.
    big = draw_augment(2000, 32, 32, Augment(), g)
    assert set(big.dy.tolist()) == set(range(9)) and set(big.dx.tolist()) == set(range(9))
    assert 0.4 < big.flip.float().mean() < 0.6
    assert set(big.cy.tolist()) == set(range(32))


def test_split_batches_apply_the_documented_draws(tmp_path):
    """`batches` = epoch order from the generator, then one `draw_augment` per global batch."""
    make_cifar10(tmp_path, per_batch=8)
    split = load_split(f"cifar10:{tmp_path}", "train")
    got = list(split.batches(16, shuffle=True, augment=True, generator=torch.Generator().manual_seed(3)))
    g = torch.Generator().manual_seed(3)
    order = epoch_order(len(split), True, g)
    assert sorted(order.tolist()) == list(range(40))
    mean, std = (split.mean / 255).flatten().tolist(), (split.std / 255).flatten().tolist()
    for b, (x, y) in enumerate(got):
        idx = order[16 * b:16 * (b + 1)]
        off = draw_augment(len(idx), 32, 32, Augment(), g)
        assert torch.equal(y, split.labels[idx])
        for i, j in enumerate(idx.tolist()):
            ref = _reference_augment(split.images[j], int(off.dy[i]), int(off.dx[i]), bool(off.flip[i]),
                                     int(off.cy[i]), int(off.cx[i]), mean, std)
            torch.testing.assert_close(x[i], ref, rtol=1e-5, atol=1e-5)
    assert [len(y) for _, y in got] == [16, 16, 8]


def test_augment_switches():
    x = torch.randn(4, 3, 8, 8)
    off = draw_augment(4, 8, 8, Augment(), torch.Generator().manual_seed(0))
    assert torch.equal(apply_augment(x, off, Augment(crop_pad=0, flip=False, cutout=0)), x)
    no_flip = draw_augment(4, 8, 8, Augment(flip=False), torch.Generator().manual_seed(0))
    assert not no_flip.flip.any()
    with pytest.raises(BlockSwapError):
        Augment(cutout=-1)


# --------------------------------------------------------------------------------------------
# Sharding for data-parallel training
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_together_see_exactly_the_single_process_batches(world):
    split = load_split("synthetic", "train", input_size=16)  # 512 images
    bs = 60 if world == 3 else 64  # 512 = 8*64 (no remainder) / 8*60 + 32 (remainder)

    def run(rank, w, pad):
        g = torch.Generator().manual_seed(11)
        return list(split.batches(bs, shuffle=True, augment=True, generator=g, rank=rank,
                                  world_size=w, pad_last=pad))

    single = run(0, 1, False)
    shards = [run(r, world, True) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
    for b, (x, y) in enumerate(single):
        xs = torch.cat([s[b][0] for s in shards])
        ys = torch.cat([s[b][1] for s in shards])
        assert {s[b][1].shape[0] for s in shards} == {xs.shape[0] // world}  # equal shares
        assert torch.equal(xs[:len(y)], x) and torch.equal(ys[:len(y)], y)
        if len(y) < bs and len(y) % world:
            # The padded tail repeats the batch's first images, augmented the same way.
            pad = xs.shape[0] - len(y)
            assert torch.equal(xs[len(y):], x[:pad]) and torch.equal(ys[len(y):], y[:pad])
    # Evaluation sharding (no padding) counts every image exactly once.
    seen = torch.cat([y for r in range(world) for _, y in
                      load_split("synthetic", "val").batches(50, rank=r, world_size=world)])
    assert seen.shape[0] == 128


def test_shard_batches_checks_its_arguments():
    order = torch.arange(10)
    with pytest.raises(BlockSwapError, match="does not split evenly"):
        list(shard_batches(order, 5, 0, 2, pad_last=True))
    with pytest.raises(BlockSwapError, match="rank 2"):
        list(shard_batches(order, 4, 2, 2))
    assert [b.tolist() for b, _ in shard_batches(order, 4, drop_last=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # 10 images, global batch 4 over 2 ranks: the last batch [8, 9] gives one image to each;
    # over 4 ranks with padding the 2 images are repeated; without padding ranks 2, 3 get none.
    assert [p.tolist() for _, p in shard_batches(order, 4, 1, 2)] == [[2, 3], [2, 3], [1]]
    assert [p.tolist() for _, p in shard_batches(order, 4, 3, 4, pad_last=True)][-1] == [1]
    assert [p.tolist() for _, p in shard_batches(order, 4, 3, 4)][-1] == []


def test_sample_is_reproducible_from_the_generator():
    split = load_split("synthetic", "train")
    a = split.sample(32, torch.Generator().manual_seed(1), augment=True)
    b = split.sample(32, torch.Generator().manual_seed(1), augment=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(BlockSwapError, match="batch size 1000 is larger than the split"):
        split.sample(1000, torch.Generator())


# --------------------------------------------------------------------------------------------
# ImageNet-style class folders
# --------------------------------------------------------------------------------------------


def test_imagenet_eval_batches_match_torchvision_imagefolder(tmp_path):
    import torchvision
    from torchvision import transforms as T

    make_imagenet(tmp_path)
    split = load_split(f"imagenet:{tmp_path}", "val", input_size=32, workers=0)
    assert split.num_classes == 3 and len(split) == 12
    ref = torchvision.datasets.ImageFolder(
        str(tmp_path / "val"),
        T.Compose([T.Resize(37), T.CenterCrop(32), T.ToTensor(),
                   T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]))
    xs, ys = zip(*split.batches(5))
    x, y = torch.cat(xs), torch.cat(ys)
    for i in range(12):
        torch.testing.assert_close(x[i], ref[i][0])
        assert y[i].item() == ref[i][1]


def test_imagenet_training_batches_do_not_depend_on_workers_or_ranks(tmp_path):
    make_imagenet(tmp_path)
    split = load_split(f"imagenet:{tmp_path}", "train", input_size=24, workers=0)

    def run(workers, rank=0, world=1):
        split.workers = workers
        g = torch.Generator().manual_seed(4)
        return list(split.batches(6, shuffle=True, augment=True, generator=g, rank=rank,
                                  world_size=world, pad_last=world > 1))

    single = run(0)
    assert [x.shape for x, _ in single] == [(6, 3, 24, 24)] * 2
    with_workers = run(2)
    halves = [run(2, r, 2) for r in range(2)]
    for b, (x, y) in enumerate(single):
        assert torch.equal(with_workers[b][0], x) and torch.equal(with_workers[b][1], y)
        assert torch.equal(torch.cat([halves[0][b][0], halves[1][b][0]]), x)
    # Another epoch (the generator moved on) gives other crops.
    assert not torch.equal(run(0)[0][0], list(split.batches(6, shuffle=True, augment=True,
                                                            generator=torch.Generator().manual_seed(5)))[0][0])


def test_imagenet_errors_name_the_file_or_folder(tmp_path):
    with pytest.raises(BlockSwapError, match=r"missing folder .*train.*PATH/train/<class>/<image>"):
        load_split(f"imagenet:{tmp_path}", "train")
    make_imagenet(tmp_path)
    bad = tmp_path / "val" / "n02" / "img0.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    for workers in (0, 2):  # the message survives the trip back from a worker process
        split = load_split(f"imagenet:{tmp_path}", "val", input_size=32, workers=workers)
        with pytest.raises(BlockSwapError) as info:
            list(split.batches(4))
        assert str(info.value).startswith("imagenet: cannot read") and "img0.JPEG" in str(info.value)
        assert "\n" not in str(info.value)
    (tmp_path / "val" / "n04").mkdir()
    (tmp_path / "val" / "n04" / "x.png").write_bytes((tmp_path / "val" / "n01" / "img1.png").read_bytes())
    with pytest.raises(BlockSwapError, match="same class folders; they differ in n04"):
        load_split(f"imagenet:{tmp_path}", "val")


# --------------------------------------------------------------------------------------------
# A user's own data: a torch Dataset, a pair of tensors, a dict of splits
# --------------------------------------------------------------------------------------------


def test_a_tensor_dataset_loads_with_its_images_and_labels():
    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (6, 1, 12, 12), generator=g).float() / 255  # ToTensor-style floats
    labels = torch.tensor([0, 3, 1, 3, 2, 0])
    train = load_split(torch.utils.data.TensorDataset(grey, labels), "train")
    expect = (grey * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)  # 1 channel -> 3
    assert torch.equal(train.images, expect) and torch.equal(train.labels, labels)
    assert train.num_classes == 4 and train.input_size == 12
    x = expect.double() / 255  # channel statistics of the training images, computed here
    torch.testing.assert_close(train.mean.view(3).double() / 255, x.mean(dim=(0, 2, 3)), rtol=0, atol=1e-6)
    torch.testing.assert_close(train.std.view(3).double() / 255, x.std(dim=(0, 2, 3)), rtol=0, atol=1e-6)
    bigger = load_split((grey, labels), "val", input_size=24)  # a pair; one object serves both splits
    assert bigger.images.shape == (6, 3, 24, 24) and torch.equal(bigger.labels, labels)


def test_a_tensor_pair_keeps_its_pixels_and_prints_as_a_stable_fingerprint():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 0, 1, 2, 2])
    spec = parse_data((images, labels))
    split = load_split(spec, "train")
    assert torch.equal(split.images, images) and torch.equal(split.labels, labels) and split.num_classes == 3
    assert re.fullmatch(r"tensors:[0-9a-f]{16}", str(spec))
    assert str(parse_data((images.clone(), labels.clone()))) == str(spec)  # same data, same name
    other = labels.clone()
    other[0] = 0
    assert str(parse_data((images, other))) != str(spec)
    again = pickle.loads(pickle.dumps(spec))  # configs holding it are pickled for workers
    assert again == spec and str(again) == str(spec) and torch.equal(load_split(again, "val").images, images)
    assert parse_data(str(spec)).user is spec.user  # read back as text while the data is alive
    with pytest.raises(BlockSwapError, match="pass the same object again"):
        parse_data("tensors:0123456789abcdef")


def test_a_dict_gives_separate_splits_and_the_class_count():
    a = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    b = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    spec = parse_data({"train": (a, torch.tensor([0, 1, 0, 1])), "val": (b, torch.tensor([1, 0])), "classes": 5})
    val = load_split(spec, "val")
    assert torch.equal(val.images, b) and val.labels.tolist() == [1, 0] and val.num_classes == 5
    assert load_split(spec, "train").labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("bad, match", [
    (42, "data: got int"),
    ((torch.zeros(3, 3, 8, 8), torch.tensor([0, 1])), "labels must be 3 integers"),
    ((torch.full((2, 3, 8, 8), 2.0), torch.tensor([0, 1])), r"float images must lie in \[0, 1\]"),
    ((torch.zeros(2, 4, 8, 8), torch.tensor([0, 1])), "expected N x C x H x W with C = 1 or 3"),
    ((torch.zeros(2, 3, 8, 8), torch.tensor([0, -1])), "label -1 is negative"),
    ({"train": (torch.zeros(2, 3, 8, 8), torch.tensor([0, 7])), "classes": 3}, "label 7 is outside 0..2"),
    ({"val": (torch.zeros(2, 3, 8, 8), torch.tensor([0, 1]))}, "needs the key 'train'"),
])
def test_bad_data_objects_are_one_line_errors_naming_the_argument(bad, match):
    with pytest.raises(BlockSwapError, match=match):
        parse_data(bad)
