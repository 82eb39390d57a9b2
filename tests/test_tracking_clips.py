"""Tracking measured against ground truth on synthetic clips made from coco128-seg (``tracking_clips.py``):
identity metrics from a maintained evaluator (``trackers.eval``, TrackEval's formulas) side by side with
``trackers``' ByteTrack fed the very same detections, and line/zone counts against the counts of the true
paths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.tracking import TrackingOptions, TrackSession, parse_line, parse_zone
from tracking_clips import DetectorModel, iou_matrix, run_edgeseg, run_roboflow, score_tracks, simulate_detections, standard_clips

pytestmark = pytest.mark.slow  # tracks whole synthetic clips with two trackers

NAMES = {i: f"class{i}" for i in range(80)}
LINES = ("mid=0,240,640,240", "centre=320,0,320,480")
ZONE = "lot=200,150,440,150,440,330,200,330"


@pytest.fixture(scope="module")
def made_clips(coco128_dir):
    return standard_clips(coco128_dir)


@pytest.fixture(scope="module")
def clips(made_clips):
    return [(clip, *simulate_detections(clip, NAMES, seed=k)) for k, clip in enumerate(made_clips)]


@pytest.mark.timeout(300)
def test_identities_are_at_least_as_good_as_trackers_bytetrack(clips):
    pytest.importorskip("trackers", reason="the reference tracker is the test extra's `trackers` package")
    for clip, detections, _ in clips:
        ours = score_tracks(clip, run_edgeseg(detections))
        theirs = score_tracks(clip, run_roboflow(detections))
        assert ours["HOTA"] >= theirs["HOTA"], (clip.name, ours, theirs)
        assert ours["IDF1"] >= theirs["IDF1"], (clip.name, ours, theirs)
        assert ours["IDSW"] <= theirs["IDSW"], (clip.name, ours, theirs)
        assert ours["HOTA"] > 0.7 and ours["IDF1"] > 0.85, (clip.name, ours)  # and good in absolute terms


def _crossings(points: list[np.ndarray], a: np.ndarray, b: np.ndarray) -> list[str]:
    """Directions in which a path crosses segment a-b (the counters' rule, written out again here)."""
    out = []
    side = lambda p: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    for p, q in zip(points, points[1:]):
        sp, sq = side(p), side(q)
        if (sp < 0) != (sq < 0):
            t = sp / (sp - sq)
            x = p + t * (q - p)
            if min(a[0], b[0]) - 1e-9 <= x[0] <= max(a[0], b[0]) + 1e-9 and min(a[1], b[1]) - 1e-9 <= x[1] <= max(a[1], b[1]) + 1e-9:
                out.append("in" if sp < 0 else "out")
    return out


def _near_end(path: list[np.ndarray], lines, polygon: np.ndarray, margin: float = 12.0) -> bool:
    """Whether the true path ends within ``margin`` px of a line or the zone's edge: whether such an object
    has crossed is below the detector's noise when the clip ends, so neither answer is wrong."""
    end = path[-1]
    for line in lines:
        a, b = line.pixels((480, 640))
        t = np.clip(np.dot(end - a, b - a) / np.dot(b - a, b - a), 0, 1)
        if np.linalg.norm(end - (a + t * (b - a))) < margin:
            return True
    return abs(cv2.pointPolygonTest(polygon, (float(end[0]), float(end[1])), True)) < margin


def _truth_of_tracks(clip, frames) -> dict[int, int]:
    """Track id -> the ground-truth object it covers most often (IoU >= 0.5 in a frame)."""
    votes: dict[int, dict[int, int]] = {}
    for truth, det in zip(clip.truth, frames):
        iou = iou_matrix(truth.boxes, det.xyxy.astype(np.float64))
        for j, tid in enumerate(det.track_ids.tolist()):
            if len(truth.ids) and iou[:, j].max() >= 0.5:
                gt = int(truth.ids[int(iou[:, j].argmax())])
                votes.setdefault(tid, {}).setdefault(gt, 0)
                votes[tid][gt] += 1
    return {tid: max(v, key=v.get) for tid, v in votes.items()}


@pytest.mark.timeout(300)
def test_line_and_zone_counts_equal_the_truth_for_well_detected_objects(clips, made_clips):
    lines = [parse_line(t) for t in LINES]
    zone = parse_zone(ZONE)
    checked = crossings = 0
    steadier = DetectorModel(miss=0.02, burst=0.003)  # more objects reach 90 %: more of them are checked
    runs = [*clips, *((clip, *simulate_detections(clip, NAMES, seed=10 + k, model=steadier)) for k, clip in enumerate(made_clips))]
    for clip, detections, rates in runs:
        session = TrackSession(TrackingOptions(lines=tuple(lines), zones=(zone,)))
        events, frames = [], []
        for f, det in enumerate(detections):
            out = session.update(det, f)
            events += out.events
            frames.append(out.detections)
        owner = _truth_of_tracks(clip, frames)
        polygon = zone.pixels((480, 640)).astype(np.float32)
        for gt, rate in rates.items():
            if rate < 0.9:
                continue
            path = list(clip.centers(gt).values())
            if _near_end(path, lines, polygon):
                continue
            mine = [e for e in events if owner.get(e["track_id"]) == gt]
            for line in lines:
                a, b = line.pixels((480, 640))
                expected = _crossings(path, a, b)[:1]  # counted once per object
                got = [e["direction"] for e in mine if e["name"] == line.name]
                assert got == expected, (clip.name, gt, line.name, got, expected)
                crossings += len(expected)
            inside = [cv2.pointPolygonTest(polygon, (float(x), float(y)), False) > 0 for x, y in path]  # OpenCV as the oracle
            expected_zone = [("enter" if now else "exit") for before, now in zip([False, *inside], inside) if before != now]
            got_zone = [e["event"] for e in mine if e["name"] == zone.name]
            assert got_zone == expected_zone, (clip.name, gt, got_zone, expected_zone)
            crossings += len(expected_zone)
            checked += 1
    assert checked >= 20 and crossings >= 20, (checked, crossings)  # the comparison covers many objects and events
