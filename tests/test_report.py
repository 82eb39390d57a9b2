"""edgeseg report: the table carries the given numbers, plots are real PNGs, inputs are read defensively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.errors import EdgesegError
from edgeseg.report import build_report

DATA = Path(__file__).parent / "data"

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
        "machine": {
            "cpu": "Test CPU",
            "usable_cores": 2,
            "onnxruntime": "1.0",
            "numpy": "2.0",
            "loadavg_start": [0.1, 0.1, 0.1],
            "loadavg_end": [0.2, 0.1, 0.1],
        },
        "settings": {"images": 128, "warmup": 3, "iters": 1, "threads": [1, 2]},
        "models": [
            _bench_model("run/yolov8n-seg-640.onnx", False, 102.3, 9.7, 17.1, 115.0),
            _bench_model("run/yolov8n-seg-640-int8.onnx", True, 44.4, 22.5, 40.2, 49.5),
        ],
        "decode_compare": {
            "model": "run/yolov8n-seg-640.onnx",
            "images": 3,
            "mean_objects": 7.3,
            "max_objects": 20,
            "fast_ms": 1.25,
            "reference_ms": 80.0,
            "ultralytics_ms": 40.0,
            "per_image": [
                {"image": "a.jpg", "objects": 1, "fast_ms": 0.7, "reference_ms": 30.0, "ultralytics_ms": 10.0},
                {"image": "b.jpg", "objects": 1, "fast_ms": 1.25, "reference_ms": 80.0, "ultralytics_ms": 40.0},
                {"image": "c.jpg", "objects": 20, "fast_ms": 1.9, "reference_ms": 200.0, "ultralytics_ms": 98.0},
            ],
        },
    }
    # val wrote other paths for the same files: matched by file name
    val = {
        "models": [
            {
                "model": "elsewhere/yolov8n-seg-640.onnx",
                "data": "datasets/coco128-seg.yaml",
                "images": 126,
                "box_map50_95": 0.5801,
                "box_map50": 0.7,
                "mask_map50_95": 0.3462,
                "mask_map50": 0.6,
                "per_class": {},
            },
            {
                "model": "elsewhere/yolov8n-seg-640-int8.onnx",
                "data": "datasets/coco128-seg.yaml",
                "images": 126,
                "box_map50_95": 0.5512,
                "box_map50": 0.68,
                "mask_map50_95": 0.3204,
                "mask_map50": 0.58,
                "per_class": {},
            },
        ]
    }
    quant = {  # the layout of edgeseg quantize's .similarity.json
        "model": "x",
        "images": ["a.jpg"],
        "outputs": [{"tensor": "protos", "node": "protos", "op_type": "output", "cosine": 0.9935, "max_abs_error": 0.88}],
        "nodes": [
            {
                "tensor": f"/model.{i}/conv/Conv_output_0",
                "node": f"/model.{i}/conv/Conv",
                "op_type": "Conv",
                "cosine": 0.999 - i * 1e-3,
                "max_abs_error": 0.01,
            }
            for i in range(12)
        ],
    }
    paths = {}
    for name, doc in (("bench", bench), ("val", val), ("quant", quant)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    return paths


def test_table_has_the_given_numbers(inputs, tmp_path):
    md = build_report(inputs["bench"], tmp_path / "out", val_path=inputs["val"], quant_path=inputs["quant"]).read_text()
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
    md = build_report(inputs["bench"], out, val_path=inputs["val"], quant_path=inputs["quant"]).read_text()
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
    bad.write_text(json.dumps({"images": [], "outputs": [], "nodes": []}))
    md = build_report(inputs["bench"], tmp_path / "out", quant_path=bad).read_text()
    assert "holds no per-layer cosine rows" in md


def test_similarity_section_from_the_quantize_report(inputs, tmp_path):
    md = build_report(inputs["bench"], tmp_path / "out", quant_path=inputs["quant"]).read_text()
    assert "| protos | 0.99350 |" in md
    assert "12 quantized tensors; weakest: `/model.11/conv/Conv` 0.9880" in md


def test_quant_report_of_another_shape_is_one_line(inputs, tmp_path):
    junk = tmp_path / "q.json"
    junk.write_text(json.dumps({"summary": {"ok": True}}))
    with pytest.raises(EdgesegError, match="q.json: not an edgeseg quantize similarity report"):
        build_report(inputs["bench"], tmp_path / "out", quant_path=junk)


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


def test_renders_a_bench_json_written_before_the_typed_results(tmp_path):
    """tests/data/bench-before.json was written by `edgeseg bench` before BenchResult existed (a float and
    an INT8 build of one checkpoint, one image, one thread, no Ultralytics)."""
    md = build_report(DATA / "bench-before.json", tmp_path / "out").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| yolov8n-seg-coco128 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["yolov8n-seg-coco128", "640×640", "80", "3.40", "—", "—", "85.5 ms / 14.34 img/s (INT8)", "—"]
    assert "| yolov8n-seg.onnx | FP32 | " in md and "| yolov8n-seg-int8.onnx | INT8 | " in md
    assert "| 164.1 / 164.1 / 164.1 | 6.59 | 6.47 |" in md  # float total p50/p90/p99, 1 worker, 1 intra-op
    assert "**2.18×** FP32 with 1 worker thread(s) (14.34 vs 6.59 img/s)" in md
    assert "| edgeseg fast decoder | 4.51 | 1.0× |" in md and "| reference decoder (public pipeline) | 22.73 | 5.0× |" in md
    assert "Note: Ultralytics post-processing skipped (--no-ultralytics)." in md
    assert "over 1 pass(es) of 1 images after 0 warm-up images" in md


def test_caller_notes_and_no_project_history(inputs, tmp_path):
    notes = ["Target: INT8 at least 2.3× FP32.", "The checkpoint was trained on these images."]
    md = build_report(inputs["bench"], tmp_path / "out", val_path=inputs["val"], notes=notes).read_text()
    assert "7. Target: INT8 at least 2.3× FP32." in md and "8. The checkpoint was trained on these images." in md
    plain = build_report(inputs["bench"], tmp_path / "plain", val_path=inputs["val"]).read_text().lower()
    for wording in ("seed", "target", "trained on"):
        assert wording not in plain, wording


def test_bench_json_without_the_numbers_is_one_line(inputs, tmp_path):
    doc = json.loads(inputs["bench"].read_text())
    del doc["models"][1]["latency_ms"]
    bad = tmp_path / "bench-bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(EdgesegError, match=r"bench-bad.json: not an edgeseg bench JSON \(models\[1\] has no 'latency_ms'\)"):
        build_report(bad, tmp_path / "out")


def _stream_run(mode: str, workers: int, fps: float, stages: dict, sha1: str | None = None, **ratios) -> dict:
    run = {
        "mode": mode,
        "workers": workers,
        "frames": 300,
        "seconds": round(300 / fps, 3),
        "fps": fps,
        "latency_ms": {"p50": 40.0 * workers, "p90": 45.0 * workers, "p99": 52.5 * workers},
        "stages_ms": stages,
    }
    if mode == "runner":
        run["age_ms"] = {"p50": 90.0, "p90": 120.0, "p99": 150.0}
    if sha1 is not None:
        run.update(objects=1200, detections_sha1=sha1)
    return run | ratios


def test_stream_section_from_bench_video(inputs, tmp_path):
    """The frames/s table, per-stage table and the limit line carry the bench JSON's stream numbers."""
    doc = json.loads(inputs["bench"].read_text())
    full = {"read": 2.0, "preprocess": 3.0, "inference": 40.0, "decode": 1.5, "masks": 0.5, "draw": 1.0, "write": 2.0}
    doc["stream"] = {
        "clip": "runs/clip-300.mp4",
        "frames": 300,
        "size": [640, 480],
        "fps": 25.0,
        "passes": 1,
        "turn_frames": 100,
        "workers": [1, 2],
        "models": [
            {
                "model": "run/yolov8n-seg-640-int8.onnx",
                "name": "yolov8n-seg-640-int8.onnx",
                "runs": [
                    _stream_run("sequential", 1, 20.0, full, "aa"),
                    _stream_run("runner", 1, 22.0, full, "aa", vs_sequential=1.1, vs_bare=0.88),
                    _stream_run("runner", 2, 38.0, full | {"inference": 48.0}, "bb", vs_sequential=1.9, vs_bare=0.8),
                    _stream_run("bare", 1, 25.0, {"inference": 40.0}, vs_sequential=1.25),
                    _stream_run("bare", 2, 47.5, {"inference": 42.1}, vs_sequential=2.375),
                ],
            }
        ],
    }
    bench = tmp_path / "bench-video.json"
    bench.write_text(json.dumps(doc))
    out = tmp_path / "out"
    md = build_report(bench, out).read_text()
    section = md.split("## Video stream: sequential loop, pipelined runner, bare inference\n")[1].split("\n## ")[0]
    assert "Clip `clip-300.mp4`: 300 frames of 640×480 at 25 frames/s, 1 pass(es)." in section
    assert "turns of 100 frames" in section
    name = "yolov8n-seg-640-int8.onnx"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith(f"| {name} |")]
    assert rows[:5] == [
        ["yolov8n-seg-640-int8.onnx", "INT8", "sequential loop, 1 thread", "20.00", "—", "—", "40.0 / 52.5", "—", "(the reference)"],
        ["yolov8n-seg-640-int8.onnx", "INT8", "runner, 1 worker", "22.00", "1.10×", "88 %", "40.0 / 52.5", "90.0 / 150.0", "yes"],
        ["yolov8n-seg-640-int8.onnx", "INT8", "runner, 2 workers", "38.00", "1.90×", "80 %", "80.0 / 105.0", "90.0 / 150.0", "**no**"],
        ["yolov8n-seg-640-int8.onnx", "INT8", "bare inference, 1 thread", "25.00", "1.25×", "—", "40.0 / 52.5", "—", "—"],
        ["yolov8n-seg-640-int8.onnx", "INT8", "bare inference, 2 threads", "47.50", "2.38×", "—", "80.0 / 105.0", "—", "—"],
    ]
    # the per-stage table: one row per configuration, stages in pipeline order
    assert rows[5] == ["yolov8n-seg-640-int8.onnx", "sequential loop, 1 thread", "2.00", "3.00", "40.00", "1.50", "0.50", "1.00", "2.00"]
    assert rows[7][4] == "48.00" and rows[9] == [name, "bare inference, 2 threads", "—", "—", "42.10", "—", "—", "—", "—"]
    # 40 ms of inference against 10 ms of everything else: at most 80 % of bare once both cores are busy
    assert (
        "- yolov8n-seg-640-int8.onnx: besides 40.0 ms of inference a frame costs ≈10.0 ms of CPU (read 2.0, preprocess 3.0, "
        "decode 1.5, masks 0.5, draw 1.0, write 2.0; sequential loop, p50). Once the workers keep all 2 cores busy that work "
        "competes with inference, so the runner can reach at most ≈80 % of bare inference; measured: 2 worker(s) 80 %."
    ) in section
    # (1 worker leaves a core free for the rest: not a measure of this limit, so not listed)
    assert (out / "stream.png").read_bytes()[:8] == PNG_MAGIC and "](stream.png)" in md


def test_no_stream_section_without_bench_video(inputs, tmp_path):
    md = build_report(inputs["bench"], tmp_path / "out").read_text()
    assert "## Video stream" not in md and not (tmp_path / "out" / "stream.png").exists()


def test_malformed_stream_section_is_one_line(inputs, tmp_path):
    doc = json.loads(inputs["bench"].read_text())
    doc["stream"] = {
        "clip": "c.mp4",
        "frames": 3,
        "size": [4, 4],
        "passes": 1,
        "turn_frames": 100,
        "workers": [1],
        "models": [{"model": "m.onnx", "runs": [{"mode": "turbo", "workers": 1}]}],
    }
    bad = tmp_path / "bench-stream-bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(EdgesegError, match=r"bench-stream-bad.json: not an edgeseg bench JSON \(stream.models\[0\].runs\[0\].mode is not"):
        build_report(bad, tmp_path / "out")
