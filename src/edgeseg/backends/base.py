"""What every backend speaks: the model description stored in the ONNX metadata (``ModelInfo``), integer
head outputs (``QuantizedTensor``) and the ``Backend`` protocol."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import EdgesegError

LAYOUT_VERSION = "edgeseg-split-head-nhwc/1"
# Same outputs, but boxes as 4 distances (reg_max 1) and/or one-to-one heads selected without NMS (YOLO26):
# a reader that only knows /1 refuses such a model instead of decoding it with DFL and NMS.
LAYOUT_VERSION_E2E = "edgeseg-split-head-nhwc/2"
LAYOUT_VERSIONS = (LAYOUT_VERSION, LAYOUT_VERSION_E2E)
META_PREFIX = "edgeseg."


@dataclass(frozen=True)
class QuantizedTensor:
    """An integer head output with its quantization: ``real = (data - zero_point) * scale``.

    ``scale`` and ``zero_point`` are scalars (per-tensor) or 1-D arrays over the last (channel) axis.
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray

    def dequantize(self, rows: np.ndarray | None = None) -> np.ndarray:
        q = self.data if rows is None else self.data[rows]
        return (q.astype(np.float32) - self.zero_point.astype(np.float32)) * self.scale.astype(np.float32)


def as_float(t: np.ndarray | QuantizedTensor) -> np.ndarray:
    """A head output as a float32 array (integer heads dequantized whole: for baselines, not the fast path)."""
    return t.dequantize() if isinstance(t, QuantizedTensor) else np.asarray(t, np.float32)


# The head outputs of every stride: class logits, box distances (DFL bins), mask coefficients; and the one
# mask prototype output shared by all strides.
CLS, BOX, MC = "cls", "box", "mc"
HEAD_KINDS = (CLS, BOX, MC)
PROTOS = "protos"


def output_name(kind: str, stride: int) -> str:
    """Graph output name of one head (``kind`` of ``HEAD_KINDS``): ``cls_stride8``, ``box_stride16``, ``mc_stride32``."""
    return f"{kind}_stride{stride}"


@dataclass(frozen=True)
class ModelInfo:
    """What the decoder needs to know about an edgeseg split-head model."""

    names: dict[int, str]
    strides: tuple[int, ...]
    imgsz: tuple[int, int]
    reg_max: int = 16
    num_masks: int = 32
    source: str = ""
    # True: one-to-one heads (YOLO26's default), decoded by Ultralytics' end-to-end top-k selection, no NMS
    end2end: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def output_names(self) -> list[str]:
        heads = [output_name(k, s) for s in self.strides for k in HEAD_KINDS]
        return heads + [PROTOS]

    @property
    def layout(self) -> str:
        return LAYOUT_VERSION if self.reg_max > 1 and not self.end2end else LAYOUT_VERSION_E2E

    @property
    def anchors(self) -> int:
        """Grid cells over all strides (Ultralytics caps the end-to-end top-k at this)."""
        return sum((self.imgsz[0] // s) * (self.imgsz[1] // s) for s in self.strides)

    def to_metadata(self) -> dict[str, str]:
        return {
            META_PREFIX + "layout": self.layout,
            META_PREFIX + "names": json.dumps({str(k): v for k, v in self.names.items()}),
            META_PREFIX + "strides": json.dumps(list(self.strides)),
            META_PREFIX + "imgsz": json.dumps(list(self.imgsz)),
            META_PREFIX + "reg_max": str(self.reg_max),
            META_PREFIX + "num_masks": str(self.num_masks),
            META_PREFIX + "source": self.source,
            META_PREFIX + "end2end": "true" if self.end2end else "false",
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], path: str | os.PathLike = "<model>") -> ModelInfo:
        layout = meta.get(META_PREFIX + "layout")
        if layout is None:
            raise EdgesegError("not an edgeseg split-head model (no edgeseg metadata); create one with `edgeseg export`", path)
        if layout not in LAYOUT_VERSIONS:
            readable = " and ".join(repr(v) for v in LAYOUT_VERSIONS)
            raise EdgesegError(f"unsupported edgeseg layout {layout!r} (this version reads {readable})", path)
        try:
            names = {int(k): v for k, v in json.loads(meta[META_PREFIX + "names"]).items()}
            return cls(
                names=names,
                strides=tuple(int(s) for s in json.loads(meta[META_PREFIX + "strides"])),
                imgsz=tuple(int(s) for s in json.loads(meta[META_PREFIX + "imgsz"])),
                reg_max=int(meta.get(META_PREFIX + "reg_max", 16)),
                num_masks=int(meta.get(META_PREFIX + "num_masks", 32)),
                source=meta.get(META_PREFIX + "source", ""),
                end2end={"true": True, "false": False}[meta.get(META_PREFIX + "end2end", "false")],
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise EdgesegError(f"corrupt edgeseg metadata ({exc})", path) from None


class Backend(Protocol):
    """Anything that runs the network: takes its input, returns the named head outputs (float arrays, or
    QuantizedTensor for integer heads).

    The input is the NCHW float32 RGB tensor (``preprocess.to_input_tensor``) unless the backend also has
    ``prepare(padded_bgr, lb) -> input``, which makes its own form from the letterboxed uint8 BGR image and
    its ``Letterbox`` (the RDK board's takes NV12), and ``prepare_nv12(padded_nv12, lb) -> input`` for a frame
    that arrived as NV12 (an NV12 model takes it as it is). Both are optional: ``.info`` and ``.run`` suffice
    (an NV12 frame is then converted once to the float tensor)."""

    info: ModelInfo

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray | QuantizedTensor]: ...


def read_onnx_model_info(path: str | os.PathLike) -> ModelInfo:
    """Read the ModelInfo of an edgeseg ONNX file, with one-line errors for anything else."""
    from ..onnxgraph import load_model, metadata

    return ModelInfo.from_metadata(metadata(load_model(path)), path)


def quantization_metadata(meta: Mapping[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scale/zero point of integer head outputs, stored as ``edgeseg.quant.<output>`` JSON
    ``{"scale": [...], "zero_point": [...]}`` by the quantizer."""
    out = {}
    for key, value in meta.items():
        if key.startswith(META_PREFIX + "quant."):
            d = json.loads(value)
            out[key[len(META_PREFIX + "quant.") :]] = (
                np.asarray(d["scale"], np.float32).reshape(-1) if len(d["scale"]) > 1 else np.float32(d["scale"][0]),
                np.asarray(d["zero_point"], np.int32).reshape(-1) if len(d["zero_point"]) > 1 else np.int32(d["zero_point"][0]),
            )
    return out
