"""Several cameras at once on one pool of workers (engines/threads.py, engines/lanes.py): fairness, isolation of a
stalled or failing camera, states, the bound on files read at once, per-camera tracking, and the command line.
Stand-in cameras here give frames in real time; tests/test_live_cameras.py does the same with real RTSP servers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from corpus import make_clip, run_cli
from edgeseg import Detections, EdgesegError, Segmenter
from edgeseg.engines.threads import Camera, StreamRunner, camera_name, camera_names
from edgeseg.sources import Source, SourceItem
from edgeseg.sources.base import CONNECTING, ENDED, LIVE, RECONNECTING
from edgeseg.tracking import TrackingOptions, parse_line

pytestmark = pytest.mark.timeout(60)  # a scheduler bug shows as a hang: fail the test in seconds, not the run


class PacedCamera(Source):
    """A stand-in live camera: ``frames`` frames at ``fps`` in real time, each filled with ``value`` (so a worker can
    tell whose frame it has); ``stall`` (start, seconds): it stops giving frames for a while, ``fail_after``: it
    raises as a stream that stays down does."""

    live = True

    def __init__(self, name: str, *, fps: float, frames: int, value: int = 0, stall=None, fail_after: int | None = None) -> None:
        self.name, self.fps, self.frames, self.value = name, fps, frames, value
        self.stall, self.fail_after = stall, fail_after
        self.warnings: list[str] = []
        self.closed = threading.Event()

    def __iter__(self):
        t0 = time.monotonic()
        for i in range(self.frames):
            if self.fail_after is not None and i == self.fail_after:
                raise EdgesegError("the stream stopped and did not come back in 2 tries", self.name)
            if self.stall is not None and i == self.stall[0]:
                if self.state_listener:
                    self.state_listener(RECONNECTING, "no frame for a while")
                if self.closed.wait(self.stall[1]):
                    return
                t0 += self.stall[1]
                if self.state_listener:
                    self.state_listener(LIVE, "back")
            delay = t0 + i / self.fps - time.monotonic()
            if delay > 0 and self.closed.wait(delay):
                return
            yield SourceItem(i, self.name, image=np.full((8, 8, 3), self.value, np.uint8), time_s=i / self.fps)

    def close(self) -> None:
        self.closed.set()


class SlowDetector:
    """A predictor that takes ``ms`` per frame (inference as the bottleneck)."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def __call__(self, image: np.ndarray) -> Detections:
        time.sleep(self.ms / 1000)
        return Detections.empty(image.shape[:2])


def arrivals(frames) -> dict[str, list[tuple[float, int]]]:
    seen: dict[str, list[tuple[float, int]]] = {}
    for frame in frames:
        seen.setdefault(frame.camera, []).append((time.monotonic(), frame.index))
    return seen


def test_every_camera_gets_its_share_when_inference_is_the_bottleneck():
    """40, 10 and 10 frames/s offered to one worker that does 20: round robin gives each about a third. Taking the
    fast camera first whenever it has a frame (no turns) would starve the other two."""
    cams = [PacedCamera("fast", fps=40, frames=120), PacedCamera("a", fps=10, frames=30), PacedCamera("b", fps=10, frames=30)]
    runner = StreamRunner([SlowDetector(50)])
    seen = arrivals(runner.run_all(cams))
    counts = {name: len(seen.get(name, [])) for name in ("fast", "a", "b")}
    window = {name: [t for t, _ in seen[name] if t < seen["a"][-1][0]] for name in counts}  # while all three are live
    shares = [len(v) for v in window.values()]
    assert min(shares) >= 0.85 * max(shares), (shares, counts)
    for name, stats in runner.cameras.items():
        assert stats.frames + stats.dropped == {"fast": 120, "a": 30, "b": 30}[name]  # every frame delivered or counted
        assert [i for _, i in seen[name]] == sorted(i for _, i in seen[name])  # each camera in its own order


def test_a_stalled_camera_holds_up_no_other_and_is_reported():
    states: list[tuple[str, str]] = []
    cams = [PacedCamera("stalls", fps=20, frames=60, stall=(10, 2.0)), PacedCamera("steady", fps=20, frames=60)]
    runner = StreamRunner([SlowDetector(5), SlowDetector(5)])
    seen = arrivals(runner.run_all(cams, on_state=lambda s: states.append((s.camera, s.state))))
    gaps = np.diff([t for t, _ in seen["steady"]])
    assert gaps.max() < 0.5  # the other camera's frames kept coming through the stall
    assert states.count(("stalls", RECONNECTING)) == 1 and runner.cameras["stalls"].reconnects == 1
    assert [s for c, s in states if c == "steady"] == [CONNECTING, LIVE, ENDED]  # a live camera is known before its frames
    assert [s for c, s in states if c == "stalls"] == [CONNECTING, LIVE, RECONNECTING, LIVE, ENDED]
    assert len(seen["stalls"]) == len(seen["steady"]) == 60


def test_a_failing_camera_ends_alone_with_its_reason():
    states: list[tuple[str, str, str]] = []
    cams = [PacedCamera("dies", fps=50, frames=50, fail_after=10), PacedCamera("lives", fps=50, frames=50)]
    runner = StreamRunner([SlowDetector(1)])
    seen = arrivals(runner.run_all(cams, on_state=lambda s: states.append((s.camera, s.state, s.state_detail))))
    assert [i for _, i in seen["dies"]] == list(range(10)) and len(seen["lives"]) == 50
    assert str(runner.failures["dies"]) == "dies: the stream stopped and did not come back in 2 tries"
    assert ("dies", ENDED, "dies: the stream stopped and did not come back in 2 tries") in states


def test_a_stopped_run_closes_a_camera_that_waits_to_reconnect():
    cam = PacedCamera("down", fps=20, frames=100, stall=(2, 60.0))
    frames = StreamRunner([SlowDetector(1)]).run_all([cam, PacedCamera("up", fps=20, frames=100)])
    for _ in range(5):
        next(frames)
    t0 = time.monotonic()
    frames.close()
    assert time.monotonic() - t0 < 2 and cam.closed.is_set()
    time.sleep(0.2)
    assert not any(t.name.startswith("edgeseg-") for t in threading.enumerate())


def test_files_given_together_are_read_a_few_at_a_time_and_lose_nothing():
    open_now, most = [0], [0]
    lock = threading.Lock()

    class File(PacedCamera):
        live = False

        def __iter__(self):
            with lock:
                open_now[0] += 1
                most[0] = max(most[0], open_now[0])
            try:
                yield from super().__iter__()
            finally:
                with lock:
                    open_now[0] -= 1

    files = [File(f"clip{k}", fps=1000, frames=25, value=k) for k in range(6)]
    runner = StreamRunner([SlowDetector(1), SlowDetector(1)], max_files=2)
    seen = arrivals(runner.run_all(files))
    assert most[0] == 2
    assert {name: [i for _, i in v] for name, v in seen.items()} == {f"clip{k}": list(range(25)) for k in range(6)}
    assert runner.stats.frames == 150 and runner.stats.dropped == 0


def test_camera_names_are_short_and_unique():
    specs = ("rtsp://user:pw@10.0.0.5:554/cam1/live", "rtsp://10.0.0.5:554", "0", "/data/door.mp4", "mipi:1@1280x720", "mipi")
    assert [camera_name(s) for s in specs] == ["live", "10.0.0.5-554", "cam0", "door", "mipi1", "mipi"]
    cams = [Camera(PacedCamera(n, fps=1, frames=0)) for n in ("a/x.mp4", "b/x.mp4", "x.mp4")] + [
        Camera(PacedCamera("y", fps=1, frames=0), name="x-2")
    ]
    assert camera_names(cams) == ["x", "x-3", "x-4", "x-2"]
    with pytest.raises(EdgesegError, match="given twice: door"):
        camera_names([Camera(PacedCamera("a", fps=1, frames=0), name="door")] * 2)


# --- the real model: per-camera tracking --------------------------------------------------------------------


def _slide(path: Path, shifts, size=None) -> Path:
    from edgeseg.predict import SAMPLE_IMAGE

    image = cv2.imread(str(SAMPLE_IMAGE))
    h, w = image.shape[:2]
    frames = [cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)) for dx in shifts]
    if size is not None:
        frames = [cv2.resize(f, size) for f in frames]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path


SHIFTS = [*range(-96, 97, 32), *range(64, -97, -32)]


def _tracked(frames) -> list[tuple[int, list[int], list[float], dict]]:
    return [(f.index, f.detections.track_ids.tolist(), f.detections.xyxy.round(3).ravel().tolist(), f.tracking.counts) for f in frames]


@pytest.mark.slow
def test_each_camera_tracks_and_counts_as_it_would_alone(tmp_path, default_model):
    """Two cameras of the same clip give the same ids and counts as the clip alone; a third whose frame size
    changes midway (its tracks reset) changes nothing of the others'."""
    clip = _slide(tmp_path / "slide.mp4", SHIFTS)
    resized = _slide(tmp_path / "resized.mp4", SHIFTS[:7])
    tracking = TrackingOptions(lines=(parse_line("gate=0.4,0,0.4,1"),))
    seg = Segmenter(default_model, threads=1)
    alone = _tracked(seg.stream(clip, track=tracking))
    assert sum(len(ids) for _, ids, _, _ in alone) > 20 and alone[-1][3]["lines"]["gate"]["out"] > 0  # it means something

    class Concat(Source):  # a camera whose size changes midway: the slide at 640x640, then 320x320
        name, live, fps, warnings = "resizes", False, 10.0, []

        def __iter__(self):
            k = 0
            for path in (clip, resized):
                cap = cv2.VideoCapture(str(path))
                while (got := cap.read())[0]:
                    image = got[1] if path == clip else cv2.resize(got[1], (320, 320))
                    yield SourceItem(k, self.name, image=image, time_s=k / 10)
                    k += 1

    from edgeseg.sources import open_sources

    cams = [Camera(open_sources([clip]).sources[0], name=n, tracking=tracking) for n in ("one", "two")]
    cams.append(Camera(Concat(), name="resizes", tracking=tracking))
    stream = seg.stream(cams, workers=2)
    by_camera: dict[str, list] = {}
    for frame in stream:
        by_camera.setdefault(frame.camera, []).append(frame)
    assert _tracked(by_camera["one"]) == alone and _tracked(by_camera["two"]) == alone
    assert any("tracks were reset" in w for w in stream.sessions["resizes"].warnings)
    assert stream.sessions["one"].counts() == stream.sessions["two"].counts()


@pytest.mark.slow
def test_the_command_line_runs_every_video_at_once_into_its_own_files(tmp_path, coco128_images, default_model):
    a = make_clip(tmp_path / "door.mp4", coco128_images[:6])
    b = make_clip(tmp_path / "yard.mp4", coco128_images[6:14])
    proc = run_cli("predict", default_model, a, b, "--save-jsonl", tmp_path / "out.jsonl", "--workers", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr
    for k, (name, count) in enumerate((("door", 6), ("yard", 8)), 1):
        lines = [json.loads(line) for line in (tmp_path / f"out-{k}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in lines] == list(range(count))  # strictly in frame order, none lost
        assert {r["camera"] for r in lines} == {name}
        assert f"{name}: {count} frame(s), 0 failed, 0 dropped" in proc.stdout
        states = [line.split(f" {name}: ", 1)[1].split(":")[0] for line in proc.stderr.splitlines() if f" edgeseg: {name}: " in line]
        assert states == [LIVE, ENDED], proc.stderr  # one line per state change, with the time before the name
    assert CONNECTING not in proc.stderr  # files are never "connecting"
