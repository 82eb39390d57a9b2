"""The one place that reads, walks and writes ONNX graphs: loading with a one-line error, producer and
consumer maps, the layout-op chain behind an output, topological order, initializer values, "is this
model quantized?" (from its operators, never its file name), edgeseg metadata, the input stem's nodes and
the graph's GFLOPs."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import EdgesegError

if TYPE_CHECKING:  # onnx is imported lazily: reading a model is the only thing that needs it
    import onnx

# Ops that only move or relabel values: an output behind them holds the same numbers as their input.
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
# Operators of a quantized graph, QDQ or QOperator form.
QUANTIZED_OPS = frozenset(
    {
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
)
_INT8_ELEM_TYPES = (2, 3)  # TensorProto.UINT8, TensorProto.INT8
# Operators whose multiply-accumulates ``graph_gflops`` counts.
_MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def load_model(path: str | os.PathLike, external_data: bool = False) -> onnx.ModelProto:
    """Read an ONNX file, or raise a one-line EdgesegError naming the file and the problem."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise EdgesegError("no such file", p)
    if p.is_dir():
        raise EdgesegError("is a directory, expected an .onnx model", p)
    try:
        return onnx.load(str(p), load_external_data=external_data)
    except Exception as exc:  # onnx raises DecodeError/ValueError/google.protobuf errors for junk
        raise EdgesegError(f"not a valid ONNX file ({type(exc).__name__})", p) from None


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {m.key: m.value for m in model.metadata_props}


def set_metadata(model: onnx.ModelProto, meta: Mapping[str, str]) -> None:
    """Replace the model's metadata with ``meta`` and mark edgeseg as its producer."""
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "edgeseg"


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write a model atomically (a reader never sees half a file)."""
    from .fileio import write_bytes_atomic

    return write_bytes_atomic(path, model.SerializeToString())


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that writes it."""
    return {o: n for n in graph.node for o in n.output}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it (empty list for none)."""
    out: dict[str, list] = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            out[i].append(n)
    return out


def layout_chain(graph: onnx.GraphProto, tensor: str, writers: Mapping[str, onnx.NodeProto] | None = None) -> list[str]:
    """``tensor`` and the tensors behind it through layout-only ops (e.g. the NHWC Transpose of a head):
    the same values as the decoder reads them. The last entry is written by a computing node (or is a
    graph input)."""
    writers = producers(graph) if writers is None else writers
    chain = [tensor]
    node = writers.get(tensor)
    while node is not None and node.op_type in LAYOUT_OPS:
        chain.append(node.input[0])
        node = writers.get(chain[-1])
    return chain


def output_chains(graph: onnx.GraphProto) -> dict[str, list[str]]:
    """``layout_chain`` of every graph output."""
    writers = producers(graph)
    return {o.name: layout_chain(graph, o.name, writers) for o in graph.output}


def topological_sort(graph: onnx.GraphProto) -> None:
    """Re-order nodes in place so that every input is produced before use (after appending nodes)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in available for i in n.input):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise EdgesegError("internal error: the graph has a cycle or a missing input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def initializer_array(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of an initializer or Constant node output, or None."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def is_quantized(model: onnx.ModelProto) -> bool:
    """Whether the graph is quantized: it has quantization operators or 8-bit integer outputs."""
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node) or any(
        o.type.tensor_type.elem_type in _INT8_ELEM_TYPES for o in model.graph.output
    )


def tensor_dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    """Static dims of a graph input/output (0 where unknown)."""
    return tuple(int(d.dim_value) for d in value_info.type.tensor_type.shape.dim)


def quantization_parameters(model: onnx.ModelProto) -> set[str]:
    """Initializers that are scales/zero points of quantization operators (not learned parameters)."""
    names: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            names.update(node.input[1:])
        elif node.op_type.startswith("QLinear"):
            # QLinearConv: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, bias]: keep w and bias
            names.update(n for i, n in enumerate(node.input) if i not in (0, 3, 8))
    return names


def parameter_count(model: onnx.ModelProto) -> int:
    """Learned parameters in the initializers: quantization scales/zero points and integer shape constants
    are not counted."""
    from onnx import TensorProto

    skip = quantization_parameters(model)
    return sum(
        int(np.prod(init.dims, dtype=np.int64)) if len(init.dims) else 1
        for init in model.graph.initializer
        if init.name not in skip and init.data_type != TensorProto.INT64
    )


def stem_nodes(model: onnx.ModelProto) -> tuple[str, ...]:
    """The input stem: every Conv that reads a graph input (the image), and its SiLU (Sigmoid + Mul) when
    that is all the Conv feeds. ``QuantizeConfig.float_stem`` keeps these in float."""
    graph = model.graph
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    users = consumers(graph)
    stem: list[str] = []
    for node in graph.node:
        if node.op_type != "Conv" or node.input[0] not in inputs:
            continue
        stem.append(node.name)
        after = users.get(node.output[0], [])
        sig = [n for n in after if n.op_type == "Sigmoid"]
        mul = [n for n in after if n.op_type == "Mul"]
        if len(after) == 2 and len(sig) == 1 and len(mul) == 1 and sig[0].output[0] in mul[0].input:
            stem += [sig[0].name, mul[0].name]
    return tuple(stem)


def graph_gflops(path: str | os.PathLike) -> float:
    """Multiply-accumulates of the Conv, ConvTranspose, MatMul and Gemm nodes of an ONNX model (shapes inferred
    for its static input), times 2, in 10^9: Ultralytics' GFLOPs convention. Elementwise ops are not counted."""
    from onnx import shape_inference

    model = shape_inference.infer_shapes(load_model(path, external_data=True))
    g = model.graph
    dims = {v.name: tensor_dims(v) for v in (*g.input, *g.value_info, *g.output)}
    dims.update({i.name: tuple(int(d) for d in i.dims) for i in g.initializer})
    macs = 0
    for node in g.node:
        if node.op_type not in _MAC_OPS:
            continue
        x, w = dims.get(node.input[0], ()), dims.get(node.input[1], ())
        y = dims.get(node.output[0], ())
        if not x or not w or not y or 0 in (*x, *w, *y):
            raise EdgesegError(f"cannot count the multiply-accumulates of node {node.name!r} (unknown shapes)", path)
        if node.op_type == "Conv":  # y [N, Cout, ...], w [Cout, Cin/group, k...]: groups are in the weight's shape
            macs += int(np.prod(y, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
        elif node.op_type == "ConvTranspose":  # x [N, Cin, ...], w [Cin, Cout/group, k...]
            macs += int(np.prod(x, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
        else:  # MatMul / Gemm: every output element is a dot product over the shared axis
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            macs += int(np.prod(y, dtype=np.int64)) * int(x[-2] if trans_a else x[-1])
    return 2 * macs / 1e9
