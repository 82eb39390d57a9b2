"""Serialising the messages (plain version, to measure)."""

from __future__ import annotations

import numpy as np


class PackedSerializer:
    def __init__(self, store) -> None:
        self.store = store

    def points(self, xy: np.ndarray, msgtype: str) -> list:
        cls = self.store.types[msgtype]
        if msgtype.endswith("Point32"):
            return [cls(x=x, y=y, z=0.0) for x, y in xy.tolist()]
        return [cls(x=x, y=y) for x, y in xy.tolist()]

    def serialize(self, msg: object, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msgtype))
