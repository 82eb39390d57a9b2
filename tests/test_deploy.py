"""The deployment file of ``edgeseg run``: a good four-camera file validates and ``--check`` prints what would
run; each mistake of a table of bad files is one line naming its key path and reason; a flag and its file key
are one setting; the file becomes the engine's camera plans; docs/deploy.md lists every key."""

from __future__ import annotations

import copy
import json
import os
import types
import typing
from pathlib import Path

import pytest
import yaml

from corpus import error_reason, make_clip, run_cli

pytest.importorskip("pydantic", reason="edgeseg run needs the [deploy] extra (pydantic)")

from edgeseg.cli import build_parser  # noqa: E402
from edgeseg.cli.deploy import overrides_of  # noqa: E402
from edgeseg.deploy import SETTINGS, Deployment, DeploymentError, load_deployment, plan_fields  # noqa: E402
from edgeseg.deploy.plan import attempts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "deploy.yaml"
DOC = ROOT / "docs" / "deploy.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory, coco128_images, default_model) -> Path:
    """A folder with two short clips; the good file refers to them and to the packaged model."""
    root = tmp_path_factory.mktemp("site")
    make_clip(root / "front.mp4", coco128_images[:3])
    make_clip(root / "back.avi", coco128_images[3:5])
    return root


def good(model: Path) -> dict:
    """Four cameras: two clips (one named by its file), a USB camera and a URL; lines, zones, outputs, rotation,
    the live view."""
    return {
        "model": {"path": str(model), "conf": 0.3, "classes": [0, 2]},
        "run": {"workers": 2, "retries": 3},
        "cameras": [
            {
                "name": "door",
                "source": "front.mp4",
                "track": True,
                "lines": {"in": "0,0.5,1,0.5"},
                "zones": {"hall": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]},
                "outputs": {"save_video": "out/door.mp4", "save_counts": "out/door.json", "rotate": {"max_mb": 100, "max_minutes": 30}},
            },
            {"source": "back.avi", "vid_stride": 2, "outputs": {"save_jsonl": "out/back.jsonl"}},
            {"name": "desk", "source": 0, "live": False, "fps_cap": 5},
            {"name": "gate", "source": "rtsp://10.0.0.7:554/main", "track": {"iou": "mask"}, "lines": {"gate": [10, 200, 300, 200]}},
        ],
        "serve": {"address": "127.0.0.1:8099"},
    }


def write(site: Path, data: dict | str, name: str = "deploy.yaml") -> Path:
    path = site / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_good_file_validates_and_check_prints_what_would_run(site, default_model):
    path = write(site, good(default_model))
    deployment = load_deployment(path)
    assert [c.name for c in deployment.cameras] == ["door", None, "desk", "gate"]
    assert deployment.model.path == default_model and deployment.run.workers == 2
    proc = run_cli("run", path, "--check", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout.splitlines()
    assert out[-1] == f"{path}: ok"
    assert out[0].startswith(f"model    {os.path.relpath(default_model)} (conf 0.3, ")
    assert out[1] == "run      2 worker(s), retries 3, 4 camera(s)"
    cameras = [line for line in out if line.startswith("camera ")]
    assert len(cameras) == 4
    out_dir = os.path.relpath(site / "out")
    assert cameras[0] == (
        f"camera   door: {site / 'front.mp4'} (tracked, 1 line(s), 1 zone(s)) "
        f"-> {out_dir}/door.mp4, {out_dir}/door.json, rotated at 100 MB or 30 min"
    )
    assert cameras[1] == f"camera   back: {site / 'back.avi'} (every 2 frame(s)) -> {out_dir}/back.jsonl"
    assert cameras[2] == "camera   desk: 0 (at most 5 fps, every frame) (no outputs)"
    assert cameras[3] == "camera   gate: rtsp://10.0.0.7:554/main (tracked, 1 line(s), 0 zone(s)) (no outputs)"
    assert out[-2] == "serve    http://127.0.0.1:8099/ (token from $EDGESEG_SERVE_TOKEN)"


def _set(data: dict, key: str, value) -> dict:
    """A copy of ``data`` with ``value`` at ``key`` (``cameras.1.fps``: list items by index)."""
    data = copy.deepcopy(data)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def _drop(data: dict, key: str) -> dict:
    data = copy.deepcopy(data)
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return data


def _rename(data: dict, old: str, new: str) -> dict:
    return {new if k == old else k: v for k, v in data.items()}


# (id, how the good file is broken, the key path named, the reason after it)
BAD = [
    ("unknown top key", lambda d: _rename(d, "run", "runs"), "runs", "unknown key (did you mean run?)"),
    ("unknown camera key", lambda d: _set(d, "cameras.2.fps", 5), "cameras[2].fps", "unknown key (did you mean fps_cap?)"),
    ("duplicate names", lambda d: _set(d, "cameras.3.name", "door"), "cameras[3].name", "'door' is already the name of cameras[0]"),
    ("missing source", lambda d: _drop(d, "cameras.2.source"), "cameras[2].source", "required key is missing"),
    ("conf 1.5", lambda d: _set(d, "model.conf", 1.5), "model.conf", "must be between 0 and 1, got 1.5"),
    ("workers 0", lambda d: _set(d, "run.workers", 0), "run.workers", "must be >= 1, got 0"),
    ("workers two", lambda d: _set(d, "run.workers", "two"), "run.workers", "expected an integer, got 'two'"),
    ("workers 2.0", lambda d: _set(d, "run.workers", 2.0), "run.workers", "expected an integer, got 2"),
    (
        "line of 3 numbers",
        lambda d: _set(d, "cameras.0.lines.in", "0,0.5,1"),
        "cameras[0].lines.in",
        "expected 4 numbers x1,y1,x2,y2, got 3",
    ),
    (
        "zone of 2 points",
        lambda d: _set(d, "cameras.0.zones.hall", [[0, 0], [1, 1]]),
        "cameras[0].zones.hall",
        "a zone needs at least 3 points, got 2",
    ),
    (
        "rotate max_mb -1",
        lambda d: _set(d, "cameras.0.outputs.rotate.max_mb", -1),
        "cameras[0].outputs.rotate.max_mb",
        "must be a number > 0, got -1",
    ),
    ("vid_stride 0", lambda d: _set(d, "cameras.1.vid_stride", 0), "cameras[1].vid_stride", "must be >= 1, got 0"),
    ("model missing", lambda d: _set(d, "model.path", "nothing.onnx"), "model.path", "no such file: {site}/nothing.onnx"),
    (
        "serve address",
        lambda d: _set(d, "serve.address", "localhost:http"),
        "serve.address",
        "expected [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080): the port must be a number from 0 to 65535, got 'http'",
    ),
    ("retries -1", lambda d: _set(d, "run.retries", -1), "run.retries", "must be >= 0, got -1"),
    ("live yes", lambda d: _set(d, "cameras.1.live", "yes"), "cameras[1].live", "expected true or false, got 'yes'"),
    ("runtime gpu", lambda d: _set(d, "model.runtime", "gpu"), "model.runtime", "expected 'auto', 'hbm' or 'pyeasy', got 'gpu'"),
    (
        "lines without track",
        lambda d: _set(d, "cameras.2.lines", {"a": "0,0,1,1"}),
        "cameras[2].lines",
        "needs track: true (counting works on tracks)",
    ),
    (
        "token in the file",
        lambda d: _set(d, "serve.token", "s3cret"),
        "serve.token",
        "the token is never kept in the file: name the environment variable that holds it with token_env",
    ),
    (
        "source not a video",
        lambda d: _set(d, "cameras.1.source", "frames/"),
        "cameras[1].source",
        "expected a video file, camera index, URL or mipi:N, got 'frames/' (not a video file name)",
    ),
    ("video missing", lambda d: _set(d, "cameras.1.source", "gone.mp4"), "cameras[1].source", "no such video file: {site}/gone.mp4"),
    (
        "one output twice",
        lambda d: _set(d, "cameras.1.outputs.save_jsonl", "out/door.mp4"),
        "cameras[1].outputs.save_jsonl",
        "cameras[0].outputs.save_video writes the same file",
    ),
    (
        "a name with a slash",
        lambda d: _set(d, "cameras.0.name", "a/b"),
        "cameras[0].name",
        "expected a name (printable, no '/'), got 'a/b'",
    ),
    ("no cameras", lambda d: _set(d, "cameras", []), "cameras", "needs at least 1 item(s), got none"),
    (
        "track a word",
        lambda d: _set(d, "cameras.1.track", "on"),
        "cameras[1].track",
        "expected true, false or a mapping of tracker settings, got 'on'",
    ),
    ("a camera not a mapping", lambda d: _set(d, "cameras.1", "back.avi"), "cameras[1]", "expected a mapping of keys, got 'back.avi'"),
    (
        "mqtt without a host",
        lambda d: _set(d, "mqtt", {"address": ":1883"}),
        "mqtt.address",
        "expected HOST[:PORT] (e.g. broker.local or 127.0.0.1:1883): the host is missing before ':', got ':1883'",
    ),
    (
        "mqtt password without a user",
        lambda d: _set(d, "mqtt", {"address": "broker.local", "password_env": "HOME"}),
        "mqtt",
        "a password needs a username",
    ),
    (
        "mqtt unknown key",
        lambda d: _set(d, "mqtt", {"address": "b", "password": "x"}),
        "mqtt.password",
        "unknown key (did you mean password_env?)",
    ),
    ("ros with nothing on", lambda d: _set(d, "ros", {"image": True}), "ros", "give publish: true, a bag folder, or both"),
    (
        "ros bad namespace",
        lambda d: _set(d, "ros", {"publish": True, "namespace": "/2nd floor"}),
        "ros.namespace",
        "'2nd floor' is not a ROS 2 name (a letter, then letters, digits and single underscores)",
    ),
    (
        "ros bag that exists",
        lambda d: _set(d, "ros", {"bag": "."}),
        "ros.bag",
        "{site} already exists: a bag is never written over (give a new folder name)",
    ),
]
THROUGH_CLI = {"unknown top key", "conf 1.5", "line of 3 numbers", "duplicate names", "model missing", "mqtt password without a user"}


@pytest.mark.parametrize(("broken", "where", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_each_mistake_is_one_line_naming_its_key(site, default_model, request, broken, where, expected):
    path = write(site, broken(good(default_model)), name="bad.yaml")
    expected = expected.format(site=site)
    if request.node.callspec.id in THROUGH_CLI:
        proc = run_cli("run", path, "--check", timeout=120)
        assert proc.returncode == 1 and proc.stdout == ""
        assert error_reason(proc, path) == f"{where}: {expected}"
        return
    with pytest.raises(DeploymentError) as caught:
        load_deployment(path)
    assert [tuple(p) for p in caught.value.problems] == [(where, expected)]
    assert str(caught.value) == f"{path}: {where}: {expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  path: m.onnx\n cameras: []\n", "line 3, column 2: "),
        ("model: {path: m.onnx}\nmodel: {path: n.onnx}\n", "line 2, column 1: the key 'model' is given twice"),
        ("- model\n", "expected a mapping of keys (model, run, cameras, serve), got a list"),
        ("", "the file is empty: expected a mapping with model and cameras"),
    ],
    ids=["syntax", "key twice", "a list", "empty"],
)
def test_a_file_that_is_not_a_deployment_is_one_line(site, text, expected):
    path = write(site, text, name="broken.yaml")
    proc = run_cli("run", path, "--check", timeout=120)
    assert proc.returncode == 1
    assert error_reason(proc, path).startswith(expected)


def test_every_mistake_is_listed_one_line_each(site, default_model):
    data = _set(_set(_set(good(default_model), "model.conf", 2), "cameras.1.vid_stride", -3), "cameras.3.colour", "red")
    path = write(site, data, name="three.yaml")
    proc = run_cli("run", path, "--check", timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"edgeseg: error: {path}: model.conf: must be between 0 and 1, got 2",
        f"edgeseg: error: {path}: cameras[1].vid_stride: must be >= 1, got -3",
        f"edgeseg: error: {path}: cameras[3].colour: unknown key "
        "(known keys: name, source, live, vid_stride, fps_cap, track, lines, zones, outputs)",
    ]


def test_cameras_as_a_mapping_are_named_by_their_keys(site, default_model):
    data = good(default_model)
    data["cameras"] = {"one": {"source": "front.mp4"}, "two": {"source": "back.avi", "vid_stride": 0}}
    with pytest.raises(DeploymentError) as caught:
        load_deployment(write(site, data, name="mapping.yaml"))
    assert [tuple(p) for p in caught.value.problems] == [("cameras.two.vid_stride", "must be >= 1, got 0")]
    data["cameras"]["two"]["vid_stride"] = 3
    assert [c.name for c in load_deployment(write(site, data, name="mapping.yaml")).cameras] == ["one", "two"]


def test_off_loopback_the_token_must_be_in_its_environment_variable(site, default_model, monkeypatch):
    path = write(site, _set(good(default_model), "serve", {"address": "0.0.0.0:8099", "token_env": "DEPLOY_TEST_TOKEN"}), name="lan.yaml")
    monkeypatch.delenv("DEPLOY_TEST_TOKEN", raising=False)
    with pytest.raises(DeploymentError) as caught:
        load_deployment(path)
    assert [tuple(p) for p in caught.value.problems] == [
        ("serve.token_env", "$DEPLOY_TEST_TOKEN is not set: listening on 0.0.0.0 (off loopback) needs a token")
    ]
    monkeypatch.setenv("DEPLOY_TEST_TOKEN", "s3cret")
    from edgeseg.deploy import serve_config

    config = serve_config(load_deployment(path))
    assert (config.host, config.port, config.token) == ("0.0.0.0", 8099, "s3cret")


# --- a flag and its key are one setting ------------------------------------------------------------------


def _fields_with_flags() -> dict[str, tuple[str, str]]:
    """key path -> (flag, description) of every field of the models that carries a flag."""
    found = {}

    def walk(model, prefix: str) -> None:
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra or {}
            if "flag" in extra:
                found[prefix + name] = (extra["flag"], field.description)
            for inner in _models_in(field.annotation):
                walk(inner, prefix + name + ".")

    walk(Deployment, "")
    return found


def _models_in(annotation) -> list:
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return [annotation]
    if typing.get_origin(annotation) in (list, dict, typing.Union, types.UnionType, typing.Annotated):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    return []


def _run_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["run"], sub.choices["predict"]


def test_every_setting_is_one_field_and_one_flag_with_one_help():
    fields = _fields_with_flags()
    assert fields == {s.key: (s.flag, s.help) for s in SETTINGS}
    run, _ = _run_parser()
    flags = {option: action for action in run._actions for option in action.option_strings}
    for s in SETTINGS:
        assert s.flag in flags, s.flag
        assert flags[s.flag].help == f"{s.help} [{s.key}]"


# key -> (the file's value, the flag's words); each differs from the good file
SAMPLES = {
    "model.path": (None, None),  # filled in by the test: another model file
    "model.conf": (0.45, ["--conf", "0.45"]),
    "model.iou": (0.5, ["--iou", "0.5"]),
    "model.max_det": (10, ["--max-det", "10"]),
    "model.classes": ([1, 3], ["--classes", "1", "3"]),
    "model.agnostic": (True, ["--agnostic"]),
    "model.threads": (2, ["--threads", "2"]),
    "model.runtime": ("pyeasy", ["--runtime", "pyeasy"]),
    "model.bpu_core": (1, ["--bpu-core", "1"]),
    "model.priority": (9, ["--priority", "9"]),
    "run.workers": (1, ["--workers", "1"]),
    "run.retries": (None, ["--retries", "null"]),
    "run.live": (False, ["--no-live"]),
    "run.hw_decode": (True, ["--hw-decode"]),
    "serve.address": ("127.0.0.1:9000", ["--serve", "127.0.0.1:9000"]),
    "mqtt.address": ("broker.local:1884", ["--mqtt", "broker.local:1884"]),
    "ros.publish": (True, ["--ros"]),
    "ros.bag": (None, None),  # filled in by the test: a new folder (a flag's path is from here, a key's from the file)
}


@pytest.mark.parametrize("key", [s.key for s in SETTINGS])
def test_a_flag_and_its_key_give_the_same_deployment(site, default_model, tmp_path, key):
    assert set(SAMPLES) == {s.key for s in SETTINGS}, "give every setting a sample"
    value, words = SAMPLES[key]
    if key == "model.path":
        other = tmp_path / "other.onnx"
        other.write_bytes(default_model.read_bytes())
        value, words = str(other), ["--model", str(other)]
    if key == "ros.bag":
        value, words = str(tmp_path / "run.bag"), ["--save-bag", str(tmp_path / "run.bag")]
    base = good(default_model)
    run, _ = _run_parser()
    by_flag = load_deployment(write(site, base, name="flag.yaml"), overrides=overrides_of(run.parse_args(["flag.yaml", *words])))
    by_key = load_deployment(write(site, _set(base, key, value), name="key.yaml"))
    plain = load_deployment(write(site, base, name="plain.yaml"))
    assert by_flag.model_dump() == by_key.model_dump()
    assert by_flag.model_dump() != plain.model_dump()


def test_a_flag_means_what_predicts_flag_of_that_name_means(site, default_model):
    """The decode and board flags predict already had are the same settings here."""
    from edgeseg.cli.options import board_options as predict_board
    from edgeseg.cli.options import decode_options as predict_decode
    from edgeseg.deploy import board_options, decode_options

    words = [
        "--conf",
        "0.4",
        "--iou",
        "0.6",
        "--max-det",
        "7",
        "--classes",
        "0",
        "5",
        "--agnostic",
        "--runtime",
        "hbm",
        "--bpu-core",
        "2",
        "--priority",
        "3",
    ]
    run, predict = _run_parser()
    deployment = load_deployment(write(site, good(default_model)), overrides=overrides_of(run.parse_args(["deploy.yaml", *words])))
    predicted = predict.parse_args([str(default_model), "x.jpg", *words])
    assert decode_options(deployment, track_conf=0.1) == predict_decode(predicted)
    assert board_options(deployment) == predict_board(predicted)


def test_a_bad_flag_value_names_its_flag(site, default_model):
    path = write(site, good(default_model))
    proc = run_cli("run", path, "--check", "--workers", "two", "--iou", "2", timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"edgeseg: error: {path}: model.iou (from --iou): must be between 0 and 1, got 2",
        f"edgeseg: error: {path}: run.workers (from --workers): expected an integer, got 'two'",
    ]


# --- the file as the engine's camera plans ----------------------------------------------------------------


def test_a_deployment_becomes_one_plan_per_camera(site, default_model):
    fields = plan_fields(load_deployment(write(site, good(default_model))))
    assert [f["name"] for f in fields] == ["door", "back", "desk", "gate"]
    assert [f["source"] for f in fields] == [str(site / "front.mp4"), str(site / "back.avi"), "0", "rtsp://10.0.0.7:554/main"]
    assert [f["live"] for f in fields] == [None, None, False, None]
    assert [f["vid_stride"] for f in fields] == [1, 2, 1, 1]
    assert [f["fps_cap"] for f in fields] == [None, None, 5, None]
    assert fields[0]["save_video"] == site / "out" / "door.mp4" and fields[0]["save_counts"] == site / "out" / "door.json"
    assert fields[1]["save_jsonl"] == site / "out" / "back.jsonl" and fields[1]["save_video"] is None
    assert fields[0]["rotation"] == {"max_bytes": 100_000_000, "max_seconds": 1800}
    assert [f["rotation"] for f in fields[1:]] == [None, None, None]
    door, gate = fields[0]["tracking"], fields[3]["tracking"]
    assert [(g.name, g.points) for g in door.lines] == [("in", ((0.0, 0.5), (1.0, 0.5)))]
    assert [(g.name, g.points) for g in door.zones] == [("hall", ((0.1, 0.1), (0.9, 0.1), (0.9, 0.9)))]
    assert door.tracker.iou == "box" and gate.tracker.iou == "mask"
    assert [(g.name, g.points) for g in gate.lines] == [("gate", ((10.0, 200.0), (300.0, 200.0)))]
    assert fields[1]["tracking"] is None and fields[2]["tracking"] is None


def test_the_run_live_default_fills_cameras_without_their_own(site, default_model):
    data = _set(good(default_model), "run.live", True)
    assert [f["live"] for f in plan_fields(load_deployment(write(site, data, name="live.yaml")))] == [True, True, False, True]


def test_retries_are_the_tries_after_the_first_and_null_is_forever(site, default_model):
    assert attempts(load_deployment(write(site, good(default_model))).run) == 4
    assert attempts(load_deployment(write(site, _drop(good(default_model), "run.retries"), name="forever.yaml")).run) is None
    assert attempts(load_deployment(write(site, _set(good(default_model), "run.retries", 0), name="once.yaml")).run) == 1


def test_camera_plans_are_the_engines(site, default_model):
    from edgeseg.deploy import camera_plans

    deployment = load_deployment(write(site, good(default_model)))
    plans = camera_plans(deployment)
    assert [p.name for p in plans] == ["door", "back", "desk", "gate"]
    assert plans[0].rotation.max_bytes == 100_000_000 and plans[0].rotation.max_seconds == 1800
    assert plans[1].rotation is None and plans[1].vid_stride == 2 and plans[2].fps_cap == 5


def test_stream_options_carry_the_run(site, default_model):
    from edgeseg.deploy import stream_options

    stream = stream_options(load_deployment(write(site, _set(good(default_model), "run.live", True), name="stream.yaml")))
    assert (stream.workers, stream.live, stream.hw_decode, stream.retry.attempts) == (2, True, None, 4)
    forever = stream_options(load_deployment(write(site, _drop(good(default_model), "run.retries"), name="forever.yaml")))
    assert forever.retry.attempts is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_writes_every_cameras_outputs(site, default_model, tmp_path):
    data = {
        "model": {"path": str(default_model)},
        "run": {"workers": 2, "retries": 0},
        "cameras": {
            "front": {"source": str(site / "front.mp4"), "outputs": {"save_jsonl": "front.jsonl"}},
            "back": {"source": str(site / "back.avi"), "outputs": {"save_jsonl": "back.jsonl"}},
        },
    }
    proc = run_cli("run", write(tmp_path, data), timeout=280)
    assert proc.returncode == 0, proc.stderr
    for name, frames in (("front", 3), ("back", 2)):
        records = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert [(r["camera"], r["frame"]) for r in records] == [(name, k) for k in range(frames)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_publishes_every_camera_to_mqtt_and_into_a_bag(site, default_model, tmp_path):
    """The file's mqtt and ros sections reach the run: a real mosquitto gets each camera's retained state and the
    run's status, the bag holds one message per frame on each camera's own namespace."""
    pytest.importorskip("paho.mqtt", reason='needs the mqtt extra: pip install "edgeseg[mqtt]"')
    pytest.importorskip("rosbags", reason='needs the ros extra: pip install "edgeseg[ros]"')
    from rosbags.rosbag2 import Reader

    from mqtt_broker import Mosquitto, Subscriber, wait_for

    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        listener = Subscriber(broker, ("site/#",))
        data = {
            "model": {"path": str(default_model)},
            "run": {"retries": 0},
            "cameras": {"front": {"source": str(site / "front.mp4")}, "back": {"source": str(site / "back.avi")}},
            "mqtt": {"address": f"127.0.0.1:{broker.port}", "prefix": "site", "discovery": False},
            "ros": {"bag": "run.bag"},
        }
        proc = run_cli("run", write(tmp_path, data), timeout=280)
        assert proc.returncode == 0, proc.stderr
        assert wait_for(lambda: listener.on("site/status") and listener.on("site/status")[-1].payload == b"offline", 10)
        for camera in ("front", "back"):
            states = [m.json()["state"] for m in listener.on(f"site/{camera}/state")]
            assert states[-1] == "ended", states
        listener.close()
    finally:
        broker.stop()
    with Reader(tmp_path / "run.bag") as bag:
        per_topic = {c.topic: c.msgcount for c in bag.connections}
    for camera, frames in (("front", 3), ("back", 2)):
        assert per_topic[f"/{camera}/hobot_dnn_detection"] == frames == per_topic[f"/{camera}/detections"]
    assert not [t for t in per_topic if not t.startswith(("/front/", "/back/"))]
    assert "MQTT broker 127.0.0.1:" in proc.stdout and "ROS 2 bag" in proc.stdout  # each output's end-of-run line


# --- the documentation ------------------------------------------------------------------------------------


def test_the_example_file_validates(default_model, monkeypatch):
    monkeypatch.setenv("EDGESEG_SERVE_TOKEN", "example")
    deployment = load_deployment(EXAMPLE, overrides={"model.path": os.fspath(default_model)})
    assert [c.name for c in deployment.cameras] == ["entrance", "car-park", "desk", "board"]
    assert "```yaml\n" + EXAMPLE.read_text(encoding="utf-8") + "```" in DOC.read_text(encoding="utf-8")


def type_name(annotation) -> str:
    """A field's type as the reference names it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping NAME: {type_name(args[1])}"
    if origin is tuple:
        return "[HOST:]PORT" if args == (str, int) else "numbers"
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return "mapping"
    names = {int: "integer", float: "number", bool: "true/false", str: "string", Path: "path", type(None): "null"}
    return names[annotation]


def reference_rows() -> list[str]:
    """docs/deploy.md's reference rows, from the models: key, type, default, meaning."""
    rows = []

    def walk(model, prefix: str) -> None:
        for name, field in model.model_fields.items():
            if field.is_required():
                default = "required"
            elif field.default_factory is not None:
                made = field.default_factory()
                default = "{}" if made == {} else "(its keys' defaults)"
            else:
                default = json.dumps(field.default)
            rows.append(f"| `{prefix}{name}` | {type_name(field.annotation)} | {default} | {field.description} |")
            for inner in _models_in(field.annotation):
                walk(inner, prefix + name + ("[]." if typing.get_origin(field.annotation) is list else "."))

    walk(Deployment, "")
    return rows


def test_the_reference_lists_every_key_with_its_default_and_meaning():
    doc = DOC.read_text(encoding="utf-8")
    missing = [row for row in reference_rows() if row not in doc]
    assert not missing, "docs/deploy.md lacks (or has another text for) these rows:\n" + "\n".join(missing)
