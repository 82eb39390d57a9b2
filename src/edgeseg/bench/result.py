"""The results of ``edgeseg bench`` as types: what ``run_bench`` returns, what the JSON holds, what
``edgeseg report`` reads.

``to_dict`` writes the bench command's JSON layout (same keys, same order); ``from_dict`` reads it back,
also a file that lacks the optional sections and fields. Machine facts and settings are descriptive and
optional; the numbers a report is built from are required, and a file
without them is a one-line error naming the file and the missing field.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgesegError
from ..fileio import is_count, is_real, read_json
from ..fileio import is_number as is_number  # where report/family.py reads it
from ..machine import MachineInfo
from ..stages import STAGES, TOTAL

LATENCY_KEYS = (*STAGES, TOTAL)  # what ``ModelBench.latency_ms`` holds: each stage, and their total
THREAD_MODES = ("workers", "intra_op")  # N single-thread sessions in N threads / one session with N intra-op threads
_OMIT_IF_NONE = {"omit_if_none": True}


def _optional() -> Any:
    """A field left out of the JSON when it is None (the bench JSON never wrote these keys as null)."""
    return field(default=None, metadata=_OMIT_IF_NONE)


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and int-keyed dicts -> JSON-ready dicts, lists and str keys, in field order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None and f.metadata.get("omit_if_none"):
                continue
            out[f.name] = _plain(v)
        return out
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _malformed(where: str, problem: str, path: str | os.PathLike | None) -> EdgesegError:
    return EdgesegError(f"not an edgeseg bench JSON ({where or 'the top level'} {problem})", path)


class _Fields:
    """The fields of one JSON object of a bench file (``where``: its place, "" for the top level); a
    missing required one is a one-line error."""

    def __init__(self, doc: Any, where: str, path: str | os.PathLike | None) -> None:
        self.doc, self.where, self.path = doc, where, path
        if not isinstance(doc, Mapping):
            raise _malformed(where, "is not an object", path)

    def place(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def required(self, key: str, check: Any = None, expected: str = "") -> Any:
        """The value of ``key``; ``check(value)`` must hold when given (``expected`` says what it wants)."""
        if key not in self.doc:
            raise _malformed(self.where, f"has no {key!r}", self.path)
        value = self.doc[key]
        if check is not None and not check(value):
            raise _malformed(self.place(key), f"is not {expected}", self.path)
        return value

    def optional(self, key: str, default: Any = None) -> Any:
        return self.doc.get(key, default)

    def nested(self, key: str) -> _Fields:
        return _Fields(self.required(key), self.place(key), self.path)

    def items(self, key: str, required: bool = True) -> list[_Fields]:
        """The objects of a list field (an absent optional list: none)."""
        values = self.required(key) if required else self.optional(key, [])
        if not isinstance(values, list):
            raise _malformed(self.place(key), "is not a list", self.path)
        return [_Fields(v, f"{self.place(key)}[{i}]", self.path) for i, v in enumerate(values)]


def _read(cls: type, doc: _Fields) -> Any:
    """A flat dataclass from a JSON object: a field without a default is required, the others optional."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            values[f.name] = doc.required(f.name)
        elif f.name in doc.doc:
            values[f.name] = doc.doc[f.name]
    return cls(**values)


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p90: float
    p99: float

    @classmethod
    def from_dict(cls, doc: _Fields) -> Percentiles:
        return cls(*(doc.required(k, is_real, "a number") for k in ("p50", "p90", "p99")))


@dataclass
class ThreadSeries:
    """A value per thread count, for both ways of using N threads (see ``THREAD_MODES``)."""

    workers: dict[int, float] = field(default_factory=dict)
    intra_op: dict[int, float] = field(default_factory=dict)

    def mode(self, name: str) -> dict[int, float]:
        return getattr(self, name)

    @classmethod
    def from_dict(cls, doc: _Fields) -> ThreadSeries:
        series = {}
        for mode in THREAD_MODES:
            values = doc.optional(mode, {})
            if not isinstance(values, Mapping) or not all(str(k).isdigit() and is_real(v) for k, v in values.items()):
                raise _malformed(doc.place(mode), "is not a map of thread counts to numbers", doc.path)
            series[mode] = {int(k): v for k, v in values.items()}
        return cls(**series)


@dataclass
class ModelBench:
    """One model: what it is (from its file) and its latency and throughput."""

    model: str
    name: str
    source: str | None
    imgsz: tuple[int, int]
    classes: int
    params: int
    int8: bool
    size_mb: float | None
    objects_mean: float | None
    latency_ms: dict[str, Percentiles]  # per key of ``LATENCY_KEYS``, one thread
    throughput_ips: ThreadSeries
    throughput_latency_p50_ms: ThreadSeries

    @classmethod
    def from_dict(cls, doc: _Fields) -> ModelBench:
        latency = doc.nested("latency_ms")
        model = str(doc.required("model"))
        return cls(
            model=model,
            name=doc.optional("name", Path(model).name),
            source=doc.optional("source"),
            imgsz=tuple(doc.required("imgsz", lambda v: isinstance(v, list) and all(map(is_count, v)), "a list of sizes")),
            classes=doc.required("classes", is_count, "a count"),
            params=doc.required("params", is_count, "a count"),
            int8=doc.required("int8", lambda v: isinstance(v, bool), "true or false"),
            size_mb=doc.optional("size_mb"),
            objects_mean=doc.optional("objects_mean"),
            latency_ms={stage: Percentiles.from_dict(latency.nested(stage)) for stage in latency.doc},
            throughput_ips=ThreadSeries.from_dict(doc.nested("throughput_ips")),
            throughput_latency_p50_ms=ThreadSeries.from_dict(doc.nested("throughput_latency_p50_ms")),
        )


@dataclass
class DecoderTimes:
    """One image of the decoder comparison: object counts and median ms per decoder."""

    image: str
    objects: int
    reference_objects: int | None = _optional()
    ultralytics_objects: int | None = _optional()
    fast_ms: float | None = _optional()
    reference_ms: float | None = _optional()
    ultralytics_ms: float | None = _optional()
    fast_default_blas_ms: float | None = _optional()


@dataclass
class ObjectBin:
    """Median decoder times over the images with a given range of object counts."""

    objects: str
    images: int
    mean_objects: float
    fast_ms: float | None
    reference_ms: float | None
    ultralytics_ms: float | None


@dataclass(frozen=True)
class LinearFit:
    """ms ~ intercept + per_object * objects."""

    intercept_ms: float
    per_object_ms: float
    at_20_objects_ms: float


@dataclass
class DecoderComparison:
    """The fast decoder, the reference decoder and Ultralytics' post-processing on the same raw outputs."""

    model: str
    images: int
    mean_objects: float | None
    median_objects: float | None
    max_objects: int | None
    fast_ms: float | None
    reference_ms: float | None
    ultralytics_ms: float | None
    fast_default_blas_ms: float | None
    repeats: int | None
    conf: float | None
    iou: float | None
    max_det: int | None
    objects_agree: dict[str, int | None] = field(default_factory=dict)
    speedup_vs_reference: float | None = _optional()
    speedup_vs_ultralytics: float | None = _optional()
    by_objects: list[ObjectBin] = field(default_factory=list)
    fit: dict[str, LinearFit | None] = field(default_factory=dict)
    ultralytics: dict[str, str] | None = _optional()  # versions of Ultralytics, torch and the NMS used
    note: str | None = _optional()
    per_image: list[DecoderTimes] = field(default_factory=list)

    @classmethod
    def from_dict(cls, doc: _Fields) -> DecoderComparison:
        scalars = (
            "mean_objects",
            "median_objects",
            "max_objects",
            "fast_ms",
            "reference_ms",
            "ultralytics_ms",
            "fast_default_blas_ms",
            "repeats",
            "conf",
            "iou",
            "max_det",
            "speedup_vs_reference",
            "speedup_vs_ultralytics",
        )
        fit = doc.optional("fit") or {}
        return cls(
            model=str(doc.required("model")),
            images=doc.required("images"),
            **{k: doc.optional(k) for k in scalars},
            objects_agree=doc.optional("objects_agree") or {},
            by_objects=[_read(ObjectBin, b) for b in doc.items("by_objects", required=False)],
            fit={k: _read(LinearFit, _Fields(v, doc.place(f"fit.{k}"), doc.path)) if v is not None else None for k, v in fit.items()},
            ultralytics=doc.optional("ultralytics"),
            note=doc.optional("note"),
            per_image=[_read(DecoderTimes, r) for r in doc.items("per_image", required=False)],
        )


STREAM_MODES = ("sequential", "runner", "bare")  # the loop on one thread / StreamRunner with N workers / N bare sessions


@dataclass
class StreamRun:
    """One configuration on the clip. ``stages_ms``: p50 per stage it runs (``STREAM_STAGES``; a runner's
    pipeline stages are timed inside its workers, under load); ``latency_ms``: the pipeline's time per
    frame (preprocess to masks; bare: ``backend.run``); ``age_ms`` (runner): read to ready, queueing
    included; ``detections_sha1``: every frame's detections in order (equal digests: equal detections)."""

    mode: str
    workers: int
    frames: int
    seconds: float
    fps: float
    latency_ms: Percentiles
    stages_ms: dict[str, float] = field(default_factory=dict)
    age_ms: Percentiles | None = _optional()
    objects: int | None = _optional()
    detections_sha1: str | None = _optional()
    vs_sequential: float | None = _optional()
    vs_bare: float | None = _optional()

    @property
    def label(self) -> str:
        if self.mode == "sequential":
            return "sequential loop, 1 thread"
        plural = "s" if self.workers > 1 else ""
        return f"runner, {self.workers} worker{plural}" if self.mode == "runner" else f"bare inference, {self.workers} thread{plural}"

    @classmethod
    def from_dict(cls, doc: _Fields) -> StreamRun:
        stages = doc.optional("stages_ms", {})
        if not isinstance(stages, Mapping) or not all(is_real(v) for v in stages.values()):
            raise _malformed(doc.place("stages_ms"), "is not a map of stages to numbers", doc.path)
        return cls(
            mode=doc.required("mode", lambda v: v in STREAM_MODES, f"one of {', '.join(STREAM_MODES)}"),
            workers=doc.required("workers", is_count, "a count"),
            frames=doc.required("frames", is_count, "a count"),
            seconds=doc.required("seconds", is_real, "a number"),
            fps=doc.required("fps", is_real, "a number"),
            latency_ms=Percentiles.from_dict(doc.nested("latency_ms")),
            stages_ms=dict(stages),
            age_ms=Percentiles.from_dict(doc.nested("age_ms")) if doc.optional("age_ms") is not None else None,
            **{k: doc.optional(k) for k in ("objects", "detections_sha1", "vs_sequential", "vs_bare")},
        )


@dataclass
class ModelStream:
    """One model's configurations on the clip."""

    model: str
    name: str
    runs: list[StreamRun]

    def run(self, mode: str, workers: int = 1) -> StreamRun | None:
        return next((r for r in self.runs if r.mode == mode and r.workers == workers), None)


@dataclass
class StreamBench:
    """``edgeseg bench --video``: every model's configurations on one clip, side by side. ``frames``: the
    clip's frames (each configuration reads all of them in every pass); ``turn_frames``: frames a
    configuration runs per turn."""

    clip: str
    frames: int
    size: tuple[int, int]
    fps: float | None
    passes: int
    turn_frames: int
    workers: list[int]
    models: list[ModelStream]

    @classmethod
    def from_dict(cls, doc: _Fields) -> StreamBench:
        models = [
            ModelStream(
                model=str(m.required("model")),
                name=m.optional("name", Path(str(m.required("model"))).name),
                runs=[StreamRun.from_dict(r) for r in m.items("runs")],
            )
            for m in doc.items("models")
        ]
        return cls(
            clip=str(doc.required("clip")),
            frames=doc.required("frames", is_count, "a count"),
            size=tuple(doc.required("size", lambda v: isinstance(v, list) and len(v) == 2 and all(map(is_count, v)), "[width, height]")),
            fps=doc.optional("fps"),
            passes=doc.required("passes", is_count, "a count"),
            turn_frames=doc.required("turn_frames", is_count, "a count"),
            workers=list(doc.required("workers", lambda v: isinstance(v, list) and all(map(is_count, v)), "a list of counts")),
            models=models,
        )

    def summary_lines(self) -> list[str]:
        """A few lines for the terminal: frames/s per configuration and the ratios."""
        lines = [f"stream {Path(self.clip).name}: {self.frames} frames {self.size[0]}x{self.size[1]}, {self.passes} pass(es)"]
        for m in self.models:
            parts = []
            for r in m.runs:
                ratios = [f"{r.vs_sequential:.2f}x sequential"] if r.vs_sequential is not None else []
                ratios += [f"{r.vs_bare * 100:.0f} % of bare"] if r.vs_bare is not None else []
                parts.append(f"{r.label} {r.fps:.2f}" + (f" ({', '.join(ratios)})" if ratios else ""))
            lines.append(f"  {m.name} frames/s: " + "; ".join(parts))
        return lines


@dataclass
class BenchSettings:
    """How the run was made (None: not recorded)."""

    images: int | None = None
    image_sources: list[str] | None = None
    warmup: int | None = None
    iters: int | None = None
    threads: list[int] | None = None
    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    helper_threads: dict[str, int | None] | None = None


@dataclass
class BenchResult:
    """Everything one ``edgeseg bench`` run measured."""

    machine: MachineInfo
    settings: BenchSettings
    models: list[ModelBench]
    decode_compare: DecoderComparison | None = _optional()
    stream: StreamBench | None = _optional()  # edgeseg bench --video

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, doc: Any, path: str | os.PathLike | None = None) -> BenchResult:
        """Read the JSON layout of ``to_dict`` (optional sections and fields may be absent); ``path`` names
        the file in errors."""
        top = _Fields(doc, "", path)
        models = top.items("models")
        if not models:
            raise _malformed("models", "is empty", path)
        machine = top.optional("machine", {})
        compare = top.optional("decode_compare")
        stream = top.optional("stream")
        return cls(
            machine=MachineInfo.from_dict(machine if isinstance(machine, Mapping) else {}),
            settings=_read(BenchSettings, _Fields(top.optional("settings", {}), "settings", path)),
            models=[ModelBench.from_dict(m) for m in models],
            decode_compare=DecoderComparison.from_dict(top.nested("decode_compare")) if compare else None,
            stream=StreamBench.from_dict(top.nested("stream")) if stream else None,
        )


def read_bench_result(path: str | os.PathLike) -> BenchResult:
    """A bench JSON file (``edgeseg bench --json``), with one-line errors."""
    return BenchResult.from_dict(read_json(path, "bench"), path)


def bench_summary(result: BenchResult) -> str:
    """A few lines for the terminal."""
    m = result.machine
    lines = [f"{m.cpu}, {m.usable_cores} cores, onnxruntime {m.onnxruntime}, load {m.loadavg_start} -> {m.loadavg_end}"]
    for r in result.models:
        stages = "  ".join(f"{s} {r.latency_ms[s].p50:.2f}" for s in LATENCY_KEYS)
        tp = "  ".join(f"{mode} " + "/".join(f"{n}:{v:.2f}" for n, v in r.throughput_ips.mode(mode).items()) for mode in THREAD_MODES)
        lines.append(f"{r.name}{' (INT8)' if r.int8 else ''}: p50 ms  {stages}")
        lines.append(f"  throughput img/s  {tp}")
    d = result.decode_compare
    if d:
        parts = [f"fast {d.fast_ms} ms", f"reference {d.reference_ms} ms"]
        parts.append(f"ultralytics {d.ultralytics_ms} ms" if d.ultralytics_ms is not None else d.note or "")
        lines.append(f"decoders on {d.images} images ({d.mean_objects} objects mean, medians per image): " + ", ".join(parts))
        if d.speedup_vs_ultralytics:
            lines.append(f"  fast is {d.speedup_vs_ultralytics}x faster than Ultralytics, {d.speedup_vs_reference}x than the reference")
    if result.stream is not None:
        lines += result.stream.summary_lines()
    return "\n".join(lines)
