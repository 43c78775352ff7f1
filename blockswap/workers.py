"""Worker processes start quietly: a search's process executor spawns Python interpreters that
import this package (and torch) before they read their work from the parent. A Ctrl-C during
those seconds, or a parent ended by SIGTERM or ``kill -9`` while it sends the scoring data,
would otherwise print each worker's ``KeyboardInterrupt`` or ``UnpicklingError: pickle data was
truncated`` traceback above the parent's one clean line.

The parent marks the workers it spawns with the environment variable `WORKER_MARK`
(`search.executors`); `quiet_start`, run first thing when the package is imported, then makes a
marked spawned process ignore SIGINT (the parent handles it and shuts the pool down) and exit
silently, status 1, if its start-up fails because the parent went away.
"""

from __future__ import annotations

import os
import sys

WORKER_MARK = "BLOCKSWAP_WORKER"

# What a worker sees when its parent stops mid-hand-over: the pickled work ends early or the
# pipe closes. Any other start-up error (an import error in the worker) is still shown.
_PARENT_GONE = (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionError)


def is_starting_worker() -> bool:
    """Whether this process is a marked worker that multiprocessing is still starting."""
    if os.environ.get(WORKER_MARK) != "1" or "multiprocessing" not in sys.modules:
        return False
    import multiprocessing

    return multiprocessing.current_process().name != "MainProcess"


def quiet_start() -> None:
    """In a marked worker: ignore SIGINT, and end silently on the errors of a parent gone away."""
    if not is_starting_worker():
        return
    import pickle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent, default = os.getppid(), sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, (*_PARENT_GONE, pickle.UnpicklingError)) or os.getppid() != parent:
            os._exit(1)
        default(kind, value, tb)

    sys.excepthook = hook
