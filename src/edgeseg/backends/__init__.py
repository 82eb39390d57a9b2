"""Backends run the network and return the split-head outputs by name.

``open_backend(path)`` picks one from the model file: ``.onnx`` -> ONNX Runtime, ``.bin`` -> the RDK board's
runtime (``hbm_runtime`` from RDK OS 3.5, else ``pyeasy_dnn``; ``board.py``). A new runtime is a module here that
implements ``Backend`` and a suffix entry in ``open_backend`` (and in ``read_model_info``); nothing downstream
(decode, masks, results) changes.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from ..errors import EdgesegError, first_line
from . import base
from .base import PROTOS, Backend, ModelInfo, QuantizedTensor, output_name, quantization_metadata
from .board import BoardOptions, Sidecar, find_sidecar, read_bin_info, read_sidecar
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


PYEASY_PACKAGES = ("hobot_dnn", "hobot_dnn_rdkx5")  # the board image's, then the PyPI wheel's (edgeseg[rdk])


def import_hbm_runtime() -> tuple[ModuleType | None, str]:
    """``hbm_runtime`` or None, and why not: its package raises RuntimeError (not ImportError) when the board's
    libdnn.so is missing (python/hbm_runtime/__init__.py, ``_check_system_libs``)."""
    try:
        return importlib.import_module("hbm_runtime"), ""
    except (ImportError, OSError, RuntimeError) as exc:
        return None, first_line(exc)


def import_pyeasy_dnn() -> tuple[ModuleType | None, str]:
    """``pyeasy_dnn`` from the board image's ``hobot_dnn`` or the wheel's ``hobot_dnn_rdkx5``, or None and why not."""
    reasons = []
    for package in PYEASY_PACKAGES:
        try:
            return importlib.import_module(f"{package}.pyeasy_dnn"), ""
        except (ImportError, OSError, AttributeError) as exc:  # the wheel installs anywhere but loads only on the board
            reasons.append(f"{package}: {exc}")
    return None, "; ".join(reasons)


NO_RUNTIME = (
    "is a Horizon .bin model: it runs on an RDK board, and the board runtime cannot be imported here "
    '(hbm_runtime comes with RDK OS >= 3.5, hobot_dnn with the board image; or pip install "edgeseg[rdk]" '
    "on the board for hobot-dnn-rdkx5)"
)


def open_board_backend(path: str | os.PathLike, *, options: BoardOptions | None = None, meta: str | os.PathLike | None = None):
    """The backend for a ``.bin``: ``HbmRuntimeBackend`` or ``PyeasyDnnBackend`` as ``options.runtime`` says."""
    options = options or BoardOptions()
    p = Path(path)
    if not p.is_file():
        raise EdgesegError("no such file" if not p.exists() else "is a directory, expected a .bin model", p)
    if options.runtime in ("auto", "hbm"):
        hbm, why = import_hbm_runtime()
        if hbm is not None:
            return HbmRuntimeBackend(p, runtime=hbm, options=options, meta=meta)
        if options.runtime == "hbm":
            raise EdgesegError(f"--runtime hbm: hbm_runtime cannot be imported here ({why})", p)
    dnn, why = import_pyeasy_dnn()
    if dnn is None:
        raise EdgesegError(NO_RUNTIME if options.runtime == "auto" else f"--runtime pyeasy: pyeasy_dnn cannot be imported here ({why})", p)
    return PyeasyDnnBackend(p, runtime=dnn, options=options, meta=meta)


def _is_bin(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".bin"


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """The ModelInfo of a model file: an ONNX's metadata or, for a Horizon ``.bin``, its sidecar's."""
    p = Path(path)
    return read_bin_info(p) if _is_bin(p) else base.read_onnx_model_info(p)


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
