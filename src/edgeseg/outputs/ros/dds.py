"""ROS 2 topics without ROS: ``cyclonedds`` (the ``[ros-dds]`` extra, x86 only) speaking ROS 2's DDS mapping.

What a ROS 2 (Humble) node expects on the wire, from its rmw (ros2/rmw_cyclonedds ``namespace_prefix.hpp``,
``serdata.cpp`` ``create_type_name`` and ``create_sertype``; ros2/design ``140_topic_and_service_name_mapping.md``):

- the DDS topic of ``/a/b`` is ``rt/a/b``; the DDS type of ``pkg/msg/T`` is ``pkg::msg::dds_::T_``;
- topics are keyless and carry XCDR1 (plain CDR): a peer matches a type by its name only;
- ``rclcpp::QoS(10)`` is RELIABLE, KEEP_LAST 10, VOLATILE; a latched topic is TRANSIENT_LOCAL;
- the domain is ``ROS_DOMAIN_ID`` (0 when unset).

The messages come already serialised (``RosMessage.data``: the CDR a bag holds), so they are written as they are:
cyclonedds' own serializer walks every element in Python (4.8 ms for a 160x160 float map), which a frame's
budget cannot pay. ``DataWriter.write`` (cyclonedds ``pub.py``) calls ``sample.serialize()`` and hands the bytes
to the C writer; a ``_Serialised`` sample's ``serialize`` returns the bytes it was made with. Each topic's type is
still declared in full (built from the typestore's field definitions, the same ``.msg`` text the bytes came from),
so a DDS reader that checks types (XTypes) sees the real structure, not a stand-in.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ...errors import EdgesegError
from .message import RosMessage, TopicQos

ROS_TOPIC_PREFIX = "rt"  # rmw_cyclonedds namespace_prefix.hpp: ROS_TOPIC_PREFIX[] = "rt"
MAX_DOMAIN_ID = 232  # ROS 2's range of domain ids (ros2 docs "The ROS_DOMAIN_ID": 0..232 on Linux)
WRITE_BLOCK_S = 1.0  # a reliable write waits at most this long for room in the writer's history, then fails
ACK_WAIT_S = 1.0  # at close: how long matched readers get, all writers together, to acknowledge what was written


def dds_topic(topic: str) -> str:
    """The DDS topic of an absolute ROS 2 topic: ``/hobot_dnn_detection`` -> ``rt/hobot_dnn_detection``."""
    return ROS_TOPIC_PREFIX + topic


def dds_type_name(msgtype: str) -> str:
    """The DDS type name of a ROS 2 message type: ``ai_msgs/msg/PerceptionTargets`` ->
    ``ai_msgs::msg::dds_::PerceptionTargets_``."""
    package, kind, name = msgtype.split("/")
    return f"{package}::{kind}::dds_::{name}_"


def domain_id(environ: os._Environ[str] | dict[str, str] = os.environ) -> int:
    """``ROS_DOMAIN_ID`` as ROS 2 reads it (0 when unset or empty)."""
    text = environ.get("ROS_DOMAIN_ID", "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_DOMAIN_ID:
        raise EdgesegError(f"must be an integer from 0 to {MAX_DOMAIN_ID}, got {text!r}", "ROS_DOMAIN_ID")
    return int(text)


def _base_types() -> dict[str, Any]:
    from cyclonedds.idl import types

    # ROS 2 IDL mapping (ros2/design 116_legacy_interface_definition.md): byte -> octet, char -> uint8
    return {
        "bool": bool,
        "byte": types.byte,
        "char": types.uint8,
        "int8": types.int8,
        "uint8": types.uint8,
        "int16": types.int16,
        "uint16": types.uint16,
        "int32": types.int32,
        "uint32": types.uint32,
        "int64": types.int64,
        "uint64": types.uint64,
        "float32": types.float32,
        "float64": types.float64,
    }


class DdsTypes:
    """cyclonedds ``IdlStruct`` classes of ROS 2 message types, built from a rosbags typestore's field
    definitions (nested types included, each under its DDS name), once per type."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore
        self._made: dict[str, type] = {}
        self._base = _base_types()

    def __getitem__(self, msgtype: str) -> type:
        if msgtype not in self._made:
            from cyclonedds.idl import make_idl_struct

            _, fields = self.typestore.fielddefs[msgtype]
            annotations = {name: self._field(node) for name, node in fields}
            self._made[msgtype] = make_idl_struct(msgtype.rsplit("/", 1)[1] + "_", dds_type_name(msgtype), annotations)
        return self._made[msgtype]

    def _field(self, node: tuple) -> Any:
        from cyclonedds.idl import types

        kind, detail = node
        kind = getattr(kind, "name", kind)
        if kind == "BASE":
            name, bound = detail
            if name == "string":
                return types.bounded_str[bound] if bound else str
            if name not in self._base:
                raise EdgesegError(f"the ROS 2 type {name!r} has no DDS mapping here", "cyclonedds")
            return self._base[name]
        if kind == "NAME":
            return self[detail]
        inner, size = detail
        if kind == "ARRAY":
            return types.array[self._field(inner), size]
        return types.sequence[self._field(inner), size] if size else types.sequence[self._field(inner)]


def _serialised_type(struct: type) -> type:
    """A subclass of ``struct`` whose samples are bytes already serialised: ``DataWriter.write`` checks that the
    sample is an instance of the topic's type, then calls its ``serialize``."""

    class _Serialised(struct):  # type: ignore[misc, valid-type]
        def __init__(self, data: bytes) -> None:  # no dataclass fields: the bytes are the sample
            self._data = data

        def serialize(self, *args: Any, **kwargs: Any) -> bytes:
            return self._data

    return _Serialised


class DdsTransport:
    """One DomainParticipant on ``domain`` (``ROS_DOMAIN_ID`` by default), one DataWriter per topic with its QoS, made
    when advertised or at its first message; the types come from ``typestore`` (edgeseg's, with ai_msgs,
    vision_msgs and foxglove_msgs, by default). ``publish`` runs on the outbox's sender thread only."""

    def __init__(self, *, domain: int | None = None, typestore: Any = None) -> None:
        from cyclonedds.domain import DomainParticipant

        if typestore is None:
            from .types import typestore as edgeseg_typestore

            typestore = edgeseg_typestore()
        self.domain = domain_id() if domain is None else domain
        self.name = f"cyclonedds, domain {self.domain}"
        self.types = DdsTypes(typestore)
        self.participant = DomainParticipant(self.domain)
        self._writers: dict[str, tuple[Any, type]] = {}

    def advertise(self, topic: str, msgtype: str, qos: TopicQos) -> None:
        """Make ``topic``'s writer now (before the first frame: a subscriber has matched it by then)."""
        if topic not in self._writers:
            from cyclonedds.pub import DataWriter
            from cyclonedds.topic import Topic

            struct = self.types[msgtype]
            dds_qos = writer_qos(qos)
            dds = Topic(self.participant, dds_topic(topic), struct, qos=dds_qos)
            self._writers[topic] = (DataWriter(self.participant, dds, qos=dds_qos), _serialised_type(struct))

    def publish(self, message: RosMessage) -> None:
        if message.topic not in self._writers:
            self.advertise(message.topic, message.msgtype, message.qos)
        writer, sample = self._writers[message.topic]
        writer.write(sample(bytes(message.data)))  # bytes(bytes) is the same object, no copy

    def close(self) -> None:
        """Give matched readers up to ``ACK_WAIT_S`` in all to acknowledge what was written, then leave the domain."""
        from cyclonedds.util import duration

        deadline = time.monotonic() + ACK_WAIT_S
        for writer, _ in self._writers.values():
            writer.wait_for_acks(duration(seconds=max(0.0, deadline - time.monotonic())))
        self._writers.clear()
        self.participant = None  # cyclonedds deletes an entity (and its children) when it is collected


def writer_qos(qos: TopicQos) -> Any:
    """The DDS QoS rmw_cyclonedds gives a publisher of ``qos`` (``create_readwrite_qos``): reliability,
    KEEP_LAST depth, durability, and XCDR1 as the only data representation."""
    from cyclonedds.core import Policy
    from cyclonedds.qos import Qos
    from cyclonedds.util import duration

    reliability = (
        Policy.Reliability.Reliable(duration(seconds=WRITE_BLOCK_S)) if qos.reliability == "reliable" else Policy.Reliability.BestEffort
    )
    durability = Policy.Durability.TransientLocal if qos.durability == "transient_local" else Policy.Durability.Volatile
    return Qos(
        reliability,
        durability,
        Policy.History.KeepLast(qos.depth),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )
