"""Video sources, the pipelined runner and its outputs, on clips made here from coco128-seg images."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from corpus import decoded_frames, error_reason, make_clip, run_cli, start_cli
from edgeseg import Detections, EdgesegError, PredictOutputs, Segmenter, StreamOptions, StreamStats, predict_sources
from edgeseg.engines.threads import StreamRunner
from edgeseg.sources import RetryPolicy, Source, SourceItem, VideoSource, open_sources

pytestmark = pytest.mark.timeout(180)  # a runner bug shows as a hang: fail the test, not the run


def frame_count(path: Path) -> int:
    return len(decoded_frames(path))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, coco128_images) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "street.mp4", coco128_images[:8])


def assert_same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_array_equal(a.mask_origins, b.mask_origins)
    for ma, mb in zip(a.masks, b.masks):
        np.testing.assert_array_equal(ma, mb)


def test_two_workers_give_the_segmenters_detections_in_order(clip, default_model):
    seg = Segmenter(default_model, threads=1)
    frames = list(seg.stream(clip, workers=2))
    reference = [seg(f) for f in decoded_frames(clip)]
    assert [f.index for f in frames] == list(range(8)) == list(range(len(reference)))
    assert sum(len(f.detections) for f in frames) > 0  # the clip shows objects: the comparison means something
    for frame, ref in zip(frames, reference):
        assert frame.ok and frame.time_s == pytest.approx(frame.index / 10, abs=1e-3)
        assert_same(frame.detections, ref)


def test_segmenter_stream_carries_live_and_final_stats(clip, default_model):
    seg = Segmenter(default_model, threads=1)
    frames = seg.stream(clip)
    assert isinstance(frames.stats, StreamStats) and frames.stats.frames == 0
    seen = [(frame.index, frames.stats.frames, frames.stats.wall_s) for frame in frames]
    assert [(index, count) for index, count, _ in seen] == [(k, k + 1) for k in range(8)]  # counted as they come
    walls = [wall for _, _, wall in seen]
    assert walls[0] > 0 and walls == sorted(walls)  # the clock runs while iterating
    final = frames.stats
    assert (final.frames, final.failed, final.dropped, len(final.latencies_ms), len(final.ages_ms)) == (8, 0, 0, 8, 8)
    assert final.wall_s >= walls[-1] and final.fps == pytest.approx(8 / final.wall_s)


def test_segmenter_stream_defaults_to_one_worker_as_the_command_line(clip, default_model):
    import inspect

    assert inspect.signature(Segmenter.stream).parameters["workers"].default == StreamOptions().workers == 1
    seg = Segmenter(default_model, threads=1)
    assert seg.stream(clip).runner.predictors == [seg]  # one worker: this Segmenter's own session
    two = seg.stream(clip, workers=2).runner.predictors
    assert len(two) == 2 and seg not in two and two[0] is not two[1]
    with pytest.raises(EdgesegError, match="workers must be >= 1"):
        seg.stream(clip, workers=0)


def test_closing_a_segmenter_stream_stops_it(clip, default_model):
    with Segmenter(default_model, threads=1).stream(clip) as frames:
        first = next(frames)
    assert first.index == 0 and frames.stats.frames == 1
    assert next(frames, None) is None and frames.stats.frames == 1


@pytest.mark.slow
def test_predict_writes_a_frame_for_every_frame_and_a_line_for_every_frame(clip, default_model, tmp_path):
    video, jsonl = tmp_path / "out" / "annotated.mp4", tmp_path / "out" / "frames.jsonl"
    proc = run_cli("predict", str(default_model), str(clip), "--save-video", str(video), "--save-jsonl", str(jsonl), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert frame_count(video) == frame_count(clip) == 8
    cap = cv2.VideoCapture(str(video))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FPS)) == (320, 240, 10)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(8))
    seg = Segmenter(default_model)
    for record, frame in zip(lines, decoded_frames(clip)):
        assert record["detections"] == seg(frame).to_records(str(clip))
    assert "8 frame(s), 0 failed, 0 dropped" in proc.stdout
    assert sorted(p.name for p in video.parent.iterdir()) == ["annotated.mp4", "frames.jsonl"]  # no partial file left


@pytest.mark.slow
def test_images_and_videos_in_one_call(clip, default_model, coco128_images, tmp_path):
    proc = run_cli(
        "predict",
        str(default_model),
        str(coco128_images[0]),
        str(clip),
        str(coco128_images[1]),
        "--save-json",
        str(tmp_path / "images.json"),
        "--save-jsonl",
        str(tmp_path / "frames.jsonl"),
    )
    assert proc.returncode == 0, proc.stderr
    images = {r["image"] for r in json.loads((tmp_path / "images.json").read_text())}
    assert images == {str(coco128_images[0]), str(coco128_images[1])}
    assert len((tmp_path / "frames.jsonl").read_text().splitlines()) == 8
    assert "10 image(s)/frame(s)" in proc.stdout


@pytest.mark.slow
def test_a_corrupt_tail_keeps_the_frames_before_it(tmp_path, coco128_images, default_model):
    whole = make_clip(tmp_path / "whole.avi", coco128_images[:10])
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    readable = frame_count(cut)
    assert 0 < readable < 10
    source = VideoSource(str(cut))
    assert [item.index for item in source] == list(range(readable))
    assert source.warnings == [f"{cut}: stopped at frame {readable} of 10: the file is truncated or corrupt"]
    proc = run_cli("predict", str(default_model), str(cut), "--save-jsonl", str(tmp_path / "cut.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "cut.jsonl").read_text().splitlines()) == readable
    assert f"warning: {cut}: stopped at frame {readable} of 10" in proc.stderr


def test_a_size_change_mid_stream_is_resized_into_the_video_with_a_warning(tmp_path, coco128_images, default_model):
    class TwoSizes(Source):
        name, live, fps, warnings = "two-sizes", False, 5.0, []

        def __iter__(self):
            for i, p in enumerate(coco128_images[:4]):
                yield SourceItem(i, self.name, image=cv2.resize(cv2.imread(str(p)), (320, 240) if i < 2 else (200, 300)))

    summary = predict_sources(
        Segmenter(default_model), [TwoSizes()], outputs=PredictOutputs(save_video=tmp_path / "v.mp4"), show_progress=False
    )
    assert summary.processed == 4 and frame_count(tmp_path / "v.mp4") == 4
    assert summary.warnings == [f"{tmp_path / 'v.mp4'}: frame 2 is 200x300, not 320x240; frames of another size are resized to fit"]


def test_sigint_mid_run_leaves_a_playable_video_and_complete_lines(tmp_path, coco128_images, default_model):
    long_clip = make_clip(tmp_path / "long.mp4", coco128_images[:60])
    video, jsonl = tmp_path / "v.mp4", tmp_path / "v.jsonl"
    proc = start_cli(
        ["predict", default_model, long_clip, "--save-video", video, "--save-jsonl", jsonl], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "edgeseg: interrupted" in err and "Traceback" not in err, err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line is whole
    assert 3 <= len(lines) < 60 and [r["frame"] for r in lines] == list(range(len(lines)))
    assert len(lines) <= frame_count(video) <= len(lines) + 1  # finalised: it plays, and holds what was written


@pytest.mark.slow
def test_sigterm_ends_like_ctrl_c(tmp_path, coco128_images, default_model):
    long_clip = make_clip(tmp_path / "long.avi", coco128_images[:40])
    video = tmp_path / "v.avi"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg.cli", "predict", str(default_model), str(long_clip), "--save-video", str(video)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / ".v.partial.avi").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert 0 < frame_count(video) < 40


class FastLiveSource(Source):
    """A fake camera: 60 frames as fast as it can, whether anyone keeps up or not."""

    name, live, fps = "fake-camera", True, 30.0

    def __init__(self, frames: int = 60) -> None:
        self.frames = frames
        self.warnings: list[str] = []

    def __iter__(self):
        for i in range(self.frames):
            time.sleep(0.002)
            yield SourceItem(i, self.name, image=np.full((8, 8, 3), i, np.uint8), time_s=i / self.fps)


def _empty_detector(image: np.ndarray) -> Detections:
    return Detections.empty(image.shape[:2])


def test_a_slow_consumer_of_a_live_source_drops_stale_frames_and_counts_them():
    runner = StreamRunner([_empty_detector, _empty_detector])
    seen = []
    for frame in runner.run(FastLiveSource()):
        seen.append(frame.index)
        time.sleep(0.03)  # a display or writer that cannot keep up
    assert runner.stats.dropped > 0 and runner.stats.frames == len(seen)
    assert runner.stats.frames + runner.stats.dropped == 60
    assert seen == sorted(seen) and seen[0] == 0 and len(set(seen)) == len(seen)


def test_a_live_source_ahead_of_a_busy_worker_drops_the_oldest_waiting_frames():
    """The drop-oldest branch, step by step: one worker held on frame 0, capacity 3 (frame 0 in the worker, two
    waiting). Each new frame then replaces the oldest waiting one, so the freshest two are what comes next."""
    worker_busy, release = threading.Event(), threading.Event()

    def held_on_frame_zero(image: np.ndarray) -> Detections:
        if image[0, 0, 0] == 0:
            worker_busy.set()
            assert release.wait(30)
        return Detections.empty(image.shape[:2])

    class Camera(Source):
        name, live, fps, warnings = "held-camera", True, 30.0, []

        def __iter__(self):
            for i in range(10):
                yield SourceItem(i, self.name, image=np.full((8, 8, 3), i, np.uint8))
                if i == 0:
                    assert worker_busy.wait(30)  # frame 0 is in the worker before frame 1 arrives
            release.set()  # asked for an 11th frame: the reader has queued (or dropped) all ten

    runner = StreamRunner([held_on_frame_zero], capacity=3)
    seen = [frame.index for frame in runner.run(Camera())]
    assert seen == [0, 8, 9]  # 1..7 were each the oldest waiting frame when a newer one came
    assert (runner.stats.frames, runner.stats.dropped) == (3, 7)


def test_a_file_source_loses_no_frame_behind_a_slow_consumer():
    source = FastLiveSource(40)
    source.live = False
    runner = StreamRunner([_empty_detector, _empty_detector])
    seen = []
    for frame in runner.run(source):
        seen.append(frame.index)
        time.sleep(0.01)
    assert seen == list(range(40)) and runner.stats.dropped == 0


@pytest.mark.timeout(30)
def test_every_slot_comes_back_so_a_long_file_runs_through_a_two_frame_pipeline():
    """A slot not given back when a frame is handed out would stall the reader after ``capacity`` frames."""
    source = FastLiveSource(50)
    source.live = False
    runner = StreamRunner([_empty_detector], capacity=2)
    assert [frame.index for frame in runner.run(source)] == list(range(50))


def test_the_runner_stays_bounded_when_the_consumer_stops_reading():
    pulled = []

    class Counting(FastLiveSource):
        def __iter__(self):
            for item in super().__iter__():
                pulled.append(item.index)
                yield item

    source = Counting(1000)
    source.live = False
    runner = StreamRunner([_empty_detector], capacity=4)
    frames = runner.run(source)
    next(frames)
    time.sleep(0.5)
    assert len(pulled) <= 6  # capacity + the one handed back + the one the reader holds
    frames.close()  # a consumer that breaks: reader and workers stop
    time.sleep(0.2)
    assert not any(t.name.startswith("edgeseg-") for t in threading.enumerate())


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("missing.mp4", "no such file"),
        ("empty.mp4", "cannot open as a video"),
        ("text.avi", "cannot open as a video"),
        ("9", "no such camera, or it gives no frames"),
        ("/dev/video9", "no such camera, or it gives no frames"),
        ("rtsp://127.0.0.1:9/none", "cannot read the stream (unreachable or no video) after 2 tries"),
    ],
)
def test_sources_that_cannot_be_read_are_one_line_problems(tmp_path, spec, reason):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.avi").write_text("not a video at all")
    target = spec if spec[0].isdigit() or "/" in spec else str(tmp_path / spec)
    t0 = time.monotonic()
    opened = open_sources([target], retry=RetryPolicy(attempts=2, backoff_s=0.05, open_timeout_s=2, read_timeout_s=2))
    assert time.monotonic() - t0 < 15  # bounded, even for a network source
    assert opened.sources == [] and opened.problems == [(target, reason)]


@pytest.mark.slow
def test_bad_sources_and_unwritable_outputs_fail_with_one_line_before_any_work(tmp_path, clip, default_model):
    assert error_reason(run_cli("predict", default_model, tmp_path / "none.mp4"), tmp_path / "none.mp4") == "no such file"
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    proc = run_cli("predict", str(default_model), str(clip), "--save-video", str(blocked / "out.mp4"))
    assert error_reason(proc, blocked / "out.mp4").startswith("cannot write the video here (")
    proc = run_cli("predict", str(default_model), str(clip), "--save-video", str(tmp_path / "out.xyz"))
    assert error_reason(proc, tmp_path / "out.xyz") == "unsupported video container; use one of .avi, .m4v, .mkv, .mov, .mp4, .webm"


def test_a_checkpoint_where_a_model_is_expected_names_the_export_command(tmp_path, coco128_images):
    weights = tmp_path / "yolov8n-seg.pt"
    weights.write_bytes(b"PK\x03\x04 not really")
    reason = error_reason(run_cli("predict", weights, coco128_images[0]), weights)
    assert reason == f"is a PyTorch checkpoint, not an edgeseg model; export it first: edgeseg export {weights}"
