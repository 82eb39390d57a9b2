"""The one progress bar every command shows on long work (tqdm on stderr, silent when not wanted)."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def progress(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    enabled: bool = True,
    unit: str = "img",
    leave: bool = True,
):
    """The one progress bar (tqdm on stderr); ``enabled=False`` makes it silent."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=leave)
