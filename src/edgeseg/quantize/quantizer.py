"""``quantize``: the whole job, configured by a ``QuantizeConfig``. It only orders the steps (prepare,
calibrate, quantize, mixed-precision search, integer heads, similarity report, latency); each step is
its own module."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import ModelInfo, output_name, read_model_info
from ..errors import EdgesegError, Problem
from ..fileio import write_bytes_atomic, write_json_atomic
from ..onnxgraph import is_quantized, load_model, metadata, save_model, stem_nodes
from ..sources import image_directory
from .calibrate import (
    DEFAULT_METHOD,
    DEFAULT_NUM,
    METHODS,
    Calibration,
    CalibrationPlan,
    ImageTensors,
    calibrate,
    head_floors,
    image_tensors,
    load_tensors,
    silu_input_floors,
)
from .prepare import prepare_float_model, upsample_as_conv
from .rewrite import HEAD_KINDS, CalibratedGraph, QuantSettings, check_node_names, finish_model, quantize_qdq
from .search import SearchTarget, search_mixed_precision
from .sessions import check_loads, quiet_ort, session_latency_ms
from .similarity import SimilarityReport, compare_outputs, compare_tensors, plot_report


@dataclass(frozen=True)
class QuantizeConfig:
    """How ``quantize`` works.

    ``num`` calibration images (the first readable ones of the calibration directory, sorted by path)
    with range ``method``; ``per_channel`` weight scales; ``reduce_range``: 7-bit weights; ``keep_float``
    / ``int16``: node names left in float / given 16-bit activations; ``int_cls``: cls outputs integer
    too. ``target_cosine``: lift the most sensitive layers to float until every head output (cls, box,
    mc) reaches this cosine on the first ``search_images`` calibration images, at most
    ``max_search_steps`` steps (protos are reported, not targeted: their own 8-bit output step caps them
    near 0.995). The similarity report uses ``report_images`` held-out images (0: no report): those of
    ``holdout``, else the images of the calibration directory after the calibration ones.
    ``bench_runs`` > 0 measures 1-thread latency of float, all-INT8 and (if mixed) the written model,
    interleaved, medians. ``float_stem``: the Conv that reads the image (and its SiLU) stays float: INT8
    there costs the mask outputs (protos, mc) more cosine than any other single layer and in float it
    is no slower, but held-out mAP does not show it (cross-validation in docs/quantize.md): off by default."""

    num: int = DEFAULT_NUM
    method: str = DEFAULT_METHOD
    per_channel: bool = True
    reduce_range: bool = True
    keep_float: tuple[str, ...] = ()
    int16: tuple[str, ...] = ()
    int_cls: bool = False
    target_cosine: float | None = None
    holdout: str | os.PathLike | None = None
    report_images: int = 8
    search_images: int = 4
    max_search_steps: int = 12
    bench_runs: int = 0
    float_stem: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        object.__setattr__(self, "int16", tuple(self.int16))
        if self.method not in METHODS:
            raise EdgesegError(f"unknown calibration method {self.method!r} (choose from {', '.join(METHODS)})")
        if self.num < 1:
            raise EdgesegError(f"--num must be >= 1, got {self.num}")
        if self.target_cosine is not None and not 0 < self.target_cosine < 1:
            raise EdgesegError(f"target cosine must be between 0 and 1, got {self.target_cosine}")

    def settings(self, stem: tuple[str, ...] = ()) -> QuantSettings:
        """The settings of ``quantize_qdq``; ``stem``: the stem nodes kept float (see ``float_stem``)."""
        keep = self.keep_float + tuple(n for n in stem if n not in self.keep_float)
        return QuantSettings(self.per_channel, self.reduce_range, keep, self.int16, self.int_cls)


@dataclass
class QuantizeResult:
    """What ``quantize`` made and measured."""

    output: Path
    calibration_images: list[Path]
    skipped: list[Problem]
    method: str
    keep_float: list[str]
    int16: list[str]
    integer_outputs: list[str]
    report: SimilarityReport | None = None
    report_json: Path | None = None
    report_png: Path | None = None
    search: list[dict] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    float_stem: list[str] = field(default_factory=list)  # stem nodes kept float (not in ``keep_float``)


def default_output(model: str | os.PathLike) -> Path:
    p = Path(model)
    return p.with_name(f"{p.stem}-int8.onnx")


@dataclass(frozen=True)
class FloatModel:
    """The float model to quantize: its path, info and metadata, and the graph that is calibrated and
    quantized (``quantizable_graph``) with the nodes rewritten there."""

    path: Path
    info: ModelInfo
    meta: dict[str, str]
    graph13: Any  # onnx.ModelProto
    rewritten: list[str]


@dataclass(frozen=True)
class CalibratedModel:
    """A float model and its calibration: what every INT8 build of it starts from (``quantize`` makes one;
    builds with other settings from the same calibration use ``build_int8`` on it too)."""

    float_model: FloatModel
    graph: CalibratedGraph
    calibration: Calibration


@dataclass
class Int8Build:
    """One INT8 model written by ``build_int8``: its settings, the QDQ graphs behind it (all-INT8 and, after a
    search, the mixed one), the search steps and warning, its ``edgeseg.quantization`` metadata and bytes."""

    settings: QuantSettings
    stem: tuple[str, ...]
    all_int8_path: Path
    qdq_path: Path
    search: list[dict]
    warning: str | None
    quantization: dict[str, Any]
    model: Any  # onnx.ModelProto
    data: bytes


@dataclass
class _Job:
    """What the steps of one ``quantize`` call share."""

    src: Path
    calib: str | os.PathLike  # as given: warnings name it so
    out: Path
    info: ModelInfo
    config: QuantizeConfig
    float_meta: dict[str, str]
    graph: CalibratedGraph
    calibration: Calibration
    quantization: dict[str, Any]  # the ``edgeseg.quantization`` metadata
    warnings: list[str]


def quantize(
    model: str | os.PathLike,
    calib: str | os.PathLike,
    *,
    config: QuantizeConfig | None = None,
    output: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> QuantizeResult:
    """Quantize an edgeseg float model to INT8 (QDQ) with integer ``box``/``mc`` heads, calibrated on
    the images of the directory ``calib`` (unreadable files are skipped and listed in the result);
    written to ``output`` (default ``MODEL-int8.onnx`` beside the model) with a similarity report
    beside it. See ``QuantizeConfig`` for the knobs."""
    from onnx import TensorProto

    config = config or QuantizeConfig()
    src = Path(model)
    float_model = load_quantizable(src, config)
    out = Path(output) if output is not None else default_output(src)
    if out.resolve() == src.resolve():
        raise EdgesegError("output would overwrite the float model; give another -o", out)
    if out.is_dir():
        raise EdgesegError("is a directory, expected an output .onnx path", out)
    files = image_directory(calib, "calibration")
    warn: list[str] = []

    with tempfile.TemporaryDirectory(prefix="edgeseg-quant-") as tmp:
        work = Path(tmp)
        calibrated = calibrate_model(float_model, files, config, workdir=work, show_progress=show_progress)
        cal = calibrated.calibration
        if len(cal.used) < config.num:
            warn.append(f"{calib}: only {len(cal.used)} usable calibration image(s), {config.num} asked")
        built = build_int8(calibrated, config, qdq_path=work / "qdq.onnx", out=out, show_progress=show_progress)
        warn.extend([built.warning] if built.warning else [])
        info = float_model.info
        job = _Job(src, calib, out, info, config, float_model.meta, calibrated.graph, cal, built.quantization, warn)
        integer = [o.name for o in built.model.graph.output if o.type.tensor_type.elem_type != TensorProto.FLOAT]
        result = QuantizeResult(
            out,
            cal.used,
            cal.skipped,
            config.method,
            built.quantization["keep_float"],
            list(built.settings.int16),
            integer,
            search=built.search,
            warnings=warn,
            float_stem=list(built.stem),
        )
        if config.report_images > 0:
            _similarity_report(job, result, qdq_path=built.qdq_path, final_bytes=built.data)
        if config.bench_runs > 0:
            mixed = built.qdq_path != built.all_int8_path
            result.latency_ms = _latency(job, all_int8_path=built.all_int8_path, final_bytes=built.data, mixed=mixed)
    for w in warn:
        warnings.warn(w, stacklevel=2)
    return result


def load_quantizable(src: Path, config: QuantizeConfig) -> FloatModel:
    """The float model at ``src`` with the graph that ``config`` quantizes (``quantizable_graph``)."""
    info, float_model = load_float_model(src)
    model13, rewritten = quantizable_graph(float_model, src, config)
    return FloatModel(src, info, metadata(float_model), model13, rewritten)


def calibrate_model(
    float_model: FloatModel, files: list[Path], config: QuantizeConfig, *, workdir: Path, show_progress: bool = False
) -> CalibratedModel:
    """Calibrate ``float_model``'s graph on ``files`` as ``config`` asks (its ``num``, ``method`` and, for a
    search, the inputs kept); the prepared graph and the calibration cache are written in ``workdir``."""
    model13 = float_model.graph13
    model13_path = save_model(model13, workdir / "float13.onnx")
    plan = calibration_plan(model13, float_model.info, config)
    cal = calibrate(model13_path, files, plan, workdir=workdir, show_progress=show_progress)
    return CalibratedModel(float_model, CalibratedGraph(model13, model13_path, cal.cache, config.method), cal)


def build_int8(calibrated: CalibratedModel, config: QuantizeConfig, *, qdq_path: Path, out: Path, show_progress: bool = False) -> Int8Build:
    """The INT8 model of ``config`` from a calibration, written to ``out``: QDQ at ``qdq_path``, the
    mixed-precision search (``target_cosine``), integer heads and metadata, checked to load in ONNX Runtime,
    then written atomically."""
    float_model, graph, cal = calibrated.float_model, calibrated.graph, calibrated.calibration
    info = float_model.info
    stem = float_stem_nodes(float_model.graph13, config)
    settings = config.settings(stem=stem)
    quantize_qdq(graph, settings, qdq_path)
    final_qdq, search, warning = qdq_path, [], None
    if config.target_cosine is not None:
        heads = tuple(output_name(k, s) for s in info.strides for k in HEAD_KINDS)
        found = search_mixed_precision(
            graph,
            cal.search_tensors,
            settings=settings,
            qdq_path=qdq_path,
            target=SearchTarget(config.target_cosine, heads, config.max_search_steps),
            show_progress=show_progress,
        )
        settings, final_qdq, search, warning = found.settings, found.qdq_path, found.steps, found.warning
        for st in search:  # the steps name what the search lifted; the stem is reported apart
            st["keep_float"] = [n for n in st["keep_float"] if n not in stem]
    record = quantization_record(config, settings=settings, stem=stem, images=len(cal.used), rewritten=float_model.rewritten)
    final = finish_model(final_qdq, float_meta=float_model.meta, info=info, settings=settings, ranges=cal.ranges, config=record)
    data = final.SerializeToString()
    check_loads(data, out)
    write_bytes_atomic(out, data)
    return Int8Build(
        settings=settings,
        stem=stem,
        all_int8_path=qdq_path,
        qdq_path=final_qdq,
        search=search,
        warning=warning,
        quantization=record,
        model=final,
        data=data,
    )


def load_float_model(src: Path) -> tuple[ModelInfo, Any]:
    """The float edgeseg model to quantize (``onnx.ModelProto``) and its info; a quantized one is refused."""
    info = read_model_info(src)
    float_model = load_model(src, external_data=True)
    if is_quantized(float_model):
        raise EdgesegError("model is already quantized; quantize the float export", src)
    return info, float_model


def calibration_plan(model13, info: ModelInfo, config: QuantizeConfig) -> CalibrationPlan:
    """What ``calibrate`` computes for ``config`` on the prepared graph (the search keeps a few inputs)."""
    return CalibrationPlan(
        info.imgsz,
        config.method,
        config.num,
        head_floors(model13, info),
        silu_input_floors(model13),
        keep_tensors=config.search_images if config.target_cosine is not None else 0,
    )


def quantization_record(
    config: QuantizeConfig, *, settings: QuantSettings, stem: tuple[str, ...], images: int, rewritten: list[str]
) -> dict[str, Any]:
    """The ``edgeseg.quantization`` metadata: the settings a model was made with."""
    return {
        "tool": "onnxruntime.quantization.quantize_static (QDQ)",
        "calibration": config.method,
        "calibration_images": images,
        "activations": "uint8",
        "weights": "int8 per-channel" if config.per_channel else "int8 per-tensor",
        "reduce_range": config.reduce_range,
        "keep_float": [n for n in settings.keep_float if n not in stem],
        "float_stem": list(stem),
        "int16": list(settings.int16),
        "target_cosine": config.target_cosine,
        "upsample_as_conv": rewritten,
    }


def float_stem_nodes(model13, config: QuantizeConfig) -> tuple[str, ...]:
    """The stem nodes ``config`` keeps float (none without ``float_stem``; nodes named in ``int16`` stay int16)."""
    return tuple(n for n in stem_nodes(model13) if n not in config.int16) if config.float_stem else ()


def quantizable_graph(float_model, src: Path, config: QuantizeConfig) -> tuple[Any, list[str]]:
    """The graph that is calibrated and quantized: opset 13, the proto upsample as an integer-friendly
    Conv (unless named in keep_float / int16), with the node names of the config checked against it;
    its own node names (e.g. a search's ".../as_conv") are valid too. Also the rewritten nodes."""
    from onnx import shape_inference

    model13 = prepare_float_model(float_model, src)
    rewritten = upsample_as_conv(model13, keep=(*config.keep_float, *config.int16))
    if rewritten:
        model13 = shape_inference.infer_shapes(model13)
    check_config_nodes(float_model, config, src, also=model13)
    return model13, rewritten


def check_config_nodes(model, config: QuantizeConfig, src: Path, also=None) -> None:
    """The ``keep_float`` / ``int16`` node names of ``config`` exist in ``model`` (or ``also``) and none is
    given both; one-line errors otherwise."""
    check_node_names(model, config.keep_float, "--keep-float", src, also=also)
    check_node_names(model, config.int16, "--int16", src, also=also)
    both = sorted(set(config.keep_float) & set(config.int16))
    if both:
        raise EdgesegError(f"node {both[0]!r} is given both --keep-float and --int16", src)


def _held_out(job: _Job) -> ImageTensors:
    """The report's images: ``holdout``'s, else the calibration directory's after the calibration ones."""
    count, holdout = job.config.report_images, job.config.holdout
    if holdout is not None:
        return load_tensors(image_directory(holdout, "calibration"), job.info.imgsz, count)
    return load_tensors(job.calibration.rest, job.info.imgsz, count)


def _similarity_report(job: _Job, result: QuantizeResult, *, qdq_path: Path, final_bytes: bytes) -> None:
    """Compare with the float model on held-out images; write ``OUT.similarity.json`` and ``.png``."""
    held = _held_out(job)
    result.skipped.extend(held.skipped)
    if not held.tensors:
        job.warnings.append(
            f"{job.config.holdout or job.calib}: no held-out image left for the similarity report "
            "(give more images than --num, or --holdout DIR)"
        )
        return
    model13 = job.graph.model
    nodes = compare_tensors(model13, load_model(qdq_path), held.tensors)
    outs = compare_outputs(job.graph.path, final_bytes, job.info.output_names, held.tensors, floors=head_floors(model13, job.info))
    activations = [s for s in nodes.values() if s.name not in outs]
    report = SimilarityReport(
        [str(p) for p in held.used],
        list(outs.values()),
        activations,
        model=job.out.name,
        float_model=job.src.name,
        quantization=job.quantization,
        search=result.search,
    )
    result.report = report
    stem = job.out.with_suffix("")
    result.report_json = write_json_atomic(stem.with_name(stem.name + ".similarity.json"), report.to_dict())
    title = f"{job.out.name} vs {job.src.name}: INT8 vs float on {len(held.used)} held-out image(s)"
    try:
        result.report_png = plot_report(report, stem.with_name(stem.name + ".similarity.png"), title)
    except ImportError:  # matplotlib is optional on a board
        job.warnings.append("matplotlib is not installed: similarity plot skipped (pip install matplotlib)")


def _latency(job: _Job, *, all_int8_path: Path, final_bytes: bytes, mixed: bool) -> dict[str, float]:
    """1-thread latency of float, all-INT8 and (when the search lifted layers) the written model."""
    cal, config = job.calibration, job.config
    tensor = cal.search_tensors[0] if cal.search_tensors else next(image_tensors(cal.used, job.info.imgsz, 1, []))[1]
    models: dict[str, Any] = {"float": job.graph.path}
    if mixed:
        with quiet_ort():
            all_int8 = finish_model(
                all_int8_path,
                float_meta=job.float_meta,
                info=job.info,
                ranges=cal.ranges,
                settings=QuantSettings(config.per_channel, config.reduce_range, int_cls=config.int_cls),
                config=job.quantization,
            )
        models["int8"] = all_int8.SerializeToString()
        models["mixed"] = final_bytes
    else:
        models["int8"] = final_bytes
    return session_latency_ms(models, tensor, runs=config.bench_runs)
