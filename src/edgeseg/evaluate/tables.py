"""Terminal tables of evaluation results: metrics side by side with retention, and per-class mAP."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .metrics import METRICS, EvalResult


def _labels(results: Sequence[EvalResult]) -> list[str]:
    names = [Path(r.model).name for r in results]
    return names if len(set(names)) == len(names) else [r.model for r in results]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def retention(value: float, reference: float) -> float | None:
    """``value`` as a percentage of ``reference`` (None when the reference is 0)."""
    return 100.0 * value / reference if reference > 0 else None


def format_metrics_table(results: Sequence[EvalResult]) -> str:
    """One model: a row of box/mask mAP50-95 and mAP50. Several: the metrics side by side as
    'box / mask' per model, with retention (model k / model 1) for every model after the first."""
    labels = _labels(results)
    if len(results) == 1:
        r = results[0]
        rows = [
            ["model", "images", "box mAP50-95", "box mAP50", "mask mAP50-95", "mask mAP50"],
            [labels[0], str(r.images), f"{r.box_map50_95:.4f}", f"{r.box_map50:.4f}", f"{r.mask_map50_95:.4f}", f"{r.mask_map50:.4f}"],
        ]
        return _table(rows)
    ref = results[0]
    header = ["metric", f"{labels[0]} (box / mask)"]
    for lab in labels[1:]:
        header += [f"{lab} (box / mask)", "retention (box / mask)"]
    rows = [header]
    for title, b, m in (("mAP50-95", "box_map50_95", "mask_map50_95"), ("mAP50", "box_map50", "mask_map50")):
        row = [title, f"{getattr(ref, b):.4f} / {getattr(ref, m):.4f}"]
        for r in results[1:]:
            rb, rm = retention(getattr(r, b), getattr(ref, b)), retention(getattr(r, m), getattr(ref, m))
            pct = " / ".join("n/a" if v is None else f"{v:.1f}%" for v in (rb, rm))
            row += [f"{getattr(r, b):.4f} / {getattr(r, m):.4f}", pct]
        rows.append(row)
    rows.append(["images", str(ref.images)] + sum(([str(r.images), ""] for r in results[1:]), []))
    return _table(rows)


def format_per_class(result: EvalResult) -> str:
    """Per-class table of one model (classes with ground truth instances)."""
    rows = [["class", "id", "images", "instances", "box mAP50-95", "box mAP50", "mask mAP50-95", "mask mAP50"]]
    for name, m in sorted(result.per_class.items(), key=lambda kv: kv[1]["class_id"]):
        counts = [str(m["class_id"]), str(m["images"]), str(m["instances"])]
        rows.append([name, *counts, *(f"{m[key]:.4f}" for key in METRICS)])
    return _table(rows)
