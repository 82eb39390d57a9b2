"""The similarity report for people: the printed table and the PNG plot (outputs and the weakest
activations as sorted bars of 1 - cosine, every activation's cosine in graph order)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..fileio import write_bytes_atomic
from .similarity import SimilarityReport, mask_first


def format_report(report: SimilarityReport, weakest: int = 15) -> str:
    """The printed table: outputs (mask outputs first: protos, mc; then box, cls; weakest first in each), then
    the weakest quantized activations."""
    lines = [f"INT8 vs float on {len(report.images)} held-out image(s) (cosine similarity, max abs error)"]
    lines.append(f"  {'output':<16} {'cosine':>9} {'max abs err':>12} {'float max':>10}  {'max abs err above floor':>23}")
    for s in sorted(report.outputs, key=mask_first):
        above = f"{s.max_abs_in_range:>12.4f} (>= {s.floor:g})" if s.floor is not None else ""
        lines.append(f"  {s.name:<16} {s.cosine:>9.5f} {s.max_abs:>12.4f} {s.ref_max_abs:>10.3f}  {above:>23}")
    if report.nodes:
        k = min(weakest, len(report.nodes))
        lines.append(f"  weakest {k} of {len(report.nodes)} activations:")
        rows = sorted(report.nodes, key=lambda s: s.cosine)[:k]
        width = max(len(s.node) for s in rows)
        lines.append(f"  {'node':<{width}} {'type':<14} {'cosine':>9} {'max abs err':>12}")
        for s in rows:
            lines.append(f"  {s.node:<{width}} {s.op_type:<14} {s.cosine:>9.5f} {s.max_abs:>12.4f}")
    return "\n".join(lines)


def plot_report(report: SimilarityReport, path: str | os.PathLike, title: str = "", weakest: int = 30) -> Path:
    """PNG: output cosines and the ``weakest`` activations, sorted (weakest at the top), plus every
    activation's cosine in graph order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outs = sorted(report.outputs, key=mask_first)
    nodes = sorted(report.nodes, key=lambda s: s.cosine)[:weakest]
    fig = plt.figure(figsize=(13, 4 + 0.22 * (len(outs) + len(nodes))))
    gs = fig.add_gridspec(2, 2, height_ratios=[max(len(outs), 1), max(len(nodes), 1)], width_ratios=[3, 2])

    from matplotlib.ticker import NullFormatter

    def bars(ax, stats, label, log):
        y = np.arange(len(stats))
        cos = np.array([s.cosine for s in stats])
        colors = ["#d62728" if c < 0.99 else "#ff7f0e" if c < 0.999 else "#2ca02c" for c in cos]
        ax.barh(y, np.maximum(1 - cos, 1e-7), color=colors)
        ax.set_yticks(y, [s.name if label == "output" else s.node for s in stats], fontsize=7)
        ax.invert_yaxis()
        if log:  # outputs span decades (cls ~1e-4, protos ~1e-2)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("1 - cosine" + (" (log)" if log else "") + "; shorter is better", fontsize=8)
        order = "mask outputs first (protos, mc), then box, cls; weakest first in each" if label == "output" else "weakest first"
        ax.set_title(f"{label}s, {order} (red < 0.99 < orange < 0.999 < green)", fontsize=9)
        for yi, c in zip(y, cos):
            ax.text(ax.get_xlim()[0], yi, f" {c:.5f}", va="center", fontsize=6)

    ax = fig.add_subplot(gs[0, 0])
    if outs:
        bars(ax, outs, "output", log=True)
    ax = fig.add_subplot(gs[1, 0])
    if nodes:
        bars(ax, nodes, "activation", log=False)
    ax = fig.add_subplot(gs[:, 1])
    ordered = report.nodes  # graph order as measured (a report read back from JSON holds them weakest first)
    ax.plot(np.arange(len(ordered)), [s.cosine for s in ordered], ".", ms=3)
    ax.axhline(0.99, color="#d62728", lw=0.8, ls="--")
    ax.set_xlabel("activation (graph order)")
    ax.set_ylabel("cosine similarity")
    ax.set_title("every quantized activation", fontsize=9)
    fig.suptitle(title or f"INT8 vs float on {len(report.images)} held-out image(s)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())
