"""What a benchmarked model is: parameter count, INT8 or not, file size (read from the ONNX graph)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..onnxgraph import is_quantized, load_model, parameter_count


@dataclass(frozen=True)
class ModelStats:
    params: int
    int8: bool
    size_mb: float


def onnx_model_stats(path: str | os.PathLike) -> ModelStats:
    """Parameter count from the ONNX initializers and whether the model is INT8 (``is_quantized``).

    Quantization scales/zero points and integer shape constants are not parameters."""
    if Path(path).suffix.lower() == ".bin":  # a compiled Horizon model: integer by construction; no ONNX graph to count
        from ..backends.board import find_sidecar, read_sidecar

        params = read_sidecar(find_sidecar(path)).params  # its float ONNX's count, written by `edgeseg horizon`
        return ModelStats(params=params, int8=True, size_mb=round(Path(path).stat().st_size / 1e6, 2))
    model = load_model(path)
    return ModelStats(params=parameter_count(model), int8=is_quantized(model), size_mb=round(Path(path).stat().st_size / 1e6, 2))
