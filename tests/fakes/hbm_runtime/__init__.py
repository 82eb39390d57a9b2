"""Stand-in for the X5's ``hbm_runtime`` (RDK OS >= 3.5.0) that behaves as its source does: the pybind11
binding D-Robotics/x5-hobot-spdev ``hbm_runtime/src/HBMRuntimeBinding.cc`` over ``hbm_runtime/src/
HB_HBMRuntime.cc``, and the package's ``__init__.py`` (python/hbm_runtime):

- importing the package raises RuntimeError when ``libdnn.so`` cannot be loaded (``_check_system_libs``), unless
  HBM_RUNTIME_SKIP_CHECK=1; this stand-in does so when EDGESEG_FAKE_HBM_MISSING_LIBS=1.
- ``HB_HBMRuntime(model_file)``: RuntimeError when the file does not exist or its name does not end in ``bin``
  (the single-file constructor; the message still says .hbm).
- properties are dicts keyed by model name (``model_names`` a list): ``input_names``/``output_names`` lists;
  ``*_shapes`` the valid shape as a list; ``*_dtypes`` ``hbDNNDataType`` members; ``*_quants`` ``QuantParams``
  (``quant_type`` NONE|SCALE, ``axis`` = quantizeAxis, ``scale`` float32 and ``zero_point`` int32 arrays);
  ``*_strides`` byte strides (``LoadInputInfo``/``LoadOutputInfo``).
- ``run(array | {input: array} | {model: {input: array}}, **kwargs)``: kwargs other than ``model_name`` raise
  RuntimeError("Unsupported type in kwargs: ...") (``convert_kwargs``); not re-entrant ("run() already in use");
  the input dtype must be the one ``HbDNNTypeToNumpyFormat`` gives (uint8 for NV12; RGB, BGR, Y, YUV444 and
  NV12_SEPARATE have none: ValueError "Unsupported hbDNNDataType"); inputs other than NV12 must match the
  shape exactly; min(aligned size, nbytes) bytes are copied (``PrepareInputTensorData``). Outputs are numpy
  arrays of the valid shape with the aligned buffer's byte strides, over fresh memory (a view, no copy:
  ``MakeNumpyArrayWithCapsule``), raw: never dequantized.
- ``set_scheduling_params(priority=, bpu_cores=, custom_id=, device_id=)`` validates (model names, 0..255,
  cores 0..3) and stores into ``sched_params``; the X5 ``InferSingleModel`` does not pass them to the BPU.
"""

from __future__ import annotations

import enum
import os
import threading
from dataclasses import dataclass, field

import numpy as np
from fake_bpu import TYPES, CompiledModel, TensorSpec

if os.environ.get("EDGESEG_FAKE_HBM_MISSING_LIBS") == "1" and os.environ.get("HBM_RUNTIME_SKIP_CHECK", "0") != "1":
    raise RuntimeError("Missing Horizon runtime libraries (provided by the 'hobot-dnn' package):\n  - libdnn.so (Horizon DNN library)")

hbDNNDataType = enum.IntEnum(  # noqa: N816 - the runtime's names
    "hbDNNDataType",
    {
        name: i
        for i, name in enumerate(
            [
                "Y",
                "NV12",
                "NV12_SEPARATE",
                "YUV444",
                "RGB",
                "BGR",
                "S4",
                "U4",
                "S8",
                "U8",
                "F16",
                "S16",
                "U16",
                "F32",
                "S32",
                "U32",
                "F64",
                "S64",
                "U64",
                "MAX",
            ]
        )
    },
)


class hbDNNQuantiType(enum.IntEnum):  # noqa: N801
    NONE = 0
    SCALE = 2


_NUMPY_FORMAT = {1: "B", 8: "b", 9: "B", 10: "e", 11: "h", 12: "H", 13: "f", 14: "i", 15: "I", 16: "d", 17: "l", 18: "L"}


@dataclass(frozen=True)
class QuantParams:
    quant_type: hbDNNQuantiType
    axis: int
    scale: np.ndarray
    zero_point: np.ndarray


@dataclass
class SchedParam:
    priority: int = 0
    customId: int = 0  # noqa: N815
    bpu_cores: list = field(default_factory=lambda: [-1])
    deviceId: int = 0  # noqa: N815


def _quant(spec: TensorSpec) -> QuantParams:
    kind = hbDNNQuantiType.SCALE if spec.scale.size else hbDNNQuantiType.NONE
    return QuantParams(kind, spec.axis, np.array(spec.scale, np.float32), np.array(spec.zero_point, np.int32))


def _numpy_format(type_index: int) -> str:
    if type_index not in _NUMPY_FORMAT:
        raise ValueError("Unsupported hbDNNDataType")
    return _NUMPY_FORMAT[type_index]


class HB_HBMRuntime:  # noqa: N801
    def __init__(self, model_file: str) -> None:
        if not os.path.exists(model_file):
            raise RuntimeError(f"The input hbm model {model_file} does not exist.")
        if model_file.rsplit(".", 1)[-1] != "bin":
            raise RuntimeError("Invalid model file extension. Only .hbm supported.")
        try:
            self._model = CompiledModel(model_file)
        except (OSError, ValueError):
            raise RuntimeError(f"hbDNN initialize from {model_file} file failed.") from None
        self._name = self._model.name
        self._running = threading.Lock()
        self._sched = {self._name: SchedParam()}

    version = "3.5.0-stand-in"

    def _by_model(self, value):
        return {self._name: value}

    model_names = property(lambda self: [self._name])
    model_count = property(lambda self: 1)
    input_counts = property(lambda self: self._by_model(1))
    output_counts = property(lambda self: self._by_model(len(self._model.heads)))
    input_names = property(lambda self: self._by_model([self._model.input.name]))
    output_names = property(lambda self: self._by_model([s.name for s in self._model.outputs]))
    input_shapes = property(lambda self: self._by_model({self._model.input.name: list(self._model.input.valid)}))
    output_shapes = property(lambda self: self._by_model({s.name: list(s.valid) for s in self._model.outputs}))
    input_dtypes = property(lambda self: self._by_model({self._model.input.name: hbDNNDataType(self._model.input.tensor_type)}))
    output_dtypes = property(lambda self: self._by_model({s.name: hbDNNDataType(s.tensor_type) for s in self._model.outputs}))
    input_quants = property(lambda self: self._by_model({self._model.input.name: _quant(self._model.input)}))
    output_quants = property(lambda self: self._by_model({s.name: _quant(s) for s in self._model.outputs}))
    input_strides = property(lambda self: self._by_model({self._model.input.name: list(self._model.input.stride)}))
    output_strides = property(lambda self: self._by_model({s.name: list(s.stride) for s in self._model.outputs}))
    sched_params = property(lambda self: dict(self._sched))

    def set_scheduling_params(self, priority=None, bpu_cores=None, custom_id=None, device_id=None) -> None:
        for mapping in (priority, bpu_cores, custom_id, device_id):
            for name in mapping or {}:
                if name != self._name:
                    raise RuntimeError(f'Invalid model name in scheduling setting: "{name}". This model is not in the loaded model list.')
        for name, value in (priority or {}).items():
            if not 0 <= value <= 255:
                raise RuntimeError(f'Priority value for model "{name}" is out of valid range [0, 255]: {value}')
            self._sched[name].priority = value
        for name, cores in (bpu_cores or {}).items():
            bad = [c for c in cores if not 0 <= c <= 3]
            if bad:
                raise RuntimeError(f'Invalid BPU core ID for model "{name}": {bad[0]} (valid range: [0, 3])')
            self._sched[name].bpu_cores = list(cores)

    def run(self, inputs, **kwargs):
        for key, value in kwargs.items():
            if key != "model_name":
                raise RuntimeError("Unsupported type in kwargs: " + key)
            if not isinstance(value, str):
                raise RuntimeError('"model_name" must be a str')
            if value != self._name:
                raise RuntimeError(f"Provided model_name '{value}' is not in the loaded model list.")
        if isinstance(inputs, np.ndarray):
            inputs = {self._model.input.name: inputs}
        elif isinstance(inputs, dict) and inputs and all(isinstance(v, dict) for v in inputs.values()):
            if list(inputs) != [self._name]:
                raise RuntimeError(f'Model name "{next(iter(inputs))}" is not in the registered model_names.')
            inputs = inputs[self._name]
        if not self._running.acquire(blocking=False):
            raise RuntimeError("run() already in use")
        try:
            return {self._name: self._infer(inputs)}
        finally:
            self._running.release()

    def _infer(self, inputs: dict) -> dict:
        spec, m = self._model.input, self._model
        if set(inputs) - {spec.name}:
            raise RuntimeError(f'Input name "{next(iter(set(inputs) - {spec.name}))}" is invalid for model "{self._name}".')
        array = np.ascontiguousarray(inputs[spec.name])
        expected = _numpy_format(spec.tensor_type)
        if array.dtype.char != expected:
            raise RuntimeError(
                f"Data type mismatch for input tensor '{spec.name}' in model '{self._name}': expected numpy "
                f"dtype format '{expected}', but received '{array.dtype.char}'"
            )
        if spec.tensor_type != TYPES.index("NV12") and tuple(array.shape) != tuple(spec.valid):
            raise RuntimeError(f"Mismatch in tensor dimensions for model: {self._name}, input: {spec.name}")
        raw = array.reshape(-1).view(np.uint8)
        n = min(raw.size, m.input_memory.size)
        m.input_memory[:n] = raw[:n]
        m.infer()
        out = {}
        for head in m.heads:
            s = head.spec
            memory = head.memory.copy()  # the capsule owns fresh memory per run
            out[s.name] = np.lib.stride_tricks.as_strided(memory.view(np.dtype(_numpy_format(s.tensor_type))), s.valid, s.stride)
        return out
