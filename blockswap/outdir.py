"""Output folders: checked before any work, locked while a run writes, never silently replaced.

Every command that writes a run folder (`search`, `train`) enters `claim_folder` first. It

* turns every operating-system problem with the path (a file in the way, a read-only or
  virtual file system, a missing permission) into one line that names the path, before
  anything is computed;
* takes an OS file lock (`fcntl.flock` on ``.blockswap.lock``) for the whole run, so a second
  run on the same folder is refused at once; the kernel releases the lock when the process
  ends, however it ends (even ``kill -9``, which leaves the file but not the lock), so a
  crashed run never blocks its ``--resume``;
* refuses a folder that already holds results of a run unless the user says ``resume``
  (continue it) or ``overwrite`` (delete those results first): finished work is never replaced
  without being asked;
* removes what it created if the run fails before writing any result, so a corrected command
  is never blocked by the debris of a failed one.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BlockSwapError, os_error

LOCK_NAME = ".blockswap.lock"

# Which interface the caller used, so that a refusal names what that caller can change: the
# API's keyword arguments or the CLI's flags. The CLI sets "cli" for the whole command
# (`calling_interface`); library code in between needs no extra parameter.
INTERFACES = ("api", "cli")
_INTERFACE: contextvars.ContextVar[str] = contextvars.ContextVar("blockswap_interface", default="api")
_WORDS = {"api": {"resume": "resume=True", "overwrite": "overwrite=True"},
          "cli": {"resume": "--resume", "overwrite": "--overwrite"}}


@contextlib.contextmanager
def calling_interface(name: str) -> Iterator[None]:
    """Within the block, folder refusals name the options of interface `name` ("api" or "cli")."""
    if name not in INTERFACES:
        raise BlockSwapError(f"unknown interface {name!r}; valid: {', '.join(INTERFACES)}")
    token = _INTERFACE.set(name)
    try:
        yield
    finally:
        _INTERFACE.reset(token)


@dataclass(frozen=True)
class RunFolder:
    """The files of one kind of run: `anchor` is the file a resume continues from."""

    kind: str  # for messages: "search", "training run"
    anchor: str  # e.g. "results.sqlite", "checkpoint.pt"
    results: tuple[str, ...]  # every file that holds a result of the run (anchor included)
    companions: tuple[str, ...] = ()  # files that go with the anchor (SQLite's -wal and -shm)

    def present(self, folder: Path) -> list[str]:
        return [name for name in self.results if (folder / name).exists()]


def option(name: str) -> str:
    """How the current caller says `name` ("resume", "overwrite"): ``resume=True`` from the API,
    ``--resume`` from the CLI (see `calling_interface`)."""
    return _WORDS[_INTERFACE.get()][name]


def check_writable_folder(path: "str | Path", flag: str = "--out") -> Path:
    """`path` as a folder this process can create files in (created with its parents if missing).

    Raises a one-line BlockSwapError for a file in the way (`path` or one of its parents), a
    virtual or read-only file system and missing permissions.
    """
    path = Path(path).expanduser()
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == path else f"is below the file {str(parent)!r}"
            raise BlockSwapError(f"{flag} {str(path)!r} {what}; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".blockswap-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BlockSwapError(f"{flag} {str(path)!r} cannot hold files: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def claim_folder(path: "str | Path", spec: RunFolder, *, resume: bool = False, overwrite: bool = False,
                 enabled: bool = True, interface: str | None = None) -> Iterator[Path]:
    """Check, lock and guard the run folder `path` for the duration of the ``with`` block.

    `enabled=False` (data-parallel ranks other than 0, which write nothing) only yields the path.
    `interface` ("api" or "cli"; default: the one set by `calling_interface`, else "api") picks
    the words of a refusal: ``resume=True`` or ``--resume``.
    """
    path = Path(path).expanduser()
    if not enabled:
        yield path
        return
    interface = interface or _INTERFACE.get()
    if interface not in _WORDS:
        raise BlockSwapError(f"unknown interface {interface!r}; valid: {', '.join(INTERFACES)}")
    word = _WORDS[interface]
    if resume and overwrite:
        raise BlockSwapError(f"{word['resume']} continues the run in the folder and {word['overwrite']} "
                             "replaces it: give one")
    created = _missing_folders(path)
    check_writable_folder(path)
    try:
        lock = _lock(path)
    except BlockSwapError:
        _remove_if_empty(created)
        raise
    wrote = False
    try:
        present = spec.present(path)
        if present and overwrite:
            for name in (*spec.results, *spec.companions):
                (path / name).unlink(missing_ok=True)
        elif present and not resume:
            raise BlockSwapError(
                f"{str(path)!r} already holds a {spec.kind} ({', '.join(present)}); add {word['resume']} to "
                f"continue it, {word['overwrite']} to replace it, or choose another output folder")
        elif present and spec.anchor not in present:
            raise BlockSwapError(
                f"cannot resume {str(path)!r}: it holds {', '.join(present)} of a {spec.kind} but not "
                f"{spec.anchor}, which a resume continues from; add {word['overwrite']} to start the run again "
                "(replacing those files) or choose another output folder")
        yield path
        wrote = True
    finally:
        if not wrote and not spec.present(path):
            for name in spec.companions:
                (path / name).unlink(missing_ok=True)
        _unlock(path, lock)
        if not wrote:
            _remove_if_empty(created)


def _lock(folder: Path) -> int:
    """An exclusive lock on ``folder/.blockswap.lock``, or a one-line error naming the holder.

    The lock file is removed on release (`_unlock`), so a finished folder holds only results.
    A process that opened the file just before its holder removed it would lock a dead file:
    hence the check that the locked file is still the one at the path, and the retry.
    """
    import fcntl

    lock_path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise os_error(exc, lock_path, "create the lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BlockSwapError(f"{str(folder)!r} is in use by another blockswap run (process {holder}); "
                                 "wait for it to finish or choose another output folder") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:  # the holder's pid, for the message of a refused second run
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError as exc:  # a full disk: name the lock file (the OSError of a descriptor has no path)
        _unlock(folder, fd)
        raise os_error(exc, lock_path, "write the lock file") from None
    return fd


def _unlock(folder: Path, fd: int) -> None:
    """Remove the lock file while still holding it, then release it."""
    with contextlib.suppress(OSError):
        (folder / LOCK_NAME).unlink()
    os.close(fd)


def _missing_folders(path: Path) -> list[Path]:
    """The folders `path` needs that do not exist yet, deepest first."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_if_empty(created: Sequence[Path]) -> None:
    """Remove the folders this run created, if they are empty."""
    for folder in created:
        with contextlib.suppress(OSError):
            folder.rmdir()
