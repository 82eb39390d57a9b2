"""INT8 post-training quantization of edgeseg models with ONNX Runtime (static, QDQ), integer heads, a
float-vs-INT8 similarity report and mixed precision.

Open tools, one module per step (the layout of ONNX Runtime's own quantization tool):

1. ``prepare``: the float graph at opset 13, the proto upsample rewritten as an integer-friendly Conv;
2. ``calibrate``: ranges from images read and letterboxed exactly like inference, with head and
   SiLU-input floors;
3. ``rewrite``: ``onnxruntime.quantization.quantize_static`` (QDQ: uint8 activations, int8 weights), then
   the trailing DequantizeLinear of the ``box`` and ``mc`` heads (and ``cls`` on request) removed, the
   equivalent of Horizon's ``hb_model_modifier -r``: those outputs come out as integers and their scale /
   zero point travel in the metadata keys ``edgeseg.quant.<output>``, which ``OnnxRuntimeBackend`` reads
   so that the decoder dequantizes only the rows it keeps;
4. ``search``: optional mixed precision (the most sensitive layers lifted to float);
5. ``similarity``: every quantized tensor and every output compared with the float model on held-out
   images, as JSON, a table and a plot;
6. ``quantizer``: ``quantize(model, calib, config=QuantizeConfig(...))`` orders the steps.
"""

from .calibrate import (
    BOX_LOGIT_FLOOR,
    CLS_LOGIT_FLOOR,
    DEFAULT_METHOD,
    DEFAULT_NUM,
    METHODS,
    SILU_INPUT_FLOOR,
    Calibration,
    CalibrationPlan,
    calibrate,
    head_floors,
    image_tensors,
    silu_input_floors,
)
from .prepare import QUANT_OPSET, prepare_float_model, upsample_as_conv
from .quantizer import QuantizeConfig, QuantizeResult, default_output, quantize
from .rewrite import (
    CONFIG_META,
    HEAD_KINDS,
    QUANT_META,
    CalibratedGraph,
    QuantSettings,
    finish_model,
    head_outputs,
    integer_heads,
    quantize_qdq,
)
from .search import SearchTarget, search_mixed_precision
from .sessions import session_latency_ms
from .similarity import (
    SimilarityReport,
    TensorStat,
    compare_outputs,
    compare_tensors,
    format_report,
    plot_report,
    read_similarity_report,
)

__all__ = [
    "BOX_LOGIT_FLOOR",
    "CLS_LOGIT_FLOOR",
    "CONFIG_META",
    "DEFAULT_METHOD",
    "DEFAULT_NUM",
    "HEAD_KINDS",
    "METHODS",
    "QUANT_META",
    "QUANT_OPSET",
    "SILU_INPUT_FLOOR",
    "CalibratedGraph",
    "Calibration",
    "CalibrationPlan",
    "QuantSettings",
    "QuantizeConfig",
    "QuantizeResult",
    "SearchTarget",
    "SimilarityReport",
    "TensorStat",
    "calibrate",
    "compare_outputs",
    "compare_tensors",
    "default_output",
    "finish_model",
    "format_report",
    "head_floors",
    "head_outputs",
    "image_tensors",
    "integer_heads",
    "plot_report",
    "prepare_float_model",
    "quantize",
    "quantize_qdq",
    "read_similarity_report",
    "search_mixed_precision",
    "session_latency_ms",
    "silu_input_floors",
    "upsample_as_conv",
]
