"""edgeseg bench: the results JSON has the promised shape and sane values. Never asserts wall-clock times."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg.bench import BenchConfig, BenchResult, run_bench
from edgeseg.bench.compare import ultralytics_layout
from edgeseg.bench.result import LATENCY_KEYS
from edgeseg.bench.stats import onnx_model_stats
from edgeseg.bench.timing import percentiles
from edgeseg.cli import main
from edgeseg.errors import EdgesegError

BENCH_BEFORE = Path(__file__).parent / "data" / "bench-before.json"  # written by `edgeseg bench` before BenchResult


@pytest.fixture(scope="module")
def bench_result(default_model, coco128_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    config = BenchConfig(models=[default_model], sources=coco128_images[:2], threads=[1, 2], warmup=1, iters=2, compare_repeats=1)
    result = run_bench(config, json_path=out, show_progress=False)
    return result.to_dict(), out


def test_json_written_and_equal(bench_result):
    result, path = bench_result
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))


def test_machine_recorded(bench_result):
    m = bench_result[0]["machine"]
    for key in ("cpu", "cores", "usable_cores", "onnxruntime", "numpy", "loadavg_start"):
        assert key in m
    assert m["cores"] >= 1


def test_latency_percentiles_ordered(bench_result, default_model):
    (model,) = bench_result[0]["models"]
    assert model["model"] == str(default_model)
    assert set(model["latency_ms"]) == set(LATENCY_KEYS)
    for stage, p in model["latency_ms"].items():
        assert 0 <= p["p50"] <= p["p90"] <= p["p99"], stage
    lat = model["latency_ms"]
    # total is measured around the same four stages, so it cannot be below any of them
    assert lat["total"]["p50"] >= lat["inference"]["p50"]
    assert model["classes"] == 80 and model["imgsz"] == [640, 640]
    assert model["int8"] is False and 3e6 < model["params"] < 4e6


def test_throughput_keys(bench_result):
    (model,) = bench_result[0]["models"]
    for mode in ("workers", "intra_op"):
        assert set(model["throughput_ips"][mode]) == {"1", "2"}
        assert all(v > 0 for v in model["throughput_ips"][mode].values())
        assert set(model["throughput_latency_p50_ms"][mode]) == {"1", "2"}


def test_decode_compare(bench_result):
    d = bench_result[0]["decode_compare"]
    assert d["images"] == 2 and len(d["per_image"]) == 2
    assert d["mean_objects"] == pytest.approx(np.mean([r["objects"] for r in d["per_image"]]))
    assert d["mean_objects"] > 0  # coco128 images the checkpoint has seen: it finds objects
    assert d["fast_ms"] > 0 and d["reference_ms"] > 0
    # the fast and reference decoders find the same objects on the same outputs
    assert d["objects_agree"]["reference"] == 2
    try:
        import torch  # noqa: F401
        import ultralytics  # noqa: F401
    except ImportError:
        assert d["ultralytics_ms"] is None and "skipped" in d["note"]
    else:
        assert d["ultralytics_ms"] > 0
        assert all(r["ultralytics_objects"] == r["objects"] for r in d["per_image"])


def test_ultralytics_layout_shapes(default_model, coco128_images):
    from edgeseg.predict import Segmenter

    seg = Segmenter(default_model)
    import cv2

    outputs, _ = seg.raw(cv2.imread(str(coco128_images[0])))
    output0, protos = ultralytics_layout(outputs, seg.info)
    assert output0.shape == (1, 4 + 80 + 32, 80 * 80 + 40 * 40 + 20 * 20)
    assert protos.shape == (1, 32, 160, 160)
    scores = output0[0, 4:84]
    assert scores.min() >= 0 and scores.max() <= 1
    assert (output0[0, 2:4] >= 0).all()  # widths and heights


def test_percentiles_monotone():
    p = percentiles(list(np.random.default_rng(0).exponential(size=101)))
    assert p.p50 <= p.p90 <= p.p99


def test_int8_detected_from_quantize_nodes(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.INT8, [4, 3, 1, 1], [1] * 12)
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zp = helper.make_tensor("z", TensorProto.INT8, [], [0])
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"]),
            helper.make_node("Conv", ["x", "wf"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [w, scale, zp],
    )
    path = tmp_path / "tiny.onnx"  # no "int8" in the name: the nodes decide
    onnx.save(helper.make_model(graph), str(path))
    stats = onnx_model_stats(path)
    assert stats.int8 is True
    assert stats.params == 12  # scale and zero point are not parameters


def test_cli_bench_writes_json(default_model, coco128_images, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(
        [
            "bench",
            str(default_model),
            "--images",
            str(coco128_images[0]),
            "--threads",
            "1",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--compare-repeats",
            "1",
            "--no-ultralytics",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["models"][0]["throughput_ips"]["workers"].keys() == {"1"}
    assert "skipped" in data["decode_compare"]["note"]
    assert "results in" in capsys.readouterr().out
    # the layout of a file written before BenchResult existed (same inputs but two models): same keys, same order
    before = json.loads(BENCH_BEFORE.read_text())
    before["models"] = before["models"][:1]
    assert _key_paths(data) == _key_paths(before)


def _key_paths(doc, prefix: str = "") -> list[str]:
    """Every key of a bench JSON as a path, in file order; keys whose presence depends on the machine's
    BLAS library are left out."""
    paths = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("blas", "fast_default_blas_ms"):
                continue
            paths += [f"{prefix}/{key}", *_key_paths(value, f"{prefix}/{key}")]
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            paths += _key_paths(value, f"{prefix}[{i}]")
    return paths


def test_bench_result_reads_a_file_written_before_it_existed():
    text = BENCH_BEFORE.read_text()
    result = BenchResult.from_dict(json.loads(text), BENCH_BEFORE)
    assert [m.int8 for m in result.models] == [False, True]
    assert result.models[1].latency_ms["total"].p50 == 85.495 and result.models[1].throughput_ips.workers == {1: 14.343}
    assert result.decode_compare is not None and result.decode_compare.speedup_vs_ultralytics is None
    assert json.dumps(result.to_dict(), indent=1) + "\n" == text  # the same bytes back


def test_bench_config_checks_its_values(default_model):
    with pytest.raises(EdgesegError, match="no model given"):
        BenchConfig(models=[], sources=["x.jpg"])
    with pytest.raises(EdgesegError, match="warmup must be >= 0"):
        BenchConfig(models=[default_model], sources=["x.jpg"], warmup=-1)
    with pytest.raises(EdgesegError, match="threads must be positive integers"):
        BenchConfig(models=[default_model], sources=["x.jpg"], threads=[0, 2])
    assert BenchConfig(models=[default_model], sources=["x.jpg"], threads=[2, 1, 2]).threads == (1, 2)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bench", "missing.onnx"], "missing.onnx: no such file"),
        (["bench", "{model}", "--images", "no-such-dir"], "no-such-dir: no such file or directory"),
    ],
)
def test_cli_bench_errors_are_one_line(argv, needle, default_model, capsys):
    rc = main([a.format(model=default_model) for a in argv])
    err = capsys.readouterr().err
    assert rc == 1
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bench_bad_threads(default_model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(default_model), "--threads", "0,2"])
    assert exc.value.code == 2
    assert "threads must be positive integers" in capsys.readouterr().err


def test_clock_timed_segmenter_matches_untimed(default_model, coco128_images):
    """Bench times the real Segmenter through its clock: with the clock it returns exactly what it returns
    without one, and every stage is stamped in order."""
    import cv2

    from edgeseg.bench.timing import timed_call
    from edgeseg.predict import Segmenter
    from edgeseg.stages import STAGES

    seg = Segmenter(default_model, threads=1)
    for path in coco128_images[:2]:
        image = cv2.imread(str(path))
        det, stamps = timed_call(seg, image)
        assert list(stamps.ends) == list(STAGES)
        assert [stamps.start, *stamps.ends.values()] == sorted([stamps.start, *stamps.ends.values()])
        ms = stamps.durations_ms()
        assert ms["total"] == pytest.approx(sum(ms[s] for s in STAGES))
        ref = seg(image)
        assert len(det) == len(ref) > 0
        np.testing.assert_array_equal(det.class_ids, ref.class_ids)
        np.testing.assert_array_equal(det.xyxy, ref.xyxy)
        np.testing.assert_array_equal(det.scores, ref.scores)
        np.testing.assert_array_equal(det.mask_origins, ref.mask_origins)
        assert all((a == b).all() for a, b in zip(det.masks, ref.masks))


@pytest.mark.slow
def test_interleaved_latency_keeps_each_models_results(default_model, coco128_images):
    """Models are interleaved image by image in a rotating order; every sample still lands with its model."""
    from edgeseg.backends import OnnxRuntimeBackend
    from edgeseg.bench.measure import load_bench_images, stage_latency
    from edgeseg.predict import Segmenter

    class Silent:
        """A backend whose cls logits are all very negative: it never detects anything."""

        def __init__(self, real):
            self.info, self.real = real.info, real

        def run(self, tensor):
            out = self.real.run(tensor)
            return {k: (np.full_like(v, -50.0) if k.startswith("cls_") else v) for k, v in out.items()}

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    real = OnnxRuntimeBackend(default_model, intra_op_threads=1)
    images = load_bench_images([str(p) for p in coco128_images[:3]])
    bar = Bar()
    (lat_a, obj_a), (lat_b, obj_b), (lat_c, obj_c) = stage_latency(
        [Segmenter(Silent(real)), Segmenter(real), Segmenter(real)], images, warmup=0, iters=2, bar=bar
    )
    assert bar.n == 2 * 3 * 3
    assert obj_a == [0, 0, 0] and obj_b == obj_c and sum(obj_b) > 0
    for lat in (lat_a, lat_b, lat_c):
        assert lat["total"].p50 > 0 and set(lat) == set(LATENCY_KEYS)


def test_int8_dot_product_detection_and_note():
    from edgeseg.machine import int8_dot_instructions, int8_speed_note

    assert int8_dot_instructions("processor : 0\nflags : fpu sse avx2 fma\n") == []
    assert int8_dot_instructions("flags : fpu avx2 avx512f avx512_vnni amx_int8\n") == ["avx512_vnni", "amx_int8"]
    assert int8_dot_instructions("Features : fp asimd asimddp i8mm\n") == ["asimddp", "i8mm"]
    assert int8_dot_instructions("no flags here\n") is None
    note = int8_speed_note(1.7, [])
    assert note is not None and "1.70x" in note and "VNNI" in note
    assert int8_speed_note(1.7, ["avx_vnni"]) is None  # slow for another reason: no excuse offered
    assert int8_speed_note(2.3, []) is None and int8_speed_note(1.7, None) is None


def test_machine_records_int8_dot_instructions(bench_result):
    from pathlib import Path

    from edgeseg.machine import int8_dot_instructions

    dot = bench_result[0]["machine"]["int8_dot_instructions"]
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this machine: nothing to record")
    assert dot == int8_dot_instructions(cpuinfo.read_text())  # what this CPU has, recorded (None only if it has none)


@pytest.mark.slow
def test_two_models_side_by_side(default_model, coco128_images, tmp_path):
    """Latency interleaved and throughput in turns: each model gets all its frames and its own numbers."""
    import shutil

    twin = tmp_path / "twin.onnx"
    shutil.copy(default_model, twin)
    config = BenchConfig(
        models=[default_model, twin], sources=coco128_images[:3], threads=[1, 2], warmup=0, iters=1, compare_repeats=1, ultralytics=False
    )
    result = run_bench(config, show_progress=False).to_dict()
    a, b = result["models"]
    assert (a["name"], b["name"]) == (default_model.name, "twin.onnx")
    assert a["objects_mean"] == b["objects_mean"]  # the same network on the same images
    for m in (a, b):
        for mode in ("workers", "intra_op"):
            assert set(m["throughput_ips"][mode]) == {"1", "2"}
            assert all(v > 0 for v in m["throughput_ips"][mode].values())


# ------------------------------------------------------------------------------- edgeseg bench --video

STREAM_CONFIGS = [("sequential", 1), ("runner", 1), ("runner", 2), ("bare", 1), ("bare", 2)]


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory, coco128_images) -> Path:
    """8 coco128-seg images as a 320x240 clip at 10 frames/s."""
    import cv2

    path = tmp_path_factory.mktemp("clip") / "eight.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for image in coco128_images[:8]:
        writer.write(cv2.resize(cv2.imread(str(image)), (320, 240)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def stream_bench_json(default_model, coco128_images, small_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "bench.json"
    t0 = time.perf_counter()
    rc = main(
        [
            "bench",
            str(default_model),
            "--images",
            str(coco128_images[0]),
            "--threads",
            "1",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--compare-repeats",
            "1",
            "--no-ultralytics",
            "--video",
            str(small_clip),
            "--stream-workers",
            "2,1",
            "--json",
            str(out),
        ]
    )
    out.with_suffix(".wall").write_text(str(time.perf_counter() - t0))  # the whole bench, timed here: an outside clock
    assert rc == 0
    return out


@pytest.mark.timeout(600)
def test_stream_section_has_every_configuration(stream_bench_json, small_clip, default_model):
    doc = json.loads(stream_bench_json.read_text())
    stream = doc["stream"]
    assert (stream["clip"], stream["frames"], stream["size"], stream["fps"]) == (str(small_clip), 8, [320, 240], 10.0)
    assert stream["workers"] == [1, 2] and stream["passes"] == 1
    (model,) = stream["models"]
    assert model["model"] == str(default_model)
    runs = {(r["mode"], r["workers"]): r for r in model["runs"]}
    assert list(runs) == STREAM_CONFIGS
    wall = float(stream_bench_json.with_suffix(".wall").read_text())
    assert sum(r["seconds"] for r in runs.values()) <= wall  # the runs happen one after another inside the bench
    for key, r in runs.items():
        assert r["frames"] == 8 and r["fps"] == pytest.approx(8 / r["seconds"], rel=1e-3 + 5e-4 / r["seconds"]), key  # 3 decimals
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"], key
        # Checked against the run's own per-frame clocks, not the JSON's arithmetic: at least half the frames took
        # p50 or longer, and w workers overlap at most w of them, so the run took at least 4 * p50 / w.
        assert r["seconds"] * 1000 >= 0.999 * (r["frames"] // 2) * r["latency_ms"]["p50"] / r["workers"], key
    for key in [("sequential", 1), ("runner", 1), ("runner", 2)]:
        assert set(runs[key]["stages_ms"]) == {"read", "preprocess", "inference", "decode", "masks", "draw", "write"}, key
    assert set(runs["bare", 2]["stages_ms"]) == {"inference"} and "detections_sha1" not in runs["bare", 2]
    assert "age_ms" in runs["runner", 2] and "age_ms" not in runs["sequential", 1]
    sequential = runs["sequential", 1]["fps"]
    for key in STREAM_CONFIGS[1:]:
        assert runs[key]["vs_sequential"] == pytest.approx(runs[key]["fps"] / sequential, abs=1e-3), key
    for n in (1, 2):
        assert runs["runner", n]["vs_bare"] == pytest.approx(runs["runner", n]["fps"] / runs["bare", n]["fps"], abs=1e-3)


@pytest.mark.timeout(600)
def test_stream_runner_and_sequential_loop_find_the_same_detections(stream_bench_json, small_clip, default_model):
    """The digests of the loop and the runners equal each other and one computed here, frame by frame,
    with a plain Segmenter over the decoded clip."""
    import hashlib

    import cv2

    from edgeseg.bench.stream import detections_digest
    from edgeseg.predict import Segmenter

    runs = {(r["mode"], r["workers"]): r for r in json.loads(stream_bench_json.read_text())["stream"]["models"][0]["runs"]}
    seg, digest, objects = Segmenter(default_model, threads=1), hashlib.sha1(), 0
    cap = cv2.VideoCapture(str(small_clip))
    while (frame := cap.read()[1]) is not None:
        det = seg(frame)
        detections_digest(digest, det)
        objects += len(det)
    cap.release()
    assert objects > 0  # the clip shows objects: equal digests mean something
    for key in [("sequential", 1), ("runner", 1), ("runner", 2)]:
        assert runs[key]["detections_sha1"] == digest.hexdigest(), key
        assert runs[key]["objects"] == objects, key


def test_detections_digest_sees_every_field(default_model, coco128_images):
    import hashlib

    import cv2

    from edgeseg.bench.stream import detections_digest
    from edgeseg.predict import Segmenter

    det = Segmenter(default_model)(cv2.imread(str(coco128_images[0])))
    assert len(det) > 0

    def digest(d) -> str:
        h = hashlib.sha1()
        detections_digest(h, d)
        return h.hexdigest()

    base = digest(det)
    moved = det.select(np.ones(len(det), bool))
    moved.xyxy = moved.xyxy + 1
    rescored = det.select(np.ones(len(det), bool))
    rescored.scores = rescored.scores * 0.5
    one_pixel = det.select(np.ones(len(det), bool))
    one_pixel.masks = [m.copy() for m in one_pixel.masks]
    one_pixel.masks[0].flat[0] = ~one_pixel.masks[0].flat[0]
    empty = det.select(np.zeros(len(det), bool))
    assert len({base, digest(moved), digest(rescored), digest(one_pixel), digest(empty)}) == 5
    assert digest(det.select(np.ones(len(det), bool))) == base


@pytest.mark.timeout(600)
def test_stream_json_reads_back_and_the_report_shows_it(stream_bench_json, tmp_path):
    from edgeseg.report import build_report

    doc = json.loads(stream_bench_json.read_text())
    result = BenchResult.from_dict(doc, stream_bench_json)
    assert json.loads(json.dumps(result.to_dict())) == doc  # the same document back
    md = build_report(stream_bench_json, tmp_path / "report").read_text()
    assert "## Video stream: sequential loop, pipelined runner, bare inference" in md
    assert "![Video stream frames/s per configuration](stream.png)" in md
    assert (tmp_path / "report" / "stream.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = {(r["mode"], r["workers"]): r for r in doc["stream"]["models"][0]["runs"]}
    name = Path(doc["stream"]["models"][0]["model"]).name
    section = md.split("## Video stream")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith(f"| {name} | FP32 |")]
    assert [r[2] for r in rows] == [
        "sequential loop, 1 thread",
        "runner, 1 worker",
        "runner, 2 workers",
        "bare inference, 1 thread",
        "bare inference, 2 threads",
    ]
    for row, key in zip(rows, STREAM_CONFIGS):
        r = runs[key]
        assert row[3] == f"{r['fps']:.2f}", key
        assert row[5] == (f"{r['vs_bare'] * 100:.0f} %" if key[0] == "runner" else "—"), key
        assert row[6] == f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.1f}", key
    assert rows[0][4] == "—" and rows[2][4] == f"{runs['runner', 2]['vs_sequential']:.2f}×"
    assert [r[8] for r in rows] == ["(the reference)", "yes", "yes", "—", "—"]


def test_cli_bench_video_errors_are_one_line(default_model, coco128_images, tmp_path, capsys):
    base = ["bench", str(default_model), "--images", str(coco128_images[0]), "--no-ultralytics", "--video"]
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    for clip, needle in (
        (str(tmp_path / "gone.mp4"), "gone.mp4: no such file"),
        ("0", "0: the stream benchmark needs a video file"),
        (str(not_video), "notes.mp4: cannot open as a video"),
    ):
        assert main([*base, clip]) == 1
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    with pytest.raises(SystemExit) as exc:
        main([*base, "x.mp4", "--stream-workers", "0,2"])
    assert exc.value.code == 2


def test_stream_bench_config_checks_workers():
    from edgeseg.bench import StreamBenchConfig

    assert StreamBenchConfig("c.mp4", workers=(4, 1, 2, 2)).workers == (1, 2, 4)
    with pytest.raises(EdgesegError, match="stream workers must be positive integers"):
        StreamBenchConfig("c.mp4", workers=(0, 2))
    with pytest.raises(EdgesegError, match="stream workers must be positive integers"):
        StreamBenchConfig("c.mp4", workers=())
