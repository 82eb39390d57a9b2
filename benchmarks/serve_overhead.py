"""Live view overhead: the stream's frames/s with 0, 1 and 10 viewers of `predict --serve` (a benchmark, not a test).

    python benchmarks/serve_overhead.py [--model M.onnx] [--frames 120] [--workers 1] [--repeats 3] [--viewers 0,1,10] [--json OUT]

A viewer opens what the page opens: /stream.mjpg and /events, both read as fast as they come, and /health once a
second. Viewers run in another process (a browser is not in the pipeline's process; on a board it is not even on
the board). The source is the project's sample image slid by multiples of 32 px (the embedded model detects
objects in every frame), held in memory and read as fast as the pipeline takes it, like a video file (nothing is
dropped): the frames/s is the pipeline's. Runs are interleaved (0, 1, 10, 0, 1, 10, ...) and the medians reported,
so a machine that is busier in one stretch does not favour one count of viewers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np

from edgeseg.engines.command import StreamOptions, predict_sources
from edgeseg.fileio import write_json_atomic
from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE, Segmenter
from edgeseg.serve import ServeConfig, start_server
from edgeseg.sources import Source, SourceItem


class SlidingSample(Source):
    """``count`` frames of the sample image, slid by 0..96 px, from memory as fast as they are taken."""

    def __init__(self, count: int) -> None:
        image = cv2.imread(str(SAMPLE_IMAGE))
        h, w = image.shape[:2]
        self.frames = [
            cv2.warpAffine(image, np.float32([[1, 0, 32 * k], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)) for k in range(4)
        ]
        self.name, self.live, self.fps, self.warnings, self.count = "sample-slide", False, 25.0, [], count

    def __iter__(self):
        for i in range(self.count):
            yield SourceItem(i, self.name, self.frames[i % len(self.frames)], time_s=i / self.fps)


def _read_mjpeg(url: str, stop, counts: list, k: int) -> None:
    with urllib.request.urlopen(url + "stream.mjpg", timeout=30) as r:
        while not stop.is_set():
            line = r.readline()
            if not line:
                return
            if line.lower().startswith(b"content-length:"):
                r.readline()
                r.read(int(line.split(b":")[1]))
                counts[k] += 1


def _read_events(url: str, stop) -> None:
    with urllib.request.urlopen(url + "events", timeout=30) as r:
        while not stop.is_set() and r.readline():
            pass


def _poll_health(url: str, stop) -> None:
    while not stop.wait(1.0):
        urllib.request.urlopen(url + "health", timeout=30).read()


def viewers(url: str, count: int, stop, received) -> None:
    """(In its own process) ``count`` page-like viewers until ``stop``; ``received``: MJPEG frames they got."""
    counts = [0] * count
    local_stop = threading.Event()
    threads = []
    for k in range(count):
        threads += [
            threading.Thread(target=_read_mjpeg, args=(url, local_stop, counts, k), daemon=True),
            threading.Thread(target=_read_events, args=(url, local_stop), daemon=True),
            threading.Thread(target=_poll_health, args=(url, local_stop), daemon=True),
        ]
    for t in threads:
        t.start()
    stop.wait()
    local_stop.set()
    received.value = sum(counts)


def run_once(seg: Segmenter, source: SlidingSample, n_viewers: int, workers: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with start_server(ServeConfig(port=0)) as server:
        stop, received = ctx.Event(), ctx.Value("q", 0)
        process = ctx.Process(target=viewers, args=(server.url, n_viewers, stop, received), daemon=True)
        if n_viewers:
            process.start()
            deadline = time.monotonic() + 30
            while server.hub.viewers < 2 * n_viewers:  # every viewer's MJPEG and events connections are open
                if time.monotonic() > deadline:
                    raise SystemExit("serve_overhead: the viewers did not connect")
                time.sleep(0.05)
        cpu0 = time.process_time()  # every thread of this process: the pipeline's and the view's
        summary = predict_sources(seg, [source], stream=StreamOptions(workers=workers), show_progress=False, run_outputs=[server.hub])
        cpu = time.process_time() - cpu0
        stats = summary.streams[0][1]
        if n_viewers:
            stop.set()
            process.join(30)
        encodes = server.hub.jpeg_encodes
    return {
        "viewers": n_viewers,
        "fps": stats.fps,
        "frames": stats.frames,
        "jpeg_encodes": encodes,
        "cpu_ms_per_frame": 1000 * cpu / stats.frames,
        "view_fps_per_viewer": received.value / n_viewers / stats.wall_s if n_viewers else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--frames", type=int, default=120, help="frames per run (default 120)")
    ap.add_argument("--workers", type=int, default=1, help="stream runner workers (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads of the one-worker session (default 0: ORT's)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per viewer count (default 3)")
    ap.add_argument("--viewers", default="0,1,10", help="viewer counts (default 0,1,10)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    counts = [int(v) for v in args.viewers.split(",")]
    seg = Segmenter(args.model, threads=args.threads)
    source = SlidingSample(args.frames)
    predict_sources(seg, [SlidingSample(8)], show_progress=False)  # warm-up: sessions, arenas, page cache
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for r in range(args.repeats):
        for n in counts:
            runs[n].append(run_once(seg, source, n, args.workers))
            print(json.dumps({"repeat": r, **runs[n][-1]}), file=sys.stderr)
    base = statistics.median(x["fps"] for x in runs[counts[0]])
    rows = []
    for n in counts:
        fps = statistics.median(x["fps"] for x in runs[n])
        view = [x["view_fps_per_viewer"] for x in runs[n] if x["view_fps_per_viewer"] is not None]
        rows.append(
            {
                "viewers": n,
                "fps_median": round(fps, 2),
                "fps_runs": [round(x["fps"], 2) for x in runs[n]],
                "vs_first": round(fps / base - 1, 4),
                "view_fps_per_viewer": round(statistics.median(view), 2) if view else None,
                "cpu_ms_per_frame": round(statistics.median(x["cpu_ms_per_frame"] for x in runs[n]), 1),
                "jpeg_encodes_per_frame": round(statistics.median(x["jpeg_encodes"] / x["frames"] for x in runs[n]), 3),
            }
        )
    result = {"model": args.model, "frames": args.frames, "workers": args.workers, "repeats": args.repeats, "rows": rows}
    print(f"{'viewers':>7} {'frames/s':>9} {'vs ' + str(counts[0]):>8} {'view fps':>9} {'JPEG/frame':>10} {'CPU ms/frame':>12}")
    for row in rows:
        view = "-" if row["view_fps_per_viewer"] is None else f"{row['view_fps_per_viewer']:.1f}"
        print(
            f"{row['viewers']:>7} {row['fps_median']:>9.2f} {row['vs_first']:>+8.1%} {view:>9} {row['jpeg_encodes_per_frame']:>10.2f}"
            f" {row['cpu_ms_per_frame']:>12.1f}"
        )
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
