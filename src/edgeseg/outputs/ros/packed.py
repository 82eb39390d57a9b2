"""Serialising messages with rosbags, with small fixed-size structs written as one copy.

rosbags generates each type's CDR serializer from its field definitions and writes a sequence of messages element
by element (``for item in val: pos = func(rawdata, pos, item, typestore)``): an outline of 40
``geometry_msgs/Point32`` costs 40 calls and 120 ``struct.pack_into``. A struct made only of numbers (nested structs
and fixed arrays of numbers included) that CDR lays out without any padding (Point32, foxglove's Point2 and Color,
builtin_interfaces' Time, vision_msgs' BoundingBox2D, geometry_msgs' PoseWithCovariance: ``packable``) is, in CDR,
exactly its fields packed back to back. ``PackedSerializer.sequence`` / ``struct`` make such values a ``Packed``
(their bytes, packed with ``struct`` codes derived from the typestore's field definitions: ``packed_layout``), and
the serializer copies those bytes at once, through a view of the typestore whose definition of that struct does
exactly that. While the sizes are counted a ``Packed`` sequence iterates as its ``n`` elements (rosbags adds each
one's size); while the bytes are written it iterates once (the one copy). Everything else is rosbags' own code.

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
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

log = logging.getLogger("edgeseg")

_CHARS = {  # struct's little-endian codes of the CDR primitives (sizes as CDR's)
    "bool": "?",
    "byte": "B",
    "char": "B",
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
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


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a packable struct lies in CDR: its fields flattened (nested structs and fixed arrays included), by
    ``paths`` (``center.position.x``, ``covariance[3]``) and ``struct`` ``codes``, with no padding anywhere;
    ``align`` is the widest field's size, which is also the first's (so the one alignment rosbags applies before
    the struct aligns every field in it)."""

    paths: tuple[str, ...]
    codes: str
    align: int

    @property
    def packer(self) -> struct.Struct:
        return struct.Struct("<" + self.codes)


def packed_layout(store: Typestore, msgtype: str) -> Layout | None:
    """``msgtype``'s ``Layout``, or None when it has none (a string, a sequence, padding between fields or at the
    end, or a first field narrower than the widest)."""
    from rosbags.interfaces import Nodetype

    paths: list[str] = []
    codes, offset, widest, first = "", 0, 1, None
    for name, desc in store.fielddefs[msgtype][1]:
        if desc[0] == Nodetype.BASE and desc[1][0] in _CHARS:
            part, names = _CHARS[desc[1][0]], [name]
            align = struct.calcsize("<" + part)
        elif desc[0] == Nodetype.NAME and (sub := packed_layout(store, desc[1])) is not None:
            part, names, align = sub.codes, [f"{name}.{p}" for p in sub.paths], sub.align
        elif desc[0] == Nodetype.ARRAY and desc[1][0][0] == Nodetype.BASE and desc[1][0][1][0] in _CHARS:
            part, names = _CHARS[desc[1][0][1][0]] * desc[1][1], [f"{name}[{i}]" for i in range(desc[1][1])]
            align = struct.calcsize("<" + part[0])
        else:
            return None
        if offset % align:  # CDR would pad here
            return None
        first = align if first is None else first
        paths += names
        codes += part
        offset += struct.calcsize("<" + part)
        widest = max(widest, align)
    if not codes or offset % widest or first != widest:
        return None
    return Layout(tuple(paths), codes, widest)


def build(store: Typestore, msgtype: str, values: Iterator[object]) -> object:
    """A ``msgtype`` message object from its flattened field ``values`` (a ``Layout``'s order)."""
    from rosbags.interfaces import Nodetype

    args: list[object] = []
    for _, desc in store.fielddefs[msgtype][1]:
        if desc[0] == Nodetype.BASE:
            args.append(next(values))
        elif desc[0] == Nodetype.NAME:
            args.append(build(store, desc[1], values))
        else:
            base = np.dtype("<" + _CHARS[desc[1][0][1][0]])
            args.append(np.array([next(values) for _ in range(desc[1][1])], base))
    return store.types[msgtype](*args)


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

    def __init__(self, store: Typestore, packable: dict[str, Layout]) -> None:
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
        self.layouts = {name: layout for name in store.fielddefs if (layout := packed_layout(store, name)) is not None}
        self.packers = {name: layout.packer for name, layout in self.layouts.items()}
        # the numpy type of a layout made of one number type ("" when mixed): its records are one array's bytes
        self.uniform = {name: "<" + lay.codes[0] if len(set(lay.codes)) == 1 else "" for name, lay in self.layouts.items()}
        self.view = _View(store, self.layouts)
        self.fast = True
        self._checked: set[str] = set()

    def _layout(self, msgtype: str, names: Iterable[str]) -> Layout:
        layout = self.layouts.get(msgtype)
        if layout is None:
            raise ValueError(f"{msgtype} is not a struct of numbers without padding")
        unknown = [name for name in names if name not in layout.paths]
        if unknown:
            raise KeyError(f"{msgtype} has no field {unknown[0]!r}")
        return layout

    def sequence(self, msgtype: str, columns: Mapping[str, np.ndarray]) -> Packed | list[object]:
        """A sequence of ``msgtype`` from ``columns`` (field path -> n values; the fields not given are 0); message
        objects when the fast path is off."""
        layout = self._layout(msgtype, columns)
        n = len(next(iter(columns.values())))
        uniform = self.uniform[msgtype]
        records = np.zeros((n, len(layout.paths)), uniform or np.float64)
        for path, column in columns.items():
            records[:, layout.paths.index(path)] = column
        if not self.fast:
            return [build(self.store, msgtype, iter(row)) for row in records.tolist()]
        if uniform:  # one number type: the records are a plain (n, fields) array's bytes
            return Packed(msgtype, records.tobytes(), n)
        packer = self.packers[msgtype]
        return Packed(msgtype, b"".join(packer.pack(*row) for row in records.tolist()), n)

    def struct(self, msgtype: str, values: Mapping[str, object]) -> object:
        """One ``msgtype`` (a struct field's value) from ``values`` (field path -> value; the fields not given are
        0); a message object when the fast path is off."""
        layout = self._layout(msgtype, values)
        flat = [values.get(path, 0) for path in layout.paths]
        if not self.fast:
            return build(self.store, msgtype, iter(flat))
        return Packed(msgtype, self.packers[msgtype].pack(*flat), 1, single=True)

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
        packer = packed_layout(store, msg.msgtype).packer
        structs = [build(store, msg.msgtype, iter(row)) for row in packer.iter_unpack(msg.data)]
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
