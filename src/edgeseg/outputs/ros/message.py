"""What the ROS 2 outputs pass between them: a message already serialised, with its topic, type and QoS.

The frame's messages are built and serialised once (``messages.py``); the bag writes these bytes and the live
publisher sends the same bytes, so what a subscriber receives is what the bag holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TopicQos:
    """The QoS a topic is offered with: ``rclcpp::QoS(depth)`` is KEEP_LAST ``depth``, RELIABLE, VOLATILE
    (``rmw_qos_profile_default``, ros2/rmw ``qos_profiles.h``); a latched topic (the class names) is
    TRANSIENT_LOCAL depth 1."""

    reliability: Literal["reliable", "best_effort"] = "reliable"
    durability: Literal["volatile", "transient_local"] = "volatile"
    depth: int = 10


@dataclass(frozen=True)
class RosMessage:
    """One serialised message: ``topic`` absolute (``/hobot_dnn_detection``, ``/door/detections``), ``msgtype``
    as rosbags names it (``ai_msgs/msg/PerceptionTargets``), ``data`` the CDR bytes (little endian, with the
    4-byte encapsulation header: what ``Typestore.serialize_cdr`` returns, what a bag stores and DDS carries),
    ``stamp_ns`` the frame's capture stamp (the messages' ``header.stamp``)."""

    topic: str
    msgtype: str
    data: bytes
    stamp_ns: int
    qos: TopicQos = TopicQos()
