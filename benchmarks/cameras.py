#!/usr/bin/env python3
"""Several cameras at once: throughput against bare inference, fairness, where the CPU goes; and the board's CPU
budget per frame outside inference.

    python benchmarks/cameras.py throughput                      # 1 and 4 cameras at 15 fps, 640x480, --workers 2
    python benchmarks/cameras.py throughput --rtsp               # the same frames served by real RTSP servers
    python benchmarks/cameras.py budget                          # CPU ms per 1080p NV12 frame outside inference

throughput: the frames are coco128-seg images at 640x480. Per round, side by side: bare inference (``--workers``
threads, each its own session, ``backend.run`` on ready tensors, as fast as they go), then ``run_cameras`` (the
deployment's engine: readers, the shared workers, each camera's JSON Lines) with 1 camera and with ``--cameras``
cameras, each offering ``--fps`` frames/s in real time (in-process paced sources, or with ``--rtsp`` GStreamer RTSP
servers on loopback and OpenCV's FFmpeg reader). Rounds repeat (medians reported) so that load changes of the host
hit all three alike. The CPU each thread used is sampled (psutil) and grouped by role: readers, workers, the
consumer (tracking, JSON Lines), the rest; CPU per frame outside inference = workers' CPU per frame - bare
inference's CPU per inference.

budget: the board's path for a 1920x1080 NV12 frame (the MIPI camera's or the decoder's form), inference left out:
``letterbox_nv12``, decode with masks on the board-form outputs (``benchmarks/board_cpu_path.py`` makes them),
tracking with a line and a zone, and the JSON Lines record, each timed on the process's CPU clock.

Files go to ``runs/cameras`` (git-ignored). A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edgeseg.engines.command import CameraPlan, StreamOptions, run_cameras  # noqa: E402
from edgeseg.fileio import write_json_atomic  # noqa: E402
from edgeseg.predict import DEFAULT_MODEL, Segmenter  # noqa: E402
from edgeseg.preprocess import letterbox, to_input_tensor  # noqa: E402
from edgeseg.sources import Source, SourceItem, images_in  # noqa: E402

SHARED = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "datasets" / "coco128-seg" / "images" / "train2017"
OUT = REPO / "runs" / "cameras"
SIZE = (640, 480)


def frames_640x480(count: int) -> list[np.ndarray]:
    return [cv2.resize(cv2.imread(str(p)), SIZE) for p in images_in(IMAGES)[:count]]


class PacedCamera(Source):
    """A live camera in this process: ``frames`` in turn at ``fps`` in real time for ``seconds``."""

    live = True

    def __init__(self, name: str, frames: list[np.ndarray], *, fps: float, seconds: float, offset: int = 0) -> None:
        self.name, self.frames, self.fps, self.seconds, self.offset = name, frames, fps, seconds, offset
        self.warnings: list[str] = []
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[SourceItem]:
        t0 = time.monotonic()
        for i in itertools.count():
            due = t0 + i / self.fps
            if due - t0 >= self.seconds or self._closed.wait(max(0.0, due - time.monotonic())):
                return
            yield SourceItem(i, self.name, image=self.frames[(i + self.offset) % len(self.frames)], time_s=i / self.fps)

    def close(self) -> None:
        self._closed.set()


class ThreadCpu:
    """CPU seconds per thread of this process, sampled while a run goes on and grouped by the threads' names."""

    ROLES = (("edgeseg-reader", "readers"), ("edgeseg-worker", "workers"), ("MainThread", "consumer"), ("bare-", "bare"))

    def __init__(self, every_s: float = 0.25) -> None:
        self.every_s = every_s
        self.seen: dict[int, tuple[str, float]] = {}  # native id -> (role, CPU seconds so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="cpu-sampler", daemon=True)
        self._before = self._now()

    @classmethod
    def role(cls, name: str) -> str:
        return next((role for prefix, role in cls.ROLES if name.startswith(prefix)), "other")

    def _now(self) -> dict[int, float]:
        return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._take()

    def _take(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        for tid, cpu in self._now().items():
            base = self._before.get(tid, 0.0)
            role = self.role(names.get(tid, "")) if tid in names else self.seen.get(tid, ("other", 0))[0]
            self.seen[tid] = (role, cpu - base)

    def __enter__(self) -> ThreadCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._take()
        self._stop.set()
        self._thread.join()

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for role, cpu in self.seen.values():
            out[role] = out.get(role, 0.0) + cpu
        return out


def bare(workers: list[Segmenter], tensors: list[np.ndarray], seconds: float) -> dict:
    """Inferences/s of ``workers`` threads, each its own session, for ``seconds``."""
    counter, stop, counts = itertools.count(), threading.Event(), [0] * len(workers)

    def work(k: int, seg: Segmenter) -> None:
        while not stop.is_set():
            seg.backend.run(tensors[next(counter) % len(tensors)])
            counts[k] += 1

    threads = [threading.Thread(target=work, args=(k, s), name=f"bare-{k}") for k, s in enumerate(workers)]
    with ThreadCpu() as cpu:
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    n = sum(counts)
    return {"fps": n / wall, "inferences": n, "cpu_ms_per_inference": 1e3 * cpu.by_role().get("bare", 0.0) / max(n, 1)}


class Warmed:
    """The predictor handed to ``run_cameras``: its workers are sessions loaded and warmed before the clock starts
    (``Segmenter.workers`` would load new ones inside the timed run)."""

    def __init__(self, workers: list[Segmenter], frame: np.ndarray) -> None:
        self._workers = workers
        for seg in workers:
            seg(frame)
        self.info, self.options = workers[0].info, workers[0].options

    def __call__(self, image: np.ndarray):
        return self._workers[0](image)

    def workers(self, n: int) -> list[Segmenter]:
        return self._workers[:n]


def cameras_run(
    seg: Warmed, make_sources: Callable[[int], list[Source | str]], count: int, workers: int, out: Path, seconds: float
) -> dict:
    """``count`` cameras through ``run_cameras`` with a JSON Lines file each, for ``seconds`` (a run of RTSP cameras
    goes on until stopped: it is, as SIGTERM would); frames/s per camera and in all."""
    plans = [CameraPlan(source, name=f"cam{k}", save_jsonl=out / f"cam{k}.jsonl") for k, source in enumerate(make_sources(count))]
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    with ThreadCpu() as cpu:
        t0 = time.perf_counter()
        timer.start()
        summary = run_cameras(seg, cameras=plans, stream=StreamOptions(workers=workers), show_progress=False, stop=stop)
        wall = time.perf_counter() - t0
    timer.cancel()
    per_camera = {name: stats.frames / wall for name, stats in summary.streams}
    frames = sum(stats.frames for _, stats in summary.streams)
    roles = cpu.by_role()
    return {
        "cameras": count,
        "fps": frames / wall,
        "frames": frames,
        "dropped": sum(stats.dropped for _, stats in summary.streams),
        "per_camera_fps": per_camera,
        "fairness": min(per_camera.values()) / max(per_camera.values()) if per_camera else 0.0,
        "cpu_ms_per_frame": {role: 1e3 * v / max(frames, 1) for role, v in roles.items()},
        "age_p50_ms": statistics.median([a for _, s in summary.streams for a in s.ages_ms]) if frames else None,
        "incomplete": [list(p) for p in summary.incomplete],
    }


def throughput(args: argparse.Namespace) -> dict:
    frames = frames_640x480(16)
    seg = Segmenter(args.model, threads=1)
    workers = seg.workers(args.workers)
    warmed = Warmed(workers, frames[0])
    tensors = [to_input_tensor(letterbox(f, seg.info.imgsz)[0]) for f in frames]
    servers: list = []
    if args.rtsp:
        from rtsp_server import RtspCamera, write_frames  # noqa: PLC0415 (GStreamer, only for --rtsp)

        pictures = write_frames(images_in(IMAGES)[:16], Path(tempfile.mkdtemp(prefix="edgeseg-pictures-")))
        servers = [RtspCamera(pictures, fps=int(args.fps)).start() for _ in range(max(args.cameras))]
        make_sources = lambda n: [s.url for s in servers[:n]]  # noqa: E731
    else:
        make_sources = lambda n: [PacedCamera(f"cam{k}", frames, fps=args.fps, seconds=args.seconds, offset=k) for k in range(n)]  # noqa: E731
    rounds: list[dict] = []
    try:
        for r in range(args.rounds):
            row = {"bare": bare(workers, tensors, args.seconds)}
            for n in args.cameras:
                with tempfile.TemporaryDirectory() as tmp:
                    row[f"{n} cameras"] = cameras_run(warmed, make_sources, n, args.workers, Path(tmp), args.seconds)
            rounds.append(row)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v['fps']:.2f} frames/s" for k, v in row.items()), flush=True)
    finally:
        for s in servers:
            s.stop()
    return {"rounds": rounds, "setup": _setup(args, seg)}


def _setup(args: argparse.Namespace, seg: Segmenter) -> dict:
    from edgeseg.machine import cpu_model
    from edgeseg.onnxgraph import is_quantized, load_model

    return {
        "model": Path(args.model).name,
        "int8": is_quantized(load_model(args.model)),
        "workers": args.workers,
        "fps_per_camera": args.fps,
        "seconds": args.seconds,
        "frame": f"{SIZE[0]}x{SIZE[1]}",
        "source": "RTSP (GStreamer, H.264, loopback)" if args.rtsp else "in-process paced frames",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
    }


def report_throughput(result: dict) -> str:
    rounds = result["rounds"]
    keys = list(rounds[0])
    med = {k: statistics.median(r[k]["fps"] for r in rounds) for k in keys}
    lines = [
        "| run | frames/s (median of rounds) | of bare | slowest/fastest camera | dropped | age p50 ms "
        "| CPU ms/frame: readers, workers, consumer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k in keys:
        if k == "bare":
            cpu = statistics.median(r[k]["cpu_ms_per_inference"] for r in rounds)
            lines.append(f"| bare inference, {result['setup']['workers']} sessions | {med[k]:.2f} | 1.00 | | | | inference {cpu:.1f} |")
            continue
        fair = statistics.median(r[k]["fairness"] for r in rounds)
        drops = statistics.median(r[k]["dropped"] for r in rounds)
        age = statistics.median(r[k]["age_p50_ms"] or 0 for r in rounds)
        roles = {
            role: statistics.median(r[k]["cpu_ms_per_frame"].get(role, 0.0) for r in rounds) for role in ("readers", "workers", "consumer")
        }
        lines.append(
            f"| {k} | {med[k]:.2f} | {med[k] / med['bare']:.2f} | {fair:.2f} | {drops:.0f} | {age:.0f} | "
            f"{roles['readers']:.1f}, {roles['workers']:.1f}, {roles['consumer']:.1f} |"
        )
    return "\n".join(lines)


# --- the board's budget -------------------------------------------------------------------------------------------


def budget(args: argparse.Namespace) -> dict:
    import board_cpu_path as board  # noqa: PLC0415 (benchmarks/: the board-form outputs)
    from edgeseg.backends import open_backend
    from edgeseg.decode import DecodeOptions, decode
    from edgeseg.outputs.jsonl import frame_record
    from edgeseg.preprocess import letterbox_nv12
    from edgeseg.tracking import TrackingOptions, TrackSession, parse_line, parse_zone

    backend = open_backend(args.model)
    info = backend.info
    frames, _, _ = board.make_frames(images_in(IMAGES)[: args.frames], backend=backend, info=info)
    options = DecodeOptions(conf=0.25)
    tracking = TrackingOptions(lines=(parse_line("door=0.5,0,0.5,1"),), zones=(parse_zone("lot=0.1,0.5,0.9,0.5,0.9,1,0.1,1"),))
    session = TrackSession(tracking, name="cam")
    sink = open(os.devnull, "w")  # noqa: SIM115 (the JSON Lines line is formatted and handed to the OS)
    stages = ("letterbox_nv12", "decode+masks", "tracking+counting", "JSON Lines record")
    samples: dict[str, list[float]] = {s: [] for s in stages}
    objects = []
    for r in range(args.repeats):
        for j, frame in enumerate(frames):
            k = r * len(frames) + j  # one camera's frame index, in order
            c0 = time.process_time()
            lb = letterbox_nv12(frame.nv12, info.imgsz)[1]
            c1 = time.process_time()
            det = decode(frame.edgeseg_outputs, info, lb, options)
            c2 = time.process_time()
            tracked = session.update(det, k)
            c3 = time.process_time()
            record = frame_record(index=k, time_s=k / 15, source="cam", detections=tracked.detections, tracking=tracked, camera="cam")
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            c4 = time.process_time()
            for stage, dt in zip(stages, (c1 - c0, c2 - c1, c3 - c2, c4 - c3)):
                samples[stage].append(dt * 1e3)
            objects.append(len(det))
    sink.close()
    per_stage = {s: {"median_ms": statistics.median(v), "mean_ms": statistics.fmean(v)} for s, v in samples.items()}
    total = sum(v["mean_ms"] for v in per_stage.values())
    return {
        "stages": per_stage,
        "total_mean_ms": total,
        "objects_mean": statistics.fmean(objects),
        "frames": len(frames),
        "repeats": args.repeats,
    }


def report_budget(result: dict) -> str:
    lines = ["| stage (1920x1080 NV12 frame) | CPU ms, median | CPU ms, mean |", "| --- | --- | --- |"]
    for stage, v in result["stages"].items():
        lines.append(f"| {stage} | {v['median_ms']:.2f} | {v['mean_ms']:.2f} |")
    lines.append(f"| **all, outside inference** | | **{result['total_mean_ms']:.2f}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--model", default=str(DEFAULT_MODEL))
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    t.add_argument("--fps", type=float, default=15.0)
    t.add_argument("--seconds", type=float, default=20.0)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--rtsp", action="store_true", help="serve the frames through GStreamer RTSP servers on loopback")
    b = sub.add_parser("budget")
    b.add_argument("--model", default=str(DEFAULT_MODEL))
    b.add_argument("--frames", type=int, default=16)
    b.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.what == "throughput":
        result = throughput(args)
        table = report_throughput(result)
        name = "throughput-rtsp" if args.rtsp else "throughput"
    else:
        result = budget(args)
        table = report_budget(result)
        name = "budget"
    write_json_atomic(OUT / f"{name}.json", result)
    print(table)
    print(f"\n(written to {OUT.relative_to(REPO) / (name + '.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
