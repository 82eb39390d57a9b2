"""ONNX Runtime backend: one inference session over an edgeseg ONNX model (float or INT8)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EdgesegError, first_line
from .base import QuantizedTensor, quantization_metadata, read_onnx_model_info


class OnnxRuntimeBackend:
    """ONNX Runtime session over an edgeseg model. ``intra_op_threads=0`` lets ORT choose.

    An ORT session may be shared between threads (``InferenceSession.run`` is thread-safe)."""

    def __init__(
        self,
        path: str | os.PathLike,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.info = read_onnx_model_info(self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgesegError(f"ONNX Runtime cannot load this model: {first_line(exc)}", self.path) from None
        names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in self.info.output_names if n not in names]
        if missing:
            raise EdgesegError(f"model lacks the split-head outputs {missing}", self.path)
        self.input_name = self.session.get_inputs()[0].name
        self._output_names = self.info.output_names
        meta = self.session.get_modelmeta().custom_metadata_map
        self._quant = quantization_metadata(meta)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray | QuantizedTensor]:
        values = self.session.run(self._output_names, {self.input_name: tensor})
        out: dict[str, np.ndarray | QuantizedTensor] = {}
        for name, value in zip(self._output_names, values):
            if name in self._quant and np.issubdtype(value.dtype, np.integer):
                scale, zp = self._quant[name]
                out[name] = QuantizedTensor(value, np.asarray(scale), np.asarray(zp))
            else:
                out[name] = value
        return out
