"""Where the live view listens and who may watch: ``[HOST:]PORT``, loopback by default, a token anywhere else."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from ..errors import EdgesegError

TOKEN_ENV = "EDGESEG_SERVE_TOKEN"
DEFAULT_HOST = "127.0.0.1"


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port or IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    name, colon, port = header.rpartition(":")
    return name if colon and port.isdigit() else header


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1): only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@dataclass(frozen=True)
class ServeConfig:
    """The live view's server: ``host`` and ``port`` to bind (port 0: a free one), the ``token`` a viewer must give
    (``?token=`` in the URL or ``Authorization: Bearer``; required off loopback), the JPEG ``quality`` of the view,
    how many recent frames' messages an events client may lag behind (``history``) before it skips some, and how
    many ``/stream.mjpg`` and ``/events`` responses may be open at once (``max_viewers``; past it: 503)."""

    host: str = DEFAULT_HOST
    port: int = 8080
    token: str | None = None
    quality: int = 80
    history: int = 64
    max_viewers: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise EdgesegError(f"--serve: port must be 0..65535, got {self.port}")
        if not is_loopback(self.host) and not self.token:
            raise EdgesegError(f"--serve {self.host}: binding off loopback needs a token (--serve-token TOKEN or ${TOKEN_ENV})")
        if not 1 <= self.quality <= 100 or self.history < 1:
            raise EdgesegError(f"live view: quality must be 1..100 and history >= 1, got {self.quality} and {self.history}")
        if self.max_viewers < 1:
            raise EdgesegError(f"live view: max_viewers must be >= 1, got {self.max_viewers}")

    @classmethod
    def from_cli(cls, address: tuple[str, int], token: str | None = None) -> ServeConfig:
        """From ``--serve [HOST:]PORT`` (parsed: (host, port)) and ``--serve-token`` (default: the
        ``EDGESEG_SERVE_TOKEN`` environment variable)."""
        host, port = address
        return cls(host=host, port=port, token=token or os.environ.get(TOKEN_ENV) or None)
