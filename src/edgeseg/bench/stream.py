"""``edgeseg bench --video``: frames/s of one clip through the sequential loop, the pipelined runner with N
workers and N bare inference sessions, measured side by side.

A deployed frame costs reading (video decoding), the pipeline (preprocess, inference, decode, masks) and
the output (drawing the overlay, encoding the annotated video). The sequential loop does all of it on one
thread; the runner (``stream.StreamRunner``) reads on its reader thread, infers on N workers and draws and
writes on the consuming thread; "bare" is N threads doing nothing but ``backend.run`` on pre-letterboxed
tensors, the ceiling the runner is held against. The loop and the runner both draw and write an annotated
video (into a temporary folder), so what the runner hides behind inference is measured, not assumed.

A shared machine drifts during a run, so no configuration runs after another: each reads its own copy
of the clip, and they take turns of ``STREAM_TURN_FRAMES`` frames, the order rotating from turn to turn.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..decode import DecodeOptions
from ..draw import draw_detections
from ..engines.threads import StreamRunner
from ..errors import EdgesegError
from ..outputs.video import VideoSink
from ..predict import Segmenter
from ..preprocess import preprocess
from ..progress import progress
from ..results import Detections
from ..sources import SourceItem, VideoSource, source_kind
from ..stages import DRAW, INFERENCE, READ, STAGES, STREAM_STAGES, TOTAL, WRITE
from .result import ModelStream, StreamBench, StreamRun
from .timing import StageStamps, percentiles

# Frames a configuration runs per turn: long enough that filling and draining the pipeline (a fraction of
# one frame per turn, paid by the runner and the bare threads alike) stays near 1 %, short enough that a
# 300-frame clip gives every configuration three turns spread over the run.
STREAM_TURN_FRAMES = 100
BARE_TENSORS = 8  # distinct frames the bare sessions cycle through (inference time does not depend on content)


@dataclass(frozen=True)
class StreamBenchConfig:
    """The clip (a video file: cameras and streams cannot be replayed for every configuration) and the
    runner's worker counts (bare inference is measured with the same thread counts)."""

    clip: str | os.PathLike
    workers: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        if not self.workers or any(int(n) < 1 for n in self.workers):
            raise EdgesegError(f"stream workers must be positive integers, got {list(self.workers)}")
        object.__setattr__(self, "workers", tuple(sorted({int(n) for n in self.workers})))


def detections_digest(digest: Any, det: Detections) -> None:
    """Feed one frame's detections (boxes, scores, classes, masks) into ``digest`` (a hashlib object):
    equal digests over a clip mean equal detections in every frame."""
    digest.update(np.int64(len(det)).tobytes())
    for array in (det.xyxy, det.scores, det.class_ids, det.mask_origins):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    for mask in det.masks or ():
        digest.update(np.asarray(mask.shape, np.int64).tobytes() + np.ascontiguousarray(mask).tobytes())


@dataclass
class ClipFacts:
    """The clip, read once up front: its frame count, size, frame rate and first frames (for bare inference)."""

    path: str
    frames: int
    size: tuple[int, int]
    fps: float | None
    first: list[np.ndarray]


def read_clip(path: str | os.PathLike) -> ClipFacts:
    spec = os.fspath(path)
    if source_kind(spec) in ("camera", "url"):
        raise EdgesegError("the stream benchmark needs a video file (a camera or stream cannot be replayed for every configuration)", spec)
    video = VideoSource(spec, live=False)
    frames, first = 0, []
    for item in video:
        frames += 1
        if len(first) < BARE_TENSORS:
            first.append(item.image)
    return ClipFacts(spec, frames, video.size, video.fps, first)


class _Chunk:
    """A ``Source`` of the next ``count`` frames of a configuration's own reading of the clip; it records
    how long each read took."""

    live = False

    def __init__(self, video: VideoSource, items: Iterator[SourceItem], count: int, read_ms: list[float]) -> None:
        self.name, self.fps, self.warnings = video.name, video.fps, video.warnings
        self.items, self.count, self.read_ms = items, count, read_ms

    def __iter__(self) -> Iterator[SourceItem]:
        for _ in range(self.count):
            t0 = time.perf_counter_ns()
            item = next(self.items, None)
            if item is None:
                return
            self.read_ms.append((time.perf_counter_ns() - t0) / 1e6)
            yield item


class _Clocked:
    """A worker's Segmenter that keeps each frame's stage times (through the Segmenter's clock hook)."""

    def __init__(self, segmenter: Segmenter, stages: list[dict[str, float]]) -> None:
        self.segmenter, self.stages = segmenter, stages

    def __call__(self, image: np.ndarray) -> Detections:
        stamps = StageStamps()
        det = self.segmenter(image, clock=stamps)
        self.stages.append(stamps.durations_ms())
        return det


@dataclass
class _Config:
    """One configuration of one model and what it measured so far."""

    mode: str
    workers: int
    segmenters: list[Segmenter]
    tensors: list[np.ndarray]
    seconds: float = 0.0
    frames: int = 0
    done: int = 0  # frames of the current pass
    stage_samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STREAM_STAGES})
    pipeline: list[dict[str, float]] = field(default_factory=list)  # per frame, from the clock
    latencies: list[float] = field(default_factory=list)
    sink: VideoSink | None = None
    digest: Any = field(default_factory=hashlib.sha1)
    objects: int = 0
    runner: StreamRunner | None = None
    video: VideoSource | None = None
    items: Iterator[SourceItem] | None = None

    def start_pass(self, clip: str) -> None:
        self.done = 0
        if self.mode != "bare":
            self.video = VideoSource(clip, live=False)
            self.items = iter(self.video)

    def output(self, image: np.ndarray, index: int, det: Detections) -> None:
        """Draw and write the annotated frame (timed), and add its detections to the digest."""
        t0 = time.perf_counter_ns()
        drawn = draw_detections(image, det)
        t1 = time.perf_counter_ns()
        self.sink.write(drawn, index)
        t2 = time.perf_counter_ns()
        self.stage_samples[DRAW].append((t1 - t0) / 1e6)
        self.stage_samples[WRITE].append((t2 - t1) / 1e6)
        detections_digest(self.digest, det)
        self.objects += len(det)


def _sequential_turn(c: _Config, chunk: _Chunk, bar: Any) -> int:
    seg, frames = c.segmenters[0], 0
    for item in chunk:
        stamps = StageStamps()
        det = seg(item.image, clock=stamps)
        c.pipeline.append(stamps.durations_ms())
        c.output(item.image, item.index, det)
        frames += 1
        bar.update(1)
    return frames


def _runner_turn(c: _Config, chunk: _Chunk, bar: Any) -> int:
    frames = 0
    for frame in c.runner.run(chunk):
        if not frame.ok:
            raise EdgesegError(f"frame {frame.index} failed: {frame.error}", chunk.name)
        c.output(frame.image, frame.index, frame.detections)
        frames += 1
        bar.update(1)
    return frames


def _bare_turn(c: _Config, count: int, bar: Any) -> int:
    """``count`` inferences shared by ``c.workers`` threads, each on its own session."""
    counter = itertools.count()
    errors: list[BaseException] = []

    def work(seg: Segmenter, times: list[float]) -> None:
        try:
            while (i := next(counter)) < count:
                t0 = time.perf_counter_ns()
                seg.backend.run(c.tensors[i % len(c.tensors)])
                times.append((time.perf_counter_ns() - t0) / 1e6)
        except BaseException as exc:  # surfaced in the measuring thread below
            errors.append(exc)

    per_thread: list[list[float]] = [[] for _ in range(c.workers)]
    threads = [threading.Thread(target=work, args=(s, t), daemon=True) for s, t in zip(c.segmenters, per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for times in per_thread:
        c.latencies.extend(times)
        c.stage_samples[INFERENCE].extend(times)
    bar.update(count)
    return count


def _turn(c: _Config, count: int, bar: Any) -> None:
    """The next ``count`` frames of ``c``, timed from the first read to the last frame written."""
    gc.collect()
    chunk = _Chunk(c.video, c.items, count, c.stage_samples[READ]) if c.mode != "bare" else None
    t0 = time.perf_counter()
    if c.mode == "sequential":
        frames = _sequential_turn(c, chunk, bar)
    elif c.mode == "runner":
        frames = _runner_turn(c, chunk, bar)
    else:
        frames = _bare_turn(c, count, bar)
    c.seconds += time.perf_counter() - t0
    if frames != count:  # a clip that decodes differently from one reading to the next
        raise EdgesegError(f"gave {c.done + frames} frames on a later reading, {c.done + count} the first time", c.video.name)
    c.done += frames
    c.frames += frames


def _configs(model: str | os.PathLike, clip: ClipFacts, workers: Sequence[int], options: DecodeOptions, warmup: int) -> list[_Config]:
    """The sequential loop, the runner and bare inference for every worker count, on a shared pool of
    one-thread sessions (only one configuration runs at a time)."""
    pool = [Segmenter(model, options=options, threads=1) for _ in range(max(workers))]
    for seg in pool:
        for i in range(max(warmup, 1)):
            seg(clip.first[i % len(clip.first)])
    tensors = [preprocess(image, pool[0].info.imgsz)[0] for image in clip.first]
    configs = [_Config("sequential", 1, pool[:1], tensors)]
    for n in workers:
        runner_config = _Config("runner", n, pool[:n], tensors)
        runner_config.runner = StreamRunner([_Clocked(s, runner_config.pipeline) for s in pool[:n]], live=False)
        configs.append(runner_config)
    configs += [_Config("bare", n, pool[:n], tensors) for n in workers]
    return configs


def _p50(values: Sequence[float]) -> float:
    return round(float(np.median(values)), 3)


def _result(c: _Config) -> StreamRun:
    for stage in STAGES:
        c.stage_samples[stage].extend(d[stage] for d in c.pipeline)
    latencies = c.latencies + [d[TOTAL] for d in c.pipeline]
    ages = c.runner.stats.ages_ms if c.runner is not None else None
    return StreamRun(
        mode=c.mode,
        workers=c.workers,
        frames=c.frames,
        seconds=round(c.seconds, 3),
        fps=round(c.frames / c.seconds, 3) if c.seconds > 0 else 0.0,
        latency_ms=percentiles(latencies),
        stages_ms={s: _p50(v) for s, v in c.stage_samples.items() if v},
        age_ms=percentiles(ages) if ages else None,
        objects=c.objects if c.mode != "bare" else None,
        detections_sha1=c.digest.hexdigest() if c.mode != "bare" else None,
    )


def _model_result(model: str | os.PathLike, configs: list[_Config]) -> ModelStream:
    runs = [_result(c) for c in configs]
    sequential = runs[0].fps
    bare = {r.workers: r.fps for r in runs if r.mode == "bare"}
    for r in runs[1:]:
        r.vs_sequential = round(r.fps / sequential, 3) if sequential else None
        if r.mode == "runner" and bare.get(r.workers):
            r.vs_bare = round(r.fps / bare[r.workers], 3)
    return ModelStream(model=os.fspath(model), name=Path(model).name, runs=runs)


def stream_bench(
    models: Sequence[str | os.PathLike],
    clip: ClipFacts,
    *,
    workers: Sequence[int],
    options: DecodeOptions,
    warmup: int,
    passes: int,
    show_progress: bool = True,
) -> StreamBench:
    """Every model's configurations on ``clip`` (``read_clip``), taking turns (see the module docstring);
    ``passes`` readings of the whole clip per configuration; ``warmup`` untimed frames per session."""
    per_model = [_configs(model, clip, workers, options, warmup) for model in models]
    configs = [c for cs in per_model for c in cs]
    bar = progress(
        desc="bench stream (configurations taking turns)",
        total=passes * clip.frames * len(configs),
        enabled=show_progress,
        unit="frame",
        leave=False,
    )
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-stream-") as tmp:
        for k, c in enumerate(configs):
            if c.mode != "bare":
                c.sink = VideoSink(Path(tmp) / f"{k}-{c.mode}-{c.workers}.mp4", clip.fps)
        turns = itertools.count()  # the order keeps rotating across passes
        try:
            for _ in range(passes):
                for c in configs:
                    c.start_pass(clip.path)
                while waiting := [c for c in configs if c.done < clip.frames]:
                    shift = next(turns) % len(waiting)
                    for c in waiting[shift:] + waiting[:shift]:
                        _turn(c, min(STREAM_TURN_FRAMES, clip.frames - c.done), bar)
        finally:
            bar.close()
            for c in configs:
                if c.sink is not None:
                    c.sink.close()
                c.items = c.video = None  # release the captures before the folder goes
    return StreamBench(
        clip=clip.path,
        frames=clip.frames,
        size=clip.size,
        fps=clip.fps,
        passes=passes,
        turn_frames=STREAM_TURN_FRAMES,
        workers=list(workers),
        models=[_model_result(m, cs) for m, cs in zip(models, per_model)],
    )
