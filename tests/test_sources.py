"""The one image-listing policy and the one source kind; no shared data needed."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgesegError, Problem
from edgeseg.sources import ImageFiles, collect_images, image_directory, images_in, readable_images


def _write_image(path: Path, value: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((8, 12, 3), value, np.uint8)
    image[0, 0] = (value, 255 - value, 7)
    assert cv2.imwrite(str(path), image)
    return image


@pytest.fixture()
def tree(tmp_path) -> Path:
    """a.png, b/c.png, b/d/e.PNG, .hidden/f.png, .g.png, notes.txt, broken.jpg (not an image)."""
    root = tmp_path / "images"
    for i, rel in enumerate(["a.png", "b/c.png", "b/d/e.PNG", ".hidden/f.png", ".g.png"]):
        _write_image(root / rel, 10 * i)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_directories_are_recursive_sorted_and_skip_hidden_entries(tree):
    rel = [p.relative_to(tree).as_posix() for p in images_in(tree)]
    assert rel == ["a.png", "b/c.png", "b/d/e.PNG", "broken.jpg"]


def test_collect_images_mixes_files_directories_and_globs_in_argument_order(tree, tmp_path):
    found = collect_images(
        [tree / "b", str(tree / "*.png"), tree / "notes.txt", tmp_path / "missing.jpg", str(tmp_path / "nothing*.png"), tmp_path]
    )
    rel = [p.relative_to(tmp_path).as_posix() for p in found.paths]
    # a directory's images, then the glob's (the hidden .g.png matches '*.png' only with the dot: glob skips it),
    # then a file named directly (tried whatever its suffix), then the parent directory's images, recursively
    assert rel == [
        "images/b/c.png",
        "images/b/d/e.PNG",
        "images/a.png",
        "images/notes.txt",
        "images/a.png",
        "images/b/c.png",
        "images/b/d/e.PNG",
        "images/broken.jpg",
    ]
    assert found.problems == [
        (str(tmp_path / "missing.jpg"), "no such file or directory"),
        (str(tmp_path / "nothing*.png"), "pattern matches no image files"),
    ]


def test_empty_directory_is_a_problem_not_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    found = collect_images([tmp_path / "empty"])
    assert found.paths == [] and found.problems == [(str(tmp_path / "empty"), "directory holds no images")]


def test_image_files_yield_images_and_one_line_reasons_in_order(tree):
    items = list(ImageFiles(images_in(tree)))
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert [i.ok for i in items] == [True, True, True, False]
    np.testing.assert_array_equal(items[1].image, cv2.imread(str(tree / "b" / "c.png")))
    assert items[3].error == "not a readable image (corrupt or unsupported format)"
    assert items[3].image is None and items[3].name == str(tree / "broken.jpg")


def test_readable_images_replace_unreadable_ones_and_record_them(tree):
    paths = [tree / "broken.jpg", tree / "a.png", tree / "missing.png", tree / "b" / "c.png", tree / "b" / "d" / "e.PNG"]
    skipped: list[Problem] = []
    got = [item.name for item in readable_images(paths, 2, skipped)]
    assert got == [str(tree / "a.png"), str(tree / "b" / "c.png")]
    assert skipped == [
        (str(tree / "broken.jpg"), "not a readable image (corrupt or unsupported format)"),
        (str(tree / "missing.png"), "no such file"),
    ]
    assert all(type(s) is Problem for s in skipped)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "absent", "no such directory"),
        (lambda d: _write_image(d / "x.png", 1) is not None and d / "x.png", "not a directory (expected a folder of calibration images)"),
        (lambda d: (d / "txt").mkdir() or (d / "txt" / "a.txt").write_text("x") and d / "txt", "holds no image files"),
    ],
)
def test_image_directory_errors_name_the_directory_and_the_problem(tmp_path, make, reason):
    target = make(tmp_path)
    with pytest.raises(EdgesegError) as err:
        image_directory(target, "calibration")
    assert str(err.value) == f"{target}: {reason}"


def test_images_with_the_same_name_get_distinct_overlays(tmp_path, default_model):
    from edgeseg import PredictOutputs, Segmenter, predict_sources
    from edgeseg.predict import SAMPLE_IMAGE

    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "frame.jpg").write_bytes(SAMPLE_IMAGE.read_bytes())
    summary = predict_sources(
        Segmenter(default_model),
        [tmp_path / "a", tmp_path / "b", tmp_path / "c"],
        outputs=PredictOutputs(out_dir=tmp_path / "out"),
        show_progress=False,
    )
    assert [p.name for p in summary.overlays] == ["frame.jpg", "frame_1.jpg", "frame_2.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame.jpg", "frame_1.jpg", "frame_2.jpg"]


# ------------------------------------------------------------------------------ cameras and streams that stop


class FakeCapture:
    """``cv2.VideoCapture`` of a camera or stream that gives ``frames`` frames of ``size`` (width, height), then
    nothing (unplugged, or the network went down). ``frames=0``: it does not open at all."""

    def __init__(self, frames: int, size: tuple[int, int] = (64, 48)) -> None:
        self.left, self.opened, self.size = frames, frames > 0, size

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((self.size[1], self.size[0], 3), self.left, np.uint8)

    def grab(self) -> bool:
        return self.read()[0]

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.opened = False


def capture_hook(*frames_per_open: int):
    """An ``open_capture`` hook: the n-th open gets ``frames_per_open[n]`` frames (0 once they run out); the
    opens are counted in ``hook.opens``."""

    def hook(spec, kind, retry):
        hook.opens += 1
        return FakeCapture(frames_per_open[hook.opens - 1] if hook.opens <= len(frames_per_open) else 0)

    hook.opens = 0
    return hook


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("spec", "what"), [("rtsp://camera.invalid/live", "stream"), ("0", "camera")])
def test_a_source_that_stops_mid_run_is_retried_then_fails_with_one_line(spec, what):
    from edgeseg.sources import RetryPolicy, VideoSource

    hook = capture_hook(5)
    source = VideoSource(spec, retry=RetryPolicy(attempts=3, backoff_s=0.01, open_timeout_s=1, read_timeout_s=1), open_capture=hook)
    items = []
    with pytest.raises(EdgesegError) as err:
        for item in source:
            items.append(item.index)
    assert items == [0, 1, 2, 3, 4]  # the frames before the drop are all handed out
    assert hook.opens == 1 + 3  # the first open, then the documented RetryPolicy.attempts reconnects
    assert str(err.value) == f"{spec}: the {what} stopped after frame 4 and did not come back in 3 tries"


@pytest.mark.timeout(30)
def test_a_stream_that_comes_back_goes_on_with_a_warning_then_fails_when_it_stays_down():
    from edgeseg.sources import RetryPolicy, VideoSource

    hook = capture_hook(3, 0, 4)  # drops after 3 frames, the first reconnect fails, the second one works
    source = VideoSource(
        "rtsp://camera.invalid/live", retry=RetryPolicy(attempts=3, backoff_s=0.01, open_timeout_s=1, read_timeout_s=1), open_capture=hook
    )
    items = []
    with pytest.raises(EdgesegError, match="stopped after frame 6 and did not come back in 3 tries"):
        items.extend(item.index for item in source)
    assert items == list(range(7))  # 3 frames, then the 4 of the second connection
    assert hook.opens == 1 + 2 + 3  # the first open, 2 tries to come back, 3 more after the second drop
    assert source.warnings == ["rtsp://camera.invalid/live: stream dropped after frame 2; reconnected"]


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_predict_reports_a_stream_that_stayed_down_and_exits_non_zero(monkeypatch, capsys, default_model, tmp_path):
    """Through the command line: the frames before the drop are written, the failure is named, exit code 1."""
    import edgeseg.sources.video
    from edgeseg.cli import main

    hook = capture_hook(6)
    monkeypatch.setattr(edgeseg.sources.video.cv2, "VideoCapture", lambda *args: hook(None, None, None))
    jsonl = tmp_path / "frames.jsonl"
    code = main(["predict", str(default_model), "rtsp://camera.invalid/live", "--save-jsonl", str(jsonl), "--no-live", "--retries", "4"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("edgeseg: error: ")]
    assert code == 1 and "Traceback" not in captured.err
    assert errors == ["edgeseg: error: rtsp://camera.invalid/live: the stream stopped after frame 5 and did not come back in 4 tries"]
    assert len(jsonl.read_text().splitlines()) == 6 and "6 image(s)/frame(s)" in captured.out


def test_vid_stride_keeps_every_nth_frame_with_its_own_index(tmp_path, coco128_images):
    """Frames 0, n, 2n, ... of the file, pixel for pixel what OpenCV decodes at those positions, no truncation warning."""
    from edgeseg.sources import VideoSource

    clip = tmp_path / "ten.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for path in coco128_images[:10]:
        writer.write(cv2.resize(cv2.imread(str(path)), (160, 120)))
    writer.release()
    cap, decoded = cv2.VideoCapture(str(clip)), []
    while (frame := cap.read()[1]) is not None:
        decoded.append(frame)
    assert len(decoded) == 10
    for stride, expected in ((1, list(range(10))), (3, [0, 3, 6, 9]), (4, [0, 4, 8])):
        source = VideoSource(str(clip), vid_stride=stride)
        items = list(source)
        assert [item.index for item in items] == expected, stride
        assert [item.time_s for item in items] == pytest.approx([i / 10 for i in expected], abs=1e-3)
        for item in items:
            np.testing.assert_array_equal(item.image, decoded[item.index])
        assert source.warnings == [], stride


# ------------------------------------------------------------------------------ unattended: retried forever, with backoff


def test_backoff_doubles_from_backoff_s_up_to_the_cap_less_at_most_the_jitter():
    from edgeseg.sources import RetryPolicy

    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=30.0, jitter=0.25)
    assert policy.attempts is None  # unattended by default: forever
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]  # 0.5 * 2**k, capped at 30 (worked out by hand)
    rng = random.Random(7)
    for k, ceiling in enumerate(ceilings + [30] * 3, start=0):
        k = k if k < len(ceilings) else 10**6  # far past the cap: no overflow, still the cap
        waits = [policy.delay(k, rng) for _ in range(400)]
        assert all(0.75 * ceiling <= w <= ceiling for w in waits), (k, min(waits), max(waits))
        assert min(waits) < 0.78 * ceiling and max(waits) > 0.97 * ceiling, k  # the jitter spreads over its whole band
    exact = RetryPolicy(backoff_s=0.25, max_backoff_s=3.0, jitter=0)
    assert [exact.delay(k, rng) for k in range(6)] == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(EdgesegError, match="retry attempts must be at least 1"):
        RetryPolicy(attempts=0)


class ListenedSource:
    """A forever-retried ``VideoSource`` on fake captures, with the states it reported and the waits it asked for."""

    def __init__(self, hook, **policy) -> None:
        from edgeseg.sources import RetryPolicy, VideoSource

        self.waits: list[int] = []  # k of each delay(k) asked for
        self.states: list[tuple[str, str]] = []
        outer = self

        class Recorded(RetryPolicy):
            def delay(self, k, rng):
                outer.waits.append(k)
                return super().delay(k, rng)

        self.source = VideoSource("rtsp://camera.invalid/live", retry=Recorded(**policy), open_capture=hook)
        self.source.state_listener = lambda state, detail: self.states.append((state, detail))


@pytest.mark.timeout(30)
def test_a_camera_retried_forever_backs_off_afresh_after_each_comeback_and_reports_its_states():
    hook = capture_hook(3, 0, 0, 2, 0, 0, 1)  # 3 frames, 2 failed tries, 2 frames, 2 failed tries, 1 frame, then down
    run = ListenedSource(hook, backoff_s=0.001, max_backoff_s=0.004, jitter=0)
    assert hook.opens == 0 and run.source.fps is None and run.source.size is None  # nothing opened before the iteration
    items = []
    for item in run.source:
        items.append(item.index)
        if len(items) == 6:
            break
    assert items == [0, 1, 2, 3, 4, 5]
    assert run.source.fps == 25.0 and run.source.size == (64, 48)
    assert run.waits == [0, 1, 0, 1]  # growing, and from 0 again after each comeback
    drops = ["reconnecting", "reconnecting", "reconnecting", "live"]  # stopped; try 1 failed; try 2 failed; back
    assert [s for s, _ in run.states] == ["live", *drops, *drops]
    assert run.states[0] == ("live", "64x48 at 25 fps")
    assert run.states[1] == ("reconnecting", "the stream stopped after frame 2")
    assert run.states[2][1].startswith("cannot reach the stream (try 1); next try in 0.0")
    assert run.states[4][1].startswith("reconnected after ")
    assert run.source.warnings == ["rtsp://camera.invalid/live: stream dropped 2 times, the last after frame 4; reconnected each time"]


@pytest.mark.timeout(30)
def test_the_waits_stop_growing_at_the_cap_and_so_do_the_reports():
    hook = capture_hook()  # never opens
    run = ListenedSource(hook, backoff_s=0.001, max_backoff_s=0.004, jitter=0)
    items = []
    reader = threading.Thread(target=lambda: items.extend(run.source), daemon=True)
    reader.start()
    reader.join(1.0)
    run.source.close()
    reader.join(2.0)
    assert not reader.is_alive() and items == []  # closed while waiting for its camera: ends quietly
    assert run.waits[:5] == [0, 1, 2, 3, 4] and len(run.waits) > 20
    # one report per longer wait (1, 2, 4 ms: the third reaches the cap), then silence: a camera down for weeks is not a flood
    assert [d.split(";")[0] for _, d in run.states] == [f"cannot reach the stream (try {k})" for k in (1, 2, 3)]
    assert {s for s, _ in run.states} == {"connecting"}


@pytest.mark.timeout(30)
def test_close_from_another_thread_ends_a_wait_in_backoff_and_a_hung_open_within_a_second():
    from edgeseg.sources import RetryPolicy, VideoSource

    for hung in (False, True):
        gate, late = threading.Event(), []

        def hook(spec, kind, retry, hung=hung, gate=gate, late=late):
            if hung:  # an open that takes its time (a host that drops packets): only the open timeout would end it
                gate.wait(20)
                late.append(FakeCapture(5))
                return late[-1]
            return FakeCapture(0)

        source = VideoSource("rtsp://camera.invalid/live", retry=RetryPolicy(backoff_s=60, max_backoff_s=60), open_capture=hook)
        states, items = [], []
        source.state_listener = lambda state, detail, states=states: states.append(state)
        reader = threading.Thread(target=lambda source=source, items=items: items.extend(source), daemon=True)
        reader.start()
        reader.join(0.5)
        assert reader.is_alive() and states == ([] if hung else ["connecting"]), hung  # waiting: 60 s of backoff, or the open
        source.close()
        reader.join(1.0)
        assert not reader.is_alive() and items == [], hung
        if hung:  # the open that ends after the close: its capture is released, not left open
            gate.set()
            for _ in range(100):
                if late and not late[0].opened:
                    break
                time.sleep(0.01)
            assert late and not late[0].opened


@pytest.mark.timeout(30)
def test_a_camera_that_comes_back_at_another_size_gives_frames_at_that_size_with_a_warning():
    from edgeseg.sources import RetryPolicy, VideoSource

    captures = iter([FakeCapture(2, (64, 48)), FakeCapture(2, (32, 24))])
    source = VideoSource("0", retry=RetryPolicy(backoff_s=0.001), open_capture=lambda spec, kind, retry: next(captures, FakeCapture(0)))
    states = []
    source.state_listener = lambda state, detail: states.append((state, detail))
    shapes = []
    for item in source:
        shapes.append(item.image.shape[:2])
        if len(shapes) == 4:
            source.close()
    assert shapes == [(48, 64), (48, 64), (24, 32), (24, 32)]
    assert source.size == (32, 24)
    assert source.warnings[0] == "0: the frame size changed from 64x48 to 32x24 when it came back"
    assert states[1] == ("reconnecting", "the camera stopped after frame 1")
    assert states[2][0] == "live" and states[2][1].endswith("; now 32x24")
