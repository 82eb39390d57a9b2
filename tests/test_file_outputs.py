"""File outputs that fail mid-run (``edgeseg.outputs``' video and JSON Lines, through ``predict``): a disk that
fills up, an encoder that stops writing. One line naming the file, the partial video kept under its partial name
(never moved into place as if complete), the frames and lines written before the failure intact, and a non-zero exit. Rotation into numbered
segments (by size and by duration): every segment complete and playable, every frame in exactly one of them,
also when the run is interrupted; the camera's name in each record."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from corpus import make_clip, run_cli
from edgeseg.cli import main
from edgeseg.errors import EdgesegError
from edgeseg.outputs.files import Rotation
from edgeseg.outputs.jsonl import JsonlSink, frame_record
from edgeseg.outputs.video import VideoSink
from edgeseg.results import Detections

pytestmark = pytest.mark.timeout(180)

FRAMES = 30


def decoded_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    return count


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("edgeseg: error: ")]


def assert_whole_lines(jsonl: Path) -> int:
    """Every line of ``jsonl`` is a whole JSON record, frames 0, 1, 2, ...; returns their count."""
    text = jsonl.read_text()
    assert text == "" or text.endswith("\n"), "the last line is cut"
    frames = [json.loads(line)["frame"] for line in text.splitlines()]
    assert frames == list(range(len(frames)))
    return len(frames)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, coco128_images) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", coco128_images[:FRAMES])


@pytest.fixture
def small_disk(tmp_path):
    """A 300 kB tmpfs (root only): a disk that fills up mid-run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_disk_that_fills_up_keeps_the_partial_video_under_its_partial_name(small_disk, tmp_path, clip, default_model):
    video, jsonl = small_disk / "out.mp4", tmp_path / "out.jsonl"
    proc = run_cli("predict", default_model, clip, "--save-video", video, "--save-jsonl", jsonl)
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"edgeseg: error: {video}: cannot write the video (no space left on the device)"), errors
    assert not video.exists(), "a truncated video was moved into place as if complete"
    assert (small_disk / ".out.partial.mp4").exists()
    assert assert_whole_lines(jsonl) < FRAMES  # what was written before the disk filled, whole lines only
    assert f"{FRAMES} frame(s)" not in proc.stdout


@pytest.mark.slow
def test_a_disk_that_fills_up_under_the_json_lines_keeps_whole_lines(small_disk, tmp_path, clip, default_model):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (300 * 1024 - 12 * 1024))  # leave ~12 kB: a few frames' lines
    jsonl = small_disk / "out.jsonl"
    proc = run_cli("predict", default_model, clip, "--save-jsonl", jsonl, "--save-video", tmp_path / "ok.mp4")
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"edgeseg: error: {jsonl}: cannot write the JSON Lines (no space left"), errors
    lines = assert_whole_lines(jsonl)
    assert 0 < lines < FRAMES
    # the video of the same run holds the frames up to the failure and is complete (finalised, in place)
    assert decoded_count(tmp_path / "ok.mp4") in (lines, lines + 1)


def test_an_encoder_that_fails_mid_run_keeps_the_frames_before_it(monkeypatch, capsys, clip, default_model, tmp_path):
    import edgeseg.outputs.video

    real_writer = cv2.VideoWriter

    class FailingWriter:
        """OpenCV's writer that stops writing after 4 frames (as it does when the encoder or the disk fails)."""

        def __init__(self, *args) -> None:
            self.writer, self.frames = real_writer(*args), 0

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return self.writer.isOpened()

        def write(self, image) -> bool:
            if self.frames == 4:
                return False
            self.frames += 1
            self.writer.write(image)
            return True

        def release(self) -> None:
            self.writer.release()

    monkeypatch.setattr(edgeseg.outputs.video.cv2, "VideoWriter", FailingWriter)
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    assert main(["predict", str(default_model), str(clip), "--save-video", str(video), "--save-jsonl", str(jsonl)]) == 1
    captured = capsys.readouterr()
    errors = error_lines(captured.err)
    partial = tmp_path / ".out.partial.mp4"
    assert errors == [
        f"edgeseg: error: {video}: cannot write the video (OpenCV's mp4v encoder failed at frame 4); "
        f"the 4 frame(s) before it were written to {partial}"
    ]
    assert not video.exists()
    assert decoded_count(partial) == 4 == assert_whole_lines(jsonl)  # the frames before the failure, playable
    assert "4 image(s)/frame(s)" in captured.out


# --- rotation: numbered segments, each complete, every frame in exactly one ---

NO_DETECTIONS = Detections.empty((240, 320))


def shade(i: int) -> float:
    """The mean grey of frame ``i``: 8 apart from frame to frame, so a lost or repeated frame shifts the sequence
    (the codecs move a frame's mean by up to about 2)."""
    return 30.0 + 8.0 * (i % 25)


def noisy_frame(i: int, rng: np.random.Generator) -> np.ndarray:
    """A 320x240 frame of mean ``shade(i)`` with noise (tens of kB encoded, so a few frames fill a segment)."""
    return np.clip(shade(i) + rng.integers(-25, 26, (240, 320, 3)), 0, 255).astype(np.uint8)


def decoded_shades(path: Path) -> list[float]:
    cap = cv2.VideoCapture(str(path))
    shades = []
    while True:
        ok, image = cap.read()
        if not ok:
            return shades
        shades.append(float(image.mean()))


def assert_frames_in_order(per_segment: list[list[float]]) -> None:
    """The segments' decoded frames, joined, are frames 0, 1, 2, ... (by their shade), none in two segments."""
    joined = [m for segment in per_segment for m in segment]
    assert all(segment for segment in per_segment), [len(segment) for segment in per_segment]
    assert np.allclose(joined, [shade(i) for i in range(len(joined))], atol=3), np.round(joined)


def segment_names(stem: str, suffix: str, count: int) -> list[str]:
    return [f"{stem}.{k:05d}{suffix}" for k in range(count)]


def visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class FakeClock:
    """The wall clock a test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_json_lines_rotate_by_size_into_numbered_segments_of_whole_lines(tmp_path):
    sink = JsonlSink(tmp_path / "out.jsonl", rotation=Rotation(max_bytes=400))
    for i in range(50):
        sink.write(frame_record(index=i, time_s=i / 25, source="cam.mp4", detections=NO_DETECTIONS, camera="gate"))
    last = sink.close()
    names = visible_files(tmp_path)
    assert len(names) >= 3 and names == segment_names("out", ".jsonl", len(names))
    assert sink.paths == [tmp_path / n for n in names] and last == sink.paths[-1]
    frames = []
    for k, path in enumerate(sink.paths):
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)
        assert lines and data.endswith(b"\n")
        # full once it held 400 bytes, not a line before: the line that found it full opened the next segment
        assert len(data) - len(lines[-1]) < 400
        assert k == len(sink.paths) - 1 or len(data) >= 400, (k, len(data))
        frames += [json.loads(line)["frame"] for line in lines]
        assert all(json.loads(line)["camera"] == "gate" for line in lines)
    assert frames == list(range(50))


def test_json_lines_rotate_by_duration_on_the_clock_given(tmp_path):
    clock = FakeClock()
    sink = JsonlSink(tmp_path / "out.jsonl", rotation=Rotation(max_seconds=2.0, clock=clock))
    for i in range(10):
        clock.now = 100 + 0.5 * i  # frame 4 finds the first segment 2 s old and starts the next
        sink.write(frame_record(index=i, time_s=None, source="cam", detections=NO_DETECTIONS))
    assert sink.close() == tmp_path / "out.00002.jsonl"  # closed mid-segment: its whole lines are a finished file
    assert visible_files(tmp_path) == segment_names("out", ".jsonl", 3)
    assert [[json.loads(line)["frame"] for line in p.read_text().splitlines()] for p in sink.paths] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


def test_a_rotated_output_started_again_goes_on_after_its_segments(tmp_path):
    """A deployment restarted (a reboot, a crash) numbers its new segments after the ones already there."""
    clock = FakeClock()
    for run in range(2):
        sink = JsonlSink(tmp_path / "out.jsonl", rotation=Rotation(max_seconds=2.0, clock=clock))
        for i in range(6):
            clock.now = 100 * run + 0.5 * i
            sink.write(frame_record(index=i, time_s=None, source="cam", detections=NO_DETECTIONS))
        sink.close()
        assert [p.name for p in sink.paths] == [f"out.{k:05d}.jsonl" for k in (2 * run, 2 * run + 1)]
    (tmp_path / "out.notanumber.jsonl").write_text("")  # a file of another kind beside them is not a segment
    assert visible_files(tmp_path) == [*segment_names("out", ".jsonl", 4), "out.notanumber.jsonl"]
    assert [json.loads(line)["frame"] for line in (tmp_path / "out.00002.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


def test_without_rotation_the_file_and_each_line_are_as_before(tmp_path):
    sink = JsonlSink(tmp_path / "out.jsonl")
    sink.write(frame_record(index=3, time_s=0.12345, source="cam", detections=NO_DETECTIONS))
    sink.write(frame_record(index=4, time_s=None, source="cam", detections=NO_DETECTIONS, camera="door"))
    assert sink.close() == tmp_path / "out.jsonl" and sink.paths == [tmp_path / "out.jsonl"]
    assert visible_files(tmp_path) == ["out.jsonl"]
    assert (tmp_path / "out.jsonl").read_text() == (
        '{"frame":3,"time_s":0.1235,"detections":[]}\n{"frame":4,"camera":"door","time_s":null,"detections":[]}\n'
    )
    assert list(frame_record(index=0, time_s=0.0, source="cam", detections=NO_DETECTIONS)) == ["frame", "time_s", "detections"]


def test_video_rotates_by_size_into_finalised_segments_that_play(tmp_path):
    rng = np.random.default_rng(0)
    max_bytes = 300_000
    sink = VideoSink(tmp_path / "out.mp4", 10, rotation=Rotation(max_bytes=max_bytes))
    for i in range(45):
        sink.write(noisy_frame(i, rng), i)
    last = sink.close()
    names = visible_files(tmp_path)  # no partial file left: every segment was moved into place
    assert len(names) >= 2 and names == segment_names("out", ".mp4", len(names))
    assert sink.paths == [tmp_path / n for n in names] and last == sink.paths[-1]
    assert_frames_in_order([decoded_shades(p) for p in sink.paths])
    # the writer hands bytes to the file in 256 kB blocks: a full segment ends past max_bytes, by less than two blocks
    for path in sink.paths[:-1]:
        assert max_bytes <= path.stat().st_size < max_bytes + 512 * 1024, (path, path.stat().st_size)


def test_video_rotates_by_duration_and_close_finalises_the_segment_it_is_in(tmp_path):
    rng = np.random.default_rng(1)
    clock = FakeClock()
    sink = VideoSink(tmp_path / "out.avi", 10, rotation=Rotation(max_seconds=3, clock=clock))
    for i in range(11):
        clock.now = float(i)
        sink.write(noisy_frame(i, rng), i)
    assert sink.close() == tmp_path / "out.00003.avi"
    assert visible_files(tmp_path) == segment_names("out", ".avi", 4)
    shades = [decoded_shades(p) for p in sink.paths]
    assert [len(s) for s in shades] == [3, 3, 3, 2]
    assert_frames_in_order(shades)


def test_an_encoder_that_fails_in_a_later_segment_keeps_the_finished_ones(monkeypatch, tmp_path):
    import edgeseg.outputs.video

    real_writer = cv2.VideoWriter
    written = [0]

    class FailingWriter:
        """OpenCV's writer that stops writing at the 7th frame of the run."""

        def __init__(self, *args) -> None:
            self.writer = real_writer(*args)

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return self.writer.isOpened()

        def write(self, image) -> bool:
            if written[0] == 6:
                return False
            written[0] += 1
            self.writer.write(image)
            return True

        def release(self) -> None:
            self.writer.release()

    monkeypatch.setattr(edgeseg.outputs.video.cv2, "VideoWriter", FailingWriter)
    rng, clock = np.random.default_rng(2), FakeClock()
    sink = VideoSink(tmp_path / "out.mp4", 10, rotation=Rotation(max_seconds=4, clock=clock))
    with pytest.raises(EdgesegError) as failed:
        for i in range(10):
            clock.now = float(i)
            sink.write(noisy_frame(i, rng), i)
    partial = tmp_path / ".out.00001.partial.mp4"
    assert str(failed.value) == (
        f"{tmp_path / 'out.00001.mp4'}: cannot write the video (OpenCV's mp4v encoder failed at frame 6); "
        f"the 2 frame(s) before it were written to {partial}"
    )
    assert sink.close() is None and sink.paths == [tmp_path / "out.00000.mp4"]
    assert visible_files(tmp_path) == [".out.00001.partial.mp4", "out.00000.mp4"]  # never moved into place
    assert_frames_in_order([decoded_shades(tmp_path / "out.00000.mp4")])
    assert len(decoded_shades(tmp_path / "out.00000.mp4")) == 4


CHILD = """
import sys, time
from pathlib import Path
import numpy as np
from edgeseg.results import Detections
from edgeseg.outputs.files import Rotation
from edgeseg.outputs.jsonl import JsonlSink, frame_record
from edgeseg.outputs.video import VideoSink

out, shade = Path(sys.argv[1]), lambda i: 30.0 + 8.0 * (i % 25)
video = VideoSink(out / "cam.avi", 10, rotation=Rotation(max_seconds=0.3))
jsonl = JsonlSink(out / "cam.jsonl", rotation=Rotation(max_bytes=300))
rng, none = np.random.default_rng(3), Detections.empty((240, 320))
try:
    for i in range(100_000):
        image = np.clip(shade(i) + rng.integers(-25, 26, (240, 320, 3)), 0, 255).astype(np.uint8)
        video.write(image, i)
        jsonl.write(frame_record(index=i, time_s=None, source="cam", detections=none))
        time.sleep(0.02)
finally:
    video.close()
    jsonl.close()
"""


@pytest.mark.timeout(60)
def test_ctrl_c_leaves_every_segment_finished_and_playable(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as tests/corpus.py's start_cli
    )
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not (tmp_path / "cam.00002.avi").exists():
        time.sleep(0.05)
    time.sleep(0.15)  # into the next segment
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    videos = sorted(tmp_path.glob("cam.*.avi"))
    texts = sorted(tmp_path.glob("cam.*.jsonl"))
    assert len(videos) >= 3 and [p.name for p in videos] == segment_names("cam", ".avi", len(videos))
    assert [p.name for p in texts] == segment_names("cam", ".jsonl", len(texts))
    assert not list(tmp_path.glob(".*")), "a partial video was left: the segment it was in was not finalised"
    shades = [decoded_shades(p) for p in videos]
    assert_frames_in_order(shades)
    lines = [json.loads(line)["frame"] for p in texts for line in p.read_text().splitlines()]
    assert all(p.read_text().endswith("\n") for p in texts)
    assert lines == list(range(len(lines))) and len(lines) <= sum(map(len, shades)) <= len(lines) + 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "rotation needs a size (max_bytes) or a duration (max_seconds)"),
        ({"max_bytes": 0}, "rotation max_bytes must be a positive number, got 0"),
        ({"max_seconds": -1.5}, "rotation max_seconds must be a positive number, got -1.5"),
        ({"max_bytes": "10"}, "rotation max_bytes must be a positive number, got '10'"),
        ({"max_bytes": 100, "max_seconds": float("nan")}, "rotation max_seconds must be a positive number, got nan"),
    ],
)
def test_a_bad_rotation_is_a_one_line_error(kwargs, reason):
    with pytest.raises(EdgesegError) as bad:
        Rotation(**kwargs)
    assert str(bad.value) == reason


def test_a_disk_that_fills_up_in_a_later_json_lines_segment_keeps_the_finished_ones_whole(small_disk):
    # 20 kB left, in 4 kB pages: two 5 kB segments (two pages each), then the third fills its second page mid-line
    (small_disk / "filler").write_bytes(b"\0" * (300 * 1024 - 20 * 1024))
    sink = JsonlSink(small_disk / "out.jsonl", rotation=Rotation(max_bytes=5000))
    with pytest.raises(EdgesegError) as full:
        for i in range(10_000):
            sink.write(frame_record(index=i, time_s=None, source="x" * 200, detections=NO_DETECTIONS))
    assert sink.close() is None
    finished = sink.paths
    current = small_disk / f"out.{len(finished):05d}.jsonl"
    kept = len(current.read_text().splitlines())
    assert str(full.value) == f"{current}: cannot write the JSON Lines (no space left on device); its {kept} whole line(s) are kept"
    assert len(finished) >= 2 and [p.name for p in finished] == segment_names("out", ".jsonl", len(finished))
    assert sorted(small_disk.glob("out.*.jsonl")) == [*finished, current]
    frames = []
    for path in [*finished, current]:
        text = path.read_text()
        assert text == "" or text.endswith("\n"), f"{path.name}: its last line is cut"
        frames += [json.loads(line)["frame"] for line in text.splitlines()]
    assert frames == list(range(len(frames))) and all(5000 <= p.stat().st_size < 5300 for p in finished)
