"""The settings a deployment file and ``edgeseg run``'s flags share, declared once: key path -> flag and help.

The file's models (``schema.py``) take each field's description from here and the command line builds its
override flags from here, so a flag and a file key are one setting with one meaning and one help text; the
type, default and range live on the model's field, and a flag's value is validated by that same field. Plain
data without pydantic: the command line is assembled (and ``edgeseg --help`` works) without the deploy extra."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One shared setting: its ``key`` path in the file, its ``flag``, its ``help`` (the field's description),
    ``switch`` (a true/false flag: ``--x`` / ``--no-x``), ``many`` (the flag takes several values), ``path``
    (a file path: given on the command line, it is relative to the working directory, not the file's folder) and
    ``text`` (the flag's value is kept as written; other values are read as YAML numbers or null)."""

    key: str
    flag: str
    help: str
    switch: bool = False
    many: bool = False
    path: bool = False
    text: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model.path", "--model", "the model: an edgeseg .onnx (float or INT8) or a Horizon .bin on the RDK board", path=True, text=True
    ),
    Setting("model.conf", "--conf", "score threshold, 0..1 (default 0.25; 0.1 when a camera tracks, as `yolo track` does)"),
    Setting("model.iou", "--iou", "NMS IoU threshold, 0..1 (default 0.7)"),
    Setting("model.max_det", "--max-det", "detections kept per frame (default 300)"),
    Setting("model.classes", "--classes", "keep only these class ids (default: all)", many=True),
    Setting("model.agnostic", "--agnostic", "class-agnostic NMS (default false)", switch=True),
    Setting("model.threads", "--threads", "ONNX Runtime intra-op threads of each session (0 = ORT default)"),
    Setting("model.runtime", "--runtime", ".bin models: the board runtime, auto, hbm or pyeasy (default auto)"),
    Setting("model.bpu_core", "--bpu-core", ".bin models: run on this BPU core 0..3 (default: any)"),
    Setting("model.priority", "--priority", ".bin models: BPU task priority 0..255 (default: the runtime's)"),
    Setting("run.workers", "--workers", "inference threads shared by every camera, each its own 1-thread session (default 1)"),
    Setting(
        "run.retries",
        "--retries",
        "reopen tries after a camera or stream drops before it counts as failed (default null: forever; 0 = give up at once)",
    ),
    Setting("run.live", "--live", "drop stale frames to keep up (default: on for cameras and URLs, off for files)", switch=True),
    Setting(
        "run.hw_decode",
        "--hw-decode",
        "decode H.264/H.265/MJPEG with the RDK board's hardware decoder (default: where its library imports)",
        switch=True,
    ),
    Setting("serve.address", "--serve", "the live view's [HOST:]PORT (host default 127.0.0.1)", text=True),
    Setting("mqtt.address", "--mqtt", "publish events, counts and detections to this MQTT broker, HOST[:PORT] (port 1883)", text=True),
    Setting("ros.publish", "--ros", "publish every frame's results on ROS 2 topics while the run goes on (docs/ros2.md)", switch=True),
    Setting("ros.bag", "--save-bag", "record every frame's ROS 2 messages into a rosbag2 in this new folder", path=True, text=True),
)

BY_KEY = {s.key: s for s in SETTINGS}
BY_FLAG = {s.flag: s for s in SETTINGS}
