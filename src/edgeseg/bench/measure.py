"""Latency per stage and throughput vs threads, with several models measured side by side.

A shared machine speeds up and slows down during a run (other jobs, boost clocks). So the models are
never measured one after the other: latency interleaves them image by image, throughput lets them take
turns in chunks of frames, and drift hits them all alike.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgesegError
from ..predict import Segmenter
from ..sources import ImageFiles, collect_images
from ..stages import TOTAL
from .result import LATENCY_KEYS, THREAD_MODES, Percentiles, ThreadSeries
from .timing import percentiles, timed_call

TURN_FRAMES = 16  # frames a model pushes per turn in the throughput measurement


@dataclass
class BenchImages:
    names: list[str]
    arrays: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays)


def load_bench_images(sources: Sequence[str | os.PathLike], *, max_images: int = 0) -> BenchImages:
    """Decode the benchmark images once, up front (JPEG decoding is not a pipeline stage here)."""
    found = collect_images(sources)
    if not found.paths:
        src, problem = found.problems[0] if found.problems else (", ".join(map(str, sources)), "no images")
        raise EdgesegError(problem, src)
    paths = found.paths[:max_images] if max_images > 0 else found.paths
    names, arrays = [], []
    for item in ImageFiles(paths):
        if not item.ok:
            print(f"edgeseg bench: skipping {item.name}: {item.error}", file=sys.stderr)
            continue
        names.append(Path(item.name).name)
        arrays.append(item.image)
    if not arrays:
        raise EdgesegError("none of the images could be read", sources[0])
    return BenchImages(names, arrays)


def stage_latency(
    segmenters: Sequence[Segmenter], images: BenchImages, *, warmup: int, iters: int, bar: Any
) -> list[tuple[dict[str, Percentiles], list[int]]]:
    """Per model: per-stage p50/p90/p99 over ``iters`` passes of every image, after ``warmup`` untimed
    images, and the object count per image (first pass).

    The models are interleaved image by image (the order rotating from image to image), so that a
    machine that speeds up or slows down during the run (shared cores, boost clocks) shifts all models
    alike and the ratios between them stay honest."""
    for segmenter in segmenters:
        for i in range(warmup):
            segmenter(images.arrays[i % len(images)])
    samples: list[dict[str, list[float]]] = [{s: [] for s in LATENCY_KEYS} for _ in segmenters]
    objects: list[list[int]] = [[] for _ in segmenters]
    gc.collect()
    step = 0
    for it in range(iters):
        for image in images.arrays:
            for k in range(len(segmenters)):
                m = (k + step) % len(segmenters)
                det, stamps = timed_call(segmenters[m], image)
                for stage, ms in stamps.durations_ms().items():
                    samples[m][stage].append(ms)
                if it == 0:
                    objects[m].append(len(det))
                bar.update(1)
            step += 1
    return [({s: percentiles(v) for s, v in per_model.items()}, objs) for per_model, objs in zip(samples, objects)]


def _run_frames(segmenters: Sequence[Segmenter], images: BenchImages, frames: int, bar: Any, offset: int = 0) -> tuple[float, list[float]]:
    """Push ``frames`` images (starting at image ``offset``) through ``len(segmenters)`` worker threads
    (one segmenter each); images/s and per-frame latencies."""
    counter = itertools.count()  # next() on itertools.count is atomic under the GIL
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(segmenter: Segmenter) -> None:
        local = []
        try:
            while (i := next(counter)) < frames:
                _, stamps = timed_call(segmenter, images.arrays[(offset + i) % len(images)])
                local.append(stamps.durations_ms()[TOTAL])
                bar.update(1)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in segmenters]
    gc.collect()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return frames / wall, latencies


def throughput_frames(images: int, iters: int, threads: int) -> int:
    """Frames each model pushes per thread count and mode: every image ``iters`` times, at least two per thread."""
    return max(iters * images, 2 * threads)


def throughput_in_turns(
    models: Sequence[str | os.PathLike],
    images: BenchImages,
    *,
    threads: Sequence[int],
    warmup: int,
    iters: int,
    segmenter_of: Callable[[str | os.PathLike, int], Segmenter],
    bar: Any,
) -> list[tuple[ThreadSeries, ThreadSeries]]:
    """Per model: images/s with N workers (each its own 1-thread session, made by ``segmenter_of(model,
    threads)``) and with one N-intra-op-thread session, and the p50 per-image latency under that load. A board
    model (.bin) has no intra-op threads: only workers, each its own BPU task stream, as a board is measured
    (1 thread: one frame at a time; N threads: N frames in flight).

    The models take turns in chunks of ``TURN_FRAMES`` frames until each has pushed its frames, so that
    drift of a shared machine hits them alike; images/s is a model's frames over the time of its own chunks."""
    results = [(ThreadSeries(), ThreadSeries()) for _ in models]
    for n in threads:
        frames = throughput_frames(len(images), iters, n)
        on_board = any(Path(m).suffix.lower() == ".bin" for m in models)
        for mode in THREAD_MODES[:1] if on_board else THREAD_MODES:
            sessions = [[segmenter_of(model, 1) for _ in range(n)] if mode == "workers" else [segmenter_of(model, n)] for model in models]
            for segmenters in sessions:
                for s in segmenters:
                    for i in range(max(warmup, 1)):
                        s(images.arrays[i % len(images)])
            done = [0] * len(models)
            seconds = [0.0] * len(models)
            latencies: list[list[float]] = [[] for _ in models]
            size = max(TURN_FRAMES, 2 * n)
            while min(done) < frames:
                for m, segmenters in enumerate(sessions):
                    todo = min(size, frames - done[m])
                    if todo <= 0:
                        continue
                    rate, lat = _run_frames(segmenters, images, todo, bar, offset=done[m])
                    seconds[m] += todo / rate
                    done[m] += todo
                    latencies[m].extend(lat)
            for m, (ips, lat) in enumerate(results):
                ips.mode(mode)[n] = round(frames / seconds[m], 3)
                lat.mode(mode)[n] = percentiles(latencies[m]).p50
            del sessions
    return results
