#!/usr/bin/env python3
"""Video stream speed: the pipelined runner against the sequential loop and bare inference, float and INT8,
and the runner's memory over a long run.

    python benchmarks/stream_speed.py                  # 300-frame clip, workers 1,2,4, 3,000-frame soak
    python benchmarks/stream_speed.py --soak-frames 0  # the frames/s table only

1. Makes a 640x480 clip of ``--frames`` frames from coco128-seg images (each held for ``--hold`` frames).
2. Exports the shared checkpoint (``edgeseg export``) and quantizes it (``edgeseg quantize``); both are
   reused when already there.
3. ``edgeseg bench FLOAT INT8 --video CLIP``: the sequential loop, the runner with 1, 2, 4 workers and
   bare inference with as many threads, side by side; ``edgeseg report`` renders it; the stream table
   is printed.
4. Soak: the INT8 model through the runner (2 workers, drawing and writing an annotated video) for
   ``--soak-frames`` frames (the clip, looped), resident memory sampled at frame 100 and at the end.

Files go to ``runs/stream-speed`` (git-ignored). A benchmark, not a test: nothing here asserts a time; the
issue's acceptance numbers are printed beside the measured ones.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from edgeseg.bench import read_bench_result
from edgeseg.draw import draw_detections
from edgeseg.engines.threads import StreamRunner
from edgeseg.errors import EdgesegError
from edgeseg.fileio import write_json_atomic
from edgeseg.machine import helper_threads
from edgeseg.outputs.video import VideoSink
from edgeseg.predict import Segmenter
from edgeseg.sources import Source, SourceItem, VideoSource, image_directory

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
SIZE = (640, 480)
SOAK_BASELINE_FRAME = 100  # RSS growth is counted from here: arenas and the encoder have warmed up by then


def edgeseg(*args: str | Path) -> None:
    """Run the edgeseg CLI (its output goes straight to the terminal); stop the script when it fails."""
    command = [sys.executable, "-m", "edgeseg.cli", *map(str, args)]
    print(f"\n$ edgeseg {' '.join(map(str, args))}", flush=True)
    if subprocess.call(command, cwd=REPO) != 0:
        raise SystemExit(f"stream_speed: `edgeseg {args[0]}` failed")


def make_clip(path: Path, images: list[Path], frames: int, hold: int, fps: float = 30.0) -> Path:
    """``frames`` frames at ``SIZE``: the images in turn, each shown for ``hold`` frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    shown = (cv2.resize(cv2.imread(str(p)), SIZE, interpolation=cv2.INTER_AREA) for p in itertools.cycle(images))
    for image in shown:
        for _ in range(min(hold, frames)):
            writer.write(image)
        frames -= hold
        if frames <= 0:
            break
    writer.release()
    return path


def rss_mib() -> float:
    """Resident memory of this process (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return psutil.Process().memory_info().rss / 2**20


class LoopedClip(Source):
    """A ``Source``: the clip read again and again until ``frames`` frames were given (video decoding included)."""

    live = False

    def __init__(self, clip: Path, frames: int) -> None:
        self.clip, self.frames = clip, frames
        first = VideoSource(str(clip))
        self.name, self.fps, self.warnings = str(clip), first.fps, first.warnings

    def __iter__(self) -> Iterator[SourceItem]:
        given = 0
        while given < self.frames:
            for item in VideoSource(str(self.clip)):
                if given == self.frames:
                    return
                yield SourceItem(given, self.name, image=item.image, time_s=item.time_s)
                given += 1


def soak(model: Path, clip: Path, frames: int, workers: int) -> dict:
    """The runner over ``frames`` frames with the annotated video written; RSS at ``SOAK_BASELINE_FRAME`` and at the end."""
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="stream-soak-") as tmp, helper_threads(1):
        runner = StreamRunner(Segmenter(model, threads=1).workers(workers), live=False)
        sink = VideoSink(Path(tmp) / "soak.mp4", None)
        t0 = time.perf_counter()
        for n, frame in enumerate(runner.run(LoopedClip(clip, frames)), 1):
            sink.write(draw_detections(frame.image, frame.detections), frame.index)
            if n in (SOAK_BASELINE_FRAME, frames) or n % 500 == 0:
                samples.append((n, rss_mib()))
                print(f"  soak frame {n}: RSS {samples[-1][1]:.1f} MiB", flush=True)
        sink.close()
        seconds = time.perf_counter() - t0
    baseline = next(rss for n, rss in samples if n == SOAK_BASELINE_FRAME)
    return {
        "frames": runner.stats.frames,
        "workers": workers,
        "seconds": round(seconds, 1),
        "fps": round(runner.stats.fps, 2),
        "rss_at_100_mib": round(baseline, 1),
        "rss_end_mib": round(samples[-1][1], 1),
        "growth_mib": round(samples[-1][1] - baseline, 1),
        "samples": samples,
    }


def acceptance(bench_json: Path) -> list[str]:
    """The issue's acceptance numbers (INT8, 2 workers) beside the measured ones."""
    result = read_bench_result(bench_json)
    int8 = {m.model for m in result.models if m.int8}
    lines = []
    for m in result.stream.models if result.stream else ():
        runner = m.run("runner", 2)
        if m.model in int8 and runner is not None and runner.vs_sequential is not None and runner.vs_bare is not None:
            lines.append(
                f"{m.name}, runner with 2 workers: {runner.vs_sequential:.2f}x the sequential loop (wanted >= 1.8x), "
                f"{runner.vs_bare * 100:.0f} % of two bare sessions (wanted >= 90 %)"
            )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "runs" / "stream-speed"), help="work folder (default runs/stream-speed)")
    ap.add_argument("--checkpoint", default=str(SHARED / "models" / "yolov8n-seg-coco128.pt"))
    ap.add_argument("--images", default=str(SHARED / "datasets" / "coco128-seg" / "images" / "train2017"))
    ap.add_argument("--frames", type=int, default=300, help="frames of the clip (default 300)")
    ap.add_argument("--hold", type=int, default=3, help="frames each image is shown for (default 3)")
    ap.add_argument("--workers", default="1,2,4", help="runner workers / bare threads (default 1,2,4)")
    ap.add_argument("--soak-frames", type=int, default=3000, help="frames of the memory soak (0: skip; default 3000)")
    args = ap.parse_args()
    t_start, load_start = time.perf_counter(), os.getloadavg()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    try:
        images = image_directory(args.images, "clip")
    except EdgesegError as exc:
        raise SystemExit(f"stream_speed: {exc}") from None
    clip = make_clip(work / f"clip-{args.frames}.mp4", images, args.frames, args.hold)
    print(f"clip {clip}: {args.frames} frames {SIZE[0]}x{SIZE[1]}, each of {-(-args.frames // args.hold)} images held {args.hold} frames")
    float_model, int8_model = work / "yolov8n-seg-640.onnx", work / "yolov8n-seg-640-int8.onnx"
    if not float_model.is_file():
        edgeseg("export", args.checkpoint, "--imgsz", "640", "-o", float_model)
    if not int8_model.is_file():
        edgeseg("quantize", float_model, "--calib", args.images, "--bench", "0", "--report-images", "0", "-o", int8_model)
    bench_json = work / "bench.json"
    edgeseg(
        "bench",
        float_model,
        int8_model,
        "--images",
        args.images,
        "--max-images",
        "8",
        "--threads",
        "1,2",
        "--iters",
        "1",
        "--compare-repeats",
        "1",
        "--no-ultralytics",
        "--video",
        clip,
        "--stream-workers",
        args.workers,
        "--json",
        bench_json,
    )
    edgeseg("report", "--bench", bench_json, "-o", work / "report", "--title", "Video stream speed")
    report = (work / "report" / "report.md").read_text(encoding="utf-8")
    print("\n## Video stream" + report.split("## Video stream", 1)[1].split("\n## ", 1)[0])
    for line in acceptance(bench_json):
        print(f"acceptance: {line}")
    summary: dict = {"bench": str(bench_json), "report": str(work / "report" / "report.md")}
    if args.soak_frames > 0:
        print(f"\nsoak: {args.soak_frames} frames through the runner (INT8, 2 workers, annotated video written)", flush=True)
        summary["soak"] = soak(int8_model, clip, args.soak_frames, workers=2)
        s = summary["soak"]
        print(
            f"soak: {s['frames']} frames at {s['fps']} frames/s; RSS {s['rss_at_100_mib']} MiB at frame {SOAK_BASELINE_FRAME}, "
            f"{s['rss_end_mib']} MiB at the end: grew {s['growth_mib']} MiB (wanted < 20 MiB)"
        )
    minutes = round((time.perf_counter() - t_start) / 60, 1)
    summary |= {"load_start": list(load_start), "load_end": list(os.getloadavg()), "minutes": minutes}
    write_json_atomic(work / "stream-speed.json", summary)
    print(
        f"\nload average {summary['load_start']} at the start, {summary['load_end']} at the end; {summary['minutes']} min; "
        f"results in {work / 'stream-speed.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
