"""edgeseg val: COCO ground truth from YOLO labels, COCO category ids, the evaluator round trip, the
command line, and a cross-check against the predictions Ultralytics' own val writes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils

from edgeseg.backends import read_model_info
from edgeseg.cli import main
from edgeseg.decode import DecodeOptions
from edgeseg.errors import EdgesegError, Problem
from edgeseg.evaluate import (
    COCO80_TO_COCO91,
    EvalResult,
    ValConfig,
    category_ids,
    evaluate,
    load_dataset,
    read_eval_results,
    save_results,
    score_predictions,
)
from edgeseg.predict import Segmenter
from edgeseg.results import Detections

# A few COCO category ids as the official instances json numbers them (not derived from our table).
OFFICIAL_COCO_IDS = {
    "person": 1,
    "stop sign": 13,
    "backpack": 27,
    "bowl": 51,
    "cake": 61,
    "dining table": 67,
    "tv": 72,
    "book": 84,
    "toothbrush": 90,
}


@pytest.fixture(scope="module")
def coco_names(shared_dir) -> dict[int, str]:
    return yaml.safe_load((shared_dir / "datasets" / "coco128-seg.yaml").read_text())["names"]


def copy_coco128(shared_dir: Path, dest: Path, images: list[Path]) -> Path:
    """A copy of ``images`` and their labels under ``dest`` with a yaml whose ``path:`` is absolute.
    A copy, because Ultralytics writes a labels cache beside the labels and ../shared is read-only."""
    src = shared_dir / "datasets" / "coco128-seg"
    (dest / "images" / "train2017").mkdir(parents=True)
    (dest / "labels" / "train2017").mkdir(parents=True)
    for p in images:
        shutil.copy(p, dest / "images" / "train2017" / p.name)
        label = src / "labels" / "train2017" / (p.stem + ".txt")
        if label.is_file():
            shutil.copy(label, dest / "labels" / "train2017" / label.name)
    cfg = yaml.safe_load((shared_dir / "datasets" / "coco128-seg.yaml").read_text())
    cfg["path"] = str(dest.resolve())
    out = dest.parent / "coco128-seg.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


# ---------------------------------------------------------------------------------------------- ids


def test_coco_names_map_to_the_91_coco_ids_cake_is_61_not_bowl(coco_names):
    cats = category_ids(coco_names)
    assert coco_names[55] == "cake" and coco_names[45] == "bowl"
    assert cats[55] == 61  # the RDK zoo maps cake to 51 (bowl)
    assert cats[45] == 51
    for name, official in OFFICIAL_COCO_IDS.items():
        assert cats[next(c for c, n in coco_names.items() if n == name)] == official
    assert len(set(cats.values())) == 80 and sorted(cats.values()) == list(COCO80_TO_COCO91)


def test_cake_labels_of_coco128_become_category_61(coco128_dir, coco_names):
    ds = load_dataset(coco128_dir, names=coco_names)  # images/labels directory with the model's names
    cats = {c["id"]: c["name"] for c in ds.coco["categories"]}
    assert cats[61] == "cake" and cats[51] == "bowl"
    cake_files = sorted(
        p.stem
        for p in (coco128_dir / "labels" / "train2017").glob("*.txt")
        if any(line.split()[0] == "55" for line in p.read_text().splitlines() if line.strip())
    )
    assert cake_files  # coco128 has cakes
    cake_images = {a["image_id"] for a in ds.coco["annotations"] if a["category_id"] == 61}
    assert cake_images == {int(s) for s in cake_files}


def test_custom_names_map_one_to_one_and_old_coco_spellings_are_coco(coco_names):
    assert category_ids({0: "cat", 1: "dog", 2: "cake"}) == {0: 1, 1: 2, 2: 3}
    shuffled = dict(coco_names)
    shuffled[0], shuffled[1] = coco_names[1], coco_names[0]
    assert category_ids(shuffled) == {c: c + 1 for c in range(80)}  # not in COCO order: not COCO ids
    darknet = {**coco_names, 3: "motorbike", 4: "aeroplane", 57: "sofa", 62: "tvmonitor"}
    assert category_ids(darknet)[55] == 61


# ------------------------------------------------------------------------------------- ground truth


def test_coco128_ground_truth_backgrounds_and_orphan_labels(coco128_dir, coco_names, shared_dir):
    ds = load_dataset(shared_dir / "datasets" / "coco128-seg.yaml")  # its relative path: resolves beside the yaml
    images = {img["id"]: img for img in ds.coco["images"]}
    assert len(ds.images) == len(images) == 128
    assert len(ds.coco["annotations"]) == 929  # the instances on images that exist
    labelled = {a["image_id"] for a in ds.coco["annotations"]}
    assert len(set(images) - labelled) == 2  # two images without labels stay in as backgrounds
    assert any("2 label file(s) without an image" in w and "000000000656.txt" in w for w in ds.warnings)
    # Polygons are in original pixels; area is the rasterised polygon, bbox its extent.
    for a in ds.coco["annotations"][:50]:
        img = images[a["image_id"]]
        poly = np.asarray(a["segmentation"][0]).reshape(-1, 2)
        assert poly[:, 0].max() <= img["width"] and poly[:, 1].max() <= img["height"]
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], img["height"], img["width"]))
        assert a["area"] == mask_utils.area(rle) > 0
        assert a["iscrowd"] == 0
        x, y, w, h = a["bbox"]
        assert abs(x - poly[:, 0].min()) < 1e-2 and abs(x + w - poly[:, 0].max()) < 1e-2


def test_yaml_path_resolution(tmp_path, shared_dir, coco128_dir):
    shared_yaml = shared_dir / "datasets" / "coco128-seg.yaml"
    cfg = yaml.safe_load(shared_yaml.read_text())
    # Ultralytics-style relative path that means nothing here: falls back to a sibling named like the yaml.
    (tmp_path / "coco128-seg").symlink_to(coco128_dir.resolve(), target_is_directory=True)
    (tmp_path / "coco128-seg.yaml").write_text(yaml.safe_dump(dict(cfg, path="../datasets/coco128-seg")))
    assert len(load_dataset(tmp_path / "coco128-seg.yaml").images) == 128
    # Absolute path.
    other = tmp_path / "elsewhere" / "abs.yaml"
    other.parent.mkdir()
    other.write_text(yaml.safe_dump(dict(cfg, path=str(coco128_dir.resolve()))))
    assert len(load_dataset(other).images) == 128
    # Nothing to find: one error naming the yaml.
    (tmp_path / "elsewhere" / "lost.yaml").write_text(yaml.safe_dump(dict(cfg, path="no/such/dir")))
    with pytest.raises(EdgesegError, match=r"lost\.yaml: dataset root not found"):
        load_dataset(tmp_path / "elsewhere" / "lost.yaml")


# ------------------------------------------------------------------------- tiny dataset, round trip

TINY_NAMES = {0: "square", 1: "triangle"}


def make_tiny_dataset(root: Path) -> Path:
    """Three images (one a background) with polygon labels of known shapes."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    shapes = {
        "a": ((120, 160), ["0 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6", "1 0.6 0.2 0.95 0.2 0.8 0.9"]),
        "b": ((90, 200), ["1 0.05 0.9 0.4 0.9 0.2 0.1", "0 0.5 0.3 0.9 0.3 0.9 0.8 0.5 0.8", "0 0.7 0.5 0.2 0.4"]),
        "c": ((64, 64), []),  # background: no label file
    }
    rng = np.random.default_rng(0)
    for stem, ((h, w), lines) in shapes.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), rng.integers(0, 255, (h, w, 3), np.uint8))
        if lines:
            (root / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def gt_detections(ds, shift: int = 0) -> dict[int, Detections]:
    """Detections equal to the ground truth (boxes and rasterised masks), optionally shifted right/down."""
    inv = {cat: c for c, cat in ds.category_ids.items()}
    out = {}
    for img in ds.coco["images"]:
        anns = [a for a in ds.coco["annotations"] if a["image_id"] == img["id"]]
        h, w = img["height"], img["width"]
        masks, boxes = [], []
        for a in anns:
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))).astype(bool)
            masks.append(np.roll(m, (shift, shift), axis=(0, 1)))
            x, y, bw, bh = a["bbox"]
            boxes.append([x + shift, y + shift, x + bw + shift, y + bh + shift])
        out[img["id"]] = Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            scores=np.linspace(0.9, 0.5, len(anns)).astype(np.float32),
            class_ids=np.asarray([inv[a["category_id"]] for a in anns], np.int64),
            image_shape=(h, w),
            names=TINY_NAMES,
            masks=masks,  # box-local masks may cover the whole image, with origin (0, 0)
            mask_origins=np.zeros((len(anns), 2), np.int64),
        )
    return out


@pytest.mark.parametrize("evaluator", ["faster-coco-eval", "pycocotools"])
def test_round_trip_perfect_predictions_score_one_shifted_less(tmp_path, evaluator):
    ds = load_dataset(make_tiny_dataset(tmp_path / "tiny"), names=TINY_NAMES)
    assert len(ds.images) == 3 and len(ds.coco["annotations"]) == 5
    assert ds.category_ids == {0: 1, 1: 2}
    assert any("1 image(s) without labels" in w for w in ds.warnings)

    perfect = [r for i, d in gt_detections(ds).items() for r in d.to_coco(i, ds.category_ids)]
    # The RLE we write decodes (pycocotools) to the mask pycocotools rasterises from the polygon.
    order = [a for img in ds.coco["images"] for a in ds.coco["annotations"] if a["image_id"] == img["id"]]
    assert len(perfect) == len(order)
    for r, a in zip(perfect, order):
        h, w = ds.image_sizes()[a["image_id"]]
        assert r["segmentation"]["size"] == [h, w] and r["category_id"] == a["category_id"]
        gt_mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)))
        np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]), gt_mask)
    s = score_predictions(ds.coco, json.loads(json.dumps(perfect)), evaluator=evaluator)  # through JSON
    assert s.evaluator == evaluator
    assert (s.box_map50_95, s.box_map50, s.mask_map50_95, s.mask_map50) == (1.0, 1.0, 1.0, 1.0)
    assert all(v == 1.0 for m in s.per_class.values() for v in m.values())

    shifted = [r for i, d in gt_detections(ds, shift=3).items() for r in d.to_coco(i, ds.category_ids)]
    s = score_predictions(ds.coco, shifted, evaluator=evaluator)
    assert s.box_map50_95 < 1.0 and s.mask_map50_95 < 1.0
    assert s.box_map50_95 > 0.0 and s.mask_map50_95 > 0.0  # matched at the looser IoU thresholds
    none = score_predictions(ds.coco, [], evaluator=evaluator)
    assert (none.box_map50_95, none.mask_map50_95) == (0.0, 0.0)


def test_coco_json_dataset_round_trip(tmp_path):
    ds = load_dataset(make_tiny_dataset(tmp_path / "tiny"), names=TINY_NAMES)
    ann = tmp_path / "annotations" / "instances_val.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(ds.coco))
    coco = load_dataset(ann, images=tmp_path / "tiny" / "images")
    assert [i for i, _ in coco.images] == [i for i, _ in ds.images]
    # Model classes are matched to the json's categories by name, whatever their order.
    assert coco.category_map({0: "triangle", 1: "square"}) == {0: 2, 1: 1}
    with pytest.raises(EdgesegError, match="not categories of this dataset"):
        coco.category_map({0: "cat", 1: "dog", 2: "cow"})
    perfect = [r for i, d in gt_detections(coco).items() for r in d.to_coco(i, coco.category_ids)]
    assert score_predictions(coco.coco, perfect).mask_map50_95 == 1.0


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "bad, message",
    [
        ("0 0.1 0.1 0.5 oops 0.3 0.3", "not a number"),
        ("0 0.1 0.1 0.5 0.5", None),  # a box label is fine: see below
        ("0 0.1 0.1 0.5 0.5 0.3", "expected 'class x1 y1"),
        ("0 0.1 0.1", "expected 'class x1 y1"),
        ("1", "expected 'class x1 y1"),
        ("7 0.1 0.1 0.5 0.1 0.5 0.6", "class 7 is not a class id"),
        ("0.5 0.1 0.1 0.5 0.1 0.5 0.6", "class 0.5 is not a class id"),
        ("0 0.1 0.1 1.5 0.1 0.5 0.6", "normalised to 0..1"),
        ("0 nan 0.1 0.5 0.1 0.5 0.6", "non-finite"),
    ],
)
def test_malformed_label_line_names_file_and_line(tmp_path, bad, message):
    root = make_tiny_dataset(tmp_path / "tiny")
    label = root / "labels" / "b.txt"
    lines = label.read_text().splitlines()
    lines.insert(2, bad)  # line 3
    label.write_text("\n".join(lines) + "\n")
    if message is None:
        assert len(load_dataset(root, names=TINY_NAMES).coco["annotations"]) == 6
        return
    with pytest.raises(EdgesegError) as err:
        load_dataset(root, names=TINY_NAMES)
    assert str(err.value).startswith(f"{label}:3: ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
        (b"\xff\xfe\x00", "not a text file (expected the COCO instances JSON)"),
        (b'{"images": []}', "not a COCO instances json (needs images, annotations and categories)"),
    ],
)
def test_unreadable_coco_json_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "instances_val.json"
    path.write_bytes(content)
    with pytest.raises(EdgesegError) as err:
        load_dataset(path)
    assert str(err.value) == f"{path}: {message}"


def test_cli_errors_are_one_line(tmp_path, capsys, model_640):
    root = make_tiny_dataset(tmp_path / "tiny")
    (root / "labels" / "a.txt").write_text("0 0.1 0.1 0.5\n")
    for argv, fragment in [
        (["val", str(model_640), "--data", str(root)], "a.txt:1: expected"),
        (["val", str(model_640), "--data", str(tmp_path / "none.yaml")], "none.yaml: no such file"),
        (["val", str(model_640), "--data", str(root), "--imgsz", "320"], "model input is 640x640, not 320x320"),
        (["val", str(tmp_path / "nope.onnx"), "--data", str(root)], "nope.onnx: no such file"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("edgeseg: error: ") and fragment in err[0], err


# ------------------------------------------------------------------------------- real model, CLI


def images_and_labels(root: Path, images: list[Path], coco128_dir: Path) -> Path:
    """An images/labels directory dataset of some coco128 images."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for p in images:
        shutil.copy(p, root / "images" / p.name)
        shutil.copy(coco128_dir / "labels" / "train2017" / (p.stem + ".txt"), root / "labels")
    return root


def test_cli_two_models_table_json_and_skipped_images(tmp_path, capsys, model_640, coco128_images, coco128_dir):
    root = images_and_labels(tmp_path / "data", coco128_images[:3], coco128_dir)
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    second = tmp_path / "copy" / model_640.name
    second.parent.mkdir()
    shutil.copy(model_640, second)
    out = tmp_path / "out" / "val.json"

    assert main(["val", str(model_640), str(second), "--data", str(root), "--imgsz", "640", "--save-json", str(out), "--verbose"]) == 0
    cap = capsys.readouterr()
    assert "broken.jpg" in cap.err and "skipped 1 item(s)" in cap.err
    assert "retention (box / mask)" in cap.out and "100.0% / 100.0%" in cap.out
    assert "bowl" in cap.out and "giraffe" in cap.out  # per-class table

    doc = json.loads(out.read_text())
    assert [m["model"] for m in doc["models"]] == [str(model_640), str(second)]
    first = doc["models"][0]
    assert first["images"] == 3
    for key in ("box_map50_95", "box_map50", "mask_map50_95", "mask_map50"):
        assert 0.0 < first[key] <= 1.0 and first[key] == doc["models"][1][key]
    assert first["mask_map50"] >= first["mask_map50_95"] and first["box_map50"] >= first["box_map50_95"]
    assert first["per_class"]["bowl"]["category_id"] == 51 and first["per_class"]["bowl"]["instances"] > 0
    # The COCO results beside it re-score to the same numbers with pycocotools.
    preds = json.loads((out.parent / first["predictions"]).read_text())
    assert preds and set(preds[0]) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    ds = load_dataset(root, names=read_model_info(model_640).names)
    s = score_predictions(ds.coco, preds, evaluator="pycocotools")
    assert abs(s.box_map50_95 - first["box_map50_95"]) < 1e-9 and abs(s.mask_map50_95 - first["mask_map50_95"]) < 1e-9


def synthetic_outputs(quantized: bool):
    """Split-head outputs of a 3-class 64x64 model where one stride-8 cell scores two classes."""
    from edgeseg.backends import ModelInfo, QuantizedTensor, output_name

    info = ModelInfo(names={0: "a", 1: "b", 2: "c"}, strides=(8, 16, 32), imgsz=(64, 64))
    out = {}
    for s in info.strides:
        g = 64 // s
        cls = np.full((1, g, g, 3), -9.0, np.float32)
        if s == 8:
            cls[0, 3, 4] = [2.0, 1.0, -9.0]  # class 0 (p 0.88) and class 1 (p 0.73) in one cell
        out[output_name("cls", s)] = cls
        out[output_name("box", s)] = np.zeros((1, g, g, 64), np.float32)
        out[output_name("mc", s)] = np.ones((1, g, g, 32), np.float32)
    out["protos"] = np.ones((1, 16, 16, 32), np.float32)
    if quantized:  # integer cls/box/mc heads, per-tensor scale
        for k, v in list(out.items()):
            if k != "protos":
                out[k] = QuantizedTensor(np.round(v / 0.1).astype(np.int8), np.float32(0.1), np.int32(0))
    return info, out


@pytest.mark.parametrize("quantized", [False, True])
def test_multi_label_keeps_every_class_above_conf_like_ultralytics_val(quantized):
    from edgeseg.decode import select_candidates

    info, out = synthetic_outputs(quantized)
    cand = select_candidates(out, info, conf=0.5, multi_label=True)
    assert sorted(cand.class_ids.tolist()) == [0, 1]
    np.testing.assert_allclose(sorted(cand.scores.tolist()), [1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-2.0))], atol=1e-6)
    np.testing.assert_array_equal(cand.xyxy[0], cand.xyxy[1])  # one cell, one box, two labels
    assert select_candidates(out, info, conf=0.8, multi_label=True).class_ids.tolist() == [0]
    assert select_candidates(out, info, conf=0.5, classes=[1], multi_label=True).class_ids.tolist() == [1]


# ------------------------------------------------------------------------ metrics JSON, config, lister


def _result(model: str, box: float) -> EvalResult:
    return EvalResult(
        model=model,
        data="d.yaml",
        images=3,
        box_map50_95=box,
        box_map50=0.7,
        mask_map50_95=0.3,
        mask_map50=0.5,
        per_class={
            "cat": {
                "class_id": 0,
                "category_id": 1,
                "images": 2,
                "instances": 4,
                "box_map50_95": box,
                "box_map50": 0.7,
                "mask_map50_95": 0.3,
                "mask_map50": 0.5,
            }
        },
        predictions=[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.9}],
        skipped=[Problem("x/broken.jpg", "not a readable image")],
        evaluator="pycocotools",
        settings={"conf": 0.001, "iou": 0.7, "max_det": 300, "multi_label": False},
    )


def test_metrics_json_reads_back_as_the_results_it_was_written_from(tmp_path):
    results = [_result("a/float.onnx", 0.58), _result("b/int8.onnx", 0.55)]
    metrics, preds = save_results(results, tmp_path / "val.json")
    back = read_eval_results(metrics)
    assert [dataclasses.replace(r, predictions=[]) for r in results] == back  # records stay in their own files
    assert [json.loads(p.read_text()) for p in preds] == [r.predictions for r in results]
    assert EvalResult.from_dict(results[0].to_dict()).to_dict() == results[0].to_dict()
    assert all(type(s) is Problem for r in back for s in r.skipped)
    entry = json.loads(metrics.read_text())["models"][0]
    assert entry["skipped"] == [{"image": "x/broken.jpg", "problem": "not a readable image"}]  # the JSON as before
    # Only what identifies a model and its numbers is required (report's hand-written inputs have no more).
    short = EvalResult.from_dict(
        {"model": "m.onnx", "images": 5, "box_map50_95": 0.5, "box_map50": 0.6, "mask_map50_95": 0.3, "mask_map50": 0.4}
    )
    assert (short.images, short.mask_map50, short.per_class, short.skipped, short.settings) == (5, 0.4, {}, [], {})


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"layers": []}', "not an edgeseg val JSON"),
        ('{"models": [{"images": 3}]}', "not an edgeseg val JSON"),
        (
            '{"models": [{"model": "m.onnx", "images": 3, "box_map50_95": 0.5, "box_map50": 0.6, "mask_map50_95": 0.3}]}',
            "model 'm.onnx': 'mask_map50' must be a number",
        ),
        ('{"models": [{"model": "m.onnx", "images": "3", "box_map50_95": 0.5}]}', "'images' must be a count"),
    ],
)
def test_read_eval_results_bad_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "val.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EdgesegError) as err:
        read_eval_results(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_val_config_checks_thresholds_and_records_its_settings():
    with pytest.raises(EdgesegError, match="conf must be in"):
        ValConfig(decode=DecodeOptions(conf=1.5))
    with pytest.raises(EdgesegError, match="max_det must be >= 1"):
        ValConfig(decode=DecodeOptions(max_det=0))
    # Ultralytics' val: every class above conf, detections with empty masks kept
    assert ValConfig().decode == DecodeOptions(conf=0.001, iou=0.7, max_det=300, multi_label=True, keep_empty_masks=True)
    assert ValConfig().settings() == {"conf": 0.001, "iou": 0.7, "max_det": 300, "multi_label": True, "keep_empty_masks": True}
    config = ValConfig(decode=DecodeOptions(conf=0.2), imgsz=[640, 480])
    assert config.imgsz == (640, 480)
    assert config.settings() == {"conf": 0.2, "iou": 0.7, "max_det": 300, "multi_label": False, "keep_empty_masks": False}


def test_hidden_images_are_not_part_of_a_directory_dataset(tmp_path):
    root = make_tiny_dataset(tmp_path / "tiny")
    shutil.copy(root / "images" / "a.png", root / "images" / ".a.png")
    (root / "images" / ".cache").mkdir()
    shutil.copy(root / "images" / "b.png", root / "images" / ".cache" / "b.png")
    ds = load_dataset(root, names=TINY_NAMES)
    assert sorted(p.name for _, p in ds.images) == ["a.png", "b.png", "c.png"]


def test_single_label_val_predictions_are_the_segmenters_detections(tmp_path, model_640, coco128_images, coco128_dir):
    root = images_and_labels(tmp_path / "data", coco128_images[:2], coco128_dir)
    config = ValConfig(decode=DecodeOptions(conf=0.25))
    result = evaluate(model_640, root, config=config)
    assert result.settings == config.settings()
    ds = load_dataset(root, names=read_model_info(model_640).names)
    seg = Segmenter(model_640, conf=0.25)
    expected = [r for i, p in ds.images for r in seg(p).to_coco(i, ds.category_map(seg.names))]
    assert expected and result.predictions == expected
