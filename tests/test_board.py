"""The RDK board's runtimes without a board: ``PyeasyDnnBackend`` and ``HbmRuntimeBackend`` against stand-ins that
behave as the runtimes' sources do (tests/fakes: ``hobot_dnn.pyeasy_dnn`` after ``dnn_python.cpp``, ``hbm_runtime``
after ``HB_HBMRuntime.cc``; ONNX Runtime behind them as the BPU). Each runtime quirk has a test that fails
without edgeseg's handling of it. What this proves and what only a board can is in docs/rdk.md."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus import assert_same_detections, dequantize_array, matched
from edgeseg.backends import BoardOptions, HbmRuntimeBackend, ModelInfo, PyeasyDnnBackend, QuantizedTensor, Sidecar, open_backend
from edgeseg.backends.board import BoardOutput, OutputDescription, describe_output, find_sidecar, map_outputs
from edgeseg.decode import decode
from edgeseg.errors import EdgesegError
from edgeseg.predict import Segmenter
from edgeseg.preprocess import Nv12Frame, letterbox, load_image, nv12_to_bgr, to_input_tensor, to_nv12

pytestmark = pytest.mark.timeout(600)
RUNTIMES = ("pyeasy", "hbm")


def _seg(path, runtime: str, **kw) -> Segmenter:
    return Segmenter(path, board=BoardOptions(runtime=runtime), **kw)


# --------------------------------------------------------------------------------------------------
# the stand-ins are the sources' runtimes, quirks included


def test_pyeasy_properties_are_what_dnn_python_cpp_returns(board, fakes):
    dnn = importlib.import_module("hobot_dnn.pyeasy_dnn")
    model = dnn.load(str(board["nv12"]))[0]
    props = model.inputs[0].properties
    assert (props.tensor_type, props.dtype, props.layout, props.shape) == ("NV12", "uint8", "NCHW", (1, 3, 640, 640))
    assert isinstance(props.validShape, int) and isinstance(props.alignedShape, int)  # pointers, not shapes
    with pytest.raises(TypeError):
        tuple(props.validShape)
    out = model.outputs[0].properties
    assert (out.tensor_type, out.dtype, out.shape, out.scale_data.shape) == ("int32", "int32", (1, 80, 80, 32), (32,))
    assert model.outputs[-1].properties.scale_data.size == 0  # float protos: no scale


# --------------------------------------------------------------------------------------------------
# output mapping (no runtime needed)

INFO = ModelInfo(names={i: f"c{i}" for i in range(80)}, strides=(8, 16, 32), imgsz=(640, 640))


def _seed_outputs(info: ModelInfo, scaled: bool = True) -> list[tuple[str, tuple[int, ...], bool]]:
    ih, iw = info.imgsz
    heads = [
        (f"{k}_stride{s}", (1, ih // s, iw // s, c), scaled and k != "cls")
        for s in info.strides
        for k, c in (("cls", info.num_classes), ("box", 64), ("mc", 32))
    ]
    return heads + [("protos", (1, ih // 4, iw // 4, 32), False)]


def _as_outputs(outputs, order, rename) -> list[BoardOutput]:
    return [
        BoardOutput(
            i, rename(outputs[j][0], i), outputs[j][1], False, np.ones(outputs[j][1][3], np.float32) if outputs[j][2] else None, np.int32(0)
        )
        for i, j in enumerate(order)
    ]


@pytest.mark.parametrize("classes", [80, 3, 64, 32])
def test_outputs_map_by_shape_whatever_their_order_and_names(classes):
    info = ModelInfo(names={i: str(i) for i in range(classes)}, strides=(8, 16, 32), imgsz=(640, 480))
    outputs = _seed_outputs(info)
    order = np.random.default_rng(classes).permutation(len(outputs))
    mapped = map_outputs(_as_outputs(outputs, order, lambda name, i: str(400 + i)), info, "m.bin")
    assert sorted(mapped) == sorted(info.output_names)
    for name, out in mapped.items():
        assert outputs[order[out.key]][0] == name


def test_64_class_heads_without_scales_or_edgeseg_names_are_ambiguous():
    info = ModelInfo(names={i: str(i) for i in range(64)}, strides=(8, 16, 32), imgsz=(640, 640))
    outputs = _seed_outputs(info, scaled=False)
    mapped = map_outputs(_as_outputs(outputs, range(len(outputs)), lambda name, i: name), info, "m.bin")
    assert all(out.name == name for name, out in mapped.items())
    with pytest.raises(EdgesegError, match=r"^m\.bin: cannot tell the stride-8 heads apart by shape"):
        map_outputs(_as_outputs(outputs, range(len(outputs)), lambda name, i: str(i)), info, "m.bin")


def test_a_detection_only_model_and_a_wrong_class_count_are_one_line_errors():
    outputs = _seed_outputs(INFO)
    detect = [o for o in outputs if o[0].split("_")[0] in ("cls", "box")]
    with pytest.raises(EdgesegError) as err:
        map_outputs(_as_outputs(detect, range(len(detect)), lambda name, i: f"out{i}"), INFO, "det.bin")
    message = str(err.value)
    assert message.startswith("det.bin: not a split-head segmentation model for 640x640") and "\n" not in message
    assert "found out0[1, 80, 80, 80], out1[1, 80, 80, 64], out2[1, 40, 40, 80]" in message
    three = _seed_outputs(ModelInfo(names={0: "a", 1: "b", 2: "c"}, strides=(8, 16, 32), imgsz=(640, 640)))
    with pytest.raises(EdgesegError, match=r"^x\.bin: the sidecar has 80 class names but the model's class outputs have 3 channels"):
        map_outputs(_as_outputs(three, range(len(three)), lambda name, i: name), INFO, "x.bin")


@pytest.mark.parametrize(
    ("desc", "reason"),
    [
        (dict(dtype="int32", shape=(2, 80, 80, 64)), "has batch 2: edgeseg runs batch-1 models (compile with batch 1)"),
        (dict(dtype="float16"), "is float16: edgeseg reads int8, int16, int32 and float32 outputs"),
        (dict(dtype="int32", scale=[]), "is int32 without a scale: it cannot be dequantized"),
        (dict(dtype="int32", scale=[1.0] * 7), "has 7 scales for 64 channels"),
        (dict(dtype="int32", scale=[1.0] * 64, axis=2), "is quantized along axis 2, not its channels"),
        (dict(layout="NONE"), "has layout NONE: expected NHWC or NCHW"),
    ],
)
def test_outputs_edgeseg_cannot_read_are_one_line_errors(desc, reason):
    given = {"dtype": "float32", "layout": "NHWC", "shape": (1, 80, 80, 64), "scale": [], **desc}
    d = OutputDescription(
        0, "379", given["dtype"], given["layout"], given["shape"], np.asarray(given["scale"], np.float32), axis=given.get("axis")
    )
    with pytest.raises(EdgesegError) as err:
        describe_output(d, Path("m.bin"))
    assert str(err.value) == f"m.bin: output '379' {reason}"


def test_one_scale_and_per_channel_scales_and_zero_points():
    one = describe_output(OutputDescription(0, "a", "int16", "NHWC", (1, 4, 4, 8), np.float32([0.5])), Path("m.bin"))
    assert one.scale.shape == () and one.scale == np.float32(0.5) and one.zero_point == 0
    zp = describe_output(
        OutputDescription(0, "a", "int8", "NCHW", (1, 8, 4, 6), np.arange(1, 9, dtype=np.float32), np.arange(8), 1), Path("m.bin")
    )
    assert zp.shape == (1, 4, 6, 8) and zp.nchw and list(zp.zero_point) == list(range(8))
    q = np.random.default_rng(0).integers(-128, 127, (1, 8, 4, 6), dtype=np.int8)
    value = zp.value(q)
    assert isinstance(value, QuantizedTensor) and value.data.shape == (1, 4, 6, 8) and np.shares_memory(value.data, q)
    np.testing.assert_array_equal(value.dequantize(), dequantize_array(q.transpose(0, 2, 3, 1), zp.scale, zp.zero_point))


# --------------------------------------------------------------------------------------------------
# both runtimes against the INT8 ONNX


class NV12RoundTrip:
    """The INT8 ONNX fed what an NV12 model sees: the letterboxed image through NV12 and back."""

    def __init__(self, path: Path) -> None:
        self.onnx = open_backend(path, threads=1)
        self.info = self.onnx.info

    def prepare(self, padded: np.ndarray, lb) -> np.ndarray:
        return to_input_tensor(nv12_to_bgr(to_nv12(padded, lb), self.info.imgsz))

    def run(self, tensor: np.ndarray) -> dict:
        return self.onnx.run(tensor)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_nv12_bin_matches_the_int8_onnx_through_the_nv12_round_trip(board, int8_onnx, coco128_images, runtime):
    """>= 98 % of detections matched at box IoU >= 0.95, both ways, over 32 coco128 images."""
    round_trip, nv12 = Segmenter(NV12RoundTrip(int8_onnx)), _seg(board["nv12"], runtime)
    assert type(nv12.backend) is {"pyeasy": PyeasyDnnBackend, "hbm": HbmRuntimeBackend}[runtime]
    counts = np.zeros(3, int)
    for path in coco128_images[::4]:
        image = load_image(path)
        ref, got = round_trip(image), nv12(image)
        counts += (len(ref), matched(ref, got), matched(got, ref))
    assert counts[0] > 100 and counts[1] >= 0.98 * counts[0] and counts[2] >= 0.98 * counts[0], counts


@pytest.mark.parametrize(("kind", "runtime"), [("bgr", "pyeasy"), ("float", "pyeasy"), ("float", "hbm")])
def test_bgr_and_float_input_bins_give_the_int8_onnx_detections(board, int8_onnx, fakes, coco128_images, kind, runtime):
    """A float32 (featuremap) input reaches the BPU whole only because pyeasy_dnn is handed its bytes: forward
    copies as many bytes as the array has elements."""
    path = board["bgr"] if kind == "bgr" else fakes.write_fake_bin(int8_onnx, board["dir"] / "float_in.bin", input_type="float32")
    onnx, seg = Segmenter(int8_onnx, threads=1), _seg(path, runtime)
    for p in coco128_images[1:40:6]:
        image = load_image(p)
        assert_same_detections(onnx(image), seg(image))


def test_rgb_input_is_handed_over_as_a_fresh_copy_and_the_clamp_is_announced(board, int8_onnx, coco128_images, capfd):
    """pyeasy_dnn subtracts 128 in place from an RGB input: what edgeseg prepared is never that array, and the
    loss of channel values below 128 (the runtime's clamp) is said at load."""
    seg = _seg(board["rgb"], "pyeasy")
    assert "subtracts 128 from RGB inputs and clamps at 0" in capfd.readouterr().err
    padded, lb = letterbox(load_image(coco128_images[3]), seg.info.imgsz)
    prepared = seg.backend.prepare(padded, lb)
    before = prepared.copy()
    first = seg.backend.run(prepared)
    np.testing.assert_array_equal(prepared, before)
    second = seg.backend.run(prepared)  # the same input twice: the same outputs (no double subtraction)
    raw = lambda v: v.data if isinstance(v, QuantizedTensor) else v  # noqa: E731
    for name in first:
        np.testing.assert_array_equal(raw(first[name]), raw(second[name]))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_integer_heads_decode_exactly_as_their_dequantization(board, coco128_images, runtime):
    seg = _seg(board["nv12"], runtime, conf=0.1)
    for path in coco128_images[:3]:
        outputs, lb = seg.raw(load_image(path))
        for s in seg.info.strides:
            for kind, channels in (("box", 64), ("mc", 32)):
                q = outputs[f"{kind}_stride{s}"]
                assert isinstance(q, QuantizedTensor) and q.data.dtype == np.int32 and q.data.shape[-1] == channels
                assert q.scale.shape == (channels,) and len(set(q.scale.tolist())) > 1
        dense = {k: dequantize_array(v.data, v.scale, v.zero_point) if isinstance(v, QuantizedTensor) else v for k, v in outputs.items()}
        fast = decode(outputs, seg.info, lb, seg.options)
        assert len(fast) > 0
        assert_same_detections(fast, decode(dense, seg.info, lb, seg.options))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_nchw_padded_shuffled_int16_and_int8_outputs_decode_like_the_seed_layout(board, int8_onnx, fakes, coco128_images, runtime):
    """Outputs in another order under other names, NCHW, padded to 48 channels (aligned != valid), protos int16 and
    mc int8 with zero point 3: the same detections as the seed's layout (int8 mc within its rounding). hbm_runtime
    hands padded outputs over as strided views (no copy); pyeasy_dnn's buffer copies from the start of the padded
    memory, so with padding only hbm_runtime is right (docs/rdk.md)."""
    order = np.random.default_rng(7).permutation(len(fakes.SEED_OUTPUTS))
    retyped = {"protos": "int16", "mc_stride8": "int8", "mc_stride16": "int8", "mc_stride32": "int8"}
    spec = tuple((src, f"t{i}", retyped.get(src, dtype)) for i, (src, _, dtype) in enumerate(fakes.SEED_OUTPUTS[j] for j in order))
    align = 48 if runtime == "hbm" else 0
    odd = fakes.write_fake_bin(
        int8_onnx, board["dir"] / f"odd_{runtime}.bin", outputs=spec, align=align, output_layout="NCHW", zero_point=3
    )
    plain, shuffled = _seg(board["nv12"], runtime), _seg(odd, runtime)
    assert {name: out.name for name, out in shuffled.backend.outputs.items()} == {src: new for src, new, _ in spec}
    raw, _ = shuffled.raw(load_image(coco128_images[1]))
    if runtime == "hbm":
        box = raw["box_stride8"].data
        assert box.base is not None and not box.flags.c_contiguous  # a view of the runtime's array
        assert list(np.unique(raw["mc_stride8"].zero_point)) == [3]
    counts = np.zeros(2, int)
    for p in coco128_images[1:30:4]:
        want, got = plain(p), shuffled(p)
        counts += (len(want), matched(want, got, iou=0.9))
    assert counts[0] > 20 and counts[1] >= 0.95 * counts[0], counts


# --------------------------------------------------------------------------------------------------
# choosing the runtime, its options, its errors


def test_auto_takes_hbm_runtime_and_falls_back_to_pyeasy_when_its_libraries_are_missing(board, monkeypatch):
    assert isinstance(open_backend(board["nv12"]).__class__, type) and isinstance(open_backend(board["nv12"]), HbmRuntimeBackend)
    monkeypatch.setenv("EDGESEG_FAKE_HBM_MISSING_LIBS", "1")  # hbm_runtime's __init__ raises RuntimeError then
    monkeypatch.delitem(sys.modules, "hbm_runtime", raising=False)
    assert isinstance(open_backend(board["nv12"]), PyeasyDnnBackend)
    with pytest.raises(EdgesegError, match=r": --runtime hbm: hbm_runtime cannot be imported here \(Missing Horizon runtime libraries"):
        open_backend(board["nv12"], board=BoardOptions(runtime="hbm"))
    monkeypatch.delitem(sys.modules, "hbm_runtime", raising=False)


def test_the_wheels_import_name_is_used_when_the_board_images_is_missing(board, monkeypatch):
    stand_in = importlib.import_module("hobot_dnn.pyeasy_dnn")
    wheel = type(sys)("hobot_dnn_rdkx5")
    wheel.pyeasy_dnn = stand_in
    monkeypatch.setitem(sys.modules, "hobot_dnn", None)
    monkeypatch.setitem(sys.modules, "hobot_dnn_rdkx5", wheel)
    monkeypatch.setitem(sys.modules, "hobot_dnn_rdkx5.pyeasy_dnn", stand_in)
    assert isinstance(open_backend(board["nv12"], board=BoardOptions(runtime="pyeasy")), PyeasyDnnBackend)


def test_bpu_core_and_priority_reach_each_runtime(board, monkeypatch):
    seen = {}
    dnn = importlib.import_module("hobot_dnn.pyeasy_dnn")
    forward = dnn.Model.forward
    monkeypatch.setattr(dnn.Model, "forward", lambda self, arg, **kw: seen.update(kw) or forward(self, arg, **kw))
    options = BoardOptions(runtime="pyeasy", bpu_core=1, priority=200)
    seg = Segmenter(board["nv12"], board=options)
    seg(np.full((64, 64, 3), 114, np.uint8))
    assert seen == {"core_id": 2, "priority": 200}  # hbBPUCore: one bit per core
    hbm = Segmenter(board["nv12"], board=BoardOptions(runtime="hbm", bpu_core=1, priority=200)).backend
    params = hbm.runtime.sched_params[hbm.model_name]
    assert params.priority == 200 and params.bpu_cores == [1]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_workers_each_get_their_own_runtime_object(board, coco128_images, tmp_path, runtime):
    """hbm_runtime's run is not re-entrant ("run() already in use") and pyeasy_dnn's forward shares one memory per
    model: the stream runner's workers each have their own."""
    images = tmp_path / "images"
    images.mkdir()
    for p in coco128_images[:6]:
        shutil.copy(p, images)
    seg = _seg(board["nv12"], runtime)
    frames = list(seg.stream(images, workers=3))
    assert [f.index for f in frames] == list(range(6))
    for f, p in zip(frames, sorted(images.iterdir())):
        assert_same_detections(f.detections, seg(p))


def _error(path, **kw) -> str:
    with pytest.raises(EdgesegError) as err:
        open_backend(path, **kw)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_board_errors_are_one_line(board, int8_onnx, fakes, tmp_path, monkeypatch):
    d = tmp_path / "b"
    d.mkdir()
    no_mc = tuple(o for o in fakes.SEED_OUTPUTS if "mc" not in o[0] and o[0] != "protos")
    detect = fakes.write_fake_bin(int8_onnx, d / "det.bin", outputs=no_mc)
    assert _error(detect) == (
        f"{detect}: no sidecar *.edgeseg.json beside this .bin: copy the one `edgeseg horizon` wrote into {d} "
        "(it holds the class names a .bin lacks)"
    )
    shutil.copy(find_sidecar(board["nv12"]), d)
    assert _error(detect).startswith(f"{detect}: not a split-head segmentation model for 640x640: expected per stride")
    batch2 = fakes.write_fake_bin(int8_onnx, d / "batch2.bin", batch=2)
    assert _error(batch2) == f"{batch2}: model input [2, 3, 640, 640] (NCHW): edgeseg runs batch-1 image models"
    rgb = board["rgb"]
    assert _error(rgb, board=BoardOptions(runtime="hbm")) == (
        f"{rgb}: the model's input is RGB, which hbm_runtime cannot take (it has no numpy type for it): run it with "
        "--runtime pyeasy, or compile for NV12 (edgeseg horizon's default)"
    )
    small = Sidecar(ModelInfo(names={0: "a"}, strides=(8, 16, 32), imgsz=(320, 320)))
    (tmp_path / "small.edgeseg.json").write_text(json.dumps(small.to_dict()))
    from edgeseg.backends import open_board_backend

    with pytest.raises(EdgesegError, match=r"model input \[1, 3, 640, 640\] \(NCHW\) does not match the sidecar's imgsz \[320, 320\]"):
        open_board_backend(board["nv12"], meta=tmp_path / "small.edgeseg.json")
    (d / "junk.bin").write_bytes(b"\x00 not a model")
    assert _error(d / "junk.bin", board=BoardOptions(runtime="pyeasy")).startswith(
        f"{d / 'junk.bin'}: pyeasy_dnn cannot load this model: load execution failed."
    )
    assert _error(d / "junk.bin").startswith(f"{d / 'junk.bin'}: hbm_runtime cannot load this model: hbDNN initialize from")
    for name in ["hobot_dnn", "hobot_dnn_rdkx5", "hbm_runtime", *(m for m in sys.modules if m.startswith("hobot_dnn."))]:
        monkeypatch.setitem(sys.modules, name, None)
    assert _error(board["nv12"]) == (
        f"{board['nv12']}: is a Horizon .bin model: it runs on an RDK board, and the board runtime cannot be imported here "
        "(hbm_runtime comes with RDK OS >= 3.5, hobot_dnn with the board image; "
        'or pip install "edgeseg[rdk]" on the board for hobot-dnn-rdkx5)'
    )


def test_sidecar_is_found_by_the_bin_name_among_several(board, tmp_path):
    for name in ("yolov8n-seg-coco128-640.edgeseg.json", "yolov8n.edgeseg.json", "other.edgeseg.json"):
        shutil.copy(find_sidecar(board["nv12"]), tmp_path / name)
    model = tmp_path / "yolov8n-seg-coco128-640_bayese_640x640_nv12_modified.bin"
    model.write_bytes(b"")
    assert find_sidecar(model).name == "yolov8n-seg-coco128-640.edgeseg.json"


def test_an_nv12_frame_goes_to_an_nv12_bin_as_it_is(board, coco128_images):
    """prepare_nv12 of an NV12 model returns the letterboxed frame itself: the runtime gets the camera's bytes."""
    seg = _seg(board["nv12"], "hbm")
    image = load_image(coco128_images[5])
    frame = Nv12Frame.from_bgr(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])
    from edgeseg.preprocess import letterbox_nv12

    padded, lb = letterbox_nv12(frame, seg.info.imgsz)
    assert seg.backend.prepare_nv12(padded, lb) is padded
