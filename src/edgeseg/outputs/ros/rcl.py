"""ROS 2 topics through ``rclpy``: a TROS board or any sourced ROS 2 install (Humble and later).

Written against rclpy's source (ros2/rclpy, humble branch):

- ``rclpy/publisher.py`` ``Publisher.publish(msg: Union[MsgType, bytes])``: ``bytes`` go to
  ``publish_raw`` (``src/rclpy/publisher.cpp``: ``rcl_publish_serialized_message``), so the CDR a bag stores is
  published as it is, with no Python message built;
- ``rclpy/node.py`` ``Node.create_publisher(msg_type, topic, qos_profile)`` still needs the message's Python
  class (its type support names the type on the wire): ``pkg.msg.Name`` imported as ``rosidl_runtime_py``'s
  ``get_message`` does. A package that is not installed (``foxglove_msgs`` on a TROS image) leaves its topics
  unpublished, said once and counted;
- ``rclpy/__init__.py`` ``init(context=...)``: a context of our own installs no signal handlers (only the
  default context's does), so Ctrl-C stays the command line's.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from ...errors import first_line
from .message import RosMessage, TopicQos

log = logging.getLogger("edgeseg")
NODE_NAME = "edgeseg"
ACK_WAIT_S = 1.0  # at close: how long matched subscribers get, all publishers together, to acknowledge what was published


def message_class(msgtype: str) -> Any:
    """The generated Python class of ``pkg/msg/Name`` (rosidl_runtime_py ``utilities.get_message``)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def qos_profile(qos: TopicQos) -> Any:
    """rclpy's ``QoSProfile`` of ``qos``: KEEP_LAST ``depth``, its reliability and durability."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == "transient_local" else DurabilityPolicy.VOLATILE,
    )


class RclpyTransport:
    """One node (``edgeseg``) in a context of its own, one publisher per topic with its QoS, made
    when advertised or at its first message.
    ``skipped``: "topic (reason)" -> messages not published because the topic's type is not installed."""

    name = "rclpy"

    def __init__(self) -> None:
        import rclpy
        from rclpy.context import Context

        self.context = Context()
        rclpy.init(args=[], context=self.context)  # args: not the command line's (rcl would parse them)
        self.node = rclpy.create_node(NODE_NAME, context=self.context)
        self._publishers: dict[str, Any] = {}
        self._unavailable: dict[str, str] = {}  # topic -> the one line said about it
        self.skipped: dict[str, int] = {}

    def advertise(self, topic: str, msgtype: str, qos: TopicQos) -> None:
        """Make ``topic``'s publisher now; a type that is not installed here is said once, its topic left out."""
        if topic in self._publishers or topic in self._unavailable:
            return
        try:
            msg_class = message_class(msgtype)
        except (ImportError, AttributeError) as exc:
            log.warning("ROS 2 (--ros): %s is not published: %s is not installed here (%s)", topic, msgtype, first_line(exc))
            self._unavailable[topic] = f"{topic} ({msgtype} not installed)"
            return
        self._publishers[topic] = self.node.create_publisher(msg_class, topic, qos_profile(qos))

    def publish(self, message: RosMessage) -> None:
        if message.topic not in self._publishers:
            self.advertise(message.topic, message.msgtype, message.qos)
        publisher = self._publishers.get(message.topic)
        if publisher is None:
            key = self._unavailable[message.topic]
            self.skipped[key] = self.skipped.get(key, 0) + 1
            return
        publisher.publish(bytes(message.data))  # bytes: Publisher.publish -> publish_raw, the CDR as it is

    def close(self) -> None:
        from rclpy.duration import Duration

        deadline = time.monotonic() + ACK_WAIT_S
        for publisher in self._publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
        self._publishers.clear()
        self.node.destroy_node()
        self.context.try_shutdown()
