"""Backends run the network and return the split-head outputs by name.

``open_backend(path)`` picks one from the model file: ``.onnx`` -> ONNX Runtime. A new runtime (e.g.
the RDK board's ``pyeasy_dnn`` for a compiled ``.bin``) is a module here that implements ``Backend``
and a suffix entry in ``open_backend``; nothing downstream (decode, masks, results) changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EdgesegError
from .base import PROTOS, Backend, ModelInfo, QuantizedTensor, output_name, quantization_metadata, read_model_info
from .ort import OnnxRuntimeBackend

__all__ = [
    "PROTOS",
    "Backend",
    "ModelInfo",
    "OnnxRuntimeBackend",
    "QuantizedTensor",
    "open_backend",
    "output_name",
    "quantization_metadata",
    "read_model_info",
]


def open_backend(
    path: str | os.PathLike, *, threads: int = 0, providers: list[str] | None = None
) -> Backend:
    """The backend for a model file, chosen by its format. ``threads``: intra-op threads (0: the runtime's default)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_file() and suffix in (".pt", ".pth"):
        raise EdgesegError(f"is a PyTorch checkpoint, not an edgeseg model; export it first: edgeseg export {p}", p)
    if p.is_file() and suffix == ".bin":
        raise EdgesegError("is a Horizon .bin model: it runs on the RDK board only, through its board runtime", p)
    # Anything else is read as ONNX, which names missing files, directories and junk in one line.
    return OnnxRuntimeBackend(p, providers=providers, intra_op_threads=threads)
