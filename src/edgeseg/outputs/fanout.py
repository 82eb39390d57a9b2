"""A set of outputs driven together: the one place their failure rule is applied (``base.py``'s docstring).

An output that raises ``EdgesegError`` is closed and dropped from the set and its one line kept in ``problems``
(the run's end reports it); with ``on_failure="continue"`` the line is also logged at once on the ``edgeseg``
logger (a run of weeks should not keep it until the end), with ``on_failure="stop"`` the set reports that its
owner must stop (``stopped``: the camera, for a camera's own
files; the run, for a run-wide output). Other exceptions are bugs and propagate.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgesegError, Problem
from .base import Output, RunInfo

if TYPE_CHECKING:
    from ..engines.frames import StreamFrame, StreamStats

log = logging.getLogger("edgeseg")


class Fanout:
    """``outputs`` opened, fed and closed together. Thread-safe for ``on_state`` (reader threads) beside
    ``on_frame`` (the consumer's thread)."""

    def __init__(self, outputs: Sequence[Output] = ()) -> None:
        self.outputs = list(outputs)
        self.problems: list[Problem] = []  # outputs that failed, one line each
        self.files: list[Path] = []  # what the outputs finished, in order
        self.warnings: list[str] = []
        self.reports: list[str] = []
        self.stopped = False  # an output whose policy is "stop" failed
        self.closed = False
        self._active = list(outputs)
        self._lock = threading.Lock()

    def open(self, run: RunInfo) -> None:
        """Open every output before any frame; the first that cannot be opened closes those already open and its
        error is raised (the run does not start)."""
        opened = []
        for output in self.outputs:
            try:
                output.open(run)
            except BaseException:
                for done in opened:
                    with contextlib.suppress(EdgesegError):  # the open error is the one to report
                        done.close()
                self.closed = True
                raise
            opened.append(output)

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> bool:
        """Every active output gets the frame; False when one whose policy is "stop" has failed (now or before).
        The outputs after one that stops do not get the frame: it is not done, so no output holds it."""
        for output in self._snapshot():
            if self.stopped:
                break
            try:
                output.on_frame(frame, stats)
            except EdgesegError as exc:
                self._failed(output, exc)
        return not self.stopped

    def on_state(self, stats: StreamStats) -> None:
        for output in self._snapshot():
            try:
                output.on_state(stats)
            except EdgesegError as exc:
                self._failed(output, exc)

    def close(self) -> None:
        """Finalise every output still active (once); their files, warnings and end-of-run lines are kept."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            active, self._active = self._active, []
        for output in active:
            self._finish(output)

    def _snapshot(self) -> list[Output]:
        with self._lock:
            return list(self._active)

    def _failed(self, output: Output, exc: EdgesegError) -> None:
        with self._lock:
            if output not in self._active:
                return
            self._active.remove(output)
        where = exc.path or output.name
        if output.on_failure == "continue":  # the run may go on for weeks: say it now, not at its end
            log.error("%s: %s (the run goes on without it)", where, exc.problem)
        self.problems.append(Problem(str(where), exc.problem))
        if output.on_failure == "stop":
            self.stopped = True
        self._finish(output)

    def _finish(self, output: Output) -> None:
        try:
            self.files.extend(output.close())
        except EdgesegError as exc:
            self.problems.append(Problem(str(exc.path or output.name), exc.problem))
        self.warnings.extend(output.warnings)
        line = output.report()
        if line:
            self.reports.append(line)
