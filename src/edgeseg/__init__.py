"""edgeseg: YOLOv8/YOLO11 instance segmentation for edge accelerators.

Split-head export, INT8 with integer heads, and a decoder that only touches the cells that survive.
"""

from .backends import ModelInfo, OnnxRuntimeBackend, QuantizedTensor, open_backend, read_model_info
from .batch import PredictOutputs, StreamOptions, predict_sources
from .decode import DecodeOptions, decode
from .errors import EdgesegError
from .predict import DEFAULT_MODEL, Segmenter
from .reference import reference_decode
from .results import Detections

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "DecodeOptions",
    "Detections",
    "EdgesegError",
    "ModelInfo",
    "OnnxRuntimeBackend",
    "QuantizedTensor",
    "PredictOutputs",
    "Segmenter",
    "StreamOptions",
    "decode",
    "open_backend",
    "predict_sources",
    "read_model_info",
    "reference_decode",
    "export_onnx",
]


def __getattr__(name: str):
    # export needs torch/Ultralytics (an optional extra): import it only when asked for.
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(name)
