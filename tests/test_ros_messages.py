"""The ROS 2 messages of a frame (outputs/ros/messages.py) against an independent serializer.

Golden bytes: every topic's CDR equals what mcap-ros2-support's encoder writes for the same fields (decoded by its
own decoder from definitions put together in ros_oracle.py), and the bytes committed in tests/data/ros/ (written
from the vendored .msg text of src/edgeseg/outputs/ros/msg/, see tests/data/ros/README.md): a field moved in a
vendored definition or in a builder changes them. The fields are checked against the detections they came from.
Regenerate the fixtures after a deliberate change with ``PYTHONPATH=src python tests/test_ros_messages.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import ros_oracle
from edgeseg.engines.frames import StreamFrame
from edgeseg.errors import EdgesegError
from edgeseg.outputs.base import CameraInfo, RunInfo
from edgeseg.results import Detections
from edgeseg.tracking import TrackedFrame

pytest.importorskip("rosbags")
from edgeseg.outputs.ros.messages import FrameEncoder, RosTopics, ros_name  # noqa: E402
from edgeseg.outputs.ros.packed import PackedSerializer, unpacked  # noqa: E402
from edgeseg.outputs.ros.types import typestore  # noqa: E402

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).parent / "data" / "ros"
H, W = 96, 128
NAMES = {0: "person", 2: "car", 5: "bus"}
CLASS_NAMES = ("person", "bicycle", "car", "motorcycle", "airplane", "bus")
BOXES = [(9.6, 11.3, 30.2, 26.0), (48.5, 28.0, 80.0, 54.7), (84.2, 60.0, 120.9, 81.5)]
TIME_S = 0.5 + 1 / 3  # the stamp is round(time_s, 4) s: 0.8333 s
STAMP_NS = 833_300_000
CONFIG = RosTopics(instance_mask=True, image=True, threshold=0.25)


def _masks() -> tuple[list[np.ndarray], np.ndarray]:
    """Box-local masks by the pipeline's rule (pixels ceil(x1) <= p < ceil(x2)): a rectangle, an ellipse, two
    separate blobs (an object in two parts)."""
    masks, origins = [], []
    for k, (x1, y1, x2, y2) in enumerate(BOXES):
        x0, y0 = math.ceil(x1), math.ceil(y1)
        m = np.zeros((math.ceil(y2) - y0, math.ceil(x2) - x0), np.uint8)
        if k == 0:
            m[2:-2, 3:-1] = 1
        elif k == 1:
            cv2.ellipse(m, (m.shape[1] // 2, m.shape[0] // 2), (m.shape[1] // 2 - 1, m.shape[0] // 2 - 2), 20, 0, 360, 1, -1)
        else:
            m[1:10, 1:12] = 1
            m[12:20, 20:35] = 1
        masks.append(m.astype(bool))
        origins.append((x0, y0))
    return masks, np.int64(origins)


def make_frame(*, tracked: bool = True, camera: str = "dock cam") -> StreamFrame:
    masks, origins = _masks()
    det = Detections(
        xyxy=np.float32(BOXES),
        scores=np.float32([0.91, 0.62, 0.47]),
        class_ids=np.int64([0, 2, 5]),
        image_shape=(H, W),
        names=NAMES,
        masks=masks,
        mask_origins=origins,
        track_ids=np.int64([7, 12, 30]) if tracked else None,
    )
    tracking = None
    if tracked:
        event = {"type": "line", "name": "gate", "track_id": 12, "class_name": "car", "direction": "out", "frame": 5}
        counts = {"lines": {"gate": {"in": 0, "out": 1, "by_class": {"car": {"in": 0, "out": 1}}}}, "zones": {}}
        line = ("gate", np.float64([[64, 0], [64, 96]]), counts["lines"]["gate"])
        zone = ("dock", np.float64([[0, 0], [40, 0], [40, 40], [0, 40]]), {"entered": 1, "exited": 0, "occupancy": 1})
        tracking = TrackedFrame(det, [event], counts, {}, [line], [zone])
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.dstack([xx * 2, yy * 2, (xx + yy)]).astype(np.uint8)
    return StreamFrame(index=5, source="dock.mp4", image=image, detections=det, time_s=TIME_S, tracking=tracking, camera=camera)


def run_of(*cameras: str) -> RunInfo:
    return RunInfo(cameras=tuple(CameraInfo(name=c, source=f"{c}.mp4") for c in cameras), class_names=CLASS_NAMES)


@pytest.fixture(scope="module")
def messages() -> dict[str, list]:
    encoded = FrameEncoder(run_of("dock cam"), CONFIG).encode(make_frame())
    by_topic: dict[str, list] = {}
    for m in encoded:
        by_topic.setdefault(m.topic, []).append(m)
    return by_topic


def fixture_name(topic: str) -> str:
    return topic.strip("/").replace("/", "__") + ".cdr"


def test_every_topic_is_what_an_independent_encoder_writes(messages):
    assert sorted(messages) == sorted(
        "/" + t
        for t in (
            "hobot_dnn_detection",
            "hobot_dnn_detection_info",
            "detections",
            "label_info",
            "annotations",
            "instance_mask",
            "image/compressed",
            "events",
            "counts",
        )
    )
    for topic, found in messages.items():
        for m in found:
            decoded = ros_oracle.decode(m.msgtype, m.data)
            assert ros_oracle.encode(m.msgtype, decoded) == m.data, topic
            assert m.stamp_ns == STAMP_NS


def test_bytes_equal_the_committed_fixtures(messages):
    """The JPEG's bytes depend on the OpenCV build: its message is checked by the encoder above only."""
    for topic, found in messages.items():
        if topic == "/image/compressed":
            continue
        expected = (FIXTURES / fixture_name(topic)).read_bytes()
        assert found[0].data == expected, f"{topic}: its CDR differs from {fixture_name(topic)}"


def test_targets_say_what_the_detections_say(messages):
    masks, origins = _masks()
    msg = ros_oracle.decode("ai_msgs/msg/PerceptionTargets", messages["/hobot_dnn_detection"][0].data)
    assert (ros_oracle.stamp_ns(msg.header), msg.header.frame_id) == (STAMP_NS, "dock cam")
    assert [t.type for t in msg.targets] == ["person", "car", "bus"]
    assert [t.track_id for t in msg.targets] == [7, 12, 30]
    for t, (x1, y1, x2, y2), score, mask, (ox, oy) in zip(msg.targets, BOXES, [0.91, 0.62, 0.47], masks, origins):
        box, where = t.rois[0], t.rois[1]
        assert box.type == t.type and box.confidence == pytest.approx(score, abs=1e-6)
        assert box.rect.x_offset <= x1 < box.rect.x_offset + 1 and box.rect.y_offset <= y1 < box.rect.y_offset + 1
        assert x2 <= box.rect.x_offset + box.rect.width < x2 + 1 and y2 <= box.rect.y_offset + box.rect.height < y2 + 1
        assert (where.type, where.rect.x_offset, where.rect.y_offset) == ("mask", ox, oy)
        assert (where.rect.height, where.rect.width) == mask.shape
        img = t.captures[0].img
        assert (img.encoding, img.height, img.width, img.step) == ("mono8", *mask.shape, mask.shape[1])
        assert ros_oracle.stamp_ns(img.header) == STAMP_NS
        np.testing.assert_array_equal(np.frombuffer(img.data, np.uint8).reshape(mask.shape), mask * 255)
        assert all(p.type == "mask" for p in t.points) and len(t.points) == (2 if t.type == "bus" else 1)
        for part in t.points:
            xy = np.array([(q.x, q.y) for q in part.point])
            assert len(xy) >= 3 and (xy == np.round(xy)).all()
            assert mask[xy[:, 1].astype(int) - oy, xy[:, 0].astype(int) - ox].all()  # every vertex is a mask pixel
    rect = np.array([(q.x, q.y) for q in msg.targets[0].points[0].point])
    ox, oy = origins[0]
    assert sorted(map(tuple, rect - [ox, oy])) == [(3, 2), (3, 11), (19, 2), (19, 11)]  # a rectangle: its 4 corners


def test_detections_labels_and_info(messages):
    det = ros_oracle.decode("vision_msgs/msg/Detection2DArray", messages["/detections"][0].data)
    assert [d.id for d in det.detections] == ["7", "12", "30"]
    assert [d.results[0].hypothesis.class_id for d in det.detections] == ["0", "2", "5"]
    for d, (x1, y1, x2, y2) in zip(det.detections, BOXES):
        assert ros_oracle.stamp_ns(d.header) == STAMP_NS and d.header.frame_id == "dock cam"
        center = d.bbox.center.position
        assert (center.x, center.y) == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2), abs=1e-4)
        assert (d.bbox.size_x, d.bbox.size_y) == pytest.approx((x2 - x1, y2 - y1), abs=1e-4)
        assert d.results[0].pose.pose.orientation.w == 1.0
    labels = ros_oracle.decode("vision_msgs/msg/LabelInfo", messages["/label_info"][0].data)
    assert [(c.class_id, c.class_name) for c in labels.class_map] == list(enumerate(CLASS_NAMES))
    assert labels.threshold == pytest.approx(0.25)
    info = ros_oracle.decode("ai_msgs/msg/PerceptionInfo", messages["/hobot_dnn_detection_info"][0].data)
    assert (info.height, info.width, list(info.class_names)) == (H, W, list(CLASS_NAMES))


def test_annotations_instance_mask_and_image(messages):
    ann = ros_oracle.decode("foxglove_msgs/msg/ImageAnnotations", messages["/annotations"][0].data)
    loops = [p for p in ann.points if p.type == 2]
    strips = [p for p in ann.points if p.type == 3]
    assert len(loops) == 1 + 1 + 2 + 1  # an outline per part of each object, and the zone
    assert [(q.x, q.y) for q in strips[0].points] == [(64, 0), (64, 96)]
    assert [t.text for t in ann.texts[:3]] == ["#7 person 0.91", "#12 car 0.62", "#30 bus 0.47"]
    assert {t.text for t in ann.texts[3:]} == {"gate: in 0 out 1", "dock: occupancy 1"}
    masks, origins = _masks()
    img = ros_oracle.decode("sensor_msgs/msg/Image", messages["/instance_mask"][0].data)
    assert (img.encoding, img.height, img.width, img.step, img.is_bigendian) == ("mono16", H, W, 2 * W, 0)
    pixels = np.frombuffer(img.data, "<u2").reshape(H, W)
    expected = np.zeros((H, W), np.uint16)
    for k, (mask, (ox, oy)) in enumerate(zip(masks, origins)):
        expected[oy : oy + mask.shape[0], ox : ox + mask.shape[1]][mask] = k + 1
    np.testing.assert_array_equal(pixels, expected)
    jpeg = ros_oracle.decode("sensor_msgs/msg/CompressedImage", messages["/image/compressed"][0].data)
    assert jpeg.format == "jpeg" and ros_oracle.stamp_ns(jpeg.header) == STAMP_NS
    decoded = cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (H, W, 3) and np.abs(decoded.astype(int) - make_frame().image).mean() < 3


def test_events_and_counts_are_json(messages):
    (event,) = [json.loads(ros_oracle.decode("std_msgs/msg/String", m.data).data) for m in messages["/events"]]
    assert event == {
        "camera": "dock cam",
        "track_id": 12,
        "class_name": "car",
        "type": "line",
        "name": "gate",
        "direction": "out",
        "frame": 5,
        "time_s": 0.8333,
        "stamp": STAMP_NS,
    }
    counts = json.loads(ros_oracle.decode("std_msgs/msg/String", messages["/counts"][0].data).data)
    assert counts["counts"]["lines"]["gate"]["out"] == 1 and counts["stamp"] == STAMP_NS and counts["time_s"] == 0.8333


def test_untracked_objects_have_track_id_0_and_no_id():
    encoded = FrameEncoder(run_of("dock cam")).encode(make_frame(tracked=False))
    topics = {m.topic: m for m in encoded}
    assert "/events" not in topics and "/counts" not in topics and "/instance_mask" not in topics
    targets = ros_oracle.decode("ai_msgs/msg/PerceptionTargets", topics["/hobot_dnn_detection"].data)
    assert [t.track_id for t in targets.targets] == [0, 0, 0]
    det = ros_oracle.decode("vision_msgs/msg/Detection2DArray", topics["/detections"].data)
    assert [d.id for d in det.detections] == ["", "", ""]


def test_no_detections_and_no_masks():
    """An empty frame still publishes every topic (empty arrays); detections decoded without masks have boxes only."""
    empty = make_frame(tracked=False)
    empty.detections = Detections.empty((H, W), NAMES)
    encoder = FrameEncoder(run_of("dock cam"), RosTopics(instance_mask=True))
    topics = {m.topic: m for m in encoder.encode(empty)}
    assert ros_oracle.decode("ai_msgs/msg/PerceptionTargets", topics["/hobot_dnn_detection"].data).targets == []
    mask = ros_oracle.decode("sensor_msgs/msg/Image", topics["/instance_mask"].data)
    assert (mask.height, mask.width) == (H, W) and not any(mask.data)
    boxes = make_frame(tracked=False)
    boxes.detections = boxes.detections.select([0, 1])
    boxes.detections.masks = boxes.detections.mask_origins = None
    topics = {m.topic: m for m in encoder.encode(boxes)}
    targets = ros_oracle.decode("ai_msgs/msg/PerceptionTargets", topics["/hobot_dnn_detection"].data).targets
    assert [(len(t.rois), len(t.points), len(t.captures)) for t in targets] == [(1, 0, 0), (1, 0, 0)]
    assert not any(ros_oracle.decode("sensor_msgs/msg/Image", topics["/instance_mask"].data).data)


def test_the_packed_path_writes_rosbags_own_bytes():
    """The fast path for sequences of small structs against rosbags' element-by-element serializer."""
    encoder = FrameEncoder(run_of("dock cam"), CONFIG)
    frame = make_frame()
    built = encoder._perception_targets(encoder.t["Header"](stamp=encoder.t["Time"](sec=1, nanosec=2), frame_id="x"), [])
    assert built.targets == []
    store = typestore()
    plain = PackedSerializer(store)
    plain.fast = False
    for m in encoder.encode(frame):
        if m.topic in ("/hobot_dnn_detection", "/annotations"):
            assert encoder.packed.fast
            msg = ros_oracle.decode(m.msgtype, m.data)
            assert ros_oracle.encode(m.msgtype, msg) == m.data
    points = encoder.packed.sequence("geometry_msgs/msg/Point32", np.float32([[1, 2], [3, 4.5]]))
    parent = store.types["ai_msgs/msg/Point"](type="mask", point=points, confidence=np.zeros(0, np.float32))
    assert encoder.packed.serialize(parent, "ai_msgs/msg/Point") == bytes(store.serialize_cdr(unpacked(store, parent), "ai_msgs/msg/Point"))
    assert plain.serialize(parent, "ai_msgs/msg/Point") == encoder.packed.serialize(parent, "ai_msgs/msg/Point")


def test_one_encoding_per_frame_and_none_for_a_failed_frame():
    run = run_of("dock cam")
    shared = FrameEncoder.shared(run, CONFIG)
    assert FrameEncoder.shared(run, CONFIG) is shared and FrameEncoder.shared(run_of("dock cam"), CONFIG) is not shared
    shared = FrameEncoder.shared(run, CONFIG)
    other = FrameEncoder.shared(run, RosTopics())
    assert other is not shared and other.stamps is shared.stamps  # another config, the same stamps
    shared = FrameEncoder.shared(run, CONFIG)
    frame = make_frame()
    assert shared.encode(frame) is shared.encode(frame)
    failed = StreamFrame(index=6, source="dock.mp4", image=None, detections=None, error="cannot decode", camera="dock cam")
    assert shared.encode(failed) == []
    FrameEncoder.release(run)
    assert FrameEncoder.shared(run, CONFIG) is not shared


def test_topic_namespaces():
    one = FrameEncoder(run_of("dock cam")).encode(make_frame())
    assert {m.topic for m in one} >= {"/hobot_dnn_detection", "/detections", "/annotations"}
    several = FrameEncoder(run_of("front door", "0")).encode(make_frame(camera="front door"))
    assert {m.topic for m in several} >= {"/front_door/hobot_dnn_detection", "/front_door/detections"}
    assert FrameEncoder(run_of("front door", "0")).namespace("0") == "/camera_0/"
    assert FrameEncoder(run_of("a"), RosTopics(namespace="robot1")).namespace("a") == "/robot1/"
    assert FrameEncoder(run_of("a", "b"), RosTopics(namespace="/robot1/")).namespace("b") == "/robot1/b/"
    assert ros_name("rtsp://cam.local/live--1") == "rtsp_cam_local_live_1"
    assert FrameEncoder(run_of("a"), CONFIG).topics(tracking=False) == [
        "hobot_dnn_detection",
        "hobot_dnn_detection_info",
        "detections",
        "label_info",
        "annotations",
        "instance_mask",
        "image/compressed",
    ]
    assert FrameEncoder(run_of("a")).topics(tracking=True)[-2:] == ["events", "counts"]
    with pytest.raises(EdgesegError) as bad:
        RosTopics(namespace="/robot 1")
    assert bad.value.problem.startswith("'robot 1' is not a ROS 2 name")
    with pytest.raises(EdgesegError) as twice:
        FrameEncoder(run_of("front door", "front-door")).namespace("front door")
    assert twice.value.problem == "two cameras have the ROS 2 name 'front_door': rename one"
    with pytest.raises(EdgesegError) as quality:
        RosTopics(jpeg_quality=0)
    assert quality.value.problem == "must be an integer from 1 to 100, got 0"


def write_fixtures() -> None:
    """Write tests/data/ros/*.cdr from the current code (after a deliberate change of a message's layout)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for m in FrameEncoder(run_of("dock cam"), CONFIG).encode(make_frame()):
        if m.topic != "/image/compressed":
            (FIXTURES / fixture_name(m.topic)).write_bytes(m.data)


if __name__ == "__main__":
    write_fixtures()
