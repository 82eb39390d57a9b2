"""Acceptance per model family: edgeseg on its split-head export equals Ultralytics' own predictor on Ultralytics'
own ONNX export of the same checkpoint, on the first 20 coco128-seg images.

- YOLO26-seg (``Segment26``: 4-distance boxes, ``Proto26``): the trained shared checkpoint at 320 (real
  detections), both heads: edgeseg's default one-to-one export against Ultralytics' ``nms=False`` (end-to-end
  top-k, no NMS) and ``--head one2many`` against Ultralytics' default export (NMS).
- YOLO12-seg, YOLOv9c-seg and YOLOv8-seg-P6 (four strides, 8..64): seeded random-init checkpoints from each yaml
  (``export.build_from_yaml``: BatchNorm statistics settled), small input sizes to keep the suite fast.

Both sides: the same count on every image, >= 99 % of the detections matched one to one (class, box IoU >= 0.99,
score within 1e-3), mean mask IoU >= 0.98. And the comparison can fail: the one-to-one heads decoded with NMS (the
one-line slip of forgetting ``end2end``) do not pass it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from corpus import iou_of_two  # noqa: E402
from edgeseg.backends import OnnxRuntimeBackend, read_model_info  # noqa: E402
from edgeseg.export import export_onnx  # noqa: E402
from edgeseg.predict import Segmenter  # noqa: E402

pytestmark = pytest.mark.slow  # exports every model family with torch

IMAGES = 20
YOLO26 = "yolo26n-seg-coco128.pt"
# (yaml, imgsz, conf): random weights, so the score threshold only sets how many detections there are to match
RANDOM_FAMILIES = {
    "yolo12n-seg": ("yolo12n-seg.yaml", 256, 0.05),
    "yolov9c-seg": ("yolov9c-seg.yaml", 256, 0.05),
    "yolov8n-seg-p6": ("yolov8n-seg-p6.yaml", 256, 0.05),
}
CLS_LOGIT_MEAN, CLS_LOGIT_TOP = -8.0, 4.0  # see _random_checkpoint


@dataclasses.dataclass
class Parity:
    theirs: int = 0
    ours: int = 0
    matched: int = 0
    count_differs: list = dataclasses.field(default_factory=list)
    mask_ious: list = dataclasses.field(default_factory=list)

    def line(self, name: str) -> str:
        mean = float(np.mean(self.mask_ious)) if self.mask_ious else float("nan")
        return f"{name}: {self.matched}/{self.theirs} matched ({self.ours} ours), mean mask IoU {mean:.4f}"

    def assert_equal(self) -> None:
        assert not self.count_differs, f"(image, ours, Ultralytics') where the counts differ: {self.count_differs[:5]}"
        assert self.ours == self.theirs and self.matched >= 0.99 * self.theirs, (self.ours, self.theirs, self.matched)
        assert np.mean(self.mask_ious) >= 0.98, np.mean(self.mask_ious)


def compare(ours: Segmenter, ultralytics_onnx: Path, images: list[Path], imgsz: int, conf: float) -> Parity:
    """Ultralytics' predictor on its own export against ``ours``, image by image, matched one to one."""
    from ultralytics import YOLO

    reference = YOLO(str(ultralytics_onnx), task="segment")
    out = Parity()
    for path in images:
        r = reference.predict(str(path), imgsz=imgsz, conf=conf, iou=0.7, retina_masks=True, verbose=False)[0]
        det = ours(path)
        theirs_here = 0 if r.boxes is None else len(r.boxes)
        out.ours += len(det)
        out.theirs += theirs_here
        if len(det) != theirs_here:
            out.count_differs.append((path.name, len(det), theirs_here))
        if theirs_here == 0:
            continue
        boxes, scores = r.boxes.xyxy.numpy(), r.boxes.conf.numpy()
        classes, masks = r.boxes.cls.numpy().astype(int), r.masks.data.numpy().astype(bool)
        used: set[int] = set()
        for i in range(theirs_here):
            for j in range(len(det)):
                if j in used or det.class_ids[j] != classes[i] or abs(det.scores[j] - scores[i]) > 1e-3:
                    continue
                if iou_of_two(boxes[i], det.xyxy[j]) >= 0.99:
                    used.add(j)
                    out.matched += 1
                    mine = det.full_mask(j)
                    out.mask_ious.append((mine & masks[i]).sum() / max((mine | masks[i]).sum(), 1))
                    break
    return out


def _ultralytics_export(pt: Path, work: Path, imgsz: int, **kwargs) -> Path:
    """Ultralytics' ONNX export of ``pt`` (it writes beside the weights: a copy in ``work``)."""
    from ultralytics import YOLO

    work.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copy(pt, work / pt.name))
    return Path(YOLO(str(copy)).export(format="onnx", imgsz=imgsz, verbose=False, **kwargs))


def _random_checkpoint(yaml: str, images: list[Path], imgsz: int):
    """A seeded random-init model of ``yaml``, fused, with BatchNorm statistics settled on ``images`` (one
    training-mode pass, as ``export.build_from_yaml`` does on Ultralytics' two samples) and the last conv of
    each class head rescaled so that its logits over ``images`` have mean ``CLS_LOGIT_MEAN`` and top out at
    ``CLS_LOGIT_TOP``. Random weights otherwise give logits of +-200 on images unlike the BatchNorm samples:
    class scores saturate at 1.0 in float32, and tied scores make any two implementations order NMS
    candidates differently. Both sides then run this same checkpoint."""
    from ultralytics.nn.tasks import SegmentationModel

    from edgeseg.preprocess import load_image, preprocess

    x = torch.from_numpy(np.concatenate([preprocess(load_image(p), (imgsz, imgsz))[0] for p in images]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SegmentationModel(yaml, verbose=False)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # one pass: exactly this batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    model = model.eval().fuse(verbose=False)
    head = model.model[-1]
    logits: dict[int, torch.Tensor] = {}
    hooks = [head.cv3[i][-1].register_forward_hook(lambda _m, _x, y, i=i: logits.__setitem__(i, y)) for i in range(head.nl)]
    with torch.no_grad():
        model(x)
        for h in hooks:
            h.remove()
        z_top = max(float(((y - y.mean()) / y.std()).max()) for y in logits.values())
        gain = (CLS_LOGIT_TOP - CLS_LOGIT_MEAN) / z_top
        for i, y in logits.items():
            conv, mean, std = head.cv3[i][-1], float(y.mean()), float(y.std())
            conv.weight.mul_(gain / std)
            conv.bias.sub_(mean).mul_(gain / std).add_(CLS_LOGIT_MEAN)
    return model


@pytest.fixture(scope="module")
def first_images(coco128_images) -> list[Path]:
    return list(coco128_images[:IMAGES])


@pytest.fixture(scope="module")
def yolo26(shared_dir, tmp_path_factory):
    """The trained YOLO26n-seg: edgeseg's exports of both heads and Ultralytics' two exports."""
    pt = shared_dir / "models" / YOLO26
    if not pt.is_file():
        pytest.skip(f"needs {pt}")
    work = tmp_path_factory.mktemp("yolo26")
    return {
        "one2one": export_onnx(pt, imgsz=320, output=work / "ours-one2one.onnx"),
        "one2many": export_onnx(pt, imgsz=320, output=work / "ours-one2many.onnx", head="one2many"),
        "end2end": _ultralytics_export(pt, work / "nms-false", 320, nms=False),
        "default": _ultralytics_export(pt, work / "default", 320),
    }


def test_yolo26_export_metadata_and_layout(yolo26):
    import onnx

    one2one, one2many = read_model_info(yolo26["one2one"]), read_model_info(yolo26["one2many"])
    assert one2one.end2end and not one2many.end2end
    assert one2one.reg_max == one2many.reg_max == 1 and one2one.strides == (8, 16, 32) and one2one.num_masks == 32
    dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in onnx.load(str(yolo26["one2one"])).graph.output}
    assert dims["box_stride8"] == [1, 40, 40, 4] and dims["cls_stride32"] == [1, 10, 10, 80] and dims["protos"] == [1, 80, 80, 32]
    meta = {p.key: p.value for p in onnx.load(str(yolo26["one2one"])).metadata_props}
    assert meta["edgeseg.layout"] == "edgeseg-split-head-nhwc/2" and meta["edgeseg.end2end"] == "true"
    ul_meta = {p.key: p.value for p in onnx.load(str(yolo26["end2end"])).metadata_props}
    assert ul_meta["end2end"] == "True"  # Ultralytics' side really is the one-to-one top-k graph


@pytest.mark.parametrize(
    ("head", "theirs", "conf"), [("one2one", "end2end", 0.25), ("one2one", "end2end", 0.01), ("one2many", "default", 0.25)]
)
def test_yolo26_matches_ultralytics(yolo26, first_images, head, theirs, conf):
    result = compare(Segmenter(yolo26[head], conf=conf), yolo26[theirs], first_images, 320, conf)
    print("\n" + result.line(f"yolo26n-seg {head} vs Ultralytics {theirs}, conf {conf}"))
    assert result.theirs > 50  # a trained model: real detections
    result.assert_equal()


def test_the_comparison_fails_when_one_to_one_heads_get_nms(yolo26, first_images):
    """The slip the end-to-end path guards against: the one-to-one heads decoded with NMS instead of top-k. At
    conf 0.25 the one-to-one head's detections hardly overlap (NMS removes none on these images); at 0.01 the
    top-k keeps overlapping boxes and second classes of one cell that NMS removes."""
    backend = OnnxRuntimeBackend(yolo26["one2one"])
    backend.info = dataclasses.replace(backend.info, end2end=False)
    result = compare(Segmenter(backend, conf=0.01), yolo26["end2end"], first_images, 320, 0.01)
    print("\n" + result.line("yolo26n-seg one2one decoded with NMS, conf 0.01"))
    with pytest.raises(AssertionError):
        result.assert_equal()


@pytest.fixture(scope="module", params=sorted(RANDOM_FAMILIES))
def random_family(request, tmp_path_factory, first_images):
    """(name, edgeseg export, Ultralytics export, imgsz, conf) of a seeded random-init checkpoint from a yaml."""
    name = request.param
    yaml, imgsz, conf = RANDOM_FAMILIES[name]
    work = tmp_path_factory.mktemp(name)
    model = _random_checkpoint(yaml, first_images, imgsz)
    pt = work / f"{name}.pt"
    torch.save({"model": model, "train_args": {}}, pt)
    ours = export_onnx(pt, imgsz=imgsz, output=work / f"{name}-edgeseg.onnx")
    return name, ours, _ultralytics_export(pt, work / "ultralytics", imgsz), imgsz, conf


def test_family_matches_ultralytics(random_family, first_images):
    name, ours, theirs, imgsz, conf = random_family
    info = read_model_info(ours)
    assert info.reg_max == 16 and not info.end2end
    if name.endswith("p6"):
        assert info.strides == (8, 16, 32, 64)
    result = compare(Segmenter(ours, conf=conf), theirs, first_images, imgsz, conf)
    print("\n" + result.line(name))
    assert result.theirs >= 2 * IMAGES  # enough detections to mean something
    result.assert_equal()


# --- the YOLO26 decode path against its literal reference, by hand, and in INT8 ----------------------


@pytest.fixture(scope="module")
def yolo26_raw(yolo26, first_images):
    from corpus import head_outputs

    seg = Segmenter(yolo26["one2one"])
    return seg.info, head_outputs(seg, first_images)


@pytest.mark.parametrize(
    "options",
    [
        dict(conf=0.25),
        dict(conf=0.01),
        dict(conf=0.01, max_det=3),
        dict(conf=0.01, classes=(0, 45)),
        dict(conf=0.01, max_det=3, classes=(0,)),
        dict(conf=0.01, agnostic=True),
    ],
    ids=str,
)
def test_end2end_selection_equals_ultralytics_two_stage_topk(yolo26_raw, options):
    """The fast path (threshold logits, gather survivors, one sort) equals the reference decoder's step-by-step
    copy of Ultralytics' top-k (top anchors, then top anchor x class pairs, then conf, then classes)."""
    from corpus import assert_same_detections
    from edgeseg.decode import DecodeOptions, decode
    from edgeseg.reference import reference_decode

    info, items = yolo26_raw
    total = 0
    for outputs, lb in items:
        fast = decode(outputs, info, lb, DecodeOptions(**options))
        assert_same_detections(fast, reference_decode(outputs, info, lb, DecodeOptions(**options)), mask_atol=1e-4)
        assert len(fast) <= options.get("max_det", 300)
        total += len(fast)
    assert total > 10


def test_end2end_topk_is_capped_at_the_anchor_count():
    """Ultralytics takes k = min(max_det, anchors) pairs: at 64x64 there are 84 anchors, so 84 detections at
    conf 0 although 84 x 3 pairs clear it."""
    from edgeseg.backends import ModelInfo
    from edgeseg.decode import DecodeOptions, decode
    from edgeseg.preprocess import letterbox_params
    from edgeseg.reference import reference_decode

    info = ModelInfo(names={0: "a", 1: "b", 2: "c"}, strides=(8, 16, 32), imgsz=(64, 64), reg_max=1, end2end=True)
    rng = np.random.default_rng(0)
    outputs = {}
    for s in info.strides:
        g = 64 // s
        outputs[f"cls_stride{s}"] = rng.normal(0, 2, (1, g, g, 3)).astype(np.float32)
        outputs[f"box_stride{s}"] = rng.uniform(0.5, 3, (1, g, g, 4)).astype(np.float32)
        outputs[f"mc_stride{s}"] = rng.normal(0, 1, (1, g, g, 32)).astype(np.float32)
    outputs["protos"] = rng.normal(0, 1, (1, 16, 16, 32)).astype(np.float32)
    lb = letterbox_params((64, 64), info.imgsz)
    fast = decode(outputs, info, lb, DecodeOptions(conf=0.0), with_masks=False)
    assert info.anchors == 84 and len(fast) == 84
    np.testing.assert_array_equal(
        np.sort(fast.scores), np.sort(reference_decode(outputs, info, lb, DecodeOptions(conf=0.0), with_masks=False).scores)
    )


def test_four_distance_boxes_around_cell_centres():
    """reg_max 1: the box head's four channels are left, top, right, bottom distances in cells from the cell
    centre (no DFL): cell (row 3, col 4) at stride 8 has its centre at (4.5, 3.5) cells."""
    from edgeseg.backends import ModelInfo
    from edgeseg.decode import DecodeOptions, decode
    from edgeseg.preprocess import letterbox_params

    info = ModelInfo(names={0: "a", 1: "b"}, strides=(8, 16, 32), imgsz=(128, 128), reg_max=1, end2end=True)
    outputs = {}
    for s in info.strides:
        g = 128 // s
        outputs[f"cls_stride{s}"] = np.full((1, g, g, 2), -20, np.float32)
        outputs[f"box_stride{s}"] = np.ones((1, g, g, 4), np.float32)
        outputs[f"mc_stride{s}"] = np.ones((1, g, g, 32), np.float32)
    outputs["protos"] = np.ones((1, 32, 32, 32), np.float32)
    outputs["cls_stride8"][0, 3, 4, 1] = 4.0
    outputs["box_stride8"][0, 3, 4] = (2, 3, 4, 5)
    det = decode(outputs, info, letterbox_params((128, 128), info.imgsz), DecodeOptions(), with_masks=False)
    np.testing.assert_allclose(det.xyxy, [[(4.5 - 2) * 8, (3.5 - 3) * 8, (4.5 + 4) * 8, (3.5 + 5) * 8]], atol=1e-4)
    assert det.class_ids.tolist() == [1]


@pytest.fixture(scope="module")
def yolo26_int8(yolo26, tmp_path_factory, coco128_images):
    """The one-to-one export quantized by the command line: calibration on coco128-seg images 20..27."""
    from corpus import run_cli

    work = tmp_path_factory.mktemp("yolo26-int8")
    calib = work / "calib"
    calib.mkdir()
    for p in coco128_images[IMAGES : IMAGES + 10]:
        shutil.copy(p, calib / p.name)
    out = work / "yolo26n-seg-int8.onnx"
    proc = run_cli("quantize", yolo26["one2one"], "--calib", calib, "--num", 8, "--report-images", 2, "--bench", 0, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_yolo26_int8_has_integer_box_and_mc_heads_decoded_like_dequantized_whole(yolo26, yolo26_int8, first_images):
    import onnx

    from corpus import assert_same_detections
    from edgeseg.backends import QuantizedTensor
    from edgeseg.backends.base import as_float
    from edgeseg.decode import DecodeOptions, decode

    types = {o.name: o.type.tensor_type.elem_type for o in onnx.load(str(yolo26_int8)).graph.output}
    info = read_model_info(yolo26_int8)
    assert info == read_model_info(yolo26["one2one"]) and info.end2end and info.reg_max == 1
    for s in info.strides:
        assert types[f"box_stride{s}"] == types[f"mc_stride{s}"] == onnx.TensorProto.UINT8
        assert types[f"cls_stride{s}"] == onnx.TensorProto.FLOAT
    seg = Segmenter(yolo26_int8, threads=1)
    total = 0
    for path in first_images:
        from edgeseg.preprocess import load_image

        raw, lb = seg.raw(load_image(path))
        assert isinstance(raw["box_stride8"], QuantizedTensor) and raw["box_stride8"].data.shape[-1] == 4
        dense = {k: as_float(v) for k, v in raw.items()}
        for conf in (0.25, 0.01):
            fast = decode(raw, info, lb, DecodeOptions(conf=conf))
            assert_same_detections(fast, decode(dense, info, lb, DecodeOptions(conf=conf)))
            total += len(fast)
    assert total > 50  # the INT8 model still finds the objects


# --- the board side: Horizon's modifier nodes and the .bin's outputs, found by shape with 4-channel boxes ----


def test_yolo26_horizon_heads_with_and_without_edgeseg_metadata(yolo26, tmp_path, coco128_images):
    """The hb_model_modifier nodes of the YOLO26 export: the Conv behind every box [1,H,W,4] and mc output,
    found from the metadata and, for a zoo-style copy with no metadata and other output names, by shape."""
    import onnx

    from corpus import without_edgeseg_names
    from edgeseg.hbmapper import HorizonConfig, head_convs, horizon_artefacts

    model = onnx.load(str(yolo26["one2one"]))
    producers = {o: n for n in model.graph.node for o in n.output}
    expected = set()
    for s in (8, 16, 32):
        for kind in ("box", "mc"):
            transpose = producers[f"{kind}_stride{s}"]
            assert transpose.op_type == "Transpose" and producers[transpose.input[0]].op_type == "Conv"
            expected.add(transpose.input[0] + "_HzDequantize")
    heads = head_convs(yolo26["one2one"])
    assert {h.dequantize_node for h in heads} == expected
    assert [h.shape[3] for h in heads] == [4, 4, 4, 32, 32, 32]
    zoo = tmp_path / "zoo.onnx"
    onnx.save(without_edgeseg_names(model), str(zoo))
    assert {h.dequantize_node for h in head_convs(zoo)} == expected
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in coco128_images[:2]:
        shutil.copy(p, calib / p.name)
    r = horizon_artefacts(yolo26["one2one"], calib, tmp_path / "rdk", config=HorizonConfig(march="bayes-e", num=2))
    assert set(r.remove_nodes) == expected


def test_yolo26_bin_outputs_map_by_shape_whatever_their_order():
    """The board backend maps a YOLO26 .bin's outputs (box [1,H,W,4] int32 with scales) by shape, as for DFL boxes."""
    from edgeseg.backends import ModelInfo
    from edgeseg.backends.board import BoardOutput, map_outputs

    def output(i: int, shape: tuple[int, ...], scale: np.ndarray | None):
        return BoardOutput(i, str(500 + i), shape, False, scale, np.int32(0))

    info = ModelInfo(names={i: str(i) for i in range(80)}, strides=(8, 16, 32), imgsz=(320, 320), reg_max=1, end2end=True)
    shapes = [
        (f"{k}_stride{s}", (1, 320 // s, 320 // s, c), k != "cls") for s in info.strides for k, c in (("cls", 80), ("box", 4), ("mc", 32))
    ] + [("protos", (1, 80, 80, 32), False)]
    order = np.random.default_rng(0).permutation(len(shapes))
    outs = [output(i, shapes[j][1], np.ones(shapes[j][1][3], np.float32) if shapes[j][2] else None) for i, j in enumerate(order)]
    mapped = map_outputs(outs, info, "yolo26.bin")
    assert sorted(mapped) == sorted(info.output_names)
    truth = {str(500 + i): shapes[j][0] for i, j in enumerate(order)}
    assert all(truth[out.name] == name for name, out in mapped.items())


def test_bench_decoder_comparison_agrees_on_yolo26(yolo26, first_images):
    """``edgeseg bench``'s decoder comparison on the one-to-one model: the fast decoder, the reference decoder and
    Ultralytics' own post-processing (its head's top-k, then its predictor's filter) find the same objects."""
    from edgeseg.bench.compare import compare_decoders
    from edgeseg.bench.measure import BenchImages
    from edgeseg.decode import DecodeOptions
    from edgeseg.preprocess import load_image

    images = BenchImages([p.name for p in first_images[:8]], [load_image(p) for p in first_images[:8]])
    result = compare_decoders(yolo26["one2one"], images, repeats=1, options=DecodeOptions(conf=0.01), show_progress=False)
    assert result.objects_agree == {"reference": 8, "ultralytics": 8} and result.mean_objects > 3


# --- what export refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "head"),
    [("yoloe-11s-seg.yaml", "YOLOESegment"), ("yolov8n-pose.yaml", "Pose"), ("yolo26n-obb.yaml", "OBB26"), ("yolo26n.yaml", "Detect")],
)
def test_unsupported_heads_are_one_line_naming_what_is_supported(yaml, head):
    from corpus import error_reason, run_cli

    reason = error_reason(run_cli("export", yaml, "--imgsz", 64), yaml)
    assert head in reason and reason.endswith("supported: Segment (YOLOv8/v9/11/12-seg, P6 too) and Segment26 (YOLO26-seg))"), reason


def test_head_option_errors(tmp_path):
    from corpus import error_reason, run_cli

    reason = error_reason(
        run_cli("export", "yolov8n-seg.yaml", "--imgsz", 64, "--head", "one2one", "-o", tmp_path / "x.onnx"), "yolov8n-seg.yaml"
    )
    assert reason.startswith("this Segment head has no one-to-one convs") and reason.endswith("use --head one2many")
