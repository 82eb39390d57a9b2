"""The commands that make and measure models: val, bench, report, quantize, horizon."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import EdgesegError
from .options import (
    add_board_options,
    add_calibration_options,
    add_decode_options,
    add_ray_options,
    add_threads_option,
    board_options,
    decode_options,
    positive_int,
    positive_multiple_of_32,
    print_failures,
    ray_config_of,
    thread_list,
    unit_interval,
)


def register(sub) -> dict:
    """Add the parsers of this module's commands; their handlers by name."""
    p = sub.add_parser("val", help="box and mask mAP (COCO evaluator) of one or more models, side by side")
    p.add_argument("models", nargs="+", help="edgeseg .onnx models (float, INT8, ...); the first is the retention baseline")
    p.add_argument("--data", required=True, help="dataset .yaml (YOLO labels), images/labels directory, or COCO .json")
    p.add_argument("--images", default=None, help="image directory of a COCO .json (default: found beside it)")
    p.add_argument("--imgsz", type=positive_multiple_of_32, nargs="+", default=None, help="check: the models' input size")
    add_decode_options(p, conf=0.001, filters=False)
    p.add_argument("--single-label", action="store_true", help="one class per cell, as predict (default: multi-label like Ultralytics val)")
    add_threads_option(p)
    add_ray_options(p)
    p.add_argument("--save-json", default=None, metavar="FILE", help="metrics JSON here; COCO results beside it")
    p.add_argument("--verbose", action="store_true", help="per-class mAP")

    p = sub.add_parser(
        "bench", help="per-stage latency, throughput vs threads, fast vs reference vs Ultralytics decode, video frames/s (--video)"
    )
    p.add_argument("models", nargs="+", help="edgeseg .onnx models (float or INT8), or Horizon .bin models on the RDK board")
    p.add_argument("--images", nargs="+", default=None, help="image files, directories or globs (default: the embedded sample)")
    p.add_argument("--max-images", type=int, default=0, help="use at most this many images (0 = all)")
    p.add_argument("--threads", type=thread_list, default=[1, 2], help="thread counts for throughput, e.g. 1,2,4")
    p.add_argument("--warmup", type=int, default=3, help="untimed images before each measurement (default 3)")
    p.add_argument("--iters", type=positive_int, default=1, help="timed passes over the images and the --video clip (default 1)")
    p.add_argument("--compare-repeats", type=positive_int, default=3, help="decoder-compare runs per image (default 3)")
    p.add_argument("--no-ultralytics", action="store_true", help="skip Ultralytics' post-processing in the compare")
    p.add_argument(
        "--video",
        default=None,
        metavar="CLIP",
        help="also time this video file (--iters passes): sequential loop vs stream runner vs bare inference",
    )
    p.add_argument(
        "--stream-workers",
        type=thread_list,
        default=[1, 2, 4],
        metavar="N,N",
        help="runner workers (and bare inference threads) for --video (default 1,2,4)",
    )
    add_decode_options(p, filters=False)
    add_board_options(p, inputs=False)
    p.add_argument("--json", default=None, help="write the results JSON here")

    p = sub.add_parser("report", help="Markdown performance table with footnotes and PNG plots")
    p.add_argument("--bench", required=True, help="JSON from `edgeseg bench --json`")
    p.add_argument("--val", default=None, help="JSON from `edgeseg val` (accuracy columns)")
    p.add_argument("--quant", default=None, help="quantize report JSON (per-layer similarity plot)")
    p.add_argument("-o", "--out", required=True, help="output directory (report.md and PNGs)")
    p.add_argument("--title", default="Performance", help="report heading")
    p.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="TEXT",
        help="a note of your own under the table (targets, caveats about the data); repeatable",
    )

    p = sub.add_parser("quantize", help="float .onnx -> INT8 .onnx (ONNX Runtime static QDQ) with integer box/mc heads")
    add_calibration_options(p, "use")
    p.add_argument(
        "--method",
        choices=["minmax", "entropy", "percentile"],
        default="percentile",
        help="activation range calibration (default percentile; head outputs keep their full range)",
    )
    p.add_argument(
        "--per-channel", action=argparse.BooleanOptionalAction, default=True, help="per-output-channel weight scales (default on)"
    )
    p.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="7-bit weights: avoids uint8 x int8 saturation on x86 CPUs without VNNI (default on)",
    )
    p.add_argument("--keep-float", nargs="+", action="extend", default=[], metavar="NODE", help="nodes left in float")
    p.add_argument(
        "--float-stem",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the conv that reads the image (and its SiLU) in float: closer to float, no slower, no better held-out mAP (default off)",
    )
    p.add_argument("--int16", nargs="+", action="extend", default=[], metavar="NODE", help="nodes whose outputs are quantized to 16 bits")
    p.add_argument("--int-cls", action="store_true", help="make the cls outputs integer too")
    p.add_argument(
        "--target-cosine",
        type=unit_interval("target cosine"),
        default=None,
        metavar="X",
        help="lift the most sensitive layers to float until every head output reaches this cosine",
    )
    p.add_argument(
        "--holdout",
        default=None,
        metavar="DIR",
        help="images for the similarity report (default: images of --calib after the calibration ones)",
    )
    p.add_argument("--report-images", type=int, default=8, metavar="N", help="held-out images in the report (0: no report)")
    p.add_argument(
        "--bench",
        type=int,
        default=20,
        metavar="RUNS",
        help="1-thread latency runs of float / INT8 (/ mixed), medians (default 20, 0: skip)",
    )
    p.add_argument("-o", "--output", default=None, help="output .onnx (default: MODEL-int8.onnx beside the model)")

    p = sub.add_parser(
        "horizon", help="hb_mapper yaml, calibration data, hb_model_modifier command, sidecar and run_on_board.md for RDK boards"
    )
    add_calibration_options(p, "write")
    p.add_argument(
        "--march",
        choices=["bayes-e", "bernoulli2"],
        default="bayes-e",
        help="BPU architecture: bayes-e (RDK X5, default) or bernoulli2 (RDK X3)",
    )
    p.add_argument("--input-type", choices=["nv12", "rgb"], default="nv12", help="board-side input format (default nv12)")
    p.add_argument(
        "--int16-stem",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the conv that reads the image and its SiLU in int16 on the BPU (node_info), what "
        "`edgeseg quantize --float-stem` does on CPU (default off)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    return {"val": _cmd_val, "bench": _cmd_bench, "report": _cmd_report, "quantize": _cmd_quantize, "horizon": _cmd_horizon}


def _cmd_val(args) -> int:
    from ..evaluate import ValConfig, evaluate_models, format_metrics_table, format_per_class, save_results

    # Ultralytics' validator keeps detections whose mask is empty (they count for boxes); its predictor drops them.
    decode = decode_options(args, multi_label=not args.single_label, keep_empty_masks=True)
    config = ValConfig(decode=decode, threads=args.threads, imgsz=args.imgsz)
    ray_config = ray_config_of(args, local_only={"--threads": args.threads})
    on_ray = {}  # evaluate predicts in this process unless told otherwise
    if ray_config is not None:
        from ..evaluate.on_ray import RayPredictions

        on_ray = {"predict": RayPredictions(ray_config)}
    ds, results = evaluate_models(args.models, args.data, config=config, images=args.images, show_progress=sys.stderr.isatty(), **on_ray)
    for w in ds.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    print_failures(list(dict.fromkeys(s for r in results for s in r.skipped)))
    print(f"{ds.name}: {results[0].images} image(s), {ds.num_instances} instance(s); {results[0].evaluator}")
    for r in results if args.verbose else ():
        print(f"\n{r.model}\n{format_per_class(r)}")
    print(("\n" if args.verbose else "") + format_metrics_table(results))
    if args.save_json:
        metrics, preds = save_results(results, args.save_json)
        print(f"metrics JSON {metrics}; COCO results {', '.join(str(p) for p in preds)}")
    return 0


def _cmd_bench(args) -> int:
    from ..bench import BenchConfig, StreamBenchConfig, bench_summary, run_bench
    from ..predict import SAMPLE_IMAGE

    if args.warmup < 0 or args.max_images < 0:
        raise EdgesegError("--warmup and --max-images must be >= 0")
    stream = StreamBenchConfig(clip=args.video, workers=args.stream_workers) if args.video else None
    config = BenchConfig(
        models=args.models,
        sources=args.images or [SAMPLE_IMAGE],
        threads=args.threads,
        warmup=args.warmup,
        iters=args.iters,
        max_images=args.max_images,
        compare_repeats=args.compare_repeats,
        options=decode_options(args),
        ultralytics=not args.no_ultralytics,
        stream=stream,
        board=board_options(args),
    )
    result = run_bench(config, json_path=args.json, show_progress=sys.stderr.isatty())
    print(bench_summary(result))
    if args.json:
        print(f"results in {args.json}")
    return 0


def _cmd_report(args) -> int:
    from ..report import build_report

    path = build_report(args.bench, args.out, val_path=args.val, quant_path=args.quant, title=args.title, notes=args.note)
    print(f"report in {path} (plots beside it)")
    return 0


def _cmd_quantize(args) -> int:
    import warnings

    from ..quantize import QuantizeConfig, format_report, quantize

    t0 = time.perf_counter()
    config = QuantizeConfig(
        num=args.num,
        method=args.method,
        per_channel=args.per_channel,
        reduce_range=args.reduce_range,
        keep_float=args.keep_float,
        int16=args.int16,
        int_cls=args.int_cls,
        target_cosine=args.target_cosine,
        holdout=args.holdout,
        report_images=args.report_images,
        bench_runs=max(args.bench, 0),
        float_stem=args.float_stem,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # printed below, once, as edgeseg warnings
        r = quantize(args.model, args.calib, config=config, output=args.output, show_progress=sys.stderr.isatty())
    print_failures(r.skipped)
    for w in r.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    print(f"calibrated on {len(r.calibration_images)} image(s) ({r.method}); integer outputs: {', '.join(r.integer_outputs)}")
    if r.float_stem:
        print(
            f"kept in float (--float-stem): the input stem ({', '.join(r.float_stem)}): closer to float (mask outputs' "
            "cosine, mask IoU) at no latency cost, though no better held-out mAP in cross-validation (docs/quantize.md)"
        )
    elif args.float_stem:
        print("--float-stem: no Conv reads the image directly, nothing kept in float")
    else:
        print(
            "every layer INT8, the input stem too: the setting with the best held-out mAP in cross-validation "
            "(docs/quantize.md); --float-stem keeps the stem float (closer to float, no slower, no better mAP)"
        )
    if r.keep_float or r.int16:
        print(f"mixed precision: {len(r.keep_float)} node(s) float, {len(r.int16)} node(s) int16")
    if r.report is not None:
        print(format_report(r.report))
        print("similarity report: " + ", ".join(str(f) for f in (r.report_json, r.report_png) if f))
    if r.latency_ms:
        base = r.latency_ms["float"]
        print(
            f"1-thread ONNX Runtime latency (median of {args.bench} runs): "
            + ", ".join(f"{k} {v:.1f} ms ({base / v:.2f}x)" for k, v in r.latency_ms.items())
        )
        from ..machine import int8_dot_instructions, int8_speed_note

        note = int8_speed_note(base / r.latency_ms["int8"], int8_dot_instructions())
        if note:
            print(f"note: {note}")
    print(f"wrote {r.output} ({r.output.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s")
    return 0


def _cmd_horizon(args) -> int:
    from ..hbmapper import HorizonConfig, horizon_artefacts

    config = HorizonConfig(march=args.march, num=args.num, input_type_rt=args.input_type, int16_stem=args.int16_stem)
    r = horizon_artefacts(args.model, args.calib, args.output, config=config, show_progress=sys.stderr.isatty())
    print_failures(r.skipped)
    for w in r.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    print(f"wrote {r.yaml}, {len(r.calibration_files)} calibration file(s) in {r.calibration_dir}, {r.script}")
    print(f"after `hb_mapper makertbin --model-type onnx --config {r.yaml.name}` (run in {r.out_dir}):")
    print(r.modifier_command)
    print(f"sidecar for the board {r.sidecar} (copy it next to the .bin); every step to a report: {r.board_guide}")
    return 0
