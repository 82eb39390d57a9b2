"""The inference commands: export, predict (images, videos, cameras, streams; locally, on Ray, with a live
view) and demo."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import EdgesegError
from .options import (
    add_board_options,
    add_decode_options,
    add_head_option,
    add_mqtt_options,
    add_ray_options,
    add_ros_options,
    add_threads_option,
    add_tracking_options,
    board_options,
    decode_options,
    mqtt_output_of,
    per_core_count,
    positive_int,
    positive_multiple_of_32,
    print_failures,
    ray_config_of,
    ros_outputs_of,
    serve_address,
    tracking_options_of,
    unit_interval,
)


def register(sub) -> dict:
    """Add the parsers of this module's commands; their handlers by name."""
    p = sub.add_parser("export", help="checkpoint (.pt) or model yaml -> split-head ONNX")
    p.add_argument(
        "weights",
        help="Ultralytics segmentation checkpoint (YOLOv8/v9/11/12/26-seg), or a model yaml name "
        "(yolov8s-seg.yaml, yolo26n-seg.yaml): that architecture with random weights, for speed "
        "and size (nothing downloaded)",
    )
    p.add_argument("--imgsz", type=positive_multiple_of_32, nargs="+", default=[640], help="input size: S or H W")
    p.add_argument("--opset", type=int, default=11, help="ONNX opset (default 11, what Horizon's toolchain takes)")
    p.add_argument("-o", "--output", default=None, help="output .onnx (default: beside the checkpoint)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim graph simplification")
    add_head_option(p)

    p = sub.add_parser("predict", help="segment images, videos, cameras and streams: overlays, annotated video, JSON")
    p.add_argument("model", help="edgeseg .onnx model (float or INT8), or a Horizon .bin on the RDK board")
    p.add_argument(
        "sources",
        nargs="+",
        help="image files, directories, glob patterns, video files, cameras (0, /dev/video0), rtsp/rtmp/http(s) URLs, "
        "the RDK board's MIPI camera (mipi:0, mipi:0@1920x1080)",
    )
    add_decode_options(p)
    add_threads_option(p)
    add_board_options(p)
    p.add_argument("--out", default=None, help="directory for overlay images")
    p.add_argument("--save-json", default=None, help="write the detections of images to this JSON file")
    p.add_argument("--save-video", default=None, metavar="OUT.mp4", help="annotated video of each video/camera/stream")
    p.add_argument("--save-jsonl", default=None, metavar="OUT.jsonl", help="one JSON line per video frame")
    p.add_argument("--vid-stride", type=positive_int, default=1, help="use every N-th video frame (default 1)")
    p.add_argument(
        "--retries",
        type=positive_int,
        default=None,
        metavar="N",
        help="give a camera or stream N tries to open, and N to come back each time it stops, then fail it "
        "(default: retry forever, waiting up to 30 s between tries)",
    )
    p.add_argument(
        "--workers",
        type=per_core_count("inference threads"),
        default=1,
        help="inference threads, each its own 1-thread session (default 1; try the core count; at most 4 per core)",
    )
    p.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="drop stale frames to keep up (default: on for cameras and URLs, off for files)",
    )
    add_tracking_options(p)
    p.set_defaults(conf=None)  # 0.25, or TRACK_CONF with --track (see _cmd_predict)
    add_ros_options(p)
    add_ray_options(p)
    add_mqtt_options(p)
    p.add_argument(
        "--save-parquet",
        default=None,
        metavar="DIR",
        help="with --ray: Parquet files in DIR, a row per image (path, width, height, detections, error)",
    )
    p.add_argument(
        "--serve",
        type=serve_address,
        default=None,
        metavar="[HOST:]PORT",
        help="watch the run live in a browser at http://HOST:PORT/ (host default 127.0.0.1; needs the serve extra)",
    )
    p.add_argument(
        "--serve-token",
        default=None,
        metavar="TOKEN",
        help="token viewers must give (?token= or Authorization: Bearer); required off loopback (default: $EDGESEG_SERVE_TOKEN)",
    )

    p = sub.add_parser("demo", help="run the embedded model on the embedded sample image")
    p.add_argument("--source", default=None, help="image to use instead of the embedded sample")
    p.add_argument("--out", default="edgeseg-demo", help="directory for the overlay (default ./edgeseg-demo)")
    p.add_argument("--conf", type=unit_interval("conf"), default=0.25, help="score threshold (default 0.25)")
    return {"export": _cmd_export, "predict": _cmd_predict, "demo": _cmd_demo}


def _cmd_export(args) -> int:
    from ..export import export_onnx

    t0 = time.perf_counter()
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else args.imgsz
    path = export_onnx(args.weights, imgsz=imgsz, opset=args.opset, output=args.output, simplify=not args.no_simplify, head=args.head)
    from ..backends import read_model_info

    info = read_model_info(path)
    print(
        f"exported {path} ({path.stat().st_size / 1e6:.1f} MB, {info.num_classes} classes, imgsz "
        f"{info.imgsz[0]}x{info.imgsz[1]}, {'one-to-one head, no NMS' if info.end2end else 'NMS'}, "
        f"outputs {', '.join(info.output_names)}) in {time.perf_counter() - t0:.1f}s"
    )
    return 0


TRACK_CONF = 0.1  # ByteTrack's low band (0.1..0.25) needs those detections; `yolo track` lowers conf the same way


def stream_sources(specs: Sequence[str]) -> list[str]:
    """The videos, cameras and streams among ``specs``; when there are any, the run may last weeks and the allocator
    is set for that now, before a model or a thread exists (``machine.steady_allocator``)."""
    from ..machine import steady_allocator
    from ..sources import source_kind
    from ..sources.board import is_mipi

    streams = [s for s in specs if source_kind(s) != "files" or is_mipi(s)]
    if streams:
        steady_allocator()
    return streams


def _cmd_predict(args) -> int:
    from ..engines.command import PredictOutputs, StreamOptions, predict_sources
    from ..predict import Segmenter
    from ..sources import RetryPolicy

    streams = stream_sources([str(s) for s in args.sources])
    if args.conf is None:  # low-score detections only extend existing tracks: the tracked output stays clean
        args.conf = TRACK_CONF if args.track else 0.25

    ray_config = ray_config_of(
        args,
        local_only={
            "--out": args.out,
            "--save-video": args.save_video,
            "--save-jsonl": args.save_jsonl,
            "--serve": args.serve,
            "--workers": args.workers != 1,
            "--live": args.live is not None,
            "--vid-stride": args.vid_stride != 1,
            "--retries": args.retries is not None,
            "--threads": args.threads,
            "--track": args.track,
            "--ros": args.ros,
            "--save-bag": args.save_bag,
            "--mqtt": args.mqtt,
        },
    )
    if ray_config is not None:
        return _predict_on_ray(args, ray_config)
    tracking = tracking_options_of(args)
    mqtt = mqtt_output_of(args)
    serve = None
    if args.serve is not None:
        from ..serve import ServeConfig, start_server

        serve = ServeConfig.from_cli(args.serve, token=args.serve_token)  # a bad address or a missing token: before any work
    ros = ros_outputs_of(args, threshold=args.conf)  # a bad namespace, an existing bag folder: before any work
    seg = Segmenter(args.model, options=decode_options(args), threads=args.threads, board=board_options(args))
    outputs = PredictOutputs(
        out_dir=args.out, save_json=args.save_json, save_video=args.save_video, save_jsonl=args.save_jsonl, save_counts=args.save_counts
    )
    stream = StreamOptions(
        workers=args.workers,
        live=args.live,
        vid_stride=args.vid_stride,
        hw_decode=args.hw_decode,
        tracking=tracking,
        retry=RetryPolicy(attempts=args.retries),
    )
    server = start_server(serve) if serve is not None else None
    if server is not None:
        print(f"edgeseg: live view on {server.url} (it stops with the run; Ctrl-C ends both)", file=sys.stderr)
    if streams:
        print_banner(seg, workers=args.workers, cameras=streams)
    t0 = time.perf_counter()
    try:
        summary = predict_sources(
            seg,
            args.sources,
            outputs=outputs,
            stream=stream,
            show_progress=sys.stderr.isatty(),
            run_outputs=with_view(server, ros + ([mqtt] if mqtt is not None else [])),
        )
    finally:
        if server is not None:
            server.stop()
    return _report_predict(args, summary, time.perf_counter() - t0)


def with_view(server, outputs: list) -> list:
    """The run's outputs with the live view's hub first (when serving), the hub showing the others' counters on
    /metrics."""
    if server is None:
        return outputs
    server.hub.watch(outputs)
    return [server.hub, *outputs]


def print_banner(seg, *, workers: int, cameras: Sequence[str]) -> None:
    """What a run of cameras prints first (stderr): model, backend, workers, cameras and this CPU's INT8 path. Such a
    run may last weeks: ``stream_sources`` set the allocator for it before anything was loaded."""
    from ..machine import startup_banner
    from ..onnxgraph import is_quantized, load_model

    path = seg.model_path
    int8 = path is not None and (path.suffix == ".bin" or is_quantized(load_model(path)))
    backend = {"OnnxRuntimeBackend": "ONNX Runtime", "HbmRuntimeBackend": "hbm_runtime (BPU)", "PyeasyDnnBackend": "pyeasy_dnn (BPU)"}
    name = type(seg.backend).__name__
    lines = startup_banner(model=str(path or name), backend=backend.get(name, name), int8=int8, workers=workers, cameras=cameras)
    for line in lines:
        print(f"edgeseg: {line}", file=sys.stderr)


def _report_predict(args, summary, dt: float) -> int:
    """What predict prints, locally or on Ray: skipped items, warnings, one summary line; the exit code is 1 when a
    source or an output stopped mid-run (``summary.incomplete``, one error line each)."""
    problems = summary.failed + summary.incomplete
    if summary.processed == 0 and len(problems) == 1:
        raise problems[0].error()
    print_failures(summary.failed)
    for w in summary.warnings:
        print(f"edgeseg: warning: {w}", file=sys.stderr)
    for where, problem in summary.incomplete:
        print(f"edgeseg: error: {where}: {problem}", file=sys.stderr)
    if summary.processed == 0:
        raise EdgesegError("no image could be processed")
    for name, stats in summary.streams:
        print(f"{name}: {stats.summary()}")
    for line in summary.reports:
        print(line)
    for name, counts in summary.counts.items():
        for line, c in counts["lines"].items():
            print(f"{name}: line {line}: in {c['in']}, out {c['out']}")
        for zone, c in counts["zones"].items():
            print(f"{name}: zone {zone}: entered {c['entered']}, exited {c['exited']}, inside now {c['occupancy']}")
    print(
        f"{summary.processed} image(s)/frame(s), {summary.detections} object(s) in {dt:.2f}s"
        + (f"; overlays in {args.out}" if args.out and summary.overlays else "")
        + (f"; JSON in {args.save_json}" if args.save_json else "")
        + (f"; counts in {args.save_counts}" if getattr(args, "save_counts", None) and summary.counts else "")
        + "".join(f"; {p}" for p in summary.outputs)
    )
    return 1 if summary.incomplete else 0


def _predict_on_ray(args, config) -> int:
    from ..engines.cluster import predict_on_ray
    from ..predict import Segmenter

    if (args.save_json is None) == (args.save_parquet is None):
        raise EdgesegError("--ray writes its results to --save-json FILE or to --save-parquet DIR: give one of them")
    seg = Segmenter(args.model, options=decode_options(args))  # here it checks the model and options before Ray starts
    t0 = time.perf_counter()
    summary = predict_on_ray(
        seg, args.sources, config=config, save_json=args.save_json, save_parquet=args.save_parquet, show_progress=sys.stderr.isatty()
    )
    return _report_predict(args, summary, time.perf_counter() - t0)


def _cmd_demo(args) -> int:
    from ..engines.command import PredictOutputs, predict_sources
    from ..predict import DEFAULT_MODEL, SAMPLE_IMAGE, Segmenter

    source = args.source or SAMPLE_IMAGE
    seg = Segmenter(DEFAULT_MODEL, conf=args.conf)
    outputs = PredictOutputs(out_dir=args.out, save_json=Path(args.out) / "detections.json")
    summary = predict_sources(seg, [source], outputs=outputs, show_progress=False)
    if summary.processed == 0:
        raise summary.failed[0].error()
    print(f"model  {DEFAULT_MODEL.name} ({seg.info.num_classes} classes, {seg.info.imgsz[0]}x{seg.info.imgsz[1]})")
    print(f"image  {source}")
    for r in summary.records:
        x1, y1, x2, y2 = r["bbox_xyxy"]
        print(f"  {r['class_name']:<14} {r['score']:.2f}  box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    print(f"{len(summary.records)} object(s); overlay {summary.overlays[0]}, JSON {Path(args.out) / 'detections.json'}")
    return 0
