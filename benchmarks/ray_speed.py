#!/usr/bin/env python3
"""What Ray costs and what it buys: images/s of ``predict --ray`` with 1 and 2 actors against local
``predict`` on the same images, and Ray's start-up cost, on this machine.

    python benchmarks/ray_speed.py                         # coco128-seg's 128 images, the embedded model
    python benchmarks/ray_speed.py --images DIR --model m.onnx --cpus 4 --actors 1,2,4

Prints a markdown table. Rows:

- local: ``predict_sources`` as ``edgeseg predict`` runs it (``--workers 1``: one session with ONNX Runtime's
  default threads; ``--workers 2``: two one-thread sessions);
- Ray: a local Ray with ``--cpus`` CPUs (``ray.init`` timed on its own), then ``predict_on_ray``'s pipeline
  per actor count: wall time (actor start-up included, as a user pays it), time to the first result, and
  the steady rate after it.

Also the memory each actor holds (RSS of the actor processes, sampled mid-run). On a 2-core machine Ray will
not beat local threads: it adds a process per actor, serialisation and scheduling; the point is that the
same command runs on a cluster with many more cores. Nothing here is a test; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "coco128-seg" / "images" / "train2017"


def local_rate(model: Path, paths: list[Path], workers: int) -> tuple[float, int]:
    """(wall seconds, detections) of ``edgeseg predict`` with ``--workers``, no outputs written."""
    from edgeseg.engines.command import PredictOutputs, StreamOptions, predict_sources
    from edgeseg.predict import Segmenter

    seg = Segmenter(model)
    t0 = time.perf_counter()
    summary = predict_sources(seg, paths, outputs=PredictOutputs(), stream=StreamOptions(workers=workers), show_progress=False)
    return time.perf_counter() - t0, summary.detections


def actor_rss_mb() -> list[float]:
    """RSS of this machine's Ray Data actor processes (MiB)."""
    import psutil  # comes with Ray

    rss = []
    for p in psutil.process_iter(["cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::MapWorker") and p.info["memory_info"] is not None:
            rss.append(p.info["memory_info"].rss / 2**20)
    return rss


def ray_rate(model: Path, paths: list[Path], actors: int, cpus: int) -> dict:
    """Wall time, time to the first row, steady rate after it, detections and actor RSS of one Ray run."""
    from edgeseg.engines.cluster import ActorSpec, RayConfig, prediction_dataset, quiet_ray_data
    from edgeseg.predict import Segmenter

    quiet_ray_data(progress_bars=False)
    spec = ActorSpec(Segmenter(model))
    items = [{"index": i, "path": str(p)} for i, p in enumerate(paths)]
    t0 = time.perf_counter()
    ds = prediction_dataset(items, spec, config=RayConfig(actors=actors), cluster_cpus=cpus)
    first = None
    rows = detections = 0
    rss: list[float] = []
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        now = time.perf_counter()
        if first is None:
            first, first_rows = now, batch.num_rows
        rows += batch.num_rows
        detections += sum(len(d) for d in batch.column("detections").to_pylist())
        if not rss and rows >= len(paths) // 2:
            rss = actor_rss_mb()
    wall = time.perf_counter() - t0
    steady = (rows - first_rows) / (t0 + wall - first) if first is not None and rows > first_rows else float("nan")
    return {"wall": wall, "first": first - t0 if first else float("nan"), "steady": steady, "detections": detections, "rss": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image directory (default: coco128-seg)")
    parser.add_argument("--model", type=Path, default=None, help="edgeseg .onnx (default: the embedded model)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    parser.add_argument("--actors", default="1,2", help="actor counts to time (default 1,2)")
    parser.add_argument("--max-images", type=int, default=0, help="use at most this many images (0: all)")
    args = parser.parse_args()

    from edgeseg.predict import DEFAULT_MODEL
    from edgeseg.sources import images_in

    model = args.model or DEFAULT_MODEL
    paths = images_in(args.images)[: args.max_images or None]
    if not paths:
        print(f"no images in {args.images}", file=sys.stderr)
        return 1
    actor_counts = [int(v) for v in args.actors.split(",")]
    n = len(paths)
    print(
        f"{n} images from {args.images.name}, model {model.name}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start\n"
    )

    for path in paths:  # every run reads from the page cache, not the first one from disk
        path.read_bytes()
    local_rate(model, paths[:4], 1)  # and finds ONNX Runtime and OpenCV loaded
    table = ["| run | wall s | images/s | first result s | steady images/s | objects |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for workers in (1, 2):
        wall, dets = local_rate(model, paths, workers)
        table.append(f"| local predict --workers {workers} | {wall:.1f} | {n / wall:.2f} | | | {dets} |")

    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    rss_note = []
    try:
        for actors in actor_counts:
            r = ray_rate(model, paths, actors, args.cpus)
            table.append(
                f"| Ray, {actors} actor(s) | {r['wall']:.1f} | {n / r['wall']:.2f} | {r['first']:.1f} | "
                f"{r['steady']:.2f} | {r['detections']} |"
            )
            if r["rss"]:
                rss_note.append(f"{actors} actor(s): " + ", ".join(f"{v:.0f}" for v in r["rss"]) + " MiB")
    finally:
        ray.shutdown()
    print("\n".join(table))
    print(f"\nray.init (a local Ray with {args.cpus} CPUs): {init_s:.1f} s, paid once per command, before the first row.")
    if rss_note:
        print("actor RSS mid-run: " + "; ".join(rss_note))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
