"""Several quantization settings of one model from one calibration: the side-by-side comparisons of
``cross_validation.py`` (which layers to keep in float, the stem, 7- or 8-bit weights) without
calibrating again for each (calibration is most of the time ``quantize`` takes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.quantize.quantizer import QuantizeConfig, build_int8, calibrate_model, check_config_nodes, load_quantizable
from edgeseg.sources import image_directory


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
    with that config (the same ``build_int8`` on the same calibration), without the similarity report,
    latency or search.

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
    # one graph for all, the upsample rewritten: node names are checked against it, so a config naming the
    # original ConvTranspose fails here instead of quantizing differently from ``quantize``
    float_model = load_quantizable(src, QuantizeConfig())
    for c in configs.values():
        check_config_nodes(float_model.graph13, c, src)
    files = image_directory(calib, "calibration")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-quant-") as tmp:
        work = Path(tmp)
        calibrated = calibrate_model(float_model, files, first, workdir=work, show_progress=show_progress)
        for name, config in configs.items():
            path = out / f"{name}.onnx"
            build_int8(calibrated, config, qdq_path=work / f"{name}.qdq.onnx", out=path)
            written[name] = path
    return written
