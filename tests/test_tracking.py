"""The tracker and counters on their own: assignment against scipy, the Kalman filter and ByteTrack against
Ultralytics', identities through dropped frames, mask IoU against pycocotools, counting rules, the bad-input
corpus of --line/--zone, and the import footprint a board can afford."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.results import Detections
from edgeseg.tracking import ByteTracker, TrackerConfig, TrackingOptions, TrackSession, parse_line, parse_zone
from edgeseg.tracking.assignment import linear_assignment
from edgeseg.tracking.counting import LineCounter, ZoneCounter
from edgeseg.tracking.geometry import check_names
from edgeseg.tracking.similarity import local_mask_iou

SHAPE = (480, 640)


def dets(boxes, scores=None, classes=None, shape=SHAPE, names=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    scores = np.asarray(scores if scores is not None else [0.9] * n, np.float32)
    classes = np.asarray(classes if classes is not None else [0] * n, np.int64)
    return Detections(boxes, scores, classes, shape, names or {0: "person", 1: "car"})


def tracked(boxes, ids, classes=None) -> Detections:
    d = dets(boxes, classes=classes)
    d.track_ids = np.asarray(ids, np.int64)
    return d


# ------------------------------------------------------------------------------------------ assignment


def test_gated_assignment_is_optimal_against_scipy():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(0)
    for _ in range(400):
        n, m = (int(v) for v in rng.integers(0, 10, 2))
        cost = rng.random((n, m))
        if rng.random() < 0.5:
            cost = np.round(cost, 1)  # ties
        thresh = float(rng.random())
        matches, free_rows, free_cols = linear_assignment(cost, thresh)
        # scipy on the same problem written as a square one: leaving a row or a column unmatched costs 0
        big = np.full((n + m, n + m), 1e6)
        big[:n, :m] = np.where(cost < thresh, cost - thresh, 1e6)
        big[np.arange(n), m + np.arange(n)] = 0
        big[n + np.arange(m), np.arange(m)] = 0
        big[n:, m:] = 0
        r, c = linear_sum_assignment(big)
        assert sum(cost[i, j] - thresh for i, j in matches) == pytest.approx(big[r, c].sum(), abs=1e-9)
        assert all(cost[i, j] < thresh for i, j in matches)
        assert sorted([*matches[:, 0], *free_rows]) == list(range(n))
        assert sorted([*matches[:, 1], *free_cols]) == list(range(m))


# ------------------------------------------------------------------------------------------ Kalman


@pytest.mark.parametrize(("ours", "theirs"), [("xyah", "KalmanFilterXYAH"), ("xywh", "KalmanFilterXYWH")])
def test_kalman_matches_ultralytics(ours, theirs):
    pytest.importorskip("ultralytics")
    from ultralytics.trackers.utils import kalman_filter

    from edgeseg.tracking.kalman import MODELS, full_covariance

    model, ref = MODELS[ours], getattr(kalman_filter, theirs)()
    rng = np.random.default_rng(1)
    xyxy = rng.uniform(0, 300, (5, 2))
    xyxy = np.concatenate([xyxy, xyxy + rng.uniform(20, 200, (5, 2))], axis=1)
    measured = model.measure(xyxy)
    mean, cov = model.initiate(measured)
    ref_states = [ref.initiate(z) for z in measured]
    for i, (m, c) in enumerate(ref_states):
        np.testing.assert_allclose(mean[i], m)
        np.testing.assert_allclose(full_covariance(cov)[i], c)
    for step in range(4):  # the same sequence, one track at a time through Ultralytics' filter
        z = model.measure(xyxy + step * 3 + rng.normal(0, 2, xyxy.shape))
        mean, cov = model.predict(mean, cov, 1.0)
        mean, cov = model.update(mean, cov, z)
        ref_states = [ref.update(*ref.predict(m, c), z[i]) for i, (m, c) in enumerate(ref_states)]
        for i, (m, c) in enumerate(ref_states):
            np.testing.assert_allclose(mean[i], m, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(full_covariance(cov)[i], c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.boxes(model.measure(xyxy)), xyxy)
    # three frames at once move the mean as three single steps do
    m3, _ = model.predict(mean.copy(), cov.copy(), 3.0)
    m1, c1 = mean, cov
    for _ in range(3):
        m1, c1 = model.predict(m1, c1, 1.0)
    np.testing.assert_allclose(m3, m1)


# ------------------------------------------------------------------------------------------ ByteTrack


class _UltralyticsBoxes:
    """What Ultralytics' BYTETracker reads from its Results: conf, cls, xywh, boolean indexing."""

    def __init__(self, det: Detections) -> None:
        self.conf = det.scores.astype(np.float64)
        self.cls = det.class_ids.astype(np.float64)
        xyxy = det.xyxy.astype(np.float64)
        self.xywh = np.column_stack([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]])

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, keep):
        out = object.__new__(_UltralyticsBoxes)
        out.conf, out.cls, out.xywh = self.conf[keep], self.cls[keep], self.xywh[keep]
        return out


def _random_walk(seed: int, objects: int = 8, frames: int = 60) -> list[Detections]:
    """Objects moving and growing (or shrinking), with random misses and 4-frame dropouts (lost tracks)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(50, 550, (objects, 2))
    vel = rng.uniform(-6, 6, (objects, 2))
    size = rng.uniform(30, 80, (objects, 2))
    growth = rng.uniform(-0.4, 1.2, (objects, 2))
    base = rng.uniform(0.2, 0.95, objects)
    gone_until = np.zeros(objects)
    out = []
    for f in range(frames):
        c = pos + f * vel
        half = (size + f * growth) / 2
        boxes = np.concatenate([c - half, c + half], 1) + rng.normal(0, 1.5, (objects, 4))
        scores = np.clip(base + rng.normal(0, 0.1, objects), 0.05, 0.99)
        gone_until[rng.random(objects) < 0.03] = f + 4
        keep = (rng.random(objects) > 0.1) & (gone_until <= f)
        out.append(dets(boxes[keep], scores[keep]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_bytetrack_gives_the_same_tracks_as_ultralytics(seed):
    """Fed the same detections with the same settings (bytetrack.yaml, fuse_score included, ByteTrack's XYAH
    state), edgeseg's tracker keeps the same detections as Ultralytics' BYTETracker in every frame and groups
    them into the same tracks (ids are renamed: Ultralytics also spends ids on tracks never confirmed)."""
    pytest.importorskip("ultralytics")
    from ultralytics.trackers.byte_tracker import BYTETracker

    yaml_settings = dict(
        track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25, track_buffer=30, match_thresh=0.8, fuse_score=True
    )
    ref = BYTETracker(SimpleNamespace(tracker_type="bytetrack", **yaml_settings))
    ours = ByteTracker(TrackerConfig(**yaml_settings, motion="xyah"))
    ours_to_ref: dict[int, int] = {}
    frames_compared = states_compared = 0
    for f, det in enumerate(_random_walk(seed)):
        theirs = ref.update(_UltralyticsBoxes(det))
        mine = ours.update(det, f)
        their_rows = sorted((int(r[7]), int(r[4])) for r in theirs)  # (detection index, id)
        mine_boxes = [tuple(np.round(b, 3)) for b in mine.xyxy]
        their_boxes = [tuple(np.round(det.xyxy[i], 3)) for i, _ in their_rows]
        assert sorted(mine_boxes) == sorted(their_boxes), f"frame {f}: other detections kept"
        for box, tid in zip(mine_boxes, mine.track_ids.tolist()):
            ref_id = their_rows[their_boxes.index(box)][1]
            assert ours_to_ref.setdefault(tid, ref_id) == ref_id, f"frame {f}: track {tid} is {ref_id} there, was {ours_to_ref[tid]}"
        frames_compared += len(mine)
        # and the same Kalman states, lost tracks included (they stop growing while lost)
        their_means = {t.track_id: t.mean for t in (*ref.tracked_stracks, *ref.lost_stracks)}
        for k, tid in enumerate(ours.ids.tolist()):
            if tid in ours_to_ref and ours_to_ref[tid] in their_means:
                np.testing.assert_allclose(ours.mean[k], their_means[ours_to_ref[tid]], rtol=1e-4, atol=1e-3)
                states_compared += 1
    assert len(set(ours_to_ref.values())) == len(ours_to_ref)  # one to one
    assert states_compared > 200
    assert frames_compared > 200


@pytest.mark.parametrize("gap", ["empty frames", "skipped indices"])
def test_a_track_survives_three_dropped_frames(gap):
    tracker = ByteTracker()
    ids = []
    for f in range(20):
        box = [[100 + 8 * f, 200, 140 + 8 * f, 280], [500 - 8 * f, 100, 540 - 8 * f, 180]]
        if 8 <= f < 11:  # the first object is not detected for three frames
            if gap == "empty frames":
                tracker.update(dets(box[1:]), f)
            continue
        out = tracker.update(dets(box), f if gap == "empty frames" else f)
        ids.append(out.track_ids.tolist())
    assert all(i == [1, 2] for i in ids), ids


def test_motion_is_predicted_over_the_frame_index():
    """Every 5th frame of a moving object (a video stride of 5): one identity, though consecutive boxes
    never overlap."""
    tracker = ByteTracker()
    ids = set()
    for f in range(0, 100, 5):
        x = 10 + 12 * f  # 60 px per processed frame, boxes 40 px wide
        out = tracker.update(dets([[x, 100, x + 40, 160]]), f)
        ids.update(out.track_ids.tolist())
    assert ids == {1}


def test_frames_out_of_order_and_bad_settings_are_one_line_errors():
    tracker = ByteTracker()
    tracker.update(dets([[0, 0, 10, 10]]), 5)
    with pytest.raises(EdgesegError, match="frame index 5 after 5"):
        tracker.update(dets([[0, 0, 10, 10]]), 5)
    with pytest.raises(EdgesegError, match="track_high_thresh"):
        TrackerConfig(track_high_thresh=1.5)
    with pytest.raises(EdgesegError, match="iou must be one of"):
        TrackerConfig(iou="polygon")
    with pytest.raises(EdgesegError, match="needs detections with masks"):
        ByteTracker(TrackerConfig(iou="mask")).update(dets([[0, 0, 10, 10]]), 0)


def test_tracker_yaml_of_ultralytics_is_read(tmp_path):
    pytest.importorskip("ultralytics")
    from pathlib import Path

    import ultralytics

    config = TrackerConfig.from_yaml(Path(ultralytics.__file__).parent / "cfg" / "trackers" / "bytetrack.yaml")
    assert config == TrackerConfig(fuse_score=True)  # edgeseg's defaults are Ultralytics' but for fuse_score
    (tmp_path / "bot.yaml").write_text("tracker_type: botsort\n")
    with pytest.raises(EdgesegError, match="botsort"):
        TrackerConfig.from_yaml(tmp_path / "bot.yaml")


def test_mask_iou_matches_pycocotools():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(3)
    for _ in range(30):
        a = rng.random((rng.integers(5, 40), rng.integers(5, 40))) > 0.4
        b = rng.random((rng.integers(5, 40), rng.integers(5, 40))) > 0.4
        oa, ob = tuple(int(v) for v in rng.integers(0, 30, 2)), tuple(int(v) for v in rng.integers(0, 30, 2))
        full = []
        for m, (x, y) in ((a, oa), (b, ob)):
            canvas = np.zeros((80, 80), np.uint8, order="F")
            canvas[y : y + m.shape[0], x : x + m.shape[1]] = m
            full.append(coco_mask.encode(canvas))
        expected = coco_mask.iou([full[0]], [full[1]], [0])[0, 0]
        assert local_mask_iou(a, oa, b, ob) == pytest.approx(expected)


def test_the_core_tracker_imports_no_heavy_package():
    code = (
        "import sys, numpy as np\n"
        "from edgeseg.results import Detections\n"
        "from edgeseg.tracking import ByteTracker, TrackerConfig, TrackSession, TrackingOptions, parse_line, parse_zone\n"
        "d = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), np.array([0]), (20, 20), {},"
        " [np.ones((10, 10), bool)], np.array([[0, 0]]))\n"
        "s = TrackSession(TrackingOptions(tracker=TrackerConfig(iou='mask'), lines=(parse_line('a=0,5,20,5'),),\n"
        "                                 zones=(parse_zone('z=0,0,9,0,9,9'),)))\n"
        "for f in range(3): s.update(d, f)\n"
        "bad = sorted(m for m in ('torch', 'scipy', 'supervision', 'trackers', 'ultralytics', 'lap') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_line, "door=1,2,3", "--line door: expected 4 numbers x1,y1,x2,y2, got 3"),
        (parse_line, "door=1,2,3,4,5", "--line door: expected 4 numbers x1,y1,x2,y2, got 5"),
        (parse_line, "1,2,3,4", "--line '1,2,3,4': expected NAME=x1,y1,x2,y2"),
        (parse_line, "=1,2,3,4", "expected NAME=x1,y1,x2,y2"),
        (parse_line, "door=1,2,x,4", "--line door: expected NAME=x1,y1,x2,y2, got '1,2,x,4'"),
        (parse_line, "door=1,nan,3,4", "--line door: coordinates must be finite numbers"),
        (parse_line, "door=1,2,inf,4", "--line door: coordinates must be finite numbers"),
        (parse_line, "door=5,5,5,5", "--line door: its two points are the same"),
        (parse_zone, "lot=0,0,10,10", "--zone lot: a zone needs at least 3 points, got 2"),
        (parse_zone, "lot=0,0,10,10,5", "--zone lot: expected x,y pairs, got 5 numbers"),
        (parse_zone, "lot=0,0,10,10,20,20", "--zone lot: the polygon has zero area"),
        (parse_zone, "lot=0,0,10,0,-inf,5", "--zone lot: coordinates must be finite numbers"),
    ],
)
def test_bad_lines_and_zones_are_one_line_errors(parse, text, message):
    with pytest.raises(EdgesegError) as err:
        parse(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_names_are_unique_and_far_points_warn():
    with pytest.raises(EdgesegError, match="--zone door: the name is already used by a --line"):
        check_names([parse_line("door=0,0,10,10"), parse_zone("door=0,0,10,0,10,10")])
    with pytest.raises(EdgesegError, match="already used"):
        TrackingOptions(lines=(parse_line("a=0,0,10,10"), parse_line("a=0,5,10,5")))
    far = parse_line("gate=0,100,5000,100")
    assert far.warnings_for(SHAPE) == ["--line gate: point (5000, 100) is far outside the 640x480 frame"]
    assert parse_line("gate=0,100,700,100").warnings_for(SHAPE) == []  # a little outside is fine


def test_normalised_coordinates_scale_to_the_frame():
    line = parse_line("mid=0,0.5,1,0.5")
    np.testing.assert_allclose(line.pixels(SHAPE), [[0, 240], [640, 240]])
    np.testing.assert_allclose(parse_line("px=0,1,2,1").pixels(SHAPE), [[0, 1], [2, 1]])  # a number above 1: pixels


# ------------------------------------------------------------------------------------------ counting


def _box_at(cx, cy, half=10):
    return [cx - half, cy - half, cx + half, cy + half]


def test_line_counts_each_track_once_with_its_direction():
    counter = LineCounter(parse_line("door=100,200,500,200"), SHAPE)
    events = []
    # track 1 walks down across the line, back up and down again; track 2 walks up; track 3 passes beside the
    # segment (crosses the infinite line, not the segment); track 4 (a car) stops on the line
    paths = {1: [150, 190, 210, 190, 210], 2: [260, 230, 180, 150, 120], 3: [150, 190, 210, 250, 300], 4: [150, 180, 200, 200, 200]}
    xs = {1: 150, 2: 300, 3: 600, 4: 450}
    for f in range(5):
        det = tracked([_box_at(xs[t], paths[t][f]) for t in paths], list(paths), classes=[0, 0, 0, 1])
        events += counter.update(det, f)
    assert [(e["track_id"], e["direction"]) for e in events] == [(1, "in"), (2, "out"), (4, "in")]
    assert counter.counts() == {"in": 2, "out": 1, "by_class": {"car": {"in": 1, "out": 0}, "person": {"in": 1, "out": 1}}}


def test_zone_enter_exit_and_occupancy_per_class():
    counter = ZoneCounter(parse_zone("lot=100,100,300,100,300,300,100,300"), SHAPE)
    frames = [
        {1: (50, 200), 2: (200, 200)},  # 2 appears inside: an entry
        {1: (150, 200), 2: (210, 200), 3: (250, 250)},  # 1 walks in, 3 (a car) appears inside
        {1: (350, 200), 3: (250, 250)},  # 1 walks out; 2 is not seen (no exit without being seen outside)
    ]
    log = []
    for f, objects in enumerate(frames):
        ids = list(objects)
        det = tracked([_box_at(*objects[t]) for t in ids], ids, classes=[1 if t == 3 else 0 for t in ids])
        log.append(([(e["track_id"], e["event"]) for e in counter.update(det, f)], counter.counts()["occupancy_by_class"]))
    assert log == [([(2, "enter")], {"person": 1}), ([(1, "enter"), (3, "enter")], {"car": 1, "person": 2}), ([(1, "exit")], {"car": 1})]
    assert counter.counts()["entered"] == 3 and counter.counts()["exited"] == 1 and counter.counts()["occupancy"] == 1


def test_session_resets_tracks_when_the_frame_size_changes():
    session = TrackSession(TrackingOptions(lines=(parse_line("mid=0,0.5,1,0.5"),)), name="cam")
    for f in range(5):
        session.update(dets([_box_at(100, 150 + 30 * f, 40)]), f)  # crosses the middle line of 480 rows
    assert session.counts()["lines"]["mid"]["in"] == 1
    out = session.update(dets([_box_at(100, 100, 20)], shape=(720, 1280)), 5)
    assert session.warnings == ["cam: frame 5 is 1280x720, not 640x480: tracks were reset (ids start again; counts so far are kept)"]
    assert out.detections.track_ids.tolist() == [1]  # a fresh tracker: its first frame confirms at once
    np.testing.assert_allclose(session.counters[0].points, [[0, 360], [1280, 360]])
    assert session.counts()["lines"]["mid"]["in"] == 1
