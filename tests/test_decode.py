"""The fast decoder against the reference pipeline, box geometry and NMS worked out by hand, and decoder
invariants. The independent oracle (Ultralytics' own post-processing) is in test_decode_oracle.py, integer
heads with zero points in test_zero_points.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus import assert_same_detections, dequantize_array, head_outputs, quantize_array
from edgeseg import DecodeOptions, ModelInfo, QuantizedTensor, Segmenter, decode, reference_decode
from edgeseg.decode import conf_to_logit, nms
from edgeseg.preprocess import letterbox_params


@pytest.fixture(scope="module")
def raw(default_model, coco128_images):
    """(info, [(outputs, letterbox)]) of the embedded model for 12 real images."""
    seg = Segmenter(default_model)
    return seg.info, head_outputs(seg, coco128_images[::11])


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


def test_classes_filter_and_agnostic_nms(raw):
    info, items = raw
    people = suppressed_by_agnostic = 0
    for outputs, lb in items:
        every = decode(outputs, info, lb, DecodeOptions(conf=0.05))
        # The class filter drops other classes before NMS; class-aware NMS never lets classes suppress each
        # other, so the filtered result is exactly the class-0 part of the unfiltered one.
        only = decode(outputs, info, lb, DecodeOptions(conf=0.05, classes=[0]))
        np.testing.assert_array_equal(only.class_ids, np.zeros(len(only), np.int64))
        np.testing.assert_array_equal(only.xyxy, every.xyxy[every.class_ids == 0])
        people += len(only)
        agnostic = decode(outputs, info, lb, DecodeOptions(conf=0.05, agnostic=True, iou=0.5))
        ious = _pairwise_iou(agnostic.xyxy)
        # NMS runs in network-input pixels; after the letterbox inverse IoUs are (nearly) unchanged.
        assert (ious[np.triu_indices(len(agnostic), 1)] <= 0.5 + 1e-3).all()
        suppressed_by_agnostic += len(decode(outputs, info, lb, DecodeOptions(conf=0.05, iou=0.5))) - len(agnostic)
        two = decode(outputs, info, lb, DecodeOptions(conf=0.05, max_det=2))
        assert len(two) == min(2, len(every))
        np.testing.assert_array_equal(two.xyxy, every.xyxy[:2])
    assert people > 10  # coco128 is full of people: the filter is not tested on nothing
    assert suppressed_by_agnostic > 0  # overlapping boxes of different classes exist, and class-aware NMS kept them


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


# --- geometry and NMS worked out by hand ------------------------------------------------------------

INFO = ModelInfo(names={i: f"c{i}" for i in range(4)}, strides=(8, 16, 32), imgsz=(128, 128))


def hand_made_heads(cells: dict[tuple[int, int, int], tuple[dict[int, float], tuple[int, int, int, int]]]) -> dict:
    """Head outputs of INFO with nothing but ``cells``: (stride, row, col) -> ({class: logit}, (l, t, r, b)).
    Each side's DFL logits peak so sharply at bin ``k`` that its expectation is ``k`` cells exactly."""
    outputs = {}
    for s in INFO.strides:
        g = 128 // s
        outputs[f"cls_stride{s}"] = np.full((1, g, g, 4), -20, np.float32)
        outputs[f"box_stride{s}"] = np.full((1, g, g, 4, 16), -30, np.float32)
        outputs[f"mc_stride{s}"] = np.ones((1, g, g, 32), np.float32)
    for (s, row, col), (logits, ltrb) in cells.items():
        for c, logit in logits.items():
            outputs[f"cls_stride{s}"][0, row, col, c] = logit
        for side, k in enumerate(ltrb):
            outputs[f"box_stride{s}"][0, row, col, side, k] = 30
    for s in INFO.strides:
        outputs[f"box_stride{s}"] = outputs[f"box_stride{s}"].reshape(1, 128 // s, 128 // s, 64)
    outputs["protos"] = np.ones((1, 32, 32, 32), np.float32)
    return outputs


def test_boxes_are_dfl_expectations_around_cell_centres():
    # Cell (row 3, col 4) at stride 8 has its centre at (4.5, 3.5) cells; ltrb (2, 3, 4, 5) cells around it.
    outputs = hand_made_heads({(8, 3, 4): ({1: 4.0}, (2, 3, 4, 5)), (32, 1, 2): ({3: 3.0}, (1, 1, 1, 0))})
    det = decode(outputs, INFO, letterbox_params((128, 128), INFO.imgsz), DecodeOptions(), with_masks=False)
    np.testing.assert_allclose(det.xyxy, [[20, 4, 68, 68], [48, 16, 112, 48]], atol=1e-4)
    np.testing.assert_array_equal(det.class_ids, [1, 3])
    np.testing.assert_allclose(det.scores, 1 / (1 + np.exp(-np.float32([4.0, 3.0]))), atol=1e-6)


@pytest.mark.parametrize(
    "source_shape, cell, ltrb, expected",
    [
        ((64, 128), (6, 4), (2, 1, 4, 2), [20, 12, 68, 36]),  # landscape: 32 rows of padding on top
        ((128, 64), (4, 6), (1, 2, 2, 1), [12, 20, 36, 44]),  # portrait: 32 columns of padding on the left
        ((256, 128), (4, 6), (1, 2, 2, 1), [24, 40, 72, 88]),  # portrait at gain 0.5
    ],
)
def test_boxes_undo_the_letterbox(source_shape, cell, ltrb, expected):
    outputs = hand_made_heads({(8, *cell): ({0: 4.0}, ltrb)})
    det = decode(outputs, INFO, letterbox_params(source_shape, INFO.imgsz), DecodeOptions(), with_masks=False)
    np.testing.assert_allclose(det.xyxy, [expected], atol=1e-4)


def test_nms_is_class_aware_unless_agnostic():
    # Two neighbouring stride-8 cells with the same 12-cell-wide box: IoU 88/104 = 0.85 > 0.7.
    lb = letterbox_params((128, 128), INFO.imgsz)
    two_classes = hand_made_heads({(8, 8, 7): ({0: 4.0}, (6, 6, 6, 6)), (8, 8, 8): ({1: 3.0}, (6, 6, 6, 6))})
    assert decode(two_classes, INFO, lb, with_masks=False).class_ids.tolist() == [0, 1]
    assert decode(two_classes, INFO, lb, DecodeOptions(agnostic=True), with_masks=False).class_ids.tolist() == [0]
    assert decode(two_classes, INFO, lb, DecodeOptions(iou=0.9), with_masks=False).class_ids.tolist() == [0, 1]
    one_class = hand_made_heads({(8, 8, 7): ({2: 4.0}, (6, 6, 6, 6)), (8, 8, 8): ({2: 3.0}, (6, 6, 6, 6))})
    det = decode(one_class, INFO, lb, with_masks=False)
    assert det.class_ids.tolist() == [2] and abs(det.scores[0] - 1 / (1 + np.exp(-4.0))) < 1e-6


class HandMadeBackend:
    """A Backend that returns fixed head outputs whatever the image."""

    def __init__(self, outputs: dict) -> None:
        self.info, self.outputs = INFO, outputs

    def run(self, tensor: np.ndarray) -> dict:
        assert tensor.shape == (1, 3, *INFO.imgsz)
        return self.outputs


def test_one_label_per_cell_unless_multi_label():
    # One cell scores class 0 (p 0.98) and class 1 (p 0.95): predict keeps its best class only.
    outputs = hand_made_heads({(16, 2, 3): ({0: 4.0, 1: 3.0}, (1, 1, 1, 1))})
    lb = letterbox_params((128, 128), INFO.imgsz)
    assert decode(outputs, INFO, lb, with_masks=False).class_ids.tolist() == [0]
    assert DecodeOptions().multi_label is False
    assert decode(outputs, INFO, lb, DecodeOptions(multi_label=True), with_masks=False).class_ids.tolist() == [0, 1]
    seg = Segmenter(HandMadeBackend(outputs))
    assert seg.options == DecodeOptions()
    assert seg(np.zeros((128, 128, 3), np.uint8)).class_ids.tolist() == [0]
    assert Segmenter(HandMadeBackend(outputs), multi_label=True)(np.zeros((128, 128, 3), np.uint8)).class_ids.tolist() == [0, 1]


def test_empty_masks_are_dropped_unless_kept_as_the_validator_keeps_them():
    # Two cells of different classes; the second's mask coefficients are -1 against all-one protos: its mask
    # logits are -32 everywhere inside its box, so its mask has no pixel.
    outputs = hand_made_heads({(8, 3, 4): ({1: 4.0}, (2, 2, 2, 2)), (8, 10, 10): ({2: 3.0}, (2, 2, 2, 2))})
    outputs["mc_stride8"][0, 10, 10] = -1
    lb = letterbox_params((128, 128), INFO.imgsz)
    assert DecodeOptions().keep_empty_masks is False
    for decoder in (decode, reference_decode):
        dropped = decoder(outputs, INFO, lb, DecodeOptions())
        assert dropped.class_ids.tolist() == [1] and dropped.masks[0].all()
        kept = decoder(outputs, INFO, lb, DecodeOptions(keep_empty_masks=True))
        assert kept.class_ids.tolist() == [1, 2] and kept.masks[0].all() and kept.masks[1].size > 0 and not kept.masks[1].any()
        np.testing.assert_allclose(kept.xyxy[1], [68, 68, 100, 100], atol=1e-4)  # centre 10.5 cells, 2 cells each side
    image = np.zeros((128, 128, 3), np.uint8)
    assert Segmenter(HandMadeBackend(outputs))(image).class_ids.tolist() == [1]
    assert Segmenter(HandMadeBackend(outputs), keep_empty_masks=True)(image).class_ids.tolist() == [1, 2]


# --- properties on random head outputs -------------------------------------------------------------


@st.composite
def random_heads(draw):
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
@given(random_heads(), st.floats(0.05, 0.9), st.floats(0.1, 0.9), st.integers(1, 50), st.booleans(), st.integers(-40, 40))
def test_decoder_invariants(data, conf, iou, max_det, agnostic, zero_point):
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
    # Quantized heads (per-tensor int8, any zero point) decode exactly like their dequantized floats.
    q_out, deq_out = {}, {}
    for name, x in outputs.items():
        scale = np.float32(np.abs(x).max() / 100)
        q = quantize_array(x, scale, zero_point)
        q_out[name] = QuantizedTensor(q, np.asarray(scale), np.asarray(np.int32(zero_point)))
        deq_out[name] = dequantize_array(q, scale, zero_point)
    options = DecodeOptions(conf=conf)
    assert_same_detections(decode(q_out, INFO, lb, options), decode(deq_out, INFO, lb, options))
