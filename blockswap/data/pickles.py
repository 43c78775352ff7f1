"""Reading dataset pickles without running code from them.

A pickle can name any importable callable and have the unpickler call it (``os.system``,
``builtins.exec``): `pickle.load` on a downloaded file runs whatever it says before any check
of ours sees the result. `load_data_pickle` resolves globals from a fixed table instead of by
import, so a data file can only build plain containers, strings, bytes, numbers and numpy
arrays; anything else is refused before it is called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BlockSwapError

try:  # numpy >= 2 moved numpy.core to numpy._core (the old name stays as a warning shim)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

# The globals a CIFAR-10/100 python pickle needs, under every module name numpy 1.x and 2.x
# write them with. Looked up here, never imported by name, so the table is the whole surface.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under pickle protocol 2.
    ("_codecs", "encode"): codecs.encode,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct  # arrays, protocol <= 4
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar  # numpy scalars (np.int64(3))
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer  # arrays, protocol 5


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Forbidden(f"{module}.{name}") from None


class _Forbidden(pickle.UnpicklingError):
    """A global outside `_ALLOWED`: kept apart from corrupt-file errors to name it plainly."""


def load_data_pickle(path: str | Path, what: str) -> Any:
    """Unpickle the data file `path` (bytes keys kept as bytes, as the CIFAR release writes them).

    `what` names the dataset in messages. A pickle that asks for any callable outside the numpy
    array machinery raises `BlockSwapError` naming the file and that callable, and nothing of it
    runs; other read errors propagate for the caller to describe.
    """
    with Path(path).open("rb") as f:
        try:
            return _DataUnpickler(f, encoding="bytes").load()
        except _Forbidden as exc:
            raise BlockSwapError(
                f"{what}: refusing to read {str(path)!r}: the pickle calls {exc}, which could run code; "
                "a dataset pickle may hold only containers, strings, numbers and numpy arrays") from None
