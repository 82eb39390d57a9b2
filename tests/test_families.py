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

from edgeseg.backends import OnnxRuntimeBackend, read_model_info  # noqa: E402
from edgeseg.export import export_onnx  # noqa: E402
from edgeseg.predict import Segmenter  # noqa: E402

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


def _box_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


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
                if _box_iou(boxes[i], det.xyxy[j]) >= 0.99:
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


@pytest.mark.parametrize(("head", "theirs", "conf"), [("one2one", "end2end", 0.25), ("one2one", "end2end", 0.01),
                                                       ("one2many", "default", 0.25)])  # fmt: skip
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
