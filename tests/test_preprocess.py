"""Letterbox equality with Ultralytics and image loading errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.preprocess import letterbox, load_image, preprocess


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (427, 640), (1, 1), (3, 2000), (1000, 1000), (333, 517)])
def test_letterbox_equals_ultralytics(shape):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, lb = letterbox(image, (640, 640))
    theirs = LetterBox((640, 640), auto=False, stride=32)(image=image)
    np.testing.assert_array_equal(ours, theirs)
    assert lb.source_shape == shape
    h, w = lb.content_shape
    assert 0 <= lb.pad_left <= 640 - w and 0 <= lb.pad_top <= 640 - h


def test_preprocess_tensor_is_rgb_nchw_unit_range(coco128_images):
    image = load_image(coco128_images[0])
    tensor, lb = preprocess(image, (640, 640))
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    y, x = lb.pad_top + 5, lb.pad_left + 5
    b, g, r = letterbox(image, (640, 640))[0][y, x]
    np.testing.assert_allclose(tensor[0, :, y, x], np.float32([r, g, b]) / np.float32(255))
    assert tensor.min() >= 0 and tensor.max() <= 1


def test_load_image_errors_are_one_line_and_name_the_file(tmp_path):
    cases = {
        "missing.jpg": (None, "no such file"),
        "empty.jpg": (b"", "empty file"),
        "text.png": (b"hello, not an image", "not a readable image"),
        "truncated.jpg": (cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()[:20], "not a readable image"),
    }
    for name, (data, problem) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(EdgesegError) as err:
            load_image(path)
        assert str(err.value) == f"{path}: {problem}" or str(err.value).startswith(f"{path}: {problem}")
        assert "\n" not in str(err.value)
    with pytest.raises(EdgesegError, match="is a directory"):
        load_image(tmp_path)


def test_load_image_converts_gray_rgba_16bit_and_unicode_paths(tmp_path):
    """Pixels, not only shapes: every conversion equals Pillow's decode of the same file (gray replicated
    to three channels, alpha dropped, 16 bits to their high byte), in BGR order."""
    from PIL import Image

    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    for name, img in {"gray.png": gray, "rgba.png": rgba, "deep 16 bit.png": deep, "фото.png": gray}.items():
        path = tmp_path / name
        ok, buf = cv2.imencode(".png", img)
        path.write_bytes(buf.tobytes())
        loaded = load_image(path)
        assert loaded.shape == (20, 30, 3) and loaded.dtype == np.uint8
        with Image.open(path) as pil:
            np.testing.assert_array_equal(loaded, np.asarray(pil.convert("RGB"))[..., ::-1], err_msg=name)
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png")[..., 1], gray)
    np.testing.assert_array_equal(load_image(tmp_path / "deep 16 bit.png"), (deep >> 8).astype(np.uint8))
