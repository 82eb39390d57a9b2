"""Network addresses: the one parser of ``HOST:PORT`` (the live view's ``--serve``, a Ray cluster's head)."""

from __future__ import annotations

import re

ASCII_INTEGER = re.compile(r"[0-9]+")  # int() also takes '٣' and '²'-like digits (and '_'): a port or count is ASCII


def parse_host_port(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` (and ``PORT`` alone when ``default_host`` is given) -> (host, port): the one
    parser of network addresses (``--serve``, ``--ray-address``). The port is 0..65535 in ASCII digits; a
    ``scheme://`` prefix (Ray's ``ray://``) is kept with the host. Raises ValueError with the reason."""
    scheme, sep, rest = text.strip().rpartition("://")
    host, colon, port = rest.rpartition(":")
    if not colon and default_host is None:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        host = host[1:-1]
    elif "[" in host or "]" in host or (host.count(":") and not sep):
        raise ValueError(f"an IPv6 host goes in brackets ([::1]:PORT), got {text!r}")
    if colon and not host:
        raise ValueError(f"the host is missing before ':', got {text!r}")
    if not ASCII_INTEGER.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {port!r}")
    host = host or default_host or ""
    return (f"{scheme}{sep}{host}" if sep else host), int(port)


def parse_host_optional_port(text: str, *, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` -> (host, port), ``default_port`` when none is given (an
    MQTT broker's address). Raises ValueError with the reason."""
    text = text.strip()
    bare = ":" not in text or (text.startswith("[") and text.endswith("]"))
    return parse_host_port(f"{text}:{default_port}" if bare else text)
