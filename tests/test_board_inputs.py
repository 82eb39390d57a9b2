"""The board's own inputs without a board: NV12 frames end to end (``Nv12Frame``, ``letterbox_nv12``, NV12 straight to
an NV12 .bin, no colour conversion per frame unless something draws), the MIPI camera (``mipi:N``) and the hardware
decoder, against the ``libsrcampy`` stand-in (tests/fakes/hobot_vio, after ``vpp_python.cpp``), and the board
benchmark (`edgeseg bench model.bin --threads 1,4,8`) and its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FAKES
from corpus import decoded_frames, matched
from edgeseg.backends import BoardOptions
from edgeseg.engines.command import PredictOutputs, StreamOptions, predict_sources
from edgeseg.errors import EdgesegError
from edgeseg.predict import Segmenter
from edgeseg.preprocess import Nv12Frame, _pad_yuv, letterbox, letterbox_nv12, load_image, nv12_to_bgr, to_nv12
from edgeseg.sources import BoardInputs, HardwareDecoded, MipiCamera, RetryPolicy, VideoSource, open_sources
from edgeseg.sources.board import MipiSpec

pytestmark = pytest.mark.timeout(600)


def _frame_of(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to cover ``size`` (w, h) and centre-cropped: a camera-like frame of a coco128 scene."""
    w, h = size
    gain = max(w / image.shape[1], h / image.shape[0])
    big = cv2.resize(image, (round(image.shape[1] * gain), round(image.shape[0] * gain)), interpolation=cv2.INTER_LINEAR)
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y : y + h, x : x + w])


@pytest.fixture(scope="module")
def clip(tmp_path_factory, coco128_images) -> Path:
    """An MJPEG clip (AVI) of 8 coco128 scenes at 1280x720, as a camera would see them."""
    path = tmp_path_factory.mktemp("clip") / "scenes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    for p in coco128_images[20:28]:
        writer.write(_frame_of(load_image(p), (1280, 720)))
    writer.release()
    return path


# --------------------------------------------------------------------------------------------------
# NV12 frames and their letterbox


@pytest.mark.parametrize("imgsz", [(640, 640), (320, 320), (480, 640)])
def test_letterbox_in_nv12_matches_the_bgr_letterbox(coco128_images, imgsz):
    """Same geometry as the BGR letterbox; the picture within the chroma subsampling of a resized frame."""
    for p in coco128_images[:6]:
        image = _frame_of(load_image(p), (1920, 1080))
        padded, lb = letterbox_nv12(Nv12Frame.from_bgr(image), imgsz)
        ref, ref_lb = letterbox(image, imgsz)
        assert lb == ref_lb and padded.shape == (imgsz[0] * imgsz[1] * 3 // 2,)
        diff = np.abs(nv12_to_bgr(padded, imgsz).astype(np.int16) - nv12_to_bgr(to_nv12(ref, ref_lb), imgsz))
        assert diff.mean() < 2.5, (p.name, diff.mean())


def test_a_frame_already_at_the_inner_size_is_only_padded(coco128_images):
    """What the MIPI scaler delivers (640x360 of a 1920x1080 scene) letterboxes to the very bytes of converting
    the letterboxed BGR image: nothing is resized, the pad is the pad colour's Y/U/V."""
    small = _frame_of(load_image(coco128_images[2]), (640, 360))
    frame = Nv12Frame.from_bgr(small)
    scaled = Nv12Frame(frame.data, 360, 640, source_shape=(1080, 1920))
    padded, lb = letterbox_nv12(scaled, (640, 640))
    assert lb.source_shape == (1080, 1920) and lb.content_shape == (360, 640) and lb.pad_top == 140
    ref, _ = letterbox(small, (640, 640))
    np.testing.assert_array_equal(padded, to_nv12(ref))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_whole_shrink_factors_give_the_bytes_of_opencv_bilinear(k):
    rng = np.random.default_rng(k)
    image = rng.integers(0, 256, (90 * k, 160 * k, 3), dtype=np.uint8)
    padded, lb = letterbox_nv12(Nv12Frame.from_bgr(image), (160, 160))
    y = Nv12Frame.from_bgr(image).planes()[0]
    want = cv2.resize(y, (160, 90), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(padded[: 160 * 160].reshape(160, 160)[lb.pad_top : lb.pad_top + 90], want)


def test_bad_nv12_frames_are_one_line_errors():
    with pytest.raises(EdgesegError, match=r"^an NV12 frame needs an even, positive height and width, got 3x4$"):
        Nv12Frame(np.zeros(18, np.uint8), 3, 4)
    with pytest.raises(EdgesegError, match=r"^an NV12 frame of 4x4 is 24 uint8 bytes in one flat array, got uint8 \[23\]$"):
        Nv12Frame.from_bytes(bytes(23), 4, 4)


# --------------------------------------------------------------------------------------------------
# no colour conversion per frame


class ConversionCounter:
    """Counts ``cv2.cvtColor`` calls made by edgeseg's own modules (the stand-in BPU's are not edgeseg's)."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        real = cv2.cvtColor

        def counted(*args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("edgeseg"):
                self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(cv2, "cvtColor", counted)


def test_nv12_frames_reach_an_nv12_bin_with_no_colour_conversion(board, clip, monkeypatch, tmp_path):
    """Camera frames through the stream runner into JSON Lines: zero conversions; an annotated video converts
    each frame once, to draw it (the counter does count)."""
    monkeypatch.setenv("EDGESEG_FAKE_MIPI_CLIP", str(clip))
    seg = Segmenter(board["nv12"], board=BoardOptions(runtime="hbm"))
    _pad_yuv()  # the pad colour in YUV: one conversion per process, made once and kept, not per frame
    counter = ConversionCounter(monkeypatch)
    # the stand-in camera is faster than real time: keep every frame; finite tries: the camera ends after its clip
    every = StreamOptions(live=False, retry=RetryPolicy(attempts=4))
    summary = predict_sources(
        seg, ["mipi:0@1280x720"], outputs=PredictOutputs(save_jsonl=tmp_path / "a.jsonl"), stream=every, show_progress=False
    )
    assert summary.processed == 8 and summary.detections > 0
    assert counter.calls == 0
    predict_sources(seg, ["mipi:0@1280x720"], outputs=PredictOutputs(save_video=tmp_path / "a.mp4"), stream=every, show_progress=False)
    assert counter.calls == 8


# --------------------------------------------------------------------------------------------------
# the MIPI camera


def test_the_camera_is_asked_for_the_letterbox_inner_size(board, fakes, clip, monkeypatch):
    monkeypatch.setenv("EDGESEG_FAKE_MIPI_CLIP", str(clip))
    camera = MipiCamera("mipi:0@1920x1080", imgsz=(640, 640))
    assert camera._cam.opened_with["width"] == [640, 1920] and camera._cam.opened_with["height"] == [360, 1080]
    first = next(iter(camera))
    assert isinstance(first.image, Nv12Frame) and (first.image.height, first.image.width) == (360, 640)
    assert first.image.scene_shape == (1080, 1920) and first.image.shape == (1080, 1920, 3)


def test_mipi_specs_and_a_missing_camera_are_one_line_errors(fakes, monkeypatch, tmp_path):
    assert MipiSpec.parse("mipi") == MipiSpec(-1, 1920, 1080) and MipiSpec.parse("mipi:1@1280x720") == MipiSpec(1, 1280, 720)
    with pytest.raises(EdgesegError, match=r"^mipi:0@1281x720: the scene size must be even and positive, got 1281x720$"):
        MipiSpec.parse("mipi:0@1281x720")
    monkeypatch.delenv("EDGESEG_FAKE_MIPI_CLIP", raising=False)
    opened = open_sources(["mipi:0"], retry=RetryPolicy(attempts=4), board=BoardInputs(imgsz=(640, 640)))
    assert opened.problems == [("mipi:0", "cannot open the MIPI camera (open_cam returned -1): is one connected, and free?")]


def test_without_the_board_library_a_camera_says_where_it_comes_from(monkeypatch):
    for name in ("hobot_vio", "hobot_vio_rdkx5", "hobot_vio.libsrcampy", "hobot_vio_rdkx5.libsrcampy"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EdgesegError, match=r"^mipi:0: needs the RDK board's camera and codec library \(hobot_vio, on the board image\)"):
        MipiCamera("mipi:0", imgsz=(640, 640))


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    paths = [str(FAKES), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgeseg.cli", *args], capture_output=True, text=True, env=full, timeout=600)


def test_cli_predict_from_the_mipi_camera_equals_the_onnx_on_the_same_nv12_frames(board, int8_onnx, clip, tmp_path):
    """`edgeseg predict model.bin mipi:0 --save-jsonl` over the stand-in camera playing a clip: per frame, the INT8
    ONNX on the NV12 frame the scaler made (here: the clip frame resized to 640x360 by the test) finds the same
    objects, in scene pixels; the camera running dry is reported, not a silent end."""
    out = tmp_path / "cam.jsonl"
    proc = _cli(
        "predict",
        str(board["nv12"]),
        "mipi:0@1280x720",
        "--no-live",
        "--retries",
        "3",
        "--save-jsonl",
        str(out),
        env={"EDGESEG_FAKE_MIPI_CLIP": str(clip)},
    )
    assert "Traceback" not in proc.stderr and proc.returncode == 1  # a camera that stops is a failure, not an end
    assert "mipi:0@1280x720: the camera gave no frame for 3 reads in a row after frame 8" in proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    onnx = Segmenter(int8_onnx, threads=1)
    assert [line["frame"] for line in lines] == list(range(8))
    total = both = 0
    for line, frame in zip(lines, decoded_frames(clip)):
        scaled = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
        nv12 = Nv12Frame(Nv12Frame.from_bgr(scaled).data, 360, 640, source_shape=(720, 1280))
        want = onnx(nv12)
        got = [(r["class_id"], r["bbox_xyxy"]) for r in line["detections"]]
        assert len(got) == len(want), line["frame"]
        total += len(want)
        both += matched(want, _detections(got), iou=0.95) if got else 0
    assert total > 10 and both >= 0.98 * total, (total, both)


class _detections:
    """Boxes and classes of JSON records, as ``matched`` reads them."""

    def __init__(self, records) -> None:
        self.class_ids = np.array([c for c, _ in records])
        self.xyxy = np.array([b for _, b in records], np.float32)

    def __len__(self) -> int:
        return len(self.class_ids)


# --------------------------------------------------------------------------------------------------
# the hardware decoder


def test_hardware_decoding_gives_every_frame_as_nv12(fakes, clip):
    frames = decoded_frames(clip)
    items = list(HardwareDecoded(str(clip), live=False))
    assert [i.index for i in items] == list(range(len(frames)))  # the frames held in the decoder are drained at the end
    for item, frame in zip(items, frames):  # two JPEG decoders (the stand-in's, FFmpeg's): equal within rounding
        assert isinstance(item.image, Nv12Frame)
        diff = np.abs(item.image.data.astype(np.int16) - Nv12Frame.from_bgr(frame).data)
        assert diff.mean() < 1 and diff.max() <= 16, (item.index, diff.mean(), diff.max())
    strided = list(HardwareDecoded(str(clip), live=False, vid_stride=3))
    assert [i.index for i in strided] == [0, 3, 6]


def test_decoder_arguments_are_all_passed_because_they_are_c_statics(fakes, clip):
    vio = __import__("hobot_vio.libsrcampy", fromlist=["Decoder"])
    other = vio.Decoder()
    other.decode("", 31, 2, 16, 16)  # leaves type=H.265 and 16x16 behind in the statics
    other.close()
    assert len(list(HardwareDecoded(str(clip), live=False))) == 8


def test_hw_decode_refuses_what_the_decoder_cannot_take_and_auto_falls_back(fakes, tmp_path):
    path = tmp_path / "mp4v.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    from edgeseg.sources import BoardInputs

    forced = open_sources([str(path)], board=BoardInputs(hw_decode=True))
    assert forced.problems == [(str(path), "the hardware decoder takes H.264, H.265 and MJPEG, this is 'fmp4' (drop --hw-decode)")]
    auto = open_sources([str(path)], board=BoardInputs(hw_decode=None))
    assert not auto.problems and isinstance(auto.sources[0], VideoSource)


def test_predict_with_hw_decode_equals_opencv_decoding(board, clip, tmp_path):
    seg = Segmenter(board["nv12"], board=BoardOptions(runtime="hbm"))
    runs = {}
    for hw in (True, False):
        out = tmp_path / f"{hw}.jsonl"
        predict_sources(seg, [str(clip)], outputs=PredictOutputs(save_jsonl=out), stream=StreamOptions(hw_decode=hw), show_progress=False)
        runs[hw] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in runs[True]] == [r["frame"] for r in runs[False]] == list(range(8))
    # two JPEG decoders and two colour paths (NV12 letterbox vs BGR letterbox): the same objects, give or take one
    hw, cv = ([(d["class_id"], d["bbox_xyxy"]) for r in runs[k] for d in r["detections"]] for k in (True, False))
    assert len(cv) > 10 and abs(len(hw) - len(cv)) <= 0.1 * len(cv)
    assert matched(_detections(cv), _detections(hw), iou=0.9) >= 0.9 * len(cv)


# --------------------------------------------------------------------------------------------------
# the board benchmark and the seed's table


def test_bench_of_a_bin_measures_the_seeds_columns_and_report_renders_them(board, coco128_images, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in coco128_images[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    proc = _cli(
        "bench",
        str(board["nv12"]),
        "--images",
        str(images),
        "--threads",
        "1,4,8",
        "--warmup",
        "0",
        "--compare-repeats",
        "1",
        "--no-ultralytics",
        "--runtime",
        "hbm",
        "--json",
        str(tmp_path / "bench.json"),
    )
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads((tmp_path / "bench.json").read_text())["models"]
    assert sorted(map(int, entry["throughput_ips"]["workers"])) == [1, 4, 8]
    assert not entry["throughput_ips"]["intra_op"]  # a BPU has no intra-op threads
    assert entry["int8"] is True and entry["classes"] == 80 and entry["params"] > 3e6
    proc = _cli("report", "--bench", str(tmp_path / "bench.json"), "-o", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report" / "report.md").read_text()
    assert "| latency / throughput, 1 thread" in page and ", 8 threads" in page and board["nv12"].name in page
