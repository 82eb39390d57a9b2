"""The model-family table (``benchmarks/family.py``): one row per architecture (YOLOv8n/s/m/l/x-seg, YOLO11n/s-seg
with random weights, plus the trained checkpoint), FP32 and INT8 side by side, and the page section around it.

``family_model`` condenses one architecture's bench JSON, quantize similarity report and (trained only) val
results into a ``FamilyModel``; ``FamilyResult`` is what ``family.json`` holds (``to_dict`` / ``read_family``,
one-line errors); ``family_section`` renders the Markdown; ``splice_family`` puts that section into a page
between ``FAMILY_START`` / ``FAMILY_END`` (replacing the old one), so that ``benchmarks/run_all.py`` and
``benchmarks/family.py`` can each regenerate their part of docs/performance.md; ``build_family_report`` writes the
section and its plot (``plot_family``) into a folder.

GFLOPs come from the ONNX graph (``edgeseg.onnxgraph.graph_gflops``): one number source for every row, trained or
not.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.backends.base import HEAD_KINDS as HEAD_OUTPUTS
from edgeseg.backends.base import PROTOS
from edgeseg.bench.result import LATENCY_KEYS, BenchResult, ModelBench
from edgeseg.errors import EdgesegError
from edgeseg.evaluate import EvalResult
from edgeseg.fileio import is_number, read_json, write_bytes_atomic
from edgeseg.quantize import SimilarityReport
from edgeseg.report.plots import pyplot
from edgeseg.report.tables import find_eval

FAMILY_START = "<!-- family:start -->"
FAMILY_END = "<!-- family:end -->"
SPEED_STAGES = LATENCY_KEYS
HEAD_KINDS = (*HEAD_OUTPUTS, PROTOS)  # the head outputs a cosine row names, and protos
DASH = "-"


# ------------------------------------------------------------------------------------------------- types


@dataclass
class Speed:
    """One build (FP32 or INT8) of one architecture, from its bench JSON entry: p50 ms per stage on one
    thread (``total`` spans them), p90 of the total, images/s with N worker threads and the p50 latency under
    that load."""

    model: str
    size_mb: float | None
    stages_p50_ms: dict[str, float]
    total_p90_ms: float | None
    ips: dict[int, float]
    loaded_latency_p50_ms: dict[int, float]
    objects_mean: float | None = None

    @classmethod
    def of(cls, m: ModelBench) -> Speed:
        return cls(
            model=Path(m.model).name,
            size_mb=m.size_mb,
            stages_p50_ms={s: m.latency_ms[s].p50 for s in SPEED_STAGES if s in m.latency_ms},
            total_p90_ms=m.latency_ms["total"].p90 if "total" in m.latency_ms else None,
            ips=dict(m.throughput_ips.workers),
            loaded_latency_p50_ms=dict(m.throughput_latency_p50_ms.workers),
            objects_mean=m.objects_mean,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Speed:
        return cls(
            model=str(d["model"]),
            size_mb=d.get("size_mb"),
            stages_p50_ms=dict(d["stages_p50_ms"]),
            total_p90_ms=d.get("total_p90_ms"),
            ips={int(k): v for k, v in d["ips"].items()},
            loaded_latency_p50_ms={int(k): v for k, v in d.get("loaded_latency_p50_ms", {}).items()},
            objects_mean=d.get("objects_mean"),
        )

    @property
    def total_ms(self) -> float | None:
        return self.stages_p50_ms.get("total")


@dataclass
class FamilyModel:
    """One row: what the architecture is, how it was measured, FP32 and INT8 side by side.

    ``weights``: "random init from ..." (``edgeseg.weights``) or the trained checkpoint's name; ``images``:
    how many images each step used (calibration, report, bench, warmup, val); ``accuracy``: precision ->
    {"box": mAP50-95, "mask": mAP50-95} (fractions; trained checkpoints only); ``cosines``: head output ->
    INT8-vs-float cosine from the quantize report; ``seconds``: wall time of the steps this run made."""

    name: str
    weights: str
    trained: bool
    imgsz: tuple[int, int]
    classes: int
    params: int
    gflops: float
    conf: float | None
    fp32: Speed | None
    int8: Speed | None
    cosines: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    images: dict[str, int | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FamilyModel:
        speed = {k: Speed.from_dict(d[k]) if d.get(k) else None for k in ("fp32", "int8")}
        return cls(
            name=str(d["name"]),
            weights=str(d["weights"]),
            trained=bool(d["trained"]),
            imgsz=tuple(d["imgsz"]),
            classes=int(d["classes"]),
            params=int(d["params"]),
            gflops=float(d["gflops"]),
            conf=d.get("conf"),
            **speed,
            cosines=dict(d.get("cosines") or {}),
            accuracy=dict(d.get("accuracy") or {}),
            images=dict(d.get("images") or {}),
            seconds=dict(d.get("seconds") or {}),
        )

    def speedup(self, workers: int | None = None) -> float | None:
        """INT8 over FP32: 1-thread latency p50 ratio (``workers`` None) or images/s ratio with N workers."""
        if self.fp32 is None or self.int8 is None:
            return None
        if workers is None:
            f, q = self.fp32.total_ms, self.int8.total_ms
            return f / q if is_number(f) and is_number(q) and q else None
        f, q = self.fp32.ips.get(workers), self.int8.ips.get(workers)
        return q / f if is_number(f) and is_number(q) and f else None

    def min_cosine(self, kind: str) -> float | None:
        """The lowest cosine over the strides of one head kind (``protos``: the one output)."""
        values = [c for name, c in self.cosines.items() if name == kind or name.startswith(f"{kind}_stride")]
        return min(values) if values else None


@dataclass
class FamilyResult:
    """``family.json``: the machine (from the first bench, load average at the end from the last), the input
    size, every row, and the total wall time of the steps the run made."""

    machine: dict[str, Any]
    imgsz: int
    models: list[FamilyModel]
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_family(path: str | os.PathLike) -> FamilyResult:
    """A ``family.json`` written by ``benchmarks/family.py``, or a one-line EdgesegError naming it."""
    doc = read_json(path, "family")
    try:
        return FamilyResult(
            machine=dict(doc.get("machine") or {}),
            imgsz=int(doc["imgsz"]),
            models=[FamilyModel.from_dict(m) for m in doc["models"]],
            seconds=doc.get("seconds"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EdgesegError(f"not a family JSON ({type(exc).__name__}: {exc})", path) from None


@dataclass(frozen=True)
class FamilyInputs:
    """What one row is made of: the bench JSON of its FP32 and INT8 builds (side by side), the quantize
    similarity report, val results (trained checkpoints), the graph's GFLOPs, the ``edgeseg.weights`` words
    (None: trained) and the calibration image count (the INT8 model's ``edgeseg.quantization`` metadata)."""

    name: str
    bench: BenchResult
    gflops: float
    weights: str | None = None
    similarity: SimilarityReport | None = None
    val: Sequence[EvalResult] = ()
    calibration_images: int | None = None
    seconds: Mapping[str, float] = field(default_factory=dict)


def family_model(inputs: FamilyInputs) -> FamilyModel:
    """The row of one architecture."""
    bench = inputs.bench
    fp32 = next((m for m in bench.models if not m.int8), None)
    int8 = next((m for m in bench.models if m.int8), None)
    shown = fp32 or int8
    if shown is None:
        raise EdgesegError(f"{inputs.name}: the bench results hold no model")
    accuracy = {}
    for key, m in (("fp32", fp32), ("int8", int8)):
        r = find_eval(inputs.val, m.model) if m is not None else None
        if r is not None:
            accuracy[key] = {"box": r.box_map50_95, "mask": r.mask_map50_95}
    val_images = {r.images for r in inputs.val}
    images = {
        "calibration": inputs.calibration_images,
        "report": len(inputs.similarity.images) if inputs.similarity else None,
        "bench": bench.settings.images,
        "warmup": bench.settings.warmup,
        "val": val_images.pop() if len(val_images) == 1 else None,
    }
    return FamilyModel(
        name=inputs.name,
        weights=inputs.weights or (shown.source or Path(shown.model).name),
        trained=inputs.weights is None,
        imgsz=tuple(shown.imgsz),
        classes=shown.classes,
        params=shown.params,
        gflops=round(inputs.gflops, 2),
        conf=bench.settings.conf,
        fp32=Speed.of(fp32) if fp32 else None,
        int8=Speed.of(int8) if int8 else None,
        cosines=inputs.similarity.output_cosines() if inputs.similarity else {},
        accuracy=accuracy,
        images=images,
        seconds=dict(inputs.seconds),
    )


# ---------------------------------------------------------------------------------------------- Markdown


def _fmt(v: Any, digits: int = 1) -> str:
    return f"{v:.{digits}f}" if is_number(v) else DASH


def _map(m: FamilyModel, key: str) -> str:
    a = m.accuracy.get(key)
    return f"{a['box'] * 100:.1f}/{a['mask'] * 100:.1f}" if a else f"{DASH} ⁴"


def _lat_tp(s: Speed | None, workers: int) -> str:
    if s is None:
        return DASH
    latency = s.total_ms if workers == 1 else s.loaded_latency_p50_ms.get(workers)
    ips = s.ips.get(workers)
    return f"{_fmt(latency)} ms / {_fmt(ips, 2)} img/s" if is_number(latency) and is_number(ips) else DASH


def _label(m: FamilyModel) -> str:
    return f"{m.name} (trained)" if m.trained else m.name


def _workers(result: FamilyResult) -> int:
    """The largest worker count every row was measured with (the multi-thread columns)."""
    counts = [set(s.ips) for m in result.models for s in (m.fp32, m.int8) if s is not None]
    common = set.intersection(*counts) if counts else set()
    return max(common) if common else 1


def family_table(result: FamilyResult) -> list[str]:
    """The seed's table, one row per architecture, FP32 and INT8 side by side."""
    n = _workers(result)
    lines = [
        "| model | size (px) | classes | params (M) ¹ | GFLOPs ¹ | float box/mask mAP50-95 | INT8 box/mask mAP50-95 "
        f"| 1 thread FP32 ² | 1 thread INT8 ² | {n} workers FP32 ³ | {n} workers INT8 ³ |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for m in result.models:
        lines.append(
            f"| {_label(m)} | {m.imgsz[0]}×{m.imgsz[1]} | {m.classes} | {m.params / 1e6:.2f} | {m.gflops:.1f} "
            f"| {_map(m, 'fp32')} | {_map(m, 'int8')} | {_lat_tp(m.fp32, 1)} | {_lat_tp(m.int8, 1)} "
            f"| {_lat_tp(m.fp32, n)} | {_lat_tp(m.int8, n)} |"
        )
    return lines


def _ratio(v: float | None) -> str:
    return f"{v:.2f}×" if is_number(v) else DASH


def _stage(s: Speed | None, *stages: str) -> float | None:
    if s is None or not all(is_number(s.stages_p50_ms.get(k)) for k in stages):
        return None
    return sum(s.stages_p50_ms[k] for k in stages)


def int8_table(result: FamilyResult) -> list[str]:
    """Per architecture: inference and decode p50, the INT8 speed-ups, and the head cosines."""
    n = _workers(result)
    lines = [
        "| model | inference p50 FP32 / INT8 (ms) | INT8 speed-up, 1 thread | INT8 speed-up, "
        f"{n} workers | decode + masks p50 FP32 / INT8 (ms) ⁵ | head cosine INT8 vs FP32: cls / box / mc / protos ⁶ |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for m in result.models:
        cos = " / ".join(_fmt(m.min_cosine(k), 3) for k in HEAD_KINDS)
        lines.append(
            f"| {_label(m)} | {_fmt(_stage(m.fp32, 'inference'))} / {_fmt(_stage(m.int8, 'inference'))} "
            f"| {_ratio(m.speedup())} | {_ratio(m.speedup(n))} "
            f"| {_fmt(_stage(m.fp32, 'decode', 'masks'), 2)} / {_fmt(_stage(m.int8, 'decode', 'masks'), 2)} "
            f"| {cos} |"
        )
    return lines


def _counts(result: FamilyResult) -> str:
    """ "yolov8n-seg 32/4/64" per row: calibration / report / bench images."""
    parts = []
    for m in result.models:
        c = m.images
        parts.append(f"{_label(m)} {c.get('calibration') or '?'}/{c.get('report') or '?'}/{c.get('bench') or '?'}")
    return "; ".join(parts)


def _machine_clause(machine: Mapping[str, Any]) -> str:
    dot = machine.get("int8_dot_instructions")
    dots = "" if dot is None else (f", int8 dot products: {', '.join(dot)}" if dot else ", no int8 dot-product instructions")
    return (
        f"{machine.get('cpu') or '?'}, {machine.get('usable_cores') or '?'} usable cores{dots}; ONNX Runtime "
        f"{machine.get('onnxruntime') or '?'}; load average {machine.get('loadavg_start')} at the start, "
        f"{machine.get('loadavg_end')} at the end; {_dates(machine)}"
    )


def _dates(machine: Mapping[str, Any]) -> str:
    start, end = machine.get("date_utc") or "", machine.get("date_utc_end") or ""
    return f"{start} to {end}" if start and end and end != start else start


def family_notes(result: FamilyResult) -> list[str]:
    random_rows = [m for m in result.models if not m.trained]
    trained = [m for m in result.models if m.trained]
    confs = sorted({m.conf for m in random_rows if is_number(m.conf)})
    n = _workers(result)
    notes = [
        "1. Params: elements of the float ONNX initializers (BatchNorm folded). GFLOPs: multiply-accumulates of the "
        "ONNX graph's Conv, ConvTranspose and MatMul nodes × 2 (Ultralytics' convention), counted by edgeseg on the "
        "split-head export (no DFL or box decoding in the graph), the same source for every row.",
        "2. 1 thread: p50 end-to-end time of one image (letterbox → ONNX Runtime, 1 intra-op thread → decode → masks; "
        "JPEG decoding excluded) and that single worker's images/s. FP32 and INT8 of a row are measured side by side "
        "(interleaved image by image, taking turns for throughput).",
        f"3. {n} workers: {n} threads, each its own 1-intra-op-thread session, on one queue: images/s and the p50 "
        "per-image latency under that load.",
        "4. mAP (COCO evaluation by `edgeseg val`, conf 0.001, on "
        + (f"{trained[0].images.get('val') or '?'} coco128-seg images" if trained else "coco128-seg")
        + ") exists only for the trained checkpoint, which was trained on those very images (the float→INT8 "
        "difference is what it shows); the other rows have random weights and no accuracy.",
        "5. Random weights detect arbitrary things, so those rows were benchmarked at conf "
        + ("/".join(f"{c:g}" for c in confs) if confs else "?")
        + ": no object passes, and decode + masks is the threshold pass alone. Decode cost depends on the input "
        "size, the class count and the objects found, not on the backbone; the trained row shows it with real objects.",
        "6. Lowest cosine over the strides of each head, INT8 against the float model on held-out coco128-seg images "
        "(`edgeseg quantize`'s report). On random weights this measures how quantization error grows through an "
        "untrained network (BatchNorm statistics settled on two sample images, so activations are normalised as in "
        "a trained one, but errors are amplified from layer to layer more than in a trained network): compare "
        "yolov8n-seg (random) with the trained checkpoint of the same architecture before reading it as accuracy.",
        "7. Images per row, calibration / similarity report / bench: "
        + _counts(result)
        + ". Warm-up: "
        + ", ".join(sorted({f"{m.images.get('warmup')}" for m in result.models}))
        + " image(s) per session.",
        "8. Machine: "
        + _machine_clause(result.machine)
        + "."
        + (f" The run's steps took {result.seconds / 60:.0f} min." if is_number(result.seconds) else "")
        + " Rows are benchmarked one after another: FP32 and INT8 of a row side by side, but the machine's load may"
        " differ between rows (compare ratios within a row).",
    ]
    return notes


def family_section(result: FamilyResult, *, plot: str | None = None, command: str = "python benchmarks/family.py") -> list[str]:
    """The "Model family" section: intro, the seed's table, INT8 vs FP32 per architecture, notes, plot."""
    random_rows = [m.name for m in result.models if not m.trained]
    lines = [
        "## Model family",
        "",
        f"{', '.join(random_rows) or 'No architecture'} at {result.imgsz}, built from Ultralytics' model yamls with "
        "random weights (`edgeseg export yolov8s-seg.yaml`: nothing downloaded), exported, quantized and benchmarked "
        "with edgeseg's own commands: speed, size and the INT8 speed-up do not depend on trained weights. Regenerate "
        f"this section with `{command}` (from the repository root; the rest of the page comes from "
        "`python benchmarks/run_all.py`).",
        "",
    ]
    lines += family_table(result) + [""] + int8_table(result) + ["", "Notes:", ""] + family_notes(result) + [""]
    if plot:
        lines += [f"![1-thread latency against GFLOPs, FP32 and INT8]({plot})", ""]
    return lines


def splice_family(page: str, block: str) -> str:
    """``page`` with ``block`` between ``FAMILY_START`` and ``FAMILY_END``: replacing the marked section when
    there is one, else inserted before the page's first ``## `` heading (after the summary table and its
    notes), else appended."""
    marked = f"{FAMILY_START}\n{block.strip()}\n{FAMILY_END}\n"
    pattern = re.compile(re.escape(FAMILY_START) + r".*?" + re.escape(FAMILY_END) + r"\n?", re.S)
    if pattern.search(page):
        return pattern.sub(lambda _: marked, page, count=1)
    heading = re.search(r"^## ", page, re.M)
    if heading is None:
        return page.rstrip("\n") + "\n\n" + marked
    return page[: heading.start()] + marked + "\n" + page[heading.start() :]


def family_block(page: str) -> str | None:
    """The marked family section of ``page`` (markers excluded), if it has one."""
    pattern = re.compile(re.escape(FAMILY_START) + r"\n?(.*?)" + re.escape(FAMILY_END), re.S)
    found = pattern.search(page)
    return found.group(1).strip() if found else None


# ------------------------------------------------------------------------------------------ plot, files


def plot_family(plt: Any, result: FamilyResult, path: Path) -> Path:
    """1-thread latency (p50, end to end) against GFLOPs: a line per precision through the random-weight
    architectures (circles YOLOv8, squares YOLO11), the trained checkpoint as stars; log-log axes."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, colour, label in (("fp32", "#7570b3", "FP32"), ("int8", "#1b9e77", "INT8")):
        random_rows = sorted((m for m in result.models if not m.trained and getattr(m, key) is not None), key=lambda m: m.gflops)
        pts = [(m.gflops, getattr(m, key).total_ms, m) for m in random_rows if is_number(getattr(m, key).total_ms)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=colour, lw=1.2, alpha=0.7, label=f"{label}, 1 thread")
        for x, y, m in pts:
            ax.plot([x], [y], "s" if m.name.startswith("yolo11") else "o", color=colour, ms=6)
            if key == "fp32":
                ax.annotate(m.name, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        for m in result.models:
            s = getattr(m, key)
            if m.trained and s is not None and is_number(s.total_ms):
                ax.plot([m.gflops], [s.total_ms], "*", color=colour, ms=11, mfc="none", label=f"{label}, {m.name} (trained)")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    for axis, scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        scale("log")
        axis.set_major_locator(FixedLocator(nice))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("GFLOPs (ONNX graph, multiply-accumulates × 2)")
    ax.set_ylabel("ms per image, p50 end to end, 1 thread")
    ax.set_title(f"Latency vs GFLOPs at {result.imgsz} (circles YOLOv8, squares YOLO11)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def build_family_report(
    family_path: str | os.PathLike, out_dir: str | os.PathLike, *, command: str = "python benchmarks/family.py"
) -> Path:
    """Write ``family.md`` (the "Model family" section) and ``family-latency.png`` into ``out_dir``; returns
    the Markdown path. Without matplotlib the section has no plot."""
    result = read_family(family_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EdgesegError("exists and is not a directory", out)
    out.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    plot = plot_family(plt, result, out / "family-latency.png").name if plt is not None else None
    md = family_section(result, plot=plot, command=command)
    return write_bytes_atomic(out / "family.md", "\n".join(md).encode("utf-8"))
