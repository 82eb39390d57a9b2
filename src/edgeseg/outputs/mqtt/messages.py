"""What the MQTT output publishes, as plain data: the topics of a camera, the JSON payloads of a frame's events,
counts and detections, a camera's state, and Home Assistant's discovery configs (docs/mqtt.md shows each)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NamedTuple

from ..jsonl import json_time
from .config import DISCOVERY_PREFIX, slug, topic_level

if TYPE_CHECKING:
    from ...engines.frames import StreamFrame, StreamStats
    from ..base import CameraInfo

ONLINE, OFFLINE = b"online", b"offline"


class Publish(NamedTuple):
    """One MQTT message as handed to the outbox."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def dumps(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Topics:
    """The topics under ``prefix``: ``status`` for the run, and per camera ``events``, ``counts``, ``detections``
    and ``state``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.status = f"{prefix}/status"

    def of(self, camera: str, what: str) -> str:
        return f"{self.prefix}/{topic_level(camera)}/{what}"


def frame_head(frame: StreamFrame, stamp_s: float) -> dict:
    """What every message of a frame starts with: its camera, ``time_s`` exactly as the JSON Lines write it, and
    the capture stamp in UNIX seconds (``outputs.base.Stamps``: a file's equals ``time_s``)."""
    return {
        "camera": frame.camera,
        "frame": frame.index,
        "time_s": json_time(frame.time_s),
        "stamp": stamp_s,
    }


def event_messages(topics: Topics, frame: StreamFrame, stamp_s: float) -> list[Publish]:
    """Each counting event of the frame (a line crossing: ``direction`` in/out; a zone: ``event`` enter/exit) with
    the JSON Lines event's own fields, QoS 1, not retained."""
    if frame.tracking is None:
        return []
    head = frame_head(frame, stamp_s)
    topic = topics.of(frame.camera, "events")
    return [Publish(topic, dumps({**head, **event}), qos=1) for event in frame.tracking.events]


def counts_message(topics: Topics, frame: StreamFrame, stamp_s: float) -> Publish:
    """The camera's running counts after this frame (``{"lines": ..., "zones": ...}`` as the JSON Lines'
    ``counts``), retained: a subscriber that comes later gets the latest."""
    assert frame.tracking is not None
    payload = {**frame_head(frame, stamp_s), **frame.tracking.counts}
    return Publish(topics.of(frame.camera, "counts"), dumps(payload), qos=1, retain=True)


def detections_message(topics: Topics, frame: StreamFrame, stamp_s: float) -> Publish:
    """The frame's objects in brief (class, score, box in pixels, track id when tracked; no masks), QoS 0."""
    objects = []
    d = frame.detections
    if d is not None:
        track_ids = d.track_ids.tolist() if d.track_ids is not None else [None] * len(d)
        rows = zip(d.class_ids.tolist(), d.class_names, d.scores.tolist(), d.xyxy.tolist(), track_ids)
        for class_id, name, score, box, track_id in rows:
            item = {"class_id": class_id, "class_name": name, "score": round(score, 5), "box": [round(v, 2) for v in box]}
            if track_id is not None:
                item["track_id"] = track_id
            objects.append(item)
    return Publish(topics.of(frame.camera, "detections"), dumps({**frame_head(frame, stamp_s), "objects": objects}))


def state_message(topics: Topics, stats: StreamStats) -> Publish:
    """A camera's state (connecting, live, reconnecting, ended) with its one-line detail, retained."""
    payload = {"camera": stats.camera, "state": stats.state, "detail": stats.state_detail, "reconnects": stats.reconnects}
    return Publish(topics.of(stats.camera, "state"), dumps(payload), qos=1, retain=True)


def discovery_messages(topics: Topics, camera: CameraInfo) -> list[Publish]:
    """Home Assistant MQTT discovery: one retained sensor config per line direction (in, out) and per zone
    (occupancy), read from the camera's retained ``counts`` and available while ``status`` is ``online``."""
    base = slug(f"{topics.prefix}_{camera.name}")
    device = {"identifiers": [base], "name": f"edgeseg {camera.name}", "manufacturer": "edgeseg", "model": "edgeseg"}
    sensors = [
        (f"line {line} {way}", f"lines_{line}_{way}", f'value_json.lines[{json.dumps(line)}]["{way}"]')
        for line in camera.lines
        for way in ("in", "out")
    ]
    sensors += [
        (f"zone {zone} occupancy", f"zones_{zone}_occupancy", f'value_json.zones[{json.dumps(zone)}]["occupancy"]') for zone in camera.zones
    ]
    messages = []
    for name, key, path in sensors:
        unique = slug(f"{base}_{key}")
        config = {
            "name": name,
            "unique_id": unique,
            "default_entity_id": f"sensor.{unique}",  # Home Assistant 2025.10+ (it replaced object_id, gone in 2026.4)
            "state_topic": topics.of(camera.name, "counts"),
            "value_template": "{{ " + path + " }}",
            "state_class": "total_increasing" if not key.endswith("occupancy") else "measurement",
            "availability_topic": topics.status,
            "device": device,
        }
        messages.append(Publish(f"{DISCOVERY_PREFIX}/sensor/{base}/{slug(key)}/config", dumps(config), qos=1, retain=True))
    return messages
