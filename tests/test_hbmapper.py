"""Horizon artefacts: the hb_mapper yaml, its calibration data, the hb_model_modifier command, the board's
sidecar and run_on_board.md, on two different exports (the shared YOLOv8n-seg at 640 and a 3-class
YOLO11n-seg at 320)."""

from __future__ import annotations

import re
import shlex
import shutil

import numpy as np
import onnx
import pytest

from corpus import without_edgeseg_names
from edgeseg.backends import read_model_info, read_sidecar
from edgeseg.bench.stats import onnx_model_stats
from edgeseg.errors import EdgesegError
from edgeseg.hbmapper import HorizonConfig, head_convs, horizon_artefacts
from edgeseg.preprocess import load_image, preprocess

yaml = pytest.importorskip("yaml")


pytestmark = pytest.mark.slow  # exports a checkpoint and writes hb_mapper artefacts


@pytest.fixture(scope="module")
def yolo11_320(tmp_path_factory):
    """A YOLO11n-seg with 3 classes (random weights) exported by edgeseg at 320: other node names
    (model.23), other shapes."""
    torch = pytest.importorskip("torch")
    from ultralytics.nn.tasks import SegmentationModel

    from edgeseg.export import export_onnx

    torch.manual_seed(0)
    model = SegmentationModel("yolo11n-seg.yaml", nc=3, verbose=False).eval()
    model.names = {0: "apple", 1: "pear", 2: "plum"}
    d = tmp_path_factory.mktemp("y11")
    torch.save({"model": model, "train_args": {}}, d / "yolo11n-seg-3cls.pt")
    return export_onnx(d / "yolo11n-seg-3cls.pt", imgsz=320, output=d / "yolo11n-seg-3cls-320.onnx")


@pytest.fixture(scope="module")
def calib_dir(coco128_images, tmp_path_factory):
    d = tmp_path_factory.mktemp("hcalib")
    (d / "0-broken.jpg").write_bytes(b"\xff\xd8 truncated")
    for p in coco128_images[:3]:
        shutil.copy(p, d / p.name)
    return d


def _expected_remove_nodes(path):
    """Independently: the Conv output feeding the Transpose of every box/mc output, + _HzDequantize."""
    m = onnx.load(str(path))
    info = read_model_info(path)
    producers = {o: n for n in m.graph.node for o in n.output}
    names = set()
    for s in info.strides:
        for kind in ("box", "mc"):
            t = producers[f"{kind}_stride{s}"]
            assert t.op_type == "Transpose"
            assert producers[t.input[0]].op_type == "Conv"
            names.add(t.input[0] + "_HzDequantize")
    return names


@pytest.mark.parametrize("which", ["model_640", "yolo11_320"])
def test_horizon_artefacts(which, request, calib_dir, tmp_path):
    model = request.getfixturevalue(which)
    info = read_model_info(model)
    out = tmp_path / "rdk"
    r = horizon_artefacts(model, calib_dir, out, config=HorizonConfig(march="bayes-e", num=3))

    cfg = yaml.safe_load(r.yaml.read_text())
    assert set(cfg) == {"model_parameters", "input_parameters", "calibration_parameters", "compiler_parameters"}
    mp, ip, cp = cfg["model_parameters"], cfg["input_parameters"], cfg["calibration_parameters"]
    assert mp["march"] == "bayes-e"
    onnx_path = out / mp["onnx_model"]
    assert onnx_path.is_file() and onnx_path.read_bytes() == model.read_bytes()
    assert ip["input_type_rt"] == "nv12" and ip["input_type_train"] == "rgb" and ip["input_layout_train"] == "NCHW"
    assert ip["norm_type"] == "data_scale" and abs(ip["scale_value"] - 1 / 255) < 1e-12
    cal = out / cp["cal_data_dir"]
    files = sorted(cal.iterdir())
    assert cp["cal_data_type"] == "float32" and len(files) == 3 and all(f.suffix == ".rgbchw" for f in files)
    assert r.skipped and r.skipped[0][0].endswith("0-broken.jpg")

    # calibration data: letterboxed exactly like inference, RGB NCHW, before the 1/255 of norm_type
    ih, iw = info.imgsz
    first = sorted(p for p in calib_dir.glob("*.jpg") if p.name != "0-broken.jpg")[0]
    data = np.fromfile(cal / f"{first.stem}.rgbchw", np.float32).reshape(3, ih, iw)
    ref, _ = preprocess(load_image(first), (ih, iw))
    np.testing.assert_allclose(data / 255, ref[0], atol=1e-6)

    # the modifier command removes exactly the six box/mc Dequantize nodes of this export
    words = shlex.split(r.modifier_command.replace("\\\n", " "))
    assert words[0] == "hb_model_modifier" and words[1] == r.bin_path
    removed = words[3::2]
    assert words[2::2] == ["-r"] * len(removed)
    assert len(removed) == 6 and set(removed) == _expected_remove_nodes(model) == set(r.remove_nodes)
    script = r.script.read_text()
    assert r.modifier_command in script and f"--config {r.yaml.name}" in script
    assert "node_info" not in mp  # every layer int8 by default, as edgeseg quantize does


def test_two_exports_have_different_node_names(model_640, yolo11_320):
    a = {h.dequantize_node for h in head_convs(model_640)}
    b = {h.dequantize_node for h in head_convs(yolo11_320)}
    assert len(a) == len(b) == 6 and not a & b


def test_head_detection_by_shape_without_edgeseg_metadata(model_640, tmp_path):
    """A split-head model from elsewhere (RDK zoo style: outputs named output0, 379, ...)."""
    p = tmp_path / "zoo.onnx"
    onnx.save(without_edgeseg_names(onnx.load(str(model_640))), str(p))
    heads = head_convs(p)
    assert {h.dequantize_node for h in heads} == _expected_remove_nodes(model_640)
    assert [h.kind for h in heads] == ["box"] * 3 + ["mc"] * 3


def test_rgb_input_and_bernoulli2(model_640, calib_dir, tmp_path):
    r = horizon_artefacts(model_640, calib_dir, tmp_path / "x3", config=HorizonConfig(march="bernoulli2", num=1, input_type_rt="rgb"))
    cfg = yaml.safe_load(r.yaml.read_text())
    assert cfg["model_parameters"]["march"] == "bernoulli2"
    assert cfg["input_parameters"]["input_type_rt"] == "rgb" and cfg["input_parameters"]["input_layout_rt"] == "NHWC"
    assert "input_space_and_range" not in cfg["input_parameters"]

    # --int16-stem (quantize's --float-stem on the board): the Conv fed by the image and the Mul of its SiLU in int16
    r16 = horizon_artefacts(model_640, calib_dir, tmp_path / "int16", config=HorizonConfig(num=1, int16_stem=True))
    graph = onnx.load(str(model_640)).graph
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[0] == graph.input[0].name)
    mul = next(n for n in graph.node if n.op_type == "Mul" and conv.output[0] in n.input)
    int16 = {"ON": "BPU", "InputType": "int16", "OutputType": "int16"}
    assert yaml.safe_load(r16.yaml.read_text())["model_parameters"]["node_info"] == {conv.name: int16, mul.name: int16}
    assert len(r.calibration_files) == 1
    assert read_sidecar(r.sidecar).input_type_rt == "rgb" and "RDK X3" in r.board_guide.read_text()


@pytest.mark.parametrize("which", ["model_640", "yolo11_320"])
def test_sidecar_and_board_guide(which, request, calib_dir, tmp_path):
    """The sidecar holds the model's ModelInfo; run_on_board.md lists every command in order, and its edgeseg
    commands are valid for this CLI and run on the modified .bin beside the sidecar."""
    from edgeseg.cli import build_parser

    model = request.getfixturevalue(which)
    r = horizon_artefacts(model, calib_dir, tmp_path / "rdk", config=HorizonConfig(num=1))
    assert r.sidecar == tmp_path / "rdk" / f"{model.stem}.edgeseg.json"
    sidecar = read_sidecar(r.sidecar)
    assert sidecar.info == read_model_info(model) and sidecar.input_type_rt == "nv12"
    assert sidecar.onnx_model == model.name and sidecar.params == onnx_model_stats(model).params > 0
    assert yaml.safe_load(r.yaml.read_text())["input_parameters"]["input_space_and_range"] == "bt601_video"

    blocks = re.findall(r"```bash\n(.*?)\n```", r.board_guide.read_text(), re.S)
    modified = r.bin_path.removesuffix(".bin") + "_modified.bin"
    on_board = modified.rsplit("/", 1)[-1]
    assert blocks[0] == f"hb_mapper checker --model-type onnx --march bayes-e --model ./{model.name}"
    assert blocks[1] == f"hb_mapper makertbin --model-type onnx --config {r.yaml.name}"
    assert blocks[2] == r.modifier_command
    copy = [shlex.split(line) for line in blocks[3].splitlines() if line.startswith("scp ")]
    assert copy[0][1:3] == [modified, r.sidecar.name] and copy[1][2] == str(calib_dir)
    assert blocks[4] == 'pip install "edgeseg[rdk]"'
    commands = [shlex.split(b) for b in blocks[5:]]
    assert [c[:3] for c in commands] == [["edgeseg", "predict", on_board], ["edgeseg", "bench", on_board], ["edgeseg", "report", "--bench"]]
    assert commands[1][commands[1].index("--threads") + 1] == "1,2,4,8" and len(blocks) == 8
    for c in commands:
        build_parser().parse_args(c[1:])  # exits on an option this CLI does not have


def test_horizon_errors(model_640, calib_dir, tmp_path, capsys):
    from edgeseg.cli import main

    with pytest.raises(EdgesegError, match="unknown march"):
        horizon_artefacts(model_640, calib_dir, tmp_path / "o", config=HorizonConfig(march="bayes"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["horizon", str(model_640), "--calib", str(empty), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(empty) in err and "Traceback" not in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    assert main(["horizon", str(junk), "--calib", str(calib_dir), "-o", str(tmp_path / "o")]) == 1
    assert "junk.onnx" in capsys.readouterr().err
