"""The Markdown of the report: the summary table (one row per checkpoint, float and INT8 builds side by
side), its numbered notes, per-model speed, ratios, the decoder comparison and the similarity summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bench.result import BenchResult, DecoderComparison, ModelBench, ModelStream, StreamBench, StreamRun
from ..evaluate import EvalResult
from ..fileio import is_number
from ..quantize import SimilarityReport
from ..stages import INFERENCE, STAGES, STREAM_STAGES, TOTAL

DASH = "—"


def _known(value: Any) -> Any:
    """A recorded fact, or "?" when the bench JSON did not record it."""
    return "?" if value is None else value


def _fmt(v: Any, digits: int = 2, unit: str = "") -> str:
    return f"{v:.{digits}f}{unit}" if is_number(v) else DASH


# ----------------------------------------------------------------------------------------------- matching


def _same_model(a: str, b: str) -> bool:
    """Match a model between JSON files: same path, same resolved path, or same file name."""
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
    except OSError:
        pass
    return pa.name == pb.name


def find_eval(results: Sequence[EvalResult], model: str) -> EvalResult | None:
    """The val result of ``model`` (see ``_same_model``), if any."""
    return next((r for r in results if _same_model(r.model, model)), None)


@dataclass
class Row:
    """One checkpoint at one input size: its float and INT8 builds, whichever were benchmarked."""

    name: str
    float_model: ModelBench | None = None
    int8_model: ModelBench | None = None

    @property
    def described(self) -> ModelBench:
        """The build whose size/classes/params the row shows: the float one when there is one."""
        return self.float_model or self.int8_model  # type: ignore[return-value]

    @property
    def speed_model(self) -> ModelBench:
        """The build whose speed the row shows: the INT8 build when there is one (the one deployed)."""
        return self.int8_model or self.float_model  # type: ignore[return-value]


def table_rows(bench: BenchResult) -> list[Row]:
    """Float and INT8 builds of one checkpoint share a row: same source checkpoint and input size (a
    model without a recorded source is a row of its own)."""
    rows: dict[tuple[str, tuple[int, ...]], Row] = {}
    for m in bench.models:
        source = m.source or Path(m.model).stem
        row = rows.setdefault((source, tuple(m.imgsz)), Row(name=Path(m.source or m.model).stem))
        slot = "int8_model" if m.int8 else "float_model"
        if getattr(row, slot) is None:
            setattr(row, slot, m)
    return list(rows.values())


# ------------------------------------------------------------------------------------------ summary table


def _pct(v: Any) -> str:
    return f"{v * 100:.1f}" if is_number(v) else DASH  # val writes fractions; the table prints percent


def _box_mask(result: EvalResult | None) -> str:
    return f"{_pct(result.box_map50_95)}/{_pct(result.mask_map50_95)}" if result else DASH


def _lat_tp(latency_ms: Any, ips: Any) -> str:
    return f"{latency_ms:.1f} ms / {ips:.2f} img/s" if is_number(latency_ms) and is_number(ips) else DASH


def _max_threads(m: ModelBench) -> int | None:
    return max(m.throughput_ips.workers) if m.throughput_ips.workers else None


def _one_thread(m: ModelBench) -> str:
    total = m.latency_ms.get(TOTAL)
    return _lat_tp(total.p50 if total else None, m.throughput_ips.workers.get(1))


def _multi_thread(m: ModelBench) -> str:
    n = _max_threads(m)
    if n is None or n == 1:
        return DASH
    return _lat_tp(m.throughput_latency_p50_ms.workers.get(n), m.throughput_ips.workers[n]) + f", {n} threads"


def summary_table(rows: Sequence[Row], val: Sequence[EvalResult]) -> list[str]:
    lines = [
        "| model | size (px) | classes | params (M) | float box/mask mAP50-95 ⁴ | INT8 box/mask mAP50-95 ⁴ "
        "| latency / throughput, 1 thread ² | latency / throughput, multi-thread ³ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fv = find_eval(val, row.float_model.model) if row.float_model else None
        iv = find_eval(val, row.int8_model.model) if row.int8_model else None
        shown, speed = row.described, row.speed_model
        tag = " (INT8)" if row.int8_model is not None else " (FP32)"
        multi_tag = tag if _max_threads(speed) not in (None, 1) else ""
        size = f"{shown.imgsz[0]}×{shown.imgsz[1]}" if len(shown.imgsz) == 2 else DASH
        lines.append(
            f"| {row.name} | {size} | {shown.classes or DASH} | {_fmt(shown.params / 1e6)} "
            f"| {_box_mask(fv)} | {_box_mask(iv)} | {_one_thread(speed)}{tag} | {_multi_thread(speed)}{multi_tag} |"
        )
    return lines


def _evaluator_clause(val: Sequence[EvalResult]) -> str:
    """ ", with <evaluator>, conf <x>" from the val results (nothing when they do not say)."""
    names = sorted({r.evaluator for r in val if r.evaluator})
    confs = sorted({r.settings["conf"] for r in val if is_number(r.settings.get("conf"))})
    parts = ([f"with {'/'.join(names)}"] if names else []) + ([f"conf {'/'.join(map(str, confs))}"] if confs else [])
    return f" {', '.join(parts)}" if parts else ""


def _val_images(val: Sequence[EvalResult]) -> str:
    """ "126 coco128-seg images": the image counts and dataset names of the val results."""
    counts = "/".join(map(str, sorted({r.images for r in val}))) or "?"
    datasets = "/".join(sorted({Path(r.data).stem for r in val if r.data}))
    return f"{counts} {datasets} images" if datasets else f"{counts} images"


def _dot_note(dot: list[str] | None) -> str:
    """The machine's int8 dot-product instructions, as a note clause (nothing when unknown)."""
    if dot is None:
        return ""
    return f" (int8 dot products: {', '.join(dot)})" if dot else " (no int8 dot-product instructions: AVX2 only / no VNNI)"


def footnotes(bench: BenchResult, val: Sequence[EvalResult] | None, extra: Sequence[str] = ()) -> list[str]:
    """The numbered notes under the summary table; ``extra`` notes (the caller's) are numbered after them."""
    m, s = bench.machine, bench.settings
    acc = (
        f"4. box/mask mAP50-95 from `edgeseg val` (COCO evaluation{_evaluator_clause(val)}, masks at original resolution) "
        f"on {_val_images(val)}."
        if val is not None
        else "4. Accuracy columns: no `edgeseg val` results were given."
    )
    notes = [
        f"1. Machine: {_known(m.cpu)}, {_known(m.usable_cores)} usable cores{_dot_note(m.int8_dot_instructions)}; ONNX Runtime "
        f"{_known(m.onnxruntime)} (CPU execution provider), numpy {_known(m.numpy)}, OpenCV {_known(m.opencv)}; "
        f"load average {m.loadavg_start} at the start, {m.loadavg_end} at the end; {m.date_utc or ''}.",
        f"2. 1-thread latency is the p50 end-to-end time of one image (letterbox → ONNX Runtime with 1 intra-op "
        f"thread → fast decode → masks at original resolution; JPEG decoding excluded), over "
        f"{_known(s.iters)} pass(es) of {_known(s.images)} images after {_known(s.warmup)} warm-up images; "
        "OpenBLAS, OpenCV and torch are pinned to one thread. Throughput is images/s of that single worker. "
        "The models are measured side by side: interleaved image by image for latency, taking turns in chunks of "
        "16 frames for throughput, so that drift of a shared machine hits them alike.",
        f"3. Multi-thread: {max(s.threads or [1])} worker threads, each with its own ONNX Runtime session (1 intra-op thread), "
        "take images from one queue; throughput is images/s over the run, latency the p50 per-image time under that load.",
        acc,
        "5. Params: elements of the ONNX initializers (BatchNorm folded into the convolutions; quantization "
        "scales/zero points and integer shape constants excluded).",
        "6. Latency/throughput columns show the INT8 build when one was benchmarked (the build one deploys), else "
        "FP32; the per-model table below has both.",
    ]
    notes += [f"{len(notes) + 1 + i}. {text}" for i, text in enumerate(extra)]
    return ["Notes:", ""] + notes


# ---------------------------------------------------------------------------------------------- sections


def speed_table(bench: BenchResult) -> list[str]:
    threads = sorted({n for m in bench.models for n in [*m.throughput_ips.workers, *m.throughput_ips.intra_op]})
    head = "| model | precision | " + " | ".join(STAGES) + " | total p50 / p90 / p99 |"
    head += "".join(f" {n} worker{'s' if n > 1 else ''} |" for n in threads)
    head += "".join(f" 1 session, {n} intra-op |" for n in threads)
    lines = [head, "|---|---|---:|---:|---:|---:|---:|" + "---:|" * (2 * len(threads))]
    for m in bench.models:
        stages = [m.latency_ms.get(s) for s in STAGES]
        tot = m.latency_ms.get(TOTAL)
        line = f"| {Path(m.model).name} | {'INT8' if m.int8 else 'FP32'} | "
        line += " | ".join(_fmt(p.p50 if p else None) for p in stages)
        line += " | " + (f"{_fmt(tot.p50, 1)} / {_fmt(tot.p90, 1)} / {_fmt(tot.p99, 1)}" if tot else f"{DASH} / {DASH} / {DASH}") + " |"
        line += "".join(f" {_fmt(m.throughput_ips.workers.get(n))} |" for n in threads)
        line += "".join(f" {_fmt(m.throughput_ips.intra_op.get(n))} |" for n in threads)
        lines.append(line)
    return lines


def ratio_lines(rows: Sequence[Row], bench: BenchResult) -> list[str]:
    """INT8/FP32 throughput per worker count, and the share of everything but inference per model."""
    out = []
    for row in rows:
        if row.float_model is not None and row.int8_model is not None:
            f_ips, q_ips = row.float_model.throughput_ips.workers, row.int8_model.throughput_ips.workers
            for n in sorted(set(f_ips) & set(q_ips)):
                f, q = f_ips[n], q_ips[n]
                if f:
                    out.append(
                        f"- {row.name}: INT8 end-to-end throughput is **{q / f:.2f}×** FP32 with {n} worker thread(s) "
                        f"({q:.2f} vs {f:.2f} img/s)."
                    )
    for m in bench.models:
        if not all(s in m.latency_ms for s in STAGES):
            continue
        inf = m.latency_ms[INFERENCE].p50
        other = {s: m.latency_ms[s].p50 for s in STAGES if s != INFERENCE}
        if inf:
            slowest = max(other, key=other.get)
            out.append(
                f"- {Path(m.model).name}: everything but inference is **{sum(other.values()) / inf * 100:.1f} %** of "
                f"inference time (p50, 1 thread); slowest remaining stage: **{slowest}** ({other[slowest]:.2f} ms p50)."
            )
    return out


def decoder_section(d: DecoderComparison | None) -> list[str]:
    if d is None:
        return ["No decoder comparison in the bench JSON."]
    lines = [
        f"Model `{Path(d.model).name}`, {d.images} images, {_fmt(d.mean_objects, 1)} objects per image on average "
        f"(max {_known(d.max_objects)}); medians of per-image times on one thread. Each decoder gets the same raw outputs "
        "(inference and Ultralytics' tensor layout prepared outside the timed region) and runs back to back on them; "
        "decode includes threshold, box decoding, NMS and masks at original resolution.",
        "",
        "| decoder | ms per image (median) | vs fast |",
        "|---|---:|---:|",
    ]
    for v, label in (
        (d.fast_ms, "edgeseg fast decoder"),
        (d.reference_ms, "reference decoder (public pipeline)"),
        (d.ultralytics_ms, "Ultralytics post-processing (NMS + process_mask_native)"),
    ):
        ratio = f"{v / d.fast_ms:.1f}×" if is_number(v) and d.fast_ms else DASH
        lines.append(f"| {label} | {_fmt(v)} | {ratio} |")
    if d.note:
        lines += ["", f"Note: {d.note}."]
    if d.by_objects:
        lines += ["", "| objects per image | images | fast ms | reference ms | Ultralytics ms |", "|---|---:|---:|---:|---:|"]
        for b in d.by_objects:
            lines.append(f"| {b.objects} | {b.images} | {_fmt(b.fast_ms)} | {_fmt(b.reference_ms)} | {_fmt(b.ultralytics_ms)} |")
    fits = [f"{k} {_fmt(v.at_20_objects_ms)} ms" for k, v in d.fit.items() if v is not None]
    if fits:
        lines += ["", "Least-squares fit of ms against object count, evaluated at 20 objects: " + ", ".join(fits) + "."]
    if is_number(d.fast_default_blas_ms):
        lines += [
            "",
            f"With the BLAS library's default thread count (not pinned to one thread) the fast decoder took "
            f"{_fmt(d.fast_default_blas_ms)} ms per image (median).",
        ]
    parts = [f"{k} {v}/{d.images}" for k, v in d.objects_agree.items() if v is not None]
    if parts:
        lines += ["", "Images where the object count equals the fast decoder's: " + ", ".join(parts) + "."]
    return lines


def _precision(bench: BenchResult, model: str) -> str:
    m = next((m for m in bench.models if m.model == model), None)
    return DASH if m is None else ("INT8" if m.int8 else "FP32")


def _p50_p99(p: Any) -> str:
    return f"{_fmt(p.p50, 1)} / {_fmt(p.p99, 1)}" if p is not None else DASH


def _same_as_sequential(m: ModelStream, r: StreamRun) -> str:
    sequential = m.run("sequential")
    if r.detections_sha1 is None or sequential is None or sequential.detections_sha1 is None:
        return DASH
    if r is sequential:
        return "(the reference)"
    return "yes" if r.detections_sha1 == sequential.detections_sha1 else "**no**"


def _limit_line(m: ModelStream, cores: int | None) -> str | None:
    """What bounds the runner: the CPU work of a frame besides inference (the sequential loop's p50s)
    competes with inference once the workers keep every core busy."""
    sequential = m.run("sequential")
    if sequential is None or not is_number(sequential.stages_ms.get(INFERENCE)):
        return None
    inference = sequential.stages_ms[INFERENCE]
    other = {s: v for s, v in sequential.stages_ms.items() if s != INFERENCE and is_number(v)}
    rest = sum(other.values())
    saturating = [r for r in m.runs if r.mode == "runner" and is_number(r.vs_bare) and r.workers >= (cores or 0)]
    measured = [f"{r.workers} worker(s) {r.vs_bare * 100:.0f} %" for r in saturating]
    return (
        f"- {m.name}: besides {inference:.1f} ms of inference a frame costs ≈{rest:.1f} ms of CPU ("
        + ", ".join(f"{s} {v:.1f}" for s, v in other.items())
        + f"; sequential loop, p50). Once the workers keep all {_known(cores)} cores busy that work competes with inference, "
        f"so the runner can reach at most ≈{inference / (inference + rest) * 100:.0f} % of bare inference"
        + (f"; measured: {', '.join(measured)}." if measured else ".")
    )


def stream_section(bench: BenchResult) -> list[str]:
    """``edgeseg bench --video``: frames/s and ratios per configuration, per-stage p50s, what limits the runner."""
    st: StreamBench | None = bench.stream
    if st is None:
        return []
    rate = f" at {st.fps:g} frames/s" if is_number(st.fps) else ""
    lines = [
        f"Clip `{Path(st.clip).name}`: {st.frames} frames of {st.size[0]}×{st.size[1]}{rate}, {st.passes} pass(es). "
        "Sequential loop: read → pipeline (1 intra-op thread) → draw → write, on one thread. Runner: the pipelined "
        "runner with N workers (each its own 1-intra-op-thread session), reading on its reader thread, drawing and "
        "writing on the consuming thread. Both write an annotated video. Bare inference: N threads doing nothing but "
        "run the ONNX Runtime session on pre-letterboxed frames: the ceiling. Every configuration reads its own copy of "
        f"the clip; they take turns of {st.turn_frames} frames in a rotating order, so drift of a shared machine hits "
        "them alike. Latency: pipeline time per frame (bare: the session run); age: read to detections ready.",
        "",
        "| model | precision | configuration | frames/s | × sequential | % of bare | latency p50 / p99 ms | age p50 / p99 ms "
        "| same detections as sequential |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in st.models:
        precision = _precision(bench, m.model)
        for r in m.runs:
            ratio = f"{r.vs_sequential:.2f}×" if is_number(r.vs_sequential) else DASH
            share = f"{r.vs_bare * 100:.0f} %" if is_number(r.vs_bare) else DASH
            lines.append(
                f"| {m.name} | {precision} | {r.label} | {_fmt(r.fps)} | {ratio} | {share} | {_p50_p99(r.latency_ms)} "
                f"| {_p50_p99(r.age_ms)} | {_same_as_sequential(m, r)} |"
            )
    lines += [
        "",
        "Per-stage p50, ms per frame (a runner's pipeline stages are timed inside its workers, under load):",
        "",
        "| model | configuration | " + " | ".join(STREAM_STAGES) + " |",
        "|---|---|" + "---:|" * len(STREAM_STAGES),
    ]
    for m in st.models:
        for r in m.runs:
            lines.append(f"| {m.name} | {r.label} | " + " | ".join(_fmt(r.stages_ms.get(s)) for s in STREAM_STAGES) + " |")
    limits = [line for m in st.models if (line := _limit_line(m, bench.machine.usable_cores))]
    if limits:
        lines += ["", "What limits the runner:", ""] + limits
    return lines


def similarity_section(report: SimilarityReport) -> list[str]:
    """Cosine similarity of INT8 vs float tensors from the quantize report: outputs, then the weakest layers."""
    lines = []
    if report.outputs:
        lines += ["| output | cosine |", "|---|---:|"] + [f"| {s.name} | {s.cosine:.5f} |" for s in report.outputs] + [""]
    weakest = sorted(report.nodes, key=lambda s: s.cosine)[:5]
    lines.append(f"{len(report.nodes)} quantized tensors; weakest: " + ", ".join(f"`{s.node}` {s.cosine:.4f}" for s in weakest) + ".")
    return lines
