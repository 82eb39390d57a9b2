"""Mixed precision: lift the most sensitive layers to float until the head outputs reach a target cosine."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..onnxgraph import consumers, load_model, producers
from .rewrite import CalibratedGraph, QuantSettings, quantize_qdq
from .similarity import TensorStat, compare_tensors, float_activations_session


def _units(model) -> list[tuple[list[str], list[str], str]]:
    """Liftable units of the float graph: (node names, activation inputs, output tensor). A Conv with
    its SiLU (Sigmoid + Mul) is one unit: lifting half of a Conv+SiLU saves nothing."""
    readers = consumers(model.graph)
    inits = {i.name for i in model.graph.initializer}
    taken: set[str] = set()
    units = []
    for n in model.graph.node:
        if n.name in taken or n.op_type == "Constant":
            continue
        names, out = [n.name], n.output[0]
        if n.op_type in ("Conv", "ConvTranspose"):
            cs = readers.get(out, [])
            sig = next((c for c in cs if c.op_type == "Sigmoid"), None)
            mul = next((c for c in cs if c.op_type == "Mul" and sig is not None and sig.output[0] in c.input), None)
            if sig is not None and mul is not None and len(cs) == 2:
                names += [sig.name, mul.name]
                out = mul.output[0]
        taken.update(names)
        inputs = [i for i in n.input if i and i not in inits]
        units.append((names, inputs, out))
    return units


def _ancestors(model, tensor: str) -> set[str]:
    """Names of the nodes that ``tensor`` depends on."""
    writers = producers(model.graph)
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = writers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(i for i in node.input if i)
    return seen


def pick_sensitive(model, stats: Mapping[str, TensorStat], failing: Sequence[str], excluded: set[str]) -> list[list[str]]:
    """For each failing output, the still-quantized unit upstream of it whose own quantization loses the
    most cosine (cosine of its input minus cosine of its output)."""
    units = _units(model)
    picks: list[list[str]] = []
    for out in failing:
        cone = _ancestors(model, out)
        best, best_drop = None, 0.0
        for names, inputs, unit_out in units:
            if names[0] not in cone or any(n in excluded for n in names) or unit_out not in stats:
                continue
            before = min((stats[i].cosine if i in stats else 1.0 for i in inputs), default=1.0)
            drop = before - stats[unit_out].cosine
            if drop > best_drop:
                best, best_drop = names, drop
        if best is not None and best not in picks:
            picks.append(best)
    return picks


@dataclass(frozen=True)
class SearchTarget:
    """What the search aims at: every ``outputs`` tensor at ``cosine`` or above, within ``max_steps``."""

    cosine: float
    outputs: tuple[str, ...]
    max_steps: int = 12


@dataclass
class SearchOutcome:
    """The settings and QDQ model the search ended with, its steps (for the report) and why it stopped
    short, if it did."""

    settings: QuantSettings
    qdq_path: Path
    steps: list[dict] = field(default_factory=list)
    warning: str | None = None


def search_mixed_precision(
    graph: CalibratedGraph,
    tensors: Sequence[np.ndarray],
    *,
    settings: QuantSettings,
    target: SearchTarget,
    qdq_path: Path,
    show_progress: bool = False,
) -> SearchOutcome:
    """Greedy mixed precision from the all-quantized model at ``qdq_path``: measure on ``tensors``, lift
    the most lossy unit upstream of each target output below the target cosine to float, re-quantize
    (calibration is cached, so a step is cheap), repeat."""
    keep = list(settings.keep_float)
    outcome = SearchOutcome(settings, qdq_path)
    float_session = float_activations_session(graph.model)
    for step in range(target.max_steps + 1):
        stats = compare_tensors(graph.model, load_model(outcome.qdq_path), tensors, float_session=float_session)
        cos = {o: stats[o].cosine for o in target.outputs if o in stats}
        failing = sorted((o for o in target.outputs if cos.get(o, 1.0) < target.cosine), key=lambda o: cos[o])
        outcome.steps.append(
            {
                "step": step,
                "keep_float": list(keep),
                "min_output_cosine": min(cos.values()),
                "outputs": {k: round(v, 6) for k, v in cos.items()},
            }
        )
        if show_progress:
            worst = min(cos, key=cos.get)
            print(
                f"mixed precision step {step}: {len(keep)} node(s) float, weakest output {worst} {cos[worst]:.5f} (target {target.cosine})",
                file=sys.stderr,
            )
        if not failing:
            break
        weakest = f"(weakest output {failing[0]} {cos[failing[0]]:.5f})"
        if step == target.max_steps:
            outcome.warning = f"target cosine {target.cosine} not reached after {target.max_steps} steps {weakest}"
            break
        picks = pick_sensitive(graph.model, stats, failing, set(keep))
        if not picks:
            outcome.warning = f"target cosine {target.cosine} not reachable by lifting layers to float {weakest}"
            break
        for names in picks:
            keep.extend(n for n in names if n not in keep)
        outcome.settings = replace(outcome.settings, keep_float=tuple(keep))
        outcome.qdq_path = qdq_path.with_name(f"qdq-step{step + 1}.onnx")
        quantize_qdq(graph, outcome.settings, outcome.qdq_path)
    return outcome
