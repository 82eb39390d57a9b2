"""Bad-input corpus, concurrency and atomic outputs (issue: robustness)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from corpus import jpeg_bytes, make_image_corpus, scene, with_exif_orientation
from edgeseg.errors import EdgesegError
from edgeseg.fileio import write_json_atomic
from edgeseg.predict import Segmenter, predict_sources
from edgeseg.preprocess import load_image


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgeseg.cli", *map(str, args)], capture_output=True, text=True)


def one_error_line(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edgeseg: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- images -----------------------------------------------------------------------------------------

def test_image_corpus_batch_keeps_good_items_and_lists_bad_ones(tmp_path, default_model):
    corpus = make_image_corpus(tmp_path / "corpus dir")
    seg = Segmenter(default_model)
    summary = predict_sources(seg, [tmp_path / "corpus dir"], out_dir=tmp_path / "out", show_progress=False)
    failed = dict(summary.failed)
    for name, (path, problem) in corpus.items():
        if problem is None:
            assert str(path) not in failed, (name, failed.get(str(path)))
        elif problem != "?":
            assert failed.get(str(path), "").startswith(problem), (name, failed.get(str(path)))
    good = sum(1 for _, p in corpus.values() if p is None)
    assert summary.processed >= good
    assert len(summary.overlays) == summary.processed


def test_each_bad_image_alone_is_a_one_line_error(tmp_path, default_model):
    corpus = make_image_corpus(tmp_path / "c")
    for path, problem in corpus.values():
        if problem in (None, "?"):
            continue
        line = one_error_line(run_cli("predict", default_model, path))
        assert str(path) in line and problem in line, line


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    p.write_bytes(with_exif_orientation(jpeg_bytes(scene(200, 400)), 6))
    assert load_image(p).shape[:2] == (400, 200)


def test_huge_image_is_processed_with_boxes_inside(tmp_path, default_model):
    big = np.full((9000, 12000, 3), 127, np.uint8)
    cv2.rectangle(big, (3000, 2000), (7000, 8000), (30, 30, 220), -1)
    p = tmp_path / "huge.jpg"
    p.write_bytes(jpeg_bytes(big, 70))
    det = Segmenter(default_model, conf=0.01)(p)
    assert det.image_shape == (9000, 12000)
    assert (det.xyxy[:, [0, 2]] <= 12000).all() and (det.xyxy[:, [1, 3]] <= 9000).all()


def test_sources_that_match_nothing(tmp_path, default_model):
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.jpg").mkdir()  # a directory with an image name
    line = one_error_line(run_cli("predict", default_model, tmp_path / "empty"))
    assert "empty" in line and "no images" in line
    proc = run_cli("predict", default_model, tmp_path / "empty", tmp_path / "*.png", tmp_path / "fake.jpg")
    assert proc.returncode == 1 and "pattern matches no files" in proc.stderr and "no image could be processed" in proc.stderr


# --- models -----------------------------------------------------------------------------------------

def _tiny_model(path: Path, metadata: dict[str, str] | None = None) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 32, 32])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["images"], ["logits"])], "g", [x], [y]))
    for k, v in (metadata or {}).items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def ultralytics_exports(checkpoint, tmp_path_factory):
    """Ultralytics' own ONNX exports: the standard single-output segmentation one and a detection model."""
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("ul")
    seg = YOLO(str(shutil.copy(checkpoint, work / checkpoint.name))).export(format="onnx", imgsz=320, verbose=False)
    cwd = os.getcwd()
    os.chdir(work)  # a model built from a yaml exports into the working directory
    try:
        det = YOLO("yolov8n.yaml").export(format="onnx", imgsz=320, verbose=False)
    finally:
        os.chdir(cwd)
    return Path(seg), Path(work / Path(det).name)


def test_foreign_and_broken_models_are_named(tmp_path, ultralytics_exports, coco128_images):
    seg_std, det = ultralytics_exports
    cases = {
        _tiny_model(tmp_path / "classifier.onnx"): "not an edgeseg split-head model",
        seg_std: "not an edgeseg split-head model",
        det: "not an edgeseg split-head model",
        _tiny_model(tmp_path / "future.onnx", {"edgeseg.layout": "edgeseg-split-head-nhwc/99"}): "unsupported edgeseg layout",
        _tiny_model(tmp_path / "corrupt meta.onnx", {"edgeseg.layout": "edgeseg-split-head-nhwc/1", "edgeseg.names": "{"}): "corrupt edgeseg metadata",
        _tiny_model(tmp_path / "lacks outputs.onnx", {
            "edgeseg.layout": "edgeseg-split-head-nhwc/1", "edgeseg.names": '{"0": "a"}',
            "edgeseg.strides": "[8, 16, 32]", "edgeseg.imgsz": "[32, 32]"}): "lacks the split-head outputs",
    }
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(seg_std.read_bytes()[:1000])
    cases[truncated] = "not a valid ONNX file"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    cases[empty] = "edgeseg"  # an empty protobuf parses as an empty model: it has no edgeseg metadata
    (tmp_path / "dir.onnx").mkdir()
    cases[tmp_path / "dir.onnx"] = "is a directory"
    for path, problem in cases.items():
        line = one_error_line(run_cli("predict", path, coco128_images[0]))
        assert str(path) in line and problem in line, line
        with pytest.raises(EdgesegError) as err:
            Segmenter(path)
        assert str(err.value) in line


# --- command-line values ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--conf", "-0.5"], "conf must be between 0 and 1"),
    (["--conf", "abc"], "conf must be a number"),
    (["--iou", "1.01"], "iou must be between 0 and 1"),
    (["--max-det", "0"], "integer >= 1"),
    (["--threads", "-2"], "threads"),
])
def test_bad_predict_values(args, fragment, default_model, coco128_images):
    proc = run_cli("predict", default_model, coco128_images[0], *args)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_class_ids_out_of_range(default_model, coco128_images):
    line = one_error_line(run_cli("predict", default_model, coco128_images[0], "--classes", "0", "80"))
    assert "class ids [80] not in this model" in line


@pytest.mark.parametrize("imgsz", ["300", "0", "-32", "abc"])
def test_export_imgsz_must_be_a_multiple_of_32(imgsz, checkpoint):
    proc = run_cli("export", checkpoint, "--imgsz", imgsz)
    assert proc.returncode == 2 and "imgsz" in proc.stderr and "Traceback" not in proc.stderr


# --- concurrency and atomic outputs -----------------------------------------------------------------

def test_shared_segmenter_across_8_threads_equals_sequential(default_model, coco128_images):
    seg = Segmenter(default_model)
    images = [load_image(p) for p in coco128_images[:48]]
    sequential = [seg(im) for im in images]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(seg, images))
    for a, b in zip(sequential, threaded):
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        for ma, mb in zip(a.masks, b.masks):
            np.testing.assert_array_equal(ma, mb)


def test_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"version": 1})

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(target, {"version": 2, "big": list(range(100000))})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


# --- datasets and calibration directories -----------------------------------------------------------

def _tiny_dataset(root: Path, coco128_images, labels: dict[str, str]) -> Path:
    """images/ + labels/ with real images and the given label texts (keyed by image stem)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for p, (stem, text) in zip(coco128_images, labels.items()):
        shutil.copy(p, root / "images" / f"{stem}.jpg")
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root


@pytest.mark.parametrize("line, problem", [
    ("0 0.1 0.1 0.5 0.1 0.5", "got 6 values"),                       # odd coordinate count
    ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.7", "got 8 values"),                # odd again (7 coordinates)
    ("95 0.1 0.1 0.5 0.1 0.5 0.5", "class 95 is not a class id"),     # class id out of range
    ("1.5 0.1 0.1 0.5 0.1 0.5 0.5", "class 1.5 is not a class id"),   # non-integer class
    ("0 0.1 0.1 1.7 0.1 0.5 0.5", "normalised to 0..1"),              # coordinate outside [0, 1]
    ("0 0.1 nan 0.5 0.1 0.5 0.5", "non-finite"),
    ("person 0.1 0.1 0.5 0.1 0.5 0.5", "not a number"),
])
def test_malformed_label_lines_name_file_and_line(tmp_path, coco128_images, default_model, line, problem):
    data = _tiny_dataset(tmp_path / "ds", coco128_images, {"a": "0 0.2 0.2 0.6 0.2 0.6 0.6\n", "b": f"0 0.1 0.1 0.3 0.1 0.3 0.3\n{line}\n"})
    err = one_error_line(run_cli("val", default_model, "--data", data))
    assert "b.txt:2" in err and problem in err, err


def test_empty_and_all_bad_calibration_directories(tmp_path, default_model):
    (tmp_path / "empty").mkdir()
    err = one_error_line(run_cli("quantize", default_model, "--calib", tmp_path / "empty", "-o", tmp_path / "q.onnx"))
    assert "empty" in err
    bad = tmp_path / "all bad"
    make_image_corpus(tmp_path / "corpus")
    bad.mkdir()
    for p in (tmp_path / "corpus").iterdir():
        if p.name in ("zero byte.jpg", "truncated.jpg", "text.png", "random.jpg", "html.jpeg"):
            shutil.copy(p, bad / p.name)
    proc = run_cli("quantize", default_model, "--calib", bad, "-o", tmp_path / "q.onnx")
    err = one_error_line(proc)
    assert "all bad" in err
    assert not (tmp_path / "q.onnx").exists()
