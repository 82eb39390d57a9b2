"""Integer heads with real zero points: per-tensor and per-channel, int8 and uint8, on box, mc and cls,
and a model made by ``edgeseg quantize --int-cls`` run through ``Segmenter``. Every check dequantizes
with the tests' own arithmetic (corpus.dequantize_array), never with ``QuantizedTensor.dequantize``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from corpus import assert_same_detections, dequantize_array, head_outputs, quantize_array
from edgeseg import DecodeOptions, QuantizedTensor, Segmenter, decode
from edgeseg.cli import main
from edgeseg.preprocess import load_image

HEADS = ("cls", "box", "mc")


@pytest.fixture(scope="module")
def raw(default_model, coco128_images):
    """(info, [(outputs, letterbox)]) of the embedded float model for 8 real images."""
    seg = Segmenter(default_model)
    return seg.info, head_outputs(seg, coco128_images[3::16])


def integer_heads(outputs: dict, dtype, per_channel: bool, rng: np.random.Generator) -> tuple[dict, dict]:
    """(quantized outputs, their dequantized floats): cls/box/mc heads quantized to ``dtype`` with zero points
    away from 0 (a different one per channel when ``per_channel``); protos stay float."""
    info = np.iinfo(dtype)
    middle = (int(info.min) + int(info.max)) // 2
    q_out, deq_out = {}, {}
    for name, x in outputs.items():
        if not name.startswith(HEADS):
            q_out[name] = deq_out[name] = x
            continue
        channels = x.shape[-1]
        zero_point = rng.integers(middle - 40, middle + 40, channels if per_channel else ()).astype(np.int32)
        # The range each zero point leaves on its smaller side must hold the channel's largest magnitude.
        room = np.minimum(zero_point - info.min, info.max - zero_point).astype(np.float32)
        amax = np.abs(x).reshape(-1, channels).max(0) if per_channel else np.abs(x).max()
        scale = (np.maximum(amax, 1e-6) / room).astype(np.float32)
        q = quantize_array(x, scale, zero_point, dtype)
        q_out[name] = QuantizedTensor(q, np.asarray(scale), np.asarray(zero_point))
        deq_out[name] = dequantize_array(q, scale, zero_point)
    return q_out, deq_out


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_integer_heads_decode_like_their_dequantized_floats(raw, dtype, per_channel):
    info, items = raw
    rng = np.random.default_rng(7)
    total = 0
    for outputs, lb in items:
        q_out, deq_out = integer_heads(outputs, dtype, per_channel, rng)
        assert any(np.any(q_out[n].zero_point != 0) for n in q_out if n.startswith(HEADS))
        for options in (DecodeOptions(), DecodeOptions(conf=0.05)):
            fast = decode(q_out, info, lb, options)
            assert_same_detections(fast, decode(deq_out, info, lb, options))
            total += len(fast)
        # Quantization error is small: the integer heads find what the float heads find.
        assert abs(len(decode(q_out, info, lb)) - len(decode(outputs, info, lb))) <= 2
    assert total > 50


def test_integer_threshold_honours_the_zero_point(raw):
    """Per-tensor integer cls logits are thresholded as integers: a zero point far from 0 must move the
    integer threshold exactly as much, on both sides of it. Scale 0.1 keeps logits -2.7..2.7 (conf 0.06..0.94)
    representable with either zero point; lower logits saturate, which is far below every threshold."""
    info, items = raw
    outputs, lb = items[2]  # six objects
    scale = np.float32(0.1)
    for zero_point in (-100, 100):
        q_out, deq_out = {}, {}
        for name, x in outputs.items():
            if not name.startswith("cls"):
                q_out[name] = deq_out[name] = x
                continue
            q = quantize_array(x, scale, zero_point)
            q_out[name] = QuantizedTensor(q, np.asarray(scale), np.asarray(np.int32(zero_point)))
            deq_out[name] = dequantize_array(q, scale, zero_point)
        for conf in (0.1, 0.25, 0.6):
            det = decode(q_out, info, lb, DecodeOptions(conf=conf), with_masks=False)
            assert_same_detections(det, decode(deq_out, info, lb, DecodeOptions(conf=conf), with_masks=False))
            assert len(det) > 0


# --- a model from the quantize command line, through Segmenter ----------------------------------------


@pytest.fixture(scope="module")
def int_cls_model(tmp_path_factory, default_model, coco128_images):
    work = tmp_path_factory.mktemp("int_cls")
    (work / "calib").mkdir()
    for p in coco128_images[:4]:
        shutil.copy(p, work / "calib" / p.name)
    out = work / "int-cls.onnx"
    args = [
        str(default_model),
        "--calib",
        str(work / "calib"),
        "--num",
        "4",
        "--int-cls",
        "--report-images",
        "0",
        "--bench",
        "0",
        "-o",
        str(out),
    ]
    assert main(["quantize", *args]) == 0
    return out


@pytest.mark.slow
def test_int_cls_model_through_segmenter(int_cls_model, default_model, coco128_images):
    seg = Segmenter(int_cls_model)
    float_seg = Segmenter(default_model)
    images = [load_image(p) for p in coco128_images[40:46]]
    found = matched = 0
    for image in images:
        outputs, lb = seg.raw(image)
        heads = {n: t for n, t in outputs.items() if n.startswith(HEADS)}
        assert heads and all(isinstance(t, QuantizedTensor) and t.data.dtype.kind in "iu" for t in heads.values())
        assert any(np.any(t.zero_point != 0) for t in heads.values())  # the quantizer's activations are asymmetric
        floats = {n: dequantize_array(t.data, t.scale, t.zero_point) if n in heads else t for n, t in outputs.items()}
        det = seg(image)
        assert_same_detections(det, decode(floats, seg.info, lb, seg.options), mask_atol=0)
        # ... and the integer model sees what the float model sees.
        ref = float_seg(image)
        found += len(ref)
        for i in range(len(ref)):
            same_class = det.xyxy[det.class_ids == ref.class_ids[i]]
            matched += bool(len(same_class)) and _best_iou(ref.xyxy[i], same_class) >= 0.8
    assert found >= 20 and matched >= 0.8 * found, (matched, found)


def _best_iou(box: np.ndarray, boxes: np.ndarray) -> float:
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return float((inter / area).max())
