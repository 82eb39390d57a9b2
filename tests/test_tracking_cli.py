"""`edgeseg predict --track` as a user runs it: ids, events and counts in every output, image directories as
sequences, the bad-input corpus of the tracking options, and `Segmenter.stream(track=True)`. The clip is the
project's sample image slid by multiples of 32 px (the memorising test model keeps seeing its objects)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from corpus import SLIDE_SHIFTS, error_reason, make_slide, run_cli, slid_frames
from edgeseg import Segmenter
from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE

pytestmark = pytest.mark.timeout(300)


LINE = "gate=0.4,0,0.4,1"  # a vertical line at x = 256 of 640, drawn top to bottom: moving right is "out"
ZONE = "right=0.6,0,1,0,1,1,0.6,1"


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    return make_slide(tmp_path_factory.mktemp("track") / "slide.mp4")


@pytest.fixture(scope="module")
def tracked_run(slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    outputs = ["--save-jsonl", out / "frames.jsonl", "--save-counts", out / "counts.json", "--save-video", out / "annotated.mp4"]
    proc = run_cli("predict", DEFAULT_MODEL, slide, "--track", "--line", LINE, "--zone", ZONE, "--workers", "2", *outputs)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    return proc, lines, json.loads((out / "counts.json").read_text()), out


def _crossings_from_records(lines: list[dict], x_line: float) -> dict[int, str]:
    """Track id -> direction of its first crossing of the vertical line, from the JSON Lines boxes alone."""
    last: dict[int, float] = {}
    first: dict[int, str] = {}
    for record in lines:
        for d in record["detections"]:
            x1, _, x2, _ = d["bbox_xyxy"]
            cx, tid = (x1 + x2) / 2, d["track_id"]
            if tid in last and tid not in first and (last[tid] < x_line) != (cx < x_line):
                first[tid] = "out" if cx > x_line else "in"
            last[tid] = cx
    return first


def test_every_output_carries_ids_events_and_counts(tracked_run, slide):
    proc, lines, counts, out = tracked_run
    assert [r["frame"] for r in lines] == list(range(len(SLIDE_SHIFTS)))
    classes: dict[int, str] = {}
    for record in lines:
        assert set(record) >= {"frame", "detections", "events", "counts"}
        ids = [d["track_id"] for d in record["detections"]]
        assert len(ids) == len(set(ids))  # one detection per id per frame
        for d in record["detections"]:
            assert classes.setdefault(d["track_id"], d["class_name"]) == d["class_name"]  # an id keeps its class
    # the three people walk right by 32 px a frame for 6 frames: each keeps one id all the way
    first_ids = {d["track_id"] for d in lines[0]["detections"]}
    assert len(first_ids) >= 3 and all(first_ids <= {d["track_id"] for d in r["detections"]} for r in lines[:7])
    scores = [d["score"] for r in lines for d in r["detections"]]
    assert min(scores) >= 0.1 and any(v < 0.25 for v in scores)  # --track decodes down to 0.1: the low band extends tracks
    expected = _crossings_from_records(lines, 0.4 * 640)
    events = [e for r in lines for e in r["events"] if e["type"] == "line"]
    assert {e["track_id"]: e["direction"] for e in events} == expected and len(events) == len(expected) >= 1
    assert counts["slide"] == lines[-1]["counts"]  # keyed by the camera's name, as its JSON Lines records say
    gate = lines[-1]["counts"]["lines"]["gate"]
    assert (gate["in"], gate["out"]) == (list(expected.values()).count("in"), list(expected.values()).count("out"))
    assert f"line gate: in {gate['in']}, out {gate['out']}" in proc.stdout
    assert "zone right: entered" in proc.stdout
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(SLIDE_SHIFTS)


def test_the_annotated_video_shows_the_line(tracked_run):
    """The counting line is drawn in white at x = 256 on every frame (its pixels are white in the output and
    not in the input)."""
    _, _, _, out = tracked_run
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    ok, frame = cap.read()
    assert ok
    column = frame[200:400, 254:259].astype(int)
    assert (column.min(axis=2) > 200).mean() > 0.5


@pytest.mark.slow
def test_image_directory_is_a_sorted_sequence(tmp_path):
    frames = slid_frames()[:7]
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, image in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{k:03d}.png"), image)
    proc = run_cli("predict", DEFAULT_MODEL, folder, "--track", "--save-json", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "out.json").read_text())
    per_image: dict[str, set[int]] = {}
    for r in records:
        per_image.setdefault(r["image"], set()).add(r["track_id"])
    assert sorted(per_image) == sorted(str(p) for p in folder.iterdir())
    assert len(set.intersection(*per_image.values())) >= 3  # the same people, the same ids, through the folder


@pytest.mark.slow
def test_single_image_and_frame_size_change_are_explained(tmp_path):
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, "--track")
    assert proc.returncode == 0
    assert "is a single image, not a sequence" in proc.stderr
    folder = tmp_path / "mixed"
    folder.mkdir()
    image = cv2.imread(str(SAMPLE_IMAGE))
    cv2.imwrite(str(folder / "a.png"), image)
    cv2.imwrite(str(folder / "b.png"), cv2.resize(image, (320, 240)))
    proc = run_cli("predict", DEFAULT_MODEL, folder, "--track")
    assert proc.returncode == 0
    assert "frame 1 is 320x240, not 640x480: tracks were reset" in proc.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--line", "a=1,2,3,4"], "--line needs --track"),
        (["--zone", "z=0,0,1,0,1,1"], "--zone needs --track"),
        (["--save-counts", "c.json"], "--save-counts needs --track"),
        (["--track", "--line", "a=1,2,3"], "--line a: expected 4 numbers x1,y1,x2,y2, got 3"),
        (["--track", "--line", "a=1,nan,3,4"], "--line a: coordinates must be finite numbers"),
        (["--track", "--zone", "z=0,0,1,1"], "--zone z: a zone needs at least 3 points, got 2"),
        (["--track", "--zone", "z=0,0,5,5,10,10"], "--zone z: the polygon has zero area"),
        (["--track", "--line", "a=1,2,3,4", "--zone", "a=0,0,9,0,9,9"], "--zone a: the name is already used by a --line"),
        (["--track", "--tracker", "deepsort"], "--tracker deepsort: expected one of bytetrack or a tracker .yaml file"),
        (["--track", "--ray", "--save-json", "x.json"], "--track does not work with --ray"),
    ],
)
def test_bad_tracking_options_are_one_line_errors_before_any_work(args, reason, tmp_path):
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, *args, cwd=tmp_path)
    assert error_reason(proc) == reason or error_reason(proc).startswith(reason), proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_far_outside_line_warns(slide, tmp_path):
    proc = run_cli("predict", DEFAULT_MODEL, slide, "--track", "--line", "far=0,100,5000,100", "--vid-stride", "6")
    assert proc.returncode == 0, proc.stderr
    assert "--line far: point (5000, 100) is far outside the 640x480 frame" in proc.stderr


def test_segmenter_stream_tracks(slide):
    seg = Segmenter(DEFAULT_MODEL)
    frames = list(seg.stream(slide, workers=2, track=True))
    assert len(frames) == len(SLIDE_SHIFTS)
    assert all(f.detections.track_ids is not None and f.tracking is not None for f in frames)
    assert 1 in frames[0].detections.track_ids.tolist() and 1 in frames[6].detections.track_ids.tolist()
