"""The one place a frame becomes ROS 2 messages: ``FrameEncoder.encode(frame)`` -> ``list[RosMessage]``.

Every message of a frame has the frame's one stamp (``outputs.base.Stamps``), ``frame_id`` = the camera's name,
and every object has one track id on every topic (0 in ai_msgs and ``""`` in vision_msgs when not tracking).
Each object's outline is found once (the outer contours of its box-local mask, simplified by ~1 px) and used by
every topic that draws it. A run of one camera publishes at the root (``/hobot_dnn_detection``, TROS's default,
so its web display works unchanged); a run of several puts each camera's topics under ``/<camera>/``.

The topics (docs/ros2.md): ``hobot_dnn_detection`` (ai_msgs/PerceptionTargets, as hobot_dnn's yolov8-seg example
publishes it, plus the exact mask), ``hobot_dnn_detection_info`` (ai_msgs/PerceptionInfo), ``detections``
(vision_msgs/Detection2DArray), ``label_info`` (vision_msgs/LabelInfo, latched), ``annotations``
(foxglove_msgs/ImageAnnotations), optionally ``instance_mask`` (mono16) and ``image/compressed`` (JPEG), and when
tracking ``events`` and ``counts`` (std_msgs/String, JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ...draw import color_for
from ...errors import EdgesegError
from ...preprocess import Nv12Frame
from ..base import RunInfo, Stamps
from ..jsonl import json_time
from .message import RosMessage, TopicQos
from .packed import PackedSerializer
from .types import typestore

if TYPE_CHECKING:
    from ...engines.frames import StreamFrame
    from ...results import Detections

RELIABLE = TopicQos()  # rclcpp's QoS(10): reliable, volatile, depth 10 (what hobot_dnn and its web display use)
LATCHED = TopicQos(durability="transient_local", depth=1)  # a late subscriber still gets the class names
EVENTS_QOS = TopicQos(depth=100)  # several crossings may come in one frame: none is overwritten before it is sent

# topic (relative to the camera's namespace) -> (type, offered QoS)
TOPICS: dict[str, tuple[str, TopicQos]] = {
    "hobot_dnn_detection": ("ai_msgs/msg/PerceptionTargets", RELIABLE),
    "hobot_dnn_detection_info": ("ai_msgs/msg/PerceptionInfo", RELIABLE),
    "detections": ("vision_msgs/msg/Detection2DArray", RELIABLE),
    "label_info": ("vision_msgs/msg/LabelInfo", LATCHED),
    "annotations": ("foxglove_msgs/msg/ImageAnnotations", RELIABLE),
    "instance_mask": ("sensor_msgs/msg/Image", RELIABLE),
    "image/compressed": ("sensor_msgs/msg/CompressedImage", RELIABLE),
    "events": ("std_msgs/msg/String", EVENTS_QOS),
    "counts": ("std_msgs/msg/String", RELIABLE),
}
OPTIONAL_TOPICS = ("instance_mask", "image/compressed")

OUTLINE_EPSILON_PX = 1.0  # cv2.approxPolyDP tolerance: an outline within a pixel of the mask's own contour
MIN_PART = 0.1  # a part of a mask under this share of its largest part's area is a speck: no outline of its own
LINE_LOOP, LINE_STRIP = 2, 3  # foxglove_msgs/PointsAnnotation types
_STAMP = struct.Struct("<iI")  # builtin_interfaces/Time in CDR little endian: sec int32, nanosec uint32
_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# the message classes the builders use, by the short names they use them by
_CLASSES = {
    "Time": "builtin_interfaces/msg/Time",
    "Header": "std_msgs/msg/Header",
    "String": "std_msgs/msg/String",
    "Image": "sensor_msgs/msg/Image",
    "CompressedImage": "sensor_msgs/msg/CompressedImage",
    "RegionOfInterest": "sensor_msgs/msg/RegionOfInterest",
    "PerceptionTargets": "ai_msgs/msg/PerceptionTargets",
    "PerceptionInfo": "ai_msgs/msg/PerceptionInfo",
    "Target": "ai_msgs/msg/Target",
    "Roi": "ai_msgs/msg/Roi",
    "Point": "ai_msgs/msg/Point",
    "Capture": "ai_msgs/msg/Capture",
    "DBResult": "ai_msgs/msg/DBResult",
    "Detection2DArray": "vision_msgs/msg/Detection2DArray",
    "Detection2D": "vision_msgs/msg/Detection2D",
    "ObjectHypothesisWithPose": "vision_msgs/msg/ObjectHypothesisWithPose",
    "ObjectHypothesis": "vision_msgs/msg/ObjectHypothesis",
    "LabelInfo": "vision_msgs/msg/LabelInfo",
    "VisionClass": "vision_msgs/msg/VisionClass",
    "ImageAnnotations": "foxglove_msgs/msg/ImageAnnotations",
    "PointsAnnotation": "foxglove_msgs/msg/PointsAnnotation",
    "TextAnnotation": "foxglove_msgs/msg/TextAnnotation",
    "Point2": "foxglove_msgs/msg/Point2",
    "Color": "foxglove_msgs/msg/Color",
}


def ros_name(name: str) -> str:
    """``name`` as one valid ROS 2 name token: letters, digits and single underscores, not starting with a digit
    (``front door`` -> ``front_door``, ``0`` -> ``camera_0``)."""
    token = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", name)).strip("_")
    return token if token[:1].isalpha() else f"camera_{token}".rstrip("_")


def check_namespace(namespace: str) -> str:
    """An absolute namespace (``/`` or ``/a/b``); ``robot1`` is taken as ``/robot1``. A bad one is one line."""
    tokens = [t for t in namespace.strip().split("/") if t]
    for token in tokens:
        if not _TOKEN.match(token) or "__" in token:
            raise EdgesegError(f"{token!r} is not a ROS 2 name (a letter, then letters, digits and single underscores)", "ROS namespace")
    return "/" + "/".join(tokens)


@dataclasses.dataclass(frozen=True)
class RosTopics:
    """Which topics a frame is published on and how.

    ``namespace``: None puts one camera's topics at the root and each of several cameras' under ``/<camera>``; an
    explicit one (``/robot1``) is used instead of the root (several cameras go under ``/robot1/<camera>``).
    ``instance_mask``: also a mono16 ``sensor_msgs/Image`` per frame (pixel = 1 + the object's index in
    ``detections``). ``image``: also the frame as ``sensor_msgs/CompressedImage`` (JPEG at ``jpeg_quality``), what
    TROS's web display and Foxglove pair the results with. ``threshold``: the run's confidence threshold
    (``vision_msgs/LabelInfo.threshold``)."""

    namespace: str | None = None
    instance_mask: bool = False
    image: bool = False
    jpeg_quality: int = 80
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.namespace is not None:
            object.__setattr__(self, "namespace", check_namespace(self.namespace))
        if isinstance(self.jpeg_quality, bool) or not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise EdgesegError(f"must be an integer from 1 to 100, got {self.jpeg_quality!r}", "ROS JPEG quality")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise EdgesegError(f"must be from 0 to 1, got {self.threshold!r}", "ROS label threshold")


@dataclasses.dataclass
class _Object:
    """What every topic says of one detection, computed once."""

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    track_id: int  # 0: not tracked
    outlines: list[np.ndarray]  # (K, 2) float32 in original pixels, each a closed polygon
    mask: np.ndarray | None  # box-local bool mask
    origin: tuple[int, int]  # the mask's top-left pixel (x, y)


def outlines_of(mask: np.ndarray, origin: tuple[int, int]) -> list[np.ndarray]:
    """The outer contours of a box-local mask (pixel indices of its boundary pixels, in original pixels), largest
    first, simplified within ``OUTLINE_EPSILON_PX``. Specks are left out: parts under ``MIN_PART`` of the largest
    one's area, and parts of fewer than 3 points (the exact mask is in the mono8 and mono16 images)."""
    if mask.size == 0:
        return []
    contours, _ = cv2.findContours(np.ascontiguousarray(mask).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) > 1:
        areas = [cv2.contourArea(c) for c in contours]
        least = MIN_PART * max(areas)
        contours = [c for _, c in sorted(zip(areas, contours), key=lambda p: -p[0]) if _ >= least]
    shift = np.float32(origin)
    out = []
    for contour in contours:
        if len(contour) < 3:
            continue
        simple = cv2.approxPolyDP(contour, OUTLINE_EPSILON_PX, True)
        if len(simple) >= 3:
            out.append(simple.reshape(-1, 2).astype(np.float32) + shift)
    return out


def _objects(det: Detections) -> list[_Object]:
    names, tracked = det.class_names, det.track_ids
    objects = []
    for i, (box, score, class_id) in enumerate(zip(det.xyxy.tolist(), det.scores.tolist(), det.class_ids.tolist())):
        mask, origin = None, (0, 0)
        if det.masks is not None and det.mask_origins is not None:
            mask = det.masks[i]
            origin = (int(det.mask_origins[i][0]), int(det.mask_origins[i][1]))
        objects.append(
            _Object(
                class_id=int(class_id),
                class_name=names[i],
                score=float(score),
                box=tuple(box),
                track_id=0 if tracked is None else int(tracked[i]),
                outlines=[] if mask is None else outlines_of(mask, origin),
                mask=mask,
                origin=origin,
            )
        )
    return objects


class FrameEncoder:
    """Builds and serialises a frame's messages (``encode``), once: the bag and the live publisher send these same
    bytes. ``encode`` of the frame it was just given returns the same list again (two outputs of one run share
    one encoder through ``shared``, and with it one stamp per frame)."""

    def __init__(self, run: RunInfo, config: RosTopics = RosTopics(), *, stamps: Stamps | None = None) -> None:
        self.run, self.config = run, config
        self.stamps = stamps if stamps is not None else Stamps(run)
        self.store = typestore()
        self.packed = PackedSerializer(self.store)
        self.t = {name: self.store.types[full] for name, full in _CLASSES.items()}
        self.class_names = list(run.class_names)
        self._namespaces: dict[str, str] = {}
        self._last: dict[str, tuple[StreamFrame, list[RosMessage]]] = {}
        self._empty_f32 = np.zeros(0, np.float32)
        self._empty_u8 = np.zeros(0, np.uint8)
        self._colors: dict[int, tuple[object, object, object]] = {}
        self._constants: dict[tuple[str, tuple], RosMessage] = {}
        T = self.t
        # no pose: position 0, the identity rotation (w 1, as the .msg's default), covariance 0
        self._pose = self.packed.struct("geometry_msgs/msg/PoseWithCovariance", {"pose.orientation.w": 1.0})
        self._class_map = [T["VisionClass"](class_id=i, class_name=name) for i, name in enumerate(self.class_names)]
        self._db_result = T["DBResult"](db_type="", match_id="", distance=0.0, similarity=0.0)

    _shared: FrameEncoder | None = None

    @classmethod
    def shared(cls, run: RunInfo, config: RosTopics = RosTopics()) -> FrameEncoder:
        """The encoder of this run (the very ``run`` object every output is opened with) and ``config``: made by
        the first output that asks, reused by the others. Another ``config`` of the same run gets an encoder of its
        own with the same ``Stamps``: a live camera's frame has one stamp in every output."""
        last = cls._shared
        if last is None or last.run is not run:
            last = cls._shared = cls(run, config)
        elif last.config != config:
            last = cls._shared = cls(run, config, stamps=last.stamps)
        return last

    @classmethod
    def release(cls, run: RunInfo) -> None:
        """Forget the shared encoder of ``run`` (an output's ``close``): it holds the last frame of each camera."""
        if cls._shared is not None and cls._shared.run is run:
            cls._shared = None

    def namespace(self, camera: str) -> str:
        """The prefix of ``camera``'s topics: ``/`` (one camera), ``/<camera>/`` (several), under an explicit
        namespace if one was given."""
        if camera not in self._namespaces:
            base = self.config.namespace
            if len(self.run.cameras) > 1:
                names = [ros_name(c.name) for c in self.run.cameras]
                mine = ros_name(camera)
                if names.count(mine) > 1:
                    raise EdgesegError(f"two cameras have the ROS 2 name {mine!r}: rename one", camera)
                base = f"{base or ''}/{mine}"
            self._namespaces[camera] = (base or "").rstrip("/") + "/"
        return self._namespaces[camera]

    def topics(self, tracking: bool) -> list[str]:
        """The relative topics a frame is published on (``events`` and ``counts`` only when ``tracking``)."""
        on = [t for t in TOPICS if t not in OPTIONAL_TOPICS and t not in ("events", "counts")]
        on += [t for t, flag in zip(OPTIONAL_TOPICS, (self.config.instance_mask, self.config.image)) if flag]
        return on + (["events", "counts"] if tracking else [])

    def encode(self, frame: StreamFrame) -> list[RosMessage]:
        """The frame's messages, one per topic (``events``: one per counting event); none for a failed frame."""
        last = self._last.get(frame.camera)
        if last is not None and last[0] is frame:
            return last[1]
        messages = [] if not frame.ok or frame.detections is None else self._build(frame)
        self._last[frame.camera] = (frame, messages)
        return messages

    # -- building ---------------------------------------------------------------------------------------------

    def _build(self, frame: StreamFrame) -> list[RosMessage]:
        det = frame.detections
        stamp_ns = self.stamps.of(frame)
        prefix = self.namespace(frame.camera)
        T = self.t
        time = self.packed.struct("builtin_interfaces/msg/Time", {"sec": stamp_ns // 1_000_000_000, "nanosec": stamp_ns % 1_000_000_000})
        header = T["Header"](stamp=time, frame_id=frame.camera)
        objects = _objects(det)
        h, w = (int(v) for v in det.image_shape)
        built: list[tuple[str, object]] = [
            ("hobot_dnn_detection", self._perception_targets(header, objects)),
            ("hobot_dnn_detection_info", lambda: T["PerceptionInfo"](header=header, height=h, width=w, class_names=self.class_names)),
            ("detections", self._detections(header, objects)),
            ("label_info", lambda: self._label_info(header)),
            ("annotations", self._annotations(time, objects, frame)),
        ]
        if self.config.instance_mask:
            built.append(("instance_mask", self._instance_mask(header, objects, h, w)))
        if self.config.image and frame.image is not None:
            built.append(("image/compressed", self._jpeg(header, frame.image)))
        messages = [
            self._constant(prefix, topic, msg, stamp_ns, (frame.camera, h, w))
            if callable(msg)
            else self._message(prefix, topic, msg, stamp_ns)
            for topic, msg in built
        ]
        if frame.tracking is not None:
            time_s = json_time(frame.time_s)
            for event in frame.tracking.events:
                text = {
                    "camera": frame.camera,
                    "track_id": event["track_id"],
                    "class_name": event["class_name"],
                    "type": event["type"],
                    "name": event["name"],
                    "direction": event.get("direction", event.get("event")),
                    "frame": frame.index,
                    "time_s": time_s,
                    "stamp": stamp_ns,
                }
                messages.append(self._message(prefix, "events", T["String"](data=json.dumps(text)), stamp_ns))
            counts = {"camera": frame.camera, "frame": frame.index, "time_s": time_s, "stamp": stamp_ns, "counts": frame.tracking.counts}
            messages.append(self._message(prefix, "counts", T["String"](data=json.dumps(counts)), stamp_ns))
        return messages

    def _message(self, prefix: str, topic: str, msg: object, stamp_ns: int) -> RosMessage:
        msgtype, qos = TOPICS[topic]
        return RosMessage(topic=prefix + topic, msgtype=msgtype, data=self.packed.serialize(msg, msgtype), stamp_ns=stamp_ns, qos=qos)

    def _constant(self, prefix: str, topic: str, build: Callable[[], object], stamp_ns: int, key: tuple) -> RosMessage:
        """A message that differs from frame to frame only in its header's stamp: serialised by rosbags once per
        camera and image size, then the stamp's 8 bytes (the first field, right after CDR's 4-byte encapsulation
        header, so nothing after it moves) written anew."""
        cached = self._constants.get((topic, key))
        if cached is None:
            cached = self._constants[(topic, key)] = self._message(prefix, topic, build(), stamp_ns)
        data = bytearray(cached.data)
        _STAMP.pack_into(data, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
        return dataclasses.replace(cached, data=bytes(data), stamp_ns=stamp_ns)

    def _perception_targets(self, header: object, objects: list[_Object]) -> object:
        T = self.t
        targets = []
        for o in objects:
            x1, y1, x2, y2 = o.box
            x0, y0 = max(math.floor(x1), 0), max(math.floor(y1), 0)
            rect = T["RegionOfInterest"](x_offset=x0, y_offset=y0, height=math.ceil(y2) - y0, width=math.ceil(x2) - x0, do_rectify=False)
            rois = [T["Roi"](type=o.class_name, rect=rect, confidence=o.score)]
            points, captures = [], []
            if o.mask is not None:
                mh, mw = o.mask.shape
                where = T["RegionOfInterest"](x_offset=o.origin[0], y_offset=o.origin[1], height=mh, width=mw, do_rectify=False)
                rois.append(T["Roi"](type="mask", rect=where, confidence=o.score))
                points = [
                    T["Point"](
                        type="mask",
                        point=self.packed.sequence("geometry_msgs/msg/Point32", {"x": outline[:, 0], "y": outline[:, 1]}),
                        confidence=self._empty_f32,
                    )
                    for outline in o.outlines
                ]
                pixels = np.ascontiguousarray(o.mask).view(np.uint8).reshape(-1) * np.uint8(255)
                img = T["Image"](header=header, height=mh, width=mw, encoding="mono8", is_bigendian=0, step=mw, data=pixels)
                captures = [T["Capture"](header=header, img=img, features=self._empty_f32, db_result=self._db_result)]
            targets.append(T["Target"](type=o.class_name, track_id=o.track_id, rois=rois, attributes=[], points=points, captures=captures))
        return T["PerceptionTargets"](header=header, fps=-1, perfs=[], targets=targets, disappeared_targets=[])

    def _detections(self, header: object, objects: list[_Object]) -> object:
        T = self.t
        out = []
        for o in objects:
            x1, y1, x2, y2 = o.box
            hypothesis = T["ObjectHypothesis"](class_id=str(o.class_id), score=o.score)
            center = {"center.position.x": (x1 + x2) / 2, "center.position.y": (y1 + y2) / 2}
            bbox = self.packed.struct("vision_msgs/msg/BoundingBox2D", {**center, "size_x": x2 - x1, "size_y": y2 - y1})
            out.append(
                T["Detection2D"](
                    header=header,
                    results=[T["ObjectHypothesisWithPose"](hypothesis=hypothesis, pose=self._pose)],
                    bbox=bbox,
                    id=str(o.track_id) if o.track_id else "",
                )
            )
        return T["Detection2DArray"](header=header, detections=out)

    def _label_info(self, header: object) -> object:
        T = self.t
        return T["LabelInfo"](header=header, class_map=self._class_map, threshold=float(self.config.threshold))

    def _rgba(self, r: float, g: float, b: float, a: float) -> object:
        return self.packed.struct("foxglove_msgs/msg/Color", {"r": r, "g": g, "b": b, "a": a})

    def _color(self, class_id: int) -> tuple[object, object, object]:
        """(outline, fill, label background) of a class: the overlays' palette."""
        if class_id not in self._colors:
            b, g, r = (c / 255.0 for c in color_for(class_id))
            self._colors[class_id] = tuple(self._rgba(r, g, b, a) for a in (1.0, 0.3, 0.8))
        return self._colors[class_id]

    def _annotations(self, time: object, objects: list[_Object], frame: StreamFrame) -> object:
        T = self.t
        white, none = self._rgba(1.0, 1.0, 1.0, 1.0), self._rgba(0.0, 0.0, 0.0, 0.0)
        points, texts = [], []
        for o in objects:
            outline, fill, label = self._color(o.class_id)
            for part in o.outlines:
                pts = self.packed.sequence("foxglove_msgs/msg/Point2", {"x": part[:, 0], "y": part[:, 1]})
                points.append(
                    T["PointsAnnotation"](
                        timestamp=time, type=LINE_LOOP, points=pts, outline_color=outline, outline_colors=[], fill_color=fill, thickness=2.0
                    )
                )
            text = f"{o.class_name} {o.score:.2f}" if not o.track_id else f"#{o.track_id} {o.class_name} {o.score:.2f}"
            position = self.packed.struct("foxglove_msgs/msg/Point2", {"x": o.box[0], "y": o.box[1]})
            texts.append(
                T["TextAnnotation"](timestamp=time, position=position, text=text, font_size=14.0, text_color=white, background_color=label)
            )
        if frame.tracking is not None:
            yellow = self._rgba(1.0, 0.85, 0.0, 1.0)
            for kind, shapes in ((LINE_STRIP, frame.tracking.lines), (LINE_LOOP, frame.tracking.zones)):
                color = white if kind == LINE_STRIP else yellow
                for name, pts, counts in shapes:
                    pts = np.asarray(pts, np.float32).reshape(-1, 2)
                    points.append(
                        T["PointsAnnotation"](
                            timestamp=time,
                            type=kind,
                            points=self.packed.sequence("foxglove_msgs/msg/Point2", {"x": pts[:, 0], "y": pts[:, 1]}),
                            outline_color=color,
                            outline_colors=[],
                            fill_color=none,
                            thickness=2.0,
                        )
                    )
                    said = f"in {counts['in']} out {counts['out']}" if kind == LINE_STRIP else f"occupancy {counts['occupancy']}"
                    at = self.packed.struct("foxglove_msgs/msg/Point2", {"x": float(pts[0][0]), "y": float(pts[0][1])})
                    texts.append(
                        T["TextAnnotation"](
                            timestamp=time, position=at, text=f"{name}: {said}", font_size=14.0, text_color=color, background_color=none
                        )
                    )
        return T["ImageAnnotations"](circles=[], points=points, texts=texts)

    def _instance_mask(self, header: object, objects: list[_Object], h: int, w: int) -> object:
        image = np.zeros((h, w), "<u2")  # little endian, as is_bigendian=0 says
        for k, o in enumerate(objects):
            if o.mask is not None:
                mh, mw = o.mask.shape
                x0, y0 = o.origin
                image[y0 : y0 + mh, x0 : x0 + mw][o.mask] = k + 1
        data = image.view(np.uint8).reshape(-1)
        return self.t["Image"](header=header, height=h, width=w, encoding="mono16", is_bigendian=0, step=2 * w, data=data)

    def _jpeg(self, header: object, image: np.ndarray | Nv12Frame) -> object:
        if isinstance(image, Nv12Frame):  # a board camera's frame: its colour conversion is paid only here
            image = image.to_bgr()
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        return self.t["CompressedImage"](header=header, format="jpeg", data=data.reshape(-1) if ok else self._empty_u8)
