"""The RDK board backend without a board: ``HorizonBackend`` against the stand-in runtime of
``tests/fakes/hobot_dnn`` (ONNX Runtime behind the documented pyeasy_dnn surface, int32 per-channel heads,
the seed's output order and names, NV12 converted to RGB inside), and the NV12 input path.

What this proves and what only a board can is in docs/rdk.md."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.backends import HorizonBackend, ModelInfo, QuantizedTensor, Sidecar, open_backend, read_model_info
from edgeseg.backends.base import as_float
from edgeseg.backends.horizon import BinOutput, find_sidecar, map_outputs
from edgeseg.decode import decode
from edgeseg.errors import EdgesegError
from edgeseg.predict import DEFAULT_MODEL, Segmenter
from edgeseg.preprocess import letterbox, load_image, nv12_to_bgr, to_input_tensor, to_nv12

FAKES = Path(__file__).resolve().parent / "fakes"
pytestmark = pytest.mark.timeout(600)


def _forget_runtime() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("hobot_dnn", "hobot_dnn_rdkx5")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def fakebin():
    """The stand-in importable as ``hobot_dnn`` for this module's tests, forgotten afterwards so that other
    tests see a machine without a board runtime."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(FAKES))
        yield importlib.import_module("hobot_dnn.fakebin")
    _forget_runtime()


@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory, coco128_dir) -> Path:
    """The embedded model quantized by edgeseg (INT8, integer box/mc heads), as the .bin's source."""
    from edgeseg.quantize import QuantizeConfig, quantize

    out = tmp_path_factory.mktemp("int8") / "yolov8n-seg-coco128-640-int8.onnx"
    config = QuantizeConfig(num=8, report_images=0, bench_runs=0)
    return quantize(DEFAULT_MODEL, coco128_dir / "images" / "train2017", config=config, output=out).output


@pytest.fixture(scope="module")
def board(tmp_path_factory, coco128_images, int8_onnx, fakebin) -> dict[str, Path]:
    """A board directory as run_on_board.md leaves it: the sidecar `edgeseg horizon` wrote and .bins beside it."""
    from edgeseg.horizon import HorizonConfig, horizon_artefacts

    calib = tmp_path_factory.mktemp("calib")
    shutil.copy(coco128_images[0], calib)
    r = horizon_artefacts(DEFAULT_MODEL, calib, tmp_path_factory.mktemp("horizon"), config=HorizonConfig(num=1))
    d = tmp_path_factory.mktemp("board")
    shutil.copy(r.sidecar, d)
    prefix = Path(r.bin_path).stem
    return {
        "dir": d,
        "nv12": fakebin.write_fake_bin(int8_onnx, d / f"{prefix}_modified.bin"),
        "rgb": fakebin.write_fake_bin(int8_onnx, d / f"{prefix}_rgb.bin", input_type="RGB", input_layout="NHWC"),
    }


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (xyxy)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _matched(ref, other, iou: float = 0.95) -> int:
    """Detections of ``ref`` with a same-class detection in ``other`` at box IoU >= ``iou``."""
    if not len(ref) or not len(other):
        return 0
    same = (ref.class_ids[:, None] == other.class_ids[None, :]) & (_box_iou(ref.xyxy, other.xyxy) >= iou)
    return int(same.any(axis=1).sum())


def _assert_identical(a, b) -> None:
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_array_equal(a.mask_origins, b.mask_origins)
    assert len(a.masks) == len(b.masks) and all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))


# --------------------------------------------------------------------------------------------------
# NV12


def _zoo_nv12(padded: np.ndarray) -> np.ndarray:
    """The RDK model zoo's conversion: OpenCV I420, then the U and V planes interleaved by a transpose."""
    area = padded.shape[0] * padded.shape[1]
    i420 = cv2.cvtColor(padded, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    return np.concatenate([i420[:area], i420[area:].reshape(2, area // 4).T.reshape(-1)])


def test_nv12_round_trip_on_coco128(coco128_images):
    """NV12 of the letterboxed image: the zoo's bytes (with or without the letterbox shortcut), and back to
    BGR within 2 grey levels on average over coco128-seg."""
    errors = []
    for path in coco128_images:
        padded, lb = letterbox(load_image(path), (640, 640))
        nv12 = to_nv12(padded, lb)
        assert nv12.dtype == np.uint8 and nv12.shape == (640 * 640 * 3 // 2,)
        np.testing.assert_array_equal(nv12, _zoo_nv12(padded), err_msg=path.name)
        np.testing.assert_array_equal(to_nv12(padded), nv12, err_msg=path.name)
        errors.append(np.abs(nv12_to_bgr(nv12, (640, 640)).astype(np.int16) - padded).mean())
    assert np.mean(errors) <= 2 and max(errors) <= 3, (np.mean(errors), max(errors))


@pytest.mark.parametrize("source_shape", [(1, 1), (3, 2000), (333, 517), (720, 1280), (641, 639)])
def test_nv12_letterbox_shortcut_is_exact_for_odd_pads(source_shape):
    rng = np.random.default_rng(sum(source_shape))
    padded, lb = letterbox(rng.integers(0, 256, (*source_shape, 3), dtype=np.uint8), (320, 480))
    np.testing.assert_array_equal(to_nv12(padded, lb), _zoo_nv12(padded))


def test_nv12_needs_even_sizes():
    with pytest.raises(EdgesegError, match="NV12 needs an even height and width, got 3x4"):
        to_nv12(np.zeros((3, 4, 3), np.uint8))


# --------------------------------------------------------------------------------------------------
# output mapping (no runtime needed)

INFO = ModelInfo(names={i: f"c{i}" for i in range(80)}, strides=(8, 16, 32), imgsz=(640, 640))
SCALE = np.ones(64, np.float32)


def _seed_outputs(info: ModelInfo, scaled: bool = True) -> list[tuple[str, tuple[int, ...], bool]]:
    """(edgeseg name, shape, has scales) of every output, in edgeseg's order."""
    ih, iw = info.imgsz
    heads = [(f"{k}_stride{s}", (1, ih // s, iw // s, c), scaled and k != "cls") for s in info.strides
             for k, c in (("cls", info.num_classes), ("box", 64), ("mc", 32))]  # fmt: skip
    return heads + [("protos", (1, ih // 4, iw // 4, 32), False)]


def _as_bin(outputs, order, rename) -> list[BinOutput]:
    return [BinOutput(i, rename(outputs[j][0], i), outputs[j][1], outputs[j][1], SCALE if outputs[j][2] else None)
            for i, j in enumerate(order)]  # fmt: skip


@pytest.mark.parametrize("classes", [80, 3, 64, 32])
def test_outputs_map_by_shape_whatever_their_order_and_names(classes):
    info = ModelInfo(names={i: str(i) for i in range(classes)}, strides=(8, 16, 32), imgsz=(640, 480))
    outputs = _seed_outputs(info)
    order = np.random.default_rng(classes).permutation(len(outputs))
    mapped = map_outputs(_as_bin(outputs, order, lambda name, i: str(400 + i)), info, "m.bin")
    assert sorted(mapped) == sorted(info.output_names)
    for name, out in mapped.items():
        assert outputs[order[out.index]][0] == name


def test_64_class_heads_without_scales_or_edgeseg_names_are_ambiguous():
    info = ModelInfo(names={i: str(i) for i in range(64)}, strides=(8, 16, 32), imgsz=(640, 640))
    outputs = _seed_outputs(info, scaled=False)
    # edgeseg names settle it ...
    mapped = map_outputs(_as_bin(outputs, range(len(outputs)), lambda name, i: name), info, "m.bin")
    assert all(out.name == name for name, out in mapped.items())
    # ... numbers with all-float heads cannot
    with pytest.raises(EdgesegError, match=r"^m\.bin: cannot tell the stride-8 heads apart by shape"):
        map_outputs(_as_bin(outputs, range(len(outputs)), lambda name, i: str(i)), info, "m.bin")


def test_a_detection_only_model_and_a_wrong_class_count_are_one_line_errors():
    outputs = _seed_outputs(INFO)
    detect = [o for o in outputs if o[0].split("_")[0] in ("cls", "box")]
    with pytest.raises(EdgesegError) as err:
        map_outputs(_as_bin(detect, range(len(detect)), lambda name, i: f"out{i}"), INFO, "det.bin")
    message = str(err.value)
    assert message.startswith("det.bin: not a split-head segmentation model for 640x640") and "\n" not in message
    assert "found out0[1, 80, 80, 80], out1[1, 80, 80, 64], out2[1, 40, 40, 80]" in message
    three = _seed_outputs(ModelInfo(names={0: "a", 1: "b", 2: "c"}, strides=(8, 16, 32), imgsz=(640, 640)))
    with pytest.raises(EdgesegError, match=r"^x\.bin: the sidecar has 80 class names but the model's class outputs have 3 channels"):
        map_outputs(_as_bin(three, range(len(three)), lambda name, i: name), INFO, "x.bin")


# --------------------------------------------------------------------------------------------------
# the backend on the stand-in


class RoundTripOnnx:
    """The INT8 ONNX fed what an NV12 model sees: the letterboxed image through NV12 and back (a custom
    backend with its own ``prepare``, as the README allows)."""

    def __init__(self, path: Path) -> None:
        self.onnx = open_backend(path, threads=1)
        self.info = self.onnx.info

    def prepare(self, padded: np.ndarray, lb) -> np.ndarray:
        return to_input_tensor(nv12_to_bgr(to_nv12(padded, lb), self.info.imgsz))

    def run(self, tensor: np.ndarray) -> dict:
        return self.onnx.run(tensor)


def test_bin_predictions_match_the_int8_onnx(board, int8_onnx, coco128_images):
    """The NV12 .bin against the INT8 ONNX within the NV12 colour round trip: >= 98 % of detections matched
    at box IoU >= 0.95, both ways; the RGB-input .bin against the INT8 ONNX itself: bit-identical."""
    onnx, round_trip = Segmenter(int8_onnx, threads=1), Segmenter(RoundTripOnnx(int8_onnx))
    nv12, rgb = Segmenter(board["nv12"]), Segmenter(board["rgb"])
    assert isinstance(nv12.backend, HorizonBackend) and nv12.info == onnx.info
    counts = np.zeros(3, int)
    for path in coco128_images[::4]:
        image = load_image(path)
        ref, got = round_trip(image), nv12(image)
        counts += (len(ref), _matched(ref, got), _matched(got, ref))
    assert counts[0] > 100 and counts[1] >= 0.98 * counts[0] and counts[2] >= 0.98 * counts[0], counts
    for path in coco128_images[1:64:4]:
        image = load_image(path)
        _assert_identical(onnx(image), rgb(image))


def test_int32_per_channel_heads_decode_exactly_as_their_dequantization(board, coco128_images):
    seg = Segmenter(board["nv12"], conf=0.1)
    for path in coco128_images[:4]:
        outputs, lb = seg.raw(load_image(path))
        for s in seg.info.strides:
            for kind, channels in (("box", 64), ("mc", 32)):
                q = outputs[f"{kind}_stride{s}"]
                assert isinstance(q, QuantizedTensor) and q.data.dtype == np.int32 and q.data.shape[-1] == channels
                assert q.scale.shape == (channels,) and len(set(q.scale.tolist())) > 1 and q.zero_point == 0
            assert outputs[f"cls_stride{s}"].dtype == np.float32
        fast = decode(outputs, seg.info, lb, seg.options)
        dense = decode({k: as_float(v) for k, v in outputs.items()}, seg.info, lb, seg.options)
        assert len(fast) > 0
        _assert_identical(fast, dense)


def test_shuffled_renamed_padded_outputs_and_int16_protos_still_map(board, int8_onnx, fakebin, coco128_images):
    order = np.random.default_rng(7).permutation(len(fakebin.SEED_OUTPUTS))
    shuffled_seed = [fakebin.SEED_OUTPUTS[j] for j in order]
    spec = tuple((src, f"t{i}", "int16" if src == "protos" else dtype) for i, (src, _, dtype) in enumerate(shuffled_seed))
    odd = fakebin.write_fake_bin(int8_onnx, board["dir"] / "shuffled_modified.bin", outputs=spec, align=48)
    plain, shuffled = HorizonBackend(board["nv12"]), HorizonBackend(odd)
    assert {name: out.name for name, out in shuffled.outputs.items()} == {src: new for src, new, _ in spec}
    padded, lb = letterbox(load_image(coco128_images[1]), plain.info.imgsz)
    want, got = plain.run(plain.prepare(padded, lb)), shuffled.run(shuffled.prepare(padded, lb))
    for name in plain.info.output_names:
        assert np.shape(as_float(got[name])) == np.shape(as_float(want[name])), name
        if name == "protos":  # int16 with its own scales: equal to within half a step
            assert isinstance(got[name], QuantizedTensor) and got[name].data.dtype == np.int16
            assert np.abs(as_float(got[name]) - want[name]).max() <= got[name].scale.max() / 2 + 1e-6
        else:
            np.testing.assert_array_equal(as_float(got[name]), as_float(want[name]), err_msg=name)
    assert len(Segmenter(odd)(coco128_images[1])) == len(Segmenter(board["nv12"])(coco128_images[1]))


def test_stream_runner_and_workers_on_a_bin(board, coco128_images, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in coco128_images[:6]:
        shutil.copy(p, images)
    seg = Segmenter(board["nv12"])
    frames = list(seg.stream(images, workers=2))
    assert [f.index for f in frames] == list(range(6))
    for f, p in zip(frames, sorted(images.iterdir())):
        _assert_identical(f.detections, seg(p))


def test_board_errors_are_one_line(board, int8_onnx, fakebin, tmp_path, monkeypatch):
    def error(path, **kw) -> str:
        with pytest.raises(EdgesegError) as err:
            HorizonBackend(path, **kw)
        assert "\n" not in str(err.value)
        return str(err.value)

    d = tmp_path / "b"
    d.mkdir()
    detect = fakebin.write_fake_bin(int8_onnx, d / "det.bin", outputs=tuple(o for o in fakebin.SEED_OUTPUTS if "mc" not in o[0]
                                                                            and o[0] != "protos"))  # fmt: skip
    assert error(detect) == f"{detect}: no sidecar *.edgeseg.json beside this .bin: copy the one `edgeseg horizon` wrote into {d} " \
                            "(it holds the class names a .bin lacks)"  # fmt: skip
    shutil.copy(find_sidecar(board["nv12"]), d)
    assert error(detect).startswith(f"{detect}: not a split-head segmentation model for 640x640: expected per stride")
    assert "found 379[1, 80, 80, 64], 387[1, 40, 40, 64], 395[1, 20, 20, 64], 403[1, 80, 80, 80]" in error(detect)

    three = Sidecar(ModelInfo(names={0: "a", 1: "b", 2: "c"}, strides=(8, 16, 32), imgsz=(640, 640)))
    (tmp_path / "three.edgeseg.json").write_text(json.dumps(three.to_dict()))
    assert error(board["nv12"], meta=tmp_path / "three.edgeseg.json") == (
        f"{board['nv12']}: the sidecar has 3 class names but the model's class outputs have 80 channels (wrong sidecar?)")
    small = Sidecar(ModelInfo(names={0: "a"}, strides=(8, 16, 32), imgsz=(320, 320)))
    (tmp_path / "small.edgeseg.json").write_text(json.dumps(small.to_dict()))
    assert "model input [1, 3, 640, 640] (NCHW) does not match the sidecar's imgsz [320, 320]" in error(board["nv12"],
                                                                                                      meta=tmp_path / "small.edgeseg.json")
    (d / "junk.bin").write_bytes(b"\x00 not a model")
    assert error(d / "junk.bin").startswith(f"{d / 'junk.bin'}: the board runtime cannot load this model: ")
    (d / "other.edgeseg.json").write_text("{}")
    assert "2 sidecars beside this .bin and none is named after it" in error(detect)

    monkeypatch.setitem(sys.modules, "hobot_dnn", None)  # neither the board image's runtime ...
    monkeypatch.setitem(sys.modules, "hobot_dnn_rdkx5", None)  # ... nor the wheel's
    assert error(board["nv12"]) == (
        f"{board['nv12']}: is a Horizon .bin model: it runs on an RDK board, and the board runtime cannot be imported here "
        '(hobot_dnn comes with the board image; or pip install "edgeseg[rdk]" on the board for hobot-dnn-rdkx5)')


def test_the_wheels_import_name_is_used_when_the_board_images_is_missing(board, monkeypatch):
    stand_in = importlib.import_module("hobot_dnn.pyeasy_dnn")
    wheel = type(sys)("hobot_dnn_rdkx5")
    wheel.pyeasy_dnn = stand_in
    monkeypatch.setitem(sys.modules, "hobot_dnn", None)
    monkeypatch.setitem(sys.modules, "hobot_dnn_rdkx5", wheel)
    assert isinstance(open_backend(board["nv12"], threads=3), HorizonBackend)
    assert read_model_info(board["nv12"]) == read_model_info(DEFAULT_MODEL)


def test_sidecar_is_found_by_the_bin_name_among_several(board, tmp_path):
    for name in ("yolov8n-seg-coco128-640.edgeseg.json", "yolov8n.edgeseg.json", "other.edgeseg.json"):
        shutil.copy(find_sidecar(board["nv12"]), tmp_path / name)
    model = tmp_path / "yolov8n-seg-coco128-640_bayese_640x640_nv12_modified.bin"
    model.write_bytes(b"")
    assert find_sidecar(model).name == "yolov8n-seg-coco128-640.edgeseg.json"


# --------------------------------------------------------------------------------------------------
# the CLI on the stand-in


def _cli(*args: str) -> subprocess.CompletedProcess:
    paths = [str(FAKES), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.run([sys.executable, "-m", "edgeseg.cli", *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_predict_and_bench_on_a_bin(board, int8_onnx, coco128_images, tmp_path):
    """`edgeseg predict` of the RGB-input .bin writes the INT8 ONNX's records exactly; `edgeseg bench` of a
    .bin writes the usual JSON and `edgeseg report` its page."""
    images = tmp_path / "images"
    images.mkdir()
    for p in coco128_images[8:14]:
        shutil.copy(p, images)
    _cli("predict", str(board["rgb"]), str(images), "--save-json", str(tmp_path / "bin.json"))
    _cli("predict", str(int8_onnx), str(images), "--save-json", str(tmp_path / "onnx.json"))
    got, want = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("bin", "onnx"))
    assert len(want) > 20 and got == want

    two = tmp_path / "two"
    two.mkdir()
    for p in coco128_images[:2]:
        shutil.copy(p, two)
    _cli("bench", str(board["nv12"]), "--images", str(two), "--threads", "1,2", "--warmup", "0", "--compare-repeats", "1",
         "--no-ultralytics", "--json", str(tmp_path / "bench.json"))  # fmt: skip
    doc = json.loads((tmp_path / "bench.json").read_text())
    [entry] = doc["models"]
    assert entry["name"] == board["nv12"].name and entry["int8"] is True and entry["classes"] == 80 and entry["params"] > 3e6
    _cli("report", "--bench", str(tmp_path / "bench.json"), "-o", str(tmp_path / "report"))
    assert board["nv12"].name in (tmp_path / "report" / "report.md").read_text()
