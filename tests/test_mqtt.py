"""The MQTT output against a real broker (Debian's mosquitto, tests/mqtt_broker.py) with paho as the subscriber:
events equal to the JSON Lines' events, retained counts, the Last Will, a broker that goes away mid-run, and the
one-line errors of a refused login, a host that does not resolve and bad settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg import Segmenter
from edgeseg.errors import EdgesegError
from edgeseg.outputs import CameraInfo, RunInfo
from edgeseg.outputs.mqtt import MqttConfig, MqttOutput
from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE
from edgeseg.engines.threads import Camera
from edgeseg.sources.base import Source, SourceItem
from edgeseg.sources.video import VideoSource
from edgeseg.tracking import TrackingOptions, parse_line, parse_zone
from mqtt_broker import MOSQUITTO, MOSQUITTO_PASSWD, Mosquitto, Subscriber, wait_for

pytest.importorskip("paho.mqtt.client")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="mosquitto is not installed (Debian: mosquitto)"),
]

SHIFTS = [*range(-96, 97, 32), *range(64, -97, -32)]  # the sample image slid right, then back left: 13 frames
LINE, ZONE = "gate=0.4,0,0.4,1", "right=0.6,0,1,0,1,1,0.6,1"
TRACKING = TrackingOptions(lines=(parse_line(LINE),), zones=(parse_zone(ZONE),))


def slid_frames() -> list[np.ndarray]:
    image = cv2.imread(str(SAMPLE_IMAGE))
    h, w = image.shape[:2]
    return [cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)) for dx in SHIFTS]


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    frames = slid_frames()
    path = tmp_path_factory.mktemp("mqtt-clip") / "slide.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture()
def broker(tmp_path):
    """A running mosquitto on a free loopback port, killed when the test ends (``broker.stop()``/``start()``)."""
    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture()
def subscribe():
    """``subscribe(broker, topics=("#",))`` -> a recording paho subscriber, closed when the test ends."""
    made: list[Subscriber] = []

    def start(broker: Mosquitto, topics: tuple[str, ...] = ("#",), **login) -> Subscriber:
        made.append(Subscriber(broker, topics, **login))
        return made[-1]

    yield start
    for s in made:
        s.close()


def mqtt_config(broker: Mosquitto, **fields) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=broker.port, **fields)


def camera_info(name: str, source: str = "", live: bool = False) -> CameraInfo:
    return CameraInfo(name=name, source=source or name, live=live, lines=("gate",), zones=("right",))


def records_of(frames) -> list[dict]:
    """What the JSON Lines say of each frame, written here from the frames' fields (no sink code)."""
    return [
        {
            "frame": f.index,
            "time_s": round(f.time_s, 4),
            "detections": f.detections.to_records(f.source),
            "events": f.tracking.events,
            "counts": f.tracking.counts,
        }
        for f in frames
    ]


def run_library(output: MqttOutput, source: Source, camera: CameraInfo) -> list:
    """A tracked run of ``source`` as ``camera`` through ``Segmenter.stream`` into ``output`` (open, every frame,
    close), with the decode threshold ``predict --track`` uses."""
    seg = Segmenter(DEFAULT_MODEL, conf=0.1)
    output.open(RunInfo(cameras=(camera,), class_names=tuple(seg.info.names.values())))
    frames = []
    try:
        stream = seg.stream([Camera(source, name=camera.name, tracking=TRACKING)])
        for frame in stream:
            output.on_frame(frame, stream.stats)
            frames.append(frame)
    finally:
        output.close()
    return frames


def test_events_counts_and_detections_reach_a_subscriber_as_the_json_lines_say(broker, subscribe, slide):
    sub = subscribe(broker, ("edgeseg/#",))
    output = MqttOutput(mqtt_config(broker, detections_per_s=2.0))
    frames = run_library(output, VideoSource(str(slide)), camera_info("slide"))
    records = records_of(frames)
    assert [f.camera for f in frames] == ["slide"] * len(SHIFTS)
    assert wait_for(lambda: sub.on("edgeseg/status")[-1:] and sub.on("edgeseg/status")[-1].payload == b"offline", 10)

    # each line crossing and zone event exactly once, in order, with the JSON Lines' fields and time
    expected = [{"camera": "slide", "frame": r["frame"], "time_s": r["time_s"], "stamp": r["time_s"], **e} for r in records for e in r["events"]]
    got = [m.json() for m in sub.on("edgeseg/slide/events")]
    assert got == expected
    crossings = [e for e in got if e["type"] == "line"]
    assert len(crossings) >= 1 and {e["direction"] for e in crossings} <= {"in", "out"}
    for e in crossings:  # the class and id are those of a detection of that frame
        frame = records[e["frame"]]["detections"]
        assert {"track_id": e["track_id"], "class_name": e["class_name"]} in [{k: d[k] for k in ("track_id", "class_name")} for d in frame]

    # counts: published when they change, the last one as the last frame's; retained for a later subscriber
    changed = [r for k, r in enumerate(records) if k == 0 or r["counts"] != records[k - 1]["counts"]]
    counts = [m.json() for m in sub.on("edgeseg/slide/counts")]
    assert [(c["frame"], {"lines": c["lines"], "zones": c["zones"]}) for c in counts] == [(r["frame"], r["counts"]) for r in changed]
    assert len(changed) >= 2 and changed[-1]["counts"] == records[-1]["counts"]
    late = subscribe(broker, ("edgeseg/#",))
    assert wait_for(lambda: late.on("edgeseg/slide/counts"), 5)
    (kept,) = late.on("edgeseg/slide/counts")
    assert kept.retain and kept.payload == sub.on("edgeseg/slide/counts")[-1].payload
    assert [(m.payload, m.retain) for m in late.on("edgeseg/status")] == [(b"offline", True)]
    assert late.on("edgeseg/slide/events") == [] and late.on("edgeseg/slide/detections") == []  # neither is retained

    # detections: 2 a second of the clip's 10 fps is frames 0, 5, 10; objects as the JSON Lines' detections
    summaries = [m.json() for m in sub.on("edgeseg/slide/detections")]
    assert [s["frame"] for s in summaries] == [0, 5, 10]
    for s in summaries:
        wanted = [
            {"class_id": d["class_id"], "class_name": d["class_name"], "score": d["score"], "box": d["bbox_xyxy"], "track_id": d["track_id"]}
            for d in records[s["frame"]]["detections"]
        ]
        assert s["objects"] == wanted and len(wanted) >= 3
    assert "0 dropped, 0 reconnect(s)" in output.report()


def test_home_assistant_discovery_reads_the_retained_counts(broker, subscribe, slide):
    """Each line's in/out and each zone's occupancy is a sensor whose template, rendered by Jinja as Home Assistant
    renders it, gives the retained counts' numbers."""
    jinja2 = pytest.importorskip("jinja2")
    sub = subscribe(broker, ("homeassistant/#", "edgeseg/#"))
    frames = run_library(MqttOutput(mqtt_config(broker, detections_per_s=0)), VideoSource(str(slide)), camera_info("slide"))
    assert wait_for(lambda: len(sub.on("edgeseg/status")) == 2, 10)
    configs = {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")}
    assert sorted(configs) == [
        f"homeassistant/sensor/edgeseg_slide/{key}/config" for key in ("lines_gate_in", "lines_gate_out", "zones_right_occupancy")
    ]
    late = subscribe(broker, ("homeassistant/#",))  # retained: what Home Assistant gets when it starts later
    assert wait_for(lambda: len(late.messages) == 3, 5)
    assert {m.topic: (m.json(), m.retain) for m in late.messages} == {t: (c, True) for t, c in configs.items()}
    counts = frames[-1].tracking.counts
    value_json = sub.on("edgeseg/slide/counts")[-1].json()
    wanted = {"lines_gate_in": counts["lines"]["gate"]["in"], "lines_gate_out": counts["lines"]["gate"]["out"]}
    wanted["zones_right_occupancy"] = counts["zones"]["right"]["occupancy"]
    for topic, config in configs.items():
        assert config["state_topic"] == "edgeseg/slide/counts" and config["availability_topic"] == "edgeseg/status"
        rendered = jinja2.Template(config["value_template"]).render(value_json=value_json)
        assert int(rendered) == wanted[topic.split("/")[3]]
    assert sub.on("edgeseg/slide/detections") == []  # detections_per_s 0: none


LAST_WILL_SCRIPT = """
import sys, time
from edgeseg.outputs import CameraInfo, RunInfo
from edgeseg.outputs.mqtt import MqttConfig, MqttOutput
output = MqttOutput(MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=60))
output.open(RunInfo(cameras=(CameraInfo(name="door", source="door"),)))
print("open", flush=True)
time.sleep(60)
"""


def test_status_goes_offline_through_the_last_will_when_the_process_is_killed(broker, subscribe):
    sub = subscribe(broker, ("edgeseg/status",))
    proc = subprocess.Popen([sys.executable, "-c", LAST_WILL_SCRIPT, str(broker.port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "open\n"
        assert wait_for(lambda: [m.payload for m in sub.on("edgeseg/status")] == [b"online"], 10)
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # the broker sends the will when the connection drops (long before keepalive's 90 s)
        assert wait_for(lambda: len(sub.on("edgeseg/status")) == 2, 10)
    finally:
        proc.kill()
        proc.stdout.close()
    online, offline = sub.on("edgeseg/status")
    assert offline.payload == b"offline" and offline.at - killed < 10
    late = subscribe(broker, ("edgeseg/status",))
    assert wait_for(lambda: late.on("edgeseg/status"), 5)
    assert [(m.payload, m.retain) for m in late.on("edgeseg/status")] == [(b"offline", True)]
