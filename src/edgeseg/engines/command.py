"""Prediction over command-line sources: images get overlays and JSON records, videos, cameras and
streams an annotated video and JSON Lines; everything runs through the pipelined runner, bad items are
skipped and reported, and the good ones still finish. With tracking, each source is one sequence (the
images of a source in their sorted order): ids, trails and counts go into every output, and the final
counts of each source into ``save_counts``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2

from ..draw import annotate
from ..errors import EdgesegError, Problem
from ..fileio import unique_name, write_bytes_atomic, write_json_atomic
from ..progress import progress
from ..sinks import JsonlSink, VideoSink, check_writable
from ..sources import BoardInputs, RetryPolicy, Source, open_sources
from ..tracking import TrackingOptions
from .base import Predictor
from .summary import PredictSummary
from .threads import StreamFrame, StreamRunner, StreamStats


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
    """``workers`` inference threads (each its own session); ``live`` forces (True) or forbids (False)
    dropping stale frames (default: cameras and URLs drop, files don't); every ``vid_stride``-th frame;
    ``hw_decode``: the RDK board's hardware decoder for videos and streams (None: where it is available);
    ``tracking``: track (and count) every source, in frame order."""

    workers: int = 1
    live: bool | None = None
    vid_stride: int = 1
    hw_decode: bool | None = None
    tracking: TrackingOptions | None = None
    retry: RetryPolicy = RetryPolicy()


class FrameObserver(Protocol):
    """Something that watches a run (the live view's server): ``on_frame`` gets every frame, ok or failed, with
    its camera's stats so far, on the thread that consumes the runner, so it must only keep a reference and
    return; ``on_state`` gets a camera's stats each time its ``state`` changes (from that camera's reader thread:
    keep it as short); ``close`` is called once when the run ends (done, failed or interrupted)."""

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None: ...

    def on_state(self, stats: StreamStats) -> None: ...

    def close(self) -> None: ...


def _numbered(path: str | os.PathLike | None, k: int, count: int) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if count == 1 else p.with_name(f"{p.stem}-{k}{p.suffix}")


class _ImageOutputs:
    """Overlays in a directory and the JSON records of every image."""

    def __init__(self, outputs: PredictOutputs, summary: PredictSummary) -> None:
        self.out = Path(outputs.out_dir) if outputs.out_dir is not None else None
        self.summary = summary
        self.used: set[str] = set()

    def write(self, frame: StreamFrame) -> None:
        self.summary.records.extend(frame.detections.to_records(frame.source))
        if self.out is not None:
            ok, buf = cv2.imencode(".jpg", annotate(frame.image, frame.detections, frame.tracking))
            if ok:
                path = self.out / unique_name(Path(frame.source).stem, ".jpg", self.used)
                try:
                    self.summary.overlays.append(write_bytes_atomic(path, buf.tobytes()))
                except OSError as exc:
                    raise EdgesegError(f"cannot write the overlay ({exc.strerror or exc})", path) from None

    def close(self) -> None:
        pass


class _StreamOutputs:
    """The annotated video and the JSON Lines of one stream."""

    def __init__(self, source: Source, video: Path | None, jsonl: Path | None, summary: PredictSummary) -> None:
        self.video = VideoSink(video, source.fps) if video is not None else None
        self.jsonl = JsonlSink(jsonl) if jsonl is not None else None
        self.summary = summary

    def write(self, frame: StreamFrame) -> None:
        if self.video is not None:
            self.video.write(annotate(frame.image, frame.detections, frame.tracking), frame.index)
        if self.jsonl is not None:
            self.jsonl.write(
                index=frame.index, time_s=frame.time_s, source=frame.source, detections=frame.detections, tracking=frame.tracking
            )

    def close(self) -> None:
        for sink in (self.video, self.jsonl):
            if sink is not None:
                try:
                    path = sink.close()
                except EdgesegError as exc:
                    self.summary.incomplete.append(Problem(str(sink.path), exc.problem))
                    continue
                if path is not None:
                    self.summary.outputs.append(path)
        if self.video is not None:
            self.summary.warnings.extend(self.video.warnings)


def predict_sources(
    predictor: Predictor,
    sources: Iterable[str | os.PathLike],
    *,
    outputs: PredictOutputs = PredictOutputs(),
    stream: StreamOptions = StreamOptions(),
    show_progress: bool = True,
    observers: Sequence[FrameObserver] = (),
) -> PredictSummary:
    """Predict every image, video, camera or stream in ``sources``; bad items are skipped and listed in
    ``summary.failed``. Output files are checked before any work; videos and JSON Lines are complete up to
    the last frame written even when interrupted (Ctrl-C). Every frame also goes to each of ``observers``."""
    board = BoardInputs(imgsz=predictor.info.imgsz, hw_decode=stream.hw_decode)
    opened = open_sources(sources, live=stream.live, vid_stride=stream.vid_stride, retry=stream.retry, board=board)
    summary = PredictSummary(failed=list(opened.problems))
    streams = [s for s in opened.sources if not s.stills]
    targets = {
        id(s): (_numbered(outputs.save_video, k, len(streams)), _numbered(outputs.save_jsonl, k, len(streams)))
        for k, s in enumerate(streams, 1)
    }
    for video, jsonl in targets.values():
        for path, what in ((video, "video"), (jsonl, "JSON Lines")):
            if path is not None:
                check_writable(path, what)
    if outputs.save_json is not None:
        check_writable(outputs.save_json, "JSON")
    if outputs.save_counts is not None:
        check_writable(outputs.save_counts, "counts JSON")
    if stream.tracking is not None:
        for single in (s for s in opened.sources if s.stills and s.length == 1):
            summary.warnings.append(
                f"--track: {single.name} is a single image, not a sequence: its objects get ids, but nothing moves and nothing is counted"
            )
    workers = predictor.workers(stream.workers) if stream.workers > 1 else [predictor]
    try:
        for source in opened.sources:
            _run_source(source, workers, outputs, targets.get(id(source)), summary, show_progress, observers, tracking=stream.tracking)
    finally:
        for observer in observers:
            observer.close()
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


def _run_source(
    source: Source,
    workers: list[Predictor],
    outputs: PredictOutputs,
    stream_paths: tuple[Path | None, Path | None] | None,
    summary: PredictSummary,
    show_progress: bool,
    observers: Sequence[FrameObserver],
    *,
    tracking: TrackingOptions | None = None,
) -> None:
    is_images = source.stills
    sink = _ImageOutputs(outputs, summary) if is_images else _StreamOutputs(source, *stream_paths, summary)
    runner = StreamRunner(workers, live=None if is_images else source.live, tracking=tracking)
    bar = progress(
        desc="predict" if is_images else f"predict {Path(source.name).name}",
        total=source.length,
        enabled=show_progress,
        unit="img" if is_images else "frame",
    )
    try:
        for frame in runner.run(source):
            bar.update(1)
            for observer in observers:
                observer.on_frame(frame, runner.stats)
            if not frame.ok:
                summary.failed.append(Problem(f"{frame.source}" if is_images else f"{frame.source}#{frame.index}", frame.error))
                continue
            sink.write(frame)  # first: a frame whose output failed does not count as done
            summary.processed += 1
            summary.detections += len(frame.detections)
            bar.set_postfix(objects=summary.detections, failed=len(summary.failed), dropped=runner.stats.dropped)
    except EdgesegError as exc:  # a stream that failed mid-way or an output that could not be written: keep what was done
        summary.incomplete.append(Problem(exc.path or source.name, exc.problem))
    finally:
        bar.close()
        sink.close()
        if not is_images:
            summary.streams.append((source.name, runner.stats))
        if source.failed:  # a board camera or decoder that stopped: the run is incomplete
            summary.incomplete.append(Problem(source.name, source.failed))
        if runner.session is not None:
            key = source.name if source.name not in summary.counts else f"{source.name}#{len(summary.counts) + 1}"
            summary.counts[key] = runner.session.counts()
            summary.warnings.extend(runner.session.warnings)
