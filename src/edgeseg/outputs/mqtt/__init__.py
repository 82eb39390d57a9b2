"""The MQTT output: a run's counting events, counts, detections and camera states on a broker (docs/mqtt.md).
``config.py``: ``MqttConfig`` and the password; ``messages.py``: topics and payloads, Home Assistant discovery;
``output.py``: ``MqttOutput`` (paho-mqtt, imported when it opens: the ``mqtt`` extra)."""

from __future__ import annotations

from .config import MqttConfig
from .output import MqttOutput

__all__ = ["MqttConfig", "MqttOutput"]
