"""INT8 post-training quantization of edgeseg models with ONNX Runtime (static, QDQ), integer heads, a
float-vs-INT8 similarity report and mixed precision.

The seed's steps 2-3 with open tools:

1. calibrate on images read and letterboxed exactly like inference (``load_image`` + ``preprocess``);
2. quantize with ``onnxruntime.quantization.quantize_static`` (QDQ: uint8 activations, int8 weights);
3. remove the trailing DequantizeLinear of the ``box`` and ``mc`` heads (and ``cls`` on request), the
   equivalent of Horizon's ``hb_model_modifier -r``: those outputs come out as integers and their scale /
   zero point travel in the metadata keys ``edgeseg.quant.<output>``, which ``OnnxRuntimeBackend`` reads
   so that the decoder dequantizes only the rows it keeps;
4. compare every quantized tensor and every output with the float model on held-out images.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgesegError
from .fileio import write_bytes_atomic, write_json_atomic
from .preprocess import IMAGE_SUFFIXES, load_image, preprocess
from .runtime import META_PREFIX, PROTOS, ModelInfo, output_name, read_model_info

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "percentile"
DEFAULT_NUM = 50
PERCENTILE = 99.999  # ``percentile``: the central share of each activation's calibration histogram kept
QUANT_OPSET = 13  # per-channel QDQ needs DequantizeLinear's ``axis`` attribute (opset 13)
QUANT_META = META_PREFIX + "quant."
CONFIG_META = META_PREFIX + "quantization"
HEAD_KINDS = ("cls", "box", "mc")
# Head ranges: the decoder never tells a cls logit of -30 (sigmoid 1e-13) from -90, nor weighs a DFL bin
# at -20 against its side's best bin (above 0 in every cell that survives even conf 0.001 on coco128), so
# the ranges start there instead of at the calibrated minima (about -90 and -37 on the shared checkpoint):
# 2.6x and 1.4x finer steps where it matters, while the clipped values barely move the cosine (> 0.998).
CLS_LOGIT_FLOOR = -30.0
BOX_LOGIT_FLOOR = -20.0
# A Conv output that only feeds its SiLU needs no range below -5: SiLU(-5) = -0.03, one step of the SiLU
# output's own 8-bit grid, and SiLU(x < -5) is closer to 0 still. Dropping the rest of the (roughly
# symmetric) negative range gives the positive values, the ones that pass, a finer step: on the shared
# checkpoint box/mc cosines +0.0006, float-vs-INT8 detections matched 95.3 -> 96.9 %, mask IoU 0.931 -> 0.937.
SILU_INPUT_FLOOR = -5.0

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# calibration images


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursively, sorted, hidden entries skipped)."""
    d = Path(directory)
    if not d.exists():
        raise EdgesegError("no such directory", d)
    if not d.is_dir():
        raise EdgesegError("not a directory (expected a folder of calibration images)", d)
    files = sorted(
        p
        for p in d.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(d).parts)
        and p.is_file()
    )
    if not files:
        raise EdgesegError("holds no image files", d)
    return files


@dataclass
class ImageTensors:
    """Network inputs from a directory of images: the tensors, the files they came from, the files that
    could not be read (with the reason) and the files not looked at (kept for held-out use)."""

    tensors: list[np.ndarray]
    used: list[Path]
    skipped: list[tuple[str, str]]
    rest: list[Path]


def iter_tensors(
    files: Sequence[Path], imgsz: tuple[int, int], count: int, skipped: list[tuple[str, str]]
) -> Iterable[tuple[Path, np.ndarray]]:
    """Up to ``count`` (path, input tensor) pairs from ``files`` in order; unreadable files are appended
    to ``skipped`` and replaced by the next file."""
    got = 0
    for path in files:
        if got >= count:
            return
        try:
            tensor, _ = preprocess(load_image(path), imgsz)
        except EdgesegError as exc:
            skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        got += 1
        yield path, tensor


def load_tensors(directory: str | os.PathLike, imgsz: tuple[int, int], count: int) -> ImageTensors:
    """Read and letterbox up to ``count`` images of ``directory`` exactly like inference."""
    files = list_images(directory)
    skipped: list[tuple[str, str]] = []
    pairs = list(iter_tensors(files, imgsz, count, skipped))
    n_seen = len(pairs) + len(skipped)
    return ImageTensors([t for _, t in pairs], [p for p, _ in pairs], skipped, files[n_seen:])


# --------------------------------------------------------------------------------------------------
# calibration


class _OneInput:
    """CalibrationDataReader over one tensor: the calibration loop feeds images one at a time so that it
    can show progress, skip bad files and keep memory flat (ORT's histogram calibrators otherwise hold
    every intermediate tensor of every image at once)."""

    def __init__(self, name: str, tensor: np.ndarray) -> None:
        self.items = [{name: tensor}]

    def get_next(self):
        return self.items.pop() if self.items else None

    def __len__(self) -> int:
        return len(self.items)


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    try:
        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}[method]  # fmt: skip
    except KeyError:
        raise EdgesegError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})") from None


@dataclass
class Calibration:
    """Calibrated tensor ranges (an ORT calibration cache file) and what went into them."""

    cache: Path
    method: str
    used: list[Path]
    skipped: list[tuple[str, str]]
    rest: list[Path]
    search_tensors: list[np.ndarray]  # the first few calibration inputs, for the mixed-precision search
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # the calibrated range per tensor


def output_chains(model) -> dict[str, list[str]]:
    """Per graph output: the output and the tensors behind it through layout-only ops (the NHWC
    Transpose), i.e. the same values as the decoder reads them."""
    producers = {o: n for n in model.graph.node for o in n.output}
    chains: dict[str, list[str]] = {}
    for out in model.graph.output:
        name = out.name
        chain = [name]
        node = producers.get(name)
        while node is not None and node.op_type in ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"):
            name = node.input[0]
            chain.append(name)
            node = producers.get(name)
        chains[out.name] = chain
    return chains


def head_floors(model13, info: ModelInfo) -> dict[str, float | None]:
    """The head tensors whose range is set apart from the calibration method: tensor -> lower bound of
    its range (None: the observed minimum). Head values keep their observed min/max (clipping the logits
    the decoder thresholds and soft-maxes hurts), except that cls logits start at ``CLS_LOGIT_FLOOR`` and
    box DFL logits at ``BOX_LOGIT_FLOOR``."""
    chains = output_chains(model13)
    floors: dict[str, float | None] = {}
    for s in info.strides:
        for kind, floor in (("cls", CLS_LOGIT_FLOOR), ("box", BOX_LOGIT_FLOOR), ("mc", None)):
            for t in chains.get(output_name(kind, s), []):
                floors[t] = floor
    for t in chains.get(PROTOS, []):
        floors[t] = None
    return floors


def silu_input_floors(model) -> dict[str, float]:
    """``SILU_INPUT_FLOOR`` for every tensor whose only consumers are a SiLU's Sigmoid and Mul."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in model.graph.output}
    floors = {}
    for tensor, nodes in consumers.items():
        sig = [n for n in nodes if n.op_type == "Sigmoid"]
        mul = [n for n in nodes if n.op_type == "Mul"]
        if len(nodes) == 2 and len(sig) == 1 and len(mul) == 1 and sig[0].output[0] in mul[0].input and tensor not in outputs:
            floors[tensor] = SILU_INPUT_FLOOR
    return floors


def calibrate(
    model13: Path,
    files: Sequence[Path],
    imgsz: tuple[int, int],
    num: int,
    method: str,
    workdir: Path,
    head_ranges: Mapping[str, float | None] | None = None,
    floors: Mapping[str, float] | None = None,
    progress: bool = True,
    keep_tensors: int = 0,
) -> Calibration:
    """Run the float model over up to ``num`` images of ``files`` and compute activation ranges.

    ``minmax`` keeps every observed value; ``percentile`` (the central 99.999 %) and ``entropy`` (KL)
    clip rare outliers, except for the tensors in ``head_ranges`` (see ``head_floors``), which keep their
    observed min/max raised to the given floor. ``floors`` raise the lower end of other tensors' ranges
    (see ``silu_input_floors``). ``Calibration.ranges`` holds the ranges used."""
    from onnxruntime.quantization.calibrate import TensorData, create_calibrator, save_tensors_data
    from tqdm import tqdm

    options: dict[str, Any] = {}
    if method == "percentile":
        # asymmetric: activations are uint8 with a zero point, and SiLU outputs are almost all >= 0, so a
        # symmetric range would waste half of the codes
        options = {"percentile": PERCENTILE, "symmetric": False}
    with _quiet():
        calibrator = create_calibrator(
            model13,
            None,
            augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=_calibration_method(method),
            extra_options=options,
        )
    input_name = calibrator.infer_session.get_inputs()[0].name
    skipped: list[tuple[str, str]] = []
    used: list[Path] = []
    kept: list[np.ndarray] = []
    bar = tqdm(total=num, desc=f"calibrate ({method})", unit="img", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)  # fmt: skip
    try:
        for path, tensor in iter_tensors(files, imgsz, num, skipped):
            with _quiet():
                calibrator.collect_data(_OneInput(input_name, tensor))
            used.append(path)
            if len(kept) < keep_tensors:
                kept.append(tensor)
            bar.update(1)
            bar.set_postfix(skipped=len(skipped))
    finally:
        bar.close()
    if not used:
        raise EdgesegError(f"none of the {len(skipped)} calibration image(s) could be read", Path(files[0]).parent)
    with _quiet():
        ranges = calibrator.compute_data()
    observed: dict[str, tuple[float, float]] = {}
    collector = getattr(calibrator, "collector", None)
    for name, td in ranges.data.items():
        if collector is not None and name in collector.histogram_dict:
            h = collector.histogram_dict[name]
            observed[name] = (float(h[2]), float(h[3]))
        else:
            lo, hi = td.range_value
            observed[name] = (float(np.min(lo)), float(np.max(hi)))
    for name, floor in (head_ranges or {}).items():
        if name in ranges.data and name in observed:
            lo, hi = observed[name]
            lo = lo if floor is None or floor >= hi else max(lo, floor)
            ranges.data[name] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
    for name, floor in (floors or {}).items():
        if name in ranges.data and name not in (head_ranges or {}):
            lo, hi = ranges.data[name].range_value
            if float(np.max(hi)) > floor:
                ranges.data[name] = TensorData(lowest=np.maximum(lo, np.float32(floor)).astype(np.float32),
                                               highest=np.asarray(hi, np.float32))  # fmt: skip
    final = {}
    for name, td in ranges.data.items():
        lo, hi = td.range_value
        final[name] = (float(np.min(lo)), float(np.max(hi)))
    cache = workdir / f"calibration-{method}.json"
    save_tensors_data(ranges, cache)
    del calibrator
    n_seen = len(used) + len(skipped)
    return Calibration(cache, method, used, skipped, list(files[n_seen:]), kept, final)


@contextlib.contextmanager
def _quiet():
    """Silence ORT's quantization chatter (root-logger warnings, prints) unless edgeseg runs with logging
    at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


# --------------------------------------------------------------------------------------------------
# model preparation and quantization


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise EdgesegError(f"not a valid ONNX file ({type(exc).__name__})", path) from None


def _is_quantized(model) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node)


def prepare_float_model(model, path: Path):
    """The float graph at opset >= 13 with inferred shapes (per-channel QDQ needs opset 13)."""
    import onnx
    from onnx import shape_inference, version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QUANT_OPSET:
        try:
            model = version_converter.convert_version(model, QUANT_OPSET)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgesegError(f"cannot convert the graph to opset {QUANT_OPSET} ({first})", path) from None
    model = shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def upsample_as_conv(model, keep: Iterable[str] = ()) -> list[str]:
    """Rewrite, in place and exactly, every ConvTranspose with a 2x2 kernel, stride 2 and no padding (the
    proto upsample) as a 1x1 Conv to 4x the channels followed by a pixel interleave (NHWC Transpose and
    Reshapes). Returns the names of the rewritten nodes; those in ``keep`` and those without static
    shapes are left alone.

    Why: ONNX Runtime has no integer ConvTranspose, so the quantized upsample ran in float between a
    DequantizeLinear and a QuantizeLinear (7 ms of ~100 at 640 on a 2-core AVX2 CPU); as a Conv it is an
    integer kernel (1.7 ms), and the interleave runs on uint8 (ORT drops the Q/DQ pairs around
    Transpose/Reshape and folds the NHWC Transposes into its NHWC integer convolutions)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    shapes = {
        vi.name: [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        for vi in list(graph.value_info) + list(graph.input)
    }
    keep = set(keep)
    done: list[str] = []
    for node in list(graph.node):
        if node.op_type != "ConvTranspose" or node.name in keep or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (list(attrs.get("kernel_shape", [])) != [2, 2] or list(attrs.get("strides", [])) != [2, 2]
                or any(attrs.get("pads", [0])) or attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1]))
                or attrs.get("output_padding") or attrs.get("output_shape") or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):  # fmt: skip
            continue
        shape = shapes.get(node.input[0], [])
        if len(shape) != 4 or not all(shape):
            continue
        n, _, h, w = shape
        weight = numpy_helper.to_array(inits[node.input[1]])  # [Cin, Cout, 2, 2]
        c_in, c_out = weight.shape[:2]
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else np.zeros(c_out, np.float32)
        # channel (i * 2 + j) * Cout + c of the 1x1 conv is output pixel (2y + i, 2x + j), channel c
        p = node.name
        graph.initializer.extend([
            numpy_helper.from_array(weight.transpose(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1).astype(np.float32), p + "/as_conv/weight"),
            numpy_helper.from_array(np.tile(bias, 4).astype(np.float32), p + "/as_conv/bias"),
            numpy_helper.from_array(np.array([n, h, w, 2, 2, c_out], np.int64), p + "/blocks_shape"),
            numpy_helper.from_array(np.array([n, 2 * h, 2 * w, c_out], np.int64), p + "/upsampled_shape"),
        ])  # fmt: skip
        new = [
            helper.make_node("Conv", [node.input[0], p + "/as_conv/weight", p + "/as_conv/bias"], [p + "/as_conv_output"],
                             name=p + "/as_conv", kernel_shape=[1, 1]),  # fmt: skip
            helper.make_node("Transpose", [p + "/as_conv_output"], [p + "/blocks_nhwc"], name=p + "/to_nhwc", perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [p + "/blocks_nhwc", p + "/blocks_shape"], [p + "/blocks"], name=p + "/split_blocks"),
            helper.make_node("Transpose", [p + "/blocks"], [p + "/interleaved"], name=p + "/interleave", perm=[0, 1, 3, 2, 4, 5]),
            helper.make_node("Reshape", [p + "/interleaved", p + "/upsampled_shape"], [p + "/upsampled_nhwc"], name=p + "/merge_blocks"),
            helper.make_node("Transpose", [p + "/upsampled_nhwc"], [node.output[0]], name=p + "/to_nchw", perm=[0, 3, 1, 2]),
        ]
        index = list(graph.node).index(node)
        graph.node.remove(node)
        for name in node.input[1:]:
            if name and name in inits and not any(name in other.input for other in graph.node):
                graph.initializer.remove(inits.pop(name))
        for k, nn in enumerate(new):
            graph.node.insert(index + k, nn)
        done.append(node.name)
    return done


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize (everything except the calibration itself)."""

    per_channel: bool = True
    reduce_range: bool = True
    keep_float: tuple[str, ...] = ()
    int16: tuple[str, ...] = ()
    int_cls: bool = False


def _node_index(model) -> dict[str, Any]:
    return {n.name: n for n in model.graph.node}


def check_node_names(model, names: Iterable[str], option: str, path: Path, also=None) -> None:
    """One-line error for node names that are not in the graph (with a hint of similar names). ``also``:
    a second graph whose node names are valid too (the quantizer's rewritten graph)."""
    nodes = {**_node_index(model), **(_node_index(also) if also is not None else {})}
    bad = [n for n in names if n not in nodes]
    if bad:
        import difflib

        hint = difflib.get_close_matches(bad[0], list(nodes), n=3)
        raise EdgesegError(
            f"{option}: no node named {bad[0]!r}" + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
            + (f" and {len(bad) - 1} more unknown" if len(bad) > 1 else ""),
            path,
        )


def _int16_overrides(model, nodes: Iterable[str]) -> dict[str, list[dict]]:
    """TensorQuantOverrides that make the activations produced by ``nodes`` 16-bit."""
    from onnxruntime.quantization import QuantType

    index = _node_index(model)
    overrides: dict[str, list[dict]] = {}
    for name in nodes:
        for out in index[name].output:
            if out:
                overrides[out] = [{"quant_type": QuantType.QUInt16}]
    return overrides


def quantize_qdq(model13_path: Path, model13, cache: Path, method: str, settings: QuantSettings, out: Path) -> None:
    """``quantize_static`` with calibrated ranges from ``cache`` (no calibration run here)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra: dict[str, Any] = {}
    if settings.int16:
        extra["TensorQuantOverrides"] = _int16_overrides(model13, settings.int16)
    with _quiet():
        quantize_static(
            str(model13_path),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            # 7-bit weights: uint8 x int8 products summed in pairs saturate int16 on x86 CPUs without VNNI
            # (AVX2); the lost bit costs less accuracy than the saturation does.
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,  # the fast uint8 x int8 kernels on x86
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(settings.keep_float),
            calibrate_method=_calibration_method(method),
            calibration_cache_path=str(cache),
            extra_options=extra,
        )


# --------------------------------------------------------------------------------------------------
# integer heads (the trailing DequantizeLinear removed)


def _initializer_array(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _range_to_qparams(rmin: float, rmax: float) -> tuple[float, int]:
    """uint8 asymmetric scale / zero point covering [rmin, rmax] (always containing 0), as ORT does."""
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    scale = (rmax - rmin) / 255.0 or 1.0
    zero_point = int(round(-rmin / scale))
    return scale, min(max(zero_point, 0), 255)


def integer_heads(model, outputs: Sequence[str], ranges: Mapping[str, tuple[float, float]]) -> dict[str, dict]:
    """Make ``outputs`` integer tensors in place; returns their ``{"scale": [...], "zero_point": [...]}``.

    A head output produced by DequantizeLinear loses that node: the QuantizeLinear before it now writes
    the graph output (what ``hb_model_modifier -r`` does). A head whose producer stayed float (a node
    kept in float) gets a QuantizeLinear with the calibrated range of that output appended instead, so the
    head is integer either way."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    by_name = {o.name: o for o in graph.output}
    params: dict[str, dict] = {}
    for name in outputs:
        node = producers.get(name)
        out_vi = by_name[name]
        if node is not None and node.op_type == "DequantizeLinear" and len(consumers.get(name, [])) == 0:
            q_tensor = node.input[0]
            scale = _initializer_array(model, node.input[1])
            zp = _initializer_array(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
            q_producer = producers.get(q_tensor)
            if scale is None or len(consumers.get(q_tensor, [])) != 1 or q_producer is None:
                raise EdgesegError(f"cannot make {name} integer: unexpected graph around its DequantizeLinear")
            # The QuantizeLinear (or the integer op before the DQ) now writes the graph output itself.
            for i, o in enumerate(q_producer.output):
                if o == q_tensor:
                    q_producer.output[i] = name
            graph.node.remove(node)
            dtype = TensorProto.UINT8 if zp is None else helper.np_dtype_to_tensor_dtype(zp.dtype)
            zp = np.zeros_like(scale, dtype=np.uint8) if zp is None else zp
        else:
            # float head: quantize it at the end with its calibrated range
            if name not in ranges:
                raise EdgesegError(f"cannot make {name} integer: no calibrated range for it")
            s, z = _range_to_qparams(*ranges[name])
            scale, zp = np.float32(s), np.uint8(z)
            float_name = name + "_float"
            node_out = producers[name]
            for i, o in enumerate(node_out.output):
                if o == name:
                    node_out.output[i] = float_name
            for c in consumers.get(name, []):  # (a head output has no consumers, but stay correct)
                for i, inp in enumerate(c.input):
                    if inp == name:
                        c.input[i] = float_name
            graph.initializer.extend([
                numpy_helper.from_array(np.asarray(scale, np.float32), name + "_scale"),
                numpy_helper.from_array(np.asarray(zp, np.uint8), name + "_zero_point"),
            ])  # fmt: skip
            graph.node.append(helper.make_node(
                "QuantizeLinear", [float_name, name + "_scale", name + "_zero_point"], [name], name=name + "_QuantizeLinear"
            ))  # fmt: skip
            dtype = TensorProto.UINT8
        out_vi.type.tensor_type.elem_type = dtype
        params[name] = {
            "scale": [float(v) for v in np.asarray(scale, np.float64).reshape(-1)],
            "zero_point": [int(v) for v in np.asarray(zp).reshape(-1)],
        }
    _topological_sort(graph)
    onnx.checker.check_model(model)
    return params


def _topological_sort(graph) -> None:
    """Re-order nodes so that every input is produced before use (after appending nodes)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        progressed = False
        rest = []
        for n in pending:
            if all(i in available for i in n.input):
                ordered.append(n)
                available.update(n.output)
                progressed = True
            else:
                rest.append(n)
        pending = rest
        if not progressed:
            raise EdgesegError("internal error: the quantized graph has a cycle or a missing input")
    del graph.node[:]
    graph.node.extend(ordered)


def head_outputs(info: ModelInfo, int_cls: bool = False) -> list[str]:
    """The outputs made integer: box and mc of every stride, cls too with ``int_cls``."""
    kinds = ("cls", "box", "mc") if int_cls else ("box", "mc")
    return [output_name(k, s) for s in info.strides for k in kinds]


def finish_model(qdq_path: Path, float_meta: Mapping[str, str], info: ModelInfo, settings: QuantSettings,
                 ranges: Mapping[str, tuple[float, float]], config: Mapping[str, Any]):  # fmt: skip
    """The deliverable: integer heads, the float model's edgeseg metadata plus the quantization keys."""
    import onnx

    model = onnx.load(str(qdq_path))
    params = integer_heads(model, head_outputs(info, settings.int_cls), ranges)
    del model.metadata_props[:]
    meta = {k: v for k, v in float_meta.items() if k.startswith(META_PREFIX) and not k.startswith(QUANT_META)}
    meta.update({QUANT_META + name: json.dumps(p) for name, p in params.items()})
    meta[CONFIG_META] = json.dumps(dict(config))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "edgeseg"
    return model


# --------------------------------------------------------------------------------------------------
# similarity


@dataclass
class TensorStat:
    """Float vs quantized agreement of one tensor over a set of images (pooled over all elements)."""

    name: str
    node: str = ""
    op_type: str = ""
    dot: float = 0.0
    ref_sq: float = 0.0
    q_sq: float = 0.0
    max_abs: float = 0.0
    ref_max_abs: float = 0.0
    floor: float | None = None  # a head range floor (see head_floors): values below it are clipped on purpose
    max_abs_in_range: float = 0.0  # max abs error against the float values raised to ``floor``

    def add(self, ref: np.ndarray, q: np.ndarray) -> None:
        a = ref.astype(np.float64, copy=False).ravel()
        b = q.astype(np.float64, copy=False).ravel()
        self.dot += float(a @ b)
        self.ref_sq += float(a @ a)
        self.q_sq += float(b @ b)
        if a.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(a - b))))
            self.ref_max_abs = max(self.ref_max_abs, float(np.max(np.abs(a))))
            if self.floor is not None:
                self.max_abs_in_range = max(self.max_abs_in_range, float(np.max(np.abs(np.maximum(a, self.floor) - b))))

    @property
    def cosine(self) -> float:
        if self.ref_sq == 0 and self.q_sq == 0:
            return 1.0
        if self.ref_sq == 0 or self.q_sq == 0:
            return 0.0
        return self.dot / math.sqrt(self.ref_sq * self.q_sq)

    def to_dict(self) -> dict[str, Any]:
        d = {"tensor": self.name, "node": self.node, "op_type": self.op_type, "cosine": round(self.cosine, 6),
             "max_abs_error": round(self.max_abs, 6), "float_max_abs": round(self.ref_max_abs, 6)}  # fmt: skip
        if self.floor is not None:
            d["range_floor"] = self.floor
            d["max_abs_error_above_floor"] = round(self.max_abs_in_range, 6)
        return d


def _session(model_bytes_or_path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def _with_outputs(model, names: Sequence[str]) -> bytes:
    """A copy of ``model`` that also returns the tensors ``names`` (element type from shape inference)."""
    import onnx
    from onnx import helper, shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    inferred = shape_inference.infer_shapes(m)
    types = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for name in names:
        if name in present:
            continue
        vi = types.get(name)
        m.graph.output.append(vi if vi is not None else helper.make_empty_tensor_value_info(name))
    return m.SerializeToString()


def tensor_pairs(float_model, qdq_model) -> list[tuple[str, str, str, str]]:
    """(float tensor, matching tensor of the QDQ model, producing node, op type) for every float
    activation of the float graph: a quantized tensor is compared after its QuantizeLinear +
    DequantizeLinear (what its consumers see), a tensor left in float as is."""
    q_consumers: dict[str, list] = {}
    for n in qdq_model.graph.node:
        for i in n.input:
            q_consumers.setdefault(i, []).append(n)
    q_tensors = {o for n in qdq_model.graph.node for o in n.output} | {i.name for i in qdq_model.graph.input}
    pairs = []
    for node in float_model.graph.node:
        if node.op_type in ("Constant",):
            continue
        for out in node.output:
            if not out:
                continue
            match = None
            for q in q_consumers.get(out, []):
                if q.op_type == "QuantizeLinear":
                    dq = next((d for d in q_consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"), None)
                    if dq is not None:
                        match = dq.output[0]
                        break
            if match is None and out in q_tensors:
                match = out
            if match is not None:
                pairs.append((out, match, node.name, node.op_type))
    return pairs


def float_activations_session(float_model):
    """An ORT session of the float model that can return every node output (for ``compare_tensors``)."""
    names = [o for n in float_model.graph.node for o in n.output if o]
    return _session(_with_outputs(float_model, names), threads=0)


def compare_tensors(float_model, qdq_model, tensors: Sequence[np.ndarray], input_name: str = "images",
                    float_session=None) -> dict[str, TensorStat]:  # fmt: skip
    """Cosine / max abs error of every activation (see ``tensor_pairs``), pooled over ``tensors``.
    ``float_session`` (from ``float_activations_session``) saves rebuilding it in a loop."""
    pairs = tensor_pairs(float_model, qdq_model)
    f_sess = float_session if float_session is not None else float_activations_session(float_model)
    q_sess = _session(_with_outputs(qdq_model, [p[1] for p in pairs]), threads=0)
    stats = {f: TensorStat(f, node, op) for f, _, node, op in pairs}
    f_names = [p[0] for p in pairs]
    q_names = [p[1] for p in pairs]
    for t in tensors:
        fv = f_sess.run(f_names, {input_name: t})
        qv = q_sess.run(q_names, {input_name: t})
        for name, a, b in zip(f_names, fv, qv):
            if np.issubdtype(a.dtype, np.floating):
                stats[name].add(a, b)
    return {k: v for k, v in stats.items() if v.ref_sq > 0 or v.q_sq > 0}


def compare_outputs(float_path: Path | bytes, int8_path: Path | bytes, names: Sequence[str], tensors: Sequence[np.ndarray],
                    input_name: str = "images", floors: Mapping[str, float | None] | None = None) -> dict[str, TensorStat]:  # fmt: skip
    """Cosine / max abs error of the model outputs, integer heads dequantized with their metadata.
    ``floors``: output -> range floor (also reports the error against the float values raised to it)."""
    from .runtime import quantization_metadata

    f_sess = _session(float_path, threads=0)
    q_sess = _session(int8_path, threads=0)
    quant = quantization_metadata(q_sess.get_modelmeta().custom_metadata_map)
    stats = {n: TensorStat(n, n, "output", floor=(floors or {}).get(n)) for n in names}
    for t in tensors:
        fv = f_sess.run(list(names), {input_name: t})
        qv = q_sess.run(list(names), {input_name: t})
        for n, a, b in zip(names, fv, qv):
            if n in quant and np.issubdtype(b.dtype, np.integer):
                scale, zp = quant[n]
                b = (b.astype(np.float32) - np.float32(zp) if np.ndim(zp) == 0 else b.astype(np.float32) - zp) * scale
            stats[n].add(a, b)
    return stats


# --------------------------------------------------------------------------------------------------
# report


@dataclass
class SimilarityReport:
    """INT8 vs float on held-out images: every model output and every quantized activation."""

    images: list[str]
    outputs: list[TensorStat]
    nodes: list[TensorStat]

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "outputs": [s.to_dict() for s in sorted(self.outputs, key=lambda s: s.cosine)],
            "nodes": [s.to_dict() for s in sorted(self.nodes, key=lambda s: s.cosine)],
        }

    def output_cosines(self) -> dict[str, float]:
        return {s.name: s.cosine for s in self.outputs}

    def format(self, weakest: int = 15) -> str:
        """The printed table: outputs (weakest first), then the weakest quantized activations."""
        lines = [f"INT8 vs float on {len(self.images)} held-out image(s) (cosine similarity, max abs error)"]
        lines.append(f"  {'output':<16} {'cosine':>9} {'max abs err':>12} {'float max':>10}  {'max abs err above floor':>23}")
        for s in sorted(self.outputs, key=lambda s: s.cosine):
            above = f"{s.max_abs_in_range:>12.4f} (>= {s.floor:g})" if s.floor is not None else ""
            lines.append(f"  {s.name:<16} {s.cosine:>9.5f} {s.max_abs:>12.4f} {s.ref_max_abs:>10.3f}  {above:>23}")
        if self.nodes:
            k = min(weakest, len(self.nodes))
            lines.append(f"  weakest {k} of {len(self.nodes)} activations:")
            width = max(len(s.node) for s in sorted(self.nodes, key=lambda s: s.cosine)[:k])
            lines.append(f"  {'node':<{width}} {'type':<14} {'cosine':>9} {'max abs err':>12}")
            for s in sorted(self.nodes, key=lambda s: s.cosine)[:k]:
                lines.append(f"  {s.node:<{width}} {s.op_type:<14} {s.cosine:>9.5f} {s.max_abs:>12.4f}")
        return "\n".join(lines)


def plot_report(report: SimilarityReport, path: str | os.PathLike, title: str = "", weakest: int = 30) -> Path:
    """PNG: output cosines and the ``weakest`` activations, sorted (weakest at the top), plus every
    activation's cosine in graph order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outs = sorted(report.outputs, key=lambda s: s.cosine)
    nodes = sorted(report.nodes, key=lambda s: s.cosine)[:weakest]
    fig = plt.figure(figsize=(13, 4 + 0.22 * (len(outs) + len(nodes))))
    gs = fig.add_gridspec(2, 2, height_ratios=[max(len(outs), 1), max(len(nodes), 1)], width_ratios=[3, 2])

    from matplotlib.ticker import NullFormatter

    def bars(ax, stats, label, log):
        y = np.arange(len(stats))
        cos = np.array([s.cosine for s in stats])
        colors = ["#d62728" if c < 0.99 else "#ff7f0e" if c < 0.999 else "#2ca02c" for c in cos]
        ax.barh(y, np.maximum(1 - cos, 1e-7), color=colors)
        ax.set_yticks(y, [s.name if label == "output" else s.node for s in stats], fontsize=7)
        ax.invert_yaxis()
        if log:  # outputs span decades (cls ~1e-4, protos ~1e-2)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("1 - cosine" + (" (log)" if log else "") + "; shorter is better", fontsize=8)
        ax.set_title(f"{label}s, weakest first (red < 0.99 < orange < 0.999 < green)", fontsize=9)
        for yi, c in zip(y, cos):
            ax.text(ax.get_xlim()[0], yi, f" {c:.5f}", va="center", fontsize=6)

    ax = fig.add_subplot(gs[0, 0])
    if outs:
        bars(ax, outs, "output", log=True)
    ax = fig.add_subplot(gs[1, 0])
    if nodes:
        bars(ax, nodes, "activation", log=False)
    ax = fig.add_subplot(gs[:, 1])
    ordered = report.nodes  # graph order
    ax.plot(np.arange(len(ordered)), [s.cosine for s in ordered], ".", ms=3)
    ax.axhline(0.99, color="#d62728", lw=0.8, ls="--")
    ax.set_xlabel("activation (graph order)")
    ax.set_ylabel("cosine similarity")
    ax.set_title("every quantized activation", fontsize=9)
    fig.suptitle(title or f"INT8 vs float on {len(report.images)} held-out image(s)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------
# latency


def measure_latency(models: Mapping[str, str | os.PathLike | bytes], tensor: np.ndarray, runs: int = 20,
                    threads: int = 1, warmup: int = 2) -> dict[str, float]:  # fmt: skip
    """Median latency in ms per model, 1 ORT thread by default, runs interleaved (round robin) so that
    load from other processes hits every model alike."""
    sessions = {k: _session(v, threads) for k, v in models.items()}
    name = next(iter(sessions.values())).get_inputs()[0].name
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, {name: tensor})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {name: tensor})
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


# --------------------------------------------------------------------------------------------------
# mixed precision: lift the most sensitive layers to float until the heads reach a target cosine


def _units(model) -> list[tuple[list[str], list[str], str]]:
    """Liftable units of the float graph: (node names, activation inputs, output tensor). A Conv with
    its SiLU (Sigmoid + Mul) is one unit: lifting half of a Conv+SiLU saves nothing."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name for i in model.graph.initializer}
    taken: set[str] = set()
    units = []
    for n in model.graph.node:
        if n.name in taken or n.op_type == "Constant":
            continue
        names, out = [n.name], n.output[0]
        if n.op_type in ("Conv", "ConvTranspose"):
            cs = consumers.get(out, [])
            sig = next((c for c in cs if c.op_type == "Sigmoid"), None)
            mul = next((c for c in cs if c.op_type == "Mul" and sig is not None and sig.output[0] in c.input), None)
            if sig is not None and mul is not None and len(cs) == 2:
                names += [sig.name, mul.name]
                out = mul.output[0]
        taken.update(names)
        inputs = [i for i in n.input if i and i not in inits]
        units.append((names, inputs, out))
    return units


def _ancestors(model, tensor: str) -> set[str]:
    """Names of the nodes that ``tensor`` depends on."""
    producers = {o: n for n in model.graph.node for o in n.output}
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(i for i in node.input if i)
    return seen


def pick_sensitive(model, stats: Mapping[str, TensorStat], failing: Sequence[str], excluded: set[str]) -> list[list[str]]:
    """For each failing output, the still-quantized unit upstream of it whose own quantization loses the
    most cosine (cosine of its input minus cosine of its output)."""
    units = _units(model)
    picks: list[list[str]] = []
    for out in failing:
        cone = _ancestors(model, out)
        best, best_drop = None, 0.0
        for names, inputs, unit_out in units:
            if names[0] not in cone or any(n in excluded for n in names) or unit_out not in stats:
                continue
            before = min((stats[i].cosine if i in stats else 1.0 for i in inputs), default=1.0)
            drop = before - stats[unit_out].cosine
            if drop > best_drop:
                best, best_drop = names, drop
        if best is not None and best not in picks:
            picks.append(best)
    return picks


# --------------------------------------------------------------------------------------------------
# the whole job


@dataclass
class QuantizeResult:
    """What ``quantize`` made and measured."""

    output: Path
    calibration_images: list[Path]
    skipped: list[tuple[str, str]]
    method: str
    keep_float: list[str]
    int16: list[str]
    integer_outputs: list[str]
    report: SimilarityReport | None = None
    report_json: Path | None = None
    report_png: Path | None = None
    search: list[dict] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def default_output(model: str | os.PathLike) -> Path:
    p = Path(model)
    return p.with_name(f"{p.stem}-int8.onnx")


def quantize(
    model: str | os.PathLike,
    calib: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    num: int = DEFAULT_NUM,
    method: str = DEFAULT_METHOD,
    per_channel: bool = True,
    reduce_range: bool = True,
    keep_float: Sequence[str] = (),
    int16: Sequence[str] = (),
    int_cls: bool = False,
    target_cosine: float | None = None,
    holdout: str | os.PathLike | None = None,
    report_images: int = 8,
    report: bool = True,
    search_images: int = 4,
    max_search_steps: int = 12,
    bench_runs: int = 0,
    progress: bool = True,
) -> QuantizeResult:
    """Quantize an edgeseg float model to INT8 (QDQ) with integer ``box``/``mc`` heads.

    ``calib``: directory of calibration images (the first ``num`` readable ones, sorted by path, are
    used; unreadable files are skipped and listed in the result). ``keep_float`` / ``int16``: node names
    left in float / given 16-bit activations. ``target_cosine``: lift the most sensitive layers to float
    until every head output (cls, box, mc) reaches this cosine on the first ``search_images`` calibration
    images (protos are reported, not targeted: their own 8-bit output step caps them near 0.995). The similarity report uses ``report_images`` held-out images: those of
    ``holdout``, else the images of ``calib`` after the calibration ones. ``bench_runs`` > 0 measures
    1-thread latency of float, all-INT8 and (if mixed) the written model, interleaved, medians."""
    import onnx

    src = Path(model)
    info = read_model_info(src)
    float_model = _load(src)
    if _is_quantized(float_model):
        raise EdgesegError("model is already quantized; quantize the float export", src)
    if method not in METHODS:
        raise EdgesegError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")
    if num < 1:
        raise EdgesegError(f"--num must be >= 1, got {num}")
    if target_cosine is not None and not 0 < target_cosine < 1:
        raise EdgesegError(f"target cosine must be between 0 and 1, got {target_cosine}")
    # the graph that is calibrated and quantized: opset 13, proto upsample as an integer-friendly Conv
    # (unless named in keep_float / int16); its own node names (e.g. a search's ".../as_conv") are valid too
    model13 = prepare_float_model(float_model, src)
    rewritten = upsample_as_conv(model13, keep=(*keep_float, *int16))
    if rewritten:
        from onnx import shape_inference

        model13 = shape_inference.infer_shapes(model13)
    check_node_names(float_model, keep_float, "--keep-float", src, also=model13)
    check_node_names(float_model, int16, "--int16", src, also=model13)
    both = sorted(set(keep_float) & set(int16))
    if both:
        raise EdgesegError(f"node {both[0]!r} is given both --keep-float and --int16", src)
    out = Path(output) if output is not None else default_output(src)
    if out.resolve() == src.resolve():
        raise EdgesegError("output would overwrite the float model; give another -o", out)
    if out.is_dir():
        raise EdgesegError("is a directory, expected an output .onnx path", out)
    files = list_images(calib)
    float_meta = {m.key: m.value for m in float_model.metadata_props}
    warn: list[str] = []

    with tempfile.TemporaryDirectory(prefix="edgeseg-quant-") as tmp:
        work = Path(tmp)
        model13_path = work / "float13.onnx"
        onnx.save(model13, str(model13_path))
        cal = calibrate(model13_path, files, info.imgsz, num, method, work, head_floors(model13, info),
                        silu_input_floors(model13), progress,
                        keep_tensors=search_images if target_cosine is not None else 0)  # fmt: skip
        if len(cal.used) < num:
            warn.append(f"{calib}: only {len(cal.used)} usable calibration image(s), {num} asked")

        settings = QuantSettings(per_channel, reduce_range, tuple(keep_float), tuple(int16), int_cls)
        qdq_path = work / "qdq.onnx"
        quantize_qdq(model13_path, model13, cal.cache, method, settings, qdq_path)
        all_int8_path = qdq_path
        search: list[dict] = []
        if target_cosine is not None:
            heads = [output_name(k, s) for s in info.strides for k in HEAD_KINDS]
            settings, qdq_path, search = _search(model13, model13_path, cal, method, settings, target_cosine,
                                                 max_search_steps, work, warn, progress, heads)  # fmt: skip

        config = {
            "tool": "onnxruntime.quantization.quantize_static (QDQ)",
            "calibration": method,
            "calibration_images": len(cal.used),
            "activations": "uint8",
            "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
            "reduce_range": reduce_range,
            "keep_float": list(settings.keep_float),
            "int16": list(settings.int16),
            "target_cosine": target_cosine,
            "upsample_as_conv": rewritten,
        }
        final = finish_model(qdq_path, float_meta, info, settings, cal.ranges, config)
        integer = [o.name for o in final.graph.output if o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT]
        final_bytes = final.SerializeToString()
        _check_runs(final_bytes, out)
        write_bytes_atomic(out, final_bytes)

        result = QuantizeResult(out, cal.used, cal.skipped, method, list(settings.keep_float), list(settings.int16),
                                integer, search=search, warnings=warn)  # fmt: skip

        if report:
            held, held_skipped = _held_out(holdout, cal, info.imgsz, report_images)
            result.skipped.extend(held_skipped)
            if held.tensors:
                nodes = compare_tensors(model13, onnx.load(str(qdq_path)), held.tensors)
                outs = compare_outputs(model13_path, final_bytes, info.output_names, held.tensors,
                                       floors=head_floors(model13, info))  # fmt: skip
                node_stats = [s for s in nodes.values() if s.name not in outs]
                result.report = SimilarityReport([str(p) for p in held.used], list(outs.values()), node_stats)
                stem = out.with_suffix("")
                result.report_json = write_json_atomic(
                    stem.with_name(stem.name + ".similarity.json"),
                    {"model": out.name, "float_model": src.name, "quantization": config, **result.report.to_dict(),
                     "search": search},
                )  # fmt: skip
                try:
                    result.report_png = plot_report(result.report, stem.with_name(stem.name + ".similarity.png"),
                                                    f"{out.name} vs {src.name}: INT8 vs float on {len(held.used)} held-out image(s)")  # fmt: skip
                except ImportError:  # matplotlib is optional on a board
                    warn.append("matplotlib is not installed: similarity plot skipped (pip install matplotlib)")
            else:
                warn.append(f"{holdout or calib}: no held-out image left for the similarity report "
                            "(give more images than --num, or --holdout DIR)")  # fmt: skip

        if bench_runs > 0:
            tensor = (cal.search_tensors[0] if cal.search_tensors
                      else next(iter_tensors(cal.used, info.imgsz, 1, []))[1])  # fmt: skip
            models: dict[str, Any] = {"float": model13_path}
            if all_int8_path != qdq_path:
                with _quiet():
                    all_int8 = finish_model(all_int8_path, float_meta, info, QuantSettings(per_channel, reduce_range,
                                            int_cls=int_cls), cal.ranges, config)  # fmt: skip
                models["int8"] = all_int8.SerializeToString()
                models["mixed"] = final_bytes
            else:
                models["int8"] = final_bytes
            result.latency_ms = measure_latency(models, tensor, bench_runs)
    for w in warn:
        import warnings

        warnings.warn(w, stacklevel=2)
    return result


def _check_runs(model_bytes: bytes, out: Path) -> None:
    """The written model must load in ONNX Runtime (guards the graph surgery)."""
    try:
        _session(model_bytes)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgesegError(f"internal error: the quantized model does not load in ONNX Runtime ({first})", out) from None


def _held_out(holdout, cal: Calibration, imgsz, count: int) -> tuple[ImageTensors, list[tuple[str, str]]]:
    if count <= 0:
        return ImageTensors([], [], [], []), []
    if holdout is not None:
        held = load_tensors(holdout, imgsz, count)
        return held, held.skipped
    skipped: list[tuple[str, str]] = []
    pairs = list(iter_tensors(cal.rest, imgsz, count, skipped))
    return ImageTensors([t for _, t in pairs], [p for p, _ in pairs], skipped, []), skipped


def _search(model13, model13_path: Path, cal: Calibration, method: str, settings: QuantSettings, target: float,
            max_steps: int, work: Path, warn: list[str], progress: bool, monitored: Sequence[str]):  # fmt: skip
    """Greedy mixed precision: measure, lift the most lossy unit upstream of each ``monitored`` output
    below ``target`` to float, re-quantize (calibration is cached, so a step is cheap), repeat."""
    import onnx

    keep = list(settings.keep_float)
    steps: list[dict] = []
    path = work / "qdq.onnx"
    float_session = float_activations_session(model13)
    for step in range(max_steps + 1):
        qdq = onnx.load(str(path))
        stats = compare_tensors(model13, qdq, cal.search_tensors, float_session=float_session)
        cos = {o: stats[o].cosine for o in monitored if o in stats}
        failing = sorted((o for o in monitored if cos.get(o, 1.0) < target), key=lambda o: cos[o])
        steps.append({"step": step, "keep_float": list(keep), "min_output_cosine": min(cos.values()),
                      "outputs": {k: round(v, 6) for k, v in cos.items()}})  # fmt: skip
        if progress:
            worst = min(cos, key=cos.get)
            print(f"mixed precision step {step}: {len(keep)} node(s) float, weakest output {worst} "
                  f"{cos[worst]:.5f} (target {target})", file=sys.stderr)  # fmt: skip
        if not failing:
            break
        if step == max_steps:
            warn.append(f"target cosine {target} not reached after {max_steps} steps "
                        f"(weakest output {failing[0]} {cos[failing[0]]:.5f})")  # fmt: skip
            break
        picks = pick_sensitive(model13, stats, failing, set(keep))
        if not picks:
            warn.append(f"target cosine {target} not reachable by lifting layers to float "
                        f"(weakest output {failing[0]} {cos[failing[0]]:.5f})")  # fmt: skip
            break
        for names in picks:
            keep.extend(n for n in names if n not in keep)
        settings = QuantSettings(settings.per_channel, settings.reduce_range, tuple(keep), settings.int16,
                                 settings.int_cls)  # fmt: skip
        path = work / f"qdq-step{step + 1}.onnx"
        quantize_qdq(model13_path, model13, cal.cache, method, settings, path)
    return settings, path, steps
