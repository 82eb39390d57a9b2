"""The one seam of outputs (``edgeseg.outputs``): every output's lifecycle through ``predict_sources`` and
``run_cameras`` (opened with the run's cameras and class names before any frame, every frame of its camera once
and in order, closed once), the failure rule in ``Fanout`` (``continue``: that output is dropped, the others and
the run go on, one line; ``stop``: the run or the camera stops, a frame it did not take is in no other output),
and ``Stamps``."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from corpus import make_clip
from edgeseg import PredictOutputs, Segmenter, predict_sources
from edgeseg.engines.command import CameraPlan, run_cameras
from edgeseg.engines.frames import StreamFrame
from edgeseg.errors import EdgesegError
from edgeseg.outputs import CameraInfo, Output, OutputBase, RunInfo, Stamps
from edgeseg.outputs.fanout import Fanout
from edgeseg.predict import DEFAULT_MODEL

pytestmark = pytest.mark.timeout(120)
FRAMES = 6


class Recorder(OutputBase):
    """Keeps what the run hands it: the RunInfo, each frame's (camera, index, ok), the states, the calls' order;
    raises ``EdgesegError`` at ``fail_at`` (a frame index) or at open."""

    def __init__(self, name: str = "recorder", on_failure: str = "continue", *, fail_at: int | None = None, fail_open: bool = False):
        super().__init__(name=name, on_failure=on_failure)
        self.fail_at, self.fail_open = fail_at, fail_open
        self.calls: list[str] = []
        self.frames: list[tuple[str, int, bool]] = []
        self.states: list[tuple[str, str]] = []
        self.opened_with: RunInfo | None = None
        self.thread_ids: set[int] = set()

    def open(self, run: RunInfo) -> None:
        self.calls.append("open")
        if self.fail_open:
            raise EdgesegError("the broker refused the password", self.name)
        self.opened_with = run

    def on_frame(self, frame, stats) -> None:
        self.calls.append("frame")
        if self.fail_at is not None and frame.index == self.fail_at:
            raise EdgesegError(f"cannot deliver frame {frame.index}", self.name)
        self.frames.append((frame.camera, frame.index, frame.ok))

    def on_state(self, stats) -> None:
        self.states.append((stats.camera, stats.state))

    def close(self) -> list[Path]:
        self.calls.append("close")
        return []

    def report(self) -> str | None:
        return f"{self.name}: {len(self.frames)} frame(s)"


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, coco128_images) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [make_clip(folder / f"{name}.mp4", coco128_images[k : k + FRAMES]) for k, name in enumerate(("door", "yard"))]


def jsonl_frames(path: Path) -> list[tuple[str, int]]:
    return [(r["camera"], r["frame"]) for r in map(json.loads, path.read_text().splitlines())]


def test_the_recorder_is_an_output():
    assert isinstance(Recorder(), Output) and isinstance(OutputBase(), Output)


def test_every_camera_frame_reaches_a_run_output_once_in_order_between_open_and_close(seg, clips, tmp_path):
    rec = Recorder()
    summary = predict_sources(seg, clips, outputs=PredictOutputs(save_jsonl=tmp_path / "out.jsonl"), show_progress=False, run_outputs=[rec])
    assert rec.calls[0] == "open" and rec.calls[-1] == "close" and rec.calls.count("open") == rec.calls.count("close") == 1
    assert [c.name for c in rec.opened_with.cameras] == ["door", "yard"]
    assert [Path(c.source).name for c in rec.opened_with.cameras] == ["door.mp4", "yard.mp4"]
    assert rec.opened_with.class_names == tuple(seg.info.names[k] for k in range(len(seg.info.names)))
    for k, camera in enumerate(("door", "yard"), 1):
        mine = [(c, i) for c, i, _ in rec.frames if c == camera]
        assert mine == [(camera, i) for i in range(FRAMES)]  # each once, in order
        assert mine == jsonl_frames(tmp_path / f"out-{k}.jsonl")  # what the file output got, no more, no less
    assert summary.processed == 2 * FRAMES and summary.reports == [f"recorder: {2 * FRAMES} frame(s)"]
    assert summary.incomplete == []


def test_an_output_that_fails_with_continue_is_dropped_and_the_run_and_the_others_go_on(seg, clips, tmp_path, caplog):
    failing, other = Recorder("mqtt://broker", fail_at=2), Recorder("other")
    with caplog.at_level(logging.ERROR, logger="edgeseg"):
        summary = predict_sources(
            seg, clips[:1], outputs=PredictOutputs(save_jsonl=tmp_path / "a.jsonl"), show_progress=False, run_outputs=[failing, other]
        )
    assert [i for _, i, _ in failing.frames] == [0, 1] and failing.calls.count("close") == 1  # closed when it failed, once
    assert [i for _, i, _ in other.frames] == list(range(FRAMES))
    assert len(jsonl_frames(tmp_path / "a.jsonl")) == FRAMES == summary.processed
    assert [(p.where, p.problem) for p in summary.incomplete] == [("mqtt://broker", "cannot deliver frame 2")]
    said = [r.getMessage() for r in caplog.records if "mqtt://broker" in r.getMessage()]
    assert said == ["mqtt://broker: cannot deliver frame 2 (the run goes on without it)"]  # at once, one line


def test_a_run_output_that_fails_with_stop_stops_the_run_and_its_frame_is_in_no_later_output(seg, clips, tmp_path):
    first, failing, later = Recorder("first"), Recorder("bag", on_failure="stop", fail_at=2), Recorder("later")
    summary = predict_sources(
        seg, clips, outputs=PredictOutputs(save_jsonl=tmp_path / "b.jsonl"), show_progress=False, run_outputs=[first, failing, later]
    )
    assert ("bag", "cannot deliver frame 2") in [(p.where, p.problem) for p in summary.incomplete]
    assert all(i != 2 or c != failing_camera for c, i, _ in later.frames for failing_camera in [_camera_of(failing, first)])
    assert len(first.frames) < 2 * FRAMES  # the run stopped: not every frame of the two clips was read
    assert later.calls[-1] == "close" and failing.calls.count("close") == 1


def _camera_of(failing: Recorder, first: Recorder) -> str:
    """The camera whose frame 2 the failing output refused: the first output saw it just before."""
    seen = [c for c, i, _ in first.frames if i == 2]
    return seen[0]


def test_an_output_that_cannot_open_closes_those_already_open_and_nothing_runs(seg, clips, tmp_path):
    opened, refusing = Recorder("view"), Recorder("mqtt://broker", fail_open=True)
    with pytest.raises(EdgesegError) as caught:
        predict_sources(
            seg, clips, outputs=PredictOutputs(save_jsonl=tmp_path / "c.jsonl"), show_progress=False, run_outputs=[opened, refusing]
        )
    assert (caught.value.path, caught.value.problem) == ("mqtt://broker", "the broker refused the password")
    assert opened.calls == ["open", "close"] and opened.frames == []
    assert not list(tmp_path.glob("c*.jsonl"))  # no work was done


def test_a_camera_run_announces_every_camera_with_its_lines_and_reports_states(seg, clips, tmp_path):
    from edgeseg.tracking import TrackingOptions
    from edgeseg.tracking.geometry import parse_line

    tracking = TrackingOptions(lines=(parse_line("gate=0.5,0,0.5,1"),))
    rec = Recorder()
    plans = [CameraPlan(str(clips[0]), name="door", tracking=tracking), CameraPlan(str(clips[1]), name="yard")]
    run_cameras(seg, cameras=plans, run_outputs=[rec], show_progress=False, stop=threading.Event())
    assert [(c.name, c.lines, c.live) for c in rec.opened_with.cameras] == [("door", ("gate",), False), ("yard", (), False)]
    assert sorted(c for c, _, _ in rec.frames) == ["door"] * FRAMES + ["yard"] * FRAMES
    assert ("door", "ended") in rec.states and ("yard", "ended") in rec.states


def test_a_stop_output_of_a_camera_stops_that_camera_only():
    own = Fanout([Recorder("a.mp4", on_failure="stop", fail_at=1), Recorder("a.jsonl")])
    frame = lambda i: StreamFrame(index=i, source="a", image=None, detections=None, camera="a")  # noqa: E731
    assert own.on_frame(frame(0), None) is True
    assert own.on_frame(frame(1), None) is False  # the camera must stop
    video, jsonl = own.outputs
    assert [i for _, i, _ in jsonl.frames] == [0]  # frame 1 is in no output
    assert own.on_frame(frame(2), None) is False and [i for _, i, _ in jsonl.frames] == [0]
    own.close()
    assert [p.where for p in own.problems] == ["a.mp4"] and video.calls.count("close") == 1 == jsonl.calls.count("close")


def test_stamps_a_file_by_its_time_and_a_live_camera_on_the_wall_clock():
    run = RunInfo(cameras=(CameraInfo("door", "door.mp4"), CameraInfo("gate", "rtsp://h/gate", live=True)))
    now = [1_700_000_000.25]
    stamps = Stamps(run, clock=lambda: now[0])

    def at(camera: str, time_s: float | None) -> int:
        return stamps.of(StreamFrame(index=0, source=camera, image=None, detections=None, time_s=time_s, camera=camera))

    assert at("door", 0.123456) == 123_500_000  # the JSON Lines' time_s, rounded to 0.1 ms
    assert at("door", None) == 0
    assert at("gate", 2.0) == 1_700_000_000_250_000_000  # its first frame: now
    now[0] += 60  # the wall clock moves, the camera's origin does not: stamps step as its time_s
    assert at("gate", 3.5) == 1_700_000_001_750_000_000
    assert stamps.origin_s("gate") == pytest.approx(1_699_999_998.25, abs=1e-6) and stamps.origin_s("door") == 0.0


def test_an_unknown_failure_policy_is_one_line_naming_the_output():
    with pytest.raises(EdgesegError) as caught:
        Recorder("mqtt://broker", on_failure="ignore")
    assert (caught.value.path, caught.value.problem) == ("mqtt://broker", "on_failure must be one of stop, continue, got 'ignore'")
