"""The command line as a user meets it: predict, demo, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from corpus import error_reason, run_cli, usage_error
from edgeseg.masks import decode_rle
from edgeseg.predict import Segmenter


def test_predict_directory_with_bad_images_keeps_the_good_ones(tmp_path, coco128_images, default_model):
    src = tmp_path / "in dir"
    src.mkdir()
    good = coco128_images[:3]
    for p in good:
        shutil.copy(p, src / p.name)
    (src / "zero.jpg").write_bytes(b"")
    (src / "notes.png").write_text("not an image")
    out, js = tmp_path / "out", tmp_path / "pred.json"
    proc = run_cli("predict", default_model, src, "--out", out, "--save-json", js)
    assert proc.returncode == 0, proc.stderr
    assert "zero.jpg: empty file" in proc.stderr and "notes.png: not a readable image" in proc.stderr
    assert "3 image(s)" in proc.stdout
    records = json.loads(js.read_text())
    assert {r["image"] for r in records} == {str(src / p.name) for p in good}
    assert sorted(f.name for f in out.iterdir()) == sorted(p.stem + ".jpg" for p in good)
    # Records equal the Python API's results, masks included (RLE at original resolution).
    seg = Segmenter(default_model)
    for p in good:
        det = seg(src / p.name)
        mine = [r for r in records if r["image"] == str(src / p.name)]
        assert len(mine) == len(det)
        for r, i in zip(mine, range(len(det))):
            assert set(r) == {"image", "class_id", "class_name", "score", "bbox_xyxy", "segmentation"}
            assert r["class_id"] == det.class_ids[i] and r["class_name"] == det.names[det.class_ids[i]]
            assert abs(r["score"] - det.scores[i]) < 1e-4
            np.testing.assert_allclose(r["bbox_xyxy"], det.xyxy[i], atol=0.01)
            assert r["segmentation"]["size"] == list(det.image_shape)
            np.testing.assert_array_equal(decode_rle(r["segmentation"]), det.full_mask(i))


def test_predict_glob_and_filters(tmp_path, coco128_dir, default_model):
    js = tmp_path / "p.json"
    pattern = coco128_dir / "images" / "train2017" / "0000000000[3-4]*.jpg"  # 30, 34, 36, 42, 49: people in 36 and 49
    proc = run_cli("predict", default_model, pattern, "--classes", "0", "--max-det", "2", "--save-json", js)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(js.read_text())
    assert records and all(r["class_id"] == 0 for r in records)
    per_image = {}
    for r in records:
        per_image[r["image"]] = per_image.get(r["image"], 0) + 1
    # 49 has five people and is capped at 2; 36 has one; the others none.
    assert {Path(k).name: v for k, v in per_image.items()} == {"000000000036.jpg": 1, "000000000049.jpg": 2}


def test_missing_and_unreadable_inputs_give_one_line_errors(tmp_path, default_model):
    nope = tmp_path / "nope.jpg"
    assert error_reason(run_cli("predict", default_model, nope), nope).startswith("no such file")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert error_reason(run_cli("predict", default_model, bad), bad).startswith("not a readable image")
    none = tmp_path / "none.onnx"
    assert error_reason(run_cli("predict", none, bad), none).startswith("no such file")


def test_non_edgeseg_onnx_models_are_rejected_by_name(tmp_path, coco128_images):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    classifier = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), classifier)
    reason = error_reason(run_cli("predict", classifier, coco128_images[0]), classifier)
    assert reason.startswith("not an edgeseg split-head model"), reason
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(classifier.read_bytes()[:25])
    reason = error_reason(run_cli("predict", truncated, coco128_images[0]), truncated)
    assert reason.startswith("not a valid ONNX file"), reason


def test_bad_cli_values_are_rejected(default_model, coco128_images):
    for option, value, reason in (("--conf", "-0.1", "conf must be between 0 and 1, got -0.1"),
                                  ("--iou", "1.5", "iou must be between 0 and 1, got 1.5"),
                                  ("--max-det", "0", "expected an integer >= 1, got 0")):  # fmt: skip
        proc = run_cli("predict", default_model, coco128_images[0], option, value)
        assert usage_error(proc) == f"argument {option}: {reason}"
    proc = run_cli("export", "x.pt", "--imgsz", "300")
    assert usage_error(proc) == "argument --imgsz: imgsz must be a positive multiple of 32, got 300"


def test_demo_writes_an_overlay_with_detections(tmp_path):
    proc = run_cli("demo", "--out", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "sample.jpg").stat().st_size > 10_000
    records = json.loads((tmp_path / "demo" / "detections.json").read_text())
    assert any(r["class_name"] == "person" for r in records)


def test_debug_shows_the_traceback(tmp_path, default_model):
    proc = run_cli("--debug", "predict", default_model, tmp_path / "nope.jpg")
    assert proc.returncode != 0 and "Traceback" in proc.stderr
