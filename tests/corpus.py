"""Test material made on the fly (nothing binary committed) and the helpers several test files share: the
bad-input corpus, real head outputs of the embedded model, integer heads quantized and dequantized by the
tests' own arithmetic, and the command line run as a user runs it (with the reason of its errors)."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal big-endian EXIF APP1 segment carrying only the Orientation tag (0x0112)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def scene(h: int = 240, w: int = 320) -> np.ndarray:
    img = np.full((h, w, 3), (180, 160, 120), np.uint8)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2, h - 10), (40, 40, 200), -1)
    return img


def make_image_corpus(root: Path) -> dict[str, tuple[Path, str | None]]:
    """name -> (path, expected problem or None when the file must be processed)."""
    root.mkdir(parents=True, exist_ok=True)
    base = scene()
    cases: dict[str, tuple[bytes | None, str | None]] = {
        "zero byte.jpg": (b"", "empty file"),
        "truncated.jpg": (jpeg_bytes(base)[:200], "not a readable image"),
        "header only.png": (png_bytes(base)[:60], "not a readable image"),
        "text.png": (b"this is not an image\n" * 10, "not a readable image"),
        "random.jpg": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a readable image"),
        "html.jpeg": (b"<!doctype html><title>404</title>", "not a readable image"),
        "gif.gif": (
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
            b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
            None,
        ),
        "gray.png": (png_bytes(cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)), None),
        "rgba.png": (png_bytes(np.dstack([base, np.full(base.shape[:2], 128, np.uint8)])), None),
        "deep16.png": (png_bytes(base.astype(np.uint16) * 257), None),
        "one pixel.png": (png_bytes(base[:1, :1]), None),
        "thin 1x300.png": (png_bytes(base[:1, :300]), None),
        "exif rotated.jpg": (with_exif_orientation(jpeg_bytes(scene(200, 400)), 6), None),
        "названия фото.jpg": (jpeg_bytes(base), None),
        "with spaces & symbols (1).jpg": (jpeg_bytes(base), None),
        "image.bmp": (cv2.imencode(".bmp", base)[1].tobytes(), None),
        "image.webp": (cv2.imencode(".webp", base)[1].tobytes(), None),
    }
    out = {}
    for name, (data, problem) in cases.items():
        p = root / name
        p.write_bytes(data)
        out[name] = (p, problem)
    # OpenCV reads GIF only in some builds: whatever it does, the run must not crash.
    gif = out.pop("gif.gif")[0]
    out["gif.gif"] = (gif, "?")
    return out


# --- real head outputs and the tests' own integer arithmetic ----------------------------------------


def head_outputs(segmenter, images: Sequence[Path]) -> list[tuple[dict, object]]:
    """(raw outputs by name, Letterbox) of ``segmenter`` for each image file."""
    from edgeseg.preprocess import load_image

    return [segmenter.raw(load_image(p)) for p in images]


def quantize_array(x: np.ndarray, scale, zero_point, dtype=np.int8) -> np.ndarray:
    """``round(x / scale) + zero_point``, saturated to ``dtype`` (scale and zero point broadcast over the last axis)."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_array(q: np.ndarray, scale, zero_point) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32: written here, not taken from ``QuantizedTensor``, so that a
    dequantizer that drops the zero point cannot agree with itself."""
    return (q.astype(np.float32) - np.asarray(zero_point, np.float32)) * np.asarray(scale, np.float32)


def assert_same_detections(a, b, mask_atol: float = 0) -> None:
    """Same boxes, scores and classes (in order); box-local masks equal up to ``mask_atol`` of their pixels."""
    assert len(a) == len(b), (len(a), len(b))
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    if a.masks is not None:
        np.testing.assert_array_equal(a.mask_origins, b.mask_origins)
        for ma, mb in zip(a.masks, b.masks):
            assert ma.shape == mb.shape
            assert (ma != mb).sum() <= mask_atol * ma.size


def iou_of_two(a, b) -> float:
    """IoU of two xyxy boxes, in plain Python (an oracle that shares no code with edgeseg's)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


CLIP_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video as OpenCV decodes it (BGR)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


def make_clip(path: Path, images: list[Path], size=(320, 240), fps=10.0) -> Path:
    """A clip of ``images``, each resized to ``size`` (codec by suffix: mp4v, or MJPG in .avi)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CLIP_FOURCC[path.suffix]), fps, size)
    for p in images:
        writer.write(cv2.resize(cv2.imread(str(p)), size))
    writer.release()
    return path


# --- the command line as a user meets it -------------------------------------------------------------


def run_cli(*args, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m edgeseg.cli ARGS`` in a fresh process, output captured as text (a hang fails after ``timeout``)."""
    return subprocess.run([sys.executable, "-m", "edgeseg.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def error_reason(proc, path=None) -> str:
    """The reason of a one-line ``edgeseg: error: PATH: REASON`` (``edgeseg: error: REASON`` without a path):
    the text after the path, so that a check cannot pass on words of the path itself."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("edgeseg: error:")]
    assert len(lines) == 1, proc.stderr
    prefix = "edgeseg: error: " + ("" if path is None else f"{path}: ")
    assert lines[0].startswith(prefix), (prefix, lines[0])
    return lines[0][len(prefix) :]


def usage_error(proc) -> str:
    """The reason argparse gives for a rejected value (the text after ``error:``, not the usage line)."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeseg ") and ": error: " in last, proc.stderr
    return last.split(": error: ", 1)[1]


def start_cli(args: Sequence, **popen) -> subprocess.Popen:
    """``edgeseg ARGS`` as a child process that Ctrl-C (SIGINT) interrupts, as in a terminal: a shell that
    starts the tests in the background (``cmd &``) hands its children SIGINT ignored, which Python then
    keeps ignoring, so the child's SIGINT is set back to the default before it starts."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgeseg.cli", *map(str, args)],
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (xyxy), written here for the tests."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def matched(ref, other, iou: float = 0.95) -> int:
    """Detections of ``ref`` with a same-class detection in ``other`` at box IoU >= ``iou``."""
    if not len(ref) or not len(other):
        return 0
    same = (ref.class_ids[:, None] == other.class_ids[None, :]) & (box_iou(ref.xyxy, other.xyxy) >= iou)
    return int(same.any(axis=1).sum())


def without_edgeseg_names(model):
    """An ONNX model as an export from elsewhere (RDK zoo style) has it, changed in place: no edgeseg metadata, and
    the outputs renamed ``out0``, ``out1``, ... (nodes rewired to the new names)."""
    del model.metadata_props[:]
    rename = {o.name: f"out{i}" for i, o in enumerate(model.graph.output)}
    for n in model.graph.node:
        n.output[:] = [rename.get(o, o) for o in n.output]
    for o in model.graph.output:
        o.name = rename[o.name]
    return model


SLIDE_SHIFTS = [*range(-96, 97, 32), *range(64, -97, -32)]  # the sample image slid right, then back left: 13 frames


def slid_frames() -> list[np.ndarray]:
    """The project's sample image slid sideways by ``SLIDE_SHIFTS`` pixels: objects that cross lines and zones."""
    from edgeseg.predict import SAMPLE_IMAGE

    image = cv2.imread(str(SAMPLE_IMAGE))
    h, w = image.shape[:2]
    return [cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)) for dx in SLIDE_SHIFTS]


def make_slide(path: Path) -> Path:
    """``slid_frames`` as a 10 fps mp4 at ``path``."""
    frames = slid_frames()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path
