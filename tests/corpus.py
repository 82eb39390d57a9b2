"""Generators for the bad-input corpus: real files made on the fly, nothing binary committed."""

from __future__ import annotations

import struct
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
        "gif.gif": (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
                    b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;", None),
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
