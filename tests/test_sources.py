"""The one image-listing policy and the one source kind; no shared data needed."""

from __future__ import annotations

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
    """``cv2.VideoCapture`` of a camera or stream that gives ``frames`` frames, then nothing (unplugged, or the
    network went down). ``frames=0``: it does not open at all."""

    def __init__(self, frames: int) -> None:
        self.left, self.opened = frames, frames > 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((48, 64, 3), self.left, np.uint8)

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
    source = VideoSource("rtsp://camera.invalid/live", retry=RetryPolicy(attempts=3, backoff_s=0.01, open_timeout_s=1, read_timeout_s=1), open_capture=hook)
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
