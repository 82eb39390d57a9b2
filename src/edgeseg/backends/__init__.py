"""Backends run the network and return the split-head outputs by name.

``open_backend(path)`` picks one from the model file: ``.onnx`` -> ONNX Runtime, ``.bin`` -> the RDK board's
runtime (``hbm_runtime`` from RDK OS 3.5, else ``pyeasy_dnn``; ``board.py``). A new runtime is a module here that
implements ``Backend`` and a suffix entry in ``open_backend`` (and in ``read_model_info``); nothing downstream
(decode, masks, results) changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EdgesegError
from . import base
from .base import PROTOS, Backend, ModelInfo, QuantizedTensor, output_name, quantization_metadata
from .board import BoardOptions, Sidecar, find_sidecar, open_board_backend, read_bin_info, read_sidecar
from .hbm import HbmRuntimeBackend
from .ort import OnnxRuntimeBackend
from .pyeasy import PyeasyDnnBackend

__all__ = [
    "PROTOS",
    "Backend",
    "BoardOptions",
    "HbmRuntimeBackend",
    "ModelInfo",
    "OnnxRuntimeBackend",
    "PyeasyDnnBackend",
    "QuantizedTensor",
    "Sidecar",
    "find_sidecar",
    "open_backend",
    "open_board_backend",
    "output_name",
    "quantization_metadata",
    "read_model_info",
    "read_sidecar",
]


def _is_bin(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".bin"


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """The ModelInfo of a model file: an ONNX's metadata or, for a Horizon ``.bin``, its sidecar's."""
    p = Path(path)
    return read_bin_info(p) if _is_bin(p) else base.read_model_info(p)


def open_backend(
    path: str | os.PathLike, *, threads: int = 0, providers: list[str] | None = None, board: BoardOptions | None = None
) -> Backend:
    """The backend for a model file, chosen by its format. ``threads``: intra-op threads (0: the runtime's
    default); a ``.bin`` runs on the BPU (``board``: runtime, BPU core, priority), where ``threads`` and
    ``providers`` do not apply."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_file() and suffix in (".pt", ".pth"):
        raise EdgesegError(f"is a PyTorch checkpoint, not an edgeseg model; export it first: edgeseg export {p}", p)
    if _is_bin(p):
        return open_board_backend(p, options=board)
    # Anything else is read as ONNX, which names missing files, directories and junk in one line.
    return OnnxRuntimeBackend(p, providers=providers, intra_op_threads=threads)
