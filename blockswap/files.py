"""Files that are never half-written, and the run record every command leaves behind.

Every file BlockSwap writes goes through `atomic_write_*`: the bytes land in a temporary file in
the same directory, are fsync'ed, and replace the target with one `os.replace`, so a crash or
`kill -9` leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import glob
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import BlockSwapError, os_error


@dataclass(frozen=True)
class FileFormat:
    """A versioned file schema: every file BlockSwap writes says what it is and which version.

    One check for all of them (genotypes, run records, search records, checkpoints), so a file
    of another kind or version is refused with the same clear message everywhere.
    """

    name: str  # e.g. "blockswap.genotype"
    version: int
    what: str  # for messages, e.g. "BlockSwap genotype"

    def stamp(self) -> dict[str, Any]:
        """The leading keys of a file of this format."""
        return {"format": self.name, "version": self.version}

    def check(self, data: Any, source: str, hint: str = "") -> None:
        """Raise a one-line error unless `data` (a parsed file) is of this format and version."""
        if not isinstance(data, dict) or data.get("format") != self.name:
            raise BlockSwapError(f"{source}: not a {self.what} (expected \"format\": \"{self.name}\"){hint}")
        if data.get("version") != self.version:
            raise BlockSwapError(f"{source}: {self.what} format version {data.get('version')!r} is not "
                                 f"supported; this BlockSwap reads version {self.version}")


def _temp_affixes(path: Path) -> tuple[str, str]:
    """(prefix, suffix) of the temporary file an atomic write of `path` goes through."""
    return f".{path.name}.", ".tmp"


def stale_temp_files(path: str | Path) -> list[Path]:
    """Temporary files that interrupted atomic writes of `path` left beside it (a killed writer
    cannot delete its own); only safe to delete while no writer of `path` is alive."""
    path = Path(path)
    prefix, suffix = _temp_affixes(path)
    return sorted(path.parent.glob(f"{glob.escape(prefix)}*{suffix}"))


def _atomic(path: str | Path, write: Callable[[Any], None], mode: str) -> Path:
    """Write through a temporary file and `os.replace`; an `OSError` (a full disk, a missing
    permission) becomes one line naming `path`, and the previous file stays as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _temp_affixes(path)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        # mkstemp creates 0600; give the file the mode `open` would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise os_error(exc, path) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic(path, lambda f: f.write(text), "w")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data), "wb")


def dumps(data: Any, indent: int | None = None) -> str:
    """Strict JSON text: a non-finite float (NaN, inf) is written as null, never as the bare
    ``NaN`` that Python's json emits and every other JSON reader rejects."""
    return json.dumps(_finite(data), indent=indent, default=_jsonable, allow_nan=False)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, dumps(data, indent=2) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """`torch.save` into memory, then an atomic write: a failing disk then raises a plain
    `OSError` (torch's writer reports it as "unexpected pos ..."), turned into one line."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getbuffer())


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    """JSON fallback for dataclasses, paths and numpy/torch scalars."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return _finite(obj.item())
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def versions() -> dict[str, str]:
    """Versions of everything that can change a result, for the run record."""
    import numpy
    import torch

    from ._version import __version__

    out = {"blockswap": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": numpy.__version__, "platform": platform.platform()}
    vision = _torchvision_version()
    if vision is not None:
        out["torchvision"] = vision
    out["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    out["cpu"] = cpu_model()
    out["threads"] = str(torch.get_num_threads())
    return out


def _torchvision_version() -> str | None:
    """torchvision's ``__version__`` without importing it: ``import torchvision`` loads all its
    models, the detection stack too, which a classification run never needs."""
    loaded = sys.modules.get("torchvision")
    if loaded is not None:
        return loaded.__version__
    import importlib.util
    import re

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    try:  # the file holds ``__version__ = '0.29.1+cu130'`` (the wheel's metadata drops the suffix)
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        text = ""
    found = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.MULTILINE)
    if found is not None:
        return found.group(1)
    from importlib.metadata import version

    return version("torchvision")


def cpu_model() -> str:
    """The CPU's model name: kernels (and their float32 rounding) differ between CPUs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
