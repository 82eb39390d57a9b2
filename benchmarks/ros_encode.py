"""ROS 2 messages of one frame: time to build, serialise and hand over every topic, next to the pipeline's own frame
time on the same frames (a benchmark, not a test).

    python benchmarks/ros_encode.py [--model M.onnx] [--objects 20] [--repeats 200] [--json OUT]

The frames are the coco128 images on which the model finds at least ``--objects`` objects, each cut to its
``--objects`` best, tracked (``TrackSession`` with a counting line: ids, counts and the line on every topic).
Per frame, ``FrameEncoder.encode`` builds every topic (the optional mono16 ``instance_mask`` included; the JPEG of
``image/compressed`` is timed apart, it is OpenCV's encoder), and each message is put into an ``Outbox`` (what the
live publisher does). Encoding and the pipeline (``Segmenter(image)``, one worker, on the same images) are timed in
turns of a block each, so a busier stretch of the machine weighs on both; medians are reported and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from edgeseg.engines.frames import StreamFrame
from edgeseg.outputs import CameraInfo, Outbox, RunInfo
from edgeseg.outputs.ros.messages import FrameEncoder, RosTopics
from edgeseg.predict import DEFAULT_MODEL, Segmenter
from edgeseg.tracking import TrackingOptions, TrackSession, parse_line

SHARED = Path(os.environ.get("EDGESEG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
IMAGES = SHARED / "datasets" / "coco128-seg" / "images" / "train2017"


def crowded_frames(segmenter: Segmenter, objects: int) -> list[tuple[np.ndarray, StreamFrame]]:
    """(image, tracked frame of its ``objects`` best detections) for every coco128 image with that many."""
    frames = []
    session = TrackSession(TrackingOptions(lines=(parse_line("gate=0.5,0,0.5,1"),)))
    for path in sorted(IMAGES.glob("*.jpg")):
        image = cv2.imread(str(path))
        det = segmenter(image)
        if len(det) < objects:
            continue
        det = det.select(np.argsort(-det.scores)[:objects])
        session = TrackSession(session.options)  # each image its own short stream: every object gets an id
        tracked = session.update(det, 0)
        tracked.detections = tracked.detections.select(np.arange(objects) % len(tracked.detections))
        frame = StreamFrame(0, path.name, image, tracked.detections, time_s=0.0, tracking=tracked, camera="bench")
        frames.append((image, frame))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=300, help="frames encoded (cycling over the crowded images)")
    parser.add_argument("--rounds", type=int, default=5, help="turns of encoding and of the pipeline over the same images")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    segmenter = Segmenter(args.model)
    frames = crowded_frames(segmenter, args.objects)
    if not frames:
        raise SystemExit(f"no image in {IMAGES} has {args.objects} objects for this model")
    names = tuple(segmenter.names[i] for i in range(len(segmenter.names)))
    run = RunInfo(cameras=(CameraInfo(name="bench", source="coco128", lines=("gate",)),), class_names=names)
    config = RosTopics(instance_mask=True)
    encoder = FrameEncoder(run, config)
    outbox: Outbox = Outbox(lambda message: None, capacity=4096, name="bench-ros")
    encode_ms, jpeg_ms, pipeline_ms, sizes, counts = [], [], [], [], []
    k = 0
    for _ in range(args.rounds):
        # in turns, a block of each: ONNX Runtime's threads spin a while after a run, and would be timed as ours
        for _ in range(args.repeats // args.rounds):
            image, frame = frames[k % len(frames)]
            frame = dataclasses.replace(frame, index=k, time_s=k / 30)  # a new frame: nothing is reused from the last
            k += 1
            t0 = time.perf_counter()
            messages = encoder.encode(frame)
            for message in messages:
                outbox.put(message)
            t1 = time.perf_counter()
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
            t2 = time.perf_counter()
            encode_ms.append((t1 - t0) * 1e3)
            jpeg_ms.append((t2 - t1) * 1e3)
            sizes.append(sum(len(m.data) for m in messages))
            counts.append(len(messages))
        outbox.flush(5.0)
        time.sleep(0.05)
        for image, _ in frames:
            t2 = time.perf_counter()
            segmenter(image)
            pipeline_ms.append((time.perf_counter() - t2) * 1e3)
        time.sleep(0.05)
    outbox.close()
    result = {
        "frames": len(frames),
        "objects": args.objects,
        "repeats": len(encode_ms),
        "fast_path": encoder.packed.fast,
        "encode_ms_p50": statistics.median(encode_ms),
        "encode_ms_p90": float(np.percentile(encode_ms, 90)),
        "jpeg_ms_p50": statistics.median(jpeg_ms),
        "pipeline_ms_p50": statistics.median(pipeline_ms),
        "messages_per_frame": statistics.median(counts),
        "bytes_per_frame": statistics.median(sizes),
    }
    result["encode_share_of_frame"] = result["encode_ms_p50"] / result["pipeline_ms_p50"]
    print(f"{len(frames)} coco128 image(s) with >= {args.objects} objects, {len(encode_ms)} frames, model {Path(args.model).name}")
    print(f"every topic ({result['messages_per_frame']:.0f} messages, {result['bytes_per_frame'] / 1e3:.0f} kB, mono16 mask included):")
    print(f"  encode + hand over  p50 {result['encode_ms_p50']:.3f} ms  p90 {result['encode_ms_p90']:.3f} ms")
    print(f"  JPEG (image/compressed, quality {config.jpeg_quality})  p50 {result['jpeg_ms_p50']:.3f} ms")
    print(f"  pipeline frame (Segmenter, 1 worker)  p50 {result['pipeline_ms_p50']:.1f} ms")
    print(f"  encode / frame = {result['encode_share_of_frame']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
