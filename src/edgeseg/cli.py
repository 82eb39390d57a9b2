"""``edgeseg`` command line: a thin shell over the Python API. Errors are one line unless ``--debug``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import EdgesegError


def _positive_multiple_of_32(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"imgsz must be an integer, got {text!r}") from None
    if value <= 0 or value % 32:
        raise argparse.ArgumentTypeError(f"imgsz must be a positive multiple of 32, got {value}")
    return value


def _unit_interval(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {value}")
        return value

    return parse


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum`` (argparse prefixes the option's name to the message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _add_decode_options(p: argparse.ArgumentParser, conf: float = 0.25, filters: bool = True) -> None:
    """The decode options (``DecodeOptions``), declared here once for every command that decodes."""
    p.add_argument("--conf", type=_unit_interval("conf"), default=conf, help=f"score threshold (default {conf})")
    p.add_argument("--iou", type=_unit_interval("iou"), default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=_positive_int, default=300, help="detections kept per image (default 300)")
    if filters:
        p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
        p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_non_negative_int, default=0, help="ONNX Runtime intra-op threads (0 = ORT default)")


def _decode_options(args, multi_label: bool = False):
    """The ``DecodeOptions`` of parsed decode options."""
    from .decode import DecodeOptions

    return DecodeOptions(conf=args.conf, iou=args.iou, max_det=args.max_det, classes=getattr(args, "classes", None),
                         agnostic=getattr(args, "agnostic", False), multi_label=multi_label)  # fmt: skip


def _add_calibration_options(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("model", help="edgeseg float .onnx (from `edgeseg export`)")
    p.add_argument("--calib", required=True, help="directory of calibration images (letterboxed like inference)")
    p.add_argument("--num", type=_positive_int, default=50, help=f"calibration images to {verb} (default 50)")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    """--ray and its options (``edgeseg.distributed``), declared once for predict and val."""
    p.add_argument("--ray", action="store_true",
                   help="predict on Ray: a local Ray with this machine's cores, or the cluster at --ray-address "
                        '(pip install "edgeseg[ray]")')
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --ray: the cluster's head as HOST:PORT (what `ray start --head` prints), or auto on a node of it")
    p.add_argument("--actors", type=_positive_int, default=None,
                   help="with --ray: models loaded at once, one per actor (default: one per CPU of the cluster)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg", description="YOLO instance segmentation for edge accelerators: export, INT8, fast decode."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("export", help="checkpoint (.pt) -> split-head ONNX")
    p.add_argument("weights", help="Ultralytics YOLOv8-seg / YOLO11-seg checkpoint")
    p.add_argument("--imgsz", type=_positive_multiple_of_32, nargs="+", default=[640], help="input size: S or H W")
    p.add_argument("--opset", type=int, default=11, help="ONNX opset (default 11, what Horizon's toolchain takes)")
    p.add_argument("-o", "--output", default=None, help="output .onnx (default: beside the checkpoint)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim graph simplification")

    p = sub.add_parser("predict", help="segment images, videos, cameras and streams: overlays, annotated video, JSON")
    p.add_argument("model", help="edgeseg .onnx model (float or INT8)")
    p.add_argument("sources", nargs="+",
                   help="image files, directories, glob patterns, video files, cameras (0, /dev/video0), rtsp/rtmp/http(s) URLs")
    _add_decode_options(p)
    _add_threads_option(p)
    p.add_argument("--out", default=None, help="directory for overlay images")
    p.add_argument("--save-json", default=None, help="write the detections of images to this JSON file")
    p.add_argument("--save-video", default=None, metavar="OUT.mp4", help="annotated video of each video/camera/stream")
    p.add_argument("--save-jsonl", default=None, metavar="OUT.jsonl", help="one JSON line per video frame")
    p.add_argument("--vid-stride", type=_positive_int, default=1, help="use every N-th video frame (default 1)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="inference threads, each its own 1-thread session (default 1; try the core count)")
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="drop stale frames to keep up (default: on for cameras and URLs, off for files)")
    _add_ray_options(p)
    p.add_argument("--save-parquet", default=None, metavar="DIR",
                   help="with --ray: Parquet files in DIR, a row per image (path, width, height, detections, error)")
    p.add_argument("--serve", default=None, metavar="[HOST:]PORT",
                   help="watch the run live in a browser at http://HOST:PORT/ (host default 127.0.0.1; needs the serve extra)")
    p.add_argument("--serve-token", default=None, metavar="TOKEN",
                   help="token viewers must give (?token= or Authorization: Bearer); required off loopback (default: $EDGESEG_SERVE_TOKEN)")

    p = sub.add_parser("demo", help="run the embedded model on the embedded sample image")
    p.add_argument("--source", default=None, help="image to use instead of the embedded sample")
    p.add_argument("--out", default="edgeseg-demo", help="directory for the overlay (default ./edgeseg-demo)")
    p.add_argument("--conf", type=_unit_interval("conf"), default=0.25, help="score threshold (default 0.25)")

    p = sub.add_parser("val", help="box and mask mAP (COCO evaluator) of one or more models, side by side")
    p.add_argument("models", nargs="+", help="edgeseg .onnx models (float, INT8, ...); the first is the retention baseline")
    p.add_argument("--data", required=True, help="dataset .yaml (YOLO labels), images/labels directory, or COCO .json")
    p.add_argument("--images", default=None, help="image directory of a COCO .json (default: found beside it)")
    p.add_argument("--imgsz", type=_positive_multiple_of_32, nargs="+", default=None, help="check: the models' input size")
    _add_decode_options(p, conf=0.001, filters=False)
    p.add_argument("--single-label", action="store_true", help="one class per cell, as predict (default: multi-label like Ultralytics val)")
    _add_threads_option(p)
    _add_ray_options(p)
    p.add_argument("--save-json", default=None, metavar="FILE", help="metrics JSON here; COCO results beside it")
    p.add_argument("--verbose", action="store_true", help="per-class mAP")

    p = sub.add_parser("bench", help="per-stage latency, throughput vs threads, fast vs reference vs Ultralytics decode, "
                                     "video frames/s (--video)")
    p.add_argument("models", nargs="+", help="edgeseg .onnx models (float or INT8)")
    p.add_argument("--images", nargs="+", default=None, help="image files, directories or globs (default: the embedded sample)")
    p.add_argument("--max-images", type=int, default=0, help="use at most this many images (0 = all)")
    p.add_argument("--threads", type=_thread_list, default=[1, 2], help="thread counts for throughput, e.g. 1,2,4")
    p.add_argument("--warmup", type=int, default=3, help="untimed images before each measurement (default 3)")
    p.add_argument("--iters", type=_positive_int, default=1, help="timed passes over the images and the --video clip (default 1)")
    p.add_argument("--compare-repeats", type=_positive_int, default=3, help="decoder-compare runs per image (default 3)")
    p.add_argument("--no-ultralytics", action="store_true", help="skip Ultralytics' post-processing in the compare")
    p.add_argument("--video", default=None, metavar="CLIP",
                   help="also time this video file (--iters passes): sequential loop vs stream runner vs bare inference")
    p.add_argument("--stream-workers", type=_thread_list, default=[1, 2, 4], metavar="N,N",
                   help="runner workers (and bare inference threads) for --video (default 1,2,4)")
    _add_decode_options(p, filters=False)
    p.add_argument("--json", default=None, help="write the results JSON here")

    p = sub.add_parser("report", help="Markdown performance table with footnotes and PNG plots")
    p.add_argument("--bench", required=True, help="JSON from `edgeseg bench --json`")
    p.add_argument("--val", default=None, help="JSON from `edgeseg val` (accuracy columns)")
    p.add_argument("--quant", default=None, help="quantize report JSON (per-layer similarity plot)")
    p.add_argument("-o", "--out", required=True, help="output directory (report.md and PNGs)")
    p.add_argument("--title", default="Performance", help="report heading")
    p.add_argument("--note", action="append", default=[], metavar="TEXT",
                   help="a note of your own under the table (targets, caveats about the data); repeatable")
    p = sub.add_parser("quantize", help="float .onnx -> INT8 .onnx (ONNX Runtime static QDQ) with integer box/mc heads")
    _add_calibration_options(p, "use")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="percentile",
                   help="activation range calibration (default percentile; head outputs keep their full range)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="per-output-channel weight scales (default on)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True,
                   help="7-bit weights: avoids uint8 x int8 saturation on x86 CPUs without VNNI (default on)")
    p.add_argument("--keep-float", nargs="+", action="extend", default=[], metavar="NODE", help="nodes left in float")
    p.add_argument("--int16", nargs="+", action="extend", default=[], metavar="NODE",
                   help="nodes whose outputs are quantized to 16 bits")
    p.add_argument("--int-cls", action="store_true", help="make the cls outputs integer too")
    p.add_argument("--target-cosine", type=_unit_interval("target cosine"), default=None, metavar="X",
                   help="lift the most sensitive layers to float until every head output reaches this cosine")
    p.add_argument("--holdout", default=None, metavar="DIR",
                   help="images for the similarity report (default: images of --calib after the calibration ones)")
    p.add_argument("--report-images", type=int, default=8, metavar="N", help="held-out images in the report (0: no report)")
    p.add_argument("--bench", type=int, default=20, metavar="RUNS",
                   help="1-thread latency runs of float / INT8 (/ mixed), medians (default 20, 0: skip)")
    p.add_argument("-o", "--output", default=None, help="output .onnx (default: MODEL-int8.onnx beside the model)")

    p = sub.add_parser("horizon", help="hb_mapper yaml, calibration data, hb_model_modifier command, sidecar and "
                                      "run_on_board.md for RDK boards")
    _add_calibration_options(p, "write")
    p.add_argument("--march", choices=["bayes-e", "bernoulli2"], default="bayes-e",
                   help="BPU architecture: bayes-e (RDK X5, default) or bernoulli2 (RDK X3)")
    p.add_argument("--input-type", choices=["nv12", "rgb"], default="nv12", help="board-side input format (default nv12)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    return parser


def _thread_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"threads must be positive integers, got {text!r}")
    return values


def _cmd_export(args) -> int:
    from .export import export_onnx

    t0 = time.perf_counter()
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else args.imgsz
    path = export_onnx(args.weights, imgsz=imgsz, opset=args.opset, output=args.output, simplify=not args.no_simplify)
    from .backends import read_model_info

    info = read_model_info(path)
    print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB, {info.num_classes} classes, imgsz "
          f"{info.imgsz[0]}x{info.imgsz[1]}, outputs {', '.join(info.output_names)}) in {time.perf_counter() - t0:.1f}s")
    return 0


def _print_failures(failed) -> None:
    if failed:
        print(f"skipped {len(failed)} item(s):", file=sys.stderr)
        for src, problem in failed:
            print(f"  {src}: {problem}", file=sys.stderr)


def _cmd_predict(args) -> int:
    from .batch import PredictOutputs, StreamOptions, predict_sources
    from .predict import Segmenter

    ray_config = _ray_config(args, local_only={"--out": args.out, "--save-video": args.save_video, "--save-jsonl": args.save_jsonl,
                                               "--serve": args.serve, "--workers": args.workers != 1, "--live": args.live is not None,
                                               "--vid-stride": args.vid_stride != 1, "--threads": args.threads})  # fmt: skip
    if ray_config is not None:
        return _predict_on_ray(args, ray_config)
    serve = None
    if args.serve is not None:
        from .serve import ServeConfig, start_server

        serve = ServeConfig.from_cli(args.serve, token=args.serve_token)  # a bad address or a missing token: before any work
    seg = Segmenter(args.model, options=_decode_options(args), threads=args.threads)
    outputs = PredictOutputs(out_dir=args.out, save_json=args.save_json, save_video=args.save_video, save_jsonl=args.save_jsonl)
    stream = StreamOptions(workers=args.workers, live=args.live, vid_stride=args.vid_stride)
    server = start_server(serve) if serve is not None else None
    if server is not None:
        print(f"edgeseg: live view on {server.url} (it stops with the run; Ctrl-C ends both)", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        summary = predict_sources(seg, args.sources, outputs=outputs, stream=stream, show_progress=sys.stderr.isatty(),
                                  observers=[server.hub] if server is not None else ())  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    return _report_predict(args, summary, time.perf_counter() - t0)


def _report_predict(args, summary, dt: float) -> int:
    """What predict prints, locally or on Ray: skipped items, warnings, one summary line."""
    if summary.processed == 0 and len(summary.failed) == 1:
        raise EdgesegError(summary.failed[0][1], summary.failed[0][0])
    _print_failures(summary.failed)
    for w in summary.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    if summary.processed == 0:
        raise EdgesegError("no image could be processed")
    for name, stats in summary.streams:
        print(f"{name}: {stats.summary()}")
    print(f"{summary.processed} image(s)/frame(s), {summary.detections} object(s) in {dt:.2f}s"
          + (f"; overlays in {args.out}" if args.out and summary.overlays else "")
          + (f"; JSON in {args.save_json}" if args.save_json else "")
          + "".join(f"; {p}" for p in summary.outputs))  # fmt: skip
    return 0


def _ray_config(args, local_only: dict[str, object]):
    """The ``RayConfig`` of --ray, --ray-address and --actors (None without --ray), after refusing the
    options given in ``local_only`` (option -> its value; set means given) that only work without Ray."""
    if not args.ray:
        given = {"--ray-address": args.ray_address, "--actors": args.actors, "--save-parquet": getattr(args, "save_parquet", None)}
        for option, value in given.items():
            if value is not None:
                raise EdgesegError(f"{option} needs --ray")
        return None
    for option, value in local_only.items():
        if value:
            raise EdgesegError(f"{option} does not work with --ray (it runs here only); drop one of them")
    from .distributed import RayConfig, import_ray

    import_ray()  # without Ray installed: the one-line install hint, before any work
    return RayConfig(address=args.ray_address, actors=args.actors)


def _predict_on_ray(args, config) -> int:
    from .distributed import predict_on_ray
    from .predict import Segmenter

    if (args.save_json is None) == (args.save_parquet is None):
        raise EdgesegError("--ray writes its results to --save-json FILE or to --save-parquet DIR: give one of them")
    seg = Segmenter(args.model, options=_decode_options(args))  # here it checks the model and options before Ray starts
    t0 = time.perf_counter()
    summary = predict_on_ray(seg, args.sources, config=config, save_json=args.save_json, save_parquet=args.save_parquet,
                             show_progress=sys.stderr.isatty())  # fmt: skip
    return _report_predict(args, summary, time.perf_counter() - t0)


def _cmd_demo(args) -> int:
    from .batch import PredictOutputs, predict_sources
    from .predict import DEFAULT_MODEL, SAMPLE_IMAGE, Segmenter

    source = args.source or SAMPLE_IMAGE
    seg = Segmenter(DEFAULT_MODEL, conf=args.conf)
    outputs = PredictOutputs(out_dir=args.out, save_json=Path(args.out) / "detections.json")
    summary = predict_sources(seg, [source], outputs=outputs, show_progress=False)
    if summary.processed == 0:
        raise EdgesegError(summary.failed[0][1], summary.failed[0][0])
    print(f"model  {DEFAULT_MODEL.name} ({seg.info.num_classes} classes, {seg.info.imgsz[0]}x{seg.info.imgsz[1]})")
    print(f"image  {source}")
    for r in summary.records:
        x1, y1, x2, y2 = r["bbox_xyxy"]
        print(f"  {r['class_name']:<14} {r['score']:.2f}  box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    print(f"{len(summary.records)} object(s); overlay {summary.overlays[0]}, JSON {Path(args.out) / 'detections.json'}")
    return 0


def _cmd_val(args) -> int:
    from .evaluate import ValConfig, evaluate_models, format_metrics_table, format_per_class, save_results

    config = ValConfig(conf=args.conf, iou=args.iou, max_det=args.max_det, multi_label=not args.single_label,
                       threads=args.threads, imgsz=args.imgsz)  # fmt: skip
    ray_config = _ray_config(args, local_only={"--threads": args.threads})
    on_ray = {}  # evaluate predicts in this process unless told otherwise
    if ray_config is not None:
        from .distributed import RayPredictions

        on_ray = {"predict": RayPredictions(ray_config)}
    ds, results = evaluate_models(args.models, args.data, config=config, images=args.images, show_progress=sys.stderr.isatty(),
                                  **on_ray)  # fmt: skip
    for w in ds.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    _print_failures(list(dict.fromkeys(s for r in results for s in r.skipped)))
    print(f"{ds.name}: {results[0].images} image(s), {ds.num_instances} instance(s); {results[0].evaluator}")
    for r in results if args.verbose else ():
        print(f"\n{r.model}\n{format_per_class(r)}")
    print(("\n" if args.verbose else "") + format_metrics_table(results))
    if args.save_json:
        metrics, preds = save_results(results, args.save_json)
        print(f"metrics JSON {metrics}; COCO results {', '.join(str(p) for p in preds)}")
    return 0


def _cmd_bench(args) -> int:
    from .bench import BenchConfig, StreamBenchConfig, bench_summary, run_bench
    from .predict import SAMPLE_IMAGE

    if args.warmup < 0 or args.max_images < 0:
        raise EdgesegError("--warmup and --max-images must be >= 0")
    stream = StreamBenchConfig(clip=args.video, workers=args.stream_workers) if args.video else None
    config = BenchConfig(models=args.models, sources=args.images or [SAMPLE_IMAGE], threads=args.threads, warmup=args.warmup,
                         iters=args.iters, max_images=args.max_images, compare_repeats=args.compare_repeats,
                         options=_decode_options(args), ultralytics=not args.no_ultralytics, stream=stream)  # fmt: skip
    result = run_bench(config, json_path=args.json, show_progress=sys.stderr.isatty())
    print(bench_summary(result))
    if args.json:
        print(f"results in {args.json}")
    return 0


def _cmd_report(args) -> int:
    from .report import build_report

    path = build_report(args.bench, args.out, val_path=args.val, quant_path=args.quant, title=args.title, notes=args.note)
    print(f"report in {path} (plots beside it)")
    return 0


def _cmd_quantize(args) -> int:
    import warnings

    from .quantize import QuantizeConfig, format_report, quantize

    t0 = time.perf_counter()
    config = QuantizeConfig(num=args.num, method=args.method, per_channel=args.per_channel, reduce_range=args.reduce_range,
                            keep_float=args.keep_float, int16=args.int16, int_cls=args.int_cls,
                            target_cosine=args.target_cosine, holdout=args.holdout, report_images=args.report_images,
                            bench_runs=max(args.bench, 0))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # printed below, once, as edgeseg warnings
        r = quantize(args.model, args.calib, config=config, output=args.output, show_progress=sys.stderr.isatty())
    _print_failures(r.skipped)
    for w in r.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    print(f"calibrated on {len(r.calibration_images)} image(s) ({r.method}); integer outputs: {', '.join(r.integer_outputs)}")
    if r.keep_float or r.int16:
        print(f"mixed precision: {len(r.keep_float)} node(s) float, {len(r.int16)} node(s) int16")
    if r.report is not None:
        print(format_report(r.report))
        print("similarity report: " + ", ".join(str(f) for f in (r.report_json, r.report_png) if f))
    if r.latency_ms:
        base = r.latency_ms["float"]
        print(f"1-thread ONNX Runtime latency (median of {args.bench} runs): "
              + ", ".join(f"{k} {v:.1f} ms ({base / v:.2f}x)" for k, v in r.latency_ms.items()))  # fmt: skip
        from .machine import int8_dot_instructions, int8_speed_note

        note = int8_speed_note(base / r.latency_ms["int8"], int8_dot_instructions())
        if note:
            print(f"note: {note}")
    print(f"wrote {r.output} ({r.output.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s")
    return 0


def _cmd_horizon(args) -> int:
    from .horizon import HorizonConfig, horizon_artefacts

    config = HorizonConfig(march=args.march, num=args.num, input_type_rt=args.input_type)
    r = horizon_artefacts(args.model, args.calib, args.output, config=config, show_progress=sys.stderr.isatty())
    _print_failures(r.skipped)
    for w in r.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    print(f"wrote {r.yaml}, {len(r.calibration_files)} calibration file(s) in {r.calibration_dir}, {r.script}")
    print(f"after `hb_mapper makertbin --model-type onnx --config {r.yaml.name}` (run in {r.out_dir}):")
    print(r.modifier_command)
    print(f"sidecar for the board {r.sidecar} (copy it next to the .bin); every step to a report: {r.board_guide}")
    return 0


COMMANDS = {
    "export": _cmd_export, "predict": _cmd_predict, "demo": _cmd_demo, "val": _cmd_val, "bench": _cmd_bench,
    "report": _cmd_report, "quantize": _cmd_quantize, "horizon": _cmd_horizon,
}  # fmt: skip


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run like Ctrl-C: outputs are finalised on the way out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except EdgesegError as exc:
        if args.debug:
            raise
        print(f"edgeseg: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgeseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
