"""Cameras and streams run unattended, against real RTSP cameras (GStreamer's RTSP server, benchmarks/rtsp_server.py)
serving coco128-seg pictures in real time: a camera that drops, stalls, or is down when the run starts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from corpus import error_reason, run_cli
from edgeseg.sources import RetryPolicy, VideoSource

pytestmark = pytest.mark.timeout(90)  # a reader that never comes back fails its test, not the run


class Reader:
    """Iterates a source on a thread of its own, as an engine's reader does, and keeps what came with its arrival
    time: each frame's index, ``time_s``, shape and the served picture it shows; each state change."""

    def __init__(self, source: VideoSource, camera) -> None:
        self.source, self.camera = source, camera
        self.frames: list[tuple[float, int, float | None, tuple, int]] = []  # (arrived, index, time_s, shape, picture)
        self.states: list[tuple[float, str, str]] = []  # (when, state, detail)
        self.error: BaseException | None = None
        source.state_listener = lambda state, detail: self.states.append((time.monotonic(), state, detail))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for item in self.source:
                picture = self.camera.frame_index(item.image)
                self.frames.append((time.monotonic(), item.index, item.time_s, item.image.shape, picture))
        except BaseException as exc:  # noqa: BLE001 (the test reports it)
            self.error = exc

    def wait_for(self, condition, timeout_s: float, what: str) -> float:
        """Poll until ``condition()``; the time it became true. Fails the test with ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"no {what} within {timeout_s} s; states {self.states}"
            time.sleep(0.02)
        return time.monotonic()

    def frames_after(self, t: float) -> list:
        return [f for f in self.frames if f[0] > t]

    def close(self) -> None:
        self.source.close()
        self.thread.join(5)
        assert not self.thread.is_alive() and self.error is None, self.error

    def changes(self) -> list[str]:
        """The states in order, repeats of one state (a longer wait reported) folded."""
        names = [s for _, s, _ in self.states]
        return [s for k, s in enumerate(names) if k == 0 or names[k - 1] != s]


def assert_consecutive(pictures: list[int], served: int) -> None:
    """Each frame shows the picture after the one before (the camera's loop over ``served`` pictures)."""
    assert len(pictures) > 1
    assert all(b == (a + 1) % served for a, b in zip(pictures, pictures[1:])), pictures


def test_a_real_camera_gives_its_pictures_in_order_at_its_own_pace(rtsp_camera):
    source = VideoSource(rtsp_camera.url)
    assert source.fps is None and source.size is None and source.live  # nothing opened before the iteration
    reader = Reader(source, rtsp_camera)
    reader.wait_for(lambda: len(reader.frames) >= 50, 40, "50 frames")
    reader.close()
    assert [(s, d) for _, s, d in reader.states] == [("live", "640x480 at 10 fps")]
    assert source.fps == 10.0 and source.size == (640, 480)
    _, indices, times, shapes, pictures = zip(*reader.frames)
    assert list(indices) == list(range(len(indices))) and set(shapes) == {(480, 640, 3)}
    assert pictures[0] == 0  # a new client starts at the camera's first picture
    assert_consecutive(list(pictures), len(rtsp_camera.frames))
    assert min(np.diff(times)) >= 0  # FFmpeg stamps the first two frames of a stream alike; then its own clock: 10 fps
    np.testing.assert_allclose(np.diff(times)[2:], 0.1, atol=0.005)
    arrived = [f[0] for f in reader.frames]
    assert arrived[49] - arrived[29] >= 1.5  # after the opening burst, frames come at the camera's pace (20 at 10 fps)


def test_a_camera_that_drops_is_reported_within_seconds_and_its_frames_resume(rtsp_camera):
    source = VideoSource(rtsp_camera.url)
    reader = Reader(source, rtsp_camera)
    reader.wait_for(lambda: len(reader.frames) >= 15, 40, "15 frames")
    stopped = time.monotonic()
    rtsp_camera.stop()
    reported = reader.wait_for(lambda: "reconnecting" in reader.changes(), 10, "reconnecting")
    time.sleep(max(0.0, stopped + 3 - time.monotonic()))
    started = time.monotonic()
    rtsp_camera.start()
    reader.wait_for(lambda: len(reader.frames_after(started)) >= 15, 40, "15 frames after the camera came back")
    reader.close()

    assert reported - stopped < 5
    assert reader.changes() == ["live", "reconnecting", "live"]  # one reconnect
    before = [f for f in reader.frames if f[0] <= reported]
    after = reader.frames_after(reported)
    assert not [f for f in reader.frames if stopped + 1 < f[0] < started]  # nothing while the camera was down
    drop = next(d for _, s, d in reader.states if s == "reconnecting")
    assert drop == f"the stream stopped after frame {before[-1][1]}"
    back = [d for _, s, d in reader.states if s == "live"][1]
    assert back.startswith("reconnected after ") and 2.5 <= float(back.split()[2]) < 40
    indices = [f[1] for f in reader.frames]
    assert indices == sorted(set(indices)) and after[0][1] == before[-1][1] + 1  # frame numbers go on
    assert after[0][4] == 0  # the camera's pictures from its first again: a fresh connection
    assert_consecutive([f[4] for f in after], len(rtsp_camera.frames))
    times = [f[2] for f in reader.frames]
    assert all(b >= a for a, b in zip(times, times[1:]))  # time_s goes on across the reconnect (the outage included)
    assert after[0][2] - before[-1][2] >= 2.5
    assert source.warnings == [f"{rtsp_camera.url}: stream dropped after frame {before[-1][1]}; reconnected"]


def test_a_stalled_camera_is_found_within_the_read_timeout_and_picked_up_again(rtsp_camera):
    source = VideoSource(rtsp_camera.url, retry=RetryPolicy(open_timeout_s=5, read_timeout_s=3))
    reader = Reader(source, rtsp_camera)
    reader.wait_for(lambda: len(reader.frames) >= 40, 40, "40 frames")  # past the opening burst: frames come live
    frozen = time.monotonic()
    rtsp_camera.freeze()  # connection open, no frames: only the read timeout can tell
    reported = reader.wait_for(lambda: "reconnecting" in reader.changes(), 15, "reconnecting")
    thawed = time.monotonic()
    rtsp_camera.thaw()
    reader.wait_for(lambda: len(reader.frames_after(thawed)) >= 10, 60, "10 frames after the camera went on")
    reader.close()

    assert 2.5 <= reported - frozen < 5  # the read timeout (3 s), not FFmpeg's own waits (3 s per frame in its decoder)
    drop = next(d for _, s, d in reader.states if s == "reconnecting")
    assert drop.startswith("the stream stopped after frame ") and drop.endswith(" (no frame for 3 s)")
    assert reader.changes()[:3] == ["live", "reconnecting", "live"]
    assert reader.frames_after(thawed)[0][1] > reader.frames[39][1]


def test_a_camera_down_when_the_run_starts_is_waited_for_then_streams(rtsp_cameras):
    (camera,) = rtsp_cameras(1, running=False)
    built: list[VideoSource] = []  # forever by default: no error, and no wait for the camera (built aside: a wait fails fast)
    builder = threading.Thread(target=lambda: built.append(VideoSource(camera.url)), daemon=True)
    builder.start()
    builder.join(2)
    assert len(built) == 1, "building the source waited for its camera"
    source = built[0]
    assert source.fps is None and source.size is None
    reader = Reader(source, camera)
    reader.wait_for(lambda: len(reader.states) >= 2, 10, "two reports of the tries")
    time.sleep(1)
    assert reader.frames == [] and reader.changes() == ["connecting"]
    assert reader.states[0][2].startswith("cannot reach the stream (try 1); next try in 0.")
    assert reader.states[1][2].startswith("cannot reach the stream (try 2); next try in ")
    started = time.monotonic()
    camera.start()
    reader.wait_for(lambda: len(reader.frames) >= 5, 40, "5 frames")
    reader.close()
    assert reader.changes() == ["connecting", "live"] and reader.states[-1][2] == "640x480 at 10 fps"
    assert reader.frames[0][0] > started and reader.frames[0][1] == 0 and reader.frames[0][4] == 0
    assert source.fps == 10.0 and source.size == (640, 480) and source.warnings == []


def test_retries_gives_todays_finite_behaviour_a_one_line_error_after_n_tries(default_model):
    from rtsp_server import free_port

    url = f"rtsp://127.0.0.1:{free_port()}/live"  # nobody listens: refused at once
    proc = run_cli("predict", default_model, url, "--retries", "2", timeout=30)  # forever would hang: fail it in 30 s
    assert proc.returncode != 0
    assert error_reason(proc, url) == "cannot read the stream (unreachable or no video) after 2 tries"
