"""The compiled model behind the board stand-ins: a fake ``.bin`` (a magic line, a JSON line saying what the
"compiler" made of the model, then the ONNX bytes) and ``CompiledModel``, which runs it on ONNX Runtime and keeps
its tensors as the BPU's memory does: each output in one aligned buffer, in the compiled layout and type.

The runtime façades (``hobot_dnn.pyeasy_dnn``, ``hbm_runtime``) read properties and memory from here and behave
as their sources do; what the BPU does with its input is modelled here:

- NV12 (``input_type_rt: nv12``): the BPU converts to RGB (BT.601 video range, what ``input_space_and_range:
  bt601_video`` compiles in) and scales by 1/255;
- RGB: the X5 input is int8 ``pixel - 128`` (that is why ``dnn_python.cpp`` ``forward`` subtracts 128 from RGB
  inputs); its bytes are read back as ``byte + 128``; BGR: uint8 pixels; float32 (featuremap): the network's
  own input, NCHW or NHWC;
- int32 outputs (box/mc after ``hb_model_modifier -r``) are conv accumulators with per-channel scales: the INT8
  ONNX's uint8 heads re-expressed exactly, ``(q - zp) << j`` with scale ``scale / 2**j`` (``j`` differs per
  channel); int16/int8 outputs are rounded with a per-channel scale and an optional zero point.

The default outputs are the seed's: its order (mc, box, cls per stride, then protos), its numeric names, box and
mc int32, cls and protos float32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

MAGIC = b"FAKE-HBM edgeseg-test-stand-in/2\n"
SEED_OUTPUTS = (
    ("mc_stride8", "output0", "int32"),
    ("mc_stride16", "output1", "int32"),
    ("mc_stride32", "371", "int32"),
    ("box_stride8", "379", "int32"),
    ("box_stride16", "387", "int32"),
    ("box_stride32", "395", "int32"),
    ("cls_stride8", "403", "float32"),
    ("cls_stride16", "411", "float32"),
    ("cls_stride32", "419", "float32"),
    ("protos", "347", "float32"),
)
# hbDNNDataType, in the order of the runtime's own tables (dnn_python.cpp ``TensorType``, hbDNNDataType enum).
TYPES = (
    "Y",
    "NV12",
    "NV12_SEPARATE",
    "YUV444",
    "RGB",
    "BGR",
    "int4",
    "uint4",
    "int8",
    "uint8",
    "float16",
    "int16",
    "uint16",
    "float32",
    "int32",
    "uint32",
    "float64",
    "int64",
    "uint64",
)
LAYOUTS = {"NHWC": 0, "NCHW": 2, "NONE": 255}


def write_fake_bin(
    onnx_path: str | os.PathLike,
    bin_path: str | os.PathLike,
    *,
    input_type: str = "NV12",
    input_layout: str = "NCHW",
    outputs: tuple[tuple[str, str, str], ...] = SEED_OUTPUTS,
    align: int = 0,
    output_layout: str = "NHWC",
    zero_point: int = 0,
    batch: int = 1,
) -> Path:
    """``outputs``: (ONNX output, name in the .bin, dtype) in the .bin's order; dtype float32, int32, int16 or
    int8. ``align``: pad every output's last axis to a multiple of it (aligned != valid shape). ``output_layout``
    NCHW transposes every output. ``zero_point``: the zero point of int8/int16 outputs. ``batch``: the batch the
    model was compiled for."""
    header = {
        "input_type": input_type,
        "input_layout": input_layout,
        "outputs": [list(o) for o in outputs],
        "align": align,
        "output_layout": output_layout,
        "zero_point": zero_point,
        "batch": batch,
    }
    Path(bin_path).write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + Path(onnx_path).read_bytes())
    return Path(bin_path)


def read_fake_bin(path: str | os.PathLike) -> tuple[dict, bytes]:
    """(header, ONNX bytes); ValueError for anything else (the real runtime fails on a non-.bin too)."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a model file this runtime can load")
    header, _, onnx_bytes = data[len(MAGIC) :].partition(b"\n")
    return json.loads(header), onnx_bytes


@dataclass
class TensorSpec:
    """``hbDNNTensorProperties`` as the runtimes read it: type index, layout code, valid and aligned shapes,
    byte strides of the aligned buffer, quantization (scales, zero points, axis)."""

    name: str
    tensor_type: int
    layout: int
    valid: tuple[int, ...]
    aligned: tuple[int, ...]
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.tensor_type < 6 else np.dtype(TYPES[self.tensor_type])

    @property
    def stride(self) -> tuple[int, ...]:
        return tuple(int(s) for s in np.empty(self.aligned, self.dtype).strides)

    @property
    def aligned_bytes(self) -> int:
        return int(np.prod(self.aligned)) * self.dtype.itemsize


class _Head:
    """How one ONNX output becomes one compiled output, and its memory."""

    def __init__(self, source: str, name: str, dtype: str, onnx_dtype, shape, meta, header: dict) -> None:
        self.source, self.out_dtype = source, np.dtype(dtype)
        nhwc = tuple(int(d) for d in shape)
        channels = nhwc[-1]
        self.quant = _quant_params(meta, source) if np.issubdtype(onnx_dtype, np.integer) else None
        self.shift = np.arange(channels, dtype=np.int32) % 4  # per-channel scales that differ, exactly
        scale, zp = np.zeros(0, np.float32), np.zeros(0, np.int32)
        if dtype == "int32":
            base = self.quant[0] if self.quant is not None else np.float32(2.0**-10)
            scale = (base * np.exp2(-self.shift.astype(np.float32))).astype(np.float32)
            zp = np.zeros(channels, np.int32)
        elif dtype in ("int16", "int8"):
            scale = np.exp2(-((9 if dtype == "int16" else 3) + self.shift % 2)).astype(np.float32)
            zp = np.full(channels, header.get("zero_point", 0), np.int32)
        self.nchw = header.get("output_layout", "NHWC") == "NCHW"
        valid = (nhwc[0], nhwc[3], nhwc[1], nhwc[2]) if self.nchw else nhwc
        align = header.get("align", 0)
        aligned = valid[:-1] + ((-(-valid[-1] // align) * align) if align else valid[-1],)
        self.spec = TensorSpec(
            name, TYPES.index(dtype), LAYOUTS["NCHW" if self.nchw else "NHWC"], valid, aligned, scale, zp, 1 if self.nchw else 3
        )
        self.memory = np.zeros(self.spec.aligned_bytes, np.uint8)

    def store(self, value: np.ndarray) -> None:
        """The compiled output of the ONNX output ``value``, written into this head's aligned memory."""
        if self.out_dtype == np.int32 and self.quant is not None:
            out = (value.astype(np.int32) - self.quant[1]) << self.shift
        else:
            real = value if self.quant is None else (value.astype(np.float32) - self.quant[1]) * self.quant[0]
            if self.out_dtype == np.float32:
                out = real.astype(np.float32)
            else:
                info = np.iinfo(self.out_dtype)
                q = np.rint(real / self.spec.scale) + self.spec.zero_point
                out = np.clip(q, info.min, info.max).astype(self.out_dtype)
        if self.nchw:
            out = out.transpose(0, 3, 1, 2)
        padded = np.zeros(self.spec.aligned, self.out_dtype)
        padded[tuple(slice(0, n) for n in self.spec.valid)] = out
        self.memory[:] = padded.reshape(-1).view(np.uint8)


def _quant_params(meta, name):
    """(scale, zero point) of an integer ONNX output from edgeseg's metadata, as float32 / int32 arrays."""
    d = json.loads(meta["edgeseg.quant." + name])
    return np.asarray(d["scale"], np.float32), np.asarray(d["zero_point"], np.int32)


class CompiledModel:
    """One fake .bin as the BPU holds it: input and output specs, input memory, output memories."""

    def __init__(self, path: str) -> None:
        header, onnx_bytes = read_fake_bin(path)
        self.name = Path(path).stem
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        onnx_outputs = {o.name: o for o in self._session.get_outputs()}
        _, _, h, w = self._session.get_inputs()[0].shape
        self.hw = (h, w)
        self.input_type, self.input_layout = header["input_type"], header["input_layout"]
        batch = header.get("batch", 1)
        if "NV12" in self.input_type:
            valid = (batch, 3, h, w) if self.input_layout == "NCHW" else (batch, h, w, 3)
            type_index, nbytes = TYPES.index(self.input_type), batch * h * w * 3 // 2
        else:
            valid = (batch, h, w, 3) if self.input_layout == "NHWC" else (batch, 3, h, w)
            type_index = TYPES.index(self.input_type)
            nbytes = int(np.prod(valid)) * (4 if self.input_type == "float32" else 1)
        self.input = TensorSpec(
            "images", type_index, LAYOUTS[self.input_layout], valid, valid, np.zeros(0, np.float32), np.zeros(0, np.int32), 0
        )
        self.input_memory = np.zeros(nbytes, np.uint8)
        self.heads = []
        for source, name, out_dtype in header["outputs"]:
            o = onnx_outputs[source]
            onnx_dtype = np.uint8 if "uint8" in o.type else np.int8 if "int8" in o.type else np.float32
            shape = (batch, *o.shape[1:])
            self.heads.append(_Head(source, name, out_dtype, onnx_dtype, shape, meta, header))

    @property
    def outputs(self) -> list[TensorSpec]:
        return [h.spec for h in self.heads]

    def _network_input(self) -> np.ndarray:
        """What the BPU's preprocessing makes of its input memory: float32 RGB NCHW in [0, 1]."""
        h, w = self.hw
        data, kind = self.input_memory, self.input_type
        if "NV12" in kind:
            rgb = cv2.cvtColor(data[: h * w * 3 // 2].reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_NV12)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1))[None].astype(np.float32) / np.float32(255)
        if kind == "float32":
            x = data.view(np.float32).reshape(self.input.valid)
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.input_layout == "NHWC" else x)
        pixels = data.reshape(self.input.valid).astype(np.float32)
        if kind == "RGB":
            pixels = pixels + 128  # the runtime stored pixel - 128
        nchw = pixels.transpose(0, 3, 1, 2) if self.input_layout == "NHWC" else pixels
        if kind == "BGR":
            nchw = nchw[:, ::-1]
        return np.ascontiguousarray(nchw) / np.float32(255)

    def infer(self) -> None:
        """Run on the input memory; each output's memory gets its compiled values."""
        values = self._session.run([h.source for h in self.heads], {self._session.get_inputs()[0].name: self._network_input()})
        for head, value in zip(self.heads, values):
            head.store(value)
