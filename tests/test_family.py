"""The model family: a larger graph than the shared checkpoint's (YOLOv8s-seg built from its yaml with random
weights, exported at 320 and quantized with the command line) keeps integer heads, their metadata and the decode
path; and the family table renders from a hand-made family JSON (no compute)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from corpus import assert_same_detections, error_reason, run_cli
from edgeseg.backends import QuantizedTensor, read_model_info
from edgeseg.bench.result import BenchResult
from edgeseg.errors import EdgesegError
from edgeseg.evaluate import EvalResult
from edgeseg.quantize import SimilarityReport
from family_report import (
    FAMILY_END,
    FAMILY_START,
    FamilyInputs,
    FamilyResult,
    family_block,
    family_model,
    family_section,
    read_family,
    splice_family,
)

pytestmark = pytest.mark.slow  # exports and quantizes models of several sizes

IMGSZ = 320
INTEGER_KINDS = ("box", "mc")


def _needs_export() -> None:
    pytest.importorskip("torch", reason="export needs the [export] extra (torch, Ultralytics)")
    pytest.importorskip("ultralytics", reason="export needs the [export] extra (torch, Ultralytics)")


@pytest.fixture(scope="module")
def v8s(tmp_path_factory, coco128_images):
    """YOLOv8s-seg from its yaml at 320 and its INT8 build, both made by the command line as a user makes them:
    calibration on the first 8 coco128-seg images, the similarity report on the next 2."""
    _needs_export()
    work = tmp_path_factory.mktemp("family")
    calib = work / "calib"
    calib.mkdir()
    for p in coco128_images[:10]:
        shutil.copy(p, calib / p.name)
    model, int8 = work / "yolov8s-seg-320.onnx", work / "yolov8s-seg-320-int8.onnx"
    proc = run_cli("export", "yolov8s-seg.yaml", "--imgsz", IMGSZ, "-o", model)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("quantize", model, "--calib", calib, "--num", 8, "--report-images", 2, "--bench", 0, "-o", int8)
    assert proc.returncode == 0, proc.stderr
    return model, int8


@pytest.fixture(scope="module")
def bus(ultralytics_assets):
    from edgeseg.preprocess import load_image

    return load_image(ultralytics_assets / "bus.jpg")


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_yaml_export_has_random_weights_coco_names_and_ultralytics_size(v8s):
    from edgeseg.onnxgraph import graph_gflops, load_model, parameter_count

    model, _ = v8s
    meta = _meta(model)
    assert meta["edgeseg.source"] == "yolov8s-seg.yaml"
    assert meta["edgeseg.weights"].startswith("random init from yolov8s-seg.yaml (Ultralytics ")
    assert "BatchNorm statistics from bus.jpg and zidane.jpg" in meta["edgeseg.weights"]
    info = read_model_info(model)
    assert info.num_classes == 80 and info.names[0] == "person" and info.names[79] == "toothbrush"
    assert info.imgsz == (IMGSZ, IMGSZ) and info.strides == (8, 16, 32)
    # YOLOv8s-seg: 11.8 M parameters; Ultralytics (thop) counts 10.02 GFLOPs at 320 (40.1 at 640)
    assert 11.7e6 < parameter_count(load_model(model)) < 11.9e6
    assert graph_gflops(model) == pytest.approx(10.02, rel=0.01)


def test_yaml_build_is_deterministic_and_leaves_the_rng_alone():
    _needs_export()
    import torch

    from edgeseg.export import build_from_yaml

    state = torch.random.get_rng_state()
    a, how = build_from_yaml("yolov8n-seg.yaml", 64)
    b, _ = build_from_yaml("yolov8n-seg.yaml", 64)
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert how.startswith("random init from yolov8n-seg.yaml")
    with pytest.raises(EdgesegError, match="unknown model yaml"):
        build_from_yaml("yolov8q-seg-nonexistent.yaml", 64)
    with pytest.raises(EdgesegError, match="nothing is downloaded"):
        build_from_yaml("https://example.com/yolov8s-seg.yaml", 64)


def test_unknown_yaml_is_a_one_line_error():
    _needs_export()
    proc = run_cli("export", "yolov9z-seg.yaml")
    assert error_reason(proc, "yolov9z-seg.yaml").startswith("unknown model yaml")


def test_int8_heads_are_integer_with_their_scale_and_zero_point(v8s):
    from edgeseg.onnxgraph import is_quantized, load_model

    model, int8 = v8s
    m = onnx.load(str(int8))
    types = {o.name: o.type.tensor_type.elem_type for o in m.graph.output}
    info = read_model_info(model)
    meta = _meta(int8)
    for s in info.strides:
        for kind in INTEGER_KINDS:
            name = f"{kind}_stride{s}"
            assert types[name] == onnx.TensorProto.UINT8, name
            q = json.loads(meta[f"edgeseg.quant.{name}"])
            assert len(q["scale"]) == len(q["zero_point"]) == 1 and q["scale"][0] > 0 and 0 <= q["zero_point"][0] <= 255
        assert types[f"cls_stride{s}"] == onnx.TensorProto.FLOAT
    assert types["protos"] == onnx.TensorProto.FLOAT
    assert is_quantized(m) and not is_quantized(load_model(model))
    assert meta["edgeseg.weights"] == _meta(model)["edgeseg.weights"]  # the INT8 build still says its weights are random
    assert read_model_info(int8) == info
    report = json.loads(int8.with_name("yolov8s-seg-320-int8.similarity.json").read_text())
    assert {r["tensor"] for r in report["outputs"]} == set(info.output_names) and len(report["images"]) == 2


def test_int8_heads_track_the_float_heads(v8s, bus):
    """On random weights quantization error grows through the untrained network (cosines 0.6-0.99 here, see
    docs/performance.md's family notes), so instead of a tight cosine the check is what a wiring mistake would
    break: the dequantized heads have the float heads' mean (a lost zero point shifts them by half their range),
    their spread (a wrong scale) and follow them value by value (a layout mistake decorrelates them)."""
    from edgeseg.backends import OnnxRuntimeBackend
    from edgeseg.backends.base import as_float
    from edgeseg.preprocess import preprocess

    model, int8 = v8s
    f, q = OnnxRuntimeBackend(model), OnnxRuntimeBackend(int8)
    x, _ = preprocess(bus, (IMGSZ, IMGSZ))
    fo, qo = f.run(x), q.run(x)
    for name, ref in fo.items():
        if name.split("_")[0] in INTEGER_KINDS:
            assert isinstance(qo[name], QuantizedTensor) and qo[name].data.dtype == np.uint8, name
        a, b = ref.ravel().astype(np.float64), as_float(qo[name]).ravel().astype(np.float64)
        assert a.shape == b.shape, name
        assert abs(a.mean() - b.mean()) < 0.15 * a.std(), name
        assert 0.5 < b.std() / a.std() < 2.0, name
        assert np.corrcoef(a, b)[0, 1] > 0.4, name
        if name.startswith(("cls", "box")):
            assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.9, name


def test_int8_decode_path_on_the_larger_graph(v8s, bus):
    """Segmenter decodes the INT8 model's integer heads (dequantizing only the kept rows) exactly as the same
    outputs dequantized whole, with masks inside the image; random weights need a very low threshold."""
    from edgeseg.backends.base import as_float
    from edgeseg.decode import DecodeOptions, decode
    from edgeseg.predict import Segmenter

    model, int8 = v8s
    options = DecodeOptions(conf=1e-4)
    seg = Segmenter(int8, options=options, threads=1)
    det = seg(bus)
    h, w = bus.shape[:2]
    assert len(det) > 0 and det.masks is not None and len(det.masks) == len(det)
    assert det.full_masks().shape == (len(det), h, w)
    for (x0, y0), mask, box in zip(det.mask_origins, det.masks, det.xyxy):
        assert x0 >= 0 and y0 >= 0 and x0 + mask.shape[1] <= w and y0 + mask.shape[0] <= h
        assert abs(mask.shape[1] - (box[2] - box[0])) <= 2 and abs(mask.shape[0] - (box[3] - box[1])) <= 2
    assert set(det.class_names) <= set(seg.names.values())
    raw, lb = seg.raw(bus)
    assert any(isinstance(v, QuantizedTensor) for v in raw.values())
    dense = {k: as_float(v) for k, v in raw.items()}
    assert_same_detections(decode(raw, seg.info, lb, options), decode(dense, seg.info, lb, options))
    assert_same_detections(decode(raw, seg.info, lb, options), det)
    assert Segmenter(model, options=options, threads=1)(bus).image_shape == (h, w)


# ------------------------------------------------------------------------------- rendering, no compute


def _bench(total_ms: tuple[float, float], ips: tuple[tuple[float, float], tuple[float, float]], conf: float | None) -> BenchResult:
    """A bench JSON of an FP32 and an INT8 build, as ``edgeseg bench`` writes it (only what the family reads)."""

    def entry(name: str, int8: bool, total: float, rates: tuple[float, float]) -> dict:
        stages = {"preprocess": 1.8, "inference": total - 3.0, "decode": 0.8, "masks": 0.4, "total": total}
        return {
            "model": name,
            "imgsz": [640, 640],
            "classes": 80,
            "params": 3_400_000,
            "int8": int8,
            "size_mb": 13.7,
            "source": "x.yaml",
            "latency_ms": {k: {"p50": v, "p90": v * 1.1, "p99": v * 1.2} for k, v in stages.items()},
            "throughput_ips": {"workers": {"1": rates[0], "2": rates[1]}, "intra_op": {"1": rates[0]}},
            "throughput_latency_p50_ms": {"workers": {"1": total, "2": total * 1.3}},
        }

    doc = {
        "machine": {
            "cpu": "Test CPU",
            "usable_cores": 2,
            "onnxruntime": "1.0",
            "int8_dot_instructions": [],
            "loadavg_start": [0.1, 0.1, 0.1],
            "loadavg_end": [0.2, 0.2, 0.2],
            "date_utc": "2026-01-01T00:00:00Z",
        },
        "settings": {"images": 64, "warmup": 2, "conf": conf},
        "models": [entry("m-640.onnx", False, total_ms[0], ips[0]), entry("m-640-int8.onnx", True, total_ms[1], ips[1])],
    }
    return BenchResult.from_dict(doc)


def _similarity(low: float) -> SimilarityReport:
    rows = [
        {"tensor": f"{k}_stride{s}", "cosine": low + (0.01 if s == 8 else 0.0), "max_abs_error": 0.1}
        for k in ("cls", "box", "mc")
        for s in (8, 16, 32)
    ]
    rows.append({"tensor": "protos", "cosine": low - 0.01, "max_abs_error": 0.1})
    return SimilarityReport.from_dict({"outputs": rows, "nodes": [], "images": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]})


def _eval(model: str, box: float, mask: float) -> EvalResult:
    return EvalResult(
        model=model, data="coco128-seg.yaml", images=128, box_map50_95=box, box_map50=0.8, mask_map50_95=mask, mask_map50=0.6, per_class={}
    )


@pytest.fixture()
def family(tmp_path):
    """A two-row family JSON: yolov8n-seg (random weights) and the trained checkpoint with its mAP."""
    rows = [
        family_model(
            FamilyInputs(
                name="yolov8n-seg",
                bench=_bench((96.4, 45.0), ((7.6, 14.5), (15.6, 29.7)), 1.0),
                gflops=12.04,
                weights="random init from yolov8n-seg.yaml",
                similarity=_similarity(0.84),
                calibration_images=32,
                seconds={"export": 10.0, "bench": 50.0},
            )
        ),
        family_model(
            FamilyInputs(
                name="yolov8n-seg-coco128",
                bench=_bench((218.9, 142.7), ((4.65, 9.51), (7.39, 15.01)), 0.25),
                gflops=12.04,
                similarity=_similarity(0.99),
                calibration_images=50,
                val=[_eval("runs/m-640.onnx", 0.585, 0.323), _eval("m-640-int8.onnx", 0.593, 0.324)],
            )
        ),
    ]
    result = FamilyResult(machine=_bench((1, 1), ((1, 1), (1, 1)), None).machine.to_dict(), imgsz=640, models=rows, seconds=3000.0)
    path = tmp_path / "family.json"
    path.write_text(json.dumps(result.to_dict()))
    return path


def test_family_model_condenses_bench_similarity_and_val(family):
    result = read_family(family)
    random_n, trained = result.models
    assert not random_n.trained and trained.trained and trained.weights == "x.yaml"  # a checkpoint's row names its source
    assert random_n.images == {"calibration": 32, "report": 4, "bench": 64, "warmup": 2, "val": None}
    assert trained.images["val"] == 128 and random_n.conf == 1.0 and trained.conf == 0.25
    assert random_n.speedup() == pytest.approx(96.4 / 45.0) and random_n.speedup(2) == pytest.approx(29.7 / 14.5)
    assert random_n.min_cosine("mc") == pytest.approx(0.84) and random_n.min_cosine("protos") == pytest.approx(0.83)
    assert trained.accuracy == {"fp32": {"box": 0.585, "mask": 0.323}, "int8": {"box": 0.593, "mask": 0.324}}
    assert random_n.accuracy == {} and random_n.fp32.ips == {1: 7.6, 2: 14.5}


def test_family_section_renders_the_seed_table_side_by_side(family):
    md = "\n".join(family_section(read_family(family), plot="family-latency.png"))
    rows = [line for line in md.splitlines() if line.startswith("| yolov8n-seg")]
    assert len(rows) == 4  # two tables, two rows each
    seed, trained = rows[0], rows[1]
    assert "| 640×640 | 80 | 3.40 | 12.0 | - ⁴ | - ⁴ | 96.4 ms / 7.60 img/s | 45.0 ms / 15.60 img/s |" in seed
    assert "125.3 ms / 14.50 img/s" in seed  # 2 workers: latency under load and images/s
    assert trained.startswith("| yolov8n-seg-coco128 (trained) |") and "| 58.5/32.3 | 59.3/32.4 |" in trained
    assert "2.14×" in rows[2] and "2.05×" in rows[2] and "0.840" in rows[2] and "0.830" in rows[2]
    assert "yolov8n-seg 32/4/64; yolov8n-seg-coco128 (trained) 50/4/64" in md
    assert "conf 1:" in md and "Test CPU" in md and "took 50 min" in md
    assert "![1-thread latency against GFLOPs, FP32 and INT8](family-latency.png)" in md


def test_splice_family_inserts_once_then_replaces():
    page = "# Performance\n\n| summary |\n\nNotes:\n\n1. a\n\n## Per-model speed\n\nx\n"
    once = splice_family(page, "## Model family\n\nv1\n")
    assert once.index(FAMILY_START) < once.index("## Model family") < once.index(FAMILY_END) < once.index("## Per-model speed")
    assert once.index("1. a") < once.index(FAMILY_START)
    twice = splice_family(once, "## Model family\n\nv2\n")
    assert twice.count(FAMILY_START) == 1 and "v2" in twice and "v1" not in twice
    assert family_block(twice) == "## Model family\n\nv2"
    assert family_block(page) is None
    assert splice_family("# Title\n", "b").endswith(f"{FAMILY_START}\nb\n{FAMILY_END}\n")


def test_build_family_report_writes_markdown_and_plot(family, tmp_path):
    pytest.importorskip("matplotlib")
    from family_report import build_family_report

    md = build_family_report(family, tmp_path / "report")
    assert md.name == "family.md" and md.read_text().startswith("## Model family")
    png = md.with_name("family-latency.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_family_errors_are_one_line(tmp_path):
    bad = tmp_path / "family.json"
    bad.write_text(json.dumps({"models": [{"name": "x"}]}))
    with pytest.raises(EdgesegError, match="family.json: not a family JSON") as err:
        read_family(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(EdgesegError, match="no such file"):
        read_family(tmp_path / "missing.json")
