"""The float graph the quantizer works on: opset 13 with inferred shapes, and the proto upsample
(ConvTranspose 2x2 stride 2) rewritten, exactly, as an integer-friendly 1x1 Conv plus a pixel interleave."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import EdgesegError, first_line

QUANT_OPSET = 13  # per-channel QDQ needs DequantizeLinear's ``axis`` attribute (opset 13)


def prepare_float_model(model, path: Path):
    """The float graph at opset >= 13 with inferred shapes (per-channel QDQ needs opset 13)."""
    import onnx
    from onnx import shape_inference, version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QUANT_OPSET:
        try:
            model = version_converter.convert_version(model, QUANT_OPSET)
        except Exception as exc:
            first = first_line(exc)
            raise EdgesegError(f"cannot convert the graph to opset {QUANT_OPSET} ({first})", path) from None
    model = shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def _is_plain_upsample(attrs: dict) -> bool:
    """A ConvTranspose with a 2x2 kernel, stride 2, no padding, groups, dilation or explicit output size."""
    return (
        list(attrs.get("kernel_shape", [])) == [2, 2]
        and list(attrs.get("strides", [])) == [2, 2]
        and not any(attrs.get("pads", [0]))
        and attrs.get("group", 1) == 1
        and all(d == 1 for d in attrs.get("dilations", [1]))
        and not attrs.get("output_padding")
        and not attrs.get("output_shape")
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


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
        if not _is_plain_upsample(attrs):
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
        graph.initializer.extend(
            [
                numpy_helper.from_array(
                    weight.transpose(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1).astype(np.float32), p + "/as_conv/weight"
                ),
                numpy_helper.from_array(np.tile(bias, 4).astype(np.float32), p + "/as_conv/bias"),
                numpy_helper.from_array(np.array([n, h, w, 2, 2, c_out], np.int64), p + "/blocks_shape"),
                numpy_helper.from_array(np.array([n, 2 * h, 2 * w, c_out], np.int64), p + "/upsampled_shape"),
            ]
        )
        new = [
            helper.make_node(
                "Conv",
                [node.input[0], p + "/as_conv/weight", p + "/as_conv/bias"],
                [p + "/as_conv_output"],
                name=p + "/as_conv",
                kernel_shape=[1, 1],
            ),
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
