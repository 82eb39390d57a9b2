"""Everything that consumes a run's frames, behind one protocol (``base.Output``): see ``base.py``."""

from __future__ import annotations

from .base import ON_FAILURE, CameraInfo, OnFailure, Output, OutputBase, RunInfo, Stamps
from .outbox import Outbox

__all__ = ["ON_FAILURE", "CameraInfo", "OnFailure", "Outbox", "Output", "OutputBase", "RunInfo", "Stamps"]
