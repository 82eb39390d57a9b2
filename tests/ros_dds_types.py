"""The DDS types the loopback tests read with, written here by hand from the ``.msg`` text (ai_msgs from
D-Robotics/hobot_msgs, std_msgs, sensor_msgs, geometry_msgs, builtin_interfaces of ROS 2 Humble), under the names
ROS 2's rmw gives them on DDS (``pkg::msg::dds_::Type_``). They share nothing with edgeseg's code (which builds its
types from the typestore): a reader of these types only matches a writer whose types have the same structure and
names. Imported only where cyclonedds is installed (the ``[ros-dds]`` extra)."""

# No ``from __future__ import annotations``: cyclonedds reads the field types from the live annotations.
from dataclasses import dataclass

from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as t


@dataclass
class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str


@dataclass
class Time_(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: t.int32
    nanosec: t.uint32


@dataclass
class Header_(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time_
    frame_id: str


@dataclass
class RegionOfInterest_(IdlStruct, typename="sensor_msgs::msg::dds_::RegionOfInterest_"):
    x_offset: t.uint32
    y_offset: t.uint32
    height: t.uint32
    width: t.uint32
    do_rectify: bool


@dataclass
class Image_(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header_
    height: t.uint32
    width: t.uint32
    encoding: str
    is_bigendian: t.uint8
    step: t.uint32
    data: t.sequence[t.uint8]


@dataclass
class Point32_(IdlStruct, typename="geometry_msgs::msg::dds_::Point32_"):
    x: t.float32
    y: t.float32
    z: t.float32


@dataclass
class Perf_(IdlStruct, typename="ai_msgs::msg::dds_::Perf_"):
    type: str
    stamp_start: Time_
    stamp_end: Time_
    time_ms_duration: t.float64


@dataclass
class Roi_(IdlStruct, typename="ai_msgs::msg::dds_::Roi_"):
    type: str
    rect: RegionOfInterest_
    confidence: t.float32


@dataclass
class Attribute_(IdlStruct, typename="ai_msgs::msg::dds_::Attribute_"):
    type: str
    value: t.float32
    confidence: t.float32


@dataclass
class Point_(IdlStruct, typename="ai_msgs::msg::dds_::Point_"):
    type: str
    point: t.sequence[Point32_]
    confidence: t.sequence[t.float32]


@dataclass
class DBResult_(IdlStruct, typename="ai_msgs::msg::dds_::DBResult_"):
    db_type: str
    match_id: str
    distance: t.float32
    similarity: t.float32


@dataclass
class Capture_(IdlStruct, typename="ai_msgs::msg::dds_::Capture_"):
    header: Header_
    img: Image_
    features: t.sequence[t.float32]
    db_result: DBResult_


@dataclass
class Target_(IdlStruct, typename="ai_msgs::msg::dds_::Target_"):
    type: str
    track_id: t.uint64
    rois: t.sequence[Roi_]
    attributes: t.sequence[Attribute_]
    points: t.sequence[Point_]
    captures: t.sequence[Capture_]


@dataclass
class PerceptionTargets_(IdlStruct, typename="ai_msgs::msg::dds_::PerceptionTargets_"):
    header: Header_
    fps: t.int16
    perfs: t.sequence[Perf_]
    targets: t.sequence[Target_]
    disappeared_targets: t.sequence[Target_]
