"""A validated deployment as what the engine takes: one camera plan per camera (``engines.command.CameraPlan``),
the stream options, the decode and board options of the shared model, the live view's config; and the short
summary ``edgeseg run --check`` prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..backends import BoardOptions
from ..decode import DecodeOptions
from ..serve.config import ServeConfig
from ..tracking import TrackerConfig, TrackingOptions, parse_line, parse_zone
from .load import camera_names
from .schema import Camera, Deployment, RunSettings

MB = 1_000_000


def _numbers(values: tuple[float, ...]) -> str:
    return ",".join(repr(v) for v in values)


def tracking_of(camera: Camera) -> TrackingOptions | None:
    """The camera's ``TrackingOptions`` (None without ``track``), its lines and zones named by their keys."""
    if camera.track is None:
        return None
    overrides = {"iou": camera.track.iou} if camera.track.iou else {}
    if camera.track.tracker.endswith((".yaml", ".yml")):
        config = TrackerConfig.from_yaml(camera.track.tracker, **overrides)
    else:
        config = TrackerConfig(**overrides)
    return TrackingOptions(
        tracker=config,
        lines=tuple(parse_line(f"{name}={_numbers(v)}") for name, v in camera.lines.items()),
        zones=tuple(parse_zone(f"{name}={_numbers(v)}") for name, v in camera.zones.items()),
        trail=camera.track.trail,
    )


def plan_fields(deployment: Deployment) -> list[dict[str, Any]]:
    """The fields of each camera's ``CameraPlan``, as keywords; ``rotation`` is ``sinks.Rotation``'s keywords
    (``max_bytes``, ``max_seconds``) or None. ``live`` is the camera's, else the run's default."""
    plans = []
    for camera, name in zip(deployment.cameras, camera_names(deployment)):
        rotate = camera.outputs.rotate
        plans.append(
            {
                "source": camera.source,
                "name": name,
                "live": camera.live if camera.live is not None else deployment.run.live,
                "vid_stride": camera.vid_stride,
                "fps_cap": camera.fps_cap,
                "tracking": tracking_of(camera),
                "save_video": camera.outputs.save_video,
                "save_jsonl": camera.outputs.save_jsonl,
                "save_counts": camera.outputs.save_counts,
                "rotation": None
                if rotate is None
                else {
                    "max_bytes": None if rotate.max_mb is None else int(rotate.max_mb * MB),
                    "max_seconds": None if rotate.max_minutes is None else rotate.max_minutes * 60,
                },
            }
        )
    return plans


def camera_plans(deployment: Deployment) -> list:
    """The engine's ``CameraPlan`` of every camera."""
    from ..engines.command import CameraPlan
    from ..outputs.files import Rotation

    return [
        CameraPlan(**{**fields, "rotation": Rotation(**fields["rotation"]) if fields["rotation"] else None})
        for fields in plan_fields(deployment)
    ]


def attempts(run: RunSettings) -> int | None:
    """``RetryPolicy.attempts`` of ``retries``: the first try and the retries after it; None: forever."""
    return None if run.retries is None else run.retries + 1


def stream_options(deployment: Deployment):
    """The engine's ``StreamOptions`` of the run (per-camera settings are in the plans)."""
    from ..engines.command import StreamOptions
    from ..sources import RetryPolicy

    run = deployment.run
    return StreamOptions(workers=run.workers, live=run.live, hw_decode=run.hw_decode, retry=RetryPolicy(attempts=attempts(run)))


def decode_options(deployment: Deployment, *, track_conf: float) -> DecodeOptions:
    """The shared model's ``DecodeOptions``; without ``conf``: 0.25, or ``track_conf`` when a camera tracks."""
    model = deployment.model
    conf = model.conf if model.conf is not None else track_conf if deployment.tracks else 0.25
    classes = tuple(model.classes) if model.classes is not None else None
    return DecodeOptions(conf=conf, iou=model.iou, max_det=model.max_det, classes=classes, agnostic=model.agnostic)


def board_options(deployment: Deployment) -> BoardOptions:
    model = deployment.model
    return BoardOptions(runtime=model.runtime, bpu_core=model.bpu_core, priority=model.priority)


def serve_config(deployment: Deployment) -> ServeConfig | None:
    """The live view's ``ServeConfig`` (None without ``serve``), its token read from ``token_env``."""
    serve = deployment.serve
    if serve is None:
        return None
    host, port = serve.address
    return ServeConfig(host=host, port=port, token=os.environ.get(serve.token_env) or None)


def run_outputs(deployment: Deployment, *, threshold: float) -> list:
    """The run-wide outputs of the ``mqtt`` and ``ros`` sections (not yet opened: they connect when the run opens
    them); ``threshold``: the model's score threshold (ROS 2's LabelInfo)."""
    outputs: list = []
    ros = deployment.ros
    if ros is not None:
        from ..outputs.ros import ros_outputs
        from ..outputs.ros.messages import RosTopics

        topics = RosTopics(namespace=ros.namespace, instance_mask=ros.instance_mask, image=ros.image, threshold=threshold)
        outputs += ros_outputs(topics=topics, bag=ros.bag, storage=ros.bag_storage, publish=ros.publish)
    mqtt = deployment.mqtt
    if mqtt is not None:
        from ..outputs.mqtt import MqttOutput

        outputs.append(MqttOutput(mqtt.config(), on_failure=mqtt.on_failure))
    return outputs


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def describe(deployment: Deployment) -> list[str]:
    """What would run, a few lines: the model, the run, each camera with its source and outputs, the live view."""
    model, run = deployment.model, deployment.run
    retries = "forever" if run.retries is None else str(run.retries)
    lines = [
        f"model    {_shown(model.path)} (conf {model.conf if model.conf is not None else 'default'}, iou {model.iou}, "
        f"threads {model.threads or 'ORT default'})",
        f"run      {run.workers} worker(s), retries {retries}, {len(deployment.cameras)} camera(s)",
    ]
    for fields in plan_fields(deployment):
        tracking = fields["tracking"]
        taken = [f"every {fields['vid_stride']} frame(s)"] if fields["vid_stride"] > 1 else []
        taken += [f"at most {fields['fps_cap']:g} fps"] if fields["fps_cap"] else []
        taken += ["live" if fields["live"] else "every frame"] if fields["live"] is not None else []
        if tracking is not None:
            taken.append(f"tracked, {len(tracking.lines)} line(s), {len(tracking.zones)} zone(s)")
        outputs = [_shown(fields[k]) for k in ("save_video", "save_jsonl", "save_counts") if fields[k] is not None]
        rotation = fields["rotation"]
        if rotation is not None:
            parts = [f"{rotation['max_bytes'] / MB:g} MB" if rotation["max_bytes"] else ""]
            parts += [f"{rotation['max_seconds'] / 60:g} min" if rotation["max_seconds"] else ""]
            outputs.append("rotated at " + " or ".join(p for p in parts if p))
        lines.append(
            f"camera   {fields['name']}: {fields['source']}"
            + (f" ({', '.join(taken)})" if taken else "")
            + (f" -> {', '.join(outputs)}" if outputs else " (no outputs)")
        )
    if deployment.serve is not None:
        host, port = deployment.serve.address
        lines.append(f"serve    http://{host}:{port}/ (token from ${deployment.serve.token_env})")
    if deployment.mqtt is not None:
        mqtt = deployment.mqtt
        login = f", as {mqtt.username}" if mqtt.username else ""
        tls = ", TLS" if mqtt.tls or mqtt.tls_ca else ""
        lines.append(f"mqtt     {mqtt.address} under {mqtt.prefix}/{login}{tls}")
    if deployment.ros is not None:
        ros = deployment.ros
        parts = (["live topics"] if ros.publish else []) + ([f"bag {_shown(ros.bag)} ({ros.bag_storage})"] if ros.bag else [])
        lines.append(f"ros      {', '.join(parts)}" + (f" under {ros.namespace}" if ros.namespace else ""))
    return lines
