"""``edgeseg bench``: per-stage latency, throughput vs threads, and the fast decoder against the reference
decoder and Ultralytics' post-processing on the same raw outputs.

Everything here measures; nothing asserts. Numbers depend on the machine and its load, so the results JSON
records the machine, the library versions and the load average before and after the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import itertools
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .decode import decode, dfl_dist2bbox, instance_masks, nms_select, protos_hwc, scale_boxes, select_candidates
from .errors import EdgesegError
from .fileio import write_json_atomic
from .preprocess import Letterbox, load_image, preprocess
from .reference import reference_decode
from .results import Detections
from .runtime import PROTOS, ModelInfo, OnnxRuntimeBackend, QuantizedTensor, output_name

STAGES = ("preprocess", "inference", "decode", "masks", "total")
OBJECT_BINS = ((0, 4), (5, 9), (10, 19), (20, None))  # decode cost grows with the number of kept objects
INT8_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "ConvInteger",
    "MatMulInteger",
}
_INT_ELEM_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # onnx TensorProto uint8/int8/uint16/int16/int32/int64/uint32/uint64


# ----------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# CPU flags (as /proc/cpuinfo names them) of the int8 dot-product instructions that ONNX Runtime's integer
# kernels use; without any of them (AVX2-only x86) int8 convolutions are only about 2x float.
INT8_DOT_FLAGS = ("avx_vnni", "avx512_vnni", "avx512vnni", "amx_int8", "asimddp", "i8mm")


def int8_dot_instructions(cpuinfo: str | None = None) -> list[str] | None:
    """The int8 dot-product extensions of this CPU (``INT8_DOT_FLAGS``), [] if it has none, None when
    unknown (no /proc/cpuinfo)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in INT8_DOT_FLAGS if flag in present]
    return None


def int8_speed_note(ratio: float, dot: list[str] | None) -> str | None:
    """A one-line explanation when INT8 is under 2x float on a CPU without int8 dot products."""
    if ratio >= 2.0 or dot is None or dot:
        return None
    return (f"INT8 is {ratio:.2f}x float here: this CPU has no int8 dot-product instructions (VNNI / ARM dotprod), "
            "so integer convolutions are only about 2x float and SiLU, concat and requantization do not speed up; "
            "on CPUs with them, and on NPUs, the gap is larger")  # fmt: skip


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, library versions, load."""
    import cv2
    import onnxruntime

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    from . import __version__

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "edgeseg": __version__,
        "blas": _Blas.get().describe(),
        "int8_dot_instructions": int8_dot_instructions(),
        "loadavg_start": _loadavg(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ------------------------------------------------------------------------------------ helper thread pools


class _Blas:
    """Runtime control of OpenBLAS' thread count through its C API (what threadpoolctl does), so that
    "one thread" really means one: numpy's matmul otherwise fans out to every core."""

    _instance: _Blas | None = None

    def __init__(self) -> None:
        self.name: str | None = None
        self._get: Callable[[], int] | None = None
        self._set: Callable[[int], None] | None = None
        self.default: int | None = None
        for path in self._loaded_openblas():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in itertools.product(("scipy_openblas", "openblas"), ("64_", "")):
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    self.name, self._get, self._set = Path(path).name, getter, setter
                    self.default = self.threads()  # before anyone pins it
                    return

    @staticmethod
    def _loaded_openblas() -> list[str]:
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
        except OSError:
            return []
        return sorted(paths)

    @classmethod
    def get(cls) -> _Blas:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @property
    def available(self) -> bool:
        return self._get is not None

    def threads(self) -> int | None:
        return int(self._get()) if self._get else None

    def set_threads(self, n: int) -> None:
        if self._set:
            self._set(int(n))

    def describe(self) -> dict[str, Any]:
        return {"library": self.name, "default_threads": self.default} if self.available else {"library": None}


@contextlib.contextmanager
def helper_threads(n: int = 1) -> Iterator[dict[str, Any]]:
    """Limit the thread pools around ORT (OpenBLAS, OpenCV, torch if loaded) to ``n`` for the block."""
    import cv2

    blas = _Blas.get()
    saved_blas, saved_cv = blas.threads(), cv2.getNumThreads()
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch is not None else None
    blas.set_threads(n)
    cv2.setNumThreads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        yield {"blas": n if blas.available else None, "opencv": n, "torch": n if torch is not None else None}
    finally:
        if saved_blas is not None:
            blas.set_threads(saved_blas)
        cv2.setNumThreads(saved_cv)
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)


# ------------------------------------------------------------------------------------------- model stats


@dataclass(frozen=True)
class ModelStats:
    params: int
    int8: bool
    size_mb: float


def onnx_model_stats(path: str | os.PathLike) -> ModelStats:
    """Parameter count from the ONNX initializers and whether the model is INT8.

    Quantization scales/zero points and integer shape constants are not parameters; an INT8 model is one
    with quantization nodes (QDQ or QOperator) or integer graph outputs."""
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError/ValueError/... for junk
        raise EdgesegError(f"not a valid ONNX file ({type(exc).__name__})", p) from None
    graph = model.graph
    quant_params: set[str] = set()
    int8 = False
    for node in graph.node:
        if node.op_type in INT8_OPS:
            int8 = True
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                quant_params.update(node.input[1:])
            elif node.op_type.startswith("QLinear"):
                # QLinearConv: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, bias]: keep w and bias
                quant_params.update(n for i, n in enumerate(node.input) if i not in (0, 3, 8))
    if any(o.type.tensor_type.elem_type in (2, 3) for o in graph.output):  # uint8 / int8 outputs
        int8 = True
    params = 0
    for init in graph.initializer:
        if init.name in quant_params or init.data_type == onnx.TensorProto.INT64:
            continue
        params += int(np.prod(init.dims, dtype=np.int64)) if len(init.dims) else 1
    if not int8 and "int8" in p.name.lower():
        int8 = True  # last resort: a quantized model in a format we do not recognise, named as such
    return ModelStats(params=params, int8=int8, size_mb=round(p.stat().st_size / 1e6, 2))


# ------------------------------------------------------------------------------------------------ timing


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3)}


def _ms(t0: int, t1: int) -> float:
    return (t1 - t0) / 1e6


def run_pipeline(
    backend: OnnxRuntimeBackend, image: np.ndarray, conf: float, iou: float, max_det: int
) -> tuple[Detections, tuple[int, int, int, int, int]]:
    """One image through preprocess -> inference -> decode (threshold, gather, DFL, NMS, boxes to original
    pixels) -> masks (box-local, original resolution). The same steps as ``decode.decode``, split so each
    stage can be timed; returns the detections and five perf_counter_ns stamps."""
    info = backend.info
    t0 = time.perf_counter_ns()
    tensor, lb = preprocess(image, info.imgsz)
    t1 = time.perf_counter_ns()
    outputs = backend.run(tensor)
    t2 = time.perf_counter_ns()
    cand = select_candidates(outputs, info, conf)
    keep = nms_select(cand, iou, max_det)
    if keep.size == 0:
        det = Detections.empty(lb.source_shape, info.names)
        t3 = time.perf_counter_ns()
        return det, (t0, t1, t2, t3, time.perf_counter_ns())
    xyxy = scale_boxes(cand.xyxy[keep], lb)
    det = Detections(xyxy, cand.scores[keep], cand.class_ids[keep], lb.source_shape, info.names)
    t3 = time.perf_counter_ns()
    det.masks, det.mask_origins = instance_masks(cand.coeffs[keep], outputs[PROTOS], xyxy, lb)
    det = det.drop_empty_masks()
    return det, (t0, t1, t2, t3, time.perf_counter_ns())


@dataclass
class BenchImages:
    names: list[str]
    arrays: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays)


def load_bench_images(sources: Sequence[str | os.PathLike], max_images: int = 0) -> BenchImages:
    """Decode the benchmark images once, up front (JPEG decoding is not a pipeline stage here)."""
    from .predict import expand_sources

    paths, problems = expand_sources(sources)
    if not paths:
        src, problem = problems[0] if problems else (", ".join(map(str, sources)), "no images")
        raise EdgesegError(problem, src)
    if max_images > 0:
        paths = paths[:max_images]
    names, arrays = [], []
    for p in paths:
        try:
            arrays.append(load_image(p))
        except EdgesegError as exc:
            print(f"edgeseg bench: skipping {exc}", file=sys.stderr)
            continue
        names.append(p.name)
    if not arrays:
        raise EdgesegError("none of the images could be read", sources[0])
    return BenchImages(names, arrays)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=False)


def measure_latency(
    backends: Sequence[OnnxRuntimeBackend], images: BenchImages, warmup: int, iters: int, conf: float, iou: float,
    max_det: int, bar,
) -> list[tuple[dict[str, dict[str, float]], list[int]]]:
    """Per model: per-stage p50/p90/p99 over ``iters`` passes of every image, after ``warmup`` untimed
    images, and the object count per image (first pass).

    The models are interleaved image by image (the order rotating from image to image), so that a
    machine that speeds up or slows down during the run (shared cores, boost clocks) shifts all models
    alike and the ratios between them stay honest."""
    for backend in backends:
        for i in range(warmup):
            run_pipeline(backend, images.arrays[i % len(images)], conf, iou, max_det)
    samples: list[dict[str, list[float]]] = [{s: [] for s in STAGES} for _ in backends]
    objects: list[list[int]] = [[] for _ in backends]
    gc.collect()
    step = 0
    for it in range(iters):
        for image in images.arrays:
            for k in range(len(backends)):
                m = (k + step) % len(backends)
                det, (t0, t1, t2, t3, t4) = run_pipeline(backends[m], image, conf, iou, max_det)
                for stage, a, b in zip(STAGES, (t0, t1, t2, t3, t0), (t1, t2, t3, t4, t4)):
                    samples[m][stage].append(_ms(a, b))
                if it == 0:
                    objects[m].append(len(det))
                bar.update(1)
            step += 1
    return [({s: percentiles(v) for s, v in per_model.items()}, objs) for per_model, objs in zip(samples, objects)]


def _run_frames(
    backends: Sequence[OnnxRuntimeBackend], images: BenchImages, frames: int, conf: float, iou: float,
    max_det: int, bar, offset: int = 0,
) -> tuple[float, list[float]]:
    """Push ``frames`` images (starting at image ``offset``) through ``len(backends)`` worker threads (one
    backend each); images/s and per-frame latencies."""
    counter = itertools.count()  # next() on itertools.count is atomic under the GIL
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(backend: OnnxRuntimeBackend) -> None:
        local = []
        try:
            while (i := next(counter)) < frames:
                _, (t0, *_rest, t4) = run_pipeline(backend, images.arrays[(offset + i) % len(images)], conf, iou, max_det)
                local.append(_ms(t0, t4))
                bar.update(1)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=work, args=(b,), daemon=True) for b in backends]
    gc.collect()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return frames / wall, latencies


def measure_throughput(
    paths: Sequence[str | os.PathLike], images: BenchImages, threads: Sequence[int], warmup: int, iters: int,
    conf: float, iou: float, max_det: int, bar, chunk: int = 16,
) -> list[tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]]:
    """Per model: images/s with N workers (each its own 1-thread session) and with one N-intra-op-thread
    session, and the p50 per-image latency under that load.

    The models take turns in chunks of ``chunk`` frames until each has pushed its frames, so that drift
    of a shared machine hits them alike; images/s is a model's frames over the time of its own chunks."""
    results = [({"workers": {}, "intra_op": {}}, {"workers": {}, "intra_op": {}}) for _ in paths]
    for n in threads:
        frames = max(iters * len(images), 2 * n)
        for mode in ("workers", "intra_op"):
            sessions = [
                [OnnxRuntimeBackend(path, intra_op_threads=1) for _ in range(n)] if mode == "workers"
                else [OnnxRuntimeBackend(path, intra_op_threads=n)]
                for path in paths
            ]  # fmt: skip
            for backends in sessions:
                for b in backends:
                    for i in range(max(warmup, 1)):
                        run_pipeline(b, images.arrays[i % len(images)], conf, iou, max_det)
            done = [0] * len(paths)
            seconds = [0.0] * len(paths)
            latencies: list[list[float]] = [[] for _ in paths]
            size = max(chunk, 2 * n)
            while min(done) < frames:
                for m, backends in enumerate(sessions):
                    todo = min(size, frames - done[m])
                    if todo <= 0:
                        continue
                    rate, lat = _run_frames(backends, images, todo, conf, iou, max_det, bar, offset=done[m])
                    seconds[m] += todo / rate
                    done[m] += todo
                    latencies[m].extend(lat)
            for m, (ips, lat) in enumerate(results):
                ips[mode][str(n)] = round(frames / seconds[m], 3)
                lat[mode][str(n)] = percentiles(latencies[m])["p50"]
            del sessions
    return results


# ------------------------------------------------------------------------------------- decoder compare


def _dense(t: np.ndarray | QuantizedTensor) -> np.ndarray:
    return t.dequantize() if isinstance(t, QuantizedTensor) else np.asarray(t, np.float32)


def ultralytics_layout(outputs: Mapping[str, np.ndarray | QuantizedTensor], info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """What Ultralytics' standard ONNX export would have returned for the same image: ``output0``
    [1, 4+nc+nm, A] (xywh in input pixels from DFL + dist2bbox, sigmoid class scores, mask coefficients;
    anchors stride by stride, row-major) and ``output1`` protos [1, nm, Hp, Wp]."""
    cols = []
    for s in info.strides:
        cls = _dense(outputs[output_name("cls", s)])
        grid_w = cls.shape[2]
        cls = cls.reshape(-1, info.num_classes)
        box = _dense(outputs[output_name("box", s)]).reshape(-1, 4 * info.reg_max)
        xyxy = dfl_dist2bbox(box, np.arange(box.shape[0]), grid_w, s, info.reg_max)
        xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        mc = _dense(outputs[output_name("mc", s)]).reshape(-1, info.num_masks)
        cols.append(np.concatenate([xywh, 1 / (1 + np.exp(-cls)), mc], axis=1))
    output0 = np.ascontiguousarray(np.concatenate(cols).T[None], dtype=np.float32)
    protos = np.ascontiguousarray(protos_hwc(outputs[PROTOS]).transpose(2, 0, 1)[None], dtype=np.float32)
    return output0, protos


class UltralyticsPost:
    """Ultralytics' predictor post-processing with ``retina_masks=True``: NMS, boxes to original pixels,
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

    def prepare(self, outputs, info: ModelInfo):
        output0, protos = ultralytics_layout(outputs, info)
        return self.torch.from_numpy(output0), self.torch.from_numpy(protos[0])

    def __call__(self, prepared, lb: Letterbox, info: ModelInfo, conf: float, iou: float, max_det: int) -> int:
        pred, proto = prepared
        out = self.nms.non_max_suppression(pred, conf, iou, None, False, max_det=max_det, nc=info.num_classes)[0]
        if out.shape[0] == 0:
            return 0
        out[:, :4] = self.ops.scale_boxes(lb.input_shape, out[:, :4], lb.source_shape)
        masks = self.ops.process_mask_native(proto, out[:, 6:], out[:, :4], lb.source_shape)
        keep = masks.amax((-2, -1)) > 0
        return int(keep.sum())


def _median(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 3) if len(values) else None


def _linear_fit(objects: Sequence[int], ms: Sequence[float]) -> dict[str, float] | None:
    """ms ~ a + b * objects (least squares): cost per image at a given object count."""
    x, y = np.asarray(objects, np.float64), np.asarray(ms, np.float64)
    if x.size < 3 or np.ptp(x) == 0:
        return None
    b, a = np.polyfit(x, y, 1)
    return {"intercept_ms": round(float(a), 3), "per_object_ms": round(float(b), 4), "at_20_objects_ms": round(float(a + 20 * b), 3)}


def compare_decoders(
    path: str | os.PathLike, images: BenchImages, repeats: int, conf: float, iou: float, max_det: int,
    progress: bool = True, ultralytics: bool = True,
) -> dict[str, Any]:
    """Time the fast decoder, the reference decoder and Ultralytics' post-processing on the same raw
    outputs of each image (inference and Ultralytics' tensor layout are prepared outside the timed region).
    All run with one helper thread; the fast decoder is also timed with the BLAS library's default
    thread count to show what an unpinned process gets."""
    backend = OnnxRuntimeBackend(path, intra_op_threads=1)
    info = backend.info
    ul: UltralyticsPost | None = None
    note = None
    if ultralytics:
        try:
            ul = UltralyticsPost()
        except ImportError as exc:
            note = f"Ultralytics post-processing skipped: {exc.name or exc} is not installed"
    else:
        note = "Ultralytics post-processing skipped (--no-ultralytics)"
    blas = _Blas.get()
    default_blas = blas.default
    rows = []
    bar = _progress(len(images), "decoders", progress)
    with helper_threads(1):  # again: torch may have been loaded only now
        for name, image in zip(images.names, images.arrays):
            rows.append(_compare_one(name, image, backend, ul, blas, default_blas, repeats, conf, iou, max_det))
            bar.update(1)
    bar.close()
    return _summarise_compare(rows, path, ul, note, repeats, conf, iou, max_det)


def _compare_one(
    name: str, image: np.ndarray, backend: OnnxRuntimeBackend, ul: UltralyticsPost | None, blas: _Blas,
    default_blas: int | None, repeats: int, conf: float, iou: float, max_det: int,
) -> dict[str, Any]:
    """One image: raw outputs once, then every decoder ``repeats`` times; per-decoder median ms and counts."""
    info = backend.info
    tensor, lb = preprocess(image, info.imgsz)
    outputs = backend.run(tensor)
    with np.errstate(over="ignore"):
        prepared = ul.prepare(outputs, info) if ul else None
    times: dict[str, list[float]] = {"fast": [], "reference": [], "ultralytics": [], "fast_default_blas": []}
    counts: dict[str, int] = {}
    # Decoder by decoder, ``repeats`` runs each: every decoder finds the outputs in cache as it would right
    # after inference (interleaving them lets the reference decoder's full-image arrays evict the fast
    # decoder's working set, which no real pipeline does).
    with np.errstate(over="ignore"):  # exp overflow in sigmoid of very negative logits saturates to 0: fine
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            counts["fast"] = len(decode(outputs, info, lb, conf, iou, max_det))
            times["fast"].append(_ms(t0, time.perf_counter_ns()))
        if blas.available and default_blas and default_blas > 1:
            saved = blas.threads()
            blas.set_threads(default_blas)
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                decode(outputs, info, lb, conf, iou, max_det)
                times["fast_default_blas"].append(_ms(t0, time.perf_counter_ns()))
            blas.set_threads(saved or 1)
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            counts["reference"] = len(reference_decode(outputs, info, lb, conf, iou, max_det))
            times["reference"].append(_ms(t0, time.perf_counter_ns()))
        if ul is not None:
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                counts["ultralytics"] = ul(prepared, lb, info, conf, iou, max_det)
                times["ultralytics"].append(_ms(t0, time.perf_counter_ns()))
    row: dict[str, Any] = {"image": name, "objects": counts["fast"], "reference_objects": counts["reference"]}
    if ul is not None:
        row["ultralytics_objects"] = counts["ultralytics"]
    for key, values in times.items():
        if values:
            row[f"{key}_ms"] = _median(values)
    return row


def _summarise_compare(
    rows: list[dict[str, Any]], path: str | os.PathLike, ul: UltralyticsPost | None, note: str | None,
    repeats: int, conf: float, iou: float, max_det: int,
) -> dict[str, Any]:
    def med(key: str, subset: list[dict] | None = None) -> float | None:
        vals = [r[key] for r in (rows if subset is None else subset) if key in r]
        return _median(vals)

    objects = [r["objects"] for r in rows]
    result: dict[str, Any] = {
        "model": str(path),
        "images": len(rows),
        "mean_objects": round(float(np.mean(objects)), 2),
        "median_objects": float(np.median(objects)),
        "max_objects": int(max(objects)),
        "fast_ms": med("fast_ms"),
        "reference_ms": med("reference_ms"),
        "ultralytics_ms": med("ultralytics_ms"),
        "fast_default_blas_ms": med("fast_default_blas_ms"),
        "repeats": repeats,
        "conf": conf,
        "iou": iou,
        "max_det": max_det,
        "objects_agree": {
            "reference": sum(r["reference_objects"] == r["objects"] for r in rows),
            "ultralytics": sum(r.get("ultralytics_objects") == r["objects"] for r in rows) if ul else None,
        },
    }
    if result["fast_ms"]:
        for other in ("reference", "ultralytics"):
            if result[f"{other}_ms"] is not None:
                result[f"speedup_vs_{other}"] = round(result[f"{other}_ms"] / result["fast_ms"], 1)
    result["by_objects"] = []
    for lo, hi in OBJECT_BINS:
        subset = [r for r in rows if r["objects"] >= lo and (hi is None or r["objects"] <= hi)]
        if subset:
            result["by_objects"].append({
                "objects": f"{lo}-{hi}" if hi is not None else f"{lo}+",
                "images": len(subset),
                "mean_objects": round(float(np.mean([r["objects"] for r in subset])), 2),
                **{f"{k}_ms": med(f"{k}_ms", subset) for k in ("fast", "reference", "ultralytics")},
            })
    result["fit"] = {
        k: _linear_fit([r["objects"] for r in rows if f"{k}_ms" in r], [r[f"{k}_ms"] for r in rows if f"{k}_ms" in r])
        for k in ("fast", "reference", "ultralytics")
    }
    if ul is not None:
        result["ultralytics"] = ul.versions
    if note:
        result["note"] = note
    result["per_image"] = rows
    return result


# ------------------------------------------------------------------------------------------------ driver


def run_bench(
    models: Sequence[str | os.PathLike],
    sources: Sequence[str | os.PathLike],
    threads: Sequence[int] = (1, 2),
    warmup: int = 3,
    iters: int = 1,
    max_images: int = 0,
    compare_repeats: int = 3,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    ultralytics: bool = True,
    json_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark every model on the same images; returns (and optionally writes) the results dict."""
    if not models:
        raise EdgesegError("no model given")
    if warmup < 0 or iters < 1 or compare_repeats < 1:
        raise EdgesegError("warmup must be >= 0, iters and compare repeats >= 1")
    if not threads or any(int(n) < 1 for n in threads):
        raise EdgesegError(f"threads must be positive integers, got {list(threads)}")
    threads = sorted({int(n) for n in threads})
    from .runtime import read_model_info

    infos = [read_model_info(m) for m in models]  # fail fast, one line, before any long work
    images = load_bench_images(sources, max_images)
    result: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "images": len(images),
            "image_sources": [os.fspath(s) for s in sources],
            "warmup": warmup,
            "iters": iters,
            "threads": threads,
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
        },
        "models": [],
    }
    with helper_threads(1) as pinned:
        result["settings"]["helper_threads"] = pinned
        bar = _progress(iters * len(images) * len(models), "bench latency (models interleaved)", progress)
        backends = [OnnxRuntimeBackend(model, intra_op_threads=1) for model in models]
        latencies = measure_latency(backends, images, warmup, iters, conf, iou, max_det, bar)
        bar.close()
        del backends
        frames_tp = sum(max(iters * len(images), 2 * n) for n in threads) * 2 * len(models)
        bar = _progress(frames_tp, "bench throughput (models taking turns)", progress)
        throughputs = measure_throughput(models, images, threads, warmup, iters, conf, iou, max_det, bar)
        bar.close()
        for model, info, (latency, objects), (ips, tp_latency) in zip(models, infos, latencies, throughputs):
            stats = onnx_model_stats(model)
            result["models"].append({
                "model": os.fspath(model),
                "name": Path(model).name,
                "source": info.source,
                "imgsz": list(info.imgsz),
                "classes": info.num_classes,
                "params": stats.params,
                "int8": stats.int8,
                "size_mb": stats.size_mb,
                "objects_mean": round(float(np.mean(objects)), 2),
                "latency_ms": latency,
                "throughput_ips": ips,
                "throughput_latency_p50_ms": tp_latency,
            })
        result["decode_compare"] = compare_decoders(
            models[0], images, compare_repeats, conf, iou, max_det, progress, ultralytics
        )
    result["machine"]["loadavg_end"] = _loadavg()
    if json_path is not None:
        write_json_atomic(json_path, result)
    return result


def format_summary(result: Mapping[str, Any]) -> str:
    """A few lines for the terminal."""
    m = result["machine"]
    lines = [f"{m['cpu']}, {m['usable_cores']} cores, onnxruntime {m['onnxruntime']}, load {m.get('loadavg_start')} -> {m.get('loadavg_end')}"]
    for r in result["models"]:
        lat = r["latency_ms"]
        stages = "  ".join(f"{s} {lat[s]['p50']:.2f}" for s in STAGES)
        tp = "  ".join(
            f"{mode} " + "/".join(f"{n}:{v:.2f}" for n, v in r["throughput_ips"][mode].items())
            for mode in ("workers", "intra_op")
        )
        lines.append(f"{r['name']}{' (INT8)' if r['int8'] else ''}: p50 ms  {stages}")
        lines.append(f"  throughput img/s  {tp}")
    d = result.get("decode_compare")
    if d:
        parts = [f"fast {d['fast_ms']} ms", f"reference {d['reference_ms']} ms"]
        parts.append(f"ultralytics {d['ultralytics_ms']} ms" if d.get("ultralytics_ms") is not None else d.get("note", ""))
        lines.append(f"decoders on {d['images']} images ({d['mean_objects']} objects mean, medians per image): " + ", ".join(parts))
        if d.get("speedup_vs_ultralytics"):
            lines.append(f"  fast is {d['speedup_vs_ultralytics']}x faster than Ultralytics, {d.get('speedup_vs_reference')}x than the reference")
    return "\n".join(lines)
