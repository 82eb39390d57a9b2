"""``edgeseg report``: a performance table with numbered notes, per-model speed, the decoder comparison,
the video stream benchmark and PNG plots, from the files that ``edgeseg bench``, ``edgeseg val`` and ``edgeseg quantize`` write.

Each input is read by the module that writes it (``read_bench_result``, ``read_eval_results``,
``read_similarity_report``), so a malformed file is a one-line error naming it. A missing optional piece
(val results, an INT8 build, the similarity report, Ultralytics timing, matplotlib) leaves a dash in the
table or a note, never a crash. What the page says beyond the measurements (targets, caveats about the
data) is the caller's: ``notes``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..bench.result import read_bench_result
from ..errors import EdgesegError
from ..evaluate import read_eval_results
from ..fileio import write_bytes_atomic
from ..quantize import read_similarity_report
from .plots import plot_decoders, plot_similarity, plot_stages, plot_stream, plot_throughput, pyplot
from .tables import (
    decoder_section,
    footnotes,
    ratio_lines,
    similarity_section,
    speed_table,
    stream_section,
    summary_table,
    table_rows,
)

__all__ = ["build_report"]


def build_report(
    bench_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    val_path: str | os.PathLike | None = None,
    quant_path: str | os.PathLike | None = None,
    title: str = "Performance",
    notes: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the Markdown path. ``notes`` are
    numbered after the report's own notes under the summary table."""
    bench = read_bench_result(bench_path)
    val = read_eval_results(val_path) if val_path is not None else None
    similarity = read_similarity_report(quant_path) if quant_path is not None else None
    not_shown: list[str] = []
    if similarity is not None and not similarity.nodes:
        not_shown.append(f"the quantize report `{Path(quant_path).name}` holds no per-layer cosine rows; similarity plot skipped")
        similarity = None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EdgesegError("exists and is not a directory", out)
    out.mkdir(parents=True, exist_ok=True)

    rows = table_rows(bench)
    plots: list[tuple[str, str]] = []
    plt = pyplot()
    if plt is None:
        not_shown.append("matplotlib is not installed; plots skipped")
    else:
        plots.append(("Stage breakdown per model (p50, 1 thread)", plot_stages(plt, bench, out / "stages.png").name))
        plots.append(("Throughput vs threads", plot_throughput(plt, bench, out / "throughput.png").name))
        if bench.decode_compare is not None:
            decoders = plot_decoders(plt, bench.decode_compare, out / "decoders.png")
            plots.append(("Decoder comparison on the same raw outputs", decoders.name))
        if bench.stream is not None:
            plots.append(("Video stream frames/s per configuration", plot_stream(plt, bench.stream, out / "stream.png").name))
        if similarity is not None:
            plots.append(("Per-layer similarity, INT8 vs float", plot_similarity(plt, similarity, out / "similarity.png").name))
        elif quant_path is None:
            not_shown.append("no quantize report given; similarity plot skipped")

    md = [f"# {title}", ""]
    md += summary_table(rows, val or []) + [""]
    md += footnotes(bench, val, notes) + [""]
    md += ["## Per-model speed (ms p50 per stage on one thread; images/s end to end)", ""] + speed_table(bench) + [""]
    ratios = ratio_lines(rows, bench)
    if ratios:
        md += ["## Ratios", ""] + ratios + [""]
    md += ["## Decoders on the same raw outputs", ""] + decoder_section(bench.decode_compare) + [""]
    stream = stream_section(bench)
    if stream:
        md += ["## Video stream: sequential loop, pipelined runner, bare inference", ""] + stream + [""]
    if similarity is not None:
        md += ["## INT8 vs float similarity", ""] + similarity_section(similarity) + [""]
    if plots:
        md += ["## Plots", ""]
        for caption, name in plots:
            md += [f"![{caption}]({name})", ""]
    if not_shown:
        md += ["## Not shown", ""] + [f"- {n}." for n in not_shown] + [""]
    return write_bytes_atomic(out / "report.md", "\n".join(md).encode("utf-8"))
