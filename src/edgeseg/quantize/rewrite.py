"""Graph rewriting: ORT's static QDQ quantization of the prepared float graph with cached calibrated
ranges, then integer heads (the trailing DequantizeLinear of the box/mc outputs removed, the equivalent
of Horizon's ``hb_model_modifier -r``) and the edgeseg metadata of the deliverable."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import ModelInfo, output_name
from ..backends.base import BOX, HEAD_KINDS, MC, META_PREFIX
from ..errors import EdgesegError
from ..onnxgraph import consumers, initializer_array, load_model, producers, set_metadata, topological_sort
from .calibrate import calibration_method
from .sessions import quiet_ort

QUANT_META = META_PREFIX + "quant."
CONFIG_META = META_PREFIX + "quantization"


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize (everything except the calibration itself)."""

    per_channel: bool = True
    reduce_range: bool = True
    keep_float: tuple[str, ...] = ()
    int16: tuple[str, ...] = ()
    int_cls: bool = False


@dataclass(frozen=True)
class CalibratedGraph:
    """The prepared float graph (``model``, saved at ``path``) and the ORT calibration cache of its
    ranges: everything ``quantize_qdq`` needs besides the settings, so a search re-quantizes cheaply."""

    model: Any  # onnx.ModelProto
    path: Path
    cache: Path
    method: str


def check_node_names(model, names: Iterable[str], option: str, path: Path, also=None) -> None:
    """One-line error for node names that are not in the graph (with a hint of similar names). ``also``:
    a second graph whose node names are valid too (the quantizer's rewritten graph)."""
    nodes = {n.name for n in model.graph.node} | ({n.name for n in also.graph.node} if also is not None else set())
    bad = [n for n in names if n not in nodes]
    if bad:
        import difflib

        hint = difflib.get_close_matches(bad[0], list(nodes), n=3)
        raise EdgesegError(
            f"{option}: no node named {bad[0]!r}"
            + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
            + (f" and {len(bad) - 1} more unknown" if len(bad) > 1 else ""),
            path,
        )


def _int16_overrides(model, nodes: Iterable[str]) -> dict[str, list[dict]]:
    """TensorQuantOverrides that make the activations produced by ``nodes`` 16-bit."""
    from onnxruntime.quantization import QuantType

    index = {n.name: n for n in model.graph.node}
    overrides: dict[str, list[dict]] = {}
    for name in nodes:
        for out in index[name].output:
            if out:
                overrides[out] = [{"quant_type": QuantType.QUInt16}]
    return overrides


def quantize_qdq(graph: CalibratedGraph, settings: QuantSettings, out: Path) -> None:
    """``quantize_static`` with the calibrated ranges of ``graph.cache`` (no calibration run here)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra: dict[str, Any] = {}
    if settings.int16:
        extra["TensorQuantOverrides"] = _int16_overrides(graph.model, settings.int16)
    with quiet_ort():
        quantize_static(
            str(graph.path),
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
            calibrate_method=calibration_method(graph.method),
            calibration_cache_path=str(graph.cache),
            extra_options=extra,
        )


def _range_to_qparams(rmin: float, rmax: float) -> tuple[float, int]:
    """uint8 asymmetric scale / zero point covering [rmin, rmax] (always containing 0), as ORT does."""
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    scale = (rmax - rmin) / 255.0 or 1.0
    zero_point = int(round(-rmin / scale))
    return scale, min(max(zero_point, 0), 255)


def _drop_dequantize(model, name: str, dq, writers, readers) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove the DequantizeLinear ``dq`` that writes output ``name``: the QuantizeLinear (or integer op)
    before it now writes the output. Returns scale, zero point and the output's element type."""
    from onnx import TensorProto, helper

    q_tensor = dq.input[0]
    scale = initializer_array(model, dq.input[1])
    zp = initializer_array(model, dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    q_producer = writers.get(q_tensor)
    if scale is None or len(readers.get(q_tensor, [])) != 1 or q_producer is None:
        raise EdgesegError(f"cannot make {name} integer: unexpected graph around its DequantizeLinear")
    for i, o in enumerate(q_producer.output):
        if o == q_tensor:
            q_producer.output[i] = name
    model.graph.node.remove(dq)
    dtype = TensorProto.UINT8 if zp is None else helper.np_dtype_to_tensor_dtype(zp.dtype)
    zp = np.zeros_like(scale, dtype=np.uint8) if zp is None else zp
    return scale, zp, dtype


def _append_quantize(model, name: str, value_range: tuple[float, float], writers, readers) -> tuple[np.ndarray, np.ndarray, int]:
    """Quantize the float output ``name`` at the end of the graph with its calibrated range. Returns
    scale, zero point and the output's element type."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    s, z = _range_to_qparams(*value_range)
    scale, zp = np.float32(s), np.uint8(z)
    float_name = name + "_float"
    node_out = writers[name]
    for i, o in enumerate(node_out.output):
        if o == name:
            node_out.output[i] = float_name
    for c in readers.get(name, []):  # (a head output has no consumers, but stay correct)
        for i, inp in enumerate(c.input):
            if inp == name:
                c.input[i] = float_name
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(scale, np.float32), name + "_scale"),
            numpy_helper.from_array(np.asarray(zp, np.uint8), name + "_zero_point"),
        ]
    )
    graph.node.append(
        helper.make_node("QuantizeLinear", [float_name, name + "_scale", name + "_zero_point"], [name], name=name + "_QuantizeLinear")
    )
    return scale, zp, TensorProto.UINT8


def integer_heads(model, outputs: Sequence[str], ranges: Mapping[str, tuple[float, float]]) -> dict[str, dict]:
    """Make ``outputs`` integer tensors in place; returns their ``{"scale": [...], "zero_point": [...]}``.

    A head output produced by DequantizeLinear loses that node: the QuantizeLinear before it now writes
    the graph output (what ``hb_model_modifier -r`` does). A head whose producer stayed float (a node
    kept in float) gets a QuantizeLinear with the calibrated range of that output appended instead, so the
    head is integer either way."""
    import onnx

    graph = model.graph
    writers = producers(graph)
    readers = consumers(graph)
    by_name = {o.name: o for o in graph.output}
    params: dict[str, dict] = {}
    for name in outputs:
        node = writers.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and len(readers.get(name, [])) == 0:
            scale, zp, dtype = _drop_dequantize(model, name, node, writers, readers)
        elif name not in ranges:
            raise EdgesegError(f"cannot make {name} integer: no calibrated range for it")
        else:
            scale, zp, dtype = _append_quantize(model, name, ranges[name], writers, readers)
        by_name[name].type.tensor_type.elem_type = dtype
        params[name] = {
            "scale": [float(v) for v in np.asarray(scale, np.float64).reshape(-1)],
            "zero_point": [int(v) for v in np.asarray(zp).reshape(-1)],
        }
    topological_sort(graph)
    onnx.checker.check_model(model)
    return params


def head_outputs(info: ModelInfo, int_cls: bool = False) -> list[str]:
    """The outputs made integer: box and mc of every stride, cls too with ``int_cls``."""
    kinds = HEAD_KINDS if int_cls else (BOX, MC)
    return [output_name(k, s) for s in info.strides for k in kinds]


def finish_model(
    qdq_path: Path,
    *,
    float_meta: Mapping[str, str],
    info: ModelInfo,
    settings: QuantSettings,
    ranges: Mapping[str, tuple[float, float]],
    config: Mapping[str, Any],
):
    """The deliverable: integer heads, the float model's edgeseg metadata plus the quantization keys."""
    model = load_model(qdq_path)
    params = integer_heads(model, head_outputs(info, settings.int_cls), ranges)
    meta = {k: v for k, v in float_meta.items() if k.startswith(META_PREFIX) and not k.startswith(QUANT_META)}
    meta.update({QUANT_META + name: json.dumps(p) for name, p in params.items()})
    meta[CONFIG_META] = json.dumps(dict(config))
    set_metadata(model, meta)
    return model
