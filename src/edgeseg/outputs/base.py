"""The one protocol of everything that consumes a run's frames: files (video, JSON Lines, a ROS 2 bag), the live
view, and what publishes elsewhere (ROS 2 topics, an MQTT broker).

Every output has the same lifecycle, driven by the engine's command side (``engines/command.py``):

1. ``open(run)``: check and connect before any frame (a file that cannot be written, a broker that refuses the
   password: one ``EdgesegError`` line, and the run does not start);
2. ``on_frame(frame, stats)``: every frame of every camera (ok or failed), in each camera's frame order, on the
   thread that consumes the runner. The frame's counting events (line crossings, zone entries and exits) come
   with it, in ``frame.tracking.events``: an event belongs to the frame it happened in;
3. ``on_state(stats)``: a camera's state changed (connecting, live, reconnecting, ended), from that camera's
   reader thread;
4. ``close()``: finalise (also on Ctrl-C / SIGTERM); returns the files it finished.

Both ``on_frame`` and ``on_state`` run on the pipeline's threads: an output that talks to the network only hands
its message to an ``Outbox`` (``outputs/outbox.py``) and returns; it never waits for a peer.

**Failure rule.** An output that cannot go on raises ``EdgesegError`` naming itself (``path`` = its ``name``).
``on_failure`` says what happens then: ``"stop"`` stops what the output belongs to (a camera's own file stops that
camera; a run-wide output stops the run), ``"continue"`` closes that output, reports the one line, and the run and
the other outputs go on. A peer that is away (a broker restarting, no ROS subscriber) is not a failure: the output
reconnects on its own and counts what it could not deliver (``report()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from ..errors import EdgesegError

if TYPE_CHECKING:
    from ..engines.frames import StreamFrame, StreamStats

OnFailure = Literal["stop", "continue"]
ON_FAILURE: tuple[OnFailure, ...] = ("stop", "continue")
_STEP_NS = 100_000  # stamps are in the JSON Lines' 0.1 ms steps


@dataclass(frozen=True)
class CameraInfo:
    """What an output may want to know of a camera before its first frame: its unique ``name`` (the one in
    ``StreamFrame.camera``), its ``source`` as given, whether it is ``live`` (a camera or stream: wall-clock time
    matters) and the names of its counting ``lines`` and ``zones`` (empty without tracking)."""

    name: str
    source: str
    live: bool = False
    lines: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunInfo:
    """What ``Output.open`` gets: the run's cameras (images given on the command line are one camera each) and the
    model's ``class_names`` (index = class id)."""

    cameras: tuple[CameraInfo, ...] = ()
    class_names: tuple[str, ...] = ()

    def camera(self, name: str) -> CameraInfo:
        """The camera called ``name``; one made up from the name for a camera the run did not announce."""
        for camera in self.cameras:
            if camera.name == name:
                return camera
        return CameraInfo(name=name, source=name)


@runtime_checkable
class Output(Protocol):
    """Something that consumes a run's frames (see the module's docstring for the lifecycle and the failure
    rule). ``name`` is what its one-line messages call it (``"MQTT broker localhost:1883"``, a file's path);
    ``warnings``: what the run should report at its end (a frame resized to fit a video)."""

    name: str
    on_failure: OnFailure
    warnings: Sequence[str]

    def open(self, run: RunInfo) -> None: ...

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None: ...

    def on_state(self, stats: StreamStats) -> None: ...

    def close(self) -> list[Path]: ...

    def report(self) -> str | None: ...

    def counters(self) -> dict[str, int]: ...


class OutputBase:
    """Do-nothing defaults for the protocol's hooks: an output overrides the ones it needs (a dataclass subclass
    may declare ``name`` and ``on_failure`` as fields)."""

    name: str = "output"
    on_failure: OnFailure = "stop"
    run: RunInfo = RunInfo()
    warnings: Sequence[str] = ()

    def __init__(self, name: str = "output", on_failure: OnFailure = "stop") -> None:
        if on_failure not in ON_FAILURE:
            raise EdgesegError(f"on_failure must be one of {', '.join(ON_FAILURE)}, got {on_failure!r}", name)
        self.name, self.on_failure = name, on_failure

    def open(self, run: RunInfo) -> None:
        self.run = run

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        pass

    def on_state(self, stats: StreamStats) -> None:
        pass

    def close(self) -> list[Path]:
        return []

    def report(self) -> str | None:
        """One line for the end of the run (what was delivered, dropped, reconnected), or None."""
        return None

    def counters(self) -> dict[str, int]:
        """Its running totals while the run goes on, read by ``/metrics`` (any thread): messages ``published``,
        ``dropped`` and ``failed``, ``reconnects``; empty for an output that counts nothing."""
        return {}


class Stamps:
    """The one capture stamp of a frame, in nanoseconds, shared by every output that stamps messages (ROS 2
    headers, MQTT event times). A file's frame is stamped with its ``time_s`` as the JSON Lines write it (rounded to
    0.1 ms), so a bag of a clip is the same every run; a live camera's adds the UNIX time at which that camera's
    ``time_s`` was 0, fixed at its first frame, so its stamps are wall-clock times and still step exactly as its
    ``time_s``. A frame without a time (an image) is stamped with its camera's origin (0 for files)."""

    def __init__(self, run: RunInfo, *, clock: Callable[[], float] = time.time) -> None:
        self.run, self.clock = run, clock
        self._origins_ns: dict[str, int] = {}

    def origin_s(self, camera: str) -> float:
        """The UNIX time of ``camera``'s ``time_s`` 0 (0.0 for a file, and before a live camera's first frame)."""
        return self._origins_ns.get(camera, 0) / 1e9

    def of(self, frame: StreamFrame) -> int:
        # in whole 0.1 ms steps, as integers: a float of nanoseconds since 1970 is past float64's exact integers
        steps = 0 if frame.time_s is None else round(frame.time_s * 10_000)
        if frame.camera not in self._origins_ns:
            live = self.run.camera(frame.camera).live
            self._origins_ns[frame.camera] = (round(self.clock() * 10_000) - steps) * _STEP_NS if live else 0
        return self._origins_ns[frame.camera] + steps * _STEP_NS
