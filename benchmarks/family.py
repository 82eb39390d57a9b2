#!/usr/bin/env python3
"""The model-family table of docs/performance.md: YOLOv8n/s/m/l/x-seg, YOLO11n/s-seg and YOLO26n/s-seg at 640, FP32
and INT8, and YOLO26 against YOLOv8 and YOLO11 at equal size.

    python benchmarks/family.py                          # all 9 architectures + the trained checkpoint (~55 min, 2 cores)
    python benchmarks/family.py --quick                  # yolov8n-seg and yolov8s-seg, 4 images: a smoke run, no page
    python benchmarks/family.py --models yolov8n-seg,yolo11n-seg
    python benchmarks/family.py --models yolo26n-seg,yolo26s-seg --compare   # + the YOLO26 comparison (~10 min more)

``--compare`` adds two side-by-side runs (one ``edgeseg bench`` each, so their rows share the machine's load):
yolov8n-seg, yolo11n-seg and yolo26n-seg (random weights, 640, FP32 and INT8; the family rows' models when they
exist), and, for decode time with real objects, the shared trained checkpoints at 320: YOLO26n-seg with its
one-to-one head (end-to-end top-k, no NMS) and its one-to-many head (NMS), and YOLOv8n-seg.

Each architecture is built from Ultralytics' model yaml with random weights (``edgeseg export yolov8s-seg.yaml``,
nothing downloaded), quantized with ``edgeseg quantize`` (calibration on coco128-seg images) and benchmarked FP32
and INT8 side by side with ``edgeseg bench``; the trained checkpoint ``models/yolov8n-seg-coco128.pt`` of the
shared directory is a row of its own with its mAP (``edgeseg val``; run_all.py's models and val results are reused
when runs/benchmarks has them). Bigger models get fewer images (``PLANS``) so that the whole run fits about
45 minutes on a 2-core machine.

Every step's output goes to ``runs/benchmarks/family/<model>/`` and a step whose output exists is skipped, so an
interrupted run continues where it stopped (``--force`` redoes everything). ``family.json`` collects every finished
row of the work directory (``--models`` only chooses which rows this run makes or completes); the rendered section
replaces the part of docs/performance.md between ``<!-- family:start -->`` and ``<!-- family:end -->`` (inserted
before the page's first section when absent); run_all.py keeps that part when it rewrites the page.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from run_all import REPO, default_shared, quantize, rel, run, validate

FAMILY = (
    "yolov8n-seg",
    "yolov8s-seg",
    "yolov8m-seg",
    "yolov8l-seg",
    "yolov8x-seg",
    "yolo11n-seg",
    "yolo11s-seg",
    "yolo26n-seg",
    "yolo26s-seg",
)
EQUAL_SIZE = ("yolov8n-seg", "yolo11n-seg", "yolo26n-seg")  # one scale of each generation, benchmarked in one run
TRAINED_26 = "yolo26n-seg-coco128"  # the shared trained YOLO26n-seg, for decode time with real objects
DECODE_IMGSZ = 320  # the size it was trained for (the YOLOv8n checkpoint is run there too, for equal size)
TRAINED = "yolov8n-seg-coco128"  # the shared checkpoint's row; its files keep run_all.py's names
IMGSZ = 640
ROW_FILES = ("model", "report", "val", "bench")  # a row's float model, similarity report, val JSON (trained), bench JSON
RANDOM_CONF = 1.0  # random weights detect arbitrary things: bench them with nothing passing the threshold


@dataclass(frozen=True)
class Plan:
    """Images per step of one architecture: calibration and similarity-report images for quantize, bench
    images (each timed once per measurement) and warm-up images per session."""

    calibration: int
    report: int
    bench: int
    warmup: int


# Per model scale, sized so that the whole run (7 architectures + the trained row) takes ~45 min on 2 quiet cores
# (estimated from single steps: yolov8l-seg's quantize with 16/2 images took 169 s, its 1-thread inference 1.45 s
# FP32 / 0.42 s INT8 on a 2-core Xeon with VNNI; the 2-core AMD EPYC without VNNI of earlier pages ran yolov8n-seg
# 2.2x (FP32) and 3.2x (INT8) slower, so expect about twice as long there).
PLANS = {"n": Plan(32, 4, 128, 2), "s": Plan(24, 4, 64, 2), "m": Plan(24, 2, 48, 1), "l": Plan(16, 2, 24, 1), "x": Plan(12, 2, 16, 1)}
QUICK = Plan(4, 2, 4, 1)
COMPARE = Plan(8, 2, 32, 1)  # --compare: models made only for it, and its two bench runs


def plan_of(name: str, quick: bool) -> Plan:
    if quick:
        return QUICK
    scale = re.search(r"\d+([nsmlx])-seg", name)
    return PLANS[scale.group(1) if scale else "n"]


@dataclass(frozen=True)
class Setup:
    """What every row uses: the calibration and bench images, the val data, the trained checkpoint, and
    whether to redo steps whose outputs exist."""

    images: Path
    data: Path
    checkpoint: Path
    force: bool = False
    checkpoint_26: Path | None = None  # the trained YOLO26n-seg (--compare)


class Steps:
    """Wall time of each step of one model, kept in ``seconds.json`` beside its files so that a resumed run
    still knows what the skipped steps took."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "seconds.json"
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def run(self, step: str, args: list[str], what: str) -> None:
        t0 = time.perf_counter()
        run(args, what)
        self.record(step, time.perf_counter() - t0)

    def record(self, step: str, seconds: float) -> None:
        self.seconds[step] = round(seconds, 1)
        self.path.write_text(json.dumps(self.seconds, indent=1) + "\n")


def bench(models: list[Path], out: Path, plan: Plan, steps: Steps, setup: Setup, conf: float | None) -> Path:
    """FP32 and INT8 side by side: 1-thread stage latency, 1 and 2 worker threads' throughput, decode."""
    if setup.force or not out.is_file():
        args = [
            "bench",
            *map(rel, models),
            "--images",
            rel(setup.images),
            "--max-images",
            str(plan.bench),
            "--threads",
            "1,2",
            "--warmup",
            str(plan.warmup),
            "--iters",
            "1",
            "--compare-repeats",
            "1",
            "--no-ultralytics",
            "--json",
            rel(out),
        ]
        steps.run("bench", args + (["--conf", f"{conf:g}"] if conf is not None else []), f"bench {out.parent.name}")
    return out


def random_row(name: str, folder: Path, plan: Plan, setup: Setup) -> dict[str, Path | None]:
    """Export (random weights), quantize and bench one architecture; its files (see ``ROW_FILES``)."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = Steps(folder)
    model, force = folder / f"{name}-{IMGSZ}.onnx", setup.force
    if force or not model.is_file():
        steps.run("export", ["export", f"{name}.yaml", "--imgsz", str(IMGSZ), "-o", rel(model)], f"export {name}")
    int8 = folder / f"{model.stem}-int8.onnx"
    report = folder / f"{int8.stem}.similarity.json"
    if force or not (int8.is_file() and report.is_file()):
        steps.run(
            "quantize",
            [
                "quantize",
                rel(model),
                "--calib",
                rel(setup.images),
                "--num",
                str(plan.calibration),
                "--report-images",
                str(plan.report),
                "--bench",
                "0",
                "-o",
                rel(int8),
            ],
            f"quantize {name}",
        )
    out = bench([model, int8], folder / "bench.json", plan, steps, setup, conf=RANDOM_CONF)
    return {"model": model, "report": report, "val": None, "bench": out}


def trained_row(folder: Path, plan: Plan, setup: Setup) -> dict[str, Path | None]:
    """The shared checkpoint's row: run_all.py's float and INT8 models and val results when runs/benchmarks has
    all of them, else made here the way run_all.py makes them; benchmarked here like the other rows."""
    folder.mkdir(parents=True, exist_ok=True)
    steps, force = Steps(folder), setup.force
    shared_run = folder.parent.parent  # runs/benchmarks: where run_all.py works
    model = shared_run / f"{TRAINED}-{IMGSZ}.onnx"
    int8 = model.with_name(f"{model.stem}-int8.onnx")
    report = int8.with_name(f"{int8.stem}.similarity.json")
    val_json = shared_run / "val.json"
    if not force and _has_val(val_json, [model, int8]) and int8.is_file():
        print(f"\n== {TRAINED}: reusing run_all.py's {rel(model)}, {rel(int8)} and {rel(val_json)}", flush=True)
    else:
        model = folder / model.name
        if force or not model.is_file():
            steps.run("export", ["export", rel(setup.checkpoint), "--imgsz", str(IMGSZ), "-o", rel(model)], f"export {TRAINED}")
        made = force or not folder.joinpath(f"{model.stem}-int8.onnx").is_file()
        t0 = time.perf_counter()
        int8, report = quantize(model, setup.images, folder, [], force)  # run_all.py's settings: the page's INT8 model
        if made:
            steps.record("quantize", time.perf_counter() - t0)
        val_json = folder / "val.json"
        if force or not _has_val(val_json, [model, int8]):
            t0 = time.perf_counter()
            validate([model, int8], setup.data if setup.data.is_file() else setup.images, folder)
            steps.record("val", time.perf_counter() - t0)
    out = bench([model, int8], folder / "bench.json", plan, steps, setup, conf=None)
    return {"model": model, "report": report if report and report.is_file() else None, "val": val_json, "bench": out}


def _has_val(val_json: Path, models: list[Path]) -> bool:
    """Whether ``val_json`` exists and has results of every model (by file name)."""
    if not val_json.is_file() or not all(m.is_file() for m in models):
        return False
    from edgeseg.evaluate import read_eval_results

    names = {Path(r.model).name for r in read_eval_results(val_json)}
    return all(m.name in names for m in models)


def float_and_int8(source: str, folder: Path, stem: str, imgsz: int, setup: Setup, extra: tuple[str, ...] = ()) -> list[Path]:
    """``[float, INT8]`` models of ``source`` (a yaml name or a checkpoint) in ``folder``: those that exist (a
    family row's), else exported and quantized here with ``COMPARE``'s images."""
    folder.mkdir(parents=True, exist_ok=True)
    steps, model = Steps(folder), folder / f"{stem}.onnx"
    int8 = folder / f"{stem}-int8.onnx"
    if setup.force or not model.is_file():
        steps.run("export", ["export", source, "--imgsz", str(imgsz), *extra, "-o", rel(model)], f"export {stem}")
    if setup.force or not int8.is_file():
        steps.run(
            "quantize",
            [
                "quantize",
                rel(model),
                "--calib",
                rel(setup.images),
                "--num",
                str(COMPARE.calibration),
                "--report-images",
                str(COMPARE.report),
                "--bench",
                "0",
                "-o",
                rel(int8),
            ],
            f"quantize {stem}",
        )
    return [model, int8]


def compare_yolo26(work: Path, setup: Setup) -> tuple[Path, Path]:
    """The two side-by-side runs of ``--compare``: (equal-size bench JSON, trained-at-320 bench JSON)."""
    folder = work / "compare"
    equal: list[Path] = []
    for name in EQUAL_SIZE:
        equal += float_and_int8(f"{name}.yaml", work / name, f"{name}-{IMGSZ}", IMGSZ, setup)
    trained = [
        *float_and_int8(rel(setup.checkpoint_26), folder, f"{TRAINED_26}-{DECODE_IMGSZ}", DECODE_IMGSZ, setup),
        *float_and_int8(
            rel(setup.checkpoint_26), folder, f"{TRAINED_26}-{DECODE_IMGSZ}-one2many", DECODE_IMGSZ, setup, ("--head", "one2many")
        ),
        *float_and_int8(rel(setup.checkpoint), folder, f"{TRAINED}-{DECODE_IMGSZ}", DECODE_IMGSZ, setup),
    ]
    out = []
    for models, json_name, conf in ((equal, "equal-size.json", RANDOM_CONF), (trained, "trained-320.json", None)):
        path = folder / json_name
        if setup.force or not path.is_file():
            args = [
                "bench",
                *map(rel, models),
                "--images",
                rel(setup.images),
                "--max-images",
                str(COMPARE.bench),
                "--threads",
                "1",
                "--warmup",
                str(COMPARE.warmup),
                "--iters",
                "1",
                "--compare-repeats",
                "3",
                "--json",
                rel(path),
            ]
            run(args + (["--conf", f"{conf:g}", "--no-ultralytics"] if conf is not None else []), f"bench {json_name}")
        out.append(path)
    return out[0], out[1]


def compare_section(equal_json: Path, trained_json: Path) -> str:
    """The markdown of ``--compare``'s two runs."""
    from edgeseg.backends import read_model_info
    from edgeseg.bench.result import read_bench_result
    from edgeseg.onnxgraph import graph_gflops

    def ms(m, stage: str) -> float:
        return m.latency_ms[stage].p50

    lines = ["### YOLO26 against YOLOv8 and YOLO11 at equal size", ""]
    equal = read_bench_result(equal_json)
    lines += [
        f"Random weights at {IMGSZ}, one `edgeseg bench` run ({equal.settings.images} coco128-seg images, 1 thread, conf 1: "
        "nothing passes, so decode is the threshold pass alone), FP32 and INT8 of all three side by side.",
        "",
        "| model | GFLOPs | 1 thread FP32 | 1 thread INT8 | INT8 speed-up | inference p50 FP32 / INT8 (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    pairs = [equal.models[i : i + 2] for i in range(0, len(equal.models), 2)]
    for f, q in pairs:
        name = f.name.removesuffix(f"-{IMGSZ}.onnx")
        lines.append(
            f"| {name} | {graph_gflops(REPO / f.model):.1f} | {ms(f, 'total'):.1f} ms | {ms(q, 'total'):.1f} ms | "
            f"{ms(f, 'total') / ms(q, 'total'):.2f}× | {ms(f, 'inference'):.1f} / {ms(q, 'inference'):.1f} |"
        )
    trained = read_bench_result(trained_json)
    lines += [
        "",
        f"Decode with real objects: the shared trained checkpoints at {DECODE_IMGSZ}, conf "
        f"{trained.settings.conf:g}, one run ({trained.settings.images} coco128-seg images, their training images; 1 thread).",
        "",
        "| model | selection | objects / image | decode p50 FP32 / INT8 (ms) | masks p50 FP32 / INT8 (ms) "
        "| 1 thread FP32 / INT8 (ms) | INT8 speed-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for f, q in (trained.models[i : i + 2] for i in range(0, len(trained.models), 2)):
        info = read_model_info(REPO / f.model)
        selection = "one-to-one head, top-k (no NMS)" if info.end2end else ("one-to-many head, NMS" if info.reg_max == 1 else "NMS")
        lines.append(
            f"| {f.name.removesuffix('.onnx')} | {selection} | {f.objects_mean:.1f} | "
            f"{ms(f, 'decode'):.2f} / {ms(q, 'decode'):.2f} | {ms(f, 'masks'):.2f} / {ms(q, 'masks'):.2f} | "
            f"{ms(f, 'total'):.1f} / {ms(q, 'total'):.1f} | "
            f"{ms(f, 'total') / ms(q, 'total'):.2f}× |"
        )
    few = [f.name.removesuffix(".onnx") for f in trained.models[::2] if (f.objects_mean or 0) < 1]
    if few:
        lines += [
            "",
            f"{', '.join(few)}: almost no objects at this size (a checkpoint made for another size), so decode "
            "is the threshold pass alone.",
        ]
    dc = trained.decode_compare
    if dc is not None and dc.fast_ms:
        lines += [
            "",
            f"On the one-to-one model's raw outputs the fast decoder takes {dc.fast_ms:.2f} ms per image against "
            f"{dc.reference_ms:.2f} ms for the dense reference"
            + (f" and {dc.ultralytics_ms:.2f} ms for Ultralytics' own top-k and post-processing" if dc.ultralytics_ms else "")
            + f" (mean {dc.mean_objects:.1f} objects; all three agree on the count on {dc.objects_agree.get('reference')} of "
            f"{dc.images} images).",
        ]
    machine = equal.machine
    lines += [
        "",
        f"Machine: {machine.cpu}, {machine.usable_cores} usable cores; load average {machine.loadavg_start} at the start "
        f"of the first run, {trained.machine.loadavg_end} at the end of the second (other work shared the cores).",
    ]
    return "\n".join(lines) + "\n"


def write_row(folder: Path, files: dict[str, Path | None]) -> None:
    """``row.json``: where a finished row's files are (``ROW_FILES``), for ``collect``."""
    folder.joinpath("row.json").write_text(json.dumps({k: rel(v) if v else None for k, v in files.items()}, indent=1) + "\n")


def collect(work: Path) -> Path:
    """``family.json`` from every finished row in ``work`` (its ``row.json``), in table order, whichever run
    made it: what the files say, image counts included."""
    from edgeseg.bench.result import read_bench_result
    from edgeseg.evaluate import read_eval_results
    from edgeseg.fileio import write_json_atomic
    from edgeseg.onnxgraph import graph_gflops, load_model, metadata
    from edgeseg.quantize import read_similarity_report
    from family_report import FamilyInputs, FamilyResult, family_model

    models, benches, total = [], [], 0.0
    for name in (*FAMILY, TRAINED):
        if not (work / name / "row.json").is_file():
            continue
        files = {k: REPO / v if v else None for k, v in json.loads((work / name / "row.json").read_text()).items()}
        result = read_bench_result(files["bench"])
        benches.append(result)
        int8 = next(m.model for m in result.models if m.int8)
        quant = json.loads(metadata(load_model(REPO / int8)).get("edgeseg.quantization", "{}"))
        float_meta = metadata(load_model(files["model"]))
        seconds = Steps(work / name).seconds
        total += sum(seconds.values())
        inputs = FamilyInputs(
            name=name,
            bench=result,
            gflops=graph_gflops(files["model"]),
            weights=float_meta.get("edgeseg.weights"),
            similarity=read_similarity_report(files["report"]) if files["report"] else None,
            val=read_eval_results(files["val"]) if files["val"] else (),
            calibration_images=quant.get("calibration_images"),
            seconds=seconds,
        )
        models.append(family_model(inputs))
        print(f"  row {name}: {rel(files['bench'])}")
    by_date = sorted(benches, key=lambda b: b.machine.date_utc or "")  # a resumed run's rows come from several sittings
    machine = by_date[0].machine.to_dict()
    machine.update(loadavg_end=by_date[-1].machine.loadavg_end, date_utc_end=by_date[-1].machine.date_utc)
    family = FamilyResult(machine=machine, imgsz=IMGSZ, models=models, seconds=round(total, 1))
    return write_json_atomic(work / "family.json", family.to_dict())


def write_section(family_json: Path, work: Path, docs: Path, command: str) -> Path:
    """Render the section and splice it into docs/performance.md (its plot copied to docs/performance/)."""
    from family_report import build_family_report, splice_family

    md = build_family_report(family_json, work / "report", command=command)
    text = md.read_text(encoding="utf-8")
    compared = work / "compare" / "compare.md"
    if compared.is_file():  # --compare's section, from this or an earlier run
        text = text.rstrip("\n") + "\n\n" + compared.read_text(encoding="utf-8")
    assets = docs / "performance"
    assets.mkdir(parents=True, exist_ok=True)
    for png in md.parent.glob("*.png"):
        shutil.copyfile(png, assets / png.name)
    text = re.sub(r"\]\(([^)/]+\.png)\)", r"](performance/\1)", text)
    page = docs / "performance.md"
    old = page.read_text(encoding="utf-8") if page.is_file() else "# Performance\n"
    page.write_text(splice_family(old, text), encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", type=Path, default=default_shared(), help="shared data directory (default ../shared)")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="intermediate files (default runs/benchmarks/family, runs/benchmarks/family-quick with --quick)",
    )
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where performance.md is")
    p.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {', '.join((*FAMILY, TRAINED))} (default all; --quick: yolov8n-seg,yolov8s-seg)",
    )
    p.add_argument("--quick", action="store_true", help=f"{QUICK.bench} images per step: a smoke run (no page unless --page)")
    p.add_argument(
        "--page",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write the section into performance.md (default: yes, except with --quick)",
    )
    p.add_argument("--force", action="store_true", help="redo every step even if its output exists")
    p.add_argument("--compare", action="store_true", help="also YOLO26 against YOLOv8 and YOLO11 at equal size (see above)")
    a = p.parse_args(argv)

    names = a.models.split(",") if a.models else (["yolov8n-seg", "yolov8s-seg"] if a.quick else [*FAMILY, TRAINED])
    unknown = [n for n in names if n not in (*FAMILY, TRAINED)]
    if unknown or not names:
        raise SystemExit(f"family: unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join((*FAMILY, TRAINED))}")
    checkpoint = a.shared / "models" / f"{TRAINED}.pt"
    images = a.shared / "datasets" / "coco128-seg" / "images" / "train2017"
    data_yaml = a.shared / "datasets" / "coco128-seg.yaml"
    checkpoint_26 = a.shared / "models" / f"{TRAINED_26}.pt"
    for need in (images, *([checkpoint] if TRAINED in names or a.compare else []), *([checkpoint_26] if a.compare else [])):
        if not need.exists():
            raise SystemExit(f"family: {need}: not found (set --shared or EDGESEG_SHARED)")
    work = a.work or REPO / "runs" / "benchmarks" / ("family-quick" if a.quick else "family")
    work.mkdir(parents=True, exist_ok=True)
    setup = Setup(images=images, data=data_yaml, checkpoint=checkpoint, force=a.force, checkpoint_26=checkpoint_26)

    print("images per model (calibration / similarity report / bench, warm-up):")
    for name in names:
        plan = plan_of(name, a.quick)
        print(
            f"  {name:<20} {plan.calibration:>3} / {plan.report} / {plan.bench:>3}, {plan.warmup}"
            + ("  (quantized with run_all.py's settings)" if name == TRAINED else "")
        )
    for name in names:
        plan = plan_of(name, a.quick)
        files = trained_row(work / name, plan, setup) if name == TRAINED else random_row(name, work / name, plan, setup)
        write_row(work / name, files)
    if a.compare:
        compared = work / "compare" / "compare.md"
        compared.write_text(compare_section(*compare_yolo26(work, setup)), encoding="utf-8")
        print(f"wrote {rel(compared)}")
    print(f"\nrows of {rel(work)} (those of earlier runs included):")
    family_json = collect(work)
    print(f"wrote {rel(family_json)}")
    if a.page if a.page is not None else not a.quick:
        command = "python benchmarks/family.py" + (" --quick" if a.quick else "")
        print(f"wrote {rel(write_section(family_json, work, a.docs, command))} (the family section)")
    else:
        from family_report import build_family_report

        print(f"rendered {rel(build_family_report(family_json, work / 'report'))} (page not written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
