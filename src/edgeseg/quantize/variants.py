"""Several quantization settings of one model from one calibration: the side-by-side comparisons of
``benchmarks/cross_validation.py`` (which layers to keep in float, the stem, 7- or 8-bit weights) without
calibrating again for each (calibration is most of the time ``quantize`` takes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import EdgesegError
from ..fileio import write_bytes_atomic
from ..onnxgraph import metadata, save_model
from ..sources import image_directory
from .calibrate import calibrate
from .quantizer import (
    QuantizeConfig,
    calibration_plan,
    check_config_nodes,
    float_stem_nodes,
    load_float_model,
    quantizable_graph,
    quantization_record,
)
from .rewrite import CalibratedGraph, finish_model, quantize_qdq
from .sessions import check_loads


def quantize_variants(
    model: str | os.PathLike,
    calib: str | os.PathLike,
    *,
    configs: Mapping[str, QuantizeConfig],
    out_dir: str | os.PathLike,
    show_progress: bool = False,
) -> dict[str, Path]:
    """Quantize ``model`` once per named config, all from one calibration on the images of ``calib``;
    writes ``out_dir/<name>.onnx`` for each and returns the paths. Each model is what ``quantize`` makes
    with that config (same graph, same metadata), without the similarity report, latency or search.

    The configs must agree on what the calibration depends on (``num``, ``method``) and may not ask for
    a mixed-precision search (``target_cosine``)."""
    if not configs:
        raise EdgesegError("no quantization settings given")
    first = next(iter(configs.values()))
    bad = [n for n in configs if not n or Path(n).name != n or n in (".", "..")]
    if bad:
        raise EdgesegError(f"settings name {bad[0]!r} cannot be a file name (it names <name>.onnx in out_dir)")
    for name, c in configs.items():
        if (c.num, c.method) != (first.num, first.method):
            raise EdgesegError(
                f"settings {name!r}: num/method differ from the others ({c.num}/{c.method} vs "
                f"{first.num}/{first.method}); one calibration serves all"
            )
        if c.target_cosine is not None:
            raise EdgesegError(f"settings {name!r}: a mixed-precision search (target_cosine) needs quantize()")
    src = Path(model)
    info, float_model = load_float_model(src)
    # one graph for all, the upsample rewritten: node names are checked against it, so a config naming the
    # original ConvTranspose fails here instead of quantizing differently from ``quantize``
    model13, rewritten = quantizable_graph(float_model, src, QuantizeConfig())
    for c in configs.values():
        check_config_nodes(model13, c, src)
    files = image_directory(calib, "calibration")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    float_meta = metadata(float_model)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-quant-") as tmp:
        work = Path(tmp)
        model13_path = save_model(model13, work / "float13.onnx")
        cal = calibrate(model13_path, files, calibration_plan(model13, info, first), workdir=work, show_progress=show_progress)
        graph = CalibratedGraph(model13, model13_path, cal.cache, first.method)
        for name, config in configs.items():
            stem = float_stem_nodes(model13, config)
            settings = config.settings(stem=stem)
            qdq_path = work / f"{name}.qdq.onnx"
            quantize_qdq(graph, settings, qdq_path)
            record = quantization_record(config, settings=settings, stem=stem, images=len(cal.used), rewritten=rewritten)
            final = finish_model(qdq_path, float_meta=float_meta, info=info, settings=settings, ranges=cal.ranges, config=record)
            data = final.SerializeToString()
            path = out / f"{name}.onnx"
            check_loads(data, path)
            written[name] = write_bytes_atomic(path, data)
    return written
