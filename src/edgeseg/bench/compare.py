"""The fast decoder against the reference decoder and Ultralytics' post-processing, on the same raw
outputs of each image."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..backends.base import BOX, CLS, MC, PROTOS, ModelInfo, QuantizedTensor, as_float, output_name
from ..decode import DecodeOptions, decode, dfl_dist2bbox, protos_hwc
from ..machine import BlasThreads, helper_threads
from ..predict import Segmenter
from ..preprocess import Letterbox
from ..progress import progress
from ..reference import reference_decode
from .measure import BenchImages
from .result import DecoderComparison, DecoderTimes, LinearFit, ObjectBin

OBJECT_BINS = ((0, 4), (5, 9), (10, 19), (20, None))  # decode cost grows with the number of kept objects
DECODERS = ("fast", "reference", "ultralytics")


def ultralytics_layout(outputs: Mapping[str, np.ndarray | QuantizedTensor], info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """What Ultralytics' standard ONNX export would have returned for the same image: ``output0``
    [1, 4+nc+nm, A] (xywh in input pixels from DFL + dist2bbox, sigmoid class scores, mask coefficients;
    anchors stride by stride, row-major) and ``output1`` protos [1, nm, Hp, Wp]."""
    cols = []
    for s in info.strides:
        cls = as_float(outputs[output_name(CLS, s)])
        grid_w = cls.shape[2]
        cls = cls.reshape(-1, info.num_classes)
        box = as_float(outputs[output_name(BOX, s)]).reshape(-1, 4 * info.reg_max)
        xyxy = dfl_dist2bbox(box, np.arange(box.shape[0]), grid_w, s, info.reg_max)
        xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        mc = as_float(outputs[output_name(MC, s)]).reshape(-1, info.num_masks)
        cols.append(np.concatenate([xywh, 1 / (1 + np.exp(-cls)), mc], axis=1))
    output0 = np.ascontiguousarray(np.concatenate(cols).T[None], dtype=np.float32)
    protos = np.ascontiguousarray(protos_hwc(outputs[PROTOS]).transpose(2, 0, 1)[None], dtype=np.float32)
    return output0, protos


class UltralyticsPost:
    """Ultralytics' predictor post-processing with ``retina_masks=True``: NMS (for one-to-one heads the
    end-to-end top-k), boxes to original pixels,
    masks at original resolution (``process_mask_native``), drop empty masks."""

    def __init__(self) -> None:
        import torch  # noqa: F401  (ImportError -> skipped by the caller)

        with contextlib.suppress(ImportError):
            import torchvision  # noqa: F401  (Ultralytics uses torchvision's NMS when it is imported)
        import ultralytics
        from ultralytics.utils import nms, ops

        self.torch, self.nms, self.ops = sys.modules["torch"], nms, ops
        self.versions = {
            "ultralytics": ultralytics.__version__,
            "torch": self.torch.__version__,
            "nms": "torchvision" if "torchvision" in sys.modules else "torch",
        }

    def prepare(self, outputs: Mapping[str, np.ndarray | QuantizedTensor], info: ModelInfo) -> tuple[Any, Any]:
        output0, protos = ultralytics_layout(outputs, info)
        return self.torch.from_numpy(output0), self.torch.from_numpy(protos[0])

    def _end2end_topk(self, pred: Any, info: ModelInfo, options: DecodeOptions) -> Any:
        """What Ultralytics' one-to-one head returns: its own ``Detect.postprocess`` (top-k anchors, then top-k
        anchor x class pairs) on xyxy boxes, [1, k, 6 + nm]."""
        import types

        from ultralytics.nn.modules.head import Detect

        x = pred.permute(0, 2, 1)
        boxes = self.ops.xywh2xyxy(x[..., :4])
        head = types.SimpleNamespace(
            nc=info.num_classes,
            max_det=options.max_det,
            agnostic_nms=options.agnostic,
            export=False,
            format=None,
            dynamic=False,
            _grouped_topk=Detect._grouped_topk,
        )
        head.get_topk_index = types.MethodType(Detect.get_topk_index, head)
        head._gather = types.MethodType(Detect._gather, head)
        return Detect.postprocess(head, self.torch.cat([boxes, x[..., 4:]], -1))

    def __call__(self, prepared: tuple[Any, Any], lb: Letterbox, info: ModelInfo, options: DecodeOptions) -> int:
        pred, proto = prepared
        if info.end2end:  # one-to-one heads (YOLO26): top-k, then the predictor's conf filter, no NMS
            pred = self._end2end_topk(pred, info, options)
        out = self.nms.non_max_suppression(
            pred, options.conf, options.iou, None, False, max_det=options.max_det, nc=info.num_classes, end2end=info.end2end
        )[0]
        if out.shape[0] == 0:
            return 0
        out[:, :4] = self.ops.scale_boxes(lb.input_shape, out[:, :4], lb.source_shape)
        masks = self.ops.process_mask_native(proto, out[:, 6:], out[:, :4], lb.source_shape)
        keep = masks.amax((-2, -1)) > 0
        return int(keep.sum())


def _median(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 3) if len(values) else None


def _linear_fit(objects: Sequence[int], ms: Sequence[float]) -> LinearFit | None:
    """ms ~ a + b * objects (least squares): cost per image at a given object count."""
    x, y = np.asarray(objects, np.float64), np.asarray(ms, np.float64)
    if x.size < 3 or np.ptp(x) == 0:
        return None
    b, a = np.polyfit(x, y, 1)
    return LinearFit(round(float(a), 3), round(float(b), 4), round(float(a + 20 * b), 3))


def compare_decoders(
    model: str | os.PathLike,
    images: BenchImages,
    *,
    repeats: int,
    options: DecodeOptions,
    ultralytics: bool = True,
    show_progress: bool = True,
) -> DecoderComparison:
    """Time the fast decoder, the reference decoder and Ultralytics' post-processing on the same raw
    outputs of each image (inference and Ultralytics' tensor layout are prepared outside the timed region).
    All run with one helper thread; the fast decoder is also timed with the BLAS library's default
    thread count to show what an unpinned process gets."""
    segmenter = Segmenter(model, options=options, threads=1)
    ul: UltralyticsPost | None = None
    note = None
    if ultralytics:
        try:
            ul = UltralyticsPost()
        except ImportError as exc:
            note = f"Ultralytics post-processing skipped: {exc.name or exc} is not installed"
    else:
        note = "Ultralytics post-processing skipped (--no-ultralytics)"
    rows = []
    bar = progress(desc="decoders", total=len(images), enabled=show_progress, leave=False)
    with helper_threads(1):  # again: torch may have been loaded only now
        for name, image in zip(images.names, images.arrays):
            rows.append(_compare_one(name, image, segmenter, ul, repeats))
            bar.update(1)
    bar.close()
    return _summarise(rows, model, ul, note, repeats, options)


def _timed_runs(repeats: int, run: Callable[[], Any]) -> tuple[list[float], Any]:
    """``run()`` ``repeats`` times: the ms of each run and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        result = run()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times, result


def _compare_one(name: str, image: np.ndarray, segmenter: Segmenter, ul: UltralyticsPost | None, repeats: int) -> DecoderTimes:
    """One image: raw outputs once, then every decoder ``repeats`` times; per-decoder median ms and counts."""
    info, options = segmenter.info, segmenter.options
    outputs, lb = segmenter.raw(image)
    with np.errstate(over="ignore"):
        prepared = ul.prepare(outputs, info) if ul else None
    blas = BlasThreads.get()
    row = DecoderTimes(image=name, objects=0)
    # Decoder by decoder, ``repeats`` runs each: every decoder finds the outputs in cache as it would right
    # after inference (interleaving them lets the reference decoder's full-image arrays evict the fast
    # decoder's working set, which no real pipeline does).
    with np.errstate(over="ignore"):  # exp overflow in sigmoid of very negative logits saturates to 0: fine
        fast, det = _timed_runs(repeats, lambda: decode(outputs, info, lb, options))
        row.objects, row.fast_ms = len(det), _median(fast)
        if blas.available and blas.default and blas.default > 1:
            saved = blas.threads()
            blas.set_threads(blas.default)
            row.fast_default_blas_ms = _median(_timed_runs(repeats, lambda: decode(outputs, info, lb, options))[0])
            blas.set_threads(saved or 1)
        reference, det = _timed_runs(repeats, lambda: reference_decode(outputs, info, lb, options))
        row.reference_objects, row.reference_ms = len(det), _median(reference)
        if ul is not None:
            ul_times, row.ultralytics_objects = _timed_runs(repeats, lambda: ul(prepared, lb, info, options))
            row.ultralytics_ms = _median(ul_times)
    return row


def _summarise(
    rows: list[DecoderTimes],
    model: str | os.PathLike,
    ul: UltralyticsPost | None,
    note: str | None,
    repeats: int,
    options: DecodeOptions,
) -> DecoderComparison:
    def med(decoder: str, subset: list[DecoderTimes] | None = None) -> float | None:
        values = [getattr(r, f"{decoder}_ms") for r in (rows if subset is None else subset)]
        return _median([v for v in values if v is not None])

    objects = [r.objects for r in rows]
    result = DecoderComparison(
        model=str(model),
        images=len(rows),
        mean_objects=round(float(np.mean(objects)), 2),
        median_objects=float(np.median(objects)),
        max_objects=int(max(objects)),
        fast_ms=med("fast"),
        reference_ms=med("reference"),
        ultralytics_ms=med("ultralytics"),
        fast_default_blas_ms=med("fast_default_blas"),
        repeats=repeats,
        conf=options.conf,
        iou=options.iou,
        max_det=options.max_det,
        objects_agree={
            "reference": sum(r.reference_objects == r.objects for r in rows),
            "ultralytics": sum(r.ultralytics_objects == r.objects for r in rows) if ul else None,
        },
        ultralytics=ul.versions if ul is not None else None,
        note=note,
        per_image=rows,
    )
    if result.fast_ms:
        if result.reference_ms is not None:
            result.speedup_vs_reference = round(result.reference_ms / result.fast_ms, 1)
        if result.ultralytics_ms is not None:
            result.speedup_vs_ultralytics = round(result.ultralytics_ms / result.fast_ms, 1)
    for lo, hi in OBJECT_BINS:
        subset = [r for r in rows if r.objects >= lo and (hi is None or r.objects <= hi)]
        if subset:
            result.by_objects.append(
                ObjectBin(
                    objects=f"{lo}-{hi}" if hi is not None else f"{lo}+",
                    images=len(subset),
                    mean_objects=round(float(np.mean([r.objects for r in subset])), 2),
                    fast_ms=med("fast", subset),
                    reference_ms=med("reference", subset),
                    ultralytics_ms=med("ultralytics", subset),
                )
            )
    for decoder in DECODERS:
        timed = [r for r in rows if getattr(r, f"{decoder}_ms") is not None]
        result.fit[decoder] = _linear_fit([r.objects for r in timed], [getattr(r, f"{decoder}_ms") for r in timed])
    return result
