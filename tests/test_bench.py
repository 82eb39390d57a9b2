"""edgeseg bench: the results JSON has the promised shape and sane values. Never asserts wall-clock times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseg.bench import BenchConfig, BenchResult, run_bench
from edgeseg.bench.compare import ultralytics_layout
from edgeseg.bench.result import STAGES
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
    assert set(model["latency_ms"]) == set(STAGES)
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
    rc = main(["bench", str(default_model), "--images", str(coco128_images[0]), "--threads", "1",
               "--warmup", "0", "--iters", "1", "--compare-repeats", "1", "--no-ultralytics", "--json", str(out)])
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

    from edgeseg.bench.timing import PIPELINE_STAGES, timed_call
    from edgeseg.predict import Segmenter

    seg = Segmenter(default_model, threads=1)
    for path in coco128_images[:2]:
        image = cv2.imread(str(path))
        det, stamps = timed_call(seg, image)
        assert list(stamps.ends) == list(PIPELINE_STAGES)
        assert [stamps.start, *stamps.ends.values()] == sorted([stamps.start, *stamps.ends.values()])
        ms = stamps.durations_ms()
        assert ms["total"] == pytest.approx(sum(ms[s] for s in PIPELINE_STAGES))
        ref = seg(image)
        assert len(det) == len(ref) > 0
        np.testing.assert_array_equal(det.class_ids, ref.class_ids)
        np.testing.assert_array_equal(det.xyxy, ref.xyxy)
        np.testing.assert_array_equal(det.scores, ref.scores)
        np.testing.assert_array_equal(det.mask_origins, ref.mask_origins)
        assert all((a == b).all() for a, b in zip(det.masks, ref.masks))


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
        assert lat["total"].p50 > 0 and set(lat) == set(STAGES)


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
    dot = bench_result[0]["machine"]["int8_dot_instructions"]
    assert dot is None or isinstance(dot, list)


def test_two_models_side_by_side(default_model, coco128_images, tmp_path):
    """Latency interleaved and throughput in turns: each model gets all its frames and its own numbers."""
    import shutil

    twin = tmp_path / "twin.onnx"
    shutil.copy(default_model, twin)
    config = BenchConfig(models=[default_model, twin], sources=coco128_images[:3], threads=[1, 2], warmup=0, iters=1,
                         compare_repeats=1, ultralytics=False)  # fmt: skip
    result = run_bench(config, show_progress=False).to_dict()
    a, b = result["models"]
    assert (a["name"], b["name"]) == (default_model.name, "twin.onnx")
    assert a["objects_mean"] == b["objects_mean"]  # the same network on the same images
    for m in (a, b):
        for mode in ("workers", "intra_op"):
            assert set(m["throughput_ips"][mode]) == {"1", "2"}
            assert all(v > 0 for v in m["throughput_ips"][mode].values())
