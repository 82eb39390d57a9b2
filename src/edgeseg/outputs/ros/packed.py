"""Serialising messages with rosbags, with sequences of small fixed-size structs written in one copy.

rosbags generates each type's CDR serializer from its field definitions; a sequence of messages is written
element by element (``for item in val: pos = func(rawdata, pos, item, typestore)``), so an outline of 40
``geometry_msgs/Point32`` costs 40 calls and 120 ``struct.pack_into``. A struct whose fields are all primitive
numbers laid out without padding (Point32, foxglove's Point2 and Color: ``packable``) has exactly numpy's packed
record layout in CDR, so ``PackedSerializer.sequence`` makes such a sequence a ``Packed`` (a numpy record array,
its dtype derived from the typestore's field definitions) and the serializer copies its bytes at once: the
sequence yields itself once (the copy) and then ``len - 1`` markers that only advance the position, through a
typestore view whose message definition of that struct does exactly that. Everything else is rosbags' own code.

The first message of each type is also serialised the plain way (every ``Packed`` turned back into message
objects) and compared byte for byte; a difference (a rosbags whose generated code changed shape) turns the fast
path off for good, so the bytes are always rosbags' bytes. The tests compare both with an independent encoder.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

log = logging.getLogger("edgeseg")

_DTYPES = {
    "bool": "u1",
    "byte": "u1",
    "char": "u1",
    "int8": "i1",
    "uint8": "u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "int64": "<i8",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}
_SKIP = object()  # "this element was copied with the first one": advance only


class Packed:
    """A sequence of ``n`` structs of one packable type as one little-endian record array."""

    __slots__ = ("msgtype", "records")

    def __init__(self, msgtype: str, records: np.ndarray) -> None:
        self.msgtype, self.records = msgtype, records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[object]:
        if len(self.records):
            yield self
            for _ in range(len(self.records) - 1):
                yield _SKIP


def packed_dtype(store: Typestore, msgtype: str) -> np.dtype | None:
    """The numpy record dtype whose layout equals ``msgtype``'s CDR layout, or None when it has none (a string,
    a sequence, a nested message, or padding between fields or at the end)."""
    from rosbags.interfaces import Nodetype

    fields, offset, widest = [], 0, 1
    for name, desc in store.fielddefs[msgtype][1]:
        if desc[0] != Nodetype.BASE or desc[1][0] not in _DTYPES:
            return None
        dtype = np.dtype(_DTYPES[desc[1][0]])
        if offset % dtype.itemsize:  # CDR would pad here
            return None
        fields.append((name, dtype))
        offset += dtype.itemsize
        widest = max(widest, dtype.itemsize)
    if not fields or offset % widest:  # the next element would start after padding
        return None
    return np.dtype(fields)


class _View:
    """The typestore as the generated serializers see it, with the packable structs' definitions replaced by
    ones that copy a ``Packed`` at once."""

    def __init__(self, store: Typestore, packable: dict[str, np.dtype]) -> None:
        self.store = store
        self.defs = {name: self._bulk(name) for name in packable}

    def _bulk(self, name: str) -> object:
        msgdef = self.store.get_msgdef(name)
        size, plain = msgdef.size_cdr, msgdef.serialize_cdr_le

        def serialize_cdr_le(rawdata, pos, item, typestore):
            if item is _SKIP:
                return pos + size
            if isinstance(item, Packed):
                data = item.records.view(np.uint8).reshape(-1)
                rawdata[pos : pos + len(data)] = data
                return pos + size
            return plain(rawdata, pos, item, typestore)

        return dataclasses.replace(msgdef, serialize_cdr_le=serialize_cdr_le)

    def get_msgdef(self, name: str) -> object:
        found = self.defs.get(name)
        return found if found is not None else self.store.get_msgdef(name)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


class PackedSerializer:
    """``serialize(msg, msgtype)`` -> CDR bytes (little endian, with the encapsulation header), as
    ``Typestore.serialize_cdr`` writes them; ``sequence(msgtype, columns)`` -> the sequence field value."""

    def __init__(self, store: Typestore) -> None:
        self.store = store
        self.dtypes = {name: dtype for name in store.fielddefs if (dtype := packed_dtype(store, name)) is not None}
        self.view = _View(store, self.dtypes)
        self.fast = True
        self._checked: set[str] = set()

    def sequence(self, msgtype: str, columns: np.ndarray) -> Packed | list[object]:
        """A sequence of ``msgtype`` from ``columns`` ((n, k): its first k fields in order, the others 0); message
        objects when the fast path is off or the type is not packable."""
        dtype = self.dtypes.get(msgtype)
        n, k = columns.shape
        if dtype is None or not self.fast:
            cls = self.store.types[msgtype]
            zeros = [0] * (len(self.store.fielddefs[msgtype][1]) - k)
            return [cls(*row, *zeros) for row in columns.tolist()]
        kinds = {dtype.fields[name][0] for name in dtype.names}
        if len(kinds) == 1:  # one number type: the records are a plain (n, fields) array's bytes
            records = np.zeros((n, len(dtype.names)), kinds.pop())
            records[:, :k] = columns
            return Packed(msgtype, records.view(dtype).reshape(-1))
        records = np.zeros(n, dtype)
        for name, column in zip(dtype.names, columns.T):
            records[name] = column
        return Packed(msgtype, records)

    def serialize(self, msg: object, msgtype: str) -> bytes:
        msgdef = self.store.get_msgdef(msgtype)
        size = 4 + msgdef.getsize_cdr(0, msg, self.store)
        raw = bytearray(size)
        struct.pack_into("BB", raw, 0, 0, 1)  # CDR little endian
        if self.fast:
            end = msgdef.serialize_cdr_le(memoryview(raw)[4:], 0, msg, self.view)
            if msgtype not in self._checked:
                self._checked.add(msgtype)
                plain = bytes(self.store.serialize_cdr(unpacked(self.store, msg), msgtype))
                if plain != bytes(raw):
                    self.fast = False
                    log.warning("rosbags' serializer is not the shape edgeseg's packed sequences expect: writing them element by element")
                    return plain
        else:
            end = msgdef.serialize_cdr_le(memoryview(raw)[4:], 0, unpacked(self.store, msg), self.store)
        assert end + 4 == size, (end, size)
        return bytes(raw)


def unpacked(store: Typestore, msg: object) -> object:
    """``msg`` with every ``Packed`` turned back into message objects (a copy where anything changed)."""
    if isinstance(msg, Packed):
        cls = store.types[msg.msgtype]
        return [cls(*row) for row in msg.records.tolist()]
    if isinstance(msg, list):
        return [unpacked(store, item) for item in msg]
    if dataclasses.is_dataclass(msg):
        changes = {}
        for f in dataclasses.fields(msg):
            value = getattr(msg, f.name)
            if isinstance(value, (list, Packed)) or dataclasses.is_dataclass(value):
                new = unpacked(store, value)
                if new is not value:
                    changes[f.name] = new
        return dataclasses.replace(msg, **changes) if changes else msg
    return msg
