"""The stand-in's ``.bin`` format: a magic line, a JSON line saying what the "compiler" made of the model
(input type and layout, the outputs in their order with new names and data types, alignment padding),
then the ONNX bytes. Tests write it; ``pyeasy_dnn.load`` reads it.

The default outputs are the seed's: its order (mc, box, cls per stride, then protos), its numeric names, box
and mc int32 (``hb_model_modifier -r`` applied), cls and protos float32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MAGIC = b"FAKE-HBM edgeseg-test-stand-in/1\n"
SEED_OUTPUTS = (
    ("mc_stride8", "output0", "int32"), ("mc_stride16", "output1", "int32"), ("mc_stride32", "371", "int32"),
    ("box_stride8", "379", "int32"), ("box_stride16", "387", "int32"), ("box_stride32", "395", "int32"),
    ("cls_stride8", "403", "float32"), ("cls_stride16", "411", "float32"), ("cls_stride32", "419", "float32"),
    ("protos", "347", "float32"),
)  # fmt: skip


def write_fake_bin(
    onnx_path: str | os.PathLike,
    bin_path: str | os.PathLike,
    *,
    input_type: str = "NV12",
    input_layout: str = "NCHW",
    outputs: tuple[tuple[str, str, str], ...] = SEED_OUTPUTS,
    align: int = 0,
) -> Path:
    """``outputs``: (ONNX output, name in the .bin, dtype) in the .bin's order; dtype float32, int32 (box/mc
    with their Dequantize removed: per-channel scales, zero point 0) or int16 (scales too). ``align``: pad
    every output's last axis to a multiple of it (alignedShape != validShape)."""
    header = {"input_type": input_type, "input_layout": input_layout, "outputs": [list(o) for o in outputs], "align": align}
    data = MAGIC + json.dumps(header).encode() + b"\n" + Path(onnx_path).read_bytes()
    Path(bin_path).write_bytes(data)
    return Path(bin_path)


def read_fake_bin(path: str | os.PathLike) -> tuple[dict, bytes]:
    """(header, ONNX bytes); ValueError for anything else (the real runtime fails on a non-.bin too)."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a model file this runtime can load")
    header, _, onnx_bytes = data[len(MAGIC) :].partition(b"\n")
    return json.loads(header), onnx_bytes
