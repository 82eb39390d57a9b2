"""Float vs quantized comparison (what ORT's ``qdq_loss_debug`` does): every activation of the float
graph against its quantized counterpart and every model output, pooled over images, and the
``SimilarityReport`` that the quantizer writes as ``MODEL-int8.similarity.json`` and ``edgeseg report`` reads;
the report for people: the printed table (``format_report``) and the PNG plot (``plot_report``: outputs and the
weakest activations as sorted bars of 1 - cosine, every activation's cosine in graph order)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import PROTOS, quantization_metadata
from ..errors import EdgesegError
from ..fileio import read_json, write_bytes_atomic
from ..onnxgraph import consumers
from .sessions import cpu_session


@dataclass
class TensorStat:
    """Float vs quantized agreement of one tensor over a set of images (pooled over all elements)."""

    name: str
    node: str = ""
    op_type: str = ""
    dot: float = 0.0
    ref_sq: float = 0.0
    q_sq: float = 0.0
    max_abs: float = 0.0
    ref_max_abs: float = 0.0
    floor: float | None = None  # a head range floor (see head_floors): values below it are clipped on purpose
    max_abs_in_range: float = 0.0  # max abs error against the float values raised to ``floor``

    def add(self, ref: np.ndarray, q: np.ndarray) -> None:
        a = ref.astype(np.float64, copy=False).ravel()
        b = q.astype(np.float64, copy=False).ravel()
        self.dot += float(a @ b)
        self.ref_sq += float(a @ a)
        self.q_sq += float(b @ b)
        if a.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(a - b))))
            self.ref_max_abs = max(self.ref_max_abs, float(np.max(np.abs(a))))
            if self.floor is not None:
                self.max_abs_in_range = max(self.max_abs_in_range, float(np.max(np.abs(np.maximum(a, self.floor) - b))))

    @property
    def cosine(self) -> float:
        if self.ref_sq == 0 and self.q_sq == 0:
            return 1.0
        if self.ref_sq == 0 or self.q_sq == 0:
            return 0.0
        return self.dot / math.sqrt(self.ref_sq * self.q_sq)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "tensor": self.name,
            "node": self.node,
            "op_type": self.op_type,
            "cosine": round(self.cosine, 6),
            "max_abs_error": round(self.max_abs, 6),
            "float_max_abs": round(self.ref_max_abs, 6),
        }
        if self.floor is not None:
            d["range_floor"] = self.floor
            d["max_abs_error_above_floor"] = round(self.max_abs_in_range, 6)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorStat:
        """A row of ``to_dict`` read back. The pooled sums are not stored: unit norms with ``dot`` set to
        the stored cosine give that cosine back."""
        for key in ("tensor", "cosine", "max_abs_error"):
            if key not in d:
                raise ValueError(f"a row lacks {key!r}")
        return cls(
            str(d["tensor"]),
            str(d.get("node", "")),
            str(d.get("op_type", "")),
            dot=float(d["cosine"]),
            ref_sq=1.0,
            q_sq=1.0,
            max_abs=float(d["max_abs_error"]),
            ref_max_abs=float(d.get("float_max_abs", 0.0)),
            floor=None if d.get("range_floor") is None else float(d["range_floor"]),
            max_abs_in_range=float(d.get("max_abs_error_above_floor", 0.0)),
        )


def _with_outputs(model, names: Sequence[str]) -> bytes:
    """A copy of ``model`` that also returns the tensors ``names`` (element type from shape inference)."""
    import onnx
    from onnx import helper, shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    inferred = shape_inference.infer_shapes(m)
    types = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for name in names:
        if name in present:
            continue
        vi = types.get(name)
        m.graph.output.append(vi if vi is not None else helper.make_empty_tensor_value_info(name))
    return m.SerializeToString()


def tensor_pairs(float_model, qdq_model) -> list[tuple[str, str, str, str]]:
    """(float tensor, matching tensor of the QDQ model, producing node, op type) for every float
    activation of the float graph: a quantized tensor is compared after its QuantizeLinear +
    DequantizeLinear (what its consumers see), a tensor left in float as is."""
    q_consumers = consumers(qdq_model.graph)
    q_tensors = {o for n in qdq_model.graph.node for o in n.output} | {i.name for i in qdq_model.graph.input}
    pairs = []
    for node in float_model.graph.node:
        if node.op_type in ("Constant",):
            continue
        for out in node.output:
            if not out:
                continue
            match = None
            for q in q_consumers.get(out, []):
                if q.op_type == "QuantizeLinear":
                    dq = next((d for d in q_consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"), None)
                    if dq is not None:
                        match = dq.output[0]
                        break
            if match is None and out in q_tensors:
                match = out
            if match is not None:
                pairs.append((out, match, node.name, node.op_type))
    return pairs


def float_activations_session(float_model):
    """An ORT session of the float model that can return every node output (for ``compare_tensors``)."""
    names = [o for n in float_model.graph.node for o in n.output if o]
    return cpu_session(_with_outputs(float_model, names), threads=0)


def compare_tensors(
    float_model, qdq_model, tensors: Sequence[np.ndarray], *, input_name: str = "images", float_session=None
) -> dict[str, TensorStat]:
    """Cosine / max abs error of every activation (see ``tensor_pairs``), pooled over ``tensors``.
    ``float_session`` (from ``float_activations_session``) saves rebuilding it in a loop."""
    pairs = tensor_pairs(float_model, qdq_model)
    f_sess = float_session if float_session is not None else float_activations_session(float_model)
    q_sess = cpu_session(_with_outputs(qdq_model, [p[1] for p in pairs]), threads=0)
    stats = {f: TensorStat(f, node, op) for f, _, node, op in pairs}
    f_names = [p[0] for p in pairs]
    q_names = [p[1] for p in pairs]
    for t in tensors:
        fv = f_sess.run(f_names, {input_name: t})
        qv = q_sess.run(q_names, {input_name: t})
        for name, a, b in zip(f_names, fv, qv):
            if np.issubdtype(a.dtype, np.floating):
                stats[name].add(a, b)
    return {k: v for k, v in stats.items() if v.ref_sq > 0 or v.q_sq > 0}


def compare_outputs(
    float_model: Path | bytes,
    int8_model: Path | bytes,
    names: Sequence[str],
    tensors: Sequence[np.ndarray],
    *,
    input_name: str = "images",
    floors: Mapping[str, float | None] | None = None,
) -> dict[str, TensorStat]:
    """Cosine / max abs error of the model outputs, integer heads dequantized with their metadata.
    ``floors``: output -> range floor (also reports the error against the float values raised to it)."""
    f_sess = cpu_session(float_model, threads=0)
    q_sess = cpu_session(int8_model, threads=0)
    quant = quantization_metadata(q_sess.get_modelmeta().custom_metadata_map)
    stats = {n: TensorStat(n, n, "output", floor=(floors or {}).get(n)) for n in names}
    for t in tensors:
        fv = f_sess.run(list(names), {input_name: t})
        qv = q_sess.run(list(names), {input_name: t})
        for n, a, b in zip(names, fv, qv):
            if n in quant and np.issubdtype(b.dtype, np.integer):
                scale, zp = quant[n]
                b = (b.astype(np.float32) - np.float32(zp) if np.ndim(zp) == 0 else b.astype(np.float32) - zp) * scale
            stats[n].add(a, b)
    return stats


def mask_first(stat: TensorStat) -> tuple[int, float]:
    """Sort key of the outputs: what the masks are made of first (protos, then the mc heads), then box and
    cls; weakest first within each."""
    name = stat.name
    rank = 0 if name == PROTOS else 1 if name.startswith("mc_") else 2 if name.startswith("box_") else 3
    return rank, stat.cosine


@dataclass
class SimilarityReport:
    """INT8 vs float on held-out images: every model output and every quantized activation, plus what
    was compared (model names, the quantization settings) and the mixed-precision search steps.
    ``nodes`` are in graph order when measured, weakest first when read back from a file."""

    images: list[str]
    outputs: list[TensorStat]
    nodes: list[TensorStat]
    model: str = ""
    float_model: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)
    search: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "float_model": self.float_model,
            "quantization": self.quantization,
            "images": self.images,
            "outputs": [s.to_dict() for s in sorted(self.outputs, key=mask_first)],
            "nodes": [s.to_dict() for s in sorted(self.nodes, key=lambda s: s.cosine)],
            "search": self.search,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimilarityReport:
        """A report read back from ``to_dict``; ValueError naming what is missing or malformed."""
        if not isinstance(d, Mapping):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        for key in ("outputs", "nodes"):
            if not isinstance(d.get(key), list) or not all(isinstance(row, Mapping) for row in d[key]):
                raise ValueError(f"{key!r} is not a list of rows")
        try:
            return cls(
                images=[str(i) for i in d.get("images", [])],
                outputs=[TensorStat.from_dict(r) for r in d["outputs"]],
                nodes=[TensorStat.from_dict(r) for r in d["nodes"]],
                model=str(d.get("model", "")),
                float_model=str(d.get("float_model", "")),
                quantization=dict(d.get("quantization") or {}),
                search=list(d.get("search") or []),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    def output_cosines(self) -> dict[str, float]:
        return {s.name: s.cosine for s in self.outputs}


def read_similarity_report(path: str | os.PathLike) -> SimilarityReport:
    """Read a ``*.similarity.json`` written by ``edgeseg quantize``, or raise a one-line EdgesegError."""
    p = Path(path)
    doc = read_json(p, "quantize similarity report")
    try:
        return SimilarityReport.from_dict(doc)
    except ValueError as exc:
        raise EdgesegError(f"not an edgeseg quantize similarity report: {exc}", p) from None


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
