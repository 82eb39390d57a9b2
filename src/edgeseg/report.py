"""``edgeseg report``: the seed's performance table, with footnotes, and PNG plots, from the JSON files that
``edgeseg val``, ``edgeseg bench`` and ``edgeseg quantize`` write.

Inputs are read defensively: a missing optional piece (val, INT8 model, quantize report, Ultralytics
timing, matplotlib) leaves a dash in the table and a note, never a crash.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EdgesegError
from .fileio import write_bytes_atomic

DASH = "—"
STAGE_COLOURS = {"preprocess": "#8da0cb", "inference": "#66c2a5", "decode": "#fc8d62", "masks": "#e78ac3"}
DECODER_COLOURS = {"fast": "#1b9e77", "reference": "#7570b3", "ultralytics": "#d95f02"}
_NAME_KEYS = ("node", "name", "output", "tensor", "layer", "op")
_COS_KEYS = ("cosine", "cos", "cosine_similarity", "cos_sim", "similarity")


# -------------------------------------------------------------------------------------------------- input


def load_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file or raise a one-line EdgesegError naming it."""
    p = Path(path)
    if not p.exists():
        raise EdgesegError(f"no such file (expected the {what} JSON)", p)
    if p.is_dir():
        raise EdgesegError(f"is a directory, expected the {what} JSON", p)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EdgesegError(f"not a text file (expected the {what} JSON)", p) from None
    except json.JSONDecodeError as exc:
        raise EdgesegError(f"not valid JSON ({exc.msg} at line {exc.lineno})", p) from None


def _models(doc: Any, what: str, path: str | os.PathLike) -> list[dict]:
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) and "model" in m for m in models):
        raise EdgesegError(f'not an edgeseg {what} JSON (expected {{"models": [{{"model": ...}}, ...]}})', path)
    return models


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


def find_entry(entries: Sequence[Mapping[str, Any]], model: str) -> Mapping[str, Any] | None:
    for e in entries:
        if _same_model(str(e.get("model", "")), model):
            return e
    return None


def output_rows(doc: Any) -> list[tuple[str, float]]:
    """(output, cosine) rows of the model outputs, when the quantize report lists them apart."""
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list):
        return similarity_rows(doc["outputs"])
    return []


def similarity_rows(doc: Any) -> list[tuple[str, float]]:
    """(name, cosine) rows from a quantize report: a list of rows, or a dict holding one (under any key,
    searched depth-first). A row is a dict with a name-like key (node/name/output/...) and a cosine-like
    key (cosine/cos/...)."""

    def rows_of(items: list) -> list[tuple[str, float]]:
        out = []
        for row in items:
            if not isinstance(row, dict):
                continue
            name = next((str(row[k]) for k in _NAME_KEYS if k in row and row[k] is not None), None)
            cos = next((row[k] for k in _COS_KEYS if k in row), None)
            if name is None or not isinstance(cos, (int, float)) or isinstance(cos, bool) or math.isnan(cos):
                continue
            out.append((name, float(cos)))
        return out

    if isinstance(doc, dict):  # edgeseg quantize: {"outputs": [...], "nodes": [...]}: per-layer rows first
        for key in ("nodes", "layers", "per_layer", "rows"):
            if isinstance(doc.get(key), list) and rows_of(doc[key]):
                return rows_of(doc[key])
    stack = [doc]
    while stack:
        item = stack.pop(0)
        if isinstance(item, list):
            rows = rows_of(item)
            if rows:
                return rows
            stack.extend(x for x in item if isinstance(x, (dict, list)))
        elif isinstance(item, dict):
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return []


# -------------------------------------------------------------------------------------------------- table


def _model_stats(entry: Mapping[str, Any]) -> dict[str, Any]:
    """params/int8/imgsz/classes from the bench entry, else from the ONNX file if it still exists."""
    stats = {k: entry.get(k) for k in ("params", "int8", "imgsz", "classes", "source")}
    path = Path(str(entry["model"]))
    if any(stats[k] is None for k in ("params", "int8")) and path.is_file():
        from .bench import onnx_model_stats

        s = onnx_model_stats(path)
        stats["params"] = stats["params"] if stats["params"] is not None else s.params
        stats["int8"] = stats["int8"] if stats["int8"] is not None else s.int8
    if stats["int8"] is None:
        stats["int8"] = "int8" in path.name.lower()
    if (stats["imgsz"] is None or stats["classes"] is None) and path.is_file():
        try:
            from .runtime import read_model_info

            info = read_model_info(path)
            stats["imgsz"] = stats["imgsz"] or list(info.imgsz)
            stats["classes"] = stats["classes"] or info.num_classes
            stats["source"] = stats["source"] or info.source
        except EdgesegError:
            pass
    return stats


def _family_key(entry: Mapping[str, Any], stats: Mapping[str, Any]) -> tuple[str, str]:
    """Float and INT8 builds of one checkpoint share a row: same source checkpoint and input size."""
    source = stats.get("source")
    if not source:
        stem = Path(str(entry["model"])).stem.lower()
        for token in ("-int8", "_int8", ".int8", "int8", "-quant", "_quant", "-qdq", "_qdq"):
            stem = stem.replace(token, "")
        source = stem
    return str(source), json.dumps(stats.get("imgsz"))


@dataclass
class Row:
    name: str
    float_entry: Mapping[str, Any] | None = None
    int8_entry: Mapping[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def speed_entry(self) -> Mapping[str, Any]:
        """The model whose speed the table shows: the INT8 build when there is one (what the seed deploys)."""
        return self.int8_entry or self.float_entry  # type: ignore[return-value]


def table_rows(bench: Mapping[str, Any]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for entry in bench["models"]:
        stats = _model_stats(entry)
        key = _family_key(entry, stats)
        row = rows.setdefault(key, Row(name=Path(str(stats.get("source") or entry["model"])).stem))
        slot = "int8_entry" if stats["int8"] else "float_entry"
        if getattr(row, slot) is None:
            setattr(row, slot, entry)
            if not row.stats or slot == "float_entry":
                row.stats = stats
    return list(rows.values())


def _pct(v: Any) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
        return DASH
    return f"{v * 100:.1f}" if v <= 1.0 else f"{v:.1f}"  # val writes fractions; the seed prints percent


def _box_mask(val_entry: Mapping[str, Any] | None) -> str:
    if not val_entry:
        return DASH
    return f"{_pct(val_entry.get('box_map50_95'))}/{_pct(val_entry.get('mask_map50_95'))}"


def _lat_tp(latency_ms: Any, ips: Any) -> str:
    if not isinstance(latency_ms, (int, float)) or not isinstance(ips, (int, float)):
        return DASH
    return f"{latency_ms:.1f} ms / {ips:.2f} img/s"


def _max_threads(entry: Mapping[str, Any], mode: str = "workers") -> str | None:
    keys = [k for k in entry.get("throughput_ips", {}).get(mode, {}) if str(k).isdigit()]
    return max(keys, key=int) if keys else None


def _one_thread(entry: Mapping[str, Any]) -> str:
    lat = entry.get("latency_ms", {}).get("total", {}).get("p50")
    return _lat_tp(lat, entry.get("throughput_ips", {}).get("workers", {}).get("1"))


def _multi_thread(entry: Mapping[str, Any]) -> str:
    n = _max_threads(entry)
    if n is None or n == "1":
        return DASH
    lat = entry.get("throughput_latency_p50_ms", {}).get("workers", {}).get(n)
    return _lat_tp(lat, entry["throughput_ips"]["workers"][n]) + f", {n} threads"


def _params(stats: Mapping[str, Any]) -> str:
    p = stats.get("params")
    return f"{p / 1e6:.2f}" if isinstance(p, (int, float)) else DASH


def _size(stats: Mapping[str, Any]) -> str:
    s = stats.get("imgsz")
    return f"{s[0]}×{s[1]}" if isinstance(s, list) and len(s) == 2 else DASH


def _val_images(val_models: Sequence[Mapping[str, Any]]) -> str:
    counts = sorted({int(m["images"]) for m in val_models if isinstance(m.get("images"), (int, float))})
    return "/".join(map(str, counts)) if counts else "?"


def seed_table(rows: Sequence[Row], val_models: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| model | size (px) | classes | params (M) | float box/mask mAP50-95 ⁴ | INT8 box/mask mAP50-95 ⁴ "
        "| latency / throughput, 1 thread ² | latency / throughput, multi-thread ³ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fv = find_entry(val_models, str(row.float_entry["model"])) if row.float_entry else None
        iv = find_entry(val_models, str(row.int8_entry["model"])) if row.int8_entry else None
        speed = row.speed_entry
        tag = " (INT8)" if row.int8_entry is not None else " (FP32)"
        lines.append(
            f"| {row.name} | {_size(row.stats)} | {row.stats.get('classes') or DASH} | {_params(row.stats)} "
            f"| {_box_mask(fv)} | {_box_mask(iv)} | {_one_thread(speed)}{tag} | {_multi_thread(speed)}{tag if _max_threads(speed) not in (None, '1') else ''} |"
        )
    return lines


# ---------------------------------------------------------------------------------------------- sections


def _fmt(v: Any, digits: int = 2, unit: str = "") -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or (isinstance(v, float) and math.isnan(v)):
        return DASH
    return f"{v:.{digits}f}{unit}"


def speed_table(bench: Mapping[str, Any]) -> list[str]:
    entries = bench["models"]
    threads = sorted({int(k) for e in entries for m in ("workers", "intra_op") for k in e.get("throughput_ips", {}).get(m, {})})
    head = "| model | precision | preprocess | inference | decode | masks | total p50 / p90 / p99 |"
    head += "".join(f" {n} worker{'s' if n > 1 else ''} |" for n in threads)
    head += "".join(f" 1 session, {n} intra-op |" for n in threads)
    lines = [head, "|---|---|---:|---:|---:|---:|---:|" + "---:|" * (2 * len(threads))]
    for e in entries:
        lat = e.get("latency_ms", {})
        p50 = {s: lat.get(s, {}).get("p50") for s in ("preprocess", "inference", "decode", "masks")}
        tot = lat.get("total", {})
        ips = e.get("throughput_ips", {})
        line = f"| {Path(str(e['model'])).name} | {'INT8' if _model_stats(e)['int8'] else 'FP32'} | "
        line += " | ".join(_fmt(p50[s]) for s in p50)
        line += f" | {_fmt(tot.get('p50'), 1)} / {_fmt(tot.get('p90'), 1)} / {_fmt(tot.get('p99'), 1)} |"
        line += "".join(f" {_fmt(ips.get('workers', {}).get(str(n)))} |" for n in threads)
        line += "".join(f" {_fmt(ips.get('intra_op', {}).get(str(n)))} |" for n in threads)
        lines.append(line)
    return lines


def ratio_lines(rows: Sequence[Row], bench: Mapping[str, Any]) -> list[str]:
    """The issue's targets, as measured: INT8/FP32 throughput and non-inference share of inference."""
    out = []
    for row in rows:
        if row.float_entry is not None and row.int8_entry is not None:
            for n in sorted(set(row.float_entry.get("throughput_ips", {}).get("workers", {}))
                            & set(row.int8_entry.get("throughput_ips", {}).get("workers", {})), key=int):
                f = row.float_entry["throughput_ips"]["workers"][n]
                q = row.int8_entry["throughput_ips"]["workers"][n]
                if f:
                    out.append(f"- {row.name}: INT8 end-to-end throughput is **{q / f:.2f}×** FP32 with {n} worker thread(s) "
                               f"({q:.2f} vs {f:.2f} img/s; target ≥ 2.3× at 2 threads).")
    for e in bench["models"]:
        lat = e.get("latency_ms", {})
        try:
            inf = lat["inference"]["p50"]
            other = {s: lat[s]["p50"] for s in ("preprocess", "decode", "masks")}
        except (KeyError, TypeError):
            continue
        if inf:
            slowest = max(other, key=other.get)
            out.append(
                f"- {Path(str(e['model'])).name}: everything but inference is **{sum(other.values()) / inf * 100:.1f} %** of "
                f"inference time (p50, 1 thread; target ≤ 10 %); slowest remaining stage: **{slowest}** "
                f"({other[slowest]:.2f} ms p50)."
            )
    return out


def decoder_section(d: Mapping[str, Any] | None) -> list[str]:
    if not d:
        return ["No decoder comparison in the bench JSON."]
    lines = [
        f"Model `{Path(str(d.get('model', '?'))).name}`, {d.get('images', '?')} images, "
        f"{_fmt(d.get('mean_objects'), 1)} objects per image on average (max {d.get('max_objects', '?')}); "
        "medians of per-image times on one thread. Each decoder gets the same raw outputs (inference and "
        "Ultralytics' tensor layout prepared outside the timed region) and runs back to back on them; decode "
        "includes threshold, box decoding, NMS and masks at original resolution.",
        "",
        "| decoder | ms per image (median) | vs fast |",
        "|---|---:|---:|",
    ]
    fast = d.get("fast_ms")
    for key, label in (("fast", "edgeseg fast decoder"), ("reference", "reference decoder (public pipeline)"),
                       ("ultralytics", "Ultralytics post-processing (NMS + process_mask_native)")):
        v = d.get(f"{key}_ms")
        ratio = f"{v / fast:.1f}×" if isinstance(v, (int, float)) and fast else DASH
        lines.append(f"| {label} | {_fmt(v)} | {ratio} |")
    if d.get("note"):
        lines += ["", f"Note: {d['note']}."]
    bins = d.get("by_objects") or []
    if bins:
        lines += ["", "| objects per image | images | fast ms | reference ms | Ultralytics ms |", "|---|---:|---:|---:|---:|"]
        for b in bins:
            lines.append(f"| {b.get('objects')} | {b.get('images')} | {_fmt(b.get('fast_ms'))} | "
                         f"{_fmt(b.get('reference_ms'))} | {_fmt(b.get('ultralytics_ms'))} |")
    fit = d.get("fit") or {}
    fits = [f"{k} {_fmt(v.get('at_20_objects_ms'))} ms" for k, v in fit.items() if isinstance(v, dict)]
    if fits:
        lines += ["", "Least-squares fit of ms against object count, evaluated at 20 objects: " + ", ".join(fits) + "."]
    if isinstance(d.get("fast_default_blas_ms"), (int, float)):
        lines += ["", f"With the BLAS library's default thread count (not pinned to one thread) the fast decoder took "
                      f"{_fmt(d['fast_default_blas_ms'])} ms per image (median)."]
    agree = d.get("objects_agree") or {}
    if agree:
        parts = [f"{k} {v}/{d.get('images')}" for k, v in agree.items() if v is not None]
        lines += ["", "Images where the object count equals the fast decoder's: " + ", ".join(parts) + "."]
    return lines


def similarity_section(rows: Sequence[tuple[str, float]], outputs: Sequence[tuple[str, float]]) -> list[str]:
    """Cosine similarity of INT8 vs float tensors from the quantize report: outputs, then the weakest layers."""
    lines = []
    if outputs:
        lines += ["| output | cosine |", "|---|---:|"] + [f"| {n} | {c:.5f} |" for n, c in outputs] + [""]
    weakest = sorted(rows, key=lambda r: r[1])[:5]
    lines.append(f"{len(rows)} quantized tensors; weakest: " + ", ".join(f"`{n}` {c:.4f}" for n, c in weakest) + ".")
    return lines


def _evaluator(val_models: Sequence[Mapping[str, Any]]) -> str:
    names = sorted({str(m["evaluator"]) for m in val_models if m.get("evaluator")})
    confs = sorted({m["conf"] for m in val_models if isinstance(m.get("conf"), (int, float))})
    parts = ([f"with {'/'.join(names)}"] if names else []) + ([f"conf {'/'.join(map(str, confs))}"] if confs else [])
    return f" {', '.join(parts)}" if parts else ""


def _dot_note(dot: list[str] | None) -> str:
    """The machine's int8 dot-product instructions, as a note clause (nothing when unknown)."""
    if dot is None:
        return ""
    return f" (int8 dot products: {', '.join(dot)})" if dot else " (no int8 dot-product instructions: AVX2 only / no VNNI)"


def footnotes(bench: Mapping[str, Any], val_models: Sequence[Mapping[str, Any]], val_given: bool) -> list[str]:
    m = bench.get("machine", {})
    s = bench.get("settings", {})
    n_threads = max(s.get("threads") or [1])
    acc = (
        f"4. box/mask mAP50-95 from `edgeseg val` (COCO evaluation{_evaluator(val_models)}, masks at original resolution) "
        f"on {_val_images(val_models)} coco128-seg images. The shared checkpoint was trained on these very images, so "
        "the absolute values say nothing about generalisation; the float→INT8 difference is what matters."
        if val_given else "4. Accuracy columns: no `edgeseg val` results were given."
    )
    return [
        "Notes:",
        "",
        f"1. Machine: {m.get('cpu', '?')}, {m.get('usable_cores', '?')} usable cores"
        f"{_dot_note(m.get('int8_dot_instructions', None))}; ONNX Runtime "
        f"{m.get('onnxruntime', '?')} (CPU execution provider), numpy {m.get('numpy', '?')}, OpenCV {m.get('opencv', '?')}; "
        f"load average {m.get('loadavg_start')} at the start, {m.get('loadavg_end')} at the end; {m.get('date_utc', '')}.",
        f"2. 1-thread latency is the p50 end-to-end time of one image (letterbox → ONNX Runtime with 1 intra-op "
        f"thread → fast decode → masks at original resolution; JPEG decoding excluded), over "
        f"{s.get('iters', '?')} pass(es) of {s.get('images', '?')} images after {s.get('warmup', '?')} warm-up images; "
        "OpenBLAS, OpenCV and torch are pinned to one thread. Throughput is images/s of that single worker. "
        "The models are measured side by side: interleaved image by image for latency, taking turns in chunks of "
        "16 frames for throughput, so that drift of a shared machine hits them alike.",
        f"3. Multi-thread: {n_threads} worker threads, each with its own ONNX Runtime session (1 intra-op thread), "
        "take images from one queue; throughput is images/s over the run, latency the p50 per-image time under that "
        "load. (The seed's 4/8-thread columns feed a dual-core BPU; here the threads share the CPU.)",
        acc,
        "5. Params: elements of the ONNX initializers (BatchNorm folded into the convolutions; quantization "
        "scales/zero points and integer shape constants excluded).",
        "6. Latency/throughput columns show the INT8 build when one was benchmarked (what the seed deploys), else "
        "FP32; the per-model table below has both.",
    ]


# -------------------------------------------------------------------------------------------------- plots


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return write_bytes_atomic(path, buf.getvalue())


def plot_stages(plt, bench: Mapping[str, Any], path: Path) -> Path:
    entries = bench["models"]
    names = [Path(str(e["model"])).stem for e in entries]
    stages = list(STAGE_COLOURS)
    p50 = [[e.get("latency_ms", {}).get(s, {}).get("p50") or 0.0 for s in stages] for e in entries]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.6 * len(entries)), squeeze=False)
    for ax, subset, title in ((axes[0][0], stages, "all stages"), (axes[0][1], [s for s in stages if s != "inference"], "everything but inference")):
        left = [0.0] * len(entries)
        for s in subset:
            vals = [row[stages.index(s)] for row in p50]
            ax.barh(names, vals, left=left, color=STAGE_COLOURS[s], label=s)
            left = [a + b for a, b in zip(left, vals)]
        for y, total in enumerate(left):
            ax.text(total, y, f" {total:.1f}", va="center", fontsize=8)
        ax.set_xlabel("ms per image (p50, 1 thread)")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(left + [1e-3]) * 1.2)
        ax.invert_yaxis()
    axes[0][0].legend(loc="upper center", bbox_to_anchor=(1.05, -0.35 - 0.1 / len(entries)), ncol=4, fontsize=8)
    axes[0][1].set_yticks([])
    fig.suptitle("Stage breakdown per model", fontsize=11, y=1.04)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_throughput(plt, bench: Mapping[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, e in enumerate(bench["models"]):
        colour = f"C{i % 10}"
        for mode, style, label in (("workers", "-o", "worker threads"), ("intra_op", "--s", "intra-op threads")):
            pts = sorted((int(k), v) for k, v in e.get("throughput_ips", {}).get(mode, {}).items() if str(k).isdigit())
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour,
                        label=f"{Path(str(e['model'])).stem}: {label}")
    ax.set_xlabel("threads")
    ax.set_ylabel("images / s (end to end)")
    ax.set_title("Throughput vs threads")
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_decoders(plt, d: Mapping[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    keys = [k for k in DECODER_COLOURS if isinstance(d.get(f"{k}_ms"), (int, float))]
    vals = [d[f"{k}_ms"] for k in keys]
    ax = axes[0]
    ax.bar(keys, vals, color=[DECODER_COLOURS[k] for k in keys])
    ax.set_yscale("log")
    for x, v in enumerate(vals):
        ax.text(x, v, f"{v:.2f} ms", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per image (median, log scale)")
    ax.set_title(f"Same raw outputs, {d.get('images')} images, {_fmt(d.get('mean_objects'), 1)} objects mean", fontsize=10)
    ax = axes[1]
    rows = d.get("per_image") or []
    for k in keys:
        pts = [(r["objects"], r[f"{k}_ms"]) for r in rows if f"{k}_ms" in r]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.7, color=DECODER_COLOURS[k], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("objects in the image")
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Per image", fontsize=10)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    fig.suptitle("Decode + NMS + masks at original resolution", fontsize=11)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_similarity(plt, rows: Sequence[tuple[str, float]], path: Path) -> Path:
    n = len(rows)
    names = [r[0] for r in rows]
    cos = [r[1] for r in rows]
    if n <= 40:  # few rows: one labelled bar each
        fig, ax = plt.subplots(figsize=(8, 1 + 0.25 * n))
        ax.barh(range(n), cos, color=["#d95f02" if c < 0.99 else "#1b9e77" for c in cos])
        ax.set_yticks(range(n), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("cosine similarity, INT8 vs float")
        ax.set_xlim(min(min(cos), 0.9) - 0.01, 1.0005)
    else:  # many layers: every cosine, weakest first, the weakest ones named
        order = sorted(range(n), key=lambda i: cos[i])
        names, cos = [names[i] for i in order], [cos[i] for i in order]
        fig, ax = plt.subplots(figsize=(11, 4))
        ax.plot(range(n), cos, "-", lw=0.8, color="#1b9e77")
        ax.set_xlabel("quantized tensors, weakest first")
        ax.set_ylabel("cosine similarity, INT8 vs float")
        for i in range(min(5, n)):
            ax.annotate(names[i], (i, cos[i]), fontsize=7, xytext=(6, 4 + 9 * i), textcoords="offset points")
        ax.grid(alpha=0.3)
    ax.set_title(f"Per-layer similarity ({n} tensors, min {min(cos):.4f})")
    out = _save(fig, path)
    plt.close(fig)
    return out




# -------------------------------------------------------------------------------------------------- build


def build_report(
    bench_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    val_path: str | os.PathLike | None = None,
    quant_path: str | os.PathLike | None = None,
    title: str = "Performance",
) -> Path:
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the Markdown path."""
    bench = load_json(bench_path, "bench")
    _models(bench, "bench", bench_path)
    val_models = _models(load_json(val_path, "val"), "val", val_path) if val_path is not None else []
    quant_rows: list[tuple[str, float]] = []
    quant_outputs: list[tuple[str, float]] = []
    notes: list[str] = []
    if quant_path is not None:
        quant_doc = load_json(quant_path, "quantize report")
        quant_rows, quant_outputs = similarity_rows(quant_doc), output_rows(quant_doc)
        if not quant_rows:
            notes.append(f"the quantize report `{Path(quant_path).name}` holds no per-layer cosine rows; similarity plot skipped")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EdgesegError("exists and is not a directory", out)
    out.mkdir(parents=True, exist_ok=True)

    rows = table_rows(bench)
    plots: list[tuple[str, str]] = []
    plt = _pyplot()
    if plt is None:
        notes.append("matplotlib is not installed; plots skipped")
    else:
        plots.append(("Stage breakdown per model (p50, 1 thread)", plot_stages(plt, bench, out / "stages.png").name))
        plots.append(("Throughput vs threads", plot_throughput(plt, bench, out / "throughput.png").name))
        if bench.get("decode_compare"):
            plots.append(("Decoder comparison on the same raw outputs", plot_decoders(plt, bench["decode_compare"], out / "decoders.png").name))
        if quant_rows:
            plots.append(("Per-layer similarity, INT8 vs float", plot_similarity(plt, quant_rows, out / "similarity.png").name))
        elif quant_path is None:
            notes.append("no quantize report given; similarity plot skipped")

    md = [f"# {title}", ""]
    md += seed_table(rows, val_models) + [""]
    md += footnotes(bench, val_models, val_path is not None) + [""]
    md += ["## Per-model speed (ms p50 per stage on one thread; images/s end to end)", ""] + speed_table(bench) + [""]
    ratios = ratio_lines(rows, bench)
    if ratios:
        md += ["## Ratios", ""] + ratios + [""]
    md += ["## Decoders on the same raw outputs", ""] + decoder_section(bench.get("decode_compare")) + [""]
    if quant_rows:
        md += ["## INT8 vs float similarity", ""] + similarity_section(quant_rows, quant_outputs) + [""]
    if plots:
        md += ["## Plots", ""]
        for caption, name in plots:
            md += [f"![{caption}]({name})", ""]
    if notes:
        md += ["## Not shown", ""] + [f"- {n}." for n in notes] + [""]
    return write_bytes_atomic(out / "report.md", "\n".join(md).encode("utf-8"))
