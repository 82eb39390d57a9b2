"""Prediction over command-line sources and deployments: images get overlays and JSON records; videos, cameras and
streams (every one of them at once, on the one pool of workers) an annotated video and JSON Lines each; bad items
are skipped and reported, and the good ones still finish. With tracking, each source is one sequence (the images
of a source in their sorted order; each camera its own tracker and counters): ids, trails and counts go into every
output, and each camera's final counts into ``save_counts``. A camera's state changes (connecting, live,
reconnecting, ended) are logged one line each, with its name, on the ``edgeseg`` logger."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from ..draw import annotate
from ..errors import EdgesegError, Problem
from ..fileio import unique_name, write_bytes_atomic, write_json_atomic
from ..outputs import CameraInfo, Output, OutputBase, RunInfo
from ..outputs.fanout import Fanout
from ..outputs.files import Rotation, check_writable
from ..outputs.jsonl import JsonlOutput
from ..outputs.video import VideoOutput
from ..progress import progress
from ..results import class_name
from ..sources import BoardInputs, RetryPolicy, Source, open_sources
from ..sources.base import ENDED
from ..tracking import TrackingOptions
from .base import Predictor
from .summary import PredictSummary
from .threads import Camera, StreamFrame, StreamRunner, StreamStats, camera_names

log = logging.getLogger("edgeseg")


@dataclass(frozen=True)
class PredictOutputs:
    """Where results go: ``out_dir`` (image overlays), ``save_json`` (records of images), ``save_video``
    (annotated video) and ``save_jsonl`` (one line per frame) of videos, cameras and streams. With several
    streams, their files are numbered: ``out-1.mp4``, ``out-2.mp4``. ``save_counts``: the final line and zone
    counts of every source (JSON), when tracking."""

    out_dir: str | os.PathLike | None = None
    save_json: str | os.PathLike | None = None
    save_video: str | os.PathLike | None = None
    save_jsonl: str | os.PathLike | None = None
    save_counts: str | os.PathLike | None = None


@dataclass(frozen=True)
class StreamOptions:
    """``workers`` inference threads (each its own session) shared by every source; ``live`` forces (True) or
    forbids (False) dropping stale frames (default: cameras and URLs drop, files don't); every ``vid_stride``-th
    frame; ``hw_decode``: the RDK board's hardware decoder for videos and streams (None: where it is available);
    ``tracking``: track (and count) every source, in frame order; ``retry``: how live sources (re)connect."""

    workers: int = 1
    live: bool | None = None
    vid_stride: int = 1
    hw_decode: bool | None = None
    tracking: TrackingOptions | None = None
    retry: RetryPolicy = RetryPolicy()
    max_files: int = 4  # video files read at once (the others wait their turn): a hundred files never open a hundred decoders


@dataclass(frozen=True)
class CameraPlan:
    """One camera of a deployment (``edgeseg run``): what ``predict`` takes as a SOURCE, its name (default: derived
    from the source), live policy, stride, frames/s cap, tracking (its own lines and zones) and its own outputs,
    rotated by size or age when ``rotation`` is given."""

    source: str | Source  # a Source object (a camera of your own) is taken as it is
    name: str | None = None
    live: bool | None = None
    vid_stride: int = 1
    fps_cap: float | None = None
    tracking: TrackingOptions | None = None
    save_video: Path | None = None
    save_jsonl: Path | None = None
    save_counts: Path | None = None
    rotation: Rotation | None = None


@dataclass
class _CameraRun:
    """A camera with its opened source and its own outputs (video, JSON Lines)."""

    source: Source
    plan: CameraPlan
    name: str = ""
    outputs: Fanout = field(default_factory=Fanout, repr=False)
    ended: bool = False

    def info(self) -> CameraInfo:
        tracking = self.plan.tracking
        return CameraInfo(
            name=self.name,
            source=self.source.name,
            live=bool(self.source.live if self.plan.live is None else self.plan.live),
            lines=tuple(g.name for g in tracking.lines) if tracking is not None else (),
            zones=tuple(g.name for g in tracking.zones) if tracking is not None else (),
        )

    def own_outputs(self) -> Fanout:
        """The camera's files as outputs (created now: their paths were checked before the run)."""
        plan, outputs = self.plan, []
        if plan.save_video is not None:
            outputs.append(VideoOutput(plan.save_video, fps=lambda: self.source.fps, rotation=plan.rotation))
        if plan.save_jsonl is not None:
            outputs.append(JsonlOutput(plan.save_jsonl, camera=self.name, rotation=plan.rotation))
        return Fanout(outputs)


def _numbered(path: str | os.PathLike | None, k: int, count: int) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if count == 1 else p.with_name(f"{p.stem}-{k}{p.suffix}")


class _ImageOutputs(OutputBase):
    """Overlays in a directory and the JSON records of every image."""

    def __init__(self, outputs: PredictOutputs, summary: PredictSummary) -> None:
        super().__init__(name=str(outputs.out_dir or "image records"), on_failure="stop")
        self.out = Path(outputs.out_dir) if outputs.out_dir is not None else None
        self.summary = summary
        self.used: set[str] = set()

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        if not frame.ok:
            return
        self.summary.records.extend(frame.detections.to_records(frame.source))
        if self.out is not None:
            ok, buf = cv2.imencode(".jpg", annotate(frame.image, frame.detections, frame.tracking))
            if ok:
                path = self.out / unique_name(Path(frame.source).stem, ".jpg", self.used)
                try:
                    self.summary.overlays.append(write_bytes_atomic(path, buf.tobytes()))
                except OSError as exc:
                    raise EdgesegError(f"cannot write the overlay ({exc.strerror or exc})", path) from None


def _class_names(predictor: Predictor) -> tuple[str, ...]:
    names = predictor.info.names
    return tuple(class_name(names, k) for k in range(max(names, default=-1) + 1))


def _open_run_outputs(run_outputs: Sequence[Output], infos: Sequence[CameraInfo], predictor: Predictor) -> Fanout:
    """The run-wide outputs opened before any work (a broker that refuses, a bag that exists: one line, no run)."""
    shared = Fanout(run_outputs)
    shared.open(RunInfo(cameras=tuple(infos), class_names=_class_names(predictor)))
    return shared


def _close_outputs(outputs: Fanout, summary: PredictSummary) -> None:
    """Finalise a set of outputs (closing twice is nothing) and keep in ``summary`` what they say: problems, files,
    warnings, end-of-run lines. Called once per set: at the end of its camera, its images or the run."""
    outputs.close()
    summary.incomplete.extend(outputs.problems)
    summary.outputs.extend(outputs.files)
    summary.warnings.extend(outputs.warnings)
    summary.reports.extend(outputs.reports)


def predict_sources(
    predictor: Predictor,
    sources: Iterable[str | os.PathLike],
    *,
    outputs: PredictOutputs = PredictOutputs(),
    stream: StreamOptions = StreamOptions(),
    show_progress: bool = True,
    run_outputs: Sequence[Output] = (),
) -> PredictSummary:
    """Predict every image, video, camera or stream in ``sources``; bad items are skipped and listed in
    ``summary.failed``. Images run first; then every video, camera and stream at once, on the one pool of
    ``stream.workers``. Output files are checked before any work; videos and JSON Lines are complete up to the
    last frame written even when interrupted (Ctrl-C). Every frame of every source also goes to each of
    ``run_outputs`` (the live view, a bag, ROS 2, MQTT), opened before any work and closed at the end."""
    board = BoardInputs(imgsz=predictor.info.imgsz, hw_decode=stream.hw_decode)
    opened = open_sources(sources, live=stream.live, vid_stride=stream.vid_stride, retry=stream.retry, board=board)
    summary = PredictSummary(failed=list(opened.problems))
    streams = [s for s in opened.sources if not s.stills]
    runs = [
        _CameraRun(
            s,
            CameraPlan(
                s.name,
                live=stream.live,
                tracking=stream.tracking,
                save_video=_numbered(outputs.save_video, k, len(streams)),
                save_jsonl=_numbered(outputs.save_jsonl, k, len(streams)),
            ),
        )
        for k, s in enumerate(streams, 1)
    ]
    _name_cameras(runs)
    _check_outputs(runs, outputs)
    if stream.tracking is not None:
        for single in (s for s in opened.sources if s.stills and s.length == 1):
            summary.warnings.append(
                f"--track: {single.name} is a single image, not a sequence: its objects get ids, but nothing moves and nothing is counted"
            )
    images = [CameraInfo(name=s.name, source=s.name) for s in opened.sources if s.stills]
    shared = _open_run_outputs(run_outputs, images + [run.info() for run in runs], predictor)
    workers = predictor.workers(stream.workers) if stream.workers > 1 else [predictor]
    try:
        for source in opened.sources:
            if source.stills and not shared.stopped:
                _run_images(source, workers, outputs, summary, show_progress, shared, tracking=stream.tracking)
        if runs and not shared.stopped:
            _run_cameras(runs, workers, stream, summary, show_progress=show_progress, shared=shared)
    finally:
        _close_outputs(shared, summary)
        for source in opened.sources:
            summary.warnings.extend(source.warnings)
        if outputs.save_json is not None:
            try:
                write_json_atomic(outputs.save_json, summary.records)
            except OSError as exc:
                summary.incomplete.append(Problem(str(outputs.save_json), f"cannot write the JSON ({exc.strerror or exc})"))
        if outputs.save_counts is not None and stream.tracking is not None:
            write_json_atomic(outputs.save_counts, summary.counts)
    return summary


def run_cameras(
    predictor: Predictor,
    *,
    cameras: Sequence[CameraPlan],
    stream: StreamOptions = StreamOptions(),
    run_outputs: Sequence[Output] = (),
    show_progress: bool = True,
    stop: threading.Event | None = None,
) -> PredictSummary:
    """Run a deployment's cameras at once on the one pool of ``stream.workers`` (``stream.retry`` for how live ones
    reconnect), each into its own outputs, every frame also into each of ``run_outputs``; a camera that cannot be
    opened is listed in ``summary.failed`` and the others run. Each camera's final counts go to its
    ``save_counts``. The run ends when every camera has ended, or when ``stop`` is set (from any thread: what
    SIGTERM is to the command line), outputs finalised."""
    board = BoardInputs(imgsz=predictor.info.imgsz, hw_decode=stream.hw_decode)
    summary = PredictSummary()
    runs = []
    for plan in cameras:
        opened = open_sources([plan.source], live=plan.live, vid_stride=plan.vid_stride, retry=stream.retry, board=board)
        summary.failed.extend(opened.problems)
        runs.extend(_CameraRun(source, plan) for source in opened.sources)
    _name_cameras(runs)
    _check_outputs(runs, PredictOutputs())
    shared = _open_run_outputs(run_outputs, [run.info() for run in runs], predictor)
    workers = predictor.workers(stream.workers) if stream.workers > 1 else [predictor]
    try:
        if runs:
            _run_cameras(runs, workers, stream, summary, show_progress=show_progress, shared=shared, stop=stop)
    finally:
        _close_outputs(shared, summary)
        for run in runs:
            summary.warnings.extend(run.source.warnings)
            if run.plan.save_counts is not None and run.name in summary.counts:
                write_json_atomic(run.plan.save_counts, summary.counts[run.name])
    return summary


def _name_cameras(runs: Sequence[_CameraRun]) -> None:
    """Each camera's unique name (given, or derived from its source), known before any output opens."""
    names = camera_names([Camera(r.source, name=r.plan.name) for r in runs])
    for run, name in zip(runs, names):
        run.name = name


def _check_outputs(runs: Sequence[_CameraRun], outputs: PredictOutputs) -> None:
    """Every output file can be written (one-line error before any work)."""
    for run in runs:
        for path, what in ((run.plan.save_video, "video"), (run.plan.save_jsonl, "JSON Lines"), (run.plan.save_counts, "counts JSON")):
            if path is not None:
                check_writable(path, what)
    for path, what in ((outputs.save_json, "JSON"), (outputs.save_counts, "counts JSON")):
        if path is not None:
            check_writable(path, what)


def _run_images(
    source: Source,
    workers: list[Predictor],
    outputs: PredictOutputs,
    summary: PredictSummary,
    show_progress: bool,
    shared: Fanout,
    *,
    tracking: TrackingOptions | None = None,
) -> None:
    own = Fanout([_ImageOutputs(outputs, summary)])
    runner = StreamRunner(workers, tracking=tracking)
    bar = progress(desc="predict", total=source.length, enabled=show_progress, unit="img")
    frames = runner.run(source)
    try:
        for frame in frames:
            bar.update(1)
            if not shared.on_frame(frame, runner.stats):
                break  # a run-wide output that stops the run failed
            if not frame.ok:
                summary.failed.append(Problem(frame.source, frame.error))
                continue
            if not own.on_frame(frame, runner.stats):  # first: an image whose output failed does not count as done
                break
            summary.processed += 1
            summary.detections += len(frame.detections)
            bar.set_postfix(objects=summary.detections, failed=len(summary.failed))
    except EdgesegError as exc:  # the source stopped mid-way: keep what was done
        summary.incomplete.append(Problem(exc.path or source.name, exc.problem))
    finally:
        frames.close()
        bar.close()
        _close_outputs(own, summary)
        if runner.session is not None:
            _keep_counts(summary, source.name, runner.session)


def _keep_counts(summary: PredictSummary, name: str, session) -> None:
    key = name if name not in summary.counts else f"{name}#{len(summary.counts) + 1}"
    summary.counts[key] = session.counts()
    summary.warnings.extend(session.warnings)


def _run_cameras(
    runs: list[_CameraRun],
    workers: list[Predictor],
    stream: StreamOptions,
    summary: PredictSummary,
    *,
    show_progress: bool,
    shared: Fanout,
    stop: threading.Event | None = None,
) -> None:
    """Every camera at once through the threads engine, each frame into the run-wide outputs and its camera's own;
    a camera that ends closes its own outputs then (a file's video is final while the others go on)."""
    cameras = [Camera(r.source, name=r.name, live=r.plan.live, tracking=r.plan.tracking, fps_cap=r.plan.fps_cap) for r in runs]
    by_name = {run.name: run for run in runs}
    for run in runs:
        run.outputs = run.own_outputs()
    runner = StreamRunner(workers, live=stream.live, max_files=stream.max_files)
    single = len(runs) == 1
    bar = progress(
        desc=f"predict {Path(runs[0].source.name).name}" if single else f"predict {len(runs)} cameras",
        total=runs[0].source.length if single else None,
        enabled=show_progress,
        unit="frame",
    )

    def on_state(stats: StreamStats) -> None:
        detail = f": {stats.state_detail}" if stats.state_detail else ""
        log.info("%s: %s%s", stats.camera, stats.state, detail)
        shared.on_state(stats)
        if stats.state == ENDED:  # on the consumer's thread, after the camera's last frame
            _end_camera(by_name[stats.camera], runner, summary)

    frames = runner.run_all(cameras, on_state=on_state, stop=stop)
    try:
        for frame in frames:
            run = by_name[frame.camera]
            bar.update(1)
            if not shared.on_frame(frame, runner.cameras[frame.camera]):
                break  # a run-wide output that stops the run failed
            if not frame.ok:
                summary.failed.append(Problem(f"{frame.source}#{frame.index}", frame.error))
                continue
            if run.outputs.closed:
                continue  # its output failed: the camera is being stopped, its last frames in flight go nowhere
            if not run.outputs.on_frame(frame, runner.cameras[frame.camera]):  # first: a frame whose output failed is not done
                run.outputs.close()  # this camera stops, the others go on
                runner.stop_camera(run.name)
                continue
            summary.processed += 1
            summary.detections += len(frame.detections)
            bar.set_postfix(objects=summary.detections, failed=len(summary.failed), dropped=runner.stats.dropped)
    finally:
        frames.close()
        bar.close()
        for run in runs:
            if not run.ended:  # the run stopped first (Ctrl-C, a failure)
                _end_camera(run, runner, summary)


def _end_camera(run: _CameraRun, runner: StreamRunner, summary: PredictSummary) -> None:
    """A camera is done (ended, or the run stopped): its outputs are finalised, its stats, counts and the reason
    it stopped (a source that failed) go into the summary."""
    run.ended = True
    _close_outputs(run.outputs, summary)
    summary.streams.append((run.name, runner.cameras.get(run.name, StreamStats(camera=run.name))))
    failure = runner.failures.get(run.name)
    if isinstance(failure, EdgesegError):
        summary.incomplete.append(Problem(failure.path or run.source.name, failure.problem))
    elif failure is not None:
        summary.incomplete.append(Problem(run.source.name, str(failure)))
    if run.source.failed:  # a board camera or decoder that stopped: the run is incomplete
        summary.incomplete.append(Problem(run.source.name, run.source.failed))
    session = runner.sessions.get(run.name)
    if session is not None:
        _keep_counts(summary, run.name, session)
