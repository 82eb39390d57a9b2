"""``edgeseg val`` against Ultralytics' own val on the same 32 coco128-seg images (every 4th), in the
default run. Both sets of COCO results are scored here by pycocotools against ground truth built here
from the YOLO label files, so neither edgeseg's dataset reader nor its evaluator is the judge of itself;
the numbers ``edgeseg val`` reports must agree with that scoring too."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("ultralytics")
mask_api = pytest.importorskip("pycocotools.mask")

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from edgeseg.cli import main  # noqa: E402

pytestmark = pytest.mark.slow  # validates with Ultralytics and edgeseg side by side

# Every 4th image (32 of 128) in the default run; EDGESEG_CROSSCHECK_EVERY=1 runs all 128 (the weekly-style full check).
EVERY = int(os.environ.get("EDGESEG_CROSSCHECK_EVERY", "4"))


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory, shared_dir, coco128_images) -> Path:
    """A writable copy of every 4th image with its labels (Ultralytics caches labels beside them) and a
    yaml with an absolute ``path``."""
    root = tmp_path_factory.mktemp("crosscheck") / "coco128-seg"
    labels = shared_dir / "datasets" / "coco128-seg" / "labels" / "train2017"
    for sub in ("images", "labels"):
        (root / sub / "train2017").mkdir(parents=True)
    for image in coco128_images[::EVERY]:
        shutil.copy(image, root / "images" / "train2017" / image.name)
        if (labels / f"{image.stem}.txt").is_file():
            shutil.copy(labels / f"{image.stem}.txt", root / "labels" / "train2017")
    names = yaml.safe_load((shared_dir / "datasets" / "coco128-seg.yaml").read_text())["names"]
    config = {"path": str(root), "train": "images/train2017", "val": "images/train2017", "names": names}
    (root.parent / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root.parent / "data.yaml"


def ground_truth(data: Path) -> dict:
    """COCO instances from the YOLO polygons: image id = numeric stem, category id = class + 1 (what
    Ultralytics' val writes for a dataset that is not COCO's own val2017)."""
    root = Path(yaml.safe_load(data.read_text())["path"])
    gt: dict = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": str(c)} for c in range(80)]}
    for path in sorted((root / "images" / "train2017").glob("*.jpg")):
        h, w = cv2.imread(str(path)).shape[:2]
        gt["images"].append({"id": int(path.stem), "file_name": path.name, "height": h, "width": w})
        label = root / "labels" / "train2017" / f"{path.stem}.txt"
        for line in label.read_text().splitlines() if label.is_file() else []:
            cls, *xy = line.split()
            polygon = (np.float64(xy).reshape(-1, 2) * [w, h]).ravel().tolist()
            xs, ys = polygon[0::2], polygon[1::2]
            area = float(mask_api.area(mask_api.merge(mask_api.frPyObjects([polygon], h, w))))
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": int(path.stem),
                    "category_id": int(cls) + 1,
                    "segmentation": [polygon],
                    "area": area,
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    "iscrowd": 0,
                }
            )
    return gt


def coco_map(gt: dict, predictions: list[dict]) -> dict[str, float]:
    """pycocotools' mAP50-95 of bbox and segm, quietly."""
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        for iou_type, key in (("bbox", "box"), ("segm", "mask")):
            ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(predictions)), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[key] = float(ev.stats[0])
    return out


def ultralytics_val(checkpoint: Path, data: Path, work: Path) -> list[dict]:
    """Ultralytics' own val with save_json: its predictions.json. rect=False gives the square letterbox of
    a fixed-size export (rect batches would be another input and other numbers)."""
    from ultralytics import YOLO

    work.mkdir(parents=True, exist_ok=True)
    pt = shutil.copy(checkpoint, work / checkpoint.name)
    metrics = YOLO(str(pt)).val(
        data=str(data),
        imgsz=640,
        batch=8,
        workers=0,
        save_json=True,
        conf=0.001,
        iou=0.7,
        plots=False,
        rect=False,
        device="cpu",
        project=str(work),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    return json.loads((Path(metrics.save_dir) / "predictions.json").read_text())


def test_val_agrees_with_ultralytics_val(tmp_path, data_yaml, model_640, checkpoint, capsys):
    from ultralytics.data.converter import coco80_to_coco91_class

    metrics = tmp_path / "ours" / "metrics.json"
    assert main(["val", str(model_640), "--data", str(data_yaml), "--save-json", str(metrics)]) == 0
    reported = json.loads(metrics.read_text())["models"][0]
    ours = json.loads((metrics.parent / reported["predictions"]).read_text())
    theirs = ultralytics_val(checkpoint, data_yaml, tmp_path / "ultralytics")
    gt = ground_truth(data_yaml)
    assert reported["images"] == len(gt["images"]) == 128 // EVERY
    # edgeseg writes COCO's 91 category ids (person 1, cake 61); here they go back to class + 1.
    class_of = {coco: k + 1 for k, coco in enumerate(coco80_to_coco91_class())}
    ours = [dict(p, category_id=class_of[p["category_id"]]) for p in ours]
    assert {p["image_id"] for p in ours} <= {img["id"] for img in gt["images"]}
    assert {p["image_id"] for p in theirs} <= {img["id"] for img in gt["images"]}
    assert max(p["category_id"] for p in theirs) <= 80
    mine, ref = coco_map(gt, ours), coco_map(gt, theirs)
    with capsys.disabled():
        print(
            f"\nval cross-check on {len(gt['images'])} images: edgeseg reports box {reported['box_map50_95']:.4f} mask "
            f"{reported['mask_map50_95']:.4f}; pycocotools here: edgeseg's results box {mine['box']:.4f} mask "
            f"{mine['mask']:.4f}, Ultralytics' box {ref['box']:.4f} mask {ref['mask']:.4f}"
        )
    # What edgeseg val reports is what an independent scoring of its own results gives (edgeseg keeps
    # label polygons to 3 decimals: a few boundary pixels of the rasterised ground truth differ, 8e-4 mask mAP) ...
    assert abs(reported["box_map50_95"] - mine["box"]) < 1e-4 and abs(reported["mask_map50_95"] - mine["mask"]) < 2e-3
    # ... and its results score like Ultralytics' own against the same ground truth.
    assert abs(mine["box"] - ref["box"]) < 0.005, (mine, ref)
    assert abs(mine["mask"] - ref["mask"]) < 0.005, (mine, ref)
    assert mine["box"] > 0.3 and mine["mask"] > 0.15  # the model finds real objects


# --- below the images' own size: the YOLO26n-seg fixture at 320 -------------------------------------------------
# coco128's images are 640 on their long side, so at 320 every one is resized, and there Ultralytics' validator and
# its predictor part ways (docs/evaluate.md: its validator resizes with ceil, erodes its json masks with .byte(),
# keeps empty masks). What a board sees is the predictor's geometry; ``edgeseg val`` is checked against that.

YOLO26 = "yolo26n-seg-coco128.pt"


@pytest.fixture(scope="module")
def yolo26_320(shared_dir, tmp_path_factory) -> dict[str, Path]:
    """The YOLO26n-seg fixture at 320: edgeseg's export (one-to-one head) and Ultralytics' own ONNX export of the
    same head (``nms=False``)."""
    from ultralytics import YOLO

    from edgeseg.export import export_onnx

    pt = shared_dir / "models" / YOLO26
    if not pt.is_file():
        pytest.skip(f"needs {pt}")
    work = tmp_path_factory.mktemp("yolo26-320")
    copy = Path(shutil.copy(pt, work / pt.name))  # Ultralytics writes its export beside the weights
    return {
        "ours": export_onnx(pt, imgsz=320, output=work / "ours.onnx"),
        "theirs": Path(YOLO(str(copy)).export(format="onnx", imgsz=320, nms=False, verbose=False)),
    }


def keep_empty_predictor():
    """Ultralytics' segmentation predictor with masks at original resolution (``retina_masks``: logit > 0, that
    is probability > 0.5), less its last step: it drops detections whose mask is empty, its validator keeps them."""
    from ultralytics.engine.results import Results
    from ultralytics.models.yolo.segment import SegmentationPredictor
    from ultralytics.utils import ops

    class KeepEmptyMasks(SegmentationPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):
            masks = None
            if pred.shape[0]:
                pred[:, :4] = ops.scale_boxes(img.shape[2:], pred[:, :4], orig_img.shape)
                masks = ops.process_mask_native(proto, pred[:, 6:], pred[:, :4], orig_img.shape[:2])
            return Results(orig_img, path=img_path, names=self.model.names, boxes=pred[:, :6], masks=masks)

    return KeepEmptyMasks


def ultralytics_predictions(onnx: Path, data: Path, imgsz: int) -> list[dict]:
    """COCO results of Ultralytics' predictor on its own ONNX export, with Ultralytics' val thresholds (conf 0.001,
    iou 0.7, 300 detections), image by image: boxes and RLE masks at original resolution, category class + 1."""
    from ultralytics import YOLO

    model, predictor = YOLO(str(onnx), task="segment"), keep_empty_predictor()  # one class: one predictor set up
    root = Path(yaml.safe_load(data.read_text())["path"])
    records = []
    for path in sorted((root / "images" / "train2017").glob("*.jpg")):
        r = model.predict(str(path), imgsz=imgsz, conf=0.001, iou=0.7, max_det=300, retina_masks=True, predictor=predictor, verbose=False)[
            0
        ]
        if r.boxes is None or not len(r.boxes):
            continue
        masks = r.masks.data.numpy().astype(np.uint8)
        for box, score, cls, mask in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(), masks):
            rle = mask_api.encode(np.asfortranarray(mask))
            records.append(
                {
                    "image_id": int(path.stem),
                    "category_id": int(cls) + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": score,
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                }
            )
    return records


def edgeseg_val(model: Path, data: Path, out: Path) -> tuple[dict, list[dict]]:
    """``edgeseg val --save-json``: its metrics entry and its COCO results, category ids back to class + 1."""
    from ultralytics.data.converter import coco80_to_coco91_class

    assert main(["val", str(model), "--data", str(data), "--save-json", str(out)]) == 0
    reported = json.loads(out.read_text())["models"][0]
    class_of = {coco: k + 1 for k, coco in enumerate(coco80_to_coco91_class())}
    records = json.loads((out.parent / reported["predictions"]).read_text())
    return reported, [dict(p, category_id=class_of[p["category_id"]]) for p in records]


def empty_masks(records: list[dict]) -> int:
    return sum(mask_api.area(p["segmentation"]) == 0 for p in records)


def test_val_below_the_images_size_agrees_with_ultralytics_predictor(tmp_path, data_yaml, yolo26_320, capsys):
    reported, ours = edgeseg_val(yolo26_320["ours"], data_yaml, tmp_path / "ours" / "metrics.json")
    theirs = ultralytics_predictions(yolo26_320["theirs"], data_yaml, 320)
    gt = ground_truth(data_yaml)
    assert reported["images"] == len(gt["images"]) == 128 // EVERY
    mine, ref = coco_map(gt, ours), coco_map(gt, theirs)
    with capsys.disabled():
        print(
            f"\nval at 320 on {len(gt['images'])} images: edgeseg reports box {reported['box_map50_95']:.4f} mask "
            f"{reported['mask_map50_95']:.4f}; pycocotools here: edgeseg's results box {mine['box']:.4f} mask "
            f"{mine['mask']:.4f} ({len(ours)} detections, {empty_masks(ours)} empty masks), Ultralytics' predictor "
            f"box {ref['box']:.4f} mask {ref['mask']:.4f} ({len(theirs)}, {empty_masks(theirs)} empty)"
        )
    assert abs(mine["box"] - ref["box"]) < 0.005, (mine, ref)
    assert abs(mine["mask"] - ref["mask"]) < 0.005, (mine, ref)
    # Both keep the detections whose mask is empty (Ultralytics' validator does; its predictor and edgeseg's
    # predict drop them), and there are some: they count for boxes.
    assert empty_masks(ours) > 0 and empty_masks(theirs) > 0
    # Same geometry, same detections: at conf 0.001 a score on the threshold may fall either side, and the mask of
    # a box a few pixels wide may hold one pixel on one side and none on the other (all 128 images: 37 and 42).
    assert abs(len(ours) - len(theirs)) <= 0.01 * len(theirs)
    assert abs(empty_masks(ours) - empty_masks(theirs)) <= max(2, empty_masks(theirs) // 5)
    assert reported["keep_empty_masks"] is True  # and the metrics JSON says so
    assert mine["box"] > 0.3 and mine["mask"] > 0.15  # the model finds real objects
