"""``/metrics``: the hub's cameras in Prometheus' text format, through ``prometheus_client`` with a registry of the
server's own (never the process-wide one: two servers in a process, or a library user's metrics, stay apart).

Everything is read from the hub at scrape time (a ``Collector``), so a frame costs the runner nothing more than
the hub's counters. Per camera (label ``camera``): frames, failed frames, dropped frames and reconnects (counters),
the state (a gauge per state, 1 for the current one), the age of its last frame, the worker's latency (inference
and decode) and the end-to-end latency (read to ready) as histograms in seconds, and with tracking the line
crossings and zone entries/exits (counters) and zone occupancy (gauge); per output of the run (label ``output``:
an MQTT broker, ROS 2, a bag) its messages by outcome (published, dropped, failed) and reconnects; plus the
process' memory and CPU."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..sources.base import SOURCE_STATES
from .hub import FrameHub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    """The metrics of ``hub``'s cameras, made anew at each scrape."""

    def __init__(self, hub: FrameHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        cameras, now_s = self.hub.cameras(), time.time()
        frames = CounterMetricFamily("edgeseg_frames", "Frames with detections, per camera", labels=["camera"])
        failed = CounterMetricFamily("edgeseg_frames_failed", "Frames that failed (read or inference), per camera", labels=["camera"])
        dropped = CounterMetricFamily("edgeseg_frames_dropped", "Live frames dropped as stale, per camera", labels=["camera"])
        reconnects = CounterMetricFamily("edgeseg_reconnects", "Times a camera came back after it stopped", labels=["camera"])
        state = GaugeMetricFamily("edgeseg_camera_state", "1 for the camera's current state, 0 for the others", labels=["camera", "state"])
        age = GaugeMetricFamily("edgeseg_last_frame_age_seconds", "Seconds since the camera's last frame", labels=["camera"])
        latency = HistogramMetricFamily(
            "edgeseg_inference_latency_seconds", "A worker's time per frame (inference and decode)", labels=["camera"]
        )
        end_to_end = HistogramMetricFamily(
            "edgeseg_end_to_end_latency_seconds", "From a frame read to its detections ready (queueing included)", labels=["camera"]
        )
        lines = CounterMetricFamily("edgeseg_line_crossings", "Tracked objects across a line", labels=["camera", "line", "direction"])
        zones = CounterMetricFamily(
            "edgeseg_zone_crossings", "Tracked objects into (entered) or out of (exited) a zone", labels=["camera", "zone", "direction"]
        )
        occupancy = GaugeMetricFamily("edgeseg_zone_occupancy", "Tracked objects inside a zone now", labels=["camera", "zone"])
        for camera in cameras:
            name = camera.name
            frames.add_metric([name], camera.seq)
            failed.add_metric([name], camera.failed)
            dropped.add_metric([name], camera.dropped)
            reconnects.add_metric([name], camera.reconnects)
            for kind in SOURCE_STATES:
                state.add_metric([name, kind], 1.0 if camera.state == kind else 0.0)
            if camera.last_frame_at is not None:
                age.add_metric([name], max(now_s - camera.last_frame_at, 0.0))
            latency.add_metric([name], camera.latency.cumulative(), camera.latency.sum)
            end_to_end.add_metric([name], camera.age.cumulative(), camera.age.sum)
            counts = camera.counts or {}
            for line, c in counts.get("lines", {}).items():
                for direction in ("in", "out"):
                    lines.add_metric([name, line, direction], c[direction])
            for zone, c in counts.get("zones", {}).items():
                for direction in ("entered", "exited"):
                    zones.add_metric([name, zone, direction], c[direction])
                occupancy.add_metric([name, zone], c["occupancy"])
        yield from (frames, failed, dropped, reconnects, state, age, latency, end_to_end, lines, zones, occupancy)
        yield from self._outputs()

    def _outputs(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "edgeseg_output_messages", "Messages of an output (a broker, ROS 2, a bag), by outcome", labels=["output", "outcome"]
        )
        reconnects = CounterMetricFamily(
            "edgeseg_output_reconnects", "Times an output's peer came back after it went away", labels=["output"]
        )
        for output in self.hub.watched:
            for key, value in output.counters().items():
                if key == "reconnects":
                    reconnects.add_metric([output.name], value)
                else:
                    messages.add_metric([output.name, key], value)
        yield from (messages, reconnects)


class Metrics:
    """The server's registry: the hub's cameras and this process (``process_resident_memory_bytes`` and the rest of
    ``ProcessCollector``'s, on Linux)."""

    def __init__(self, hub: FrameHub) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(HubCollector(hub))
        ProcessCollector(registry=self.registry)

    def exposition(self) -> bytes:
        """The text a Prometheus server scrapes."""
        return generate_latest(self.registry)
