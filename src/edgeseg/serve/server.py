"""The live view's HTTP server (aiohttp, on its own thread and event loop): the page, ``/stream.mjpg[?camera=NAME]``
(one camera's MJPEG) and ``/frame.jpg[?camera=NAME]`` (its newest frame), ``/events`` (Server-Sent Events, one
``--save-jsonl`` line per frame of any camera), ``/health`` (JSON, per camera and in total) and ``/metrics``
(Prometheus); nothing else is served."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
from importlib import resources
from urllib.parse import quote

from aiohttp import web

from ..errors import EdgesegError
from .config import ServeConfig, host_name, is_loopback
from .hub import FrameHub
from .metrics import CONTENT_TYPE, Metrics

ASSETS = {"": ("index.html", "text/html"), "app.js": ("app.js", "text/javascript"), "style.css": ("style.css", "text/css")}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the token may be in the page's URL: never send it elsewhere
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
}
BOUNDARY = "edgeseg-frame"
_KEEPALIVE_S = 15.0  # an idle events stream sends a comment this often (proxies, and finding clients that left)
_START_TIMEOUT_S = 10.0
_REPEAT_S = 1.0  # a camera's stream with no newer frame for this long sends its last frame once more


class LiveServer:
    """Serves ``hub`` as configured by ``config``; ``start()`` binds (one-line error when it cannot), ``stop()`` or
    leaving the ``with`` block ends the responses and the thread."""

    def __init__(self, config: ServeConfig, *, hub: FrameHub | None = None) -> None:
        self.config = config
        self.hub = hub or FrameHub(quality=config.quality, history=config.history)
        self.metrics = Metrics(self.hub)
        self.port = config.port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edgeseg-serve", daemon=True)
        self._runner: web.AppRunner | None = None
        self._assets = {
            route: (resources.files(__package__).joinpath("static", name).read_bytes(), kind) for route, (name, kind) in ASSETS.items()
        }

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}/" + (f"?token={quote(self.config.token, safe='')}" if self.config.token else "")

    def start(self) -> LiveServer:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(_START_TIMEOUT_S)
        except OSError as exc:
            self.stop()
            raise EdgesegError(f"--serve: cannot listen on {self.config.host}:{self.config.port} ({exc.strerror or exc})") from None
        return self

    async def _start(self) -> None:
        self.hub.attach(asyncio.get_running_loop())
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._asset)
        app.router.add_get("/{name:app\\.js|style\\.css}", self._asset)
        app.router.add_get("/stream.mjpg", self._mjpeg)
        app.router.add_get("/frame.jpg", self._frame)
        app.router.add_get("/events", self._events)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(_add_security_headers)
        # handler_cancellation: a viewer who disconnects ends its handler at once (its slot is freed), not at the next
        # frame written to it, which a paused stream may never send; shutdown_timeout: then clients that hang on are cut.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """End every response (the hub's run is over), close the server, join the thread; safe to call twice."""
        if self._loop.is_closed():
            return
        self.hub.close()
        if self._thread.is_alive():
            if self._runner is not None:
                future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
                with contextlib.suppress(Exception):  # stopping: a client that would not go must not keep the process
                    future.result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self.hub.shutdown()
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ handlers (on the server's loop)

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        host = request.headers.get("Host")
        if self._loopback and host is not None and not self._our_name(host_name(host)):
            # DNS rebinding: a page whose name now points at 127.0.0.1 would read the view as same-origin; its
            # requests carry that name, a browser opening the view itself carries a loopback name.
            raise web.HTTPForbidden(text="403: on loopback the live view answers only to localhost, 127.0.0.1 or [::1]\n")
        token = self.config.token
        if token and request.match_info.get("name") is None:  # the script and style sheet hold no data: they load without it
            given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPUnauthorized(
                    text="401: the live view needs its token (?token=... or Authorization: Bearer ...)\n",
                    headers={"WWW-Authenticate": 'Bearer realm="edgeseg"'},
                )
        return await handler(request)

    async def _asset(self, request: web.Request) -> web.Response:
        body, kind = self._assets[request.match_info.get("name", "")]
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(self.hub.status())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @property
    def _loopback(self) -> bool:
        return is_loopback(self.config.host)

    def _our_name(self, name: str) -> bool:
        return is_loopback(name) or name == self.config.host.lower()

    def _admit(self) -> None:
        """A slot for one more /stream.mjpg or /events response, or 503 past ``config.max_viewers``."""
        if self.hub.viewers >= self.config.max_viewers:
            raise web.HTTPServiceUnavailable(
                text=f"503: the live view already has {self.config.max_viewers} viewers\n", headers={"Retry-After": "5"}
            )

    def _camera(self, request: web.Request) -> str:
        """The key of the camera ``?camera=NAME`` names (none: the first), or 404 with the reason."""
        name = request.query.get("camera")
        camera = self.hub.find(name)
        if camera is None:
            raise web.HTTPNotFound(text=f"404: no camera {name!r} in this run (/health lists them)\n")
        return camera

    async def _frame(self, request: web.Request) -> web.Response:
        """One camera's newest annotated frame as one JPEG: what the page's tiles past the browser's connection
        limit show (a request each second instead of an open stream)."""
        camera = self._camera(request)
        _, jpeg = await self.hub.jpeg(camera)
        if not jpeg:
            raise web.HTTPServiceUnavailable(text="503: no frame of this camera yet\n", headers={"Retry-After": "1"})
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        camera = self._camera(request)
        self._admit()
        hub, seen = self.hub, max(self.hub.camera_seq(camera) - 1, 0)  # start with the newest frame
        hub.viewers += 1  # before any await: the limit holds for requests that arrive together
        try:
            response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
            await response.prepare(request)
            if "camera" not in request.query and hub.seq == 0:  # the first camera is the one whose frame comes first
                await hub.wait_newer(0)
                camera = self._camera(request)
            jpeg, repeated = b"", True
            while True:
                if await hub.wait_newer(seen, timeout=_REPEAT_S, camera=camera):
                    (seen, jpeg), repeated = await hub.jpeg(camera), False
                elif hub.ended:
                    break
                elif repeated:
                    continue
                else:  # a browser shows a part only once the next one begins: a camera that stalls repeats its last once
                    repeated = True
                if jpeg:
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    await response.write(head + jpeg + b"\r\n")
        except ConnectionError:  # the viewer left
            pass
        finally:
            hub.viewers -= 1
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self._admit()
        hub, seen = self.hub, max(self.hub.seq - 1, 0)
        hub.viewers += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            while not (hub.ended and hub.seq <= seen):
                if not await hub.wait_newer(seen, timeout=_KEEPALIVE_S):
                    await response.write(b": keep-alive\n\n")
                    continue
                for message in hub.messages_after(seen):
                    data = await hub.message_json(message)
                    await response.write(f"id: {message.seq}\ndata: {data}\n\n".encode())
                    seen = message.seq
            await response.write(f"event: end\ndata: {json.dumps(hub.status())}\n\n".encode())
        except ConnectionError:  # the viewer left
            pass
        finally:
            hub.viewers -= 1
        return response


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
