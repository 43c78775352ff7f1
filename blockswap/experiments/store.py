"""The results store of an experiment: one SQLite file, ``OUT/experiment.sqlite``, its one owner.

One row per run of the grid (`grid.Run`): its status (pending, running, done, failed), its
result (the numbers of a training run's record or a search's winner) and its error, committed
as each run ends, so an interrupted experiment loses only the runs that were in flight, and
those resume from their own checkpoints. Only the process that drives the experiment writes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from ..errors import BlockSwapError
from ..files import dumps, versions
from ..outdir import LOCK_NAME
from .runs import Run

STORE_FILE = "experiment.sqlite"
STATUSES = ("pending", "running", "done", "failed")
# Settings whose change makes finished runs mean something else; budgets, seeds and methods
# may change between invocations (runs are added, or left out of the report).
_FIXED = ("model", "data", "teacher", "student", "search", "distill", "input_size", "teacher_model", "teacher_weights")
# Training fields compared per run instead: `amp` is a request (its 0.2 value True meant float32 on
# a CPU), and each run's training checks the precision it computes in when it resumes.
_PER_RUN = frozenset({"amp"})


def _fixed(spec: dict[str, Any], key: str) -> Any:
    value = spec.get(key)
    if key in ("teacher", "student") and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in _PER_RUN}
    return value


class ExperimentStore:
    SCHEMA = """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS runs (
            key TEXT PRIMARY KEY, phase TEXT NOT NULL, method TEXT NOT NULL, budget TEXT,
            seed INTEGER NOT NULL, detail TEXT NOT NULL, status TEXT NOT NULL, result TEXT,
            error TEXT, seconds REAL, updated REAL NOT NULL);
    """

    def __init__(self, path: "str | Path", readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.is_file():
                    raise BlockSwapError(f"{str(self.path)!r} is not an experiment results file")
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                self.db.execute("SELECT count(*) FROM runs")  # fails on a foreign file
            else:
                self.db = sqlite3.connect(self.path)
                self.db.executescript(self.SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BlockSwapError(f"cannot open experiment results {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ExperimentStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def _writing(self):
        try:
            with self.db:
                yield
        except sqlite3.OperationalError as exc:
            raise BlockSwapError(f"cannot write {str(self.path)!r}: {exc}") from None

    # ---- the experiment ------------------------------------------------------------------
    def check(self, spec: dict[str, Any], runs: Iterable[Run]) -> None:
        """Refuse `spec` and its `runs` if finished runs would not match them (read-only).

        Only a store with finished runs holds an experiment to: one whose runs all failed or
        never ran takes the new settings. A finished run whose detail changed (a search asked
        for more samples or other signals) is refused: extending a finished search in place
        is not supported, and its old result must not pass for the new one."""
        old = self.spec()
        if old is None or not self._any_done():
            return
        changed = [k for k in _FIXED if _fixed(old, k) != _fixed(spec, k)]
        if changed:
            raise BlockSwapError(
                f"{str(self.path)!r} holds an experiment with other {', '.join(changed)} "
                f"({'; '.join(f'{k}: {json.dumps(old.get(k))}' for k in changed)}); its finished runs "
                "would not match: use the same file, or another --out")
        done = {r["key"]: r["detail"] for r in self.rows() if r["status"] == "done"}
        for run in runs:
            before = done.get(run.key)
            if before is None:
                continue
            now = json.loads(dumps(run.detail))
            diff = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
            if diff:
                raise BlockSwapError(
                    f"{run.key} finished with {_show(before, diff)}; the file now asks {_show(now, diff)}, "
                    "which would change its result: restore the file, or rerun with --overwrite or another --out")

    def _any_done(self) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE status = 'done' LIMIT 1").fetchone() is not None

    def bind(self, spec: dict[str, Any], runs: Iterable[Run] = ()) -> None:
        """Record `spec` (a new store, or one with no finished run) or check it against the
        recorded one (`check`)."""
        self.check(spec, runs)
        with self._writing():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('spec', ?)", (dumps(spec),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('versions', ?)", (dumps(versions()),))

    def spec(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()
        return None if row is None else json.loads(row[0])

    def add(self, runs: Iterable[Run]) -> None:
        """Enter runs of the grid not yet known (known ones keep their status and result; the
        detail of one not done is the grid's now)."""
        runs = list(runs)
        with self._writing():
            self.db.executemany(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, ?)",
                [(r.key, r.phase, r.method, r.budget, r.seed, dumps(r.detail), time.time()) for r in runs])
            self.db.executemany("UPDATE runs SET detail = ? WHERE key = ? AND status != 'done'",
                                [(dumps(r.detail), r.key) for r in runs])

    # ---- one run -----------------------------------------------------------------------
    def mark(self, key: str, status: str, *, result: dict[str, Any] | None = None, error: str | None = None,
             seconds: float | None = None) -> None:
        assert status in STATUSES, status
        with self._writing():
            self.db.execute("UPDATE runs SET status = ?, result = ?, error = ?, seconds = ?, updated = ? "
                            "WHERE key = ?", (status, None if result is None else dumps(result), error,
                                              seconds, time.time(), key))

    def status(self, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def result(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT result FROM runs WHERE key = ? AND status = 'done'", (key,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def rows(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every run (or those of `keys`) as a dict, results parsed."""
        cur = self.db.execute("SELECT key, phase, method, budget, seed, detail, status, result, error, seconds "
                              "FROM runs ORDER BY rowid")
        wanted = None if keys is None else set(keys)
        out = []
        for key, phase, method, budget, seed, detail, status, result, error, seconds in cur:
            if wanted is not None and key not in wanted:
                continue
            out.append({"key": key, "phase": phase, "method": method, "budget": budget, "seed": seed,
                        "detail": json.loads(detail), "status": status,
                        "result": None if result is None else json.loads(result), "error": error,
                        "seconds": seconds})
        return out

    def counts(self, keys: Iterable[str]) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for row in self.rows(keys):
            out[row["status"]] += 1
        return out


def _show(detail: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={json.dumps(detail.get(k))}" for k in keys)


def folder_in_use(folder: "str | Path") -> bool:
    """Whether a process holds the lock of experiment folder `folder` (`outdir.claim_folder`):
    if none does, runs the store calls ``running`` were interrupted (Ctrl-C, a kill)."""
    import fcntl
    import os

    lock = Path(folder) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def open_experiment(folder: "str | Path") -> ExperimentStore:
    """The results store of an experiment folder (or the file itself), read-only."""
    path = Path(folder).expanduser()
    if path.is_dir():
        path = path / STORE_FILE
    if not path.exists():
        raise BlockSwapError(f"no experiment results at {str(path)!r}: give the --out folder of "
                             "'blockswap experiment' or its experiment.sqlite")
    return ExperimentStore(path, readonly=True)
