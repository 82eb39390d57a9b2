"""Outputs that fail mid-run (``edgeseg.sinks`` through ``predict``): a disk that fills up, an encoder that stops
writing. One line naming the file, the partial video kept under its partial name (never moved into place as if
complete), the frames and lines written before the failure intact, and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import pytest

from corpus import make_clip, run_cli
from edgeseg.cli import main

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
    import edgeseg.sinks

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

    monkeypatch.setattr(edgeseg.sinks.cv2, "VideoWriter", FailingWriter)
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
