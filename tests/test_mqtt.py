"""The MQTT output against a real broker (Debian's mosquitto, tests/mqtt_broker.py) with paho as the subscriber:
events equal to the JSON Lines' events, retained counts, the Last Will, a broker that goes away mid-run, and the
one-line errors of a refused login, a host that does not resolve and bad settings."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from corpus import SLIDE_SHIFTS, error_reason, make_slide, run_cli, slid_frames, start_cli
from edgeseg import Segmenter
from edgeseg.cli.options import mqtt_address
from edgeseg.engines.frames import StreamStats
from edgeseg.errors import EdgesegError
from edgeseg.outputs import CameraInfo, RunInfo
from edgeseg.outputs.mqtt import MqttConfig, MqttOutput
from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE
from edgeseg.sources.base import Source, SourceItem
from edgeseg.tracking import TrackingOptions, parse_line, parse_zone
from mqtt_broker import MOSQUITTO, MOSQUITTO_PASSWD, Mosquitto, Subscriber, wait_for

pytest.importorskip("paho.mqtt.client")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="mosquitto is not installed (Debian: mosquitto)"),
]


LINE, ZONE = "gate=0.4,0,0.4,1", "right=0.6,0,1,0,1,1,0.6,1"
TRACKING = TrackingOptions(lines=(parse_line(LINE),), zones=(parse_zone(ZONE),))


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    return make_slide(tmp_path_factory.mktemp("mqtt-clip") / "slide.mp4")


@pytest.fixture(scope="module")
def run_broker(tmp_path_factory):
    """A mosquitto for the module's one command-line run."""
    b = Mosquitto(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


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


def events_of(lines: list[dict], camera: str, origin_s: float = 0.0) -> list[dict]:
    """The MQTT event each JSON Lines event should be: the event's fields with the frame's camera, time and stamp
    (``origin_s`` + time_s: a file's stamps are its times, a live camera's the wall clock)."""
    return [
        {"camera": camera, "frame": r["frame"], "time_s": r["time_s"], "stamp": round(origin_s + r["time_s"], 4), **e}
        for r in lines
        for e in r["events"]
    ]


@pytest.fixture(scope="module")
def cli_run(run_broker, slide, tmp_path_factory):
    """``edgeseg predict CLIP --track --line --zone --save-jsonl --mqtt`` with a subscriber listening from before."""
    out = tmp_path_factory.mktemp("mqtt-run")
    sub = Subscriber(run_broker, ("edgeseg/#", "homeassistant/#"))
    tracking = ["--track", "--line", LINE, "--zone", ZONE]
    proc = run_cli(
        "predict", DEFAULT_MODEL, slide, *tracking, "--save-jsonl", out / "slide.jsonl", "--mqtt", run_broker.address, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: [m.payload for m in sub.on("edgeseg/status")] == [b"online", b"offline"], 10)
    lines = [json.loads(line) for line in (out / "slide.jsonl").read_text().splitlines()]
    yield proc, sub, lines
    sub.close()


@pytest.mark.slow
def test_each_event_reaches_a_subscriber_once_as_the_json_lines_say(cli_run):
    proc, sub, lines = cli_run
    assert [r["frame"] for r in lines] == list(range(len(SLIDE_SHIFTS)))
    got = [m.json() for m in sub.on("edgeseg/slide/events")]
    assert got == events_of(lines, "slide")  # each line crossing and zone event once, in order, stamp = time_s
    crossings = [e for e in got if e["type"] == "line"]
    assert len(crossings) >= 1 and {e["direction"] for e in crossings} <= {"in", "out"}
    assert len([e for e in got if e["type"] == "zone"]) >= 1
    for e in got:  # the id and class are a detection's of that frame
        assert (e["track_id"], e["class_name"]) in [(d["track_id"], d["class_name"]) for d in lines[e["frame"]]["detections"]]
    assert f"MQTT broker {cli_run[1].broker.address}: " in proc.stdout and "0 dropped, 0 reconnect(s)" in proc.stdout


@pytest.mark.slow
def test_counts_are_published_when_they_change_and_retained(cli_run, run_broker):
    _, sub, lines = cli_run
    changed = [r for k, r in enumerate(lines) if k == 0 or r["counts"] != lines[k - 1]["counts"]]
    counts = [m.json() for m in sub.on("edgeseg/slide/counts")]
    assert [(c["frame"], {"lines": c["lines"], "zones": c["zones"]}) for c in counts] == [(r["frame"], r["counts"]) for r in changed]
    assert len(changed) >= 2 and changed[-1]["counts"] == lines[-1]["counts"]
    late = Subscriber(run_broker, ("edgeseg/#",))
    try:
        assert wait_for(lambda: len(late.messages) == 3, 5)
        time.sleep(0.2)  # nothing else is retained
        kept = {m.topic: (m.payload, m.retain) for m in late.messages}
    finally:
        late.close()
    assert kept == {
        "edgeseg/status": (b"offline", True),
        "edgeseg/slide/counts": (sub.on("edgeseg/slide/counts")[-1].payload, True),
        "edgeseg/slide/state": (sub.on("edgeseg/slide/state")[-1].payload, True),
    }
    assert json.loads(kept["edgeseg/slide/state"][0])["state"] == "ended"


@pytest.mark.slow
def test_detections_are_rate_capped_summaries_of_the_json_lines(cli_run):
    _, sub, lines = cli_run
    summaries = [m.json() for m in sub.on("edgeseg/slide/detections")]
    assert [s["frame"] for s in summaries] == [0, 5, 10]  # 2 a second of the clip's 10 frames/s
    for s in summaries:
        fields = ("class_id", "class_name", "score", "bbox_xyxy", "track_id")
        assert [tuple(o.values()) for o in s["objects"]] == [tuple(d[k] for k in fields) for d in lines[s["frame"]]["detections"]]
        assert list(s["objects"][0]) == ["class_id", "class_name", "score", "box", "track_id"] and len(s["objects"]) >= 3
        assert (s["camera"], s["time_s"], s["stamp"]) == ("slide", lines[s["frame"]]["time_s"], lines[s["frame"]]["time_s"])


@pytest.mark.slow
def test_home_assistant_discovery_reads_the_retained_counts(cli_run):
    """Each line's in/out and each zone's occupancy is a sensor whose template, rendered by Jinja as Home Assistant
    renders it, gives the counts' numbers."""
    jinja2 = pytest.importorskip("jinja2")
    _, sub, lines = cli_run
    configs = {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")}
    keys = ("lines_gate_in", "lines_gate_out", "zones_right_occupancy")
    assert sorted(configs) == [f"homeassistant/sensor/edgeseg_slide/{key}/config" for key in keys]
    assert len({c["unique_id"] for c in configs.values()}) == 3  # one entity each, on one device
    assert {json.dumps(c["device"]) for c in configs.values()} == {json.dumps(next(iter(configs.values()))["device"])}
    counts = lines[-1]["counts"]
    wanted = {"lines_gate_in": counts["lines"]["gate"]["in"], "lines_gate_out": counts["lines"]["gate"]["out"]}
    wanted["zones_right_occupancy"] = counts["zones"]["right"]["occupancy"]
    assert wanted["lines_gate_in"] + wanted["lines_gate_out"] >= 1
    value_json = sub.on("edgeseg/slide/counts")[-1].json()
    for topic, config in configs.items():
        assert config["state_topic"] == "edgeseg/slide/counts" and config["availability_topic"] == "edgeseg/status"
        rendered = jinja2.Template(config["value_template"]).render(value_json=value_json)
        assert int(rendered) == wanted[topic.split("/")[3]]


def test_status_goes_offline_through_the_last_will_when_the_process_is_killed(broker, subscribe, slide):
    sub = subscribe(broker, ("edgeseg/status",))
    proc = start_cli(["predict", DEFAULT_MODEL, slide, "--mqtt", broker.address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: sub.on("edgeseg/status") or proc.poll() is not None, 60)
        assert proc.poll() is None and [m.payload for m in sub.on("edgeseg/status")] == [b"online"]
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # the broker sends the will when the connection drops (long before keepalive's 45 s)
        assert wait_for(lambda: len(sub.on("edgeseg/status")) == 2, 10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    offline = sub.on("edgeseg/status")[1]
    assert offline.payload == b"offline" and offline.at - killed < 10
    late = subscribe(broker, ("edgeseg/status",))
    assert wait_for(lambda: late.on("edgeseg/status"), 5)
    assert [(m.payload, m.retain) for m in late.on("edgeseg/status")] == [(b"offline", True)]


class PacedCamera(Source):
    """The slid frames, looped, at ``fps`` on the wall clock as a live camera delivers them, until closed."""

    def __init__(self, fps: float) -> None:
        self.name, self.live, self.fps, self.warnings = "paced", True, fps, []
        self.frames = slid_frames()
        self._closed = threading.Event()

    def __iter__(self):
        t0 = time.monotonic()
        for k in itertools.count():
            if self._closed.wait(max(0.0, t0 + k / self.fps - time.monotonic())):
                return
            yield SourceItem(index=k, name=self.name, image=self.frames[k % len(self.frames)], time_s=k / self.fps)

    def close(self) -> None:
        self._closed.set()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_broker_away_for_10_s_loses_no_frame_and_events_resume_after_the_reconnect(broker, subscribe, tmp_path):
    from edgeseg.engines.command import CameraPlan, run_cameras

    sub = subscribe(broker, ("edgeseg/#",))
    # a small outbox and every frame's detections: the outage overflows it
    output = MqttOutput(mqtt_config(broker, outbox=8, detections_per_s=100, reconnect_max_s=2))
    plan = CameraPlan(PacedCamera(fps=4), name="door", tracking=TRACKING, save_jsonl=tmp_path / "door.jsonl")
    stop, result = threading.Event(), {}

    def run() -> None:
        seg = Segmenter(DEFAULT_MODEL, conf=0.1)
        result["summary"] = run_cameras(seg, cameras=[plan], run_outputs=[output], show_progress=False, stop=stop)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: sub.on("edgeseg/door/events"), 30), "no event before the outage"
        time.sleep(5.0)
        down = time.time()
        broker.stop()
        time.sleep(10)
        broker.start()
        up = time.time()
        after = subscribe(broker, ("edgeseg/#",))
        resumed = lambda: [m for m in after.on("edgeseg/door/events") if m.json()["stamp"] > up + 4]  # noqa: E731
        assert wait_for(lambda: len(resumed()) >= 2, 20), "no event after the broker came back"
    finally:
        stop.set()
        runner.join(timeout=30)
    summary = result["summary"]
    # the clean end's "offline" comes after the last messages the outbox still had
    assert wait_for(lambda: [m.payload for m in after.on("edgeseg/status")][-1:] == [b"offline"], 10)
    lines = [json.loads(line) for line in (tmp_path / "door.jsonl").read_text().splitlines()]
    ((name, stats),) = summary.streams
    assert len(lines) == stats.frames >= 20 and [r["frame"] for r in lines] == sorted({r["frame"] for r in lines})
    first = sub.on("edgeseg/door/events")[0].json()
    origin = first["stamp"] - first["time_s"]  # a live camera's stamps: the wall clock at its time_s 0
    stamp = lambda r: origin + r["time_s"]  # noqa: E731
    assert len([r for r in lines if down + 1 < stamp(r) < up - 1]) >= 8  # the run went on through the outage
    expected = events_of(lines, "door", origin)
    received = [m.json() for m in sub.on("edgeseg/door/events") + after.on("edgeseg/door/events")]
    assert [e for e in received if e not in expected] == []  # nothing made up (a QoS 1 message in flight may come twice)
    before = [e for e in expected if e["stamp"] < down - 4]
    assert [e for e in (m.json() for m in sub.on("edgeseg/door/events")) if e["stamp"] < down - 4] == before and before
    late = [e for e in expected if e["stamp"] > up + 4]
    assert [e for e in (m.json() for m in after.on("edgeseg/door/events")) if e["stamp"] > up + 4] == late and len(late) >= 2
    report = next(line for line in summary.reports if line.startswith(output.name))
    dropped, reconnects = (int(v) for v in re.fullmatch(r".*, (\d+) dropped, (\d+) reconnect\(s\)", report).groups())
    assert dropped >= 1 and reconnects == 1, report
    assert output.counters() == {"published": output.published, "dropped": dropped, "reconnects": 1}  # what /metrics shows


@pytest.fixture()
def login_broker(tmp_path_factory):
    """A mosquitto that takes only user ``cam`` with password ``right horse``."""
    b = Mosquitto(tmp_path_factory.mktemp("login-broker"), users={"cam": "right horse"})
    b.start()
    yield b
    b.stop()


@pytest.mark.slow
def test_a_wrong_password_is_one_line_and_the_right_one_logs_in(login_broker, subscribe, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_TEST_MQTT_PASSWORD", "wrong horse")
    login = ["--mqtt", login_broker.address, "--mqtt-user", "cam"]
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, *login, "--mqtt-password-env", "EDGESEG_TEST_MQTT_PASSWORD", cwd=tmp_path)
    assert error_reason(proc, f"MQTT broker {login_broker.address}") == "the broker refused the connection (Not authorized)"
    assert not list(tmp_path.iterdir())  # refused before any work
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, *login[:2], cwd=tmp_path)  # no login at all
    assert error_reason(proc, f"MQTT broker {login_broker.address}") == "the broker refused the connection (Not authorized)"
    (tmp_path / "password").write_text("right horse\n")
    sub = subscribe(login_broker, ("edgeseg/#",), username="cam", password="right horse")
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, *login, "--mqtt-password-file", tmp_path / "password")
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: [m.payload for m in sub.on("edgeseg/status")] == [b"online", b"offline"], 10)
    # an image is a camera named as given; '/' cannot be in a topic level
    (summary,) = [m.json() for m in sub.on(f"edgeseg/{str(SAMPLE_IMAGE).replace('/', '_')}/detections")]
    assert summary["camera"] == str(SAMPLE_IMAGE) and len(summary["objects"]) >= 1


@pytest.mark.parametrize(
    ("args", "path", "reason"),
    [
        (["--mqtt-user", "cam"], None, "--mqtt-user needs --mqtt"),
        (["--mqtt", "127.0.0.1", "--mqtt-password-env", "X"], "MQTT broker 127.0.0.1:1883", "a password needs a username"),
        (
            ["--mqtt", "127.0.0.1", "--mqtt-prefix", "a/#"],
            "MQTT broker 127.0.0.1:1883",
            "the topic prefix must be non-empty levels without '+', '#' or '//', got 'a/#'",
        ),
        (["--mqtt", "127.0.0.1:0"], "MQTT broker 127.0.0.1:0", "port must be 1..65535, got 0"),
        (
            ["--mqtt", "127.0.0.1", "--mqtt-user", "u", "--mqtt-password-env", "EDGESEG_UNSET_VARIABLE"],
            None,
            "the MQTT password's environment variable $EDGESEG_UNSET_VARIABLE is not set or empty",
        ),
        (
            ["--mqtt", "127.0.0.1", "--mqtt-user", "u", "--mqtt-password-file", "missing.txt"],
            "missing.txt",
            "cannot read the MQTT password (no such file or directory)",
        ),
        (
            ["--mqtt", "127.0.0.1", "--mqtt-tls-ca", "missing.pem"],
            "missing.pem",
            "cannot use it as the MQTT CA certificate (no such file or directory)",
        ),
        (["--mqtt", "broker.invalid"], "MQTT broker broker.invalid:1883", "cannot resolve the host ("),
    ],
)
def test_bad_mqtt_settings_are_one_line_errors_before_any_work(args, path, reason, tmp_path):
    proc = run_cli("predict", DEFAULT_MODEL, SAMPLE_IMAGE, *args, cwd=tmp_path)
    got = error_reason(proc, path)
    assert got == reason or (reason.endswith("(") and got.startswith(reason)), proc.stderr
    assert not [p for p in tmp_path.iterdir() if p.name != "missing.txt"]


def test_a_broker_down_at_the_start_is_connected_when_it_comes_up(tmp_path, subscribe, caplog):
    """The run does not wait for a broker that does not answer yet; the output connects when it does."""
    broker = Mosquitto(tmp_path)
    output = MqttOutput(mqtt_config(broker, reconnect_max_s=1))
    output.open(RunInfo(cameras=(CameraInfo(name="door", source="door"),)))
    try:
        assert f"{output.name}: not reachable (connection refused)" in caplog.text
        stats = StreamStats(camera="door", state="live")
        output.on_state(stats)  # kept until the broker answers
        broker.start()
        sub = subscribe(broker, ("edgeseg/#",))
        assert wait_for(lambda: sub.on("edgeseg/door/state"), 10)
        assert sub.on("edgeseg/door/state")[0].json() == {"camera": "door", "state": "live", "detail": "", "reconnects": 0}
        assert [m.payload for m in sub.on("edgeseg/status")] == [b"online"]
    finally:
        output.close()
        broker.stop()
    assert output.report() == f"{output.name}: 3 message(s) published, 0 dropped, 0 reconnect(s)"  # online, state, offline


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_with_the_broker_s_ca_connects_and_another_ca_is_one_line(tmp_path, subscribe):
    broker = Mosquitto(tmp_path, tls=True)
    broker.start()
    try:
        sub = subscribe(broker, ("edgeseg/status",))  # on the plain listener
        tls = MqttConfig(host="127.0.0.1", port=broker.tls_port, tls_ca=tmp_path / "ca.pem")
        output = MqttOutput(tls)
        output.open(RunInfo())
        assert wait_for(lambda: sub.on("edgeseg/status"), 10)
        output.close()  # waits for the broker's acknowledgement, not for the subscriber's copy
        assert wait_for(lambda: len(sub.on("edgeseg/status")) == 2, 10)
        assert [m.payload for m in sub.on("edgeseg/status")] == [b"online", b"offline"]
        with pytest.raises(EdgesegError) as caught:
            MqttOutput(replace(tls, tls_ca=tmp_path / "other-ca.pem")).open(RunInfo())
        assert caught.value.path == f"MQTT broker 127.0.0.1:{broker.tls_port}"
        assert caught.value.problem.startswith("TLS handshake failed (certificate verify failed")
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("broker.local", ("broker.local", 1883)),
        ("10.0.0.2:8883", ("10.0.0.2", 8883)),
        ("[::1]", ("::1", 1883)),
        ("[::1]:1884", ("::1", 1884)),
    ],
)
def test_the_broker_address_has_an_optional_port(text, parsed):
    assert mqtt_address(text) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [("::1", "an IPv6 host goes in brackets"), ("broker:mqtt", "the port must be a number"), (":1883", "the host is missing")],
)
def test_a_bad_broker_address_is_a_usage_error(text, reason):
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        mqtt_address(text)
