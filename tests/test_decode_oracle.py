"""An oracle for the decoder that shares no code with it: the same raw outputs of the embedded model,
reassembled into Ultralytics' single-tensor layout with Ultralytics' own head arithmetic (DFL, anchors,
dist2bbox), then Ultralytics' NMS, ``scale_boxes`` and ``process_mask_native``. Nothing here comes from
edgeseg.decode, edgeseg.reference or edgeseg.masks; the input tensor comes from Ultralytics' LetterBox.

Where both sides compute the same thing it is exact today: the same detections in the same order,
classes equal, boxes to 1e-3 px, scores to 1e-5, and masks that differ only in a few boundary pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from ultralytics.data.augment import LetterBox  # noqa: E402
from ultralytics.nn.modules.block import DFL  # noqa: E402
from ultralytics.utils import nms, ops  # noqa: E402
from ultralytics.utils.tal import dist2bbox, make_anchors  # noqa: E402

from edgeseg import DecodeOptions, Segmenter, decode  # noqa: E402
from edgeseg.preprocess import letterbox_params  # noqa: E402

pytestmark = pytest.mark.slow  # Ultralytics' postprocess in torch on real images


class UltralyticsPostprocess:
    """Ultralytics' predictor post-processing (``SegmentationPredictor.construct_result`` with retina
    masks) over edgeseg's split-head outputs."""

    def __init__(self, info) -> None:
        self.info = info
        self.dfl = DFL(info.reg_max)

    def _nchw(self, outputs: dict, kind: str, stride: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(outputs[f"{kind}_stride{stride}"])).permute(0, 3, 1, 2)

    def layout(self, outputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 4 + nc + nm, anchors) predictions (xywh in input pixels, class probabilities, mask
        coefficients) and the (nm, Hp, Wp) protos, as Ultralytics' Segment head returns them."""
        strides = self.info.strides
        cls = [self._nchw(outputs, "cls", s) for s in strides]
        box = torch.cat([self._nchw(outputs, "box", s).flatten(2) for s in strides], 2)
        mc = torch.cat([self._nchw(outputs, "mc", s).flatten(2) for s in strides], 2)
        anchors, stride_of = make_anchors(cls, torch.tensor(strides, dtype=torch.float32), 0.5)
        xywh = dist2bbox(self.dfl(box), anchors.T[None], xywh=True, dim=1) * stride_of.T
        probs = torch.cat([c.flatten(2) for c in cls], 2).sigmoid()
        protos = torch.from_numpy(np.ascontiguousarray(outputs["protos"])).permute(0, 3, 1, 2)[0]
        return torch.cat([xywh, probs, mc], 1), protos

    def __call__(self, outputs: dict, image_shape: tuple[int, int], options: DecodeOptions, with_masks: bool = True):
        """(xyxy in original pixels, scores, class ids, full-image bool masks or None)."""
        pred, protos = self.layout(outputs)
        classes = list(options.classes) if options.classes is not None else None
        r = nms.non_max_suppression(
            pred,
            options.conf,
            options.iou,
            classes=classes,
            agnostic=options.agnostic,
            multi_label=options.multi_label,
            max_det=options.max_det,
            nc=self.info.num_classes,
        )[0]
        boxes = ops.scale_boxes(self.info.imgsz, r[:, :4].clone(), image_shape)
        masks = None
        if with_masks and len(r):
            masks = ops.process_mask_native(protos, r[:, 6:], boxes, image_shape) > 0.5
            keep = masks.flatten(1).any(1)  # the predictor drops detections whose mask is empty
            r, boxes, masks = r[keep], boxes[keep], masks[keep]
        return boxes.numpy(), r[:, 4].numpy(), r[:, 5].numpy().astype(np.int64), None if masks is None else masks.numpy()


@pytest.fixture(scope="module")
def cases(default_model, coco128_images, ultralytics_assets):
    """(segmenter, oracle, [(image, raw outputs of Ultralytics' letterboxed tensor)]) for 12 coco128-seg
    images plus bus.jpg (portrait, gain != 1) and zidane.jpg (landscape 16:9)."""
    seg = Segmenter(default_model)
    letterbox = LetterBox(seg.info.imgsz, auto=False, stride=32)
    items = []
    for path in [*coco128_images[::11], ultralytics_assets / "bus.jpg", ultralytics_assets / "zidane.jpg"]:
        image = cv2.imread(str(path))
        rgb = letterbox(image=image)[..., ::-1].transpose(2, 0, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb))[None].float() / 255
        items.append((image, seg.backend.run(tensor.numpy())))
    return seg, UltralyticsPostprocess(seg.info), items


def assert_like_ultralytics(det, theirs, name: str) -> None:
    boxes, scores, classes, masks = theirs
    assert len(det) == len(boxes), f"{name}: {len(det)} detections, Ultralytics {len(boxes)}"
    np.testing.assert_array_equal(det.class_ids, classes, err_msg=name)
    np.testing.assert_allclose(det.xyxy, boxes, atol=1e-3, err_msg=name)
    np.testing.assert_allclose(det.scores, scores, atol=1e-5, err_msg=name)
    for i in range(len(det) if masks is not None else 0):
        mine = det.full_mask(i)
        iou = (mine & masks[i]).sum() / max((mine | masks[i]).sum(), 1)
        assert iou >= 0.99, f"{name}: mask {i} IoU {iou:.4f} with Ultralytics'"


# Ultralytics' predictor defaults, spelled out: a changed default of ours must not move the oracle too.
PREDICT_DEFAULTS = DecodeOptions(conf=0.25, iou=0.7, max_det=300, classes=None, agnostic=False, multi_label=False)


def test_segmenter_equals_ultralytics_postprocess(cases):
    """The whole predict path (our preprocess, default options, masks) against Ultralytics' on the same network."""
    seg, oracle, items = cases
    total = 0
    for k, (image, outputs) in enumerate(items):
        det = seg(image)
        assert_like_ultralytics(det, oracle(outputs, image.shape[:2], PREDICT_DEFAULTS), f"image {k}")
        total += len(det)
    assert total > 60  # the fixture model is confident on these images


@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(conf=0.05),
        DecodeOptions(conf=0.05, iou=0.5),
        DecodeOptions(conf=0.05, agnostic=True, iou=0.5),
        DecodeOptions(conf=0.05, classes=(0, 2, 56)),
        DecodeOptions(conf=0.05, max_det=3),
        DecodeOptions(conf=0.05, multi_label=True),
    ],
    ids=["conf", "iou", "agnostic", "classes", "max-det", "multi-label"],
)
def test_decode_options_equal_ultralytics_nms(cases, options):
    seg, oracle, items = cases
    total = 0
    for k, (image, outputs) in enumerate(items):
        det = decode(outputs, seg.info, letterbox_params(image.shape[:2], seg.info.imgsz), options, with_masks=False)
        assert_like_ultralytics(det, oracle(outputs, image.shape[:2], options, with_masks=False), f"image {k}")
        total += len(det)
    assert total > 25  # 14 images at conf 0.05: real objects, even with max_det 3
