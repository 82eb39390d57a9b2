"""``--ros``: live ROS 2 publishing (outputs/ros/live.py, dds.py, rcl.py).

- DDS loopback: cyclonedds DataReaders of the test's own (types written here from the ``.msg`` text, DDS names
  spelled out) on the loopback interface, no multicast, a domain of their own, receive what edgeseg publishes;
- rclpy through a stand-in that behaves as rclpy's source (tests/rclpy_standin.py): topics, QoS, the bytes;
- the outbox bound: a transport that never returns does not hold up the frames, and the drops are counted;
- no transport: the one line saying what to install.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rclpy_standin
from corpus import error_reason, make_clip, run_cli
from edgeseg.errors import EdgesegError
from edgeseg.outputs.base import CameraInfo, RunInfo
from edgeseg.outputs.ros.live import RosLiveOutput, install_hint, open_transport
from edgeseg.outputs.ros.message import RosMessage, TopicQos
from edgeseg.predict import DEFAULT_MODEL

pytestmark = pytest.mark.timeout(120)

# Cyclone restricted to the loopback interface, unicast discovery only (no multicast leaves this machine).
LOOPBACK = (
    "<CycloneDDS><Domain id='any'><General><Interfaces><NetworkInterface name='lo'/></Interfaces>"
    "<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex>"
    "<Peers><Peer address='127.0.0.1'/></Peers></Discovery></Domain></CycloneDDS>"
)
_domains = itertools.count(61)  # a fresh non-default domain per test: a domain reads its config once
LATCHED = TopicQos(durability="transient_local", depth=1)
DEFAULT = TopicQos()  # reliable, volatile, depth 10: rclcpp::QoS(10)
READER = TopicQos(depth=1000)  # the test's readers keep every sample
FRAMES = 8  # frames of the library-level clip


def rosbags_typestore():
    typesys = pytest.importorskip("rosbags.typesys", reason="needs the [ros] extra (rosbags)")
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)


def string_message(topic: str, text: str, qos: TopicQos = DEFAULT) -> RosMessage:
    ts = rosbags_typestore()
    data = ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String")
    return RosMessage(topic=topic, msgtype="std_msgs/msg/String", data=bytes(data), stamp_ns=0, qos=qos)


RUN = RunInfo(class_names=("person", "car"))


@pytest.fixture(scope="module")
def clip_frames(tmp_path_factory, coco128_images) -> tuple[RunInfo, list]:
    """A clip's frames through the real pipeline (the embedded model) and the RunInfo a run of it opens with."""
    pytest.importorskip("rosbags", reason="the ROS 2 messages need the [ros] extra (rosbags)")
    from edgeseg.predict import DEFAULT_MODEL, Segmenter

    clip = make_clip(tmp_path_factory.mktemp("clip") / "yard.mp4", coco128_images[:FRAMES], size=(640, 480))
    seg = Segmenter(DEFAULT_MODEL)
    frames = list(seg.stream(clip))
    assert len(frames) == FRAMES and all(f.ok for f in frames)
    names = tuple(seg.info.names[k] for k in range(len(seg.info.names)))
    return RunInfo(cameras=(CameraInfo(name=frames[0].camera, source=str(clip)),), class_names=names), frames


def encoded(run: RunInfo, frames: list) -> list[RosMessage]:
    """What a bag of these frames holds: their messages from an encoder of their own, in order."""
    from edgeseg.outputs.ros.messages import FrameEncoder

    encoder = FrameEncoder(run)
    return [m for f in frames for m in encoder.encode(f)]


# --- DDS ----------------------------------------------------------------------------------------------


@pytest.fixture()
def dds_domain(monkeypatch) -> int:
    """A DDS domain of this test's own, on loopback only; ``ROS_DOMAIN_ID`` names it (what the transport reads)."""
    pytest.importorskip("cyclonedds.domain", reason="needs the [ros-dds] extra (cyclonedds, x86 only)")
    domain = next(_domains)
    monkeypatch.setenv("CYCLONEDDS_URI", LOOPBACK)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


def reader(domain: int, topic: str, struct, qos: TopicQos = READER):
    """A DataReader on ``topic`` (the DDS name, written out) in a participant of its own, with ``qos``."""
    from cyclonedds.core import Policy
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.qos import Qos
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.util import duration

    durability = Policy.Durability.TransientLocal if qos.durability == "transient_local" else Policy.Durability.Volatile
    q = Qos(Policy.Reliability.Reliable(duration(seconds=1)), durability, Policy.History.KeepLast(qos.depth))
    participant = DomainParticipant(domain)
    return DataReader(participant, Topic(participant, topic, struct, qos=q), qos=q)


def take(dds_reader, want: int, timeout_s: float = 10.0) -> list:
    """Samples taken until ``want`` came or ``timeout_s`` passed (a reader that gets nothing fails, not hangs)."""
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += dds_reader.take(N=1000)
        time.sleep(0.02)
    return got


def writers_seen(dds_reader) -> list[tuple]:
    """What a reader learnt in discovery of each writer it matched: (DDS topic, DDS type name, reliability,
    durability, history depth, data representations: XCDR1, XCDR2)."""
    from cyclonedds.core import Policy

    seen = []
    for handle in dds_reader.get_matched_publications():
        data = dds_reader.get_matched_publication_data(handle)
        q, rep = data.qos, data.qos[Policy.DataRepresentation]
        reliability = "reliable" if isinstance(q[Policy.Reliability], Policy.Reliability.Reliable) else "best_effort"
        durability = "transient_local" if q[Policy.Durability] == Policy.Durability.TransientLocal else "volatile"
        seen.append(
            (
                data.topic_name,
                data.type_name,
                reliability,
                durability,
                q[Policy.History].depth,
                rep.use_cdrv0_representation,
                rep.use_xcdrv2_representation,
            )
        )
    return seen


def test_ros_names_on_dds() -> None:
    from edgeseg.outputs.ros.dds import dds_topic, dds_type_name

    assert dds_topic("/hobot_dnn_detection") == "rt/hobot_dnn_detection"
    assert dds_topic("/door/detections") == "rt/door/detections"
    assert dds_type_name("ai_msgs/msg/PerceptionTargets") == "ai_msgs::msg::dds_::PerceptionTargets_"
    assert dds_type_name("std_msgs/msg/String") == "std_msgs::msg::dds_::String_"


@pytest.mark.parametrize(("value", "domain"), [(None, 0), ("", 0), ("7", 7), (" 232 ", 232)])
def test_ros_domain_id(value, domain) -> None:
    from edgeseg.outputs.ros.dds import domain_id

    assert domain_id({} if value is None else {"ROS_DOMAIN_ID": value}) == domain


@pytest.mark.parametrize("value", ["233", "-1", "one"])
def test_a_bad_ros_domain_id_is_one_line(value) -> None:
    from edgeseg.outputs.ros.dds import domain_id

    with pytest.raises(EdgesegError) as info:
        domain_id({"ROS_DOMAIN_ID": value})
    assert info.value.path == "ROS_DOMAIN_ID"
    assert info.value.problem == f"must be an integer from 0 to 232, got {value!r}"


def test_dds_transport_speaks_ros2_names_and_qos(dds_domain) -> None:
    """Each message reaches an independent reader on rt/<topic> under ROS 2's type name, in order, as discovery
    shows them (a ROS 2 peer sends no XTypes type information: it matches by these names); a latched topic is
    TRANSIENT_LOCAL (a reader that joins after the message was written still gets it)."""
    from edgeseg.outputs.ros.dds import DdsTransport
    from ros_dds_types import String_

    live = reader(dds_domain, "rt/edgeseg/test", String_)
    transport = DdsTransport(typestore=rosbags_typestore())
    assert transport.domain == dds_domain and transport.name == f"cyclonedds, domain {dds_domain}"
    for i in range(50):
        transport.publish(string_message("/edgeseg/test", f"frame {i}"))
    transport.publish(string_message("/edgeseg/classes", "person car", LATCHED))
    got = [s.data for s in take(live, 50)]
    late = reader(dds_domain, "rt/edgeseg/classes", String_, LATCHED)
    latched = [s.data for s in take(late, 1)]
    assert writers_seen(live) == [("rt/edgeseg/test", "std_msgs::msg::dds_::String_", "reliable", "volatile", 10, True, False)]
    assert writers_seen(late) == [("rt/edgeseg/classes", "std_msgs::msg::dds_::String_", "reliable", "transient_local", 1, True, False)]
    transport.close()
    assert got == [f"frame {i}" for i in range(50)]
    assert latched == ["person car"]


def same_fields(dds: object, ros: object, where: str = "msg") -> None:
    """The DDS sample (the test's own types) and the rosbags message hold the same values, field by field (the
    DDS type's fields, walked here; float32 compared as float32)."""
    if hasattr(dds, "__dataclass_fields__"):
        for name in dds.__dataclass_fields__:
            same_fields(getattr(dds, name), getattr(ros, name), f"{where}.{name}")
    elif isinstance(dds, list):
        assert len(dds) == len(ros), f"{where}: {len(dds)} != {len(ros)} items"
        if dds and isinstance(dds[0], (int, float)):
            np.testing.assert_array_equal(np.asarray(dds, dtype=np.asarray(ros).dtype), np.asarray(ros), err_msg=where)
        else:
            for k, (a, b) in enumerate(zip(dds, ros)):
                same_fields(a, b, f"{where}[{k}]")
    elif isinstance(dds, float):
        assert np.float32(dds) == np.float32(ros) and (dds == ros or np.float32(dds) == dds), f"{where}: {dds} != {ros}"
    else:
        assert dds == ros, f"{where}: {dds!r} != {ros!r}"


def test_live_frames_reach_a_perception_targets_reader_as_the_bag_holds_them(dds_domain, clip_frames) -> None:
    """--ros at library level: RosLiveOutput with the transport chosen at open (cyclonedds here) publishes every
    frame's ai_msgs/PerceptionTargets; an independent reader gets each, equal field by field to what rosbags
    reads from the same frame's bytes (the bag's content)."""
    from edgeseg.outputs.ros.types import typestore
    from ros_dds_types import PerceptionTargets_

    run, frames = clip_frames
    targets = reader(dds_domain, "rt/hobot_dnn_detection", PerceptionTargets_)
    output = RosLiveOutput(transport="cyclonedds")
    output.open(run)
    for frame in frames:
        output.on_frame(frame, None)
    assert output.outbox.flush(20)
    got = take(targets, FRAMES)
    assert writers_seen(targets) == [
        ("rt/hobot_dnn_detection", "ai_msgs::msg::dds_::PerceptionTargets_", "reliable", "volatile", 10, True, False)
    ]
    output.close()
    bag = [m for m in encoded(run, frames) if m.topic == "/hobot_dnn_detection"]
    assert len(got) == len(bag) == FRAMES
    assert sum(len(s.targets) for s in got) > FRAMES  # objects were found and sent, not empty lists compared
    for sample, message in zip(got, bag):
        same_fields(sample, typestore().deserialize_cdr(message.data, message.msgtype))
    per_frame = len(encoded(run, frames[:1]))
    assert output.report() == (
        f"ROS 2 (--ros) via cyclonedds, domain {dds_domain}: {per_frame * FRAMES} messages published of {FRAMES} frames, 0 dropped"
    )


# --- the outbox bound -------------------------------------------------------------------------------


class StuckTransport:
    """A peer that takes the first message and never returns until released."""

    name = "stuck"

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.published: list[RosMessage] = []
        self.advertised: list[str] = []

    def advertise(self, topic: str, msgtype: str, qos: TopicQos) -> None:
        self.advertised.append(topic)

    def publish(self, message: RosMessage) -> None:
        self.started.set()
        assert self.release.wait(30)
        self.published.append(message)

    def close(self) -> None:
        self.release.set()


def test_a_transport_that_blocks_never_blocks_the_frames_and_drops_are_counted(clip_frames) -> None:
    run, frames = clip_frames
    transport = StuckTransport()
    output = RosLiveOutput(capacity=8, transport=transport)
    output.open(run)
    output.on_frame(frames[0], None)
    assert transport.started.wait(5)  # the sender is stuck inside publish with frame 0's first message
    worker = threading.Thread(target=lambda: [output.on_frame(f, None) for f in frames[1:]], daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "on_frame blocked behind a stuck transport"
    messages = encoded(run, frames)
    handed = len(messages)
    assert (output.outbox.put_count, len(output.outbox), output.outbox.dropped) == (handed, 8, handed - 1 - 8)
    transport.release.set()
    assert output.outbox.flush(10)
    output.close()
    assert [m.data for m in transport.published] == [messages[0].data] + [m.data for m in messages[-8:]]  # the newest kept
    assert output.report() == f"ROS 2 (--ros) via stuck: 9 messages published of {FRAMES} frames, {handed - 9} dropped"
    assert output.counters() == {"published": 9, "dropped": handed - 9, "failed": 0}  # what /metrics shows


class RecordingTransport(StuckTransport):
    """Records what it is given; ``publish`` fails on ``failing`` (a topic) as a DDS write that timed out would."""

    def __init__(self, failing: str = "") -> None:
        super().__init__()
        self.release.set()
        self.failing = failing

    def publish(self, message: RosMessage) -> None:
        if message.topic == self.failing:
            raise TimeoutError(f"write on {message.topic} timed out")
        super().publish(message)


def test_several_cameras_publish_under_their_namespaces_and_failures_are_counted(clip_frames) -> None:
    """Two cameras (one counting on a line): each camera's topics advertised at open under /<camera>/, its
    frames published there; a publish that raises is counted and named in the end line, the others go on."""
    run, frames = clip_frames
    two = RunInfo(
        cameras=(CameraInfo(name="door", source="door.mp4"), CameraInfo(name="yard", source="yard.mp4", lines=("gate",))),
        class_names=run.class_names,
    )
    transport = RecordingTransport(failing="/yard/detections")
    output = RosLiveOutput(transport=transport)
    output.open(two)
    base = ["hobot_dnn_detection", "hobot_dnn_detection_info", "detections", "label_info", "annotations"]
    assert transport.advertised == [f"/door/{t}" for t in base] + [f"/yard/{t}" for t in [*base, "events", "counts"]]
    for k, frame in enumerate(frames[:4]):
        output.on_frame(dataclasses.replace(frame, camera=("door", "yard")[k % 2]), None)
    assert output.outbox.flush(10)
    output.close()
    topics = [m.topic for m in transport.published]
    assert topics == [f"/{cam}/{t}" for cam in ("door", "yard", "door", "yard") for t in base if f"/{cam}/{t}" != "/yard/detections"]
    assert output.report() == (
        "ROS 2 (--ros) via stuck: 18 messages published of 4 frames, 0 dropped, "
        "2 failed (TimeoutError: write on /yard/detections timed out)"
    )


# --- rclpy --------------------------------------------------------------------------------------------


def test_rclpy_publishes_the_bytes_with_each_topics_qos(monkeypatch, clip_frames) -> None:
    """Through the stand-in of rclpy's source: one node in a context of its own, every topic's publisher made at
    open with the topic's QoS, the serialised bytes published as they are; a type whose package is not
    installed (foxglove_msgs on a TROS image) is left out, said once and counted."""
    from edgeseg.outputs.ros.messages import TOPICS

    run, frames = clip_frames
    installed = sorted({t for t, _ in TOPICS.values() if not t.startswith("foxglove_msgs/")})
    seen = rclpy_standin.install(monkeypatch, installed)
    output = RosLiveOutput()
    output.open(run)
    assert output.transport.name == "rclpy"
    advertised = sorted(seen.publishers())
    for frame in frames:
        output.on_frame(frame, None)
    assert output.outbox.flush(10)
    output.close()
    (node,) = seen.nodes
    (context,) = seen.contexts
    assert node.name == "edgeseg" and node.destroyed and not context.ok() and context.args == []
    publishers = seen.publishers()
    expected = ["/detections", "/hobot_dnn_detection", "/hobot_dnn_detection_info", "/label_info"]
    assert advertised == sorted(publishers) == expected  # all made at open, before the first frame
    messages = encoded(run, frames)
    R, D, H = rclpy_standin.ReliabilityPolicy, rclpy_standin.DurabilityPolicy, rclpy_standin.HistoryPolicy
    for topic, publisher in publishers.items():
        msgtype, qos = TOPICS[topic[1:]]
        package, _, name = msgtype.split("/")
        assert publisher.msg_type is getattr(sys.modules[f"{package}.msg"], name)
        assert publisher.raw == [m.data for m in messages if m.topic == topic]
        q = publisher.qos_profile
        assert (q.history, q.depth) == (H.KEEP_LAST, qos.depth)
        assert q.reliability == (R.RELIABLE if qos.reliability == "reliable" else R.BEST_EFFORT)
        assert q.durability == (D.TRANSIENT_LOCAL if qos.durability == "transient_local" else D.VOLATILE)
        assert 0 <= publisher.acked_wait <= 1_000_000_000  # close waited (1 s in all) for the subscribers' acknowledgements
    assert publishers["/label_info"].qos_profile.durability == D.TRANSIENT_LOCAL  # latched, as the encoder offers it
    published = sum(len(p.raw) for p in publishers.values())
    assert published == 4 * FRAMES
    assert output.report() == (
        f"ROS 2 (--ros) via rclpy: {published} messages published of {FRAMES} frames, 0 dropped, "
        f"{FRAMES} not published (/annotations (foxglove_msgs/msg/ImageAnnotations not installed))"
    )


# --- no transport -------------------------------------------------------------------------------------

INSTALL_HINT_X86 = 'pip install "edgeseg[ros-dds]", or source a ROS 2 install (setup.bash) so that rclpy imports'
INSTALL_HINT_ARM = "source the ROS 2 / TROS setup (e.g. /opt/tros/humble/setup.bash) so that rclpy imports"


def test_no_transport_is_one_line_saying_what_to_install(monkeypatch) -> None:
    for name in ("rclpy", "cyclonedds", "cyclonedds.domain"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails
    with pytest.raises(EdgesegError) as info:
        open_transport("auto")
    assert info.value.path == "--ros"
    assert info.value.problem == (
        f"no ROS 2 transport here (rclpy: import of rclpy halted; None in sys.modules; "
        f"cyclonedds: import of cyclonedds.domain halted; None in sys.modules): {install_hint()}"
    )
    assert install_hint("x86_64") == INSTALL_HINT_X86
    assert install_hint("aarch64") == INSTALL_HINT_ARM


@pytest.mark.timeout(300)
def test_predict_ros_without_a_transport_is_one_line_and_no_run(tmp_path, coco128_images) -> None:
    """The command line as a user meets it on a machine with neither: rclpy and cyclonedds that fail to import
    (stand-ins first on PYTHONPATH), one line naming --ros and what to install, and no output written."""
    shadow = tmp_path / "shadow"
    (shadow / "cyclonedds").mkdir(parents=True)
    (shadow / "rclpy.py").write_text("raise ImportError(\"No module named 'rclpy'\")\n")
    (shadow / "cyclonedds" / "__init__.py").write_text("raise ImportError(\"No module named 'cyclonedds'\")\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")]))
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg.cli", "predict", str(DEFAULT_MODEL), str(coco128_images[0]), "--ros", "--save-jsonl", str(jsonl)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    hint = INSTALL_HINT_X86 if platform.machine() in ("x86_64", "AMD64") else INSTALL_HINT_ARM
    assert error_reason(proc, "--ros") == (
        f"no ROS 2 transport here (rclpy: No module named 'rclpy'; cyclonedds: No module named 'cyclonedds'): {hint}"
    )
    assert not jsonl.exists()


# --- the command line over DDS ------------------------------------------------------------------------

CLI_FRAMES = 300


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_predict_ros_publishes_every_frame_to_a_dds_reader_as_its_bag_holds_it(dds_domain, tmp_path, coco128_images) -> None:
    """``edgeseg predict CLIP --ros --save-bag BAG`` (another process, cyclonedds on loopback, ROS_DOMAIN_ID set):
    a reader of the test's own PerceptionTargets type on rt/hobot_dnn_detection receives at least 99 % of the 300
    frames' messages, each equal field by field to the bag's message of the same stamp."""
    from rosbags.rosbag2 import Reader

    from edgeseg.outputs.ros.types import typestore
    from ros_dds_types import PerceptionTargets_

    clip = make_clip(tmp_path / "gate.mp4", [coco128_images[i % 30] for i in range(CLI_FRAMES)], size=(640, 480))
    targets = reader(dds_domain, "rt/hobot_dnn_detection", PerceptionTargets_, TopicQos(depth=CLI_FRAMES))
    bag = tmp_path / "bag"
    proc = run_cli("predict", DEFAULT_MODEL, clip, "--ros", "--save-bag", bag, timeout=800)
    assert proc.returncode == 0, proc.stderr
    got = take(targets, CLI_FRAMES, timeout_s=5)
    with Reader(bag) as bag_reader:
        (conn,) = [c for c in bag_reader.connections if c.topic == "/hobot_dnn_detection"]
        held = [typestore().deserialize_cdr(raw, conn.msgtype) for _, _, raw in bag_reader.messages(connections=[conn])]
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in held}
    assert len(held) == len(by_stamp) == CLI_FRAMES
    stamps = [(s.header.stamp.sec, s.header.stamp.nanosec) for s in got]
    assert len(set(stamps)) == len(stamps) and CLI_FRAMES * 0.99 <= len(got) <= CLI_FRAMES, len(got)
    assert sum(len(s.targets) for s in got) > CLI_FRAMES  # objects were found and sent, not empty lists compared
    for sample, stamp in zip(got, stamps):
        same_fields(sample, by_stamp[stamp])
    with Reader(bag) as bag_reader:
        total = bag_reader.message_count  # every topic's messages: what --ros handed to its outbox
    report = [line for line in proc.stdout.splitlines() if line.startswith("ROS 2 (--ros) via ")]
    assert len(report) == 1, proc.stdout
    found = re.fullmatch(
        rf"ROS 2 \(--ros\) via cyclonedds, domain {dds_domain}: (\d+) messages published of {CLI_FRAMES} frames, (\d+) dropped", report[0]
    )
    assert found, report[0]
    assert int(found[1]) + int(found[2]) == total and int(found[1]) >= 0.99 * total, (report[0], total)


NOT_A_NAME = "'2d' is not a ROS 2 name (a letter, then letters, digits and single underscores)"


@pytest.mark.parametrize(
    ("args", "path", "reason"),
    [
        (["--ros-image"], None, "--ros-image needs --ros or --save-bag"),
        (["--ros-namespace", "/robot1"], None, "--ros-namespace needs --ros or --save-bag"),
        (["--ros", "--bag-storage", "sqlite3"], None, "--bag-storage needs --save-bag"),
        (
            ["--ros", "--ros-namespace", "/robot1/2d"],
            "ROS namespace",
            "'2d' is not a ROS 2 name (a letter, then letters, digits and single underscores)",
        ),
        (["--ros", "--ray"], None, "--ros does not work with --ray (it runs here only); drop one of them"),
    ],
    ids=["image-alone", "namespace-alone", "storage-without-bag", "bad-namespace", "ray"],
)
def test_ros_options_are_checked_before_any_work(args, path, reason, tmp_path) -> None:
    proc = run_cli("predict", DEFAULT_MODEL, tmp_path / "none.jpg", *args, timeout=120)
    assert error_reason(proc, path) == reason
