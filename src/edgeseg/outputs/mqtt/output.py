"""``MqttOutput``: a run's events, counts, detections and camera states on an MQTT broker (paho-mqtt 2.x).

The pipeline only hands messages to the ``Outbox``; its sender thread publishes them while the broker is
connected and holds them while it is away. paho's network thread (``loop_start``) reconnects on its own, the wait
between attempts doubling from 1 s to ``reconnect_max_s``; on every (re)connection ``status`` is set ``online``
again (retained) and the Home Assistant configs are republished. While the broker is away the outbox keeps the
newest ``outbox`` messages and drops the oldest, counted. QoS 1 messages paho had sent but the broker had not
acknowledged when the connection dropped are sent again by paho after the reconnection.

At the start, a broker that refuses the login, a certificate that does not verify, or a host name that does not
resolve is one ``EdgesegError`` line before the run; a broker that does not answer (down, restarting) is a
warning, and the run starts: the output connects when the broker comes up (a board that boots before its
broker still runs and publishes once it can).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EdgesegError, first_line
from ..base import OnFailure, OutputBase, RunInfo, Stamps
from ..outbox import Outbox
from .config import MqttConfig, topic_level
from .messages import (
    OFFLINE,
    ONLINE,
    Publish,
    Topics,
    counts_message,
    detections_message,
    discovery_messages,
    event_messages,
    state_message,
)

if TYPE_CHECKING:
    from ...engines.frames import StreamFrame, StreamStats

log = logging.getLogger("edgeseg")

INFLIGHT = 20  # QoS 1 messages published and not yet acknowledged at most (paho's own default window)
CLOSE_WAIT_S = 2.0  # at the end, how long the messages still waiting may take to reach a connected broker
POLL_S = 0.05  # how often the sender, holding a message, looks whether the run is ending


def import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgesegError("MQTT needs paho-mqtt: pip install edgeseg[mqtt]") from None
    return mqtt


class MqttOutput(OutputBase):
    """Publishes every camera's counting events (QoS 1), running counts (retained, when they change), per-frame
    detections (rate-capped, QoS 0) and state (retained), and the run's ``status`` online/offline (retained; the
    Last Will says ``offline`` when the process dies). See docs/mqtt.md for topics and payloads. ``clock``: the
    wall clock live cameras' stamps are taken on (``Stamps``)."""

    def __init__(self, config: MqttConfig, *, on_failure: OnFailure = "continue", clock=time.time) -> None:
        super().__init__(name=f"MQTT broker {config.address}", on_failure=on_failure)
        import_paho()  # a missing extra: one line when the output is made, before any work
        self.config = config
        self.topics = Topics(config.prefix)
        self.clock = clock
        self.published = 0  # acknowledged by the broker (QoS 1) or written to it (QoS 0)
        self.reconnects = 0
        self.unsent = 0  # held for a broker that was still away when the run ended
        self._client: Any = None
        self._outbox: Outbox[Publish] | None = None
        self._stamps: Stamps | None = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._answered = threading.Event()  # the first CONNACK came (accepted or refused)
        self._refused: str | None = None
        self._ever_connected = False
        self._cond = threading.Condition()
        self._inflight: deque[Any] = deque()  # MQTTMessageInfo of QoS 1 messages not yet acknowledged
        self._last_counts: dict[str, dict] = {}
        self._last_detections_s: dict[str, float] = {}
        self._lost_reason: str | None = None

    # --- the run's side: never waits for the broker ---------------------------------------------------------

    def open(self, run: RunInfo) -> None:
        super().open(run)
        levels: dict[str, str] = {}
        for camera in run.cameras:
            other = levels.setdefault(topic_level(camera.name), camera.name)
            if other != camera.name:
                raise EdgesegError(f"cameras {other!r} and {camera.name!r} would share the topic level {topic_level(other)!r}", self.name)
        self._stamps = Stamps(run, clock=self.clock)
        self._client = self._connect(import_paho())
        self._outbox = Outbox(self._send, capacity=self.config.outbox, name=f"mqtt {self.config.address}")

    def on_frame(self, frame: StreamFrame, stats: StreamStats) -> None:
        if self._outbox is None or not frame.ok:
            return
        # UNIX seconds in time_s's 0.1 ms steps, as the JSON Lines write times
        stamp_s = round(self._stamps.of(frame) / 1e9, 4)
        for message in event_messages(self.topics, frame, stamp_s):
            self._outbox.put(message)
        if frame.tracking is not None and frame.tracking.counts != self._last_counts.get(frame.camera):
            self._last_counts[frame.camera] = frame.tracking.counts
            self._outbox.put(counts_message(self.topics, frame, stamp_s))
        if self._detections_due(frame):
            self._outbox.put(detections_message(self.topics, frame, stamp_s))

    def _detections_due(self, frame: StreamFrame) -> bool:
        """At most ``detections_per_s`` summaries per second of the camera's own time (``time_s``: the frames'
        timestamps, as a camera's fps cap counts them); frames without a time (images) each get one."""
        rate = self.config.detections_per_s
        if rate <= 0:
            return False
        if frame.time_s is None:
            return True
        last = self._last_detections_s.get(frame.camera)
        if last is not None and frame.time_s < last + 1.0 / rate - 1e-6:
            return False
        self._last_detections_s[frame.camera] = frame.time_s
        return True

    def on_state(self, stats: StreamStats) -> None:
        if self._outbox is not None:
            self._outbox.put(state_message(self.topics, stats))

    def close(self) -> list[Path]:
        client = self._client
        if client is None or self._stopping.is_set():
            return []
        self._outbox.flush(CLOSE_WAIT_S if self._connected.is_set() else 0.0)
        self._stopping.set()  # a message held for a broker still away is given up (counted)
        self._outbox.close(timeout_s=0.0)
        if self._connected.is_set():
            # a clean end leaves no Last Will to the broker: say offline ourselves, and let the QoS 1 messages land
            info = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            with self._cond:
                self._inflight.append(info)
                self._cond.wait_for(lambda: self._unacknowledged() == 0, timeout=CLOSE_WAIT_S)
        client.disconnect()
        client.loop_stop()
        return []

    def counters(self) -> dict[str, int]:
        dropped = (self._outbox.dropped if self._outbox is not None else 0) + self.unsent
        return {"published": self.published, "dropped": dropped, "reconnects": self.reconnects}

    def report(self) -> str | None:
        dropped = (self._outbox.dropped if self._outbox is not None else 0) + self.unsent
        return f"{self.name}: {self.published} message(s) published, {dropped} dropped, {self.reconnects} reconnect(s)"

    # --- the broker's side: paho's network thread and the outbox's sender thread ----------------------------

    def _connect(self, mqtt: Any) -> Any:
        """A client with the Last Will set, connected (or connecting in the background when the broker does not
        answer); one line for what will not get better by waiting: a refused login, a certificate, a host name."""
        config = self.config
        password = config.password()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.session_id(),
            protocol=mqtt.MQTTv311,
            clean_session=True,
            reconnect_on_failure=True,
        )
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        if config.username:
            client.username_pw_set(config.username, password)
        if config.uses_tls:
            self._set_tls(client)
        client.reconnect_delay_set(min_delay=1, max_delay=config.reconnect_max_s)
        client.connect_timeout = config.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        try:
            client.connect(config.host, config.port, keepalive=config.keepalive_s)
        except socket.gaierror as exc:
            raise EdgesegError(f"cannot resolve the host ({first_line(exc)})", self.name) from None
        except ssl.SSLError as exc:
            verify = isinstance(exc, ssl.SSLCertVerificationError)
            reason = f"certificate verify failed: {exc.verify_message}" if verify else exc.reason or first_line(exc)
            raise EdgesegError(f"TLS handshake failed ({reason})", self.name) from None
        except OSError as exc:  # refused, unreachable, timed out: the broker may come up later
            log.warning("%s: not reachable (%s); the run goes on and publishes once it answers", self.name, _reason(exc))
            client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
            client.loop_start()
            return client
        client.loop_start()
        if self._answered.wait(config.connect_timeout_s) and self._refused is not None:
            client.disconnect()
            client.loop_stop()
            raise EdgesegError(f"the broker refused the connection ({self._refused})", self.name)
        if not self._answered.is_set():
            log.warning(
                "%s: no answer to the login within %g s; the run goes on and publishes once it answers", self.name, config.connect_timeout_s
            )
        return client

    def _set_tls(self, client: Any) -> None:
        ca = self.config.tls_ca
        try:
            client.tls_set(ca_certs=None if ca is None else str(ca))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else first_line(exc)
            raise EdgesegError(f"cannot use it as the MQTT CA certificate ({reason})", ca) from None
        client.tls_insecure_set(self.config.tls_insecure)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            if self._outbox is not None and self._lost_reason != self._refused:  # after open(): said once per reason
                log.warning("%s: the broker refused the connection (%s); retrying", self.name, self._refused)
            self._lost_reason = self._refused
            self._answered.set()
            return
        self._refused = None
        if self._ever_connected:
            self.reconnects += 1
            log.warning("%s: connected again", self.name)
        self._ever_connected = True
        self._lost_reason = None
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        if self.config.discovery:
            for camera in self.run.cameras:
                for message in discovery_messages(self.topics, camera):
                    client.publish(*message)
        self._connected.set()
        self._answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set():
            self._lost_reason = str(reason_code)
            detail = "" if reason_code.value == 0x80 else f" ({reason_code})"  # 0x80: the socket closed, no reason sent
            log.warning("%s: connection lost%s; reconnecting", self.name, detail)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self.published += 1
            self._cond.notify_all()

    def _unacknowledged(self) -> int:
        """QoS 1 messages still waiting for the broker's acknowledgement (under ``_cond``)."""
        while self._inflight and self._inflight[0].is_published():
            self._inflight.popleft()
        return sum(not info.is_published() for info in self._inflight)

    def _send(self, message: Publish) -> None:
        """The outbox's sender: publish when connected and the window of unacknowledged QoS 1 messages has
        room; otherwise hold this message (the outbox keeps the others, up to its bound)."""
        mqtt = import_paho()
        while not self._stopping.is_set():
            if not self._connected.wait(POLL_S):
                continue
            with self._cond:
                if not self._cond.wait_for(lambda: self._unacknowledged() < INFLIGHT, timeout=POLL_S):
                    continue
            info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if info.rc == mqtt.MQTT_ERR_NO_CONN and message.qos == 0:
                continue  # the connection dropped just now: this one waits for the next
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # QoS 1 without a connection: paho sends it later
                raise RuntimeError(mqtt.error_string(info.rc))
            if message.qos:
                with self._cond:
                    self._inflight.append(info)
            return
        self.unsent += 1


def _reason(exc: OSError) -> str:
    return (exc.strerror or first_line(exc)).lower()
