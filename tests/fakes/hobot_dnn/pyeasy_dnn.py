"""Stand-in for ``hobot_dnn.pyeasy_dnn`` that behaves as its C source does (D-Robotics/x5-hobot-spdev
``src/python/dnn_python.cpp``), not as its documentation describes it:

- ``TensorProperties`` getters: ``tensor_type`` is ``TensorType[tensorType]`` (one table of 19 strings);
  ``dtype`` the same table, but "uint8" for the six image types (``tensorproperties_get_dtype``); ``layout``
  "NHWC"/"NCHW"/"NONE", else "UNKNOWN" (``tensorproperties_get_layout``); ``shape`` a tuple of the valid shape
  (``tensorproperties_get_shape``); ``validShape`` and ``alignedShape`` a Python int: a malloc'd struct pointer
  returned through ``PyLong_FromVoidPtr`` (``tensorproperties_get_validshape`` / ``_alignedshape``), a new one
  at every read; ``scale_data`` a float32 array of ``scaleLen`` (empty when there is no scale); no zero point
  and no quantize axis.
- ``.buffer`` (``PyDNNTensor_get_buffer`` -> ``buffer_2_numpy``): a new 4-D array of the valid shape, copied
  from the START of the output's aligned memory (``memcpy(size * type_size)``: when aligned != valid the rows
  come out shifted), as int8/int16/int32/float32; any other type comes back as int8 of the valid element count.
  It reads the model's output memory when accessed, so a later ``forward`` changes what an old tensor returns.
- ``forward(arg, core_id=0, priority=0)`` (``Model_forward``): a numpy array is copied as ``numpy_size`` BYTES
  where ``numpy_size`` is its element count (a float32 array loses 3/4 of its bytes) from its data pointer
  (a non-contiguous view is read in memory order); a list or tuple has each item force-cast to uint8 first;
  anything else is no input at all. For an RGB input the caller's own array is changed in place: every byte
  becomes ``clamp(byte - 128, 0, 255)`` (the X5 comment in ``forward``). A failing forward sets a RuntimeError
  and returns None, which CPython turns into a SystemError; ``load`` of a bad file does the same.
- ``load(path or [paths])`` -> list of models (``Dnnpy_load``); a model has ``name``, ``inputs``, ``outputs``,
  ``estimate_latency`` and ``forward``.
"""

from __future__ import annotations

import ctypes

import numpy as np
from fake_bpu import LAYOUTS, TYPES, CompiledModel, TensorSpec

_LAYOUT_NAMES = {v: k for k, v in LAYOUTS.items()}
_KEEP_ALIVE: list = []  # the real getters leak their mallocs; keep ours alive so the ints stay valid pointers
_BUFFER_TYPES = {8: np.int8, 11: np.int16, 14: np.int32, 13: np.float32}  # buffer_2_pyarray's switch


class _ShapeStruct(ctypes.Structure):
    _fields_ = [("dimensionSize", ctypes.c_int32 * 8), ("numDimensions", ctypes.c_int32)]


def _pointer(shape: tuple[int, ...]) -> int:
    struct = _ShapeStruct()
    struct.numDimensions = len(shape)
    for i, d in enumerate(shape):
        struct.dimensionSize[i] = d
    _KEEP_ALIVE.append(struct)
    return ctypes.addressof(struct)


def _failed(what: str) -> SystemError:
    """What C code that sets an error and returns None looks like from Python: a SystemError caused by the error
    it set."""
    try:
        cause = RuntimeError(f"{what} execution failed.")
        raise SystemError(f"<built-in method {what}> returned a result with an exception set") from cause
    except SystemError as err:
        return err


class TensorProperties:
    __slots__ = ("_spec",)

    def __init__(self, spec: TensorSpec) -> None:
        self._spec = spec

    @property
    def tensor_type(self) -> str:
        return TYPES[self._spec.tensor_type]

    @property
    def dtype(self) -> str:
        return "uint8" if self._spec.tensor_type < 6 else TYPES[self._spec.tensor_type]

    @property
    def layout(self) -> str:
        return _LAYOUT_NAMES.get(self._spec.layout, "UNKNOWN")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._spec.valid)

    @property
    def validShape(self) -> int:  # noqa: N802 - the runtime's name
        return _pointer(self._spec.valid)

    @property
    def alignedShape(self) -> int:  # noqa: N802
        return _pointer(self._spec.aligned)

    @property
    def scale_data(self) -> np.ndarray:
        return np.array(self._spec.scale, np.float32)


class pyDNNTensor:  # noqa: N801 - the runtime's name
    __slots__ = ("name", "_spec", "_memory")

    def __init__(self, name: str, spec: TensorSpec, memory: np.ndarray) -> None:
        self.name, self._spec, self._memory = name, spec, memory

    @property
    def properties(self) -> TensorProperties:
        return TensorProperties(self._spec)

    @property
    def buffer(self) -> np.ndarray:
        dtype = np.dtype(_BUFFER_TYPES.get(self._spec.tensor_type, np.int8))
        valid = self._spec.valid
        count = int(np.prod(valid))
        return self._memory[: count * dtype.itemsize].view(dtype).reshape(valid).copy()


def _as_input_bytes(arg) -> list[np.ndarray]:
    """What ``Model_forward`` hands to ``forward``: (pointer, size) pairs, as byte arrays."""
    if isinstance(arg, np.ndarray):
        raw = arg.ravel(order="K").view(np.uint8) if arg.size else np.zeros(0, np.uint8)
        return [raw[: arg.size]]  # numpy_size counts elements; memcpy copies that many bytes
    if isinstance(arg, (list, tuple)):
        out = []
        for item in arg:
            if not isinstance(item, np.ndarray):
                raise TypeError("Each element in arg_obj must be a NumPy array.")
            out.append(np.asarray(item).astype(np.uint8).reshape(-1))  # PyArray_FROM_OTF(NPY_UBYTE, FORCECAST)
        return out
    print("arg_obj is NOT a container.")
    return []


class Model:
    """One loaded .bin."""

    def __init__(self, path: str) -> None:
        self._compiled = CompiledModel(path)
        self.name = self._compiled.name
        self.estimate_latency = 100

    @property
    def inputs(self) -> list[pyDNNTensor]:
        c = self._compiled
        return [pyDNNTensor(c.input.name, c.input, c.input_memory)]

    @property
    def outputs(self) -> list[pyDNNTensor]:
        return [pyDNNTensor(h.spec.name, h.spec, h.memory) for h in self._compiled.heads]

    def forward(self, arg, core_id: int = 0, priority: int = 0) -> list[pyDNNTensor]:
        if not isinstance(core_id, int) or not isinstance(priority, int):
            raise TypeError("Failed to parse arguments.")
        c = self._compiled
        inputs = _as_input_bytes(arg)
        if len(inputs) > 1 or any(d.size == 0 for d in inputs):
            err = _failed("forward")
            raise err from err.__cause__
        if inputs:
            data = inputs[0]
            if c.input.tensor_type == TYPES.index("RGB"):
                shifted = np.clip(data.astype(np.int32) - 128, 0, 255).astype(np.uint8)
                if isinstance(arg, np.ndarray) and arg.flags.c_contiguous and arg.dtype == np.uint8:
                    arg.reshape(-1)[: data.size] = shifted  # in place, in the caller's array
                data = shifted
            n = min(data.size, c.input_memory.size)
            c.input_memory[:n] = data[:n]
        c.infer()
        return self.outputs


def load(model_file):
    files = [model_file] if isinstance(model_file, str) else model_file
    if not isinstance(files, list):
        raise TypeError("model_file must be a string or a list")
    models = []
    for f in files:
        if not isinstance(f, str):
            raise TypeError("model_file must be a string or a list of strings")
        try:
            models.append(Model(f))
        except (OSError, ValueError):
            err = _failed("load")
            raise err from err.__cause__
    return models
