"""``BagOutput`` (``--save-bag``): a tracked clip with a counting line into an MCAP and a sqlite3 bag, next to the
JSON Lines of the same frames, read back with rosbags' Reader and with readers that share no code with it (the
``mcap`` reader with mcap-ros2-support's decoder; sqlite3 itself with the decoder of ros_oracle.py). The masks are
compared with the JSON Lines' RLE decoded by pycocotools."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import ros_oracle
from corpus import error_reason, run_cli
from edgeseg import Segmenter
from edgeseg.decode import DecodeOptions
from edgeseg.engines.command import PredictOutputs, StreamOptions, predict_sources
from edgeseg.errors import EdgesegError
from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE
from edgeseg.tracking import TrackingOptions, parse_line

pytest.importorskip("rosbags")
from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402

from edgeseg.outputs.ros.bag import BagOutput  # noqa: E402
from edgeseg.outputs.ros.messages import RosTopics  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SHIFTS = [*range(-96, 97, 32), *range(64, -97, -32)]  # right, then back left: 13 frames (as test_tracking_cli)
LINE = "gate=0.4,0,0.4,1"
TRACK_CONF = 0.1  # what --track decodes down to
PER_FRAME = ("hobot_dnn_detection", "hobot_dnn_detection_info", "detections", "label_info", "annotations", "instance_mask", "counts")


def write_slide(path: Path) -> Path:
    image = cv2.imread(str(SAMPLE_IMAGE))
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for dx in SHIFTS:
        writer.write(cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[dict]]:
    """(folder with bag_mcap/, bag_sqlite3/, frames.jsonl; the JSON Lines): one predict run of a tracked clip with a
    counting line, the two bags as its run-wide outputs, the JSON Lines as its own file."""
    out = tmp_path_factory.mktemp("bags")
    clip = write_slide(out / "slide.mp4")
    topics = RosTopics(instance_mask=True)
    bags = [BagOutput(out / "bag_mcap", topics=topics), BagOutput(out / "bag_sqlite3", topics=topics, storage="sqlite3")]
    summary = predict_sources(
        Segmenter(DEFAULT_MODEL, options=DecodeOptions(conf=TRACK_CONF)),
        [clip],
        outputs=PredictOutputs(save_jsonl=out / "frames.jsonl"),
        stream=StreamOptions(tracking=TrackingOptions(lines=(parse_line(LINE),))),
        show_progress=False,
        run_outputs=bags,
    )
    assert not summary.failed and not summary.incomplete
    assert sorted(p.name for p in out.iterdir()) == ["bag_mcap", "bag_sqlite3", "frames.jsonl", "slide.mp4"]  # no partial left
    assert any(line.startswith(f"ROS 2 bag {out / 'bag_mcap'}: ") for line in summary.reports)
    lines = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    return out, lines


def rosbags_messages(path: Path) -> list[tuple[str, str, int, bytes]]:
    with Reader(path) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


@pytest.mark.slow  # the predict run of the clip: ~5 s
def test_both_readers_see_every_message_once(recorded):
    out, lines = recorded
    assert len(lines) == len(SHIFTS)
    from_mcap = rosbags_messages(out / "bag_mcap")
    written = sorted((topic, data) for topic, _, _, data in from_mcap)
    with open(out / "bag_mcap" / "bag_mcap.mcap", "rb") as f:
        independent = [(c.topic, s.name, m.log_time, m.data) for s, c, m in make_reader(f).iter_messages()]
    db = sqlite3.connect(out / "bag_sqlite3" / "bag_sqlite3.db3")
    rows = db.execute("SELECT t.name, t.type, m.timestamp, m.data FROM messages m JOIN topics t ON m.topic_id = t.id").fetchall()
    definitions = dict(db.execute("SELECT topic_type, encoded_message_definition FROM message_definitions").fetchall())
    assert {t for _, t, _, _ in rows} <= set(definitions)  # every type's definition travels in the bag
    assert "MSG: ai_msgs/Target" in definitions["ai_msgs/msg/PerceptionTargets"]
    from_sqlite = rosbags_messages(out / "bag_sqlite3")
    for found in (from_mcap, independent, rows, from_sqlite):
        assert sorted((topic, bytes(data)) for topic, _, _, data in found) == written
    for topic in PER_FRAME:
        assert sum(t == "/" + topic for t, _, _, _ in independent) == len(lines), topic
    events = [e for r in lines for e in r["events"]]
    assert len(events) >= 1 and sum(t == "/events" for t, _, _, _ in independent) == len(events)
    assert not any(t == "/image/compressed" for t, _, _, _ in independent)  # off unless asked for


@pytest.mark.slow  # the predict run of the clip: ~5 s
def test_metadata_is_version_8_with_qos_as_a_string(recorded):
    out, _ = recorded
    for name in ("bag_mcap", "bag_sqlite3"):
        info = yaml.safe_load((out / name / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["version"] == 8 and info["storage_identifier"] == name.split("_")[1]
        by_topic = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
        qos_text = by_topic["/hobot_dnn_detection"]["topic_metadata"]["offered_qos_profiles"]
        assert isinstance(qos_text, str)  # Humble parses a string; version 9's list it cannot
        (qos,) = yaml.safe_load(qos_text)
        assert (qos["reliability"], qos["durability"], qos["history"], qos["depth"]) == (1, 2, 1, 10)  # reliable, volatile
        (latched,) = yaml.safe_load(by_topic["/label_info"]["topic_metadata"]["offered_qos_profiles"])
        assert (latched["durability"], latched["depth"]) == (1, 1)  # transient local, depth 1
        assert by_topic["/hobot_dnn_detection"]["topic_metadata"]["type"] == "ai_msgs/msg/PerceptionTargets"


@pytest.mark.slow  # the predict run of the clip: ~5 s
def test_fields_equal_the_json_lines(recorded):
    """Decoded by the mcap reader with the definitions the bag embeds: stamps, track ids, outlines, masks."""
    out, lines = recorded
    by_topic: dict[str, list] = {}
    with open(out / "bag_mcap" / "bag_mcap.mcap", "rb") as f:
        for _, channel, message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            by_topic.setdefault(channel.topic, []).append((message.log_time, decoded))
    times_ns = [round(r["time_s"] * 1e9) for r in lines]
    assert len(set(times_ns)) == len(lines) > 10
    for topic in PER_FRAME:
        assert [t for t, _ in by_topic["/" + topic]] == times_ns, topic
    headers = ["/hobot_dnn_detection", "/hobot_dnn_detection_info", "/detections", "/label_info", "/instance_mask"]
    for topic in headers:
        assert [ros_oracle.stamp_ns(m.header) for _, m in by_topic[topic]] == times_ns, topic
        assert {m.header.frame_id for _, m in by_topic[topic]} == {"slide"}  # the camera's name
    checked = 0
    for record, (_, targets), (_, detections) in zip(lines, by_topic["/hobot_dnn_detection"], by_topic["/detections"]):
        expected_ids = [d["track_id"] for d in record["detections"]]
        assert [t.track_id for t in targets.targets] == expected_ids
        assert [d.id for d in detections.detections] == [str(i) for i in expected_ids]
        assert [t.type for t in targets.targets] == [d["class_name"] for d in record["detections"]]
        for target, d in zip(targets.targets, record["detections"]):
            x1, y1, x2, y2 = d["bbox_xyxy"]
            for part in target.points:
                xy = np.array([(p.x, p.y) for p in part.point])
                assert ((xy >= [x1 - 0.01, y1 - 0.01]) & (xy <= [x2 + 0.01, y2 + 0.01])).all()  # inside its box
            full = coco_mask.decode(d["segmentation"]).astype(bool)
            where, img = target.rois[1].rect, target.captures[0].img
            local = np.frombuffer(img.data, np.uint8).reshape(img.height, img.width)
            crop = full[where.y_offset : where.y_offset + where.height, where.x_offset : where.x_offset + where.width]
            np.testing.assert_array_equal(local, crop * np.uint8(255))
            assert full.sum() == crop.sum()  # nothing of the mask outside the box-local image
            checked += 1
    assert checked >= 3 * len(lines)
    events = [e for r in lines for e in r["events"]]
    published = [json.loads(m.data) for _, m in by_topic["/events"]]
    assert [(e["track_id"], e["direction"], e["name"], e["class_name"]) for e in published] == [
        (e["track_id"], e["direction"], e["name"], e["class_name"]) for e in events
    ]
    frame_time = {r["frame"]: r["time_s"] for r in lines}
    assert [e["time_s"] for e in published] == [frame_time[e["frame"]] for e in events]
    counts = [json.loads(m.data)["counts"] for _, m in by_topic["/counts"]]
    assert counts == [r["counts"] for r in lines]


def test_an_existing_folder_is_refused(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(EdgesegError) as exc:
        BagOutput(tmp_path / "taken")
    assert exc.value.problem == "already exists: a bag is never written over (give a new folder name)"
    with pytest.raises(EdgesegError) as storage:
        BagOutput(tmp_path / "new", storage="rosbag1")
    assert storage.value.problem == "storage must be one of mcap, sqlite3, got 'rosbag1'"


def test_an_existing_folder_is_one_line_before_any_work(tmp_path):
    (tmp_path / "taken").mkdir()
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, "--save-bag", tmp_path / "taken", timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert error_reason(proc, tmp_path / "taken") == "already exists: a bag is never written over (give a new folder name)"


@pytest.mark.slow
def test_save_bag_on_the_command_line(tmp_path):
    """--save-bag with sqlite3, the frames as JPEG and a namespace: the bag plays the frames with the results."""
    clip = write_slide(tmp_path / "slide.mp4")
    bag = tmp_path / "run_bag"
    proc = run_cli(
        "predict", DEFAULT_MODEL, clip, "--track", "--save-bag", bag, "--bag-storage", "sqlite3", "--ros-image", "--ros-namespace", "robot1"
    )
    assert proc.returncode == 0, proc.stderr
    found = rosbags_messages(bag)
    topics = {topic for topic, _, _, _ in found}
    assert {"/robot1/hobot_dnn_detection", "/robot1/image/compressed", "/robot1/counts"} <= topics
    images = [data for topic, _, _, data in found if topic == "/robot1/image/compressed"]
    targets = [t for topic, _, t, _ in found if topic == "/robot1/hobot_dnn_detection"]
    assert len(images) == len(targets) == len(SHIFTS)
    jpeg = ros_oracle.decode("sensor_msgs/msg/CompressedImage", images[3])
    assert cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    assert f"ROS 2 bag {bag}: " in proc.stdout + proc.stderr


def test_without_the_ros_extra_it_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rosbags", None)  # what `import rosbags` meets where the extra is not installed
    with pytest.raises(EdgesegError) as exc:
        BagOutput(tmp_path / "bag")
    assert str(exc.value) == "ROS 2 messages need rosbags: pip install edgeseg[ros]"
