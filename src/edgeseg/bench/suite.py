"""``run_bench``: every model on the same images, side by side; the machine and settings recorded."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends import BoardOptions, read_model_info
from ..decode import DecodeOptions
from ..errors import EdgesegError
from ..fileio import write_json_atomic
from ..machine import helper_threads, loadavg, machine_info
from ..predict import Segmenter
from ..progress import progress
from .compare import compare_decoders
from .measure import load_bench_images, stage_latency, throughput_frames, throughput_in_turns
from .result import THREAD_MODES, BenchResult, BenchSettings, ModelBench
from .stats import onnx_model_stats
from .stream import StreamBenchConfig, read_clip, stream_bench


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how. ``threads``: thread counts for throughput; ``warmup``: untimed images
    before each measurement; ``iters``: timed passes over the images; ``max_images``: 0 = all;
    ``compare_repeats``: decoder-compare runs per image; ``ultralytics``: include Ultralytics' post-processing;
    ``stream``: also run the stream benchmark on a clip (``iters`` passes over it, ``warmup`` frames per session);
    ``board``: how .bin models run on the RDK board (runtime, BPU core, priority)."""

    models: tuple[str | os.PathLike, ...]
    sources: tuple[str | os.PathLike, ...]
    threads: tuple[int, ...] = (1, 2)
    warmup: int = 3
    iters: int = 1
    max_images: int = 0
    compare_repeats: int = 3
    options: DecodeOptions = field(default_factory=DecodeOptions)
    ultralytics: bool = True
    stream: StreamBenchConfig | None = None
    board: BoardOptions | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise EdgesegError("no model given")
        if self.warmup < 0 or self.iters < 1 or self.compare_repeats < 1:
            raise EdgesegError("warmup must be >= 0, iters and compare repeats >= 1")
        if not self.threads or any(int(n) < 1 for n in self.threads):
            raise EdgesegError(f"threads must be positive integers, got {list(self.threads)}")
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "threads", tuple(sorted({int(n) for n in self.threads})))


def run_bench(config: BenchConfig, *, json_path: str | os.PathLike | None = None, show_progress: bool = True) -> BenchResult:
    """Benchmark every model on the same images; returns (and optionally writes) the results."""
    models, options = config.models, config.options
    infos = [read_model_info(m) for m in models]  # fail fast, one line, before any long work
    images = load_bench_images(config.sources, max_images=config.max_images)
    clip = read_clip(config.stream.clip) if config.stream is not None else None
    machine = machine_info()
    settings = BenchSettings(
        images=len(images),
        image_sources=[os.fspath(s) for s in config.sources],
        warmup=config.warmup,
        iters=config.iters,
        threads=list(config.threads),
        conf=options.conf,
        iou=options.iou,
        max_det=options.max_det,
    )
    with helper_threads(1) as pinned:
        settings.helper_threads = pinned
        bar = progress(
            desc="bench latency (models interleaved)", total=config.iters * len(images) * len(models), enabled=show_progress, leave=False
        )

        def segmenter_of(model: str | os.PathLike, threads: int) -> Segmenter:
            return Segmenter(model, options=options, threads=threads, board=config.board)

        segmenters = [segmenter_of(model, 1) for model in models]
        latencies = stage_latency(segmenters, images, warmup=config.warmup, iters=config.iters, bar=bar)
        bar.close()
        del segmenters
        frames = sum(throughput_frames(len(images), config.iters, n) for n in config.threads) * len(THREAD_MODES) * len(models)
        bar = progress(desc="bench throughput (models taking turns)", total=frames, enabled=show_progress, leave=False)
        throughputs = throughput_in_turns(
            models, images, threads=config.threads, warmup=config.warmup, iters=config.iters, segmenter_of=segmenter_of, bar=bar
        )
        bar.close()
        entries = []
        for model, info, (latency, objects), (ips, tp_latency) in zip(models, infos, latencies, throughputs):
            stats = onnx_model_stats(model)
            entries.append(
                ModelBench(
                    model=os.fspath(model),
                    name=Path(model).name,
                    source=info.source,
                    imgsz=info.imgsz,
                    classes=info.num_classes,
                    params=stats.params,
                    int8=stats.int8,
                    size_mb=stats.size_mb,
                    objects_mean=round(float(np.mean(objects)), 2),
                    latency_ms=latency,
                    throughput_ips=ips,
                    throughput_latency_p50_ms=tp_latency,
                )
            )
        compare = compare_decoders(
            models[0], images, repeats=config.compare_repeats, options=options, ultralytics=config.ultralytics, show_progress=show_progress
        )
        stream = None
        if clip is not None:
            stream = stream_bench(
                models,
                clip,
                workers=config.stream.workers,
                options=options,
                warmup=config.warmup,
                passes=config.iters,
                show_progress=show_progress,
            )
    machine.loadavg_end = loadavg()
    result = BenchResult(machine=machine, settings=settings, models=entries, decode_compare=compare, stream=stream)
    if json_path is not None:
        write_json_atomic(json_path, result.to_dict())
    return result
