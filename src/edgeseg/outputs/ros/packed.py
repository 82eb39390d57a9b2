"""Serialising messages with rosbags, with small fixed-size structs written as one copy.

rosbags generates each type's CDR serializer from its field definitions and writes a sequence of messages element
by element (``for item in val: pos = func(rawdata, pos, item, typestore)``): an outline of 40
``geometry_msgs/Point32`` costs 40 calls and 120 ``struct.pack_into``. A struct whose fields are all primitive
numbers laid out without padding (Point32, foxglove's Point2 and Color, builtin_interfaces' Time: ``packable``)
has exactly numpy's packed record layout in CDR. ``PackedSerializer.sequence`` / ``struct`` make such values a
``Packed`` (a record array, its dtype derived from the typestore's field definitions), and the serializer copies
its bytes at once, through a view of the typestore whose definition of that struct does exactly that. While the
sizes are counted a ``Packed`` sequence iterates as its ``n`` elements (rosbags adds each one's size); while the
bytes are written it iterates once (the one copy). Everything else is rosbags' own code.

The first message of each type is also serialised the plain way (every ``Packed`` turned back into message
objects) and compared byte for byte; a difference (a rosbags whose generated code changed shape) turns the fast
path off for good, so the bytes are always rosbags' bytes. The tests compare both with an independent encoder.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import struct
import threading
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
_writing = threading.local()  # .now: True while a serializer writes bytes (a Packed sequence is then one copy)


class Packed:
    """Structs of one packable type as one little-endian record array: a sequence field's value, or with
    ``single`` one struct field's."""

    __slots__ = ("msgtype", "data", "n", "single")

    def __init__(self, msgtype: str, data: bytes, n: int, *, single: bool = False) -> None:
        self.msgtype, self.data, self.n, self.single = msgtype, data, n, single

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[object]:
        if getattr(_writing, "now", False):
            return iter((self,) if self.n else ())
        return itertools.repeat(None, self.n)


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


class _Definitions(dict):
    """Message definitions by name, each fetched from the typestore once."""

    def __init__(self, store: Typestore) -> None:
        super().__init__()
        self.store = store

    def __missing__(self, name: str) -> object:
        self[name] = found = self.store.get_msgdef(name)
        return found


class _View:
    """The typestore as the generated serializers see it, with the packable structs' definitions replaced by
    ones that copy a ``Packed`` at once."""

    def __init__(self, store: Typestore, packable: dict[str, np.dtype]) -> None:
        self.store = store
        defs = _Definitions(store)
        defs.update({name: self._bulk(name) for name in packable})
        self.get_msgdef = defs.__getitem__  # a dict lookup: the generated code asks for every nested message

    def _bulk(self, name: str) -> object:
        msgdef = self.store.get_msgdef(name)
        plain = msgdef.serialize_cdr_le

        def serialize_cdr_le(rawdata, pos, item, typestore):
            if isinstance(item, Packed):
                end = pos + len(item.data)
                rawdata[pos:end] = item.data
                return end
            return plain(rawdata, pos, item, typestore)

        return dataclasses.replace(msgdef, serialize_cdr_le=serialize_cdr_le)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


class PackedSerializer:
    """``serialize(msg, msgtype)`` -> CDR bytes (little endian, with the encapsulation header), as
    ``Typestore.serialize_cdr`` writes them; ``sequence(msgtype, columns)`` -> the sequence field value."""

    def __init__(self, store: Typestore) -> None:
        self.store = store
        self.dtypes = {name: dtype for name in store.fielddefs if (dtype := packed_dtype(store, name)) is not None}
        self.packers = {
            name: struct.Struct("<" + "".join(dtype.fields[f][0].char for f in dtype.names)) for name, dtype in self.dtypes.items()
        }
        self.view = _View(store, self.dtypes)
        self.fast = True
        self._checked: set[str] = set()

    def sequence(self, msgtype: str, columns: np.ndarray) -> Packed | list[object]:
        """A sequence of ``msgtype`` from ``columns`` ((n, k): its first k fields in order, the others 0); message
        objects when the fast path is off or the type is not packable."""
        dtype = self.dtypes.get(msgtype)
        k = columns.shape[1]
        if dtype is None or not self.fast:
            cls = self.store.types[msgtype]
            zeros = [0] * (len(self.store.fielddefs[msgtype][1]) - k)
            return [cls(*row, *zeros) for row in columns.tolist()]
        return Packed(msgtype, self._records(dtype, columns).tobytes(), len(columns))

    def struct(self, msgtype: str, *values: float) -> object:
        """One ``msgtype`` (a struct field's value) from its first fields' ``values`` (the others 0)."""
        dtype = self.dtypes.get(msgtype)
        if dtype is None or not self.fast:
            cls = self.store.types[msgtype]
            return cls(*values, *[0] * (len(self.store.fielddefs[msgtype][1]) - len(values)))
        packer = self.packers[msgtype]
        return Packed(msgtype, packer.pack(*values, *[0] * (len(dtype.names) - len(values))), 1, single=True)

    @staticmethod
    def _records(dtype: np.dtype, columns: np.ndarray) -> np.ndarray:
        n, k = columns.shape
        kinds = {dtype.fields[name][0] for name in dtype.names}
        if len(kinds) == 1:  # one number type: the records are a plain (n, fields) array's bytes
            records = np.zeros((n, len(dtype.names)), kinds.pop())
            records[:, :k] = columns
            return records.view(dtype).reshape(-1)
        records = np.zeros(n, dtype)
        for name, column in zip(dtype.names, columns.T):
            records[name] = column
        return records

    def serialize(self, msg: object, msgtype: str) -> bytes:
        if not self.fast:  # message objects throughout (``sequence`` and ``struct`` make them once it is off)
            try:
                return bytes(self.store.serialize_cdr(msg, msgtype))
            except AttributeError:  # built before the fast path went off: it still holds a Packed
                return bytes(self.store.serialize_cdr(unpacked(self.store, msg), msgtype))
        msgdef = self.store.get_msgdef(msgtype)
        size = 4 + msgdef.getsize_cdr(0, msg, self.store)
        raw = bytearray(size)
        struct.pack_into("BB", raw, 0, 0, 1)  # CDR little endian
        _writing.now = True
        try:
            end = msgdef.serialize_cdr_le(memoryview(raw)[4:], 0, msg, self.view)
        finally:
            _writing.now = False
        if msgtype not in self._checked:
            self._checked.add(msgtype)
            plain = bytes(self.store.serialize_cdr(unpacked(self.store, msg), msgtype))
            if plain != bytes(raw) or end + 4 != size:
                self.fast = False
                log.warning("rosbags' serializer is not the shape edgeseg's packed structs expect: writing them field by field")
                return plain
        return bytes(raw)


def unpacked(store: Typestore, msg: object) -> object:
    """``msg`` with every ``Packed`` turned back into message objects (a copy where anything changed)."""
    if isinstance(msg, Packed):
        cls = store.types[msg.msgtype]
        dtype = packed_dtype(store, msg.msgtype)
        structs = [cls(*row) for row in np.frombuffer(msg.data, dtype).tolist()]
        return structs[0] if msg.single else structs
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
