"""A real MQTT broker for the tests: Debian's mosquitto on a free loopback port, with a generated config (and a
password file made by ``mosquitto_passwd`` when users are given), that a test can stop and start again on the same
port; and a paho subscriber that records what it receives."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(folder: Path) -> None:
    """With openssl: ``ca.pem`` (a test CA), ``server.pem``/``server.key`` (signed by it, for 127.0.0.1 and
    localhost) and ``other-ca.pem`` (a CA that signed nothing here)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=edgeseg test {name}")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )


def wait_for(predicate, timeout_s: float, every_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while not (ok := predicate()) and time.monotonic() < deadline:
        time.sleep(every_s)
    return bool(ok)


class Mosquitto:
    """``mosquitto -c CONFIG`` on 127.0.0.1:``port`` (no persistence: a restart forgets retained messages), run
    from ``folder``. ``users``: name -> password, which makes anonymous logins refused."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen | None = None
        lines = ["per_listener_settings false", "persistence false", f"log_dest file {folder / 'mosquitto.log'}"]
        if os.geteuid() == 0:  # started as root, mosquitto becomes user mosquitto, who cannot read the test's folder
            lines.append("user root")
        lines.append(f"listener {self.port} 127.0.0.1")
        self.tls_port: int | None = None
        if tls:  # a second listener, with TLS: its certificate is signed by ``folder/ca.pem`` for 127.0.0.1
            self.tls_port = free_port()
            make_certificates(folder)
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {folder / 'ca.pem'}"]
            lines += [f"certfile {folder / 'server.pem'}", f"keyfile {folder / 'server.key'}"]
        if users:
            passwords = folder / "passwords"
            passwords.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), name, password], check=True, capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_for(self._answers, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.address}: {(self.folder / 'mosquitto.log').read_text()}")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {self.process.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the broker (the clients' connections drop at once, as when a broker's machine goes away)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process.stderr.close()
            self.process = None


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() when it arrived

    def json(self):
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho client subscribed to ``topics`` (QoS 1) that keeps every message it receives, in order."""

    broker: Mosquitto
    topics: tuple[str, ...] = ("#",)
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt

        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{id(self)}")
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.broker.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the subscriber did not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, message.payload, bool(message.retain), time.monotonic()))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
