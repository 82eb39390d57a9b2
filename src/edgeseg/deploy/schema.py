"""The deployment file's models (pydantic v2): strict types, unknown keys refused, every value checked before
anything starts. Descriptions and flags of the settings shared with the command line come from
``settings.SETTINGS``; paths are resolved against the file's folder (the ``base`` in the validation context)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..address import parse_host_optional_port, parse_host_port
from ..errors import EdgesegError
from ..serve.config import DEFAULT_HOST, TOKEN_ENV
from ..sources import is_mipi, source_kind
from ..tracking import TRACKERS, parse_line, parse_zone
from .settings import BY_KEY


def _fail(kind: str, reason: str):
    # the reason is the whole message: braces would be read as the template's fields
    raise PydanticCustomError(kind, reason.replace("{", "(").replace("}", ")"))


def shown(value: Any) -> str:
    """A value as the file spells it, in an error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def setting(key: str, default: Any = ..., **constraints: Any) -> Any:
    """The field of a shared setting: its description and flag come from the one table."""
    s = BY_KEY[key]
    return Field(default, description=s.help, json_schema_extra={"flag": s.flag}, **constraints)


def _between(low: float, high: float):
    def check(value: float) -> float:
        if not (math.isfinite(value) and low <= value <= high):
            _fail("range", f"must be between {low:g} and {high:g}, got {shown(value)}")
        return value

    return AfterValidator(check)


def _at_least(low: int):
    def check(value: int) -> int:
        if value < low:
            _fail("range", f"must be >= {low}, got {value}")
        return value

    return AfterValidator(check)


def _positive(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        _fail("range", f"must be a number > 0, got {shown(value)}")
    return value


def _name(value: str) -> str:
    if not value.strip() or "/" in value or not value.isprintable():
        _fail("name", f"expected a name (printable, no '/'), got {shown(value)}")
    return value


def _per_core(value: int) -> int:
    """As predict's --workers: past PER_CORE_LIMIT per core, more loaded models only add memory."""
    from ..engines.base import PER_CORE_LIMIT
    from ..machine import usable_cores

    cores = usable_cores() or 1
    if value > PER_CORE_LIMIT * cores:
        _fail("range", f"at most {PER_CORE_LIMIT * cores} ({PER_CORE_LIMIT} per core, {cores} core(s) here), got {value}")
    return value


Unit = Annotated[float, _between(0, 1)]
Count = Annotated[int, _at_least(1)]
Natural = Annotated[int, _at_least(0)]
Positive = Annotated[float, AfterValidator(_positive)]


def _base(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("base", "."))


def _path(value: Any, info: ValidationInfo) -> Path:
    if not isinstance(value, str) or not value.strip():
        _fail("path", f"expected a file path, got {shown(value)}")
    return _base(info) / Path(value).expanduser()


def _existing_file(value: Any, info: ValidationInfo) -> Path:
    path = _path(value, info)
    if not path.is_file():
        _fail("path", f"no such file: {path}")
    return path


OutputPath = Annotated[Path, PlainValidator(_path)]
ExistingFile = Annotated[Path, PlainValidator(_existing_file)]


def _source(value: Any, info: ValidationInfo) -> str:
    """A camera index (0, /dev/video0), a URL, ``mipi:N`` or a video file (resolved, and it must exist)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not value.strip():
        _fail("source", f"expected a video file, camera index, URL or mipi:N, got {shown(value)}")
    value = value.strip()
    if is_mipi(value):
        return value
    kind = source_kind(value)
    if kind in ("camera", "url"):
        return value
    path = _base(info) / Path(value).expanduser()
    if kind != "video":
        _fail("source", f"expected a video file, camera index, URL or mipi:N, got {value!r} (not a video file name)")
    if not path.is_file():
        _fail("source", f"no such video file: {path}")
    return str(path)


def _geometry(parse, option: str, value: Any) -> tuple[float, ...]:
    """Numbers of a line or zone, as a string ``x1,y1,...``, a flat list or a list of [x, y] points; checked by
    the command line's own parser (``parse_line`` / ``parse_zone``), its reason kept."""
    if isinstance(value, list):
        flat = [v for p in value for v in (p if isinstance(p, list) else [p])]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            _fail("geometry", f"expected numbers, got {shown(value)}")
        value = ",".join(repr(float(v)) for v in flat)
    if not isinstance(value, str):
        _fail("geometry", f"expected a list of numbers or 'x1,y1,...', got {shown(value)}")
    try:
        geometry = parse(f"_={value}")
    except EdgesegError as exc:
        _fail("geometry", str(exc).removeprefix(f"{option} _: "))
    return tuple(v for p in geometry.points for v in p)


Line = Annotated[tuple[float, ...], PlainValidator(lambda v: _geometry(parse_line, "--line", v))]
Zone = Annotated[tuple[float, ...], PlainValidator(lambda v: _geometry(parse_zone, "--zone", v))]


def _address(value: Any) -> tuple[str, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        _fail("address", f"expected [HOST:]PORT, got {shown(value)}")
    try:
        return parse_host_port(value, default_host=DEFAULT_HOST)
    except ValueError as exc:
        _fail("address", f"expected [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080): {exc}")


Address = Annotated[tuple[str, int], PlainValidator(_address)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelSettings(Strict):
    """The model every camera shares, and how it decodes."""

    path: ExistingFile = setting("model.path")
    conf: Unit | None = setting("model.conf", None)
    iou: Unit = setting("model.iou", 0.7)
    max_det: Count = setting("model.max_det", 300)
    classes: list[Natural] | None = setting("model.classes", None)
    agnostic: bool = setting("model.agnostic", False)
    threads: Natural = setting("model.threads", 0)
    runtime: Literal["auto", "hbm", "pyeasy"] = setting("model.runtime", "auto")
    bpu_core: Annotated[int, _between(0, 3)] | None = setting("model.bpu_core", None)
    priority: Annotated[int, _between(0, 255)] | None = setting("model.priority", None)


class RunSettings(Strict):
    """How the run goes: inference threads, how long a camera that drops is retried, the default live policy."""

    workers: Annotated[int, _at_least(1), AfterValidator(_per_core)] = setting("run.workers", 1)
    retries: Natural | None = setting("run.retries", None)
    live: bool | None = setting("run.live", None)
    hw_decode: bool | None = setting("run.hw_decode", None)


class TrackSettings(Strict):
    """Tracking of one camera (``track: true`` is all defaults)."""

    tracker: str = Field("bytetrack", description="bytetrack, or an Ultralytics-style tracker .yaml (relative to this file)")
    iou: Literal["box", "mask"] | None = Field(None, description="associate by box IoU (default) or by box and mask IoU")
    trail: Natural = Field(30, description="past positions a drawn trail shows")

    @field_validator("tracker")
    @classmethod
    def _tracker(cls, value: str, info: ValidationInfo) -> str:
        if value in TRACKERS:
            return value
        if not value.endswith((".yaml", ".yml")):
            _fail("tracker", f"expected {', '.join(TRACKERS)} or a tracker .yaml file, got {value!r}")
        path = _base(info) / Path(value).expanduser()
        if not path.is_file():
            _fail("tracker", f"no such file: {path}")
        return str(path)


class Rotate(Strict):
    """When a camera's video and JSON Lines start a new file."""

    max_mb: Positive | None = Field(None, description="start a new file past this size (MB, 10^6 bytes)")
    max_minutes: Positive | None = Field(None, description="start a new file after this many minutes")

    @model_validator(mode="after")
    def _one(self) -> Rotate:
        if self.max_mb is None and self.max_minutes is None:
            _fail("rotate", "give max_mb, max_minutes or both")
        return self


class Outputs(Strict):
    """What one camera writes (paths relative to this file)."""

    save_video: OutputPath | None = Field(None, description="annotated video (.mp4)")
    save_jsonl: OutputPath | None = Field(None, description="one JSON line per frame (.jsonl)")
    save_counts: OutputPath | None = Field(None, description="the final line and zone counts (.json); needs track")
    rotate: Rotate | None = Field(None, description="rotate the video and JSON Lines by size or duration")


class Camera(Strict):
    """One camera: where its frames come from, how they are taken, tracked and counted, and where results go."""

    name: Annotated[str, AfterValidator(_name)] | None = Field(
        None, description="unique name (default: from the source: file stem, camera0, the URL's host)"
    )
    source: Annotated[str, PlainValidator(_source)] = Field(description="video file, camera index or /dev/videoN, URL, mipi:N")
    live: bool | None = Field(None, description="drop stale frames to keep up (default: run.live)")
    vid_stride: Count = Field(1, description="use every N-th frame")
    fps_cap: Positive | None = Field(None, description="take at most this many frames per second from the camera")
    track: TrackSettings | None = Field(None, description="true, false, or the tracker's settings (a mapping; default: no tracking)")
    lines: dict[str, Line] = Field(default_factory=dict, description="NAME: x1,y1,x2,y2 counting lines; needs track")
    zones: dict[str, Zone] = Field(default_factory=dict, description="NAME: x1,y1,x2,y2,x3,y3,... counting zones; needs track")
    outputs: Outputs = Field(default_factory=Outputs, description="what this camera writes")

    @field_validator("track", mode="before")
    @classmethod
    def _track(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value


class ServeSettings(Strict):
    """The live view (every camera in one page), with /health and /metrics."""

    address: Address = setting("serve.address", "8080", validate_default=True)
    token_env: str = Field(TOKEN_ENV, description="the environment variable holding the viewers' token (never the token itself)")


def _broker(value: Any) -> str:
    """An MQTT broker's ``HOST[:PORT]``, kept as written once it parses (``MqttSettings.config`` splits it)."""
    if not isinstance(value, str) or not value.strip():
        _fail("address", f"expected HOST[:PORT], got {shown(value)}")
    try:
        parse_host_optional_port(value, default_port=1883)
    except ValueError as exc:
        _fail("address", f"expected HOST[:PORT] (e.g. broker.local or 127.0.0.1:1883): {exc}")
    return value.strip()


OnFailure = Literal["stop", "continue"]


class MqttSettings(Strict):
    """Events, counts and detections on an MQTT broker (docs/mqtt.md); ``outputs.mqtt.MqttConfig``'s fields."""

    address: Annotated[str, PlainValidator(_broker)] = setting("mqtt.address")
    prefix: str = Field("edgeseg", description="the first topic levels: PREFIX/status, PREFIX/<camera>/events, ...")
    username: str | None = Field(None, description="the broker login's user name")
    password_env: str | None = Field(None, description="the environment variable holding the password (never the password itself)")
    password_file: ExistingFile | None = Field(None, description="a file whose first line is the password")
    tls: bool = Field(False, description="TLS with the system's CAs (on anyway when tls_ca is given)")
    tls_ca: ExistingFile | None = Field(None, description="the CA certificate (PEM) the broker's certificate is checked against")
    detections_per_s: Annotated[float, _between(0, 1000)] = Field(2.0, description="per camera, per-frame summaries a second (0: none)")
    discovery: bool = Field(True, description="Home Assistant MQTT discovery: each line's in/out and each zone's occupancy as sensors")
    on_failure: OnFailure = Field("continue", description="when the output cannot go on: stop the run, or continue without it")

    @model_validator(mode="after")
    def _config(self) -> MqttSettings:
        try:
            self.config()
        except EdgesegError as exc:
            _fail("mqtt", exc.problem)
        return self

    def config(self):
        """The ``MqttConfig`` of these settings (raises ``EdgesegError``)."""
        from ..outputs.mqtt.config import MqttConfig

        host, port = parse_host_optional_port(self.address, default_port=1883)
        fields = self.model_dump(exclude={"address", "on_failure"})
        return MqttConfig(host=host, port=port, **fields)


class RosSettings(Strict):
    """ROS 2: live topics and a bag of every frame's messages (docs/ros2.md)."""

    publish: bool = setting("ros.publish", False)
    bag: OutputPath | None = setting("ros.bag", None)
    bag_storage: Literal["mcap", "sqlite3"] = Field("mcap", description="the bag's storage")
    namespace: str | None = Field(None, description="the topics' namespace (default: the root for one camera, /<camera> for several)")
    image: bool = Field(False, description="also each frame as a JPEG sensor_msgs/CompressedImage on image/compressed")
    instance_mask: bool = Field(False, description="also a mono16 instance image per frame on instance_mask")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None:
            from ..outputs.ros.messages import check_namespace

            try:
                check_namespace(value)
            except EdgesegError as exc:
                _fail("namespace", exc.problem)
        return value

    @model_validator(mode="after")
    def _something(self) -> RosSettings:
        if not self.publish and self.bag is None:
            _fail("ros", "give publish: true, a bag folder, or both")
        return self


def _cameras(value: Any) -> Any:
    """A mapping of cameras by name is the list with those names."""
    if isinstance(value, dict):
        return [{"name": key, **item} if isinstance(item, dict) and "name" not in item else item for key, item in value.items()]
    return value


class Deployment(Strict):
    """A deployment file: the model, the run, the cameras, the live view and where results are published."""

    model: ModelSettings = Field(description="the model and how it decodes")
    run: RunSettings = Field(default_factory=RunSettings, description="workers, retries, live policy")
    cameras: Annotated[list[Camera], Field(min_length=1)] = Field(description="a list of cameras, or a mapping name -> camera")
    serve: ServeSettings | None = Field(None, description="the live view (default: none)")
    mqtt: MqttSettings | None = Field(None, description="publish to an MQTT broker (default: none)")
    ros: RosSettings | None = Field(None, description="ROS 2 topics and bags (default: none)")

    @field_validator("cameras", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        return _cameras(value)

    @property
    def tracks(self) -> bool:
        return any(c.track is not None for c in self.cameras)
