"""MNIST / Fashion-MNIST idx files: read exactly, checked as untrusted input (tiny files written here)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from blockswap import BlockSwapError
from blockswap.data import load_split

NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding, written from the format's definition: magic 0x0000 08 <ndim>, sizes, data."""
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


def write_release(folder, gz: bool, sizes=(5, 3), side=28, seed=0):
    """The four files of a tiny release; returns {split: (images, labels)} as written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in zip(("train", "val"), sizes):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for name, array in zip(NAMES[split], (images, labels)):
            data = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_padded_to_32_with_the_training_statistics(tmp_path, gz):
    written = write_release(tmp_path, gz)
    train = load_split(f"fashion-mnist:{tmp_path}", "train")
    val = load_split(f"fashion-mnist:{tmp_path}", "val")
    assert len(train) == 5 and len(val) == 3 and train.num_classes == val.num_classes == 10
    for split, loaded in (("train", train), ("val", val)):
        images, labels = written[split]
        padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28 -> 32, zeros around
        assert loaded.images.shape[1:] == (3, 32, 32)
        for c in range(3):  # grey repeated over the channels
            assert np.array_equal(loaded.images[:, c].numpy(), padded)
        assert loaded.labels.tolist() == labels.tolist()
    # Both splits are normalised with the statistics of the (padded) training images.
    ref = np.pad(written["train"][0], ((0, 0), (2, 2), (2, 2))).astype(np.float64) / 255
    mean, std = ref.mean(), ref.std(ddof=1)
    x, _ = next(val.batches(3))
    expect = (np.pad(written["val"][0], ((0, 0), (2, 2), (2, 2))) / 255 - mean) / std
    np.testing.assert_allclose(x[:, 1].numpy(), expect, rtol=1e-5, atol=1e-5)


def test_other_input_sizes_and_mnist(tmp_path):
    written = write_release(tmp_path, gz=False)
    native = load_split(f"mnist:{tmp_path}", "train", input_size=28)
    assert np.array_equal(native.images[:, 0].numpy(), written["train"][0])
    small = load_split(f"mnist:{tmp_path}", "val", input_size=16)
    ref = torch.nn.functional.interpolate(torch.from_numpy(written["val"][0])[:, None].float(), size=(16, 16),
                                          mode="bilinear", antialias=True, align_corners=False)
    assert small.images.shape[1:] == (3, 16, 16)
    assert (small.images[:, :1].float() - ref.round()).abs().max() <= 1


def _expect(tmp_path, match):
    with pytest.raises(BlockSwapError, match=match):
        load_split(f"fashion-mnist:{tmp_path}", "train")


def test_bad_idx_files_are_one_line_errors_naming_the_file(tmp_path):
    write_release(tmp_path, gz=False)
    images_file, labels_file = (tmp_path / n for n in NAMES["train"])
    good_images, good_labels = images_file.read_bytes(), labels_file.read_bytes()

    images_file.write_bytes(b"\x00\x00\x08\x01" + good_images[4:])  # a labels magic on the images file
    _expect(tmp_path, r"train-images-idx3-ubyte.* magic number 0x00000801; expected 0x00000803")
    images_file.write_bytes(b"\x12\x34\x56\x78" + good_images[4:])
    _expect(tmp_path, r"train-images-idx3-ubyte.* magic number 0x12345678")
    images_file.write_bytes(good_images[:-10])
    _expect(tmp_path, r"train-images-idx3-ubyte.* is truncated: the header declares 5 x 28 x 28 = 3920 bytes"
                      r" of images, the file holds 3910")
    images_file.write_bytes(good_images + b"\x00")
    _expect(tmp_path, r"train-images-idx3-ubyte.* is longer than its header says")
    images_file.write_bytes(good_images[:6])
    _expect(tmp_path, r"train-images-idx3-ubyte.* ends inside its idx header")
    images_file.write_bytes(good_images)

    labels_file.write_bytes(idx_bytes(np.array([1, 2, 3, 4], np.uint8)))
    _expect(tmp_path, r"holds 5 images but .*train-labels-idx1-ubyte.* 4 labels")
    labels_file.write_bytes(idx_bytes(np.array([1, 2, 10, 4, 0], np.uint8)))
    _expect(tmp_path, r"train-labels-idx1-ubyte.* has label 10 at position 2; expected 0..9")
    labels_file.unlink()
    _expect(tmp_path, r"missing file .*train-labels-idx1-ubyte.* \(or train-labels-idx1-ubyte.gz\)")
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(good_labels)  # not gzip at all
    _expect(tmp_path, r"cannot read .*train-labels-idx1-ubyte.gz")


def test_a_truncated_gzip_stream_is_refused(tmp_path):
    write_release(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1]))
    _expect(tmp_path, r"train-images-idx3-ubyte.gz.* is truncated")
    path.write_bytes(path.read_bytes()[:-20])  # the stream itself cut short
    _expect(tmp_path, r"cannot read .*train-images-idx3-ubyte.gz")


# ---- a validation split carved from the training set (model selection never on the test set) ----
def test_holdout_carves_a_fixed_disjoint_validation_split_from_train(tmp_path):
    written = write_release(tmp_path / "fm", gz=True, sizes=(40, 7))
    name = f"fashion-mnist:{tmp_path / 'fm'}?holdout=10"
    train, val = load_split(name, "train", 28), load_split(name, "val", 28)
    assert (len(train), len(val)) == (30, 10)
    images = torch.from_numpy(written["train"][0]).reshape(40, -1)
    rows = {tuple(r.tolist()): i for i, r in enumerate(images)}  # every training image by its pixels
    got_val = {rows[tuple(x[0, 0].reshape(-1).tolist())] for x in val.images.split(1)}
    got_train = {rows[tuple(x[0, 0].reshape(-1).tolist())] for x in train.images.split(1)}
    assert len(got_val) == 10 and len(got_train) == 30 and not got_val & got_train  # a partition of train
    test_images = {tuple(r.tolist()) for r in torch.from_numpy(written["val"][0]).reshape(7, -1)}
    assert not test_images & {tuple(x[0, 0].reshape(-1).tolist()) for x in val.images.split(1)}  # no test image
    again = load_split(name, "val", 28)  # the same carve every time (a fixed seed, not the run's)
    assert torch.equal(again.images, val.images) and torch.equal(again.labels, val.labels)
    # normalised with the statistics of the carved training images, by hand in float64
    kept = torch.from_numpy(written["train"][0])[sorted(got_train)].double()
    assert train.mean.flatten()[0].item() == pytest.approx(kept.mean().item(), rel=1e-5)


@pytest.mark.parametrize("suffix, message", [
    ("?holdout=0", "bad holdout '0'"), ("?holdout=ten", "bad holdout 'ten'"),
    ("?holdout=40", "holdout 40 leaves no training images"),
])
def test_bad_holdouts_get_one_line(tmp_path, suffix, message):
    write_release(tmp_path / "fm", gz=False, sizes=(40, 7))
    with pytest.raises(BlockSwapError, match=message):
        load_split(f"fashion-mnist:{tmp_path / 'fm'}{suffix}", "train", 28)


def test_train_images_trains_every_seed_on_the_same_fixed_subset(tmp_path):
    from blockswap import recipe, train_model

    write_release(tmp_path / "fm", gz=True, sizes=(40, 7))
    split = load_split(f"mnist:{tmp_path / 'fm'}", "train", 28)
    a, b = split.subset(24), split.subset(24)
    assert torch.equal(a.images, b.images) and len(a) == 24  # no seed of the run enters
    whole = {tuple(x.reshape(-1).tolist()) for x in split.images}
    picked = {tuple(x.reshape(-1).tolist()) for x in a.images}
    assert picked <= whole and len(picked) == 24  # 24 distinct images of the training split
    records = []
    for seed in (0, 1):
        cfg = recipe("digits", epochs=1, batch_size=8, train_images=24, seed=seed, augment=False)
        records.append(train_model(cfg, f"mnist:{tmp_path / 'fm'}", tmp_path / f"r{seed}", "wrn-10-1",
                                   progress=False))
    for rec in records:
        assert rec["config"]["train_images"] == 24
        metrics = [__import__("json").loads(line) for line in (tmp_path / f"r{rec['config']['seed']}" /
                                                                "metrics.jsonl").read_text().splitlines()]
        assert metrics[-1]["train_images"] == 24  # 24 images an epoch, not the 40 of the split
    with pytest.raises(BlockSwapError, match="train_images 41 is more than the 40 images"):
        train_model(recipe("digits", epochs=1, batch_size=8, train_images=41), f"mnist:{tmp_path / 'fm'}",
                    tmp_path / "big", "wrn-10-1", progress=False)
