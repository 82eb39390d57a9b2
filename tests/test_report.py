"""edgeseg report: the seed's table carries the given numbers, plots are real PNGs, inputs are read defensively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.errors import EdgesegError
from edgeseg.report import build_report, similarity_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench_model(path: str, int8: bool, total: float, ips1: float, ips2: float, lat2: float) -> dict:
    lat = {"preprocess": 2.0, "inference": total - 4.0, "decode": 1.2, "masks": 0.8, "total": total}
    return {
        "model": path,
        "source": "yolov8n-seg-coco128.pt",
        "imgsz": [640, 640],
        "classes": 80,
        "params": 3_404_308,
        "int8": int8,
        "latency_ms": {k: {"p50": v, "p90": v * 1.1, "p99": v * 1.2} for k, v in lat.items()},
        "throughput_ips": {"workers": {"1": ips1, "2": ips2}, "intra_op": {"1": ips1 * 0.98, "2": ips2 * 0.8}},
        "throughput_latency_p50_ms": {"workers": {"1": total, "2": lat2}, "intra_op": {"1": total, "2": lat2 * 0.7}},
    }


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    bench = {
        "machine": {"cpu": "Test CPU", "usable_cores": 2, "onnxruntime": "1.0", "numpy": "2.0",
                    "loadavg_start": [0.1, 0.1, 0.1], "loadavg_end": [0.2, 0.1, 0.1]},
        "settings": {"images": 128, "warmup": 3, "iters": 1, "threads": [1, 2]},
        "models": [
            _bench_model("run/yolov8n-seg-640.onnx", False, 102.3, 9.7, 17.1, 115.0),
            _bench_model("run/yolov8n-seg-640-int8.onnx", True, 44.4, 22.5, 40.2, 49.5),
        ],
        "decode_compare": {
            "model": "run/yolov8n-seg-640.onnx", "images": 3, "mean_objects": 7.3, "max_objects": 20,
            "fast_ms": 1.25, "reference_ms": 80.0, "ultralytics_ms": 40.0,
            "per_image": [
                {"image": "a.jpg", "objects": 1, "fast_ms": 0.7, "reference_ms": 30.0, "ultralytics_ms": 10.0},
                {"image": "b.jpg", "objects": 1, "fast_ms": 1.25, "reference_ms": 80.0, "ultralytics_ms": 40.0},
                {"image": "c.jpg", "objects": 20, "fast_ms": 1.9, "reference_ms": 200.0, "ultralytics_ms": 98.0},
            ],
        },
    }
    # val wrote other paths for the same files: matched by file name
    val = {"models": [
        {"model": "elsewhere/yolov8n-seg-640.onnx", "images": 126, "box_map50_95": 0.5801, "box_map50": 0.7,
         "mask_map50_95": 0.3462, "mask_map50": 0.6, "per_class": {}},
        {"model": "elsewhere/yolov8n-seg-640-int8.onnx", "images": 126, "box_map50_95": 0.5512, "box_map50": 0.68,
         "mask_map50_95": 0.3204, "mask_map50": 0.58, "per_class": {}},
    ]}
    quant = {"model": "x", "layers": [{"node": f"/model.{i}/conv/Conv", "cosine": 0.999 - i * 1e-3} for i in range(12)]}
    paths = {}
    for name, doc in (("bench", bench), ("val", val), ("quant", quant)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    return paths


def test_table_has_the_given_numbers(inputs, tmp_path):
    md = build_report(inputs["bench"], tmp_path / "out", inputs["val"], inputs["quant"]).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| yolov8n-seg-coco128 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["yolov8n-seg-coco128", "640×640", "80", "3.40", "58.0/34.6", "55.1/32.0"]
    # speed columns show the INT8 build, as the seed does
    assert cells[6] == "44.4 ms / 22.50 img/s (INT8)"
    assert cells[7] == "49.5 ms / 40.20 img/s, 2 threads (INT8)"
    assert "Test CPU" in md and "126 coco128-seg images" in md
    assert "**2.35×** FP32 with 2 worker thread(s)" in md  # 40.2 / 17.1
    assert "| edgeseg fast decoder | 1.25 | 1.0× |" in md
    assert "| 32.0×" in md  # ultralytics 40 / fast 1.25


def test_plots_are_png(inputs, tmp_path):
    out = tmp_path / "out"
    md = build_report(inputs["bench"], out, inputs["val"], inputs["quant"]).read_text()
    for name in ("stages.png", "throughput.png", "decoders.png", "similarity.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 5000, name
        assert f"]({name})" in md


def test_optional_inputs_missing(inputs, tmp_path):
    out = tmp_path / "out"
    md = build_report(inputs["bench"], out).read_text()
    assert "no quantize report given" in md
    assert not (out / "similarity.png").exists()
    row = next(line for line in md.splitlines() if line.startswith("| yolov8n-seg-coco128 "))
    assert "| — | — |" in row  # no accuracy without val


def test_quant_report_without_rows_is_a_note(inputs, tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps({"summary": {"ok": True}}))
    md = build_report(inputs["bench"], tmp_path / "out", quant_path=bad).read_text()
    assert "holds no per-layer cosine rows" in md


@pytest.mark.parametrize(
    "doc, expected",
    [
        ([{"node": "a", "cosine": 0.9}], [("a", 0.9)]),
        ({"rows": [{"output": "b", "cos": 1}]}, [("b", 1.0)]),
        ({"x": {"per_layer": [{"name": "c", "cosine_similarity": 0.5}, {"name": "d"}]}}, [("c", 0.5)]),
        ({"rows": [{"node": "e", "cosine": "n/a"}]}, []),
        ("nothing", []),
    ],
)
def test_similarity_rows_defensive(doc, expected):
    assert similarity_rows(doc) == expected


def test_bad_inputs_one_line(inputs, tmp_path):
    with pytest.raises(EdgesegError, match="no such file"):
        build_report(tmp_path / "nope.json", tmp_path / "out")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(EdgesegError, match="junk.json: not valid JSON"):
        build_report(junk, tmp_path / "out")
    with pytest.raises(EdgesegError, match="not an edgeseg val JSON"):
        build_report(inputs["bench"], tmp_path / "out", val_path=inputs["quant"])


def test_cli_report(inputs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", "--bench", str(inputs["bench"]), "--val", str(inputs["val"]), "-o", str(out)]) == 0
    assert (out / "report.md").is_file()
    assert main(["report", "--bench", str(tmp_path / "missing.json"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "missing.json: no such file" in err and err.count("\n") == 1
