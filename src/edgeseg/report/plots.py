"""The report's PNG plots: stage breakdown, throughput vs threads, decoders, video stream frames/s, per-layer
similarity."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .. import stages as stage
from ..bench.result import BenchResult, DecoderComparison, StreamBench
from ..fileio import is_number, write_bytes_atomic
from ..quantize import SimilarityReport

STAGE_COLOURS = {stage.PREPROCESS: "#8da0cb", stage.INFERENCE: "#66c2a5", stage.DECODE: "#fc8d62", stage.MASKS: "#e78ac3"}
DECODER_COLOURS = {"fast": "#1b9e77", "reference": "#7570b3", "ultralytics": "#d95f02"}


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def plot_stages(plt: Any, bench: BenchResult, path: Path) -> Path:
    models = bench.models
    names = [Path(m.model).stem for m in models]
    stages = list(STAGE_COLOURS)
    p50 = [[(m.latency_ms[s].p50 if s in m.latency_ms else 0.0) or 0.0 for s in stages] for m in models]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.6 * len(models)), squeeze=False)
    panels = ((axes[0][0], stages, "all stages"), (axes[0][1], [s for s in stages if s != stage.INFERENCE], "everything but inference"))
    for ax, subset, title in panels:
        left = [0.0] * len(models)
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
    axes[0][0].legend(loc="upper center", bbox_to_anchor=(1.05, -0.35 - 0.1 / len(models)), ncol=4, fontsize=8)
    axes[0][1].set_yticks([])
    fig.suptitle("Stage breakdown per model", fontsize=11, y=1.04)
    return _save(plt, fig, path)


def plot_throughput(plt: Any, bench: BenchResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, m in enumerate(bench.models):
        colour = f"C{i % 10}"
        lines = ((m.throughput_ips.workers, "-o", "worker threads"), (m.throughput_ips.intra_op, "--s", "intra-op threads"))
        for series, style, label in lines:
            pts = sorted(series.items())
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour, label=f"{Path(m.model).stem}: {label}")
    ax.set_xlabel("threads")
    ax.set_ylabel("images / s (end to end)")
    ax.set_title("Throughput vs threads")
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_decoders(plt: Any, d: DecoderComparison, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    keys = [k for k in DECODER_COLOURS if is_number(getattr(d, f"{k}_ms"))]
    vals = [getattr(d, f"{k}_ms") for k in keys]
    ax = axes[0]
    ax.bar(keys, vals, color=[DECODER_COLOURS[k] for k in keys])
    ax.set_yscale("log")
    for x, v in enumerate(vals):
        ax.text(x, v, f"{v:.2f} ms", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per image (median, log scale)")
    mean = f"{d.mean_objects:.1f}" if is_number(d.mean_objects) else "—"
    ax.set_title(f"Same raw outputs, {d.images} images, {mean} objects mean", fontsize=10)
    ax = axes[1]
    for k in keys:
        pts = [(r.objects, getattr(r, f"{k}_ms")) for r in d.per_image if getattr(r, f"{k}_ms") is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.7, color=DECODER_COLOURS[k], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("objects in the image")
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Per image", fontsize=10)
    ax.grid(alpha=0.3)
    if d.per_image:
        ax.legend(fontsize=8)
    fig.suptitle("Decode + NMS + masks at original resolution", fontsize=11)
    return _save(plt, fig, path)


def plot_stream(plt: Any, stream: StreamBench, path: Path) -> Path:
    """Frames/s of every configuration, one group of bars per model."""
    labels = [r.label for r in stream.models[0].runs]
    width = 0.8 / len(stream.models)
    fig, ax = plt.subplots(figsize=(8, 1 + 0.45 * len(labels) * len(stream.models)))
    for i, m in enumerate(stream.models):
        fps = {r.label: r.fps for r in m.runs}
        ys = [k + i * width for k in range(len(labels))]
        vals = [fps.get(label, 0.0) for label in labels]
        ax.barh(ys, vals, height=width, color=f"C{i % 10}", label=m.name)
        for y, v in zip(ys, vals):
            ax.text(v, y, f" {v:.1f}", va="center", fontsize=8)
    ax.set_yticks([k + width * (len(stream.models) - 1) / 2 for k in range(len(labels))], labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("frames / s (read, infer, draw and write an annotated video; bare: inference only)")
    ax.set_title(f"{Path(stream.clip).name}: {stream.frames} frames, {stream.size[0]}×{stream.size[1]}", fontsize=10)
    ax.set_xlim(0, max([r.fps for m in stream.models for r in m.runs] + [1e-3]) * 1.15)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09 - 0.2 / len(labels)), ncol=min(len(stream.models), 3))
    return _save(plt, fig, path)


def plot_similarity(plt: Any, report: SimilarityReport, path: Path) -> Path:
    """Every quantized tensor's cosine: one labelled bar each when few, else a curve, weakest first."""
    names = [s.node for s in report.nodes]
    cos = [s.cosine for s in report.nodes]
    n = len(names)
    if n <= 40:
        fig, ax = plt.subplots(figsize=(8, 1 + 0.25 * n))
        ax.barh(range(n), cos, color=["#d95f02" if c < 0.99 else "#1b9e77" for c in cos])
        ax.set_yticks(range(n), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("cosine similarity, INT8 vs float")
        ax.set_xlim(min(min(cos), 0.9) - 0.01, 1.0005)
    else:
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
    return _save(plt, fig, path)
