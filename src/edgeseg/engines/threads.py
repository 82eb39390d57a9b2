"""The local-threads engine: a reader thread -> N inference workers (each its own ``Predictor``, i.e. its own
backend session) -> results handed back in source order (``StreamRunner``).

Memory stays flat: at most ``capacity`` frames are in flight (queued, in a worker, or finished and
waiting for their turn), so a reader that is faster than the workers waits (file sources lose no frame
and keep their order). A live source (camera, URL) cannot wait: when the pipeline is full, the oldest
frame not yet started is dropped in favour of the new one (or the new one, when every frame in flight is
already being worked on), and the drops are counted. Stopping early (a consumer that breaks, Ctrl-C)
stops the reader and the workers; the frames already handed back stay handed back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import EdgesegError
from ..results import Detections
from ..sources.base import Source, SourceItem
from ..tracking import TrackedFrame, TrackingOptions, TrackSession
from .base import Predictor

_POLL_S = 0.05  # how often blocked threads look at the stop flag


@dataclass
class StreamFrame:
    """One frame (or image) of a source with its detections, or the one-line reason it has none.
    ``latency_ms``: the time a worker spent on it (preprocess to masks); ``age_ms``: from the moment it
    was read to the moment its detections were ready (queueing included: what a live view lags by).
    ``tracking``: what tracking added (events, running counts, trails), when the run tracks; then
    ``detections`` are the tracked ones, with ``track_ids``."""

    index: int
    source: str
    image: np.ndarray | None
    detections: Detections | None
    error: str | None = None
    time_s: float | None = None
    latency_ms: float | None = None
    age_ms: float | None = None
    tracking: TrackedFrame | None = None
    camera: str = ""  # the name of the camera (source) the frame came from: unique within a run

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class StreamStats:
    """What a run did: frames with detections, frames that failed, live frames dropped, wall time, and per
    frame the worker latency and the age (read to ready)."""

    frames: int = 0
    failed: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    ages_ms: list[float] = field(default_factory=list, repr=False)
    camera: str = ""  # whose statistics these are (one camera's, in a run of several)
    state: str = "connecting"  # one of sources.base.SOURCE_STATES
    state_detail: str = ""  # the one line that came with the last state change
    reconnects: int = 0  # times the source came back after it had stopped
    last_frame_at: float | None = None  # time.time() when its last frame was handed back

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def percentiles(self, values: Sequence[float]) -> tuple[float, float] | None:
        """(p50, p99) of ``values`` (``latencies_ms`` or ``ages_ms``), None when empty."""
        return (float(np.percentile(values, 50)), float(np.percentile(values, 99))) if values else None

    def summary(self) -> str:
        text = f"{self.frames} frame(s), {self.failed} failed, {self.dropped} dropped, {self.fps:.2f} frames/s"
        for label, values in (("latency", self.latencies_ms), ("age", self.ages_ms)):
            p = self.percentiles(values)
            if p is not None:
                text += f", {label} p50 {p[0]:.1f} ms / p99 {p[1]:.1f} ms"
        return text


class _Pipeline:
    """The shared state of one run; every field below ``cond`` is guarded by it."""

    def __init__(self, capacity: int) -> None:
        self.cond = threading.Condition()
        self.slots = threading.Semaphore(capacity)
        self.stop = threading.Event()
        self.queue: deque[tuple[int, SourceItem, int]] = deque()  # (seq, item, read time ns) not yet started
        self.done: dict[int, StreamFrame] = {}
        self.skipped: set[int] = set()  # sequence numbers dropped from the queue (live sources)
        self.total: int | None = None  # sequence numbers handed out, once the reader has finished
        self.failure: BaseException | None = None


class StreamRunner:
    """Runs ``predictors`` (one per worker thread) over a source; see the module docstring.

    ``live`` overrides the source's own flag; ``capacity`` bounds the frames in flight (default
    2 per worker + 2); ``tracking`` tracks and counts the frames of each run (``self.session``)."""

    def __init__(
        self,
        predictors: Sequence[Predictor],
        *,
        live: bool | None = None,
        capacity: int | None = None,
        tracking: TrackingOptions | None = None,
    ) -> None:
        if not predictors:
            raise EdgesegError("a stream needs at least one worker")
        self.predictors = list(predictors)
        self.live = live
        self.capacity = capacity or 2 * len(self.predictors) + 2
        self.stats = StreamStats()
        self.tracking = tracking
        self.session: TrackSession | None = None

    def run(self, source: Source) -> Iterator[StreamFrame]:
        """Frames of ``source`` in order, with detections; ``self.stats`` is updated as they come."""
        live = source.live if self.live is None else self.live
        p = _Pipeline(self.capacity)
        threads = [threading.Thread(target=self._read, args=(p, source, live), name="edgeseg-reader", daemon=True)]
        threads += [
            threading.Thread(target=self._work, args=(p, predictor), name=f"edgeseg-worker-{k}", daemon=True)
            for k, predictor in enumerate(self.predictors)
        ]
        t0, wall_before = time.perf_counter(), self.stats.wall_s
        if self.tracking is not None:
            self.session = TrackSession(self.tracking, name=source.name)
        for t in threads:
            t.start()
        try:
            for frame in self._ordered(p):
                if self.session is not None and frame.ok:
                    frame.tracking = self.session.update(frame.detections, frame.index)
                    frame.detections = frame.tracking.detections
                self.stats.wall_s = wall_before + time.perf_counter() - t0  # fps is live while the run goes on
                yield frame
        finally:
            p.stop.set()
            with p.cond:
                p.cond.notify_all()
            for t in threads:
                t.join(timeout=5)
            self.stats.wall_s = wall_before + time.perf_counter() - t0

    # --------------------------------------------------------------------------------------- threads

    def _read(self, p: _Pipeline, source: Source, live: bool) -> None:
        seq = 0
        try:
            for item in source:
                if p.stop.is_set():
                    break
                now = time.perf_counter_ns()
                if live and not p.slots.acquire(blocking=False):
                    with p.cond:
                        self.stats.dropped += 1
                        if not p.queue:  # every frame in flight is being worked on: drop this one
                            continue
                        old_seq, _, _ = p.queue.popleft()  # drop the stalest frame; the new one takes its slot
                        p.skipped.add(old_seq)
                elif not live:
                    while not p.slots.acquire(timeout=_POLL_S):
                        if p.stop.is_set():
                            return
                with p.cond:
                    p.queue.append((seq, item, now))
                    p.cond.notify_all()
                seq += 1
        except BaseException as exc:  # a source that fails mid-way (a stream that stays down): surfaced in order
            with p.cond:
                p.failure = exc
        finally:
            with p.cond:
                p.total = seq
                p.cond.notify_all()

    def _work(self, p: _Pipeline, predictor: Predictor) -> None:
        while True:
            with p.cond:
                while not p.queue and p.total is None and not p.stop.is_set():
                    p.cond.wait(_POLL_S)
                if p.stop.is_set() or not p.queue:
                    if p.stop.is_set() or p.total is not None:
                        return
                    continue
                seq, item, t_read = p.queue.popleft()
            frame = StreamFrame(item.index, item.name, item.image, None, item.error, item.time_s)
            t_start = time.perf_counter_ns()
            if item.ok:
                try:
                    frame.detections = predictor(item.image)
                except EdgesegError as exc:
                    frame.error = str(exc)
                except BaseException as exc:  # a bug or a runtime failure: stop the run, report it in order
                    with p.cond:
                        p.failure = exc
                        p.stop.set()
                        p.cond.notify_all()
                    return
                t_end = time.perf_counter_ns()
                frame.latency_ms, frame.age_ms = (t_end - t_start) / 1e6, (t_end - t_read) / 1e6
            with p.cond:
                p.done[seq] = frame
                p.cond.notify_all()

    def _ordered(self, p: _Pipeline) -> Iterator[StreamFrame]:
        next_seq = 0
        while True:
            with p.cond:
                while True:
                    while next_seq in p.skipped:
                        p.skipped.discard(next_seq)
                        next_seq += 1
                    if next_seq in p.done or (p.total is not None and next_seq >= p.total):
                        break
                    if p.failure is not None and p.stop.is_set():
                        break
                    p.cond.wait(_POLL_S)
                frame = p.done.pop(next_seq, None)
            if frame is None:
                if p.failure is not None:
                    raise p.failure
                return
            next_seq += 1
            p.slots.release()
            if frame.ok:
                self.stats.frames += 1
                self.stats.latencies_ms.append(frame.latency_ms)
                self.stats.ages_ms.append(frame.age_ms)
            else:
                self.stats.failed += 1
            yield frame


class FrameStream:
    """``runner.run(source)`` with the runner's statistics (what ``Segmenter.stream`` returns): iterate it for
    the ``StreamFrame``s, in order; ``stats`` (a ``StreamStats``) is live while iterating and final after.
    ``close()`` (or leaving a ``with`` block) stops the run's threads at once, where a loop that breaks leaves
    that to the garbage collector."""

    def __init__(self, runner: StreamRunner, source: Source) -> None:
        self.runner = runner
        self._frames = runner.run(source)

    @property
    def stats(self) -> StreamStats:
        return self.runner.stats

    @property
    def session(self) -> TrackSession | None:
        """The tracking session (final counts, trails), when the run tracks."""
        return self.runner.session

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> StreamFrame:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
