"""INT8 quantization: integer heads that ORT runs and the decoder reads, similarity vs float on held-out
images, calibration edge cases, mixed precision and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from corpus import run_cli
from edgeseg.backends import OnnxRuntimeBackend, QuantizedTensor, read_model_info
from edgeseg.errors import EdgesegError
from edgeseg.predict import Segmenter
from edgeseg.preprocess import load_image, preprocess
from edgeseg.quantize import (
    QuantizeConfig,
    format_report,
    head_outputs,
    prepare_float_model,
    quantize,
    read_similarity_report,
    upsample_as_conv,
)
from quantize_variants import quantize_variants

NUM_CALIB = 16
NUM_HELD_OUT = 6


@pytest.fixture(scope="session")
def calib_dir(coco128_images, tmp_path_factory):
    """The first NUM_CALIB + NUM_HELD_OUT coco128-seg images: calibration takes the first NUM_CALIB,
    the report the rest."""
    d = tmp_path_factory.mktemp("calib")
    for p in coco128_images[: NUM_CALIB + NUM_HELD_OUT]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="session")
def int8(model_640, calib_dir, tmp_path_factory):
    """model_640 quantized with the default settings (cached for the session)."""
    out = tmp_path_factory.mktemp("int8") / "yolov8n-seg-640-int8.onnx"
    result = quantize(model_640, calib_dir, output=out, config=QuantizeConfig(num=NUM_CALIB, report_images=NUM_HELD_OUT))
    return result


@pytest.fixture(scope="session")
def held_out(coco128_images):
    """Images used neither for calibration nor for the report: the last of coco128-seg."""
    return coco128_images[-5:]


def test_int8_model_has_integer_box_and_mc_heads(int8, model_640):
    m = onnx.load(str(int8.output))
    types = {o.name: o.type.tensor_type.elem_type for o in m.graph.output}
    info = read_model_info(model_640)
    for s in info.strides:
        assert types[f"box_stride{s}"] in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
        assert types[f"mc_stride{s}"] in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
        assert types[f"cls_stride{s}"] == onnx.TensorProto.FLOAT  # integer cls only with int_cls
    assert sorted(int8.integer_outputs) == sorted(head_outputs(info))
    # the trailing DequantizeLinear is gone, and the graph really is quantized
    producers = {o: n for n in m.graph.node for o in n.output}
    assert all(producers[n].op_type != "DequantizeLinear" for n in int8.integer_outputs)
    assert sum(n.op_type == "QuantizeLinear" for n in m.graph.node) > 50
    # every edgeseg key of the float model survives; scale/zero point of each integer head are stored
    float_meta = {p.key: p.value for p in onnx.load(str(model_640), load_external_data=False).metadata_props}
    meta = {p.key: p.value for p in m.metadata_props}
    assert {k: v for k, v in meta.items() if k in float_meta} == float_meta
    for name in int8.integer_outputs:
        q = json.loads(meta[f"edgeseg.quant.{name}"])
        assert len(q["scale"]) == len(q["zero_point"]) == 1 and q["scale"][0] > 0
    assert read_model_info(int8.output) == read_model_info(model_640)


def test_int8_graph_has_no_float_upsample(int8):
    """The proto upsample (ConvTranspose 2x2/2, no int8 kernel in ORT) is an integer 1x1 Conv plus a uint8
    interleave in the INT8 model: no float ConvTranspose between a DequantizeLinear and a QuantizeLinear."""
    m = onnx.load(str(int8.output))
    assert not [n for n in m.graph.node if n.op_type == "ConvTranspose"]
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["edgeseg.quantization"])["upsample_as_conv"] == ["/model.22/proto/upsample/ConvTranspose"]
    conv = next(n for n in m.graph.node if n.name == "/model.22/proto/upsample/ConvTranspose/as_conv")
    producers = {o: n for n in m.graph.node for o in n.output}
    assert producers[conv.input[0]].op_type == "DequantizeLinear"  # quantized input and weights
    assert producers[conv.input[1]].op_type == "DequantizeLinear"


def _run_float(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": x})))


def test_upsample_as_conv_is_exact(model_640, coco128_images):
    from onnx import shape_inference

    base = prepare_float_model(onnx.load(str(model_640)), model_640)
    rewritten = shape_inference.infer_shapes(prepare_float_model(onnx.load(str(model_640)), model_640))
    assert upsample_as_conv(rewritten) == ["/model.22/proto/upsample/ConvTranspose"]
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ConvTranspose" not in ops and ops.count("Conv") == 1 + [n.op_type for n in base.graph.node].count("Conv")
    assert not {"model.22.proto.upsample.weight", "model.22.proto.upsample.bias"} & {i.name for i in rewritten.graph.initializer}
    x, _ = preprocess(load_image(coco128_images[3]), (640, 640))
    a, b = _run_float(base, x), _run_float(rewritten, x)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-4, err_msg=name)
    # kept nodes, and ConvTranspose that is not a 2x2 stride-2 upsample, are left alone
    kept = prepare_float_model(onnx.load(str(model_640)), model_640)
    assert upsample_as_conv(kept, keep=["/model.22/proto/upsample/ConvTranspose"]) == []
    node = next(n for n in kept.graph.node if n.op_type == "ConvTranspose")
    next(a for a in node.attribute if a.name == "strides").ints[:] = [1, 1]
    assert upsample_as_conv(kept) == []


def test_keep_float_accepts_the_rewritten_upsample_names(model_640, calib_dir, tmp_path):
    """Names from the quantized graph (e.g. a mixed-precision search's ``.../as_conv``) can be given back."""
    name = "/model.22/proto/upsample/ConvTranspose/as_conv"
    r = quantize(
        model_640, calib_dir, output=tmp_path / "k.onnx", config=QuantizeConfig(num=2, method="minmax", keep_float=[name], report_images=0)
    )
    q = onnx.load(str(r.output))
    conv = next(n for n in q.graph.node if n.name == name)
    assert conv.input[1] in {i.name for i in q.graph.initializer}  # float weights: not quantized
    assert r.keep_float == [name] and r.float_stem == []
    # by default the image itself is quantized and the first conv runs on integers
    assert [n.op_type for n in q.graph.node if "images" in n.input] == ["QuantizeLinear"]


def _stem_of(model) -> list[str]:
    """Independently of the quantizer: the Conv fed by the graph input and the nodes that consume its output."""
    first = [n for n in model.graph.node if n.op_type == "Conv" and n.input[0] == model.graph.input[0].name]
    after = [n.name for n in model.graph.node if first and first[0].output[0] in n.input]
    return [first[0].name] + after if first else []


def test_float_stem_keeps_the_input_stem_float_and_says_so(model_640, calib_dir, tmp_path):
    out = tmp_path / "q.onnx"
    proc = run_cli(
        "quantize",
        model_640,
        "--calib",
        calib_dir,
        "--num",
        2,
        "--method",
        "minmax",
        "--report-images",
        0,
        "--bench",
        0,
        "--float-stem",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept in float (--float-stem): the input stem (/model.0/conv/Conv, " in proc.stdout
    q = onnx.load(str(out))
    stem = _stem_of(onnx.load(str(model_640)))
    assert stem[0] == "/model.0/conv/Conv" and len(stem) == 3  # Conv + its SiLU (Sigmoid, Mul)
    conv = next(n for n in q.graph.node if n.name == stem[0])
    assert conv.input[0] == "images" and conv.input[1] in {i.name for i in q.graph.initializer}  # float in, float weights
    after_stem = [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "/model.0/act/Mul_output_0"]
    assert len(after_stem) == 1  # the rest of the network is INT8 from the stem's output on
    assert not [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images"]
    meta = json.loads({p.key: p.value for p in q.metadata_props}["edgeseg.quantization"])
    assert sorted(meta["float_stem"]) == sorted(stem) and meta["keep_float"] == []  # reported apart from --keep-float


def test_quantize_cli_says_the_stem_is_int8_by_default(int8, model_640, calib_dir, tmp_path):
    assert int8.float_stem == []
    proc = run_cli(
        "quantize",
        model_640,
        "--calib",
        calib_dir,
        "--num",
        1,
        "--method",
        "minmax",
        "--report-images",
        0,
        "--bench",
        0,
        "-o",
        tmp_path / "q.onnx",
    )
    assert proc.returncode == 0, proc.stderr
    assert "every layer INT8, the input stem too" in proc.stdout and "--float-stem keeps the stem float" in proc.stdout


def _dense(outputs):
    return {k: v.dequantize() if isinstance(v, QuantizedTensor) else v for k, v in outputs.items()}


def test_int8_heads_match_float_on_held_out_images(int8, model_640, held_out):
    """ORT runs it; the runtime hands back QuantizedTensor heads; cosine >= 0.99 per output."""
    f = OnnxRuntimeBackend(model_640)
    q = OnnxRuntimeBackend(int8.output)
    acc: dict[str, list] = {}
    for path in held_out:
        x, _ = preprocess(load_image(path), f.info.imgsz)
        fo, qo = f.run(x), q.run(x)
        for name in int8.integer_outputs:
            assert isinstance(qo[name], QuantizedTensor) and qo[name].data.dtype == np.uint8
        for name, v in _dense(qo).items():
            acc.setdefault(name, []).append((fo[name].ravel(), v.ravel()))
    for name, pairs in acc.items():
        a = np.concatenate([p[0] for p in pairs]).astype(np.float64)
        b = np.concatenate([p[1] for p in pairs]).astype(np.float64)
        cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        floor = 0.98 if name == "protos" else 0.99
        assert cos >= floor, (name, cos)


def test_segmenter_decodes_int8_like_float(int8, model_640, held_out):
    fs, qs = Segmenter(model_640), Segmenter(int8.output)
    matched = total = 0
    for path in held_out:
        a, b = fs(path), qs(path)
        total += len(a)
        for box, c in zip(a.xyxy, a.class_ids):
            if len(b) == 0:
                continue
            x1 = np.maximum(box[0], b.xyxy[:, 0])
            y1 = np.maximum(box[1], b.xyxy[:, 1])  # noqa: E702
            x2 = np.minimum(box[2], b.xyxy[:, 2])
            y2 = np.minimum(box[3], b.xyxy[:, 3])  # noqa: E702
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            union = (box[2] - box[0]) * (box[3] - box[1]) + np.prod(b.xyxy[:, 2:] - b.xyxy[:, :2], axis=1) - inter
            iou = inter / union
            matched += bool(np.any((iou > 0.7) & (b.class_ids == c)))
        assert b.masks is not None and len(b.masks) == len(b)
    assert total >= 5  # the checkpoint finds objects on coco128 images
    assert matched >= 0.85 * total, (matched, total)


def test_similarity_report(int8, calib_dir):
    r = int8.report
    assert r is not None and len(r.images) == NUM_HELD_OUT
    used = {p.name for p in int8.calibration_images}
    assert len(used) == NUM_CALIB and not used & {p.split("/")[-1] for p in r.images}  # held out, really
    cos = r.output_cosines()
    assert set(cos) == set(read_model_info(int8.output).output_names)
    assert all(cos[n] >= 0.99 for n in cos if not n.startswith("protos"))
    data = json.loads(int8.report_json.read_text())
    names = [o["tensor"] for o in data["outputs"]]
    kinds = [n.split("_")[0] for n in names]
    assert kinds == ["protos"] + ["mc"] * 3 + ["box"] * 3 + ["cls"] * 3  # what the masks are made of first
    for kind in ("mc", "box", "cls"):  # weakest first within each kind
        cos = [o["cosine"] for o in data["outputs"] if o["tensor"].startswith(kind + "_")]
        assert cos == sorted(cos)
    nodes = [n["cosine"] for n in data["nodes"]]
    assert nodes == sorted(nodes) and len(nodes) > 100  # weakest first
    assert {"tensor", "node", "op_type", "cosine", "max_abs_error"} <= set(data["nodes"][0])
    assert any(n["op_type"] == "Conv" for n in data["nodes"])
    assert int8.report_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_report(r)
    assert "box_stride8" in table and "weakest" in table
    rows = [line.split()[0] for line in table.splitlines()[2:12]]
    assert rows[0] == "protos" and rows[1].startswith("mc_") and rows[-1].startswith("cls_")


def _write_bad_files(d):
    (d / "0_corrupt.jpg").write_bytes(b"not a jpeg at all")
    (d / "1_empty.png").write_bytes(b"")


def test_calibration_skips_bad_files_and_warns_when_short(model_640, coco128_images, tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    _write_bad_files(d)
    for p in coco128_images[:2]:
        shutil.copy(p, d / p.name)
    with pytest.warns(UserWarning, match="only 2 usable calibration image"):
        r = quantize(model_640, d, output=tmp_path / "q.onnx", config=QuantizeConfig(num=3, method="minmax", report_images=0))
    assert sorted(p.split("/")[-1] for p, _ in r.skipped) == ["0_corrupt.jpg", "1_empty.png"]
    assert all(problem for _, problem in r.skipped)
    assert len(r.calibration_images) == 2
    OnnxRuntimeBackend(r.output)  # loads and has the split-head outputs


def test_calibration_errors(model_640, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgesegError, match="holds no image files") as e:
        quantize(model_640, empty, output=tmp_path / "q.onnx")
    assert str(empty) in str(e.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_bad_files(bad)
    with pytest.raises(EdgesegError, match="none of the 2 calibration image"):
        quantize(model_640, bad, output=tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()
    with pytest.raises(EdgesegError, match="no such directory"):
        quantize(model_640, tmp_path / "missing", output=tmp_path / "q.onnx")


def test_input_errors_are_one_line_and_name_the_file(model_640, int8, calib_dir, tmp_path, capsys):
    from edgeseg.cli import main

    assert main(["quantize", str(tmp_path / "nope.onnx"), "--calib", str(calib_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.onnx" in err and "Traceback" not in err
    assert main(["quantize", str(model_640), "--calib", str(calib_dir), "--keep-float", "/model.99/Conv"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(model_640) in err and "/model.99/Conv" in err
    assert main(["quantize", str(int8.output), "--calib", str(calib_dir)]) == 1
    assert "already quantized" in capsys.readouterr().err


def test_keep_float_int16_and_float_head_stay_integer(model_640, calib_dir, tmp_path):
    m = onnx.load(str(model_640))
    proto = [n.name for n in m.graph.node if "/proto/" in n.name]
    box_conv = next(n.name for n in m.graph.node if n.output[0] == "/model.22/cv2.0/cv2.0.2/Conv_output_0")
    int16 = [n.name for n in m.graph.node if n.name.startswith("/model.22/cv4.0/cv4.0.0/")]
    r = quantize(
        model_640,
        calib_dir,
        output=tmp_path / "mixed.onnx",
        config=QuantizeConfig(num=4, method="minmax", keep_float=proto + [box_conv], int16=int16, report_images=2),
    )
    q = onnx.load(str(r.output))
    consumers = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    nodes = {n.name: n for n in q.graph.node}
    producers = {o: n for n in q.graph.node for o in n.output}
    inits = {i.name for i in q.graph.initializer}
    for name in proto + [box_conv]:
        node = nodes[name]
        # a float node: float weights straight from an initializer, and its output is not quantized
        if node.op_type in ("Conv", "ConvTranspose"):
            assert node.input[1] in inits and producers.get(node.input[1]) is None, name
        assert all(c.op_type != "QuantizeLinear" for o in node.output for c in consumers.get(o, [])), name
    # the 16-bit activation: its QuantizeLinear produces uint16
    conv16 = nodes[int16[0]].output[0]
    q16 = next(c for c in consumers[conv16] if c.op_type == "QuantizeLinear")
    zp = next(i for i in q.graph.initializer if i.name == q16.input[2])
    assert zp.data_type == onnx.TensorProto.UINT16
    # box_stride8's conv is float, yet the head is integer (quantized at the end with its calibrated range)
    assert sorted(r.integer_outputs) == sorted(head_outputs(read_model_info(model_640)))
    assert r.keep_float == proto + [box_conv] and r.int16 == int16
    cos = r.report.output_cosines()
    assert cos["box_stride8"] > 0.99 and cos["protos"] > 0.97
    det = Segmenter(r.output)(r.report.images[0])
    assert det.masks is not None


def test_target_cosine_lifts_layers_until_reached(model_640, calib_dir, tmp_path):
    target = 0.999  # out of reach in 3 steps: the search must lift layers, improve, and say it stopped short
    with pytest.warns(UserWarning, match="not reached after 3 steps"):
        config = QuantizeConfig(
            num=4, method="minmax", target_cosine=target, search_images=2, max_search_steps=3, report_images=0, bench_runs=2
        )
        r = quantize(model_640, calib_dir, output=tmp_path / "auto.onnx", config=config)
    steps = r.search
    assert len(steps) == 4 and steps[0]["keep_float"] == [] and steps[0]["min_output_cosine"] < target
    assert set(steps[0]["outputs"]) == {f"{k}_stride{s}" for s in (8, 16, 32) for k in ("cls", "box", "mc")}
    assert len(r.keep_float) > 0 and r.keep_float == steps[-1]["keep_float"]
    assert all(len(a["keep_float"]) < len(b["keep_float"]) for a, b in zip(steps, steps[1:]))
    mins = [s["min_output_cosine"] for s in steps]
    assert mins[-1] > mins[0]
    assert set(r.latency_ms) == {"float", "int8", "mixed"} and all(v > 0 for v in r.latency_ms.values())
    meta = {p.key: p.value for p in onnx.load(str(r.output), load_external_data=False).metadata_props}
    assert json.loads(meta["edgeseg.quantization"])["keep_float"] == r.keep_float


def test_similarity_report_reads_back_from_its_json(int8):
    """``read_similarity_report`` (what ``edgeseg report`` plots from) gives back the written report."""
    data = json.loads(int8.report_json.read_text())
    back = read_similarity_report(int8.report_json)
    assert back.to_dict() == data
    assert back.model == int8.output.name and back.quantization["calibration"] == int8.method
    assert back.output_cosines() == {o["tensor"]: o["cosine"] for o in data["outputs"]}
    assert [s.node for s in back.nodes] == [n["node"] for n in data["nodes"]]


def test_read_similarity_report_errors_are_one_line(tmp_path):
    junk = tmp_path / "junk.similarity.json"
    junk.write_text("{not json")
    no_rows = tmp_path / "norows.json"
    no_rows.write_text(json.dumps({"outputs": 3, "nodes": []}))
    bad_row = tmp_path / "badrow.json"
    bad_row.write_text(json.dumps({"outputs": [{"tensor": "protos", "max_abs_error": 1.0}], "nodes": []}))
    cases = [
        (tmp_path / "missing.json", "no such file"),
        (tmp_path, "is a directory"),
        (junk, "not valid JSON"),
        (no_rows, "'outputs' is not a list of rows"),
        (bad_row, "a row lacks 'cosine'"),
    ]
    for path, problem in cases:
        with pytest.raises(EdgesegError, match=problem) as e:
            read_similarity_report(path)
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def test_quantize_config_rejects_bad_settings():
    for kwargs, problem in [
        ({"method": "kl"}, "unknown calibration method 'kl'"),
        ({"num": 0}, "--num must be >= 1"),
        ({"target_cosine": 1.0}, "target cosine must be between 0 and 1"),
    ]:
        with pytest.raises(EdgesegError, match=problem):
            QuantizeConfig(**kwargs)
    assert QuantizeConfig(keep_float=["a"], int16=["b"]).keep_float == ("a",)


def test_variants_from_one_calibration_equal_quantize(model_640, calib_dir, tmp_path):
    """``quantize_variants`` calibrates once for several settings; each model is the one ``quantize`` makes."""
    configs = {
        "stem": QuantizeConfig(num=2, method="minmax", report_images=0, float_stem=True),
        "nostem": QuantizeConfig(num=2, method="minmax", report_images=0),
    }
    paths = quantize_variants(model_640, calib_dir, configs=configs, out_dir=tmp_path / "v")
    assert sorted(paths) == ["nostem", "stem"]
    for name, config in configs.items():
        single = quantize(model_640, calib_dir, config=config, output=tmp_path / f"{name}.onnx").output
        a, b = onnx.load(str(paths[name])), onnx.load(str(single))
        assert a.graph.SerializeToString() == b.graph.SerializeToString(), name
        assert {p.key: p.value for p in a.metadata_props} == {p.key: p.value for p in b.metadata_props}
    with pytest.raises(EdgesegError, match="num/method differ"):
        quantize_variants(model_640, calib_dir, configs={"a": QuantizeConfig(num=2), "b": QuantizeConfig(num=3)}, out_dir=tmp_path)
    # one graph serves all: the original upsample's name (rewritten as a Conv there) is refused, not ignored
    with pytest.raises(EdgesegError, match="no node named '/model.22/proto/upsample/ConvTranspose'"):
        quantize_variants(
            model_640,
            calib_dir,
            configs={"a": QuantizeConfig(num=2, keep_float=["/model.22/proto/upsample/ConvTranspose"])},
            out_dir=tmp_path,
        )
    with pytest.raises(EdgesegError, match="cannot be a file name"):
        quantize_variants(model_640, calib_dir, configs={"neck P4/P5": QuantizeConfig(num=2)}, out_dir=tmp_path)
