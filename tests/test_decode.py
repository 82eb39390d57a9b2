"""The fast decoder against the reference pipeline, the integer path, and decoder invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeseg.backends import ModelInfo, OnnxRuntimeBackend, QuantizedTensor
from edgeseg.decode import DecodeOptions, conf_to_logit, decode, nms
from edgeseg.preprocess import letterbox_params, load_image, preprocess
from edgeseg.reference import reference_decode


@pytest.fixture(scope="module")
def raw(default_model, coco128_images):
    """(outputs, letterbox) of the embedded model for 12 real images."""
    backend = OnnxRuntimeBackend(default_model)
    items = []
    for path in coco128_images[::11]:
        tensor, lb = preprocess(load_image(path), backend.info.imgsz)
        items.append((backend.run(tensor), lb))
    return backend.info, items


def assert_same_detections(a, b, mask_atol=0):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    if a.masks is not None:
        np.testing.assert_array_equal(a.mask_origins, b.mask_origins)
        for ma, mb in zip(a.masks, b.masks):
            assert ma.shape == mb.shape
            assert (ma != mb).sum() <= mask_atol * ma.size


@pytest.mark.parametrize("conf", [0.25, 0.05])
def test_fast_decoder_equals_reference_pipeline(raw, conf):
    info, items = raw
    total = 0
    for outputs, lb in items:
        fast = decode(outputs, info, lb, DecodeOptions(conf=conf))
        ref = reference_decode(outputs, info, lb, DecodeOptions(conf=conf))
        assert_same_detections(fast, ref, mask_atol=1e-4)
        total += len(fast)
    assert total > 20  # the fixture model finds real objects on its training images


def _quantize(x, scale, zero_point, dtype=np.int8):
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


@pytest.mark.parametrize("per_channel", [False, True])
def test_integer_heads_decode_like_their_dequantized_floats(raw, per_channel):
    info, items = raw
    for outputs, lb in items[:6]:
        q_outputs, deq_outputs = {}, {}
        for name, x in outputs.items():
            if name.startswith(("box", "mc", "cls")) and not (per_channel and name.startswith("cls")):
                amax = np.abs(x).reshape(-1, x.shape[-1]).max(0) if per_channel else np.abs(x).max()
                scale = np.asarray(np.maximum(amax, 1e-6) / 127, np.float32)
                zp = np.zeros_like(scale, np.int32) if per_channel else np.int32(3)
                q = _quantize(x, scale, zp)
                q_outputs[name] = QuantizedTensor(q, scale, np.asarray(zp))
                deq_outputs[name] = ((q.astype(np.float32) - zp) * scale).astype(np.float32)
            else:
                q_outputs[name] = deq_outputs[name] = x
        assert_same_detections(decode(q_outputs, info, lb), decode(deq_outputs, info, lb))


def test_classes_filter_and_agnostic_nms(raw):
    info, items = raw
    for outputs, lb in items:
        only = decode(outputs, info, lb, DecodeOptions(conf=0.05, classes=[0]))
        assert set(only.class_ids.tolist()) <= {0}
        agnostic = decode(outputs, info, lb, DecodeOptions(conf=0.05, agnostic=True, iou=0.5))
        ious = _pairwise_iou(agnostic.xyxy)
        # NMS runs in network-input pixels; after the letterbox inverse IoUs are (nearly) unchanged.
        assert (ious[np.triu_indices(len(agnostic), 1)] <= 0.5 + 1e-3).all()
        assert len(decode(outputs, info, lb, DecodeOptions(conf=0.05, max_det=2))) <= 2


def _pairwise_iou(b):
    x1, y1 = np.maximum(b[:, None, 0], b[None, :, 0]), np.maximum(b[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(b[:, None, 2], b[None, :, 2]), np.minimum(b[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area[:, None] + area[None, :] - inter + 1e-9)


def test_conf_to_logit_is_the_sigmoid_threshold():
    for conf in (0.001, 0.25, 0.5, 0.9):
        t = conf_to_logit(conf)
        assert abs(1 / (1 + np.exp(-t)) - conf) < 1e-9
    assert conf_to_logit(0) == -np.inf and conf_to_logit(1) == np.inf


def test_nms_equals_torchvision():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(3)
    for _ in range(20):
        xy = rng.uniform(0, 300, (200, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 120, (200, 2)).astype(np.float32)], 1)
        scores = rng.random(200).astype(np.float32)
        theirs = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, 0.5), theirs)  # dense IoU matrix path
        np.testing.assert_array_equal(nms(boxes, scores, 0.5, dense_limit=10), theirs)  # looped path


# --- properties on random head outputs -------------------------------------------------------------

INFO = ModelInfo(names={i: f"c{i}" for i in range(4)}, strides=(8, 16, 32), imgsz=(128, 128))


@st.composite
def head_outputs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    outputs = {}
    for s in INFO.strides:
        g = 128 // s
        outputs[f"cls_stride{s}"] = rng.normal(-3, 2.5, (1, g, g, 4)).astype(np.float32)
        outputs[f"box_stride{s}"] = rng.normal(0, 2, (1, g, g, 64)).astype(np.float32)
        outputs[f"mc_stride{s}"] = rng.normal(0, 1, (1, g, g, 32)).astype(np.float32)
    outputs["protos"] = rng.normal(0, 1, (1, 32, 32, 32)).astype(np.float32)
    h = draw(st.integers(16, 400))
    w = draw(st.integers(16, 400))
    return outputs, letterbox_params((h, w), INFO.imgsz)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head_outputs(), st.floats(0.05, 0.9), st.floats(0.1, 0.9), st.integers(1, 50), st.booleans())
def test_decoder_invariants(data, conf, iou, max_det, agnostic):
    outputs, lb = data
    det = decode(outputs, INFO, lb, DecodeOptions(conf=conf, iou=iou, max_det=max_det, agnostic=agnostic))
    h, w = lb.source_shape
    assert len(det) <= max_det
    assert (det.scores > conf - 1e-6).all()
    assert (np.diff(det.scores) <= 1e-7).all()  # sorted, best first
    assert (det.xyxy[:, [0, 2]] >= 0).all() and (det.xyxy[:, [0, 2]] <= w).all()
    assert (det.xyxy[:, [1, 3]] >= 0).all() and (det.xyxy[:, [1, 3]] <= h).all()
    for i, m in enumerate(det.masks):
        x0, y0 = det.mask_origins[i]
        assert m.any() and x0 + m.shape[1] <= w and y0 + m.shape[0] <= h
    # Quantized heads (per-tensor int8) decode exactly like their dequantized floats.
    q_out, deq_out = {}, {}
    for name, x in outputs.items():
        scale = np.float32(np.abs(x).max() / 127)
        q = _quantize(x, scale, 0)
        q_out[name] = QuantizedTensor(q, np.asarray(scale), np.asarray(np.int32(0)))
        deq_out[name] = q.astype(np.float32) * scale
    assert_same_detections(decode(q_out, INFO, lb, DecodeOptions(conf=conf)), decode(deq_out, INFO, lb, DecodeOptions(conf=conf)))
