"""The trainer as users rely on it: recipes, exact resume, frozen teacher, DDP, CLI, errors.

Runs are tiny (WRN-10-1 on 16x16 synthetic images, 1-3 epochs) so the file takes seconds.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import blockswap.train.classify as train_module
from blockswap import BlockSwapError, Genotype
from blockswap.data import Augment, TensorSplit, load_split
from blockswap.train.distill import at_loss
from blockswap.train import (RECIPES, ModelDesc, evaluate, init_model, load_checkpoint, load_model,
                             parse_model, recipe, run_seeds, train_model)
from helpers import ROOT, run_cli

TINY = dict(batch_size=64, cutout=8, eval_batch_size=128)  # 512 synthetic images: 8 steps/epoch
MODEL = ModelDesc("blockswap", "wrn-10-1", input_size=16)
TIMING = {"train_seconds", "train_img_per_s", "seconds"}


def _tiny(name="cifar", **kw):
    return recipe(name, **{**TINY, **kw})


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train_model(_tiny(epochs=2), "synthetic", out, MODEL, progress=False)
    return out


def test_recipes_are_the_papers():
    c, i = RECIPES["cifar"], RECIPES["imagenet"]
    # Paper Sec. 5: 200 epochs, SGD 0.9, lr 0.1 cosine to 0, batch 128, wd 5e-4, beta 1000.
    assert (c.epochs, c.momentum, c.lr, c.schedule, c.batch_size, c.weight_decay, c.beta) == \
        (200, 0.9, 0.1, "cosine", 128, 5e-4, 1000.0)
    assert (c.augment, c.crop_pad, c.flip, c.cutout) == (True, 4, True, 16)
    # Sec. 6: 100 epochs, lr 0.1 / 10 every 30 epochs, batch 256, wd 1e-4, beta 750.
    assert (i.epochs, i.momentum, i.lr, i.schedule, i.step_epochs, i.step_gamma, i.batch_size,
            i.weight_decay, i.beta) == (100, 0.9, 0.1, "step", 30, 0.1, 256, 1e-4, 750.0)
    assert recipe("imagenet", epochs=3, lr=None).epochs == 3  # None = keep the preset's value


def test_unknown_recipe_or_setting_lists_the_valid_ones():
    with pytest.raises(BlockSwapError, match="valid recipes: cifar, imagenet"):
        recipe("cifar100")
    with pytest.raises(BlockSwapError, match="unknown training setting 'learning_rate'; valid settings: .*lr"):
        recipe("cifar", learning_rate=0.1)
    with pytest.raises(BlockSwapError, match="valid schedules: cosine, step"):
        recipe("cifar", schedule="linear")
    with pytest.raises(BlockSwapError, match="kd_weight"):
        recipe("cifar", kd_weight=2.0)


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_resumed_student_equals_uninterrupted_run_bit_for_bit(tmp_path, teacher_dir):
    cfg = _tiny(epochs=3, seed=7, kd_weight=0.5)  # AT + KD: every piece of state is exercised
    student = parse_model("wrn-10-1", "G(2),B(2),S", input_size=16)
    full = train_model(cfg, "synthetic", tmp_path / "full", student, teacher=teacher_dir, progress=False)

    class Interrupt(Exception):
        pass

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_model(cfg, "synthetic", tmp_path / "cut", student, teacher=teacher_dir, progress=False,
              on_epoch_end=stop_after_first)
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 1
    resumed = train_model(cfg, "synthetic", tmp_path / "cut", student, teacher=teacher_dir, resume=True,
                    progress=False)

    assert _strip(resumed["history"]) == _strip(full["history"])  # exact float equality
    a = load_checkpoint(tmp_path / "full")["state_dict"]
    b = load_checkpoint(tmp_path / "cut")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert _strip([json.loads(x) for x in lines]) == _strip(full["history"])
    # Cosine from 0.1 to 0 over 3 epochs, stepped per epoch.
    assert [r["lr"] for r in full["history"]] == pytest.approx(
        [0.05 * (1 + math.cos(math.pi * e / 3)) for e in range(3)])
    assert all("train_at_loss" in r for r in full["history"])
    record = json.loads((tmp_path / "cut" / "record.json").read_text())
    assert record["genotype"] == "G(2),B(2),S" and record["role"] == "student"
    assert record["top1_error"] == full["history"][-1]["val_top1_error"]
    assert record["params"] == sum(p.numel() for p in load_model(tmp_path / "cut")[0].parameters())
    assert {"seeds", "versions", "macs", "top5_error", "config", "teacher"} <= set(record)


def test_step_schedule_and_refusals_to_clobber_or_mix_runs(tmp_path):
    cfg = _tiny("imagenet", epochs=2, step_epochs=1, batch_size=128)
    rec = train_model(cfg, "synthetic", tmp_path, MODEL, progress=False)
    assert [r["lr"] for r in rec["history"]] == pytest.approx([0.1, 0.01])
    with pytest.raises(BlockSwapError, match="already holds a training run .*add resume=True"):
        train_model(cfg, "synthetic", tmp_path, MODEL, progress=False)
    with pytest.raises(BlockSwapError, match="started with epochs=2, seed=0, now epochs=3, seed=1"):
        train_model(recipe("imagenet", **{**TINY, "batch_size": 128, "step_epochs": 1, "epochs": 3, "seed": 1}),
              "synthetic", tmp_path, MODEL, resume=True, progress=False)
    # A finished run resumed is a no-op that returns the same record.
    again = train_model(cfg, "synthetic", tmp_path, MODEL, resume=True, progress=False)
    assert _strip(again["history"]) == _strip(rec["history"])


def test_teacher_stays_frozen_and_attention_transfer_pulls_the_student(tmp_path, teacher_dir, monkeypatch):
    seen = {}
    real = train_module.load_model

    def spy(*args, **kwargs):
        net, desc = real(*args, **kwargs)
        seen["net"] = net
        return net, desc

    monkeypatch.setattr(train_module, "load_model", spy)
    before = load_checkpoint(teacher_dir)["state_dict"]
    student = parse_model("wrn-10-1", "G(4),G(4),G(4)", input_size=16)
    train_model(_tiny(epochs=1), "synthetic", tmp_path / "at", student, teacher=teacher_dir, progress=False)
    net = seen["net"]
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    after = net.state_dict()  # BN running statistics would move in train mode
    assert all(torch.equal(before[k], after[k]) for k in before)

    # The same student without a teacher: attention maps end up further from the teacher's.
    train_model(_tiny(epochs=1), "synthetic", tmp_path / "ce", student, role="student", progress=False)
    x, _ = next(load_split("synthetic", "val", 16).batches(128))

    def distance(run):
        s = load_model(tmp_path / run)[0]
        with torch.no_grad():
            return at_loss(list(s.forward_intermediates(x)[1].values()),
                           list(net.forward_intermediates(x)[1].values()), 1000.0).item()

    assert distance("at") < 0.5 * distance("ce")


def test_evaluate_counts_top1_and_top5_errors():
    # Image i carries its index in its first pixel; the "model" returns row i of fixed logits.
    n, classes = 37, 10
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, classes, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    split = TensorSplit(images, labels, classes, (0.0,) * 3, (1 / 255,) * 3)

    class Lookup(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return logits[x[:, 0, 0, 0].round().long()]

    out = evaluate(Lookup(), split, batch_size=10)
    top1 = sum(int(logits[i].argmax() != labels[i]) for i in range(n))
    top5 = sum(int(labels[i] not in logits[i].argsort(descending=True)[:5]) for i in range(n))
    assert out["top1_error"] == pytest.approx(100 * top1 / n)
    assert out["top5_error"] == pytest.approx(100 * top5 / n)
    assert out["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)


def test_bad_inputs_get_one_line_errors(tmp_path, teacher_dir):
    from helpers import make_cifar10

    (tmp_path / "junk.pt").write_bytes(b"\x00not torch")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    for path, msg in [(tmp_path / "junk.pt", "cannot read checkpoint"),
                      (tmp_path / "plain.pt", "not a BlockSwap checkpoint"),
                      (tmp_path / "nothing", "does not exist")]:
        with pytest.raises(BlockSwapError, match=msg):
            load_model(path)
    with pytest.raises(BlockSwapError, match="needs its weights file"):
        load_model("torchvision:resnet34")
    # A 10-class teacher cannot teach on CIFAR-100 (100 classes).
    folder = tmp_path / "c100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test"):
        import pickle

        import numpy as np

        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0, 1, 2, 99]}, f)
    with pytest.raises(BlockSwapError, match="teacher .* has 10 classes but cifar100:.* has 100"):
        train_model(_tiny(epochs=1), f"cifar100:{tmp_path / 'c100'}", tmp_path / "x", MODEL,
              teacher=teacher_dir, progress=False)
    # A ResNet student has 4 attention points, the WRN teacher 3.
    resnet = parse_model("resnet18", "S," * 7 + "S", input_size=32)
    with pytest.raises(BlockSwapError, match="4 attention points but the teacher has 3"):
        train_model(_tiny(epochs=1), "synthetic", tmp_path / "y", resnet, teacher=teacher_dir, progress=False)
    make_cifar10(tmp_path / "c10")
    with pytest.raises(BlockSwapError, match="model has 100 classes but cifar10"):
        train_model(_tiny(epochs=1), f"cifar10:{tmp_path / 'c10'}", tmp_path / "z",
              ModelDesc("blockswap", "wrn-10-1", None, 100, 16), progress=False)
    with pytest.raises(BlockSwapError, match="torchvision:NAME"):
        parse_model("timm:resnet34")


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_cli_teacher_student_evaluate(tmp_path, teacher_dir):
    geno = tmp_path / "g.json"
    Genotype.from_text("B(2),G(2),S", "wrn-10-1").save(geno)
    res = run_cli("train", "student", "--teacher", str(teacher_dir), "--genotype", str(geno),
                  "--data", "synthetic", "--out", str(tmp_path / "s"), "--epochs", "1",
                  "--batch-size", "64", "--cutout", "8", "--no-flip", "--quiet")
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "s" / "record.json").read_text())
    assert record["model"] == {"kind": "blockswap", "name": "wrn-10-1", "genotype": "B(2),G(2),S",
                               "num_classes": 10, "input_size": 16,  # input size from the teacher
                               "prune": None, "prune_params": None, "prune_source": None}
    assert record["config"]["flip"] is False and record["config"]["recipe"] == "cifar"

    res = run_cli("evaluate", "--checkpoint", str(tmp_path / "s" / "checkpoint.pt"), "--data", "synthetic",
                  "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # Independently: the reloaded network's argmax errors on the 128 validation images.
    net, _ = load_model(tmp_path / "s")
    x, y = next(load_split("synthetic", "val", 16).batches(128))
    with torch.no_grad():
        wrong = (net(x).argmax(1) != y).sum().item()
    assert out["top1_error"] == pytest.approx(100 * wrong / 128)
    assert out["top1_error"] == pytest.approx(record["top1_error"]) and "top5_error" in out



def test_cli_errors_are_one_line(tmp_path, capsys):
    from blockswap.cli import main

    other = tmp_path / "other.json"
    Genotype.from_text("S,S,S,S,S,S", "wrn-16-2").save(other)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    out = ["--data", "synthetic", "--out", str(tmp_path / "o")]
    for args, msg in [
        (["train", "student", "--model", "wrn-10-1", "--genotype", str(other), *out],
         "is for wrn-16-2, not wrn-10-1"),
        (["train", "student", "--genotype", "S,S,S", *out], "cannot tell the student network"),
        (["train", "teacher", "--model", "wrn-10-1", "--lr", "-1", *out], "lr must be positive"),
        (["train", "teacher", "--model", "wrn-11-1", *out], "bad WideResNet 'wrn-11-1'"),
        (["evaluate", "--checkpoint", str(tmp_path / "junk.pt"), "--data", "synthetic"],
         "cannot read checkpoint"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        main(["train", "teacher", "--model", "wrn-10-1", *out, "--recipe", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_imagenet_folders_train_with_the_imagenet_recipe(tmp_path):
    from helpers import make_imagenet

    make_imagenet(tmp_path / "inet")
    from blockswap.cli import main

    assert main(["train", "teacher", "--model", "wrn-10-1", "--data", f"imagenet:{tmp_path / 'inet'}",
                 "--out", str(tmp_path / "run"), "--input-size", "16", "--epochs", "1",
                 "--batch-size", "6", "--loader-workers", "0", "--quiet"]) == 0
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["config"]["recipe"] == "imagenet" and record["model"]["num_classes"] == 3
    assert record["history"][0]["train_images"] == 12


@pytest.mark.slow  # subprocesses (CLI, workers, Ray or torchrun)
def test_ddp_two_gloo_processes_match_single_process_gradient_accumulation(tmp_path):
    """torchrun, 2 CPU processes x 32 images = 1 process x 64 with per-half BN, grads averaged.

    DDP without SyncBN normalises each process's half with its own statistics and averages the
    two gradients; the reference does exactly that in one process, by hand.
    """
    seed = 3
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "blockswap", "train", "teacher", "--model", "wrn-10-1", "--input-size", "16",
         "--data", "synthetic", "--out", str(tmp_path / "ddp"), "--epochs", "1", "--batch-size", "64",
         "--cutout", "8", "--seed", str(seed), "--no-amp", "--quiet"],  # float32, as the reference below
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ddp")
    assert state["history"][0]["train_images"] == 512
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "ddp" / "record.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoint.pt", "metrics.jsonl", "record.json"]

    # One thread, as each torchrun process: float sums in the same order (else rounding
    # differences grow to ~1e-3 over 8 steps at lr 0.1 with BN on 32-image halves).
    torch.set_num_threads(1)
    seeds = run_seeds(seed)
    net = init_model(ModelDesc("blockswap", "wrn-10-1", None, 10, 16), seeds["init"]).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    split = load_split("synthetic", "train", 16)
    g = torch.Generator().manual_seed(seeds["data"])
    for x, y in split.batches(64, shuffle=True, augment=Augment(4, True, 8), generator=g):
        opt.zero_grad()
        for half in (slice(0, 32), slice(32, 64)):
            (F.cross_entropy(net(x[half]), y[half]) / 2).backward()
        opt.step()
    ddp = state["state_dict"]
    for name, p in net.named_parameters():
        torch.testing.assert_close(ddp[name], p.detach(), rtol=1e-4, atol=1e-5)


def test_resume_removes_temporary_files_a_killed_checkpoint_write_left(tmp_path):
    """kill -9 during `atomic_torch_save` leaves ``.checkpoint.pt.XXXX.tmp`` (issue 21)."""
    cfg = _tiny(epochs=1)
    train_model(cfg, "synthetic", tmp_path, MODEL, progress=False)
    stale = [tmp_path / ".checkpoint.pt.k9x1.tmp", tmp_path / ".metrics.jsonl.k9x2.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"
    keep.write_text("the user's")
    train_model(cfg, "synthetic", tmp_path, MODEL, resume=True, progress=False)  # finished: nothing to train
    assert not any(p.exists() for p in stale) and keep.exists()
    assert load_checkpoint(tmp_path)["epoch"] == 1


def test_sigterm_during_a_checkpoint_write_leaves_no_temporary_file(tmp_path):
    """SIGTERM while the checkpoint is being written: the write is abandoned, its temp file deleted."""
    import signal

    from blockswap.files import atomic_torch_save
    from blockswap.train.state import terminate_as_exit

    class KillsWhilePickled:
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            return (int, (0,))

    # terminate_as_exit leaves a handler someone else installed alone (Ray's driver installs one,
    # and the Ray tests run in this process): start from the default, put the other one back.
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit) as exit_info, terminate_as_exit():
            atomic_torch_save(tmp_path / "checkpoint.pt", {"weights": torch.zeros(1000), "x": KillsWhilePickled()})
        assert exit_info.value.code == 128 + signal.SIGTERM
        assert list(tmp_path.iterdir()) == []
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the run
    finally:
        signal.signal(signal.SIGTERM, before)


def test_amp_trains_in_bf16_by_default_where_the_cpu_has_it_and_is_refused_when_asked_elsewhere(tmp_path, monkeypatch):
    import importlib

    evaluate_module = importlib.import_module("blockswap.train.evaluate")  # the package exports a function so named
    from blockswap.cli import main

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    default = train_model(_tiny(epochs=1), "synthetic", tmp_path / "default", MODEL, progress=False)
    assert default["config"]["amp"] == "auto"
    assert default["precision"] == ("bfloat16" if native else "float32")  # the CPU's flags decide
    assert math.isfinite(default["history"][0]["train_loss"])
    off = train_model(_tiny(epochs=1, amp=False), "synthetic", tmp_path / "off", MODEL, progress=False)
    assert off["precision"] == "float32" and off["mixed_precision"] is None
    if native:
        asked = train_model(_tiny(epochs=1, amp=True), "synthetic", tmp_path / "bf16", MODEL, progress=False)
        assert asked["precision"] == "bfloat16" and asked["mixed_precision"] == "torch.bfloat16"
        # Autocast really ran: the loss differs from float32's on the same seed and data.
        assert asked["history"][0]["train_loss"] != off["history"][0]["train_loss"]
    assert _tiny(amp="cpu").amp is True  # the 0.2 spelling of bf16 on the CPU

    monkeypatch.setattr(evaluate_module, "cpu_has_bf16", lambda: False)
    assert train_model(_tiny(epochs=1), "synthetic", tmp_path / "auto-no", MODEL,
                       progress=False)["precision"] == "float32"  # "auto": float32 where bf16 is emulated
    with pytest.raises(BlockSwapError, match=r"needs a CPU with AVX512-BF16 or AMX instructions; this CPU \("):
        train_model(_tiny(epochs=1, amp=True), "synthetic", tmp_path / "no", MODEL, progress=False)
    assert not (tmp_path / "no" / "checkpoint.pt").exists()
    assert main(["train", "teacher", "--model", "wrn-10-1", "--data", "synthetic", "--out", str(tmp_path / "cli"),
                 "--amp", "--quiet"]) == 2
    with pytest.raises(BlockSwapError, match="amp must be True, False or 'auto', got 'gpu'"):
        _tiny(amp="gpu")


def test_a_resumed_run_keeps_the_precision_it_started_in(tmp_path, monkeypatch):
    """A checkpoint states its precision; one written before it did (0.2: amp=True was float32 on
    a CPU) counts as float32, so it resumes under --no-amp and is refused under bf16."""
    import importlib

    evaluate_module = importlib.import_module("blockswap.train.evaluate")
    monkeypatch.setattr(evaluate_module, "cpu_has_bf16", lambda: True)

    class Interrupt(Exception):
        pass

    def stop(row):
        raise Interrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        train_model(_tiny(epochs=2, amp=False), "synthetic", out, MODEL, progress=False, on_epoch_end=stop)
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["precision"] == "float32"
    del state["precision"]  # as 0.2 wrote it: amp=True, which trained a CPU run in float32
    state["config"]["amp"] = True
    torch.save(state, ckpt)
    for amp in ("auto", True):
        with pytest.raises(BlockSwapError, match=r"precision 'float32', not 'bfloat16'; resume it with amp=False"):
            train_model(_tiny(epochs=2, amp=amp), "synthetic", out, MODEL, resume=True, progress=False)
    record = train_model(_tiny(epochs=2, amp=False), "synthetic", out, MODEL, resume=True, progress=False)
    assert record["precision"] == "float32" and record["epochs_done"] == 2


def test_the_old_amp_cpu_flag_still_means_amp_with_a_warning(tmp_path, monkeypatch, capsys):
    import importlib

    from blockswap.cli import main

    monkeypatch.setattr(importlib.import_module("blockswap.train.evaluate"), "cpu_has_bf16", lambda: True)
    assert main(["train", "teacher", "--model", "wrn-10-1", "--data", "synthetic", "--epochs", "1",
                 "--batch-size", "64", "--out", str(tmp_path), "--amp-cpu", "--quiet"]) == 0
    assert "warning: --amp-cpu is deprecated, use --amp" in capsys.readouterr().err
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["config"]["amp"] is True and record["precision"] == "bfloat16"
