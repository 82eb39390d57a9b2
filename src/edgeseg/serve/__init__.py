"""Watch a run from a browser: ``edgeseg predict MODEL SOURCE --serve [HOST:]PORT``.

A ``FrameHub`` observes ``predict_sources`` (it only keeps each camera's newest frame and counters), and a
``LiveServer`` (aiohttp and prometheus_client, the ``serve`` extra) serves a page with every camera's annotated
stream, ``/stream.mjpg?camera=NAME``, ``/events``, ``/health`` and ``/metrics``::

    from edgeseg.serve import ServeConfig, start_server

    with start_server(ServeConfig(port=8080)) as server:
        predict_sources(seg, ["0"], run_outputs=[server.hub])
"""

from __future__ import annotations

from ..errors import EdgesegError
from .config import TOKEN_ENV, ServeConfig, is_loopback
from .hub import CameraView, FrameHub, FrameMessage

__all__ = ["TOKEN_ENV", "CameraView", "FrameHub", "FrameMessage", "ServeConfig", "is_loopback", "start_server"]


def start_server(config: ServeConfig, *, hub: FrameHub | None = None):
    """A started ``LiveServer`` (bound, serving on its own thread); ``with`` stops it on the way out."""
    try:
        from .server import LiveServer
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith(("aiohttp", "prometheus_client")):
            raise
        raise EdgesegError(f'the live view (--serve) needs {exc.name.split(".")[0]}: pip install "edgeseg[serve]"') from None
    return LiveServer(config, hub=hub).start()
