"""What a predict run reports, the command line's (``command.py``) and Ray's (``cluster.py``) alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem
from .threads import StreamStats


@dataclass
class PredictSummary:
    """What a predict run did: images and frames done, objects found, the items that failed (skipped, the run
    goes on), records and files written, per-stream statistics, warnings, and what made the run incomplete."""

    processed: int = 0
    detections: int = 0
    failed: list[Problem] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    streams: list[tuple[str, StreamStats]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)  # videos and JSON Lines written
    warnings: list[str] = field(default_factory=list)
    # (source or output file, problem): a stream that stopped for good or an output that could not be written;
    # the run is incomplete (the command exits non-zero), what was done before is kept
    incomplete: list[Problem] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # run-wide outputs' end-of-run lines (delivered, dropped)
    counts: dict[str, dict] = field(default_factory=dict)  # source -> final line and zone counts, when tracking
