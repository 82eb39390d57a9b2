"""Reading a deployment file: YAML (a syntax error names its line; a key given twice is an error), the
command line's overrides set at their key paths, the models' validation, then the checks across cameras
(unique names and output files, counting needs tracking, the live view's token). Every mistake is listed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import ValidationError

from ..errors import EdgesegError, Problem
from ..serve.config import is_loopback
from ..sources import is_mipi, source_kind
from .problems import DeploymentError, key_path, problems_of
from .schema import Deployment
from .settings import BY_KEY


class _Loader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; here that is an error at the second one's line."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"cannot read the deployment file ({getattr(exc, 'strerror', None) or exc})", path) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise EdgesegError(f"{where}{exc.problem or exc.context or 'YAML syntax error'}", path) from None
    except yaml.YAMLError as exc:
        raise EdgesegError(f"not YAML: {exc}", path) from None


def camera_name(source: str) -> str:
    """The default name of a camera: a file's stem, ``camera0`` (``0``, ``/dev/video0``), ``mipi0``, a URL's
    host and last path part."""
    if is_mipi(source):
        return source.split("@")[0].replace(":", "")
    kind = source_kind(source)
    if kind == "camera":
        return f"camera{source.removeprefix('/dev/video')}"
    if kind == "url":
        url = urlparse(source)
        last = url.path.rstrip("/").rpartition("/")[2]
        return "-".join(p for p in (url.hostname or "stream", last) if p)
    return Path(source).stem


def camera_names(deployment: Deployment) -> list[str]:
    return [c.name or camera_name(c.source) for c in deployment.cameras]


def _across(deployment: Deployment, names: dict[int, str]) -> list[Problem]:
    """What one camera's model cannot see: names and output files shared by two cameras, counting without
    tracking, an off-loopback live view without its token."""
    found: list[Problem] = []
    first_name: dict[str, str] = {}
    written: dict[Path, str] = {}
    for i, (camera, name) in enumerate(zip(deployment.cameras, camera_names(deployment))):
        here = key_path(("cameras", i), names)
        if name in first_name:
            given = "" if camera.name else " (from its source; give it a name)"
            found.append(Problem(f"{here}.name", f"{name!r} is already the name of {first_name[name]}{given}"))
        first_name.setdefault(name, here)
        if camera.track is None:
            for key in ("lines", "zones"):
                if getattr(camera, key):
                    found.append(Problem(f"{here}.{key}", "needs track: true (counting works on tracks)"))
            if camera.outputs.save_counts is not None:
                found.append(Problem(f"{here}.outputs.save_counts", "needs track: true (counts come from tracks)"))
        for zone in set(camera.zones) & set(camera.lines):
            found.append(Problem(f"{here}.zones.{zone}", "the name is already used by a line; give each its own name"))
        for key in ("save_video", "save_jsonl", "save_counts"):
            path = getattr(camera.outputs, key)
            if path is None:
                continue
            where = f"{here}.outputs.{key}"
            resolved = Path(os.path.abspath(path))
            if resolved in written:
                found.append(Problem(where, f"{written[resolved]} writes the same file"))
            written.setdefault(resolved, where)
    if deployment.ros is not None and deployment.ros.bag is not None and os.path.lexists(deployment.ros.bag):
        found.append(Problem("ros.bag", f"{deployment.ros.bag} already exists: a bag is never written over (give a new folder name)"))
    mqtt = deployment.mqtt
    if mqtt is not None and mqtt.password_env is not None and not os.environ.get(mqtt.password_env):
        found.append(Problem("mqtt.password_env", f"${mqtt.password_env} is not set"))
    serve = deployment.serve
    if serve is not None and not is_loopback(serve.address[0]) and not os.environ.get(serve.token_env):
        found.append(
            Problem("serve.token_env", f"${serve.token_env} is not set: listening on {serve.address[0]} (off loopback) needs a token")
        )
    return found


def _set(data: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):  # the file's own mistake at this key is what gets reported
            return
        data = child
    data[last] = value


def load_deployment(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> Deployment:
    """The validated deployment of the YAML file at ``path`` (relative paths inside it: from its folder), with
    ``overrides`` (key path -> value, as ``settings.SETTINGS`` names them) set over the file's values. Raises
    ``DeploymentError`` listing every mistake (``EdgesegError`` for an unreadable file or a YAML syntax error)."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise EdgesegError("the file is empty: expected a mapping with model and cameras", path)
    if not isinstance(data, dict):
        raise EdgesegError(f"expected a mapping of keys (model, run, cameras, serve), got a {type(data).__name__}", path)
    flags = {}
    for key, value in (overrides or {}).items():
        if BY_KEY[key].path and isinstance(value, str):  # a path on the command line is one from here, not the file's folder
            value = os.path.abspath(value)
        _set(data, key, value)
        flags[key] = BY_KEY[key].flag
    cameras = data.get("cameras")
    names = dict(enumerate(cameras)) if isinstance(cameras, dict) else {}
    try:
        deployment = Deployment.model_validate(data, context={"base": path.parent})
    except ValidationError as exc:
        raise DeploymentError(problems_of(exc, names, flags), path) from None
    problems = _across(deployment, names)
    if problems:
        raise DeploymentError(problems, path)
    return deployment
