"""``--ros``: live ROS 2 publishing (outputs/ros/live.py, dds.py, rcl.py).

- DDS loopback: cyclonedds DataReaders of the test's own (types written here from the ``.msg`` text, DDS names
  spelled out) on the loopback interface, no multicast, a domain of their own, receive what edgeseg publishes;
- rclpy through a stand-in that behaves as rclpy's source (tests/rclpy_standin.py): topics, QoS, the bytes;
- the outbox bound: a transport that never returns does not hold up the frames, and the drops are counted;
- no transport: the one line saying what to install.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from types import SimpleNamespace

import pytest

import rclpy_standin
from edgeseg.errors import EdgesegError
from edgeseg.outputs.base import RunInfo
from edgeseg.outputs.ros.live import RosLiveConfig, RosLiveOutput, install_hint, open_transport
from edgeseg.outputs.ros.message import RosMessage, TopicQos

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


def rosbags_typestore():
    typesys = pytest.importorskip("rosbags.typesys", reason="needs the [ros] extra (rosbags)")
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)


def string_message(topic: str, text: str, qos: TopicQos = DEFAULT) -> RosMessage:
    ts = rosbags_typestore()
    data = ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String")
    return RosMessage(topic=topic, msgtype="std_msgs/msg/String", data=bytes(data), stamp_ns=0, qos=qos)


class StringEncoder:
    """Per frame one ``std_msgs/String`` on /edgeseg/test ("frame N"), and on the first frame the run's class
    names on a latched topic: messages with no encoder of edgeseg's in them."""

    def __init__(self, run: RunInfo) -> None:
        self.run = run

    def encode(self, frame) -> list[RosMessage]:
        out = [string_message("/edgeseg/test", f"frame {frame.index}")]
        if frame.index == 0:
            out.append(string_message("/edgeseg/classes", json.dumps(self.run.class_names), LATCHED))
        return out


def frames(n: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(index=i, camera="cam") for i in range(n)]


RUN = RunInfo(class_names=("person", "car"))


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


def test_dds_loopback_with_ros_names_and_qos(dds_domain) -> None:
    """Every frame's message reaches an independent reader on rt/<topic> under ROS 2's type name, in order;
    the latched topic is TRANSIENT_LOCAL (a reader that joins after it was written still gets it)."""
    from edgeseg.outputs.ros.dds import DdsTransport
    from ros_dds_types import String_ as string

    live = reader(dds_domain, "rt/edgeseg/test", string)
    transport = DdsTransport(typestore=rosbags_typestore())
    assert transport.domain == dds_domain and transport.name == f"cyclonedds, domain {dds_domain}"
    output = RosLiveOutput(transport=transport, make_encoder=StringEncoder)
    output.open(RUN)
    for frame in frames(50):
        output.on_frame(frame, None)
    assert output.outbox.flush(10)
    got = [s.data for s in take(live, 50)]
    late = reader(dds_domain, "rt/edgeseg/classes", string, LATCHED)  # joins after the message was written
    latched = [s.data for s in take(late, 1)]
    # a ROS 2 peer matches by these names (it sends no XTypes type information): checked as discovery saw them
    assert writers_seen(live) == [("rt/edgeseg/test", "std_msgs::msg::dds_::String_", "reliable", "volatile", 10, True, False)]
    assert writers_seen(late) == [("rt/edgeseg/classes", "std_msgs::msg::dds_::String_", "reliable", "transient_local", 1, True, False)]
    output.close()
    assert got == [f"frame {i}" for i in range(50)]
    assert latched == ['["person", "car"]']
    assert output.report() == f"ROS 2 (--ros) via cyclonedds, domain {dds_domain}: 51 messages published of 50 frames, 0 dropped"


# --- the outbox bound -------------------------------------------------------------------------------


class StuckTransport:
    """A peer that takes the first message and never returns until released."""

    name = "stuck"

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.published: list[RosMessage] = []

    def publish(self, message: RosMessage) -> None:
        self.started.set()
        assert self.release.wait(30)
        self.published.append(message)

    def close(self) -> None:
        self.release.set()


def test_a_transport_that_blocks_never_blocks_the_frames_and_drops_are_counted() -> None:
    transport = StuckTransport()
    output = RosLiveOutput(config=RosLiveConfig(capacity=16), transport=transport, make_encoder=StringEncoder)
    output.open(RUN)
    output.on_frame(frames(1)[0], None)
    assert transport.started.wait(5)  # the sender is stuck inside publish with frame 0's first message
    worker = threading.Thread(target=lambda: [output.on_frame(f, None) for f in frames(300)[1:]], daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "on_frame blocked behind a stuck transport"
    # 301 messages handed over (300 frames + the latched one); one in the peer's hands, 16 waiting, the rest dropped
    assert (output.outbox.put_count, len(output.outbox), output.outbox.dropped) == (301, 16, 301 - 1 - 16)
    transport.release.set()
    assert output.outbox.flush(10)
    output.close()
    assert [m.data for m in transport.published[1:]] == [string_message("/edgeseg/test", f"frame {i}").data for i in range(284, 300)]
    assert output.report() == "ROS 2 (--ros) via stuck: 17 messages published of 300 frames, 284 dropped"


# --- rclpy --------------------------------------------------------------------------------------------


def test_rclpy_publishes_the_bytes_with_each_topics_qos(monkeypatch) -> None:
    """Through the stand-in of rclpy's source: one node in a context of its own, one publisher per topic with the
    topic's QoS, the serialised bytes published as they are; a type whose package is not installed is skipped,
    said once and counted."""
    seen = rclpy_standin.install(monkeypatch, ["std_msgs/msg/String"])
    transport = open_transport("auto")
    assert transport.name == "rclpy"
    output = RosLiveOutput(transport=transport, make_encoder=StringEncoder)
    output.open(RUN)
    for frame in frames(20):
        output.on_frame(frame, None)
        output.outbox.put(RosMessage("/edgeseg/annotations", "foxglove_msgs/msg/ImageAnnotations", b"\x00\x01\x00\x00", 0))
    assert output.outbox.flush(10)
    output.close()
    (node,) = seen.nodes
    (context,) = seen.contexts
    assert node.name == "edgeseg" and node.destroyed and not context.ok() and context.args == []
    publishers = seen.publishers()
    assert sorted(publishers) == ["/edgeseg/classes", "/edgeseg/test"]
    test, classes = publishers["/edgeseg/test"], publishers["/edgeseg/classes"]
    assert test.msg_type is classes.msg_type is sys.modules["std_msgs.msg"].String  # the installed package's class
    assert test.raw == [string_message("/edgeseg/test", f"frame {i}").data for i in range(20)]
    assert classes.raw == [string_message("/edgeseg/classes", '["person", "car"]').data]
    R, D, H = rclpy_standin.ReliabilityPolicy, rclpy_standin.DurabilityPolicy, rclpy_standin.HistoryPolicy
    assert (test.qos_profile.reliability, test.qos_profile.durability, test.qos_profile.history, test.qos_profile.depth) == (
        R.RELIABLE,
        D.VOLATILE,
        H.KEEP_LAST,
        10,
    )
    assert (classes.qos_profile.durability, classes.qos_profile.depth) == (D.TRANSIENT_LOCAL, 1)
    assert test.acked_wait == 1_000_000_000  # close waited for the subscribers' acknowledgements
    assert output.report() == (
        "ROS 2 (--ros) via rclpy: 41 messages published of 20 frames, 0 dropped, "
        "20 not published (/edgeseg/annotations (foxglove_msgs/msg/ImageAnnotations not installed))"
    )


# --- no transport -------------------------------------------------------------------------------------


def test_no_transport_is_one_line_saying_what_to_install(monkeypatch) -> None:
    for name in ("rclpy", "cyclonedds", "cyclonedds.domain"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails
    with pytest.raises(EdgesegError) as info:
        open_transport("auto")
    assert info.value.path == "--ros"
    assert info.value.problem.startswith("no ROS 2 transport here (rclpy: ")
    assert info.value.problem.endswith(f"): {install_hint()}")
    assert install_hint("x86_64") == 'pip install "edgeseg[ros-dds]", or source a ROS 2 install (setup.bash) so that rclpy imports'
    assert install_hint("aarch64") == "source the ROS 2 / TROS setup (e.g. /opt/tros/humble/setup.bash) so that rclpy imports"
