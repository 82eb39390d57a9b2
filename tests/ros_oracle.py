"""The independent ROS 2 side of the tests: mcap-ros2-support's CDR encoder and decoder (a serializer that shares
no code with rosbags), fed with message definitions put together here: the vendored ``.msg`` text read straight
from its files, and the standard types' fields as ROS 2 Humble's common_interfaces / rcl_interfaces define them
(written out below, not taken from rosbags' store)."""

from __future__ import annotations

import functools
from pathlib import Path

from mcap_ros2._dynamic import generate_dynamic, serialize_dynamic

MSG_DIR = Path(__file__).resolve().parents[1] / "src" / "edgeseg" / "outputs" / "ros" / "msg"

# ros2/common_interfaces (humble): the fields of the standard types edgeseg's messages use
STANDARD = {
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "std_msgs/String": "string data",
    "sensor_msgs/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data"
    ),
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data",
    "sensor_msgs/RegionOfInterest": "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify",
    "geometry_msgs/Point32": "float32 x\nfloat32 y\nfloat32 z",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation",
    "geometry_msgs/PoseWithCovariance": "Pose pose\nfloat64[36] covariance",
}


def definitions() -> dict[str, str]:
    """``{"ai_msgs/Roi": text, ...}``: every vendored type's file text and the standard types above."""
    found = {f"{p.parent.name}/{p.stem}": p.read_text(encoding="utf-8") for p in sorted(MSG_DIR.glob("*/*.msg"))}
    assert len(found) >= 25, f"the vendored .msg files are missing from {MSG_DIR}"
    return {**found, **STANDARD}


def concatenated(msgtype: str) -> str:
    """``msgtype``'s definition followed by every other definition, as a rosbag2/MCAP schema concatenates them."""
    short = msgtype.replace("/msg/", "/")
    defs = definitions()
    parts = [defs[short]] + [f"MSG: {name}\n{text}" for name, text in defs.items() if name != short]
    return ("\n" + "=" * 80 + "\n").join(parts)


@functools.cache
def _codec(msgtype: str) -> tuple:
    text = concatenated(msgtype)
    return generate_dynamic(msgtype, text)[msgtype], serialize_dynamic(msgtype, text)[msgtype]


def decode(msgtype: str, data: bytes) -> object:
    """CDR bytes (with the encapsulation header) -> mcap-ros2-support's message object."""
    return _codec(msgtype)[0](data)


def encode(msgtype: str, message: object) -> bytes:
    """A message (object or dicts) -> CDR bytes by mcap-ros2-support's encoder."""
    return _codec(msgtype)[1](message)


def stamp_ns(header: object) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
