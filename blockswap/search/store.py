"""The results file of a search, its one owner: writer and reader of ``results.sqlite`` and of
the files exported from it (``candidates.csv``).

One row per candidate (genotype, params, MACs, seed) and one per score (every signal and the
per-block Fisher), committed as it arrives: write-ahead logging and one transaction per score,
so a crash or ``kill -9`` loses only candidates that were still being scored. The store is the
truth; ``winner.json``, ``top.json`` and ``candidates.csv`` are exports of it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BlockSwapError
from ..files import dumps, versions
from ..proxies.registry import get_proxy, parse_signal, rank
from ..tasks import ScoreRow
from .config import SearchConfig

RESULTS_FILE = "results.sqlite"
# Version of the scoring arithmetic. 2: exact batch statistics in channels-last (0.2); a store
# without it was scored by 0.1, whose channels-last scores were up to 3e-3 off per block, and
# is not extended with new scores (the ranking would mix two arithmetics).
SCORING_VERSION = 2


@dataclass(frozen=True)
class Candidate:
    index: int
    genotype: str
    params: int
    macs: int
    seed: int


class ResultStore:
    """A SQLite results file: the run's config and sampling, the candidates, and their scores."""

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS candidates (
            idx INTEGER PRIMARY KEY, genotype TEXT NOT NULL UNIQUE, params INTEGER NOT NULL,
            macs INTEGER NOT NULL, seed INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS scores (
            idx INTEGER NOT NULL REFERENCES candidates(idx), stage TEXT NOT NULL, score REAL,
            signals TEXT NOT NULL, per_block TEXT NOT NULL, seconds REAL NOT NULL,
            PRIMARY KEY (idx, stage));
    """

    def __init__(self, path: "str | Path", readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.db = None
        created = not readonly and not self.path.exists()
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                self.db.execute("SELECT count(*) FROM candidates")  # fails on a foreign file
            else:
                self.db = sqlite3.connect(self.path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
                self.db.executescript(self.SCHEMA)
        except sqlite3.DatabaseError as exc:
            if created:  # e.g. a full disk while writing the schema: no half-made file blocks the rerun
                self._discard()
            raise BlockSwapError(f"cannot open results file {str(self.path)!r}: {exc}") from None

    def _discard(self) -> None:
        """Close and delete the results file (with its -wal and -shm): it holds no search."""
        if self.db is not None:
            self.db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        if not self.readonly and self.path.exists():
            # Back to a single file: write-ahead logging is for the live search; left on, every
            # later reader (``report search``) would add -wal and -shm files to the folder.
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- writing -----------------------------------------------------------------------
    def start(self, config: SearchConfig, sampling: dict[str, Any], rows: list[Candidate]) -> None:
        """Record a new search. If that fails (a full disk), the file is deleted: a results file
        that holds no search would make the rerun refuse the folder as "already holds a search"."""
        try:
            self._start(config, sampling, rows)
        except BaseException:
            try:
                holds = self.started()
            except sqlite3.Error:
                holds = False
            if not holds:
                self._discard()
            raise

    def _start(self, config: SearchConfig, sampling: dict[str, Any], rows: list[Candidate]) -> None:
        with self._writing(), self.db:
            self.db.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?)",
                                [(c.index, c.genotype, c.params, c.macs, c.seed) for c in rows])
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("config", dumps(config.to_dict())), ("sampling", dumps(sampling)),
                ("versions", dumps(versions())), ("scoring", dumps(SCORING_VERSION))])

    def add(self, row: "ScoreRow | dict[str, Any]") -> None:
        """Store one score (a `ScoreRow`, or its fields as a dict, as scripts of 0.2 wrote)."""
        if isinstance(row, dict):
            row = ScoreRow(**row)
        with self._writing(), self.db:
            self.db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)", (
                row.index, row.stage, row.score, dumps(row.signals), dumps(list(row.per_block)), row.seconds))

    @contextlib.contextmanager
    def _writing(self):
        """SQLite's own errors (a full disk: "database or disk is full") as one line naming the file."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise BlockSwapError(f"cannot write {str(self.path)!r}: {exc}") from None

    # ---- reading -----------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def started(self) -> bool:
        return self.get_meta("config") is not None

    def config(self) -> SearchConfig:
        stored = self.get_meta("config")
        if stored is None:
            raise BlockSwapError(f"{str(self.path)!r} holds no search (it was never started)")
        return SearchConfig.from_dict(stored)

    def candidates(self) -> list[Candidate]:
        return [Candidate(*row) for row in
                self.db.execute("SELECT idx, genotype, params, macs, seed FROM candidates ORDER BY idx")]

    def scores(self, stage: str = "full") -> dict[int, dict[str, Any]]:
        out = {}
        for idx, score, signals, per_block, seconds in self.db.execute(
                "SELECT idx, score, signals, per_block, seconds FROM scores WHERE stage = ?", (stage,)):
            out[idx] = {"score": score, "signals": json.loads(signals), "per_block": json.loads(per_block),
                        "seconds": seconds}
        return out

    def ranked(self, stage: str = "full", signal: str | None = None) -> list[int]:
        """Scored candidate indices, best first, by `signal` (default: the ranking signal)."""
        config = self.config()
        sig = config.rank_signal if signal is None else parse_signal(signal)
        scores = self.scores(stage)
        if signal is None and config.rank_by != config.rank_signal:  # an aggregate: from every signal
            return config.rank_by.order({i: s["signals"] for i, s in scores.items()})
        values = {i: (s["score"] if signal is None else s["signals"].get(sig.name)) for i, s in scores.items()}
        return rank(values, get_proxy(sig.proxy).higher_is_better)


def candidates_csv(store: ResultStore) -> str:
    """Every candidate with its signals, per-block Fisher and seconds (and round one's score: halving's slice, the screen's)."""
    config = store.config()
    first = config.first_stage  # halving's "slice" or the screen's "screen" column, if any
    full, slice_scores = store.scores("full"), (store.scores(first) if first else {})
    # The params and macs signals are the candidate's own columns: not written twice.
    names = [n for n in config.signal_names if n not in ("params", "macs")]
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["index", "genotype", "params", "macs", "seed", *names, "fisher_per_block", "seconds"]
    if first:
        header.insert(5, f"{first}_{config.signal_names[0]}")
    writer.writerow(header)
    for c in store.candidates():
        row = full.get(c.index)
        values = [row["signals"].get(s, "") for s in names] if row else [""] * len(names)
        line = [c.index, c.genotype, c.params, c.macs, c.seed, *values,
                ";".join(f"{v:.6g}" for v in row["per_block"]) if row else "",
                f"{row['seconds']:.4f}" if row else ""]
        if first:
            line.insert(5, slice_scores[c.index]["score"] if c.index in slice_scores else "")
        writer.writerow(line)
    return buf.getvalue()


def open_search(folder: "str | Path") -> ResultStore:
    """The results file of a search folder, read-only (for reports)."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        raise BlockSwapError(f"{str(folder)!r} is not a search folder: no {RESULTS_FILE} "
                             "(written by `blockswap search`)")
    store = ResultStore(path, readonly=True)
    if not store.started():
        store.close()
        raise BlockSwapError(f"{str(path)!r} holds no search (it was never started)")
    return store
