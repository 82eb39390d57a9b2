"""Bad-input corpus, concurrency and atomic outputs (issue: robustness)."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from corpus import error_reason, jpeg_bytes, make_image_corpus, run_cli, scene, usage_error, with_exif_orientation
from edgeseg import PredictOutputs, Segmenter, predict_sources
from edgeseg.errors import EdgesegError
from edgeseg.fileio import write_json_atomic
from edgeseg.preprocess import load_image

# --- images -----------------------------------------------------------------------------------------


def test_image_corpus_batch_keeps_good_items_and_lists_bad_ones(tmp_path, default_model):
    corpus = make_image_corpus(tmp_path / "corpus dir")
    seg = Segmenter(default_model)
    summary = predict_sources(seg, [tmp_path / "corpus dir"], outputs=PredictOutputs(out_dir=tmp_path / "out"), show_progress=False)
    failed = dict(summary.failed)
    for name, (path, problem) in corpus.items():
        if problem is None:
            assert str(path) not in failed, (name, failed.get(str(path)))
        elif problem != "?":
            assert failed.get(str(path), "").startswith(problem), (name, failed.get(str(path)))
    good = sum(1 for _, p in corpus.values() if p is None)
    assert summary.processed >= good
    assert len(summary.overlays) == summary.processed


@pytest.mark.slow
def test_each_bad_image_alone_is_a_one_line_error(tmp_path, default_model):
    corpus = make_image_corpus(tmp_path / "c")
    for path, problem in corpus.values():
        if problem in (None, "?"):
            continue
        reason = error_reason(run_cli("predict", default_model, path), path)
        assert reason.startswith(problem), (path.name, reason)


@pytest.mark.parametrize("orientation", [3, 6, 8])  # 180 degrees, 90 clockwise, 90 counter-clockwise
def test_exif_orientation_is_applied(tmp_path, orientation):
    """The direction too, not only the size: the loaded pixels are Pillow's ``exif_transpose`` of the file
    and clearly not any of the other rotations."""
    from PIL import Image, ImageOps

    p = tmp_path / "rot.jpg"
    p.write_bytes(with_exif_orientation(jpeg_bytes(scene(200, 400)), orientation))
    loaded = load_image(p).astype(np.int16)
    with Image.open(p) as pil:
        expected = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))[..., ::-1].astype(np.int16)
    assert loaded.shape == expected.shape == ((200, 400, 3) if orientation == 3 else (400, 200, 3))
    assert np.abs(loaded - expected).mean() < 2  # two JPEG decoders
    upright = cv2.imdecode(np.frombuffer(p.read_bytes(), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    others = [upright] + [cv2.rotate(upright, r) for r in (cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE)]
    wrong = [o.astype(np.int16) for o in others if o.shape == loaded.shape and np.abs(o.astype(np.int16) - expected).mean() >= 2]
    assert wrong and all(np.abs(loaded - o).mean() > 20 for o in wrong)


def test_huge_image_is_processed_with_boxes_inside(tmp_path, default_model, coco128_dir):
    """A 12000x7988 photo (coco128's 000000000074, five people, scaled 18.75x) finds what the original finds,
    at 18.75 times the coordinates."""
    original = load_image(coco128_dir / "images" / "train2017" / "000000000074.jpg")
    big = cv2.resize(original, (12000, 7988), interpolation=cv2.INTER_LINEAR)
    p = tmp_path / "huge.jpg"
    p.write_bytes(jpeg_bytes(big, 70))
    del big
    seg = Segmenter(default_model)
    det, small = seg(p), seg(original)
    assert det.image_shape == (7988, 12000)
    assert (det.xyxy >= 0).all() and (det.xyxy[:, [0, 2]] <= 12000).all() and (det.xyxy[:, [1, 3]] <= 7988).all()
    confident = small.scores > 0.5
    assert (small.class_ids[confident] == 0).sum() >= 3
    for box, cls in zip(small.xyxy[confident] * np.float32([12000 / 640, 7988 / 426] * 2), small.class_ids[confident]):
        assert max((_iou(box, b) for b in det.xyxy[det.class_ids == cls]), default=0) > 0.8, (box, cls)
    assert all(det.full_mask(i).any() for i in range(len(det)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)


def test_sources_that_match_nothing(tmp_path, default_model):
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.jpg").mkdir()  # a directory with an image name
    assert error_reason(run_cli("predict", default_model, tmp_path / "empty"), tmp_path / "empty") == "directory holds no images"
    proc = run_cli("predict", default_model, tmp_path / "empty", tmp_path / "*.png", tmp_path / "fake.jpg")
    assert proc.returncode == 1 and error_reason(proc) == "no image could be processed"
    for source, problem in (
        (tmp_path / "empty", "directory holds no images"),
        (tmp_path / "*.png", "pattern matches no image files"),
        (tmp_path / "fake.jpg", "directory holds no images"),
    ):
        assert f"  {source}: {problem}\n" in proc.stderr, proc.stderr


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
        _tiny_model(
            tmp_path / "corrupt meta.onnx", {"edgeseg.layout": "edgeseg-split-head-nhwc/1", "edgeseg.names": "{"}
        ): "corrupt edgeseg metadata",
        _tiny_model(
            tmp_path / "lacks outputs.onnx",
            {
                "edgeseg.layout": "edgeseg-split-head-nhwc/1",
                "edgeseg.names": '{"0": "a"}',
                "edgeseg.strides": "[8, 16, 32]",
                "edgeseg.imgsz": "[32, 32]",
            },
        ): "model lacks the split-head outputs",
    }
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(seg_std.read_bytes()[:1000])
    cases[truncated] = "not a valid ONNX file"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    cases[empty] = "not an edgeseg split-head model"  # an empty protobuf parses as an empty model without metadata
    (tmp_path / "dir.onnx").mkdir()
    cases[tmp_path / "dir.onnx"] = "is a directory"
    for path, problem in cases.items():
        reason = error_reason(run_cli("predict", path, coco128_images[0]), path)
        assert reason.startswith(problem), (path.name, reason)
        with pytest.raises(EdgesegError) as err:
            Segmenter(path)
        assert str(err.value) == f"{path}: {reason}"


# --- command-line values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--conf", "-0.5"], "argument --conf: conf must be between 0 and 1, got -0.5"),
        (["--conf", "abc"], "argument --conf: conf must be a number, got 'abc'"),
        (["--iou", "1.01"], "argument --iou: iou must be between 0 and 1, got 1.01"),
        (["--max-det", "0"], "argument --max-det: expected an integer >= 1, got 0"),
        (["--threads", "-2"], "argument --threads: expected an integer >= 0, got -2"),
    ],
)
def test_bad_predict_values(args, reason, default_model, coco128_images):
    assert usage_error(run_cli("predict", default_model, coco128_images[0], *args)) == reason


def test_class_ids_out_of_range(default_model, coco128_images):
    reason = error_reason(run_cli("predict", default_model, coco128_images[0], "--classes", "0", "80"))
    assert reason == "class ids [80] not in this model (0..79)"


@pytest.mark.parametrize(
    "imgsz, reason",
    [
        ("300", "imgsz must be a positive multiple of 32, got 300"),
        ("0", "imgsz must be a positive multiple of 32, got 0"),
        ("-32", "imgsz must be a positive multiple of 32, got -32"),
        ("abc", "imgsz must be an integer, got 'abc'"),
    ],
)
def test_export_imgsz_must_be_a_multiple_of_32(imgsz, reason, checkpoint):
    assert usage_error(run_cli("export", checkpoint, "--imgsz", imgsz)) == f"argument --imgsz: {reason}"


# --- concurrency and atomic outputs -----------------------------------------------------------------


@pytest.mark.slow
def test_shared_segmenter_across_8_threads_equals_sequential(default_model, coco128_images):
    seg = Segmenter(default_model)
    images = [load_image(p) for p in coco128_images[:48]]
    sequential = [seg(im) for im in images]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(seg, images))
    assert sum(len(d) for d in sequential) > 200  # real detections and masks to compare
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


@pytest.mark.parametrize(
    "line, problem",
    [
        ("0 0.1 0.1 0.5 0.1 0.5", "got 6 values"),  # odd coordinate count
        ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.7", "got 8 values"),  # odd again (7 coordinates)
        ("95 0.1 0.1 0.5 0.1 0.5 0.5", "class 95 is not a class id"),  # class id out of range
        ("1.5 0.1 0.1 0.5 0.1 0.5 0.5", "class 1.5 is not a class id"),  # non-integer class
        ("0 0.1 0.1 1.7 0.1 0.5 0.5", "normalised to 0..1"),  # coordinate outside [0, 1]
        ("0 0.1 nan 0.5 0.1 0.5 0.5", "non-finite"),
        ("person 0.1 0.1 0.5 0.1 0.5 0.5", "not a number"),
    ],
)
def test_malformed_label_lines_name_file_and_line(tmp_path, coco128_images, default_model, line, problem):
    data = _tiny_dataset(tmp_path / "ds", coco128_images, {"a": "0 0.2 0.2 0.6 0.2 0.6 0.6\n", "b": f"0 0.1 0.1 0.3 0.1 0.3 0.3\n{line}\n"})
    reason = error_reason(run_cli("val", default_model, "--data", data), data / "labels" / "b.txt:2")
    assert problem in reason, reason


@pytest.mark.slow
def test_empty_and_all_bad_calibration_directories(tmp_path, default_model):
    (tmp_path / "empty").mkdir()
    proc = run_cli("quantize", default_model, "--calib", tmp_path / "empty", "-o", tmp_path / "q.onnx")
    assert error_reason(proc, tmp_path / "empty") == "holds no image files"
    bad = tmp_path / "all bad"
    make_image_corpus(tmp_path / "corpus")
    bad.mkdir()
    for p in (tmp_path / "corpus").iterdir():
        if p.name in ("zero byte.jpg", "truncated.jpg", "text.png", "random.jpg", "html.jpeg"):
            shutil.copy(p, bad / p.name)
    proc = run_cli("quantize", default_model, "--calib", bad, "-o", tmp_path / "q.onnx")
    assert error_reason(proc, bad) == "none of the 5 calibration image(s) could be read"
    assert not (tmp_path / "q.onnx").exists()
