"""Where the MQTT output publishes and how it logs in: ``MqttConfig`` (checked when made) and the password,
read from an environment variable or a file when the output opens (never given as a value on a command line,
where every user of the machine can read it in the process list)."""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...errors import EdgesegError

DEFAULT_PORT = 1883
DEFAULT_PREFIX = "edgeseg"
DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's default discovery prefix
MQTT_WILDCARDS = re.compile(r"[+#\x00]")  # characters a topic that is published to may not hold


@dataclass(frozen=True)
class MqttConfig:
    """An MQTT broker and what edgeseg publishes there (docs/mqtt.md).

    ``host``/``port``: the broker. ``prefix``: the first topic levels (``edgeseg`` -> ``edgeseg/status``,
    ``edgeseg/<camera>/events``); give each board its own (``edgeseg/door-board``) when several share a broker.
    ``client_id``: the session's name at the broker (empty: ``edgeseg-<host name>-<random>``, unique per process,
    so that two runs never take over each other's session). ``username``, and the password from the environment
    variable ``password_env`` or the first line of ``password_file``. ``tls_ca``: a CA certificate file (PEM);
    TLS is on when it is given, or when ``tls`` is set (the system's CAs). ``tls_insecure``: skip the check that the
    certificate names ``host`` (never the chain check). ``keepalive_s``: the broker declares the run gone (and
    publishes the Last Will) after 1.5 times this without a packet. ``detections_per_s``: per camera, at most this
    many per-frame summaries a second of the camera's time (0: none at all). ``discovery``: Home Assistant MQTT
    discovery (retained configs under ``homeassistant/sensor/``) for each line's in/out and each zone's occupancy.
    ``outbox``: messages kept while the broker is away (then the oldest are dropped and counted).
    ``connect_timeout_s``: how long opening waits for the broker's answer; ``reconnect_max_s``: the cap of the
    doubling wait between reconnection attempts."""

    host: str
    port: int = DEFAULT_PORT
    prefix: str = DEFAULT_PREFIX
    client_id: str = ""
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    tls: bool = False
    tls_ca: Path | None = None
    tls_insecure: bool = False
    keepalive_s: int = 30
    detections_per_s: float = 2.0
    discovery: bool = True
    outbox: int = 1024
    connect_timeout_s: float = 5.0
    reconnect_max_s: float = 16.0

    def __post_init__(self) -> None:
        where = f"MQTT broker {self.address}"
        if not self.host.strip():
            raise EdgesegError("MQTT: the broker's host is empty")
        if not 1 <= self.port <= 65535:
            raise EdgesegError(f"port must be 1..65535, got {self.port}", where)
        levels = self.prefix.split("/")
        if not self.prefix or MQTT_WILDCARDS.search(self.prefix) or "" in levels:
            raise EdgesegError(f"the topic prefix must be non-empty levels without '+', '#' or '//', got {self.prefix!r}", where)
        if self.password_env is not None and self.password_file is not None:
            raise EdgesegError("give the password by environment variable or by file, not both", where)
        if (self.password_env is not None or self.password_file is not None) and not self.username:
            raise EdgesegError("a password needs a username", where)
        if self.keepalive_s < 5 or self.detections_per_s < 0 or self.outbox < 1:
            raise EdgesegError(
                f"keepalive must be >= 5 s, detections_per_s >= 0 and outbox >= 1, got {self.keepalive_s}, "
                f"{self.detections_per_s} and {self.outbox}",
                where,
            )
        if self.connect_timeout_s <= 0 or self.reconnect_max_s < 1:
            raise EdgesegError("connect_timeout_s must be > 0 and reconnect_max_s >= 1", where)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None

    def session_id(self) -> str:
        """The client id the broker sees (``client_id``, or a fresh ``edgeseg-<host name>-<random>``)."""
        return self.client_id or f"edgeseg-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"

    def password(self) -> str | None:
        """The password from ``password_env`` or ``password_file`` (its first line), None when neither is given;
        one line naming the variable or file when it cannot be read."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise EdgesegError(f"the MQTT password's environment variable ${self.password_env} is not set or empty")
            return value
        if self.password_file is not None:
            try:
                lines = Path(self.password_file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
                raise EdgesegError(f"cannot read the MQTT password ({reason.lower()})", self.password_file) from None
            if not lines or not lines[0]:
                raise EdgesegError("the MQTT password file is empty (the password is its first line)", self.password_file)
            return lines[0]
        return None


def topic_level(name: str) -> str:
    """A camera's name as one topic level: '/', '+', '#' and control characters become '_' (a name is free text:
    a file's stem, a deployment's camera key)."""
    return re.sub(r"[/+#\x00-\x1f]", "_", name) or "_"


def slug(text: str) -> str:
    """``text`` as Home Assistant's ids want it: [a-zA-Z0-9_-], other characters '_'."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)
