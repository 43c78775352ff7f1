"""Conventions of every subcommand's flags (issue 20): one name one meaning, defaults shown,
no abbreviations, deprecated spellings warn. Walks the parser; no subprocess."""

from __future__ import annotations

import argparse

import pytest

from blockswap.cli import build_parser

# Old spellings kept one version as hidden aliases, and the name that replaced each.
DEPRECATED = {("evaluate", "--weights"): "--teacher-weights", ("export", "--weights"): "--teacher-weights",
              ("report search", "--top"): "--top-k", ("train teacher", "--step-gamma"): "--lr-gamma",
              ("train student", "--step-gamma"): "--lr-gamma"}
# Names that had two meanings, each with the word its help must hold wherever it appears.
MEANINGS = {"--checkpoint": ("checkpoint", "run"), "--grad-checkpoint": ("backward",),
            "--score-workers": ("scoring",), "--loader-workers": ("loader",), "--decode-workers": ("decoding",),
            "--teacher-weights": ("torchvision",), "--top-k": ("best", "runner-ups"), "--device": ("cpu",)}
# Names that a rename retired: no parser may show them again (with another meaning).
RETIRED = ("--workers", "--weights", "--top", "--step-gamma")


def _walk(parser: argparse.ArgumentParser, name: str = ""):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _walk(child, f"{name} {sub}".strip())


def _options(parser: argparse.ArgumentParser):
    for a in parser._actions:
        if a.option_strings and a.help is not argparse.SUPPRESS and not isinstance(
                a, (argparse._HelpAction, argparse._VersionAction)):
            yield a


PARSERS = dict(_walk(build_parser()))


def test_walk_reaches_nested_commands():
    for name in ("search", "train teacher", "train student", "train detector", "report search", "report runs",
                 "data make-imagefolder", "data make-digits-coco", "evaluate", "cost", "export", "benchmark"):
        assert name in PARSERS, name


def test_no_flag_name_with_two_meanings():
    # A meaning here: whether the flag takes a value, and the value's type.
    kinds: dict[str, dict[tuple, list[str]]] = {}
    for name, parser in PARSERS.items():
        for a in _options(parser):
            kind = (a.nargs == 0, getattr(a.type, "__name__", None))
            for flag in a.option_strings:
                kinds.setdefault(flag, {}).setdefault(kind, []).append(name)
                words = MEANINGS.get(flag)
                if words:
                    assert any(w in a.help.lower() for w in words), (name, flag, a.help)
                assert flag not in RETIRED, (name, flag)
    clashes = {flag: k for flag, k in kinds.items() if len(k) > 1}
    assert not clashes


def test_defaults_shown():
    missing = [(name, a.option_strings[0]) for name, parser in PARSERS.items() for a in _options(parser)
               if a.nargs != 0 and a.default not in (None, argparse.SUPPRESS) and "default" not in (a.help or "")]
    assert not missing


def test_train_settings_show_each_recipes_value():
    from blockswap.train import recipe

    help_text = PARSERS["train teacher"].format_help()
    assert f"cifar {recipe('cifar').epochs}" in help_text and f"imagenet {recipe('imagenet').epochs}" in help_text


def test_teacher_has_no_student_flags_or_detection_data():
    teacher = {f for a in _options(PARSERS["train teacher"]) for f in a.option_strings}
    student = {f for a in _options(PARSERS["train student"]) for f in a.option_strings}
    assert {"--beta", "--kd-weight"} <= student and not {"--beta", "--kd-weight"} & teacher
    data = next(a for a in _options(PARSERS["train teacher"]) if "--data" in a.option_strings)
    assert "--task detection" not in data.help


@pytest.mark.parametrize("argv", [["search", "--sample", "5", "--data", "digits", "--out", "x"],
                                  ["report", "search", "f", "--to", "3"],
                                  ["train", "teacher", "--mod", "wrn-16-1", "--data", "digits", "--out", "x"]])
def test_abbreviations_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err  # refused: unknown, or the full flag still missing
    assert "unrecognized arguments" in err or "are required" in err


def test_abbreviation_refused_on_every_parser():
    assert all(not p.allow_abbrev for p in PARSERS.values())


@pytest.mark.parametrize("argv,dest,value", [
    (["report", "search", "f", "--top", "3"], "top_k", 3),
    (["evaluate", "--checkpoint", "c", "--data", "digits", "--weights", "w.pth"], "teacher_weights", "w.pth"),
    (["export", "--checkpoint", "c", "--out", "m.onnx", "--weights", "w.pth"], "teacher_weights", "w.pth"),
    (["train", "teacher", "--model", "wrn-16-1", "--data", "digits", "--out", "x", "--step-gamma", "0.5"],
     "step_gamma", 0.5)])
def test_deprecated_aliases_warn_and_store(argv, dest, value, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    old = next(a for a in argv if a in {f for _, f in DEPRECATED})
    new = next(n for (_, o), n in DEPRECATED.items() if o == old)
    assert capsys.readouterr().err.strip() == f"warning: {old} is deprecated, use {new}"


def test_new_names_store_the_same_dest_without_warning(capsys):
    args = build_parser().parse_args(["report", "search", "f", "--top-k", "3"])
    assert args.top_k == 3 and capsys.readouterr().err == ""
    args = build_parser().parse_args(["report", "search", "f"])
    assert args.top_k == 10  # the alias's hidden default does not hide the real one


def test_worker_defaults_follow_the_cpu_count():
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args = build_parser().parse_args(["evaluate", "--checkpoint", "c", "--data", "digits"])
    assert args.loader_workers == max(0, min(4, cpus))
