"""A deployment file's mistakes as one line each: pydantic's errors turned into ``KEY.PATH: reason`` (unknown keys
with the nearest known key), the key paths written as the file spells them (``cameras[1].lines.door``)."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import EdgesegError, Problem
from .schema import Deployment, shown


class DeploymentError(EdgesegError):
    """Every mistake of a deployment file (``problems``: key path and reason), one line each: ``FILE: KEY: REASON``."""

    def __init__(self, problems: Sequence[Problem], path: str) -> None:
        self.problems = list(problems)
        super().__init__(f"\n{path}: ".join(str(p) for p in self.problems), path)


def key_path(loc: Sequence[str | int], names: dict[int, str] | None = None) -> str:
    """``("cameras", 1, "lines", "door")`` -> ``cameras[1].lines.door``; with ``names`` (cameras given as a
    mapping: index -> key) -> ``cameras.front.lines.door``."""
    text = ""
    for k, part in enumerate(loc):
        if isinstance(part, int):
            if k == 1 and loc[0] == "cameras" and names and part in names:
                text += f".{names[part]}"
            else:
                text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _unwrap(annotation: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class found at ``loc`` below ``Deployment`` (None where there is none)."""
    current: Any = Deployment
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unknown_key(loc: Sequence[str | int]) -> str:
    key = str(loc[-1])
    if key == "token" and loc[:-1] == ("serve",):
        return "the token is never kept in the file: name the environment variable that holds it with token_env"
    model = model_at(loc[:-1])
    known = list(model.model_fields) if model is not None else []
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if near:
        return f"unknown key (did you mean {near[0]}?)"
    return f"unknown key (known keys: {', '.join(known)})" if known else "unknown key"


_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
}


def reason(error: dict) -> str:
    """The reason of one pydantic error, as a sentence about the file's value."""
    kind, value, loc = error["type"], error.get("input"), error["loc"]
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "model_type" and loc and loc[-1] == "track":
        return f"expected true, false or a mapping of tracker settings, got {shown(value)}"
    if kind in _TYPES:
        return f"expected {_TYPES[kind]}, got {shown(value)}"
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {shown(value)}"
    if kind == "too_short":
        return f"needs at least {error['ctx']['min_length']} item(s), got none"
    return error["msg"]


def problems_of(exc: ValidationError, names: dict[int, str] | None = None, flags: dict[str, str] | None = None) -> list[Problem]:
    """One ``Problem`` (key path, reason) per error; a key set by a command-line flag (``flags``: key -> flag) is
    named with its flag too."""
    found = []
    for error in exc.errors(include_url=False):
        where = key_path(error["loc"], names)
        if flags and where in flags:
            where = f"{where} (from {flags[where]})"
        found.append(Problem(where, reason(error)))
    return found
