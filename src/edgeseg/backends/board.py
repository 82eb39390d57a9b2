"""What every RDK board runtime shares: the sidecar (``<model>.edgeseg.json``: the class names and geometry a
``.bin`` lacks), the outputs mapped to edgeseg's names by shape (output names are whatever the ONNX had), integer
outputs as ``QuantizedTensor``s (the decoder dequantizes only the rows it keeps), NCHW outputs as NHWC views, the
input made in the form the model declares, and ``BoardOptions`` (which runtime, BPU core, priority). The runtimes
are ``hbm.py`` and ``pyeasy.py``; ``open_board_backend`` (the package's ``__init__``) chooses between them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgesegError
from ..fileio import read_json
from ..preprocess import Letterbox, nv12_to_bgr, to_input_tensor, to_nv12
from .base import BOX, CLS, HEAD_KINDS, MC, PROTOS, ModelInfo, QuantizedTensor, output_name

SIDECAR_SUFFIX = ".edgeseg.json"
SIDECAR_FORMAT = "edgeseg-horizon-sidecar/1"
NV12_RANGE = "bt601_video"  # OpenCV's I420/NV12 conversion is BT.601 video range (Y 16..235)


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
            "input": {
                "shape": [1, 3, ih, iw],
                "layout_train": "NCHW",
                "type_train": "rgb",
                "type_rt": self.input_type_rt,
                "space_and_range": NV12_RANGE if self.input_type_rt == "nv12" else None,
            },
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
        raise EdgesegError(
            f"no sidecar *{SIDECAR_SUFFIX} beside this .bin: copy the one `edgeseg horizon` wrote into "
            f"{p.parent} (it holds the class names a .bin lacks)",
            p,
        )
    named = [s for s in found if p.name.startswith(s.name[: -len(SIDECAR_SUFFIX)])]
    longest = max((len(s.name) for s in named), default=0)
    best = [s for s in named if len(s.name) == longest]
    if len(best) != 1:
        raise EdgesegError(
            f"{len(found)} sidecars beside this .bin and none is named after it: keep one of {', '.join(s.name for s in found)}", p
        )
    return best[0]


def read_bin_info(bin_path: str | os.PathLike) -> ModelInfo:
    """The ModelInfo of a .bin, from its sidecar (no board runtime needed)."""
    return read_sidecar(find_sidecar(bin_path)).info


# --------------------------------------------------------------------------------------------------
# outputs

# Output types whose values edgeseg reads: what pyeasy_dnn's ``.buffer`` returns intact (int8, int16, int32,
# float32; other types come back as int8 bytes) and hbm_runtime's arrays for the same.
OUTPUT_TYPES = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "float32": np.float32}


@dataclass(frozen=True)
class BoardOutput:
    """One output of the .bin as loaded: how the runtime finds it (``key``: position or name), its name, its
    valid shape as NHWC, whether the runtime hands it over NCHW, and its quantization (``scale`` None for a
    float output; ``zero_point`` 0 where the runtime reports none)."""

    key: int | str
    name: str
    shape: tuple[int, ...]
    nchw: bool
    scale: np.ndarray | None
    zero_point: np.ndarray

    def __str__(self) -> str:
        return f"{self.name}{list(self.shape)}"

    def value(self, data: np.ndarray) -> np.ndarray | QuantizedTensor:
        """The runtime's array for this output as the decoder takes it: NHWC (a view), integers quantized."""
        nhwc = data.transpose(0, 2, 3, 1) if self.nchw else data
        return nhwc if self.scale is None else QuantizedTensor(nhwc, self.scale, self.zero_point)


@dataclass(frozen=True)
class OutputDescription:
    """What a runtime says of one output, in its own terms, before edgeseg checks it (``describe_output``)."""

    key: int | str
    name: str
    dtype: str  # numpy name: int8, int16, int32, float32, ...
    layout: str  # NHWC, NCHW, ...
    shape: tuple[int, ...]
    scale: np.ndarray
    zero_point: np.ndarray | None = None
    axis: int | None = None


def describe_output(d: OutputDescription, path: Path) -> BoardOutput:
    """A checked ``BoardOutput``, or a one-line error: a batch other than 1, a layout other than NHWC/NCHW, a
    type whose values cannot be read, an integer output without scales, scales that do not fit the channels."""
    if len(d.shape) != 4:
        raise EdgesegError(f"output {d.name!r} has shape {list(d.shape)}: expected 4-D NHWC or NCHW", path)
    if d.shape[0] != 1:
        raise EdgesegError(f"output {d.name!r} has batch {d.shape[0]}: edgeseg runs batch-1 models (compile with batch 1)", path)
    if d.layout not in ("NHWC", "NCHW"):
        raise EdgesegError(f"output {d.name!r} has layout {d.layout}: expected NHWC or NCHW", path)
    if d.dtype not in OUTPUT_TYPES:
        raise EdgesegError(f"output {d.name!r} is {d.dtype}: edgeseg reads int8, int16, int32 and float32 outputs", path)
    nchw = d.layout == "NCHW"
    n, a, b, c = d.shape
    shape = (n, b, c, a) if nchw else d.shape
    channels, channel_axis = shape[3], 1 if nchw else 3
    scale = np.asarray(d.scale, np.float32).reshape(-1)
    if d.dtype == "float32":
        return BoardOutput(d.key, d.name, shape, nchw, None, np.int32(0))
    if scale.size == 0:
        raise EdgesegError(f"output {d.name!r} is {d.dtype} without a scale: it cannot be dequantized", path)
    if scale.size not in (1, channels):
        raise EdgesegError(f"output {d.name!r} has {scale.size} scales for {channels} channels", path)
    if scale.size > 1 and d.axis is not None and d.axis != channel_axis:
        raise EdgesegError(f"output {d.name!r} is quantized along axis {d.axis}, not its channels", path)
    zp = np.zeros(0, np.int32) if d.zero_point is None else np.asarray(d.zero_point, np.int32).reshape(-1)
    if zp.size not in (0, 1, scale.size):
        raise EdgesegError(f"output {d.name!r} has {zp.size} zero points for {scale.size} scales", path)
    zero_point = np.int32(0) if zp.size == 0 or not zp.any() else (np.int32(zp[0]) if zp.size == 1 else zp)
    return BoardOutput(d.key, d.name, shape, nchw, np.float32(scale[0]) if scale.size == 1 else scale, zero_point)


def _assignments(outs: Sequence[BoardOutput], channels: dict[str, int]) -> list[dict[str, BoardOutput]]:
    """Every way to read three of ``outs`` as cls, box and mc that fits their channel counts."""
    found = []
    for trio in itertools.permutations(outs, 3):
        if all(o.shape[3] == channels[k] for k, o in zip(HEAD_KINDS, trio)):
            found.append(dict(zip(HEAD_KINDS, trio)))
    return found


def _narrow(options: list[dict[str, BoardOutput]]) -> list[dict[str, BoardOutput]]:
    """Tie-breaks when channel counts are ambiguous (64 or 32 classes): edgeseg names first, then
    ``hb_model_modifier``'s mark (box and mc integer with scales, cls float); a tie-break that rules out
    every option is not applied."""
    hints = (
        lambda k, o: output_kind(o.name) in (None, k),
        lambda k, o: (o.scale is None) == (k == CLS),
    )
    for fits in hints:
        kept = [a for a in options if all(fits(k, o) for k, o in a.items())]
        options = kept or options
    return options


def map_outputs(outs: Sequence[BoardOutput], info: ModelInfo, path: str | os.PathLike) -> dict[str, BoardOutput]:
    """edgeseg output name -> the .bin output that is it, by shape ([1,H,W,C] NHWC as in the ONNX) and
    class count; one-line errors for a model that is not a split-head seg model or has another class count."""
    ih, iw = info.imgsz
    channels = {CLS: info.num_classes, BOX: 4 * info.reg_max, MC: info.num_masks}
    listed = ", ".join(str(o) for o in outs) or "none"
    mapped: dict[str, BoardOutput] = {}
    protos = [o for o in outs if o.shape[1:] == (ih // 4, iw // 4, info.num_masks)]
    for s in info.strides:
        at_grid = [o for o in outs if o.shape[1:3] == (ih // s, iw // s)]
        options = _narrow(_assignments(at_grid, channels))
        if len(options) > 1:
            raise EdgesegError(
                f"cannot tell the stride-{s} heads apart by shape ({', '.join(map(str, at_grid))}); "
                "name the ONNX outputs as `edgeseg export` does",
                path,
            )
        if not options:
            box_mc = [o for o in at_grid if o.shape[3] in (channels[BOX], channels[MC])]
            others = sorted({o.shape[3] for o in at_grid} - {channels[BOX], channels[MC]})
            if len(box_mc) == 2 and protos and len(others) == 1:
                raise EdgesegError(
                    f"the sidecar has {info.num_classes} class names but the model's class outputs have "
                    f"{others[0]} channels (wrong sidecar?)",
                    path,
                )
            raise EdgesegError(
                f"not a split-head segmentation model for {ih}x{iw}: expected per stride {list(info.strides)} cls "
                f"[1,H,W,{channels[CLS]}], box [1,H,W,{channels[BOX]}] and mc [1,H,W,{channels[MC]}], and protos "
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


@dataclass(frozen=True)
class InputForm:
    """The input a .bin declares, and how edgeseg makes it: from the letterboxed BGR image (``from_bgr``) and
    from the letterboxed NV12 frame (``from_nv12``: NV12 models take it as it is, with no conversion)."""

    kind: str  # NV12, RGB, BGR or float32
    from_bgr: Callable[[np.ndarray, Letterbox], np.ndarray]
    from_nv12: Callable[[np.ndarray, Letterbox], np.ndarray]


def input_form(kind: str, dtype: str, layout: str, shape: Sequence[int], info: ModelInfo, path: Path) -> InputForm:
    """The ``InputForm`` of a model input (``kind`` the runtime's image type or tensor type name), or one line."""
    kind, layout, shape = kind.upper(), layout.upper(), tuple(int(d) for d in shape)
    if len(shape) != 4 or shape[0] != 1:
        raise EdgesegError(f"model input {list(shape)} ({layout}): edgeseg runs batch-1 image models", path)
    hw = shape[1:3] if layout == "NHWC" else shape[2:4]
    if hw != tuple(info.imgsz):
        raise EdgesegError(f"model input {list(shape)} ({layout}) does not match the sidecar's imgsz {list(info.imgsz)}", path)
    channels_last = layout == "NHWC"

    def from_nv12_via_bgr(padded: np.ndarray, lb: Letterbox) -> np.ndarray:
        return form.from_bgr(nv12_to_bgr(padded, info.imgsz), lb)

    if kind in ("NV12", "NV12_SEPARATE"):  # Y plane then interleaved UV, one flat buffer
        form = InputForm("NV12", to_nv12, lambda padded, lb: padded)
    elif kind in ("RGB", "BGR") and dtype == "uint8":
        order = slice(None) if kind == "BGR" else slice(None, None, -1)

        def image(padded: np.ndarray, lb: Letterbox) -> np.ndarray:
            pixels = padded[..., order]
            return np.ascontiguousarray((pixels if channels_last else pixels.transpose(2, 0, 1))[None])

        form = InputForm(kind, image, from_nv12_via_bgr)
    elif kind in ("FLOAT32", "F32") or dtype == "float32":  # a featuremap input: the network's own input, RGB / 255

        def tensor(padded: np.ndarray, lb: Letterbox) -> np.ndarray:
            t = to_input_tensor(padded)
            return np.ascontiguousarray(t.transpose(0, 2, 3, 1)) if channels_last else t

        form = InputForm("float32", tensor, from_nv12_via_bgr)
    else:
        raise EdgesegError(
            f"model input type {kind} ({dtype}, {layout}) is not one edgeseg prepares (NV12, NV12_SEPARATE, RGB/BGR uint8, float32)", path
        )
    return form


# --------------------------------------------------------------------------------------------------
# the backends' common part


class BoardBackend:
    """What both board backends share: the .bin's path, its options, its sidecar (``meta``; default:
    ``find_sidecar``), and the input made in the form the model declares (``self.input``, set by the runtime's
    backend) from the letterboxed BGR image (``prepare``) or NV12 frame (``prepare_nv12``). One per thread."""

    input: InputForm

    def __init__(self, path: str | os.PathLike, *, options: BoardOptions | None = None, meta: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.options = options or BoardOptions()
        self.sidecar = read_sidecar(meta if meta is not None else find_sidecar(self.path))
        self.info = self.sidecar.info

    def prepare(self, padded_bgr: np.ndarray, lb: Letterbox) -> np.ndarray:
        return self.input.from_bgr(padded_bgr, lb)

    def prepare_nv12(self, padded_nv12: np.ndarray, lb: Letterbox) -> np.ndarray:
        return self.input.from_nv12(padded_nv12, lb)


# --------------------------------------------------------------------------------------------------
# choosing the runtime

RUNTIMES = ("auto", "hbm", "pyeasy")


@dataclass(frozen=True)
class BoardOptions:
    """How a .bin runs: ``runtime`` (auto: hbm_runtime where it imports, else pyeasy_dnn), ``bpu_core`` (None:
    any core) and ``priority`` (0..255, None: the runtime's default), passed to the runtime that has them."""

    runtime: str = "auto"
    bpu_core: int | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise EdgesegError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.bpu_core is not None and not 0 <= self.bpu_core <= 3:
            raise EdgesegError(f"bpu core must be 0..3, got {self.bpu_core}")
        if self.priority is not None and not 0 <= self.priority <= 255:
            raise EdgesegError(f"priority must be 0..255, got {self.priority}")
