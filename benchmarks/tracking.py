"""Tracking: identity metrics on synthetic clips, tracker update time, and the stream's frames/s with tracking
(a benchmark, not a test).

    python benchmarks/tracking.py [--coco128 DIR] [--repeats 5] [--stream-frames 48] [--json OUT]

1. Metrics: the synthetic coco128-seg clips of ``tests/tracking_clips.py`` (instances cut out by their masks,
   moved along crossing paths; detections simulated from the ground truth: jitter, misses, occlusion, false
   positives), every tracker fed the very same detections, scored by ``trackers.eval`` (TrackEval's HOTA,
   CLEAR and Identity formulas): edgeseg's ByteTrack (defaults, mask IoU, Ultralytics' yaml settings) and
   ``trackers``' ByteTrack (its defaults, and its thresholds set to edgeseg's).
2. Update time per frame on one core (this process pinned to one CPU) at 20 and 100 moving objects, edgeseg vs
   ``trackers``' ByteTrack on the same detections (``supervision.Detections`` built before the clock starts),
   runs interleaved, medians; and edgeseg with ``lap.lapjv`` in place of its numpy assignment (the optional
   speed-up that was measured and not taken).
3. Stream frames/s of ``predict_sources`` on the embedded model (the sample image slid by 32 px steps, from
   memory, 2 workers, annotated video and JSON Lines written) with ``--track`` and two lines vs without,
   interleaved runs, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the synthetic clips are the tests' own material

from edgeseg.fileio import write_json_atomic  # noqa: E402
from edgeseg.results import Detections  # noqa: E402
from tracking_clips import run_edgeseg, run_roboflow, score_tracks, simulate_detections, standard_clips  # noqa: E402

NAMES = {i: str(i) for i in range(80)}
ROBOFLOW_MATCHED = dict(track_activation_threshold=0.25, high_conf_det_threshold=0.25, minimum_iou_threshold=0.2)


def _ultralytics(detections: list[Detections]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ultralytics' own BYTETracker (bytetrack.yaml) on the same detections."""
    from types import SimpleNamespace

    from ultralytics.trackers.byte_tracker import BYTETracker

    class Boxes:  # what BYTETracker reads of a Results: conf, cls, xywh, boolean indexing
        def __init__(self, conf, cls, xywh):
            self.conf, self.cls, self.xywh = conf, cls, xywh

        def __len__(self):
            return len(self.conf)

        def __getitem__(self, keep):
            return Boxes(self.conf[keep], self.cls[keep], self.xywh[keep])

    tracker = BYTETracker(
        SimpleNamespace(
            tracker_type="bytetrack",
            track_high_thresh=0.25,
            track_low_thresh=0.1,
            new_track_thresh=0.25,
            track_buffer=30,
            match_thresh=0.8,
            fuse_score=True,
        )
    )
    out = []
    for det in detections:
        xyxy = det.xyxy.astype(np.float64)
        rows = tracker.update(
            Boxes(
                det.scores.astype(np.float64),
                det.class_ids.astype(np.float64),
                np.column_stack([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]]),
            )
        )
        rows = np.asarray(rows).reshape(-1, 8)
        out.append((rows[:, 4].astype(np.int64), xyxy[rows[:, 7].astype(np.int64)]))  # the detections' own boxes, as edgeseg's
    return out


def metrics(coco128: Path, seeds: int) -> list[dict]:
    rows = []
    trackers = [
        ("edgeseg ByteTrack (defaults)", run_edgeseg, {}),
        ("edgeseg ByteTrack, --track-iou mask", run_edgeseg, {"iou": "mask"}),
        (
            "edgeseg ByteTrack, Ultralytics' settings (XYAH state, fuse_score on: = Ultralytics' BYTETracker)",
            run_edgeseg,
            {"fuse_score": True, "motion": "xyah"},
        ),
        ("Ultralytics BYTETracker (bytetrack.yaml)", lambda d: _ultralytics(d), {}),
        ("trackers ByteTrack (its defaults)", run_roboflow, {}),
        ("trackers ByteTrack (thresholds as edgeseg's)", run_roboflow, ROBOFLOW_MATCHED),
    ]
    for clip in standard_clips(coco128):
        for seed in range(seeds):
            detections, _ = simulate_detections(clip, NAMES, seed=seed)
            for name, run, kwargs in trackers:
                rows.append({"clip": clip.name, "seed": seed, "tracker": name, **score_tracks(clip, run(detections, **kwargs))})
    return rows


def moving_objects(n: int, frames: int = 200, seed: int = 0) -> list[Detections]:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1800, (n, 2))
    vel = rng.uniform(-4, 4, (n, 2))
    size = rng.uniform(30, 90, (n, 2))
    out = []
    for f in range(frames):
        c = pos + f * vel
        boxes = np.concatenate([c - size / 2, c + size / 2], 1) + rng.normal(0, 1.5, (n, 4))
        scores = rng.uniform(0.3, 0.95, n)
        keep = rng.random(n) > 0.05
        classes = np.zeros(int(keep.sum()), np.int64)
        out.append(Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), classes, (2000, 2000)))
    return out


def _lap_assignment(cost: np.ndarray, thresh: float):
    import lap

    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n), np.arange(m)
    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    matches = np.array([[i, j] for i, j in enumerate(x) if j >= 0], np.int64).reshape(-1, 2)
    return matches, np.flatnonzero(x < 0), np.flatnonzero(y < 0)


def update_times(repeats: int) -> list[dict]:
    import supervision as sv
    from trackers import ByteTrackTracker

    import edgeseg.tracking.bytetrack as bytetrack
    from edgeseg.tracking import ByteTracker

    numpy_assignment = bytetrack.linear_assignment
    rows = []
    for n in (20, 100):
        frames = moving_objects(n)
        sv_frames = [sv.Detections(xyxy=d.xyxy, confidence=d.scores, class_id=d.class_ids) for d in frames]
        samples: dict[str, list[float]] = {"edgeseg": [], "edgeseg + lap": [], "trackers": []}
        for _ in range(repeats):
            for name in samples:
                bytetrack.linear_assignment = _lap_assignment if name == "edgeseg + lap" else numpy_assignment
                if name == "trackers":
                    tracker = ByteTrackTracker(**ROBOFLOW_MATCHED)
                    t0 = time.perf_counter()
                    for d in sv_frames:
                        tracker.update(d)
                else:
                    ours = ByteTracker()
                    t0 = time.perf_counter()
                    for f, d in enumerate(frames):
                        ours.update(d, f)
                samples[name].append((time.perf_counter() - t0) / len(frames) * 1e3)
        bytetrack.linear_assignment = numpy_assignment
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append(
            {
                "objects": n,
                **{f"{k} ms": round(v, 4) for k, v in med.items()},
                "speed-up vs trackers": round(med["trackers"] / med["edgeseg"], 2),
            }
        )
    return rows


def stream_fps(frames: int, repeats: int) -> dict:
    from edgeseg.engines.command import PredictOutputs, StreamOptions, predict_sources
    from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE, Segmenter
    from edgeseg.sources import SourceItem
    from edgeseg.tracking import TrackingOptions, parse_line

    image = cv2.imread(str(SAMPLE_IMAGE))
    h, w = image.shape[:2]
    slides = [cv2.warpAffine(image, np.float32([[1, 0, 32 * k], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)) for k in range(-3, 4)]
    slides += slides[-2:0:-1]  # there and back: the objects move, turn and come back

    class Slide:
        name, live, fps, warnings = "sample-slide", False, 25.0, []

        def __iter__(self):
            for i in range(frames):
                yield SourceItem(i, self.name, slides[i % len(slides)], time_s=i / self.fps)

    seg = Segmenter(DEFAULT_MODEL, threads=1)
    tracking = TrackingOptions(lines=(parse_line("left=0.33,0,0.33,1"), parse_line("right=0.66,0,0.66,1")))
    # What tracking adds to the ordered consumer per frame, timed alone: track, count, draw trails and lines,
    # and the longer JSON line (the detections are the model's own on these frames).
    from edgeseg.draw import annotate
    from edgeseg.outputs.jsonl import frame_record
    from edgeseg.tracking import TrackSession

    detections = [seg(slides[i % len(slides)]) for i in range(len(slides))]
    added = []
    for _ in range(repeats):
        session = TrackSession(tracking)
        t_plain = t_tracked = 0.0
        for i in range(frames):
            det, image = detections[i % len(detections)], slides[i % len(slides)]
            t0 = time.perf_counter()
            annotate(image, det)
            json.dumps(frame_record(index=i, time_s=None, source="s", detections=det))
            t1 = time.perf_counter()
            tracked = session.update(det, i)
            annotate(image, tracked.detections, tracked)
            json.dumps(frame_record(index=i, time_s=None, source="s", detections=tracked.detections, tracking=tracked))
            t2 = time.perf_counter()
            t_plain, t_tracked = t_plain + (t1 - t0), t_tracked + (t2 - t1)
        added.append((t_tracked - t_plain) / frames * 1e3)
    samples: dict[str, list[float]] = {"without --track": [], "--track, two lines": []}
    cpu: dict[str, list[float]] = {k: [] for k in samples}  # CPU ms of this process per frame: robust to other jobs
    with tempfile.TemporaryDirectory() as tmp:
        outputs = PredictOutputs(save_video=Path(tmp) / "out.mp4", save_jsonl=Path(tmp) / "out.jsonl")
        for _ in range(repeats):
            for name in samples:
                options = StreamOptions(workers=2, tracking=tracking if "track" in name else None)
                c0 = time.process_time()
                summary = predict_sources(seg, [Slide()], outputs=outputs, stream=options, show_progress=False)
                cpu[name].append((time.process_time() - c0) / frames * 1e3)
                samples[name].append(summary.streams[0][1].fps)
    med = {k: statistics.median(v) for k, v in samples.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        **{f"{k} frames/s": round(v, 2) for k, v in med.items()},
        "ratio": round(med["--track, two lines"] / med["without --track"], 4),
        "consumer ms added per frame": round(statistics.median(added), 3),
        **{f"{k} CPU ms/frame": round(v, 1) for k, v in cpu_med.items()},
        "CPU ratio": round(cpu_med["--track, two lines"] / cpu_med["without --track"], 4),
        "worker ms per frame": round(1e3 * 2 / med["without --track"], 1),
        "samples": samples,
    }


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco128", type=Path, default=REPO.parent / "shared" / "datasets" / "coco128-seg")
    ap.add_argument("--seeds", type=int, default=2, help="simulated detectors per clip (default 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stream-frames", type=int, default=28)
    ap.add_argument("--stream-repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--parts", default="metrics,times,stream", help="what to run (default: metrics,times,stream)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    result = {}
    if "metrics" in parts:
        result.update(_print_metrics(args))
    if "times" in parts:
        result["update_times"] = _print_times(args)
    if "stream" in parts:
        stream = stream_fps(args.stream_frames, args.stream_repeats)
        print("\n## Stream frames/s (embedded model, 2 workers, video + JSON Lines written; medians)\n")
        print({k: v for k, v in stream.items() if k != "samples"})
        result["stream"] = stream
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def _print_metrics(args) -> dict:
    rows = metrics(args.coco128, args.seeds)
    summary = []
    for name in dict.fromkeys(r["tracker"] for r in rows):
        mine = [r for r in rows if r["tracker"] == name]
        summary.append(
            {
                "tracker": name,
                **{k: statistics.mean(r[k] for r in mine) for k in ("HOTA", "IDF1", "MOTA", "AssA")},
                "IDSW": sum(r["IDSW"] for r in mine),
            }
        )
    print(f"## Identity metrics: 3 clips x {args.seeds} simulated detectors (mean; IDSW summed)\n")
    print(_table(summary, ["tracker", "HOTA", "IDF1", "MOTA", "AssA", "IDSW"]))
    print("\nper clip:\n")
    print(_table(rows, ["clip", "seed", "tracker", "HOTA", "IDF1", "MOTA", "IDSW"]))
    return {"metrics": rows, "summary": summary}


def _print_times(args) -> list[dict]:
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {allowed[0]})  # one core, as the targets say
    times = update_times(args.repeats)
    print("\n## Update time per frame, one core (median of interleaved runs, ms)\n")
    print(_table(times, list(times[0])))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(allowed))
    return times


if __name__ == "__main__":
    sys.exit(main())
