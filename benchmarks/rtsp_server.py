"""Real RTSP cameras for tests and benchmarks (tests import it through pytest's pythonpath): GStreamer's RTSP
server in a process of its own, serving real pictures in real time.

``RtspCamera(frames_dir, fps=10)`` serves the JPEG files ``frames_dir/0000.jpg``, ``0001.jpg``, ... (made by
``write_frames`` from coco128-seg images, 640x480) as H.264 over RTSP at ``fps``, looping forever, at
``camera.url``. ``stop()`` is the camera dropping off the network (its server process is killed: connections
break, the port refuses), ``start()`` brings it back on the same port. Each client gets its own pipeline
from the first picture on, so a reader that (re)connects starts on a key frame.

The server runs under the system's Python (``/usr/bin/python3``): GStreamer's Python bindings (``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``) are Debian packages, not wheels. This file is both the test-side helper
(imported by the tests' Python: no ``gi`` import at module level) and the server (``python3 rtsp_server.py
PORT DIR FPS``: it prints ``ready PORT`` once it accepts connections, then serves until killed).

    camera = RtspCamera(frames_dir, fps=10).start()     # returns once the server accepts connections
    cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)          # reads it in real time
    camera.stop(); camera.start()                         # the camera drops, then comes back on the same port
    camera.freeze(); camera.thaw()                        # the camera stalls (no frames, connections open), then goes on
    camera.close()                                        # stops it for good (also on garbage collection)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
FRAME_SIZE = (640, 480)  # (width, height) of the pictures served
MOUNT = "/live"


def gstreamer_missing() -> str | None:
    """Why a real RTSP camera cannot run here (None when it can): the reason a test skips with."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"needs {SYSTEM_PYTHON} with GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('multifilesrc', 'jpegdec', 'openh264enc', 'rtph264pay') if not Gst.ElementFactory.find(e)];"
        "print(' '.join(missing))"
    )
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"GStreamer's RTSP server does not start: {exc}"
    if proc.returncode != 0:
        return "needs GStreamer's RTSP server for the system Python (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)"
    if proc.stdout.strip():
        return f"needs the GStreamer elements {proc.stdout.strip()} (gstreamer1.0-plugins-good/-bad)"
    return None


def write_frames(images: Sequence[Path], out_dir: Path, size: tuple[int, int] = FRAME_SIZE) -> Path:
    """The pictures a camera serves: ``images`` resized to ``size`` as ``out_dir/0000.jpg``, ``0001.jpg``, ..."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(images):
        picture = cv2.resize(cv2.imread(str(path)), size, interpolation=cv2.INTER_AREA)
        if not cv2.imwrite(str(out_dir / f"{k:04d}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {out_dir / f'{k:04d}.jpg'}")
    return out_dir


def free_port() -> int:
    """A TCP port on loopback nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspCamera:
    """One RTSP camera on loopback serving the pictures of ``frames_dir`` (see ``write_frames``) at ``fps``, looping.

    ``url`` is fixed at construction (a free port picked then); ``start()`` returns once the server accepts
    connections (or raises with the server's own output), ``stop()`` kills it (the camera drops), ``running``
    says which, ``close()`` stops it for good. Usable as a context manager."""

    def __init__(self, frames_dir: Path, *, fps: int = 10, port: int | None = None, start_timeout_s: float = 20.0) -> None:
        self.frames_dir = Path(frames_dir)
        self.frames = sorted(self.frames_dir.glob("*.jpg"))
        if not self.frames:
            raise FileNotFoundError(f"{self.frames_dir}: no .jpg pictures to serve (see write_frames)")
        self.fps = int(fps)
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}{MOUNT}"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RtspCamera:
        """Start serving (again) on ``port``; returns once a client can connect. A port still held by a dying
        socket is tried again until ``start_timeout_s``."""
        if self.running:
            return self
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            proc = subprocess.Popen(
                [SYSTEM_PYTHON, __file__, str(self.port), str(self.frames_dir), str(self.fps)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},  # the system Python's own modules
            )
            line = _read_line(proc, deadline)
            if line.startswith("ready"):
                self._proc = proc
                if _accepts(self.port, deadline):
                    return self
                self.stop()
                raise RuntimeError(f"RTSP camera on port {self.port} said ready but refuses connections")
            output = line + _drain(proc)
            if "bind" in output.lower() and time.monotonic() < deadline:
                time.sleep(0.2)  # the port is still held (a socket of the previous server): try again
                continue
            raise RuntimeError(f"RTSP camera on port {self.port} did not start: {output.strip()[-2000:]}")

    def stop(self) -> None:
        """The camera drops: its server is killed at once (no goodbye to clients), the port refuses."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    close = stop

    def freeze(self) -> None:
        """The camera stalls: its server is paused (SIGSTOP), connections stay open and no frame comes."""
        if self.running:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """The stalled camera goes on (SIGCONT)."""
        if self.running:
            self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: best effort
            self.stop()

    def frame_index(self, image) -> int:
        """Which served picture a decoded frame shows (the one it differs least from): an oracle that shares
        nothing with the reader under test."""
        import cv2
        import numpy as np

        small = cv2.resize(image, (64, 48), interpolation=cv2.INTER_AREA).astype(np.int16)
        if not hasattr(self, "_thumbs"):
            self._thumbs = np.stack([cv2.resize(cv2.imread(str(p)), (64, 48), interpolation=cv2.INTER_AREA) for p in self.frames])
        diffs = np.abs(self._thumbs.astype(np.int16) - small[None]).mean(axis=(1, 2, 3))
        return int(np.argmin(diffs))


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    """The server's first line of output ('ready PORT', or the start of an error) within the deadline."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            proc.kill()
            proc.wait(timeout=10)
            return "no answer before the deadline\n"
    return proc.stdout.readline()


def _drain(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out or ""


def _accepts(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------------------ the server


def serve(port: int, frames_dir: str, fps: int) -> None:
    """Serve ``frames_dir``'s pictures as H.264 over RTSP at ``rtsp://127.0.0.1:PORT/live`` until killed."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    # multifilesrc loops over the pictures; its caps' framerate stamps them and the server's sinks play them on
    # the clock, so frames leave in real time. A key frame each second: a stream joined mid-way starts soon.
    location = os.path.join(frames_dir, "%04d.jpg")
    factory.set_launch(
        f'( multifilesrc location="{location}" index=0 loop=true caps="image/jpeg,framerate={fps}/1" '
        "! jpegdec ! videoconvert ! video/x-raw,format=I420 "
        f"! openh264enc complexity=low rate-control=quality gop-size={fps} "
        "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(False)  # each client its own pipeline from the first picture: a (re)connect starts on a key frame
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot bind port {port}", flush=True)
        sys.exit(1)
    print(f"ready {port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
