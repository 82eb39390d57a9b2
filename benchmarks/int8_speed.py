#!/usr/bin/env python3
"""Why INT8 is (or is not) 2x float on this CPU: float vs INT8 vs an INT8 ceiling, side by side, plus
where the time goes per operator type.

    python benchmarks/int8_speed.py                      # the embedded default model, coco128-seg calibration
    python benchmarks/int8_speed.py --model m.onnx --calib images/ --runs 40

Prints a markdown table (1-thread medians of interleaved runs, the same input for every model):

- float: the model as ``edgeseg export`` wrote it;
- INT8: ``edgeseg quantize`` with default settings;
- INT8 ceiling: the same graph with every SiLU (Sigmoid + Mul) deleted, quantized the same way. It is a
  wrong model, timed only: it shows what the integer convolutions alone cost, i.e. the best ratio any
  SiLU implementation could reach with this CPU's integer kernels;

then ONNX Runtime's per-operator-type kernel times for float and INT8 (one profiled run after warm-up),
and the CPU's int8 dot-product instructions (VNNI / ARM dotprod), which decide how fast integer
convolutions can be. Nothing here is a test; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def without_silu(model):
    """A copy of ``model`` where every SiLU (x * Sigmoid(x)) is replaced by x (timing only)."""
    import onnx

    from edgeseg.onnxgraph import consumers, producers

    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    outputs = {o.name for o in graph.output}
    by_output = producers(graph)
    readers = consumers(graph)
    drop = []
    for mul in list(graph.node):
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        sig = next((by_output[i] for i in mul.input if i in by_output and by_output[i].op_type == "Sigmoid"), None)
        if sig is None or sig.input[0] not in mul.input or mul.output[0] in outputs:
            continue
        x = sig.input[0]
        for c in readers[mul.output[0]]:
            for k, name in enumerate(c.input):
                if name == mul.output[0]:
                    c.input[k] = x
        drop += [mul, sig]
    for n in drop:
        graph.node.remove(n)
    return m


def op_profile(path: str | bytes, tensor: np.ndarray, warmup: int = 3) -> dict[str, float]:
    """ms per operator type over one profiled 1-thread run (after ``warmup`` runs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(warmup + 1):
            sess.run(None, {name: tensor})
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_run: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_run[e["args"]["op_name"]] += e["dur"] / 1e3
    return {k: v / (warmup + 1) for k, v in sorted(per_run.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    from edgeseg.backends import read_model_info
    from edgeseg.machine import int8_dot_instructions
    from edgeseg.onnxgraph import load_model
    from edgeseg.predict import DEFAULT_MODEL
    from edgeseg.quantize import (
        QuantizeConfig,
        image_tensors,
        prepare_float_model,
        quantize,
        session_latency_ms,
        upsample_as_conv,
    )
    from edgeseg.sources import image_directory

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="float edgeseg model (default: the embedded one)")
    p.add_argument(
        "--calib",
        type=Path,
        default=REPO.parent / "shared" / "datasets" / "coco128-seg" / "images" / "train2017",
        help="calibration images (default ../shared coco128-seg)",
    )
    p.add_argument("--runs", type=int, default=25, help="interleaved timed runs per model (default 25)")
    args = p.parse_args(argv)

    import onnx
    from onnx import shape_inference
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    info = read_model_info(args.model)
    tensors = [t for _, t in image_tensors(image_directory(args.calib, "calibration"), info.imgsz, 4, [])]
    tensor = tensors[0]
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-speed-") as tmp:
        work = Path(tmp)
        int8 = work / "int8.onnx"
        print(f"quantizing {args.model.name} on {args.calib} ...", file=sys.stderr)
        quantize(args.model, args.calib, output=int8, config=QuantizeConfig(report_images=0))

        # the ceiling: same rewrite and quantization settings, SiLUs gone, ranges from a few images
        float13 = prepare_float_model(load_model(args.model, external_data=True), args.model)
        upsample_as_conv(float13)
        ceiling_float = work / "no-silu-float.onnx"
        onnx.save(without_silu(shape_inference.infer_shapes(float13)), str(ceiling_float))

        class Few(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = [{"images": t} for t in tensors]

            def get_next(self):
                return self.items.pop() if self.items else None

        ceiling = work / "no-silu-int8.onnx"
        logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer advises pre-processing on the root logger
        quantize_static(
            str(ceiling_float),
            str(ceiling),
            Few(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )

        models = {"float": args.model, "INT8 (edgeseg quantize)": int8, "INT8 ceiling: SiLUs deleted (timing only)": ceiling}
        print(f"timing {len(models)} models, {args.runs} interleaved runs each, 1 thread ...", file=sys.stderr)
        ms = session_latency_ms({k: str(v) for k, v in models.items()}, tensor, runs=args.runs)
        profiles = {"float": op_profile(str(args.model), tensor), "INT8": op_profile(str(int8), tensor)}

    dot = int8_dot_instructions()
    print(f"CPU int8 dot-product instructions: {', '.join(dot) if dot else 'none' if dot is not None else 'unknown'}\n")
    print("| model | 1-thread median | vs float |\n| --- | ---: | ---: |")
    for name, v in ms.items():
        print(f"| {name} | {v:.1f} ms | {ms['float'] / v:.2f}x |")
    for name, prof in profiles.items():
        total = sum(prof.values())
        print(f"\n{name}: kernel time per operator type (one profiled run, {total:.1f} ms in all)\n")
        print("| operator | ms | share |\n| --- | ---: | ---: |")
        for op, v in list(prof.items())[:12]:
            print(f"| {op} | {v:.2f} | {100 * v / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
