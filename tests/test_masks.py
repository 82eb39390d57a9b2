"""Mask geometry and encodings against pycocotools and Ultralytics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseg.masks import ProtoMapping, box_mask_logits, decode_rle, encode_rle, full_mask_logits
from edgeseg.preprocess import letterbox_params

mask_util = pytest.importorskip("pycocotools.mask")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_rle_equals_pycocotools(h, w, seed, density):
    mask = np.random.default_rng(seed).random((h, w)) < density
    ours = encode_rle(mask)
    theirs = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours["counts"] == theirs["counts"].decode() and ours["size"] == [h, w]
    np.testing.assert_array_equal(decode_rle(ours), mask)


def test_rle_large_runs_and_full_masks():
    for mask in (np.ones((480, 640), bool), np.zeros((480, 640), bool), np.eye(300, dtype=bool)):
        theirs = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert encode_rle(mask)["counts"] == theirs["counts"].decode()


@pytest.mark.parametrize("source_shape", [(480, 640), (640, 427), (500, 375)])
def test_box_local_equals_full_image_masks(source_shape):
    rng = np.random.default_rng(1)
    protos = rng.normal(size=(160, 160, 32)).astype(np.float32)
    coeffs = rng.normal(size=32).astype(np.float32)
    mapping = ProtoMapping.from_letterbox(letterbox_params(source_shape, (640, 640)), (160, 160))
    full = full_mask_logits(coeffs, protos, mapping)
    h, w = source_shape
    for box in ([10.2, 20.7, 200.1, 300.9], [0, 0, w, h], [w - 5.5, h - 3.2, w, h]):
        local, (x0, y0) = box_mask_logits(coeffs, protos, np.float32(box), mapping)
        # OpenCV places samples on a 1/32-cell grid: logits agree to ~1e-4 on unit-variance protos.
        np.testing.assert_allclose(local, full[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]], rtol=1e-3, atol=2e-3)
        assert (x0, y0) == (int(np.ceil(box[0])), int(np.ceil(box[1])))


@pytest.mark.parametrize("source_shape", [(480, 640), (640, 427), (375, 500), (1080, 810)])
def test_masks_match_ultralytics_process_mask_native(source_shape):
    torch = pytest.importorskip("torch")
    from ultralytics.utils import ops

    rng = np.random.default_rng(2)
    # Smooth prototypes like a real network's (random noise would make every boundary a coin toss).
    base = rng.normal(size=(20, 20, 32)).astype(np.float32)
    protos = np.stack([np.kron(base[..., k], np.ones((8, 8), np.float32)) for k in range(32)], -1)
    import cv2

    protos = cv2.GaussianBlur(protos, (0, 0), 3)
    h, w = source_shape
    boxes = np.float32([[0.1 * w, 0.1 * h, 0.6 * w, 0.7 * h], [0.3 * w, 0.2 * h, w, h]])
    coeffs = rng.normal(size=(2, 32)).astype(np.float32)
    theirs = (
        ops.process_mask_native(torch.from_numpy(protos).permute(2, 0, 1), torch.from_numpy(coeffs), torch.from_numpy(boxes.copy()), (h, w))
        .numpy()
        .astype(bool)
    )
    mapping = ProtoMapping.from_letterbox(letterbox_params(source_shape, (640, 640)), (160, 160))
    for i in range(2):
        local, (x0, y0) = box_mask_logits(coeffs[i], protos, boxes[i], mapping)
        ours = np.zeros((h, w), bool)
        ours[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local > 0
        iou = (ours & theirs[i]).sum() / max((ours | theirs[i]).sum(), 1)
        assert iou > 0.99, (source_shape, i, iou)
