"""Atomic output files (written to a temporary sibling, then renamed, so no reader sees half a file) and
the one JSON reader with one-line errors, and the checks of what a JSON value read back is."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import EdgesegError


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file owner-only; give it the mode an ordinary open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))


def unique_name(stem: str, suffix: str, used: set[str]) -> str:
    """``stem + suffix``, or ``stem_1 + suffix``, ``stem_2 + suffix``, ... when taken; the name is added to ``used``
    (outputs of several inputs with the same file name in one folder)."""
    name, k = stem + suffix, 1
    while name in used:
        name, k = f"{stem}_{k}{suffix}", k + 1
    used.add(name)
    return name


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file (``what``: e.g. "bench", "val") or raise a one-line EdgesegError naming it."""
    p = Path(path)
    if not p.exists():
        raise EdgesegError(f"no such file (expected the {what} JSON)", p)
    if p.is_dir():
        raise EdgesegError(f"is a directory, expected the {what} JSON", p)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EdgesegError(f"not a text file (expected the {what} JSON)", p) from None
    except OSError as exc:
        raise EdgesegError(f"cannot read file ({exc.strerror or exc})", p) from None
    except json.JSONDecodeError as exc:
        raise EdgesegError(f"not valid JSON ({exc.msg} at line {exc.lineno})", p) from None


def is_count(value: Any) -> bool:
    """A count: an integer >= 0 (JSON's ``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_real(value: Any) -> bool:
    """A number, NaN included (JSON's ``true`` is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A number that is not NaN (JSON null and NaN both mean "not measured")."""
    return is_real(value) and not math.isnan(value)
