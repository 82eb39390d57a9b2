"""The local-threads engine: one reader thread per camera (source) -> N inference workers shared by every camera
(each its own ``Predictor``, i.e. its own backend session) -> each camera's frames handed back in its own order
(``StreamRunner``).

Memory stays flat (``lanes.py``): a bounded number of frames per camera is in flight, so a file's reader that is
faster than the workers waits (files lose no frame and keep their order). A live source (camera, URL) cannot
wait: it keeps its newest frames and drops (and counts) the stalest. Workers serve the cameras round robin, so one
camera's rate or stall never holds up another's. Files given together are read together up to ``max_files`` at
once; live sources all at once. Per-camera state that needs frame order (tracking, counting) runs on the consumer
side, one ``TrackSession`` per camera. Stopping early (a consumer that breaks, Ctrl-C) stops the readers (a source
waiting to reconnect is closed) and the workers; the frames already handed back stay handed back.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from ..errors import EdgesegError
from ..sources.base import CONNECTING, ENDED, LIVE, Source
from ..tracking import TrackingOptions, TrackSession
from .base import Predictor
from .frames import LATENCY_WINDOW, StreamFrame, StreamStats
from .lanes import DROPPED, FULL, Camera, Lane, Pipeline

__all__ = ["LATENCY_WINDOW", "Camera", "FrameStream", "StreamFrame", "StreamRunner", "StreamStats", "camera_name", "camera_names"]

_POLL_S = 0.05  # how often blocked threads look at the stop flags
_JOIN_S = 5.0
StateHandler = Callable[[StreamStats], None]


def camera_name(spec: str) -> str:
    """A short name for a source: a URL's last path part (or its host), a file's stem, ``cam0`` for camera 0,
    ``video0`` for /dev/video0, ``mipi0`` for mipi:0; letters, digits, ``-``, ``_`` and ``.`` only."""
    text = spec.rstrip("/")
    mipi = re.match(r"^mipi(?::(\d+))?(?:@|$)", text)
    if mipi:
        return f"mipi{mipi.group(1) or ''}"
    if "://" in text:
        rest = text.split("://", 1)[1].split("?", 1)[0]
        host, _, path = rest.partition("/")
        text = path.rsplit("/", 1)[-1] if path else host.rsplit("@", 1)[-1]
    elif text.isdigit():
        text = f"cam{text}"
    else:
        text = text.rsplit("/", 1)[-1]
        text = text.rsplit(".", 1)[0] if "." in text else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "camera"


def camera_names(cameras: Sequence[Camera]) -> list[str]:
    """The cameras' names: given ones as they are (a repeat is an error), derived ones made unique with -2, -3."""
    given = [c.name for c in cameras if c.name]
    if len(set(given)) != len(given):
        twice = sorted({n for n in given if given.count(n) > 1})
        raise EdgesegError(f"camera names must be unique; given twice: {', '.join(twice)}")
    used, names = set(given), []
    for c in cameras:
        name = c.name or camera_name(c.source.name)
        if not c.name:
            base, k = name, 2
            while name in used:
                name, k = f"{base}-{k}", k + 1
            used.add(name)
        names.append(name)
    return names


class StreamRunner:
    """Runs ``predictors`` (one per worker thread) over one source (``run``) or several at once (``run_all``); see
    the module docstring.

    ``live`` overrides the sources' own flag; ``capacity`` bounds each camera's frames in flight (default 2 per
    worker + 2); ``live_queue``: the frames a live camera keeps waiting for a worker (its newest); ``max_files``:
    files read at once; ``tracking`` tracks and counts each camera (``self.session`` for ``run``, ``self.sessions``
    by camera for ``run_all``)."""

    def __init__(
        self,
        predictors: Sequence[Predictor],
        *,
        live: bool | None = None,
        capacity: int | None = None,
        live_queue: int = 2,
        max_files: int = 4,
        tracking: TrackingOptions | None = None,
    ) -> None:
        if not predictors:
            raise EdgesegError("a stream needs at least one worker")
        if live_queue < 1 or max_files < 1:
            raise EdgesegError(f"live_queue and max_files must be >= 1, got {live_queue} and {max_files}")
        self.predictors = list(predictors)
        self.live = live
        self.capacity = capacity or 2 * len(self.predictors) + 2
        self.live_queue = live_queue
        self.max_files = max_files
        self.tracking = tracking
        self.stats = StreamStats()  # ``run``: the source's; ``run_all``: totals over the cameras
        self.cameras: dict[str, StreamStats] = {}
        self.sessions: dict[str, TrackSession] = {}
        self.failures: dict[str, BaseException] = {}  # cameras whose source stopped with an error (``run_all``)
        self._lanes: dict[str, Lane] = {}

    @property
    def session(self) -> TrackSession | None:
        """The tracking session of ``run``'s source (final counts, trails), when the run tracks."""
        return next(iter(self.sessions.values()), None) if len(self.sessions) == 1 else None

    def run(self, source: Source) -> Iterator[StreamFrame]:
        """Frames of ``source`` in order, with detections; ``self.stats`` is updated as they come. A source that
        fails mid-way raises its error after the frames read before it."""
        camera = Camera(source, name=source.name, live=self.live, tracking=self.tracking)
        yield from self._run([camera], stats=[self.stats], on_state=None)
        failure = self.failures.pop(source.name, None)
        if failure is not None:
            raise failure

    def run_all(
        self, cameras: Sequence[Camera | Source], *, on_state: StateHandler | None = None, stop: threading.Event | None = None
    ) -> Iterator[StreamFrame]:
        """Frames of every camera as they are ready, each camera's in its own order, ``frame.camera`` naming it.
        ``self.cameras[name]`` are each camera's stats, live while iterating; ``on_state(stats)`` is called on every
        state change (``connecting``, ``live``, ``reconnecting`` from the camera's reader thread, ``ended`` from the
        consumer's, after the camera's last frame). A camera whose source fails ends (``self.failures``) and the
        others go on. ``stop`` (set from any thread) ends the run as a consumer that stops reading would, even while
        no camera gives frames."""
        cams = [c if isinstance(c, Camera) else Camera(c, live=self.live, tracking=self.tracking) for c in cameras]
        self.stats = StreamStats()
        yield from self._run(cams, stats=[StreamStats() for _ in cams], on_state=on_state, stop=stop)

    def stop_camera(self, name: str) -> None:
        """Stop reading one camera of a ``run_all`` (its frames in flight are still handed back)."""
        lane = self._lanes.get(name)
        if lane is not None:
            lane.stop.set()
            lane.close_source()

    # --------------------------------------------------------------------------------------- the run

    def _run(
        self, cameras: list[Camera], *, stats: list[StreamStats], on_state: StateHandler | None, stop: threading.Event | None = None
    ) -> Iterator[StreamFrame]:
        names = camera_names(cameras)
        lanes = [Lane(c, name, capacity=self.capacity, live_queue=self.live_queue, stats=s) for c, name, s in zip(cameras, names, stats)]
        self._lanes = {lane.name: lane for lane in lanes}
        self.cameras = {lane.name: lane.stats for lane in lanes}
        self.sessions = {lane.name: lane.session for lane in lanes if lane.session is not None}
        self.failures = {}
        p = Pipeline(lanes, max_files=self.max_files)
        readers: list[threading.Thread] = []
        workers = [
            threading.Thread(target=self._work, args=(p, predictor), name=f"edgeseg-worker-{k}", daemon=True)
            for k, predictor in enumerate(self.predictors)
        ]
        single = lanes[0].stats is self.stats  # run(): the runner's stats are the source's (wall time adds up across runs)
        t0, wall_before = time.perf_counter(), self.stats.wall_s

        def start_admitted() -> None:
            with p.cond:
                admitted = p.admit()
            for lane in admitted:
                lane.t0 = time.perf_counter() - (wall_before if single else 0.0)
                lane.source.state_listener = self._listener(lane, on_state)
                if lane.live and on_state is not None:  # a camera is known (/health) while it connects, before any frame
                    on_state(lane.stats)
                t = threading.Thread(target=self._read, args=(p, lane), name=f"edgeseg-reader-{lane.name}", daemon=True)
                readers.append(t)
                t.start()

        start_admitted()
        for t in workers:
            t.start()
        try:
            for lane, frame in self._ordered(p, stop):
                if lane is None:  # a camera ended: the next file may start
                    start_admitted()
                    continue
                if lane.session is not None and frame.ok:
                    frame.tracking = lane.session.update(frame.detections, frame.index)
                    frame.detections = frame.tracking.detections
                now = time.perf_counter()
                lane.stats.wall_s = now - lane.t0  # fps is live while the run goes on
                if not single:
                    self.stats.wall_s = now - t0
                yield frame
        finally:
            p.stop.set()
            with p.cond:
                p.cond.notify_all()
                open_lanes = list(p.active)
            for lane in open_lanes:
                lane.close_source()  # a source waiting to reconnect returns at once
            for t in readers + workers:
                t.join(timeout=_JOIN_S)
            for lane in lanes:
                lane.source.state_listener = None
            if single:
                lanes[0].stats.wall_s = time.perf_counter() - lanes[0].t0 if lanes[0].t0 else lanes[0].stats.wall_s
            else:
                self.stats.wall_s = time.perf_counter() - t0

    def _listener(self, lane: Lane, on_state: StateHandler | None) -> Callable[[str, str], None]:
        def listen(state: str, detail: str = "") -> None:
            if lane.set_state(state, detail) and on_state is not None:
                on_state(lane.stats)

        return listen

    # --------------------------------------------------------------------------------------- threads

    def _read(self, p: Pipeline, lane: Lane) -> None:
        seq, last_kept_s = 0, None
        try:
            for item in lane.source:
                if p.stop.is_set() or lane.stop.is_set():
                    break
                if lane.stats.state == CONNECTING and lane.source.state_listener is not None:
                    lane.source.state_listener(LIVE, "")  # a source that does not report its own states
                if lane.min_interval_s and item.time_s is not None:
                    # over the camera's fps cap; a clock that went back (a stream that reconnected) starts again
                    if last_kept_s is not None and 0 <= item.time_s - last_kept_s < lane.min_interval_s - 1e-6:
                        continue
                    last_kept_s = item.time_s
                now = time.perf_counter_ns()
                with p.cond:
                    while (outcome := p.offer(lane, seq, item, now)) == FULL:
                        if p.stop.is_set() or lane.stop.is_set():
                            return
                        p.cond.wait(_POLL_S)
                if outcome != DROPPED:
                    seq += 1
        except BaseException as exc:  # a source that fails mid-way (a stream that stays down): surfaced in order
            lane.failure = exc
        finally:
            with p.cond:
                lane.total = seq
                p.cond.notify_all()

    def _work(self, p: Pipeline, predictor: Predictor) -> None:
        while True:
            with p.cond:
                while not p.stop.is_set() and not p.exhausted and (taken := p.take()) is None:
                    p.cond.wait(_POLL_S)
                if p.stop.is_set() or p.exhausted:
                    return
            lane, (seq, item, t_read) = taken
            frame = StreamFrame(item.index, item.name, item.image, None, item.error, item.time_s, camera=lane.name)
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
                lane.done[seq] = frame
                lane.working.discard(seq)
                p.cond.notify_all()

    def _ordered(self, p: Pipeline, stop: threading.Event | None) -> Iterator[tuple[Lane | None, StreamFrame | None]]:
        """(lane, frame) as frames come ready, round robin over the cameras, each in its own order; (None, None)
        after a camera ended (its ``ended`` state is reported then)."""
        turn = 0
        while True:
            ended: Lane | None = None
            frame: StreamFrame | None = None
            with p.cond:
                while frame is None and ended is None:
                    n = len(p.active)
                    for k in range(n):
                        lane = p.active[(turn + k) % n]
                        frame = lane.next_ready()
                        if frame is not None:
                            turn = (turn + k + 1) % n
                            p.cond.notify_all()  # a file lane's reader may go on
                            break
                        if lane.finished:
                            p.active.remove(lane)
                            ended = lane
                            break
                    if frame is None and ended is None:
                        if p.failure is not None:  # after the frames that were ready before it
                            raise p.failure
                        if p.exhausted or (stop is not None and stop.is_set()):
                            return
                        p.cond.wait(_POLL_S)
            if ended is not None:
                detail = ""
                if ended.failure is not None:
                    self.failures[ended.name] = ended.failure
                    detail = str(ended.failure)
                if ended.source.state_listener is not None:
                    ended.source.state_listener(ENDED, detail)
                yield None, None
                continue
            s = lane.stats
            if frame.ok:
                s.frames += 1
                s.latencies_ms.append(frame.latency_ms)
                s.ages_ms.append(frame.age_ms)
                s.last_frame_at = time.time()
            else:
                s.failed += 1
            if s is not self.stats:
                self.stats.frames += frame.ok
                self.stats.failed += not frame.ok
                self.stats.dropped = sum(la.stats.dropped for la in self._lanes.values())
            yield lane, frame


class FrameStream:
    """A run's frames with the runner's statistics (what ``Segmenter.stream`` returns): iterate it for the
    ``StreamFrame``s (one source's in order; several sources' each in its own order, ``frame.camera`` naming it);
    ``stats`` (a ``StreamStats``: the source's, or totals) is live while iterating and final after, ``cameras`` the
    per-camera stats. ``close()`` (or leaving a ``with`` block) stops the run's threads at once, where a loop that
    breaks leaves that to the garbage collector."""

    def __init__(self, runner: StreamRunner, source: Source | Sequence[Camera | Source]) -> None:
        self.runner = runner
        self._frames = runner.run_all(source) if isinstance(source, Sequence) else runner.run(source)

    @property
    def stats(self) -> StreamStats:
        return self.runner.stats

    @property
    def cameras(self) -> dict[str, StreamStats]:
        """Each camera's statistics, by name."""
        return self.runner.cameras

    @property
    def session(self) -> TrackSession | None:
        """The tracking session (final counts, trails) of a one-source run that tracks."""
        return self.runner.session

    @property
    def sessions(self) -> dict[str, TrackSession]:
        """Each camera's tracking session, by name, when the run tracks."""
        return self.runner.sessions

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
