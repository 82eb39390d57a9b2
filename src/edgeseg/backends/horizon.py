"""The RDK board backend: a Horizon BPU ``.bin`` run through the board's ``pyeasy_dnn``, decoded by edgeseg.

A .bin has no edgeseg metadata: class names and geometry come from the sidecar ``<model>.edgeseg.json`` that
``edgeseg horizon`` writes (copy it next to the .bin). Output names are whatever the ONNX had, so outputs are
mapped to edgeseg's names by shape and class count. Integer outputs (box/mc after ``hb_model_modifier -r``:
int32 with per-channel ``scale_data``, zero point 0) become ``QuantizedTensor``s: the decoder dequantizes only
the rows it keeps. The input is made in the form the model declares (NV12, RGB/BGR, float).

Only the documented pyeasy_dnn surface is used: ``load(path) -> [model]``; ``model.inputs[i]`` /
``model.outputs[i]`` with ``.name`` and ``.properties`` (``tensor_type``, ``dtype``, ``layout``, ``shape``,
``validShape``, ``alignedShape``, ``scale_data``); ``model.forward(input)`` -> tensors with ``.buffer``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import EdgesegError, first_line
from ..fileio import read_json
from ..preprocess import Letterbox, to_input_tensor, to_nv12
from .base import PROTOS, ModelInfo, QuantizedTensor, output_name

RUNTIME_PACKAGES = ("hobot_dnn", "hobot_dnn_rdkx5")  # the board image's, then the PyPI wheel's (edgeseg[rdk])
SIDECAR_SUFFIX = ".edgeseg.json"
SIDECAR_FORMAT = "edgeseg-horizon-sidecar/1"
NV12_RANGE = "bt601_video"  # OpenCV's I420/NV12 conversion is BT.601 video range (Y 16..235)
HEAD_KINDS = ("cls", "box", "mc")
_ZERO_POINT = np.int32(0)


def board_runtime(path: str | os.PathLike) -> ModuleType:
    """The board's ``pyeasy_dnn`` module, or a one-line error saying where it comes from."""
    for package in RUNTIME_PACKAGES:
        try:
            return __import__(package, fromlist=["pyeasy_dnn"]).pyeasy_dnn
        except (ImportError, OSError, AttributeError):  # the wheel installs anywhere but loads only on the board
            continue
    raise EdgesegError(
        "is a Horizon .bin model: it runs on an RDK board, and the board runtime cannot be imported here "
        '(hobot_dnn comes with the board image; or pip install "edgeseg[rdk]" on the board for hobot-dnn-rdkx5)',
        path,
    )


def output_kind(name: str) -> str | None:
    """``cls``/``box``/``mc`` for edgeseg head output names (``box_stride8``), else None."""
    kind, sep, stride = name.partition("_stride")
    return kind if sep and stride.isdigit() and kind in HEAD_KINDS else None


# --------------------------------------------------------------------------------------------------
# the sidecar


@dataclass(frozen=True)
class Sidecar:
    """What a .bin lacks and edgeseg needs: the ``ModelInfo`` of the ONNX it was compiled from, the run-time
    input it was compiled for, and that ONNX's name and parameter count (for bench tables)."""

    info: ModelInfo
    input_type_rt: str = "nv12"
    onnx_model: str = ""
    params: int = 0

    def to_dict(self) -> dict[str, Any]:
        ih, iw = self.info.imgsz
        return {
            "format": SIDECAR_FORMAT,
            "onnx_model": self.onnx_model,
            "params": self.params,
            "input": {"shape": [1, 3, ih, iw], "layout_train": "NCHW", "type_train": "rgb", "type_rt": self.input_type_rt,
                      "space_and_range": NV12_RANGE if self.input_type_rt == "nv12" else None},  # fmt: skip
            "metadata": self.info.to_metadata(),
        }

    @classmethod
    def from_dict(cls, doc: Any, path: str | os.PathLike) -> Sidecar:
        if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
            raise EdgesegError(f"not an edgeseg sidecar (expected format {SIDECAR_FORMAT!r}; write it with `edgeseg horizon`)", path)
        meta, given = doc.get("metadata"), doc.get("input") or {}
        if not isinstance(meta, Mapping) or not isinstance(given, Mapping):
            raise EdgesegError("corrupt edgeseg sidecar (metadata and input must be objects)", path)
        info = ModelInfo.from_metadata(meta, path)
        shape = given.get("shape")
        if shape is not None and list(shape)[2:] != list(info.imgsz):
            raise EdgesegError(f"corrupt edgeseg sidecar: input shape {shape} does not match imgsz {list(info.imgsz)}", path)
        params = doc.get("params", 0)
        return cls(info, str(given.get("type_rt", "nv12")), str(doc.get("onnx_model", "")), params if isinstance(params, int) else 0)


def read_sidecar(path: str | os.PathLike) -> Sidecar:
    return Sidecar.from_dict(read_json(path, "edgeseg sidecar"), path)


def find_sidecar(bin_path: str | os.PathLike) -> Path:
    """The sidecar of a .bin: the only ``*.edgeseg.json`` in its directory or, among several, the one whose
    model name begins the .bin's name (``edgeseg horizon`` names the .bin after the ONNX)."""
    p = Path(bin_path)
    found = sorted(p.parent.glob("*" + SIDECAR_SUFFIX))
    if len(found) == 1:
        return found[0]
    if not found:
        raise EdgesegError(f"no sidecar *{SIDECAR_SUFFIX} beside this .bin: copy the one `edgeseg horizon` wrote into "
                           f"{p.parent} (it holds the class names a .bin lacks)", p)  # fmt: skip
    named = [s for s in found if p.name.startswith(s.name[: -len(SIDECAR_SUFFIX)])]
    longest = max((len(s.name) for s in named), default=0)
    best = [s for s in named if len(s.name) == longest]
    if len(best) != 1:
        raise EdgesegError(f"{len(found)} sidecars beside this .bin and none is named after it: keep one of "
                           f"{', '.join(s.name for s in found)}", p)  # fmt: skip
    return best[0]


def read_bin_info(bin_path: str | os.PathLike) -> ModelInfo:
    """The ModelInfo of a .bin, from its sidecar (no board runtime needed)."""
    return read_sidecar(find_sidecar(bin_path)).info


# --------------------------------------------------------------------------------------------------
# outputs


@dataclass(frozen=True)
class BinOutput:
    """One output of the .bin as loaded: its position, name, valid and aligned (padded) shapes, and its
    dequantization scale (None for a float output)."""

    index: int
    name: str
    shape: tuple[int, ...]
    aligned: tuple[int, ...]
    scale: np.ndarray | None

    @classmethod
    def of(cls, index: int, tensor: Any, path: Path) -> BinOutput:
        props, name = tensor.properties, str(tensor.name)
        shape = tuple(int(d) for d in props.validShape)
        aligned = tuple(int(d) for d in props.alignedShape) or shape
        return cls(index, name, shape, aligned, _scale(props, name, shape[-1] if shape else 0, path))

    def __str__(self) -> str:
        return f"{self.name}{list(self.shape)}"


def _scale(props: Any, name: str, channels: int, path: Path) -> np.ndarray | None:
    """The dequantization scale of an integer output (per channel, or one value), None for a float one."""
    dtype = np.dtype(str(props.dtype))
    scale = np.asarray(props.scale_data if props.scale_data is not None else [], np.float32).reshape(-1)
    if np.issubdtype(dtype, np.floating):
        return None
    if scale.size == 0:
        raise EdgesegError(f"output {name!r} is {dtype} without scale_data: it cannot be dequantized", path)
    if scale.size == 1:
        return np.float32(scale[0])
    if scale.size < channels:
        raise EdgesegError(f"output {name!r} has {scale.size} scales for {channels} channels", path)
    return scale[:channels]  # scales of alignment padding channels, if any, are not needed


def _assignments(outs: Sequence[BinOutput], channels: dict[str, int]) -> list[dict[str, BinOutput]]:
    """Every way to read three of ``outs`` as cls, box and mc that fits their channel counts."""
    found = []
    for trio in itertools.permutations(outs, 3):
        if all(o.shape[3] == channels[k] for k, o in zip(HEAD_KINDS, trio)):
            found.append(dict(zip(HEAD_KINDS, trio)))
    return found


def _narrow(options: list[dict[str, BinOutput]]) -> list[dict[str, BinOutput]]:
    """Tie-breaks when channel counts are ambiguous (64 or 32 classes): edgeseg names first, then
    ``hb_model_modifier``'s mark (box and mc integer with scales, cls float); a tie-break that rules out
    every option is not applied."""
    hints = (
        lambda k, o: output_kind(o.name) in (None, k),
        lambda k, o: (o.scale is None) == (k == "cls"),
    )
    for fits in hints:
        kept = [a for a in options if all(fits(k, o) for k, o in a.items())]
        options = kept or options
    return options


def map_outputs(outs: Sequence[BinOutput], info: ModelInfo, path: str | os.PathLike) -> dict[str, BinOutput]:
    """edgeseg output name -> the .bin output that is it, by shape ([1,H,W,C] NHWC as in the ONNX) and
    class count; one-line errors for a model that is not a split-head seg model or has another class count."""
    ih, iw = info.imgsz
    channels = {"cls": info.num_classes, "box": 4 * info.reg_max, "mc": info.num_masks}
    listed = ", ".join(str(o) for o in outs) or "none"
    four_d = [o for o in outs if len(o.shape) == 4 and o.shape[0] == 1]
    mapped: dict[str, BinOutput] = {}
    protos = [o for o in four_d if o.shape[1:] == (ih // 4, iw // 4, info.num_masks)]
    for s in info.strides:
        at_grid = [o for o in four_d if o.shape[1:3] == (ih // s, iw // s)]
        options = _narrow(_assignments(at_grid, channels))
        if len(options) > 1:
            raise EdgesegError(f"cannot tell the stride-{s} heads apart by shape ({', '.join(map(str, at_grid))}); "
                               "name the ONNX outputs as `edgeseg export` does", path)  # fmt: skip
        if not options:
            box_mc = [o for o in at_grid if o.shape[3] in (channels["box"], channels["mc"])]
            others = sorted({o.shape[3] for o in at_grid} - {channels["box"], channels["mc"]})
            if len(box_mc) == 2 and protos and len(others) == 1:
                raise EdgesegError(f"the sidecar has {info.num_classes} class names but the model's class outputs have "
                                   f"{others[0]} channels (wrong sidecar?)", path)  # fmt: skip
            raise EdgesegError(
                f"not a split-head segmentation model for {ih}x{iw}: expected per stride {list(info.strides)} cls "
                f"[1,H,W,{channels['cls']}], box [1,H,W,{channels['box']}] and mc [1,H,W,{channels['mc']}], and protos "
                f"[1,{ih // 4},{iw // 4},{info.num_masks}]; found {listed}",
                path,
            )
        mapped.update({output_name(k, s): o for k, o in options[0].items()})
    if len(protos) != 1:
        raise EdgesegError(f"expected one protos output [1,{ih // 4},{iw // 4},{info.num_masks}], found {listed}", path)
    mapped[PROTOS] = protos[0]
    return mapped


# --------------------------------------------------------------------------------------------------
# input


def _input_maker(props: Any, info: ModelInfo, path: Path) -> Callable[[np.ndarray, Letterbox], np.ndarray]:
    """A function letterboxed BGR -> the input this model declares (NV12, RGB/BGR uint8, float RGB)."""
    kind, dtype, layout = str(props.tensor_type).upper(), np.dtype(str(props.dtype)), str(props.layout).upper()
    shape = tuple(int(d) for d in props.validShape)
    hw = shape[1:3] if layout == "NHWC" else shape[2:4]
    if len(shape) != 4 or hw != tuple(info.imgsz):
        raise EdgesegError(f"model input {list(shape)} ({layout}) does not match the sidecar's imgsz {list(info.imgsz)}", path)
    channels_last = layout == "NHWC"
    if "NV12" in kind:  # NV12 and NV12_SEPARATE: Y plane then interleaved UV, one flat buffer
        return to_nv12
    if dtype == np.uint8 and ("RGB" in kind or "BGR" in kind):
        order = slice(None) if "BGR" in kind else slice(None, None, -1)

        def image(padded: np.ndarray, lb: Letterbox) -> np.ndarray:
            pixels = padded[..., order]
            return np.ascontiguousarray((pixels if channels_last else pixels.transpose(2, 0, 1))[None])

        return image
    if dtype == np.float32:  # a featuremap input: the network's own input, RGB / 255

        def tensor(padded: np.ndarray, lb: Letterbox) -> np.ndarray:
            t = to_input_tensor(padded)
            return np.ascontiguousarray(t.transpose(0, 2, 3, 1)) if channels_last else t

        return tensor
    raise EdgesegError(f"model input type {kind} ({dtype}, {layout}) is not one edgeseg prepares "
                       "(NV12, NV12_SEPARATE, RGB/BGR uint8, float32)", path)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the backend


class HorizonBackend:
    """A compiled ``.bin`` on the RDK board's BPU. ``meta``: the sidecar JSON (default: ``find_sidecar``).

    ``prepare(padded_bgr, lb)`` makes the model's input from the letterboxed image; ``run(input)`` returns
    the outputs under edgeseg's names. Use one backend per thread (``Segmenter.workers`` does)."""

    def __init__(self, path: str | os.PathLike, meta: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgesegError("no such file" if not self.path.exists() else "is a directory, expected a .bin model", self.path)
        dnn = board_runtime(self.path)
        self.sidecar = read_sidecar(meta if meta is not None else find_sidecar(self.path))
        self.info = self.sidecar.info
        try:
            self.model = dnn.load(str(self.path))[0]
        except Exception as exc:  # the runtime's own exception types are not documented
            raise EdgesegError(f"the board runtime cannot load this model: {first_line(exc)}", self.path) from None
        if len(self.model.inputs) != 1:
            raise EdgesegError(f"expected one image input, found {len(self.model.inputs)}", self.path)
        self._make_input = _input_maker(self.model.inputs[0].properties, self.info, self.path)
        outs = [BinOutput.of(i, t, self.path) for i, t in enumerate(self.model.outputs)]
        self.outputs = map_outputs(outs, self.info, self.path)

    def prepare(self, padded_bgr: np.ndarray, lb: Letterbox) -> np.ndarray:
        return self._make_input(padded_bgr, lb)

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray | QuantizedTensor]:
        tensors = self.model.forward(inputs)
        result: dict[str, np.ndarray | QuantizedTensor] = {}
        for name, out in self.outputs.items():
            data = tensors[out.index].buffer
            if data.shape != out.shape:  # an aligned (padded) buffer: keep the valid part
                data = data.reshape(out.aligned)[tuple(slice(0, n) for n in out.shape)]
            result[name] = data if out.scale is None else QuantizedTensor(data, out.scale, _ZERO_POINT)
        return result
