"""The command line as a user meets it: predict, demo, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
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


@pytest.mark.slow
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
    for option, value, reason in (
        ("--conf", "-0.1", "conf must be between 0 and 1, got -0.1"),
        ("--iou", "1.5", "iou must be between 0 and 1, got 1.5"),
        ("--max-det", "0", "expected an integer >= 1, got 0"),
    ):
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


def test_workers_are_bounded_by_a_multiple_of_the_cores_with_the_reason(default_model, coco128_images):
    from edgeseg.cli import build_parser
    from edgeseg.engines.base import PER_CORE_LIMIT
    from edgeseg.machine import usable_cores

    limit = PER_CORE_LIMIT * usable_cores()
    args = build_parser().parse_args(["predict", str(default_model), "x.jpg", "--workers", str(limit)])
    assert args.workers == limit  # the bound itself is accepted
    for value in (str(limit + 1), "100000"):
        proc = run_cli("predict", default_model, coco128_images[0], "--workers", value)
        assert usage_error(proc) == (
            f"argument --workers: at most {limit} ({PER_CORE_LIMIT} per core, {usable_cores()} core(s) here): "
            "each of the inference threads loads its own model, so more only add memory, not speed; "
            f"got {value}"
        )
    for value in ("0", "²", "٣", "1_0"):
        proc = run_cli("predict", default_model, coco128_images[0], "--workers", value)
        assert usage_error(proc).startswith("argument --workers: expected an integer")


def test_actors_are_bounded_by_a_multiple_of_the_cpus(default_model, tmp_path):
    from edgeseg.engines.base import PER_CORE_LIMIT
    from edgeseg.engines.cluster import actor_cpus
    from edgeseg.errors import EdgesegError
    from edgeseg.machine import usable_cores

    assert actor_cpus(PER_CORE_LIMIT * 2, 2) == 1 / PER_CORE_LIMIT  # the bound itself is accepted
    with pytest.raises(EdgesegError, match=rf"^--actors: at most {PER_CORE_LIMIT * 2} \({PER_CORE_LIMIT} per CPU of the cluster, 2 CPU"):
        actor_cpus(PER_CORE_LIMIT * 2 + 1, 2)
    # A local Ray gets this machine's cores: refused before Ray starts, in one line.
    proc = run_cli(
        "predict",
        default_model,
        tmp_path,
        "--ray",
        "--actors",
        str(PER_CORE_LIMIT * usable_cores() + 1),
        "--save-json",
        tmp_path / "x.json",
    )
    assert error_reason(proc).startswith(f"--actors: at most {PER_CORE_LIMIT * usable_cores()} ")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--serve", "70000", "the port must be a number from 0 to 65535, got '70000'"),
        ("--serve", "²", "the port must be a number from 0 to 65535, got '²'"),
        ("--serve", "127.0.0.1:٨٠", "the port must be a number from 0 to 65535, got '٨٠'"),
        ("--serve", "host:", "the port must be a number from 0 to 65535, got ''"),
        ("--serve", ":80", "the host is missing before ':', got ':80'"),
        ("--serve", "a[::1]:80", "an IPv6 host goes in brackets ([::1]:PORT), got 'a[::1]:80'"),
        ("--ray-address", "host:99999", "the port must be a number from 0 to 65535, got '99999'"),
        ("--ray-address", "host:²", "the port must be a number from 0 to 65535, got '²'"),
        ("--ray-address", "nowhere", "expected HOST:PORT, got 'nowhere'"),
    ],
)
def test_host_port_options_reject_bad_ports_in_one_usage_line(option, value, reason, default_model, coco128_images):
    extra = ["--ray", "--save-json", "x.json"] if option == "--ray-address" else []
    proc = run_cli("predict", default_model, coco128_images[0], option, value, *extra)
    prefix = (
        "expected [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080)" if option == "--serve" else "expected HOST:PORT (e.g. 127.0.0.1:6379) or auto"
    )
    assert usage_error(proc) == f"argument {option}: {prefix}: {reason}"


def test_the_one_host_port_parser():
    from edgeseg.address import parse_host_port

    assert parse_host_port("8080", default_host="127.0.0.1") == ("127.0.0.1", 8080)
    assert parse_host_port("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_host_port("[::1]:9000") == ("::1", 9000)
    assert parse_host_port("ray://head:10001") == ("ray://head", 10001)
    assert parse_host_port("h:65535") == ("h", 65535) and parse_host_port("h:0") == ("h", 0)
    for bad in ("8080", "h:65536", "h:-1", "h:+80", "h: 80", "[::1:80", "::1:80"):
        with pytest.raises(ValueError):
            parse_host_port(bad)
