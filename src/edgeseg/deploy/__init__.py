"""``edgeseg run DEPLOY.yaml``: every camera of a deployment from one validated file (pydantic models in
``schema.py``; the settings shared with the command line's flags declared once in ``settings.py``), its
mistakes one line each (``problems.py``), read and checked by ``load.py``, and turned into the engine's camera
plans by ``plan.py``.

The names below load on first use: ``settings`` is plain data, so the command line builds ``edgeseg run``'s
flags without importing pydantic (the deploy extra)."""

from __future__ import annotations

import importlib

_WHERE = {
    "SETTINGS": "settings",
    "Setting": "settings",
    "Camera": "schema",
    "Deployment": "schema",
    "DeploymentError": "problems",
    "camera_name": "load",
    "load_deployment": "load",
    "board_options": "plan",
    "camera_plans": "plan",
    "decode_options": "plan",
    "describe": "plan",
    "plan_fields": "plan",
    "serve_config": "plan",
    "stream_options": "plan",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
