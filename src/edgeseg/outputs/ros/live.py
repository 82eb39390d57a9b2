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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ...errors import EdgesegError, first_line
from ..base import OnFailure, OutputBase, RunInfo, check_on_failure
from ..outbox import DEFAULT_CAPACITY, Outbox
from .message import RosMessage

if TYPE_CHECKING:
    from ...engines.frames import StreamFrame, StreamStats

TransportName = Literal["auto", "rclpy", "cyclonedds"]
TRANSPORTS: tuple[TransportName, ...] = ("auto", "rclpy", "cyclonedds")
CLOSE_WAIT_S = 2.0  # at close: how long the outbox gets to publish what is still waiting


class Transport(Protocol):
    """Where the sender thread publishes: ``name`` for the report line, ``publish`` one serialised message (on
    the sender thread only), ``close`` once, after the last ``publish``."""

    name: str

    def publish(self, message: RosMessage) -> None: ...

    def close(self) -> None: ...


class Encoder(Protocol):
    def encode(self, frame: StreamFrame) -> list[RosMessage]: ...


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

            return RclpyTransport()
    if choice in ("auto", "cyclonedds"):
        try:
            import cyclonedds.domain  # noqa: F401  (loads the C library: a broken install fails here)
        except Exception as exc:  # ImportError, or cyclonedds' own loader error when libddsc is missing
            reasons.append(f"cyclonedds: {first_line(exc)}")
        else:
            from .dds import DdsTransport

            return DdsTransport(domain=domain)
    raise EdgesegError(f"no ROS 2 transport here ({'; '.join(reasons)}): {install_hint()}", "--ros")


@dataclass(frozen=True)
class RosLiveConfig:
    """``transport``: ``auto`` (rclpy, else cyclonedds), or one of them only; ``capacity``: messages the outbox
    holds before it drops the oldest; ``domain``: the DDS domain of the cyclonedds transport (None:
    ``ROS_DOMAIN_ID``, else 0; rclpy reads ``ROS_DOMAIN_ID`` itself); ``encoder``: the ``FrameEncoder``'s config
    (topics, namespace), None for its defaults."""

    transport: TransportName = "auto"
    capacity: int = DEFAULT_CAPACITY
    domain: int | None = None
    encoder: Any = None


class RosLiveOutput(OutputBase):
    """``--ros``: a run-wide output (every camera's frames; each camera's topics under its own namespace, as the
    encoder names them). ``transport`` and ``make_encoder`` replace the chosen transport and the ``FrameEncoder``
    (tests, other encoders)."""

    def __init__(
        self,
        *,
        config: RosLiveConfig = RosLiveConfig(),
        on_failure: OnFailure = "continue",
        transport: Transport | None = None,
        make_encoder: Callable[[RunInfo], Encoder] | None = None,
    ) -> None:
        super().__init__(name="ROS 2 (--ros)", on_failure=check_on_failure(on_failure, "--ros"))
        self.config = config
        self.transport = transport
        self._make_encoder = make_encoder
        self.encoder: Encoder | None = None
        self.outbox: Outbox[RosMessage] | None = None
        self.frames = 0

    def open(self, run: RunInfo) -> None:
        super().open(run)
        if self._make_encoder is not None:
            self.encoder = self._make_encoder(run)
        else:
            from .messages import FrameEncoder

            self.encoder = FrameEncoder(run, config=self.config.encoder) if self.config.encoder is not None else FrameEncoder(run)
        if self.transport is None:
            self.transport = open_transport(self.config.transport, domain=self.config.domain)
        self.outbox = Outbox(self.transport.publish, capacity=self.config.capacity, name=f"ros-{self.transport.name.split(',')[0]}")

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        assert self.encoder is not None and self.outbox is not None, "on_frame before open"
        for message in self.encoder.encode(frame):
            self.outbox.put(message)
        self.frames += 1

    def close(self) -> list[Path]:
        if self.outbox is not None:
            self.outbox.close(CLOSE_WAIT_S)
        if self.transport is not None:
            self.transport.close()
        return []

    def report(self) -> str | None:
        if self.outbox is None or self.transport is None:
            return None
        box = self.outbox
        line = f"{self.name} via {self.transport.name}: {box.sent} messages published of {self.frames} frames, {box.dropped} dropped"
        if box.failed:
            line += f", {box.failed} failed ({box.last_error})"
        skipped = getattr(self.transport, "skipped", None)
        if skipped:
            line += f", {sum(skipped.values())} not published ({'; '.join(sorted(skipped))})"
        return line
