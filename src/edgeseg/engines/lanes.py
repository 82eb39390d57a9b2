"""The shared state of a run of the local-threads engine: one ``Lane`` per camera (source) and the ``Pipeline`` that
the readers, the workers and the ordered consumer share (``threads.StreamRunner`` drives them).

Scheduling is round robin over the lanes that have a frame waiting: a worker that comes free takes the oldest
waiting frame of the next such lane after the one it served last, so a camera with a fresh frame waits at most one
round (one frame of each other camera), whatever the others' frame rates, and a stalled camera, having nothing
waiting, takes no turn. Memory is bounded per lane: at most ``capacity`` frames of a lane are in flight (waiting,
in a worker, or done and waiting for their turn in the lane's order); a live lane also keeps at most ``live_queue``
frames waiting (the newest: an older one is dropped and counted), where a file lane's reader waits instead.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from ..sources.base import LIVE, Source, SourceItem
from ..tracking import TrackingOptions, TrackSession
from .frames import StreamFrame, StreamStats

QUEUED, DROPPED, FULL = "queued", "dropped", "full"  # what ``offer`` did with a frame


@dataclass(frozen=True)
class Camera:
    """A source as one camera of a run: its ``name`` (unique in the run; default: derived from the source),
    ``live`` (None: the source's own flag), ``tracking`` (a tracker, lines and zones of its own) and ``fps_cap``
    (frames/s taken at most, by the frames' timestamps; the others are passed over before inference and not
    counted as drops)."""

    source: Source
    name: str | None = None
    live: bool | None = None
    tracking: TrackingOptions | None = None
    fps_cap: float | None = None


class Lane:
    """One camera's share of a run. The fields from ``queue`` on are guarded by the pipeline's condition."""

    def __init__(self, camera: Camera, name: str, *, capacity: int, live_queue: int, stats: StreamStats) -> None:
        self.source = camera.source
        self.name = name
        self.live = camera.source.live if camera.live is None else camera.live
        self.capacity = capacity
        self.live_queue = live_queue
        self.min_interval_s = 1.0 / camera.fps_cap if camera.fps_cap else 0.0
        self.stats = stats
        stats.camera = name
        self.session = TrackSession(camera.tracking, name=name) if camera.tracking is not None else None
        self.stop = threading.Event()  # this camera alone (an output of its own that failed)
        self.was_live = False  # once live, a later ``live`` is a reconnection
        self.t0 = 0.0  # perf_counter when the lane was admitted; wall_s counts from it
        self.queue: deque[tuple[int, SourceItem, int]] = deque()  # (seq, item, read time ns), not yet started
        self.in_flight = 0  # frames waiting, in a worker, or done and not yet handed back
        self.done: dict[int, StreamFrame] = {}
        self.skipped: set[int] = set()  # sequence numbers dropped from the queue (live lanes)
        self.next_seq = 0  # the next sequence number to hand back
        self.issued = 0  # sequence numbers the reader has handed out so far
        self.working: set[int] = set()  # sequence numbers in a worker
        self.total: int | None = None  # sequence numbers handed out, once the reader has finished
        self.failure: BaseException | None = None  # why the source stopped, when it did not simply end

    def next_ready(self) -> StreamFrame | None:
        """The lane's next frame in order when it is done (dropped sequence numbers are passed over). A frame that
        is nowhere (not waiting, not in a worker, not done, not dropped) would be waited for forever: that is a
        bug, raised at once rather than hung on."""
        while self.next_seq in self.skipped:
            self.skipped.discard(self.next_seq)
            self.next_seq += 1
        frame = self.done.pop(self.next_seq, None)
        if frame is not None:
            self.next_seq += 1
            self.in_flight -= 1
        elif self.next_seq < self.issued and self.next_seq not in self.working and all(q[0] != self.next_seq for q in self.queue):
            raise RuntimeError(f"{self.name}: frame {self.next_seq} was neither handed back nor dropped")
        return frame

    @property
    def finished(self) -> bool:
        """The reader is done and every frame it handed out was handed back or dropped."""
        return self.total is not None and self.next_seq >= self.total

    def close_source(self) -> None:
        """Ask the source to stop (one waiting to reconnect returns at once). A source of the caller's own that
        follows the ``Source`` protocol without deriving from it may have no ``close``: it needs none."""
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def set_state(self, state: str, detail: str = "") -> bool:
        """Record a state; True when it changed (a new detail alone is kept, but is no change). Coming back to
        ``live`` after having been live counts a reconnection."""
        changed = self.stats.state != state
        self.stats.state, self.stats.state_detail = state, detail
        if state == LIVE:
            if changed and self.was_live:
                self.stats.reconnects += 1
            self.was_live = True
        return changed


class Pipeline:
    """What the threads of one run share: the lanes being read (``active``) and those waiting for a file slot
    (``pending``), the workers' round-robin turn, and the run's stop flag."""

    def __init__(self, lanes: list[Lane], *, max_files: int) -> None:
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.pending = list(lanes)
        self.active: list[Lane] = []
        self.max_files = max_files
        self.turn = 0
        self.failure: BaseException | None = None  # a worker's bug: the whole run stops

    def admit(self) -> list[Lane]:
        """Move pending lanes to the active ones: every live lane, files while fewer than ``max_files`` are open
        (under ``cond``). Returns those admitted, whose readers are to be started."""
        files_open = sum(not lane.live for lane in self.active)
        admitted = []
        for lane in list(self.pending):
            if lane.live or files_open < self.max_files:
                files_open += not lane.live
                self.pending.remove(lane)
                self.active.append(lane)
                admitted.append(lane)
        return admitted

    def take(self) -> tuple[Lane, tuple[int, SourceItem, int]] | None:
        """A waiting frame for a worker, round robin over the lanes that have one (under ``cond``)."""
        n = len(self.active)
        for k in range(n):
            lane = self.active[(self.turn + k) % n]
            if lane.queue:
                self.turn = (self.turn + k + 1) % n
                waiting = lane.queue.popleft()
                lane.working.add(waiting[0])
                return lane, waiting
        return None

    def offer(self, lane: Lane, seq: int, item: SourceItem, now_ns: int) -> str:
        """Queue ``item`` (under ``cond``): ``QUEUED``, ``DROPPED`` (a live lane past ``live_queue`` waiting frames or
        ``capacity`` in flight drops its oldest waiting frame and queues this one, or drops this one when none is
        waiting; ``seq`` is then not used) or ``FULL`` (a file lane at ``capacity``: its reader waits)."""
        if lane.live and (len(lane.queue) >= lane.live_queue or lane.in_flight >= lane.capacity):
            lane.stats.dropped += 1
            if not lane.queue:  # every frame in flight is in a worker or waits for its turn: drop this one
                return DROPPED
            old_seq, _, _ = lane.queue.popleft()  # the stalest waiting frame makes room for the new one
            lane.skipped.add(old_seq)
            lane.in_flight -= 1
        elif not lane.live and lane.in_flight >= lane.capacity:
            return FULL
        lane.queue.append((seq, item, now_ns))
        lane.in_flight += 1
        lane.issued = seq + 1
        self.cond.notify_all()
        return QUEUED

    @property
    def exhausted(self) -> bool:
        """No lane has anything left to read or to hand back."""
        return not self.pending and not self.active
