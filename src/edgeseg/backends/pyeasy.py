"""A Horizon BPU ``.bin`` through ``pyeasy_dnn`` (RDK OS 3.x; ``hobot_dnn`` / ``hobot_dnn_rdkx5``), written against
what its C source does (D-Robotics/x5-hobot-spdev ``src/python/dnn_python.cpp``), not against its docs:

- ``properties.shape`` is the valid shape; ``validShape``/``alignedShape`` are opaque ints (a struct pointer),
  never read. ``tensor_type``/``dtype``/``layout`` are strings; ``scale_data`` is the only quantization it
  reports (no zero point: 0, as ``hb_model_modifier -r`` leaves box/mc).
- ``.buffer`` is a copy of the valid shape taken from the start of the aligned memory, correct for int8, int16,
  int32 and float32 outputs whose aligned shape equals the valid one (the common case; ``hbm_runtime`` reads
  padded outputs right, through strides).
- ``forward`` copies as many BYTES as the array has elements: a float32 input is handed over as its bytes
  (a uint8 view), never as floats or in a list (which it force-casts to uint8). For an RGB input it subtracts
  128 in place, in the caller's array, clamping at 0: edgeseg hands it a fresh copy every call, and says once
  that such a model loses channel values below 128 (NV12, `edgeseg horizon`'s default, has no such step).
- ``load`` and ``forward`` fail as SystemError (an error set, None returned): caught and reported in one line.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

import numpy as np

from ..errors import EdgesegError, first_line
from .base import QuantizedTensor
from .board import BoardBackend, BoardOptions, OutputDescription, describe_output, input_form, map_outputs

# hbBPUCore as forward's core_id takes it: 0 = any core, else one bit per core.
_ANY_CORE = 0

RGB_WARNING = (
    "pyeasy_dnn subtracts 128 from RGB inputs and clamps at 0 (dnn_python.cpp, forward): channel values "
    "below 128 reach the BPU as 128; compile for NV12 (edgeseg horizon's default) to avoid it"
)


class PyeasyDnnBackend(BoardBackend):
    """A compiled ``.bin`` on the BPU through ``pyeasy_dnn``. ``meta``: the sidecar (default: ``find_sidecar``).

    ``prepare(padded_bgr, lb)`` / ``prepare_nv12(padded_nv12, lb)`` make the model's input; ``run(input)``
    returns the outputs under edgeseg's names. One backend per thread: ``forward`` writes the model's single
    input and output memory (``Segmenter.workers`` makes one per worker)."""

    runtime_name = "pyeasy_dnn"

    def __init__(
        self, path: str | os.PathLike, *, runtime: ModuleType, options: BoardOptions | None = None, meta: str | os.PathLike | None = None
    ) -> None:
        super().__init__(path, options=options, meta=meta)
        try:
            models = runtime.load(str(self.path))
        except Exception as exc:  # SystemError wrapping the runtime's RuntimeError
            raise EdgesegError(f"pyeasy_dnn cannot load this model: {first_line(exc.__cause__ or exc)}", self.path) from None
        if not models:
            raise EdgesegError("pyeasy_dnn loaded no model from this file", self.path)
        self.model = models[0]
        inputs = self.model.inputs
        if len(inputs) != 1:
            raise EdgesegError(f"expected one image input, found {len(inputs)}", self.path)
        props = inputs[0].properties
        self.input = input_form(str(props.tensor_type), str(props.dtype), str(props.layout), tuple(props.shape), self.info, self.path)
        if self.input.kind == "RGB":
            print(f"warning: {self.path}: {RGB_WARNING}", file=sys.stderr)
        outs = []
        for i, tensor in enumerate(self.model.outputs):
            p = tensor.properties
            shape = tuple(int(v) for v in p.shape)
            d = OutputDescription(i, str(tensor.name), str(p.dtype), str(p.layout), shape, np.asarray(p.scale_data))
            outs.append(describe_output(d, self.path))
        self.outputs = map_outputs(outs, self.info, self.path)
        core = self.options.bpu_core
        self._forward_args = {"core_id": _ANY_CORE if core is None else 1 << core, "priority": self.options.priority or 0}

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray | QuantizedTensor]:
        if self.input.kind == "float32":
            inputs = np.ascontiguousarray(inputs, np.float32).reshape(-1).view(np.uint8)  # bytes: forward counts elements
        elif self.input.kind == "RGB":
            inputs = np.array(inputs, np.uint8, order="C", copy=True)  # forward rewrites it in place
        else:
            inputs = np.ascontiguousarray(inputs)  # forward reads the data pointer as if contiguous
        try:
            tensors = self.model.forward(inputs, **self._forward_args)
        except Exception as exc:
            raise EdgesegError(f"pyeasy_dnn forward failed: {first_line(exc.__cause__ or exc)}", self.path) from None
        # .buffer copies the model's output memory when read: read them all now, before another forward.
        return {name: out.value(tensors[out.key].buffer) for name, out in self.outputs.items()}
