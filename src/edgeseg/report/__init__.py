"""``edgeseg report``: a performance table with numbered notes, per-model speed, the decoder comparison,
the video stream benchmark and PNG plots, from the files that ``edgeseg bench``, ``edgeseg val`` and ``edgeseg quantize`` write.

Each input is read by the module that writes it (``read_bench_result``, ``read_eval_results``,
``read_similarity_report``), so a malformed file is a one-line error naming it. A missing optional piece
(val results, an INT8 build, the similarity report, Ultralytics timing, matplotlib) leaves a dash in the
table or a note, never a crash. What the page says beyond the measurements (targets, caveats about the
data) is the caller's: ``notes``.

``build_family_report`` renders the model-family table (``family.json`` of ``benchmarks/family.py``, see
``report.family``) the same way.
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
from .family import FAMILY_END, FAMILY_START, family_block, family_section, read_family, splice_family
from .plots import plot_decoders, plot_family, plot_similarity, plot_stages, plot_stream, plot_throughput, pyplot
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

__all__ = ["FAMILY_END", "FAMILY_START", "build_family_report", "build_report", "family_block", "splice_family"]


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
