"""``--ros``: a run's messages published on ROS 2 topics while it goes on.

Each frame is encoded once on the pipeline's thread (``FrameEncoder``: the same serialised messages a bag
stores), and its messages are handed to a bounded ``Outbox``; the outbox's sender thread publishes them through
a transport chosen at ``open``:

1. ``rclpy`` where it imports (a TROS board, any sourced ROS 2 install): a node with one publisher per topic;
2. otherwise ``cyclonedds`` (the ``[ros-dds]`` extra, x86 only), speaking ROS 2's DDS mapping itself (``dds.py``);
3. neither: ``open`` fails with one line saying what to install.

A subscriber that is slow or absent never holds up the pipeline: when the outbox is full the oldest message is
dropped and counted (``report()``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from ...errors import EdgesegError, first_line
from ..base import OnFailure, OutputBase, RunInfo
from ..outbox import DEFAULT_CAPACITY, Outbox
from .message import RosMessage, TopicQos
from .messages import RosTopics

if TYPE_CHECKING:
    from ...engines.frames import StreamFrame, StreamStats
    from .messages import FrameEncoder

TransportName = Literal["auto", "rclpy", "cyclonedds"]
TRANSPORTS: tuple[TransportName, ...] = ("auto", "rclpy", "cyclonedds")
CLOSE_WAIT_S = 2.0  # at close: how long the outbox gets to publish what is still waiting


class Transport(Protocol):
    """Where the sender thread publishes: ``name`` for the report line; ``advertise`` a topic before the first
    frame (on the pipeline's side, at open); ``publish`` one serialised message (on the sender thread only;
    advertises its topic if it was not); ``close`` once, after the last ``publish``."""

    name: str

    def advertise(self, topic: str, msgtype: str, qos: TopicQos) -> None: ...

    def publish(self, message: RosMessage) -> None: ...

    def close(self) -> None: ...


def install_hint(machine: str | None = None) -> str:
    """What to install for ``--ros`` on this machine (PyPI's cyclonedds has no aarch64 wheel)."""
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        return 'pip install "edgeseg[ros-dds]", or source a ROS 2 install (setup.bash) so that rclpy imports'
    return "source the ROS 2 / TROS setup (e.g. /opt/tros/humble/setup.bash) so that rclpy imports"


def open_transport(choice: TransportName = "auto", *, domain: int | None = None) -> Transport:
    """The transport ``choice`` names, or with ``"auto"`` the first that imports: rclpy, then cyclonedds.
    Neither: an ``EdgesegError`` on ``--ros`` naming what to install."""
    if choice not in TRANSPORTS:
        raise EdgesegError(f"the transport must be one of {', '.join(TRANSPORTS)}, got {choice!r}", "--ros")
    reasons = []
    if choice in ("auto", "rclpy"):
        try:
            import rclpy  # noqa: F401  (probe only: the transport imports what it uses)
        except ImportError as exc:
            reasons.append(f"rclpy: {first_line(exc)}")
        else:
            from .rcl import RclpyTransport

            return _start("rclpy", RclpyTransport)
    if choice in ("auto", "cyclonedds"):
        try:
            import cyclonedds.domain  # noqa: F401  (loads the C library: a broken install fails here)
        except Exception as exc:  # ImportError, or cyclonedds' own loader error when libddsc is missing
            reasons.append(f"cyclonedds: {first_line(exc)}")
        else:
            from .dds import DdsTransport

            return _start("cyclonedds", lambda: DdsTransport(domain=domain))
    raise EdgesegError(f"no ROS 2 transport here ({'; '.join(reasons)}): {install_hint()}", "--ros")


def _start(name: str, make: Callable[[], Transport]) -> Transport:
    """``make()``, with a library's failure to start (rcl, the DDS domain) as one line."""
    try:
        return make()
    except EdgesegError:
        raise
    except Exception as exc:
        raise EdgesegError(f"cannot start {name} ({first_line(exc)})", "--ros") from None


class RosLiveOutput(OutputBase):
    """``--ros``: a run-wide output (every camera's frames; several cameras' topics each under its own namespace,
    as ``FrameEncoder`` names them). ``topics``: which topics and how (None: ``RosTopics()``; the same as
    ``--save-bag``'s gives one encoding per frame for both); ``transport``: ``"auto"`` (rclpy, else cyclonedds), one of them only, or a
    ``Transport`` to use as it is; ``capacity``: messages the outbox holds before it drops the oldest;
    ``domain``: the cyclonedds transport's DDS domain (None: ``ROS_DOMAIN_ID``, else 0; rclpy reads
    ``ROS_DOMAIN_ID`` itself). A failure never stops the run by default (``on_failure="continue"``)."""

    def __init__(
        self,
        *,
        topics: RosTopics | None = None,
        transport: TransportName | Transport = "auto",
        capacity: int = DEFAULT_CAPACITY,
        domain: int | None = None,
        on_failure: OnFailure = "continue",
    ) -> None:
        super().__init__(name="ROS 2 (--ros)", on_failure=on_failure)
        if isinstance(transport, str) and transport not in TRANSPORTS:
            raise EdgesegError(f"the transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}", "--ros")
        self.topics, self.capacity, self.domain = topics or RosTopics(), capacity, domain
        self._choice = transport
        self.transport: Transport | None = None
        self.encoder: FrameEncoder | None = None
        self.outbox: Outbox[RosMessage] | None = None
        self.frames = 0

    def open(self, run: RunInfo) -> None:
        super().open(run)
        from .messages import FrameEncoder

        self.encoder = FrameEncoder.shared(run, self.topics)
        choice = self._choice
        self.transport = open_transport(choice, domain=self.domain) if isinstance(choice, str) else choice
        try:
            self._advertise(run)
        except Exception as exc:
            self.transport.close()
            if isinstance(exc, EdgesegError):
                raise
            raise EdgesegError(f"cannot publish on ROS 2 via {self.transport.name} ({first_line(exc)})", "--ros") from None
        self.outbox = Outbox(self.transport.publish, capacity=self.capacity, name=f"ros-{self.transport.name.split(',')[0]}")

    def _advertise(self, run: RunInfo) -> None:
        """Every topic the run's cameras will publish on, made before the first frame: a subscriber already
        listening has matched it when the first message goes out."""
        from .messages import TOPICS

        for camera in run.cameras:
            prefix = self.encoder.namespace(camera.name)
            for topic in self.encoder.topics(tracking=bool(camera.lines or camera.zones)):
                msgtype, qos = TOPICS[topic]
                self.transport.advertise(prefix + topic, msgtype, qos)

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        if self.encoder is None or self.outbox is None:
            return
        for message in self.encoder.encode(frame):
            self.outbox.put(message)
        self.frames += 1

    def close(self) -> list[Path]:
        if self.outbox is not None:
            self.outbox.close(CLOSE_WAIT_S)  # what is left after CLOSE_WAIT_S is counted as dropped
        if self.transport is not None:
            self.transport.close()
        return []

    def counters(self) -> dict[str, int]:
        box = self.outbox
        if box is None:
            return {}
        skipped = getattr(self.transport, "skipped", None) or {}
        return {"published": box.sent - sum(skipped.values()), "dropped": box.dropped, "failed": box.failed}

    def report(self) -> str | None:
        box = self.outbox
        if box is None or self.transport is None:
            return None
        skipped = getattr(self.transport, "skipped", None) or {}  # handed to a transport that had no publisher
        published = box.sent - sum(skipped.values())
        line = f"{self.name} via {self.transport.name}: {published} messages published of {self.frames} frames, {box.dropped} dropped"
        if box.failed:
            line += f", {box.failed} failed ({box.last_error})"
        if skipped:
            line += f", {sum(skipped.values())} not published ({'; '.join(sorted(skipped))})"
        return line
