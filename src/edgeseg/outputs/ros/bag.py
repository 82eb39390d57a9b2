"""``--save-bag DIR``: a rosbag2 of every frame's ROS 2 messages, written with rosbags.

The bag is version 8: Humble's ``ros2 bag`` reads it (version 9 stores the offered QoS as a YAML list, which
Humble cannot parse; version 8 keeps the string Humble expects). MCAP by default (its schemas travel in the file,
so Foxglove opens it without a ROS install), sqlite3 on request. Each topic carries its offered QoS and its message
definition; the messages are the bytes ``FrameEncoder`` built, the same a live subscriber gets.

rosbags writes ``metadata.yaml`` (and MCAP's index) only when the bag is closed, so the bag is written under a
hidden temporary folder next to ``DIR`` and moved into place by ``close`` (which also runs on Ctrl-C / SIGTERM):
``DIR`` is always a complete bag. A write that fails mid-run is one line naming the bag; what was written stays
in the temporary folder, never moved into place as if it were complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ...errors import EdgesegError
from ..base import OutputBase, RunInfo
from .message import RosMessage, TopicQos
from .messages import FrameEncoder, RosTopics
from .types import message_definition, require_rosbags, typestore

if TYPE_CHECKING:
    from ...engines.frames import StreamFrame, StreamStats

Storage = Literal["mcap", "sqlite3"]
STORAGES: tuple[Storage, ...] = ("mcap", "sqlite3")


def rosbags_qos(qos: TopicQos) -> object:
    """``qos`` as rosbags writes it into a bag (durations 0: the profile's defaults, as rclcpp offers them)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    default = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=qos.depth,
        reliability=QosReliability.RELIABLE if qos.reliability == "reliable" else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if qos.durability == "transient_local" else QosDurability.VOLATILE,
        deadline=default,
        lifespan=default,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=default,
        avoid_ros_namespace_conventions=False,
    )


class BagOutput(OutputBase):
    """A rosbag2 (version 8) at ``path`` of the run's ROS 2 messages (``topics``: which and how), in ``storage``
    (``"mcap"`` or ``"sqlite3"``; ``topics`` None: ``RosTopics()``). A file output: a failure stops the run (``on_failure="stop"``)."""

    def __init__(self, path: str | os.PathLike, *, topics: RosTopics | None = None, storage: Storage = "mcap") -> None:
        super().__init__(name=str(path), on_failure="stop")
        if storage not in STORAGES:
            raise EdgesegError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}", path)
        self.path, self.topics, self.storage = Path(path), topics or RosTopics(), storage
        require_rosbags()
        self._check_new()
        self.encoder: FrameEncoder | None = None
        self._writer = None
        self._tmp: Path | None = None
        self._connections: dict[str, object] = {}
        self.messages = 0

    def _check_new(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            raise EdgesegError("already exists: a bag is never written over (give a new folder name)", self.path)

    def open(self, run: RunInfo) -> None:
        super().open(run)
        require_rosbags()
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._check_new()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial"))
        except OSError as exc:
            raise EdgesegError(f"cannot write the bag here ({exc.strerror or exc})", self.path) from None
        self.encoder = FrameEncoder.shared(run, self.topics)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmp / self.path.name, version=8, storage_plugin=plugin)
        self._guard(self._writer.open)

    def _guard(self, step, *args) -> object:
        """``step(*args)`` with its failure as one line naming the bag (the partial bag left where it is)."""
        try:
            return step(*args)
        except Exception as exc:  # OSError, apsw's and rosbags' own errors: the disk, the file system, the library
            writer, self._writer = self._writer, None
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.abort()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise EdgesegError(f"cannot write the bag ({reason}); the part written is in {self._tmp}", self.path) from None

    def _connection(self, message: RosMessage) -> object:
        conn = self._connections.get(message.topic)
        if conn is None:
            conn = self._connections[message.topic] = self._guard(self._add_connection, message)
        return conn

    def _add_connection(self, message: RosMessage) -> object:
        store = typestore()
        return self._writer.add_connection(
            message.topic,
            message.msgtype,
            msgdef=message_definition(message.msgtype),
            rihs01=store.hash_rihs01(message.msgtype),
            offered_qos_profiles=[rosbags_qos(message.qos)],
        )

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        if self._writer is None:
            return
        for message in self.encoder.encode(frame):
            self._guard(self._writer.write, self._connection(message), message.stamp_ns, message.data)
            self.messages += 1

    def close(self) -> list[Path]:
        """Finish the bag and move it into place; the bag's folder, or nothing if it failed or never opened."""
        FrameEncoder.release(self.run)
        writer, self._writer = self._writer, None
        if writer is None:
            return []
        self._writer = writer
        self._guard(writer.close)
        self._writer = None
        try:
            (self._tmp / self.path.name).rename(self.path)
        except OSError as exc:
            raise EdgesegError(
                f"cannot move the finished bag into place ({exc.strerror or exc}); it is in {self._tmp}", self.path
            ) from None
        shutil.rmtree(self._tmp, ignore_errors=True)
        return [self.path]

    def counters(self) -> dict[str, int]:
        return {"published": self.messages}

    def report(self) -> str | None:
        return f"ROS 2 bag {self.path}: {self.messages} message(s) on {len(self._connections)} topic(s)"
