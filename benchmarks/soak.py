"""Soak: many predictions in one process with the resident memory sampled; reports the growth.

    python benchmarks/soak.py [--model M.onnx] [--images DIR] [--n 10000] [--every 500] [--json OUT]

Not a test: it runs for minutes. Growth is measured from a warm baseline (after the first 200 images),
so allocator warm-up and ONNX Runtime arenas are not counted as a leak."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.fileio import write_json_atomic
from edgeseg.predict import DEFAULT_MODEL, Segmenter
from edgeseg.sources import ImageFiles, image_directory


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--images", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/coco128-seg/images/train2017"))
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    try:
        paths = image_directory(args.images, "soak")
    except EdgesegError as exc:
        raise SystemExit(f"soak: {exc}") from None
    images = [item.image for item in ImageFiles(paths) if item.ok]  # decode once: the soak is about the pipeline, not JPEG
    if not images:
        raise SystemExit(f"soak: {args.images}: none of the images could be read")
    seg = Segmenter(args.model, threads=args.threads)
    samples, baseline, objects = [], None, 0
    t0 = time.perf_counter()
    for i, image in zip(range(1, args.n + 1), itertools.cycle(images)):
        det = seg(image)
        objects += len(det)
        det.rle()  # exercise the output path too
        if i == 200:
            baseline = rss_mib()
        if i % args.every == 0 or i == args.n:
            samples.append({"predictions": i, "rss_mib": round(rss_mib(), 1), "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(samples[-1]), file=sys.stderr)
    result = {
        "model": args.model,
        "predictions": args.n,
        "objects": objects,
        "baseline_rss_mib": baseline,
        "final_rss_mib": samples[-1]["rss_mib"],
        "growth_mib": round(samples[-1]["rss_mib"] - (baseline or samples[0]["rss_mib"]), 1),
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
