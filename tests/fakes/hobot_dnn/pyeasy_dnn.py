"""Stand-in for the board's ``hobot_dnn.pyeasy_dnn`` on ONNX Runtime: only the documented surface.

- ``load(path)`` -> a list with one model; ``model.inputs[i]`` / ``model.outputs[i]`` have ``name`` and
  ``properties`` (``tensor_type``, ``dtype``, ``layout``, ``shape``, ``validShape``, ``alignedShape``,
  ``scale_data``); ``model.forward(array_or_list, core_id=0, priority=0)`` -> tensors with ``buffer`` and
  ``properties``. Slots keep anything else from being read.
- Like the BPU: an NV12 input (``shape`` (1, 3, H, W)) is converted to RGB inside (BT.601 video range, what
  ``input_space_and_range: bt601_video`` compiles in) and scaled by 1/255; an RGB/BGR uint8 input is scaled
  by 1/255; int32 outputs are conv accumulators with per-channel ``scale_data`` and zero point 0; outputs
  come in the .bin's order under the .bin's names, padded to ``alignedShape`` when asked.

The int32 heads of an edgeseg INT8 ONNX are its uint8 heads re-expressed exactly: ``(q - zp) << j`` with
scale ``scale / 2**j`` (``j`` differs per channel), so they dequantize to the same float32 values.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort

from .fakebin import read_fake_bin


class TensorProperties:
    __slots__ = ("tensor_type", "dtype", "layout", "shape", "validShape", "alignedShape", "scale_data")

    def __init__(self, tensor_type, dtype, layout, shape, aligned, scale_data) -> None:
        self.tensor_type, self.dtype, self.layout = tensor_type, dtype, layout
        self.shape = self.validShape = tuple(shape)
        self.alignedShape = tuple(aligned)
        self.scale_data = np.asarray(scale_data, np.float32)


class TensorInfo:
    __slots__ = ("name", "properties")

    def __init__(self, name, properties) -> None:
        self.name, self.properties = name, properties


class Tensor:
    __slots__ = ("buffer", "properties")

    def __init__(self, buffer, properties) -> None:
        self.buffer, self.properties = buffer, properties


def _quant_params(meta, name):
    """(scale, zero point) of an integer ONNX output from edgeseg's metadata, as float32 / int32 arrays."""
    d = json.loads(meta["edgeseg.quant." + name])
    return np.asarray(d["scale"], np.float32), np.asarray(d["zero_point"], np.int32)


class _Head:
    """How one ONNX output becomes one .bin output."""

    def __init__(self, source, name, dtype, onnx_dtype, shape, meta, align) -> None:
        self.source, self.dtype, self.shape = source, dtype, tuple(shape)
        channels = self.shape[-1]
        self.aligned = self.shape[:-1] + ((-(-channels // align) * align) if align else channels,)
        self.quant = _quant_params(meta, source) if np.issubdtype(onnx_dtype, np.integer) else None
        self.shift = np.arange(channels, dtype=np.int32) % 4  # per-channel scales that differ, exactly
        scale = np.float32(0)
        if dtype == "int32":
            base = self.quant[0] if self.quant is not None else np.float32(2.0**-10)
            scale = (base * np.exp2(-self.shift.astype(np.float32))).astype(np.float32)  # exact: powers of two
        elif dtype == "int16":
            scale = np.exp2(-(9 + self.shift % 2)).astype(np.float32)
        self.scale = np.asarray(scale, np.float32) if dtype != "float32" else np.zeros(0, np.float32)
        self.properties = TensorProperties("F32" if dtype == "float32" else dtype.upper(), dtype, "NHWC", self.shape,
                                           self.aligned, self.scale)  # fmt: skip

    def convert(self, value):
        if self.dtype == "int32" and self.quant is not None:
            out = (value.astype(np.int32) - self.quant[1]) << self.shift
        else:
            real = value if self.quant is None else (value.astype(np.float32) - self.quant[1]) * self.quant[0]
            if self.dtype == "float32":
                out = real.astype(np.float32)
            else:
                info = np.iinfo(self.dtype)
                out = np.clip(np.rint(real / self.scale), info.min, info.max).astype(self.dtype)
        if self.aligned != self.shape:
            padded = np.zeros(self.aligned, out.dtype)
            padded[..., : self.shape[-1]] = out
            out = padded
        return out


class Model:
    """One loaded .bin."""

    def __init__(self, path) -> None:
        header, onnx_bytes = read_fake_bin(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        onnx_outputs = {o.name: o for o in self._session.get_outputs()}
        _, _, h, w = self._session.get_inputs()[0].shape
        self._hw = (h, w)
        self._type, self._layout = header["input_type"], header["input_layout"]
        if "NV12" in self._type:
            shape, dtype, layout = (1, 3, h, w), "uint8", "NCHW"
        else:
            shape = (1, h, w, 3) if self._layout == "NHWC" else (1, 3, h, w)
            dtype, layout = ("float32" if self._type == "F32" else "uint8"), self._layout
        self.inputs = [TensorInfo("images", TensorProperties(self._type, dtype, layout, shape, shape, []))]
        self._heads = []
        for source, name, out_dtype in header["outputs"]:
            o = onnx_outputs[source]
            onnx_dtype = np.uint8 if "uint8" in o.type else np.int8 if "int8" in o.type else np.float32
            self._heads.append(_Head(source, name, out_dtype, onnx_dtype, o.shape, meta, header["align"]))
        self.outputs = [TensorInfo(name, head.properties) for head, (_, name, _) in zip(self._heads, header["outputs"])]

    def _network_input(self, data):
        """What the BPU's preprocessing makes of the input: float32 RGB NCHW in [0, 1]."""
        h, w = self._hw
        props = self.inputs[0].properties
        if "NV12" in self._type:
            if data.dtype != np.uint8 or data.size != h * w * 3 // 2:
                raise RuntimeError(f"input must be {h * w * 3 // 2} bytes of NV12, got {data.dtype} {data.shape}")
            rgb = cv2.cvtColor(data.reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_NV12)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1))[None].astype(np.float32) / np.float32(255)
        if data.shape != props.shape or data.dtype != np.dtype(props.dtype):
            raise RuntimeError(f"input must be {props.dtype} {props.shape}, got {data.dtype} {data.shape}")
        nchw = data.transpose(0, 3, 1, 2) if self._layout == "NHWC" else data
        if self._type == "F32":
            return np.ascontiguousarray(nchw)
        if self._type == "BGR":
            nchw = nchw[:, ::-1]
        return np.ascontiguousarray(nchw).astype(np.float32) / np.float32(255)

    def forward(self, input_tensor, core_id=0, priority=0):
        data = input_tensor[0] if isinstance(input_tensor, (list, tuple)) else input_tensor
        x = self._network_input(np.asarray(data))
        values = self._session.run([h.source for h in self._heads], {self._session.get_inputs()[0].name: x})
        return [Tensor(h.convert(v), h.properties) for h, v in zip(self._heads, values)]


def load(path):
    return [Model(str(path))]
