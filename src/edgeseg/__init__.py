"""edgeseg: YOLO instance segmentation for edge accelerators.

Split-head export, INT8 with integer heads, and a decoder that only touches the cells that survive.
"""

from importlib.metadata import PackageNotFoundError, version

from .backends import Backend, BoardOptions, ModelInfo, OnnxRuntimeBackend, QuantizedTensor, open_backend, read_model_info
from .decode import DecodeOptions, decode
from .draw import draw_detections
from .engines import Predictor
from .engines.command import PredictOutputs, StreamOptions, predict_sources
from .engines.threads import FrameStream, StreamFrame, StreamRunner, StreamStats
from .errors import EdgesegError
from .predict import DEFAULT_MODEL, Segmenter
from .preprocess import Nv12Frame
from .reference import reference_decode
from .results import Detections
from .sources import Source, SourceItem, open_sources

try:
    __version__ = version("edgeseg")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "BoardOptions",
    "DecodeOptions",
    "Detections",
    "EdgesegError",
    "FrameStream",
    "ModelInfo",
    "Nv12Frame",
    "OnnxRuntimeBackend",
    "PredictOutputs",
    "Predictor",
    "QuantizedTensor",
    "Segmenter",
    "Source",
    "SourceItem",
    "StreamFrame",
    "StreamOptions",
    "StreamRunner",
    "StreamStats",
    "__version__",
    "decode",
    "draw_detections",
    "export_onnx",
    "open_backend",
    "open_sources",
    "predict_sources",
    "read_model_info",
    "reference_decode",
]


def __getattr__(name: str):
    # export needs torch/Ultralytics (an optional extra): import it only when asked for.
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(name)
