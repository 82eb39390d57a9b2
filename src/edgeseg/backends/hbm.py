"""A Horizon BPU ``.bin`` through ``hbm_runtime`` (preinstalled from RDK OS 3.5.0; ``HB_HBMRuntime``), written
against its source (D-Robotics/x5-hobot-spdev ``hbm_runtime/src/HBMRuntimeBinding.cc`` and
``HB_HBMRuntime.cc``):

- properties are dicts keyed by model name; dtypes are ``hbDNNDataType`` members (read by ``.name``); quantization
  is ``QuantParams`` with ``scale``, ``zero_point`` and ``axis`` (used as reported: ``QuantizedTensor`` with those
  zero points); outputs come back raw, as views of the valid shape over the aligned memory (strides), never copied
  here: the decoder gathers rows from the views.
- ``run`` is not re-entrant per runtime object ("run() already in use"): one backend per thread.
- inputs must have the exact numpy dtype; NV12 takes one flat uint8 array; RGB/BGR/Y/YUV444 inputs have no numpy
  format in this runtime (``HbDNNTypeToNumpyFormat``), so such a .bin runs through pyeasy_dnn instead.
- ``set_scheduling_params(priority=, bpu_cores=)`` is set when asked; the X5 binding's ``InferSingleModel`` does
  not hand it to the BPU (as read in the source), so on the X5 it is a request, not a guarantee.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from ..errors import EdgesegError, first_line
from .base import QuantizedTensor
from .board import BoardBackend, BoardOptions, OutputDescription, describe_output, input_form, map_outputs

# hbDNNDataType names -> numpy names (the image types keep their own names).
_TYPE_NAMES = {
    "S8": "int8",
    "U8": "uint8",
    "F16": "float16",
    "S16": "int16",
    "U16": "uint16",
    "F32": "float32",
    "S32": "int32",
    "U32": "uint32",
    "F64": "float64",
    "S64": "int64",
    "U64": "uint64",
}
_RUNS_ON_HBM = ("NV12", "float32")


def _type_name(dtype) -> str:
    name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    return _TYPE_NAMES.get(name, name)


def _layouts(shapes: dict[str, tuple[int, ...]], axes: dict[str, int | None], info) -> str:
    """NHWC or NCHW for the model's outputs: hbm_runtime reports no layout, and hb_mapper compiles every output in
    one (``--output-layout``). Read from the quantization axis of per-channel outputs, else from outputs whose
    dims match one of the model's grids one way only (a [1,80,80,80] class output at 640 matches both);
    NHWC, hb_mapper's default, when nothing tells."""
    ih, iw = info.imgsz
    grids = {(ih // s, iw // s) for s in (*info.strides, 4)}
    votes = set()
    for name, shape in shapes.items():
        if axes.get(name) in (1, 3):
            votes.add("NCHW" if axes[name] == 1 else "NHWC")
        elif len(shape) == 4:
            nhwc, nchw = tuple(shape[1:3]) in grids, tuple(shape[2:4]) in grids
            if nhwc != nchw:
                votes.add("NHWC" if nhwc else "NCHW")
    return votes.pop() if len(votes) == 1 else "NHWC"


class HbmRuntimeBackend(BoardBackend):
    """A compiled ``.bin`` on the BPU through ``hbm_runtime``. Same contract as ``PyeasyDnnBackend``."""

    runtime_name = "hbm_runtime"

    def __init__(
        self, path: str | os.PathLike, *, runtime: ModuleType, options: BoardOptions | None = None, meta: str | os.PathLike | None = None
    ) -> None:
        super().__init__(path, options=options, meta=meta)
        try:
            self.runtime = runtime.HB_HBMRuntime(str(self.path))
        except Exception as exc:
            raise EdgesegError(f"hbm_runtime cannot load this model: {first_line(exc)}", self.path) from None
        models = list(self.runtime.model_names)
        if len(models) != 1:
            raise EdgesegError(f"expected one model in the file, found {len(models)} ({', '.join(models)})", self.path)
        self.model_name = name = models[0]
        inputs = self.runtime.input_names[name]
        if len(inputs) != 1:
            raise EdgesegError(f"expected one image input, found {len(inputs)}", self.path)
        self.input_name = inputs[0]
        kind = _type_name(self.runtime.input_dtypes[name][self.input_name])
        shape = tuple(self.runtime.input_shapes[name][self.input_name])
        layout = "NHWC" if shape[-1] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
        self.input = input_form(kind, "uint8" if kind in ("NV12", "RGB", "BGR") else kind, layout, shape, self.info, self.path)
        if self.input.kind not in _RUNS_ON_HBM:
            raise EdgesegError(
                f"the model's input is {self.input.kind}, which hbm_runtime cannot take (it has no numpy type "
                "for it): run it with --runtime pyeasy, or compile for NV12 (edgeseg horizon's default)",
                self.path,
            )
        quants, dtypes = self.runtime.output_quants[name], self.runtime.output_dtypes[name]
        out_names = list(self.runtime.output_names[name])
        shapes = {n: tuple(int(v) for v in self.runtime.output_shapes[name][n]) for n in out_names}
        axes = {n: int(quants[n].axis) if np.asarray(quants[n].scale).size > 1 else None for n in out_names}
        layout = _layouts(shapes, axes, self.info)
        outs = []
        for n in out_names:
            q = quants[n]
            d = OutputDescription(n, n, _type_name(dtypes[n]), layout, shapes[n], np.asarray(q.scale), np.asarray(q.zero_point), axes[n])
            outs.append(describe_output(d, self.path))
        self.outputs = map_outputs(outs, self.info, self.path)
        sched = {}
        if self.options.priority is not None:
            sched["priority"] = {name: self.options.priority}
        if self.options.bpu_core is not None:
            sched["bpu_cores"] = {name: [self.options.bpu_core]}
        if sched:
            try:
                self.runtime.set_scheduling_params(**sched)
            except Exception as exc:
                raise EdgesegError(f"hbm_runtime refused the scheduling options: {first_line(exc)}", self.path) from None

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray | QuantizedTensor]:
        try:
            result = self.runtime.run(inputs)[self.model_name]
        except Exception as exc:
            raise EdgesegError(f"hbm_runtime run failed: {first_line(exc)}", self.path) from None
        return {name: out.value(result[out.key]) for name, out in self.outputs.items()}
