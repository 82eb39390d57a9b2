"""The live view (``predict --serve``) on loopback: MJPEG, events, health, tokens, stalled and many clients, and a
real headless Chromium opening the page."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from corpus import start_cli
from edgeseg import DecodeOptions, Detections, EdgesegError, PredictOutputs, Segmenter, predict_sources
from edgeseg.backends import read_model_info
from edgeseg.cli.options import serve_address
from edgeseg.predict import DEFAULT_MODEL, SAMPLE_IMAGE
from edgeseg.serve import ServeConfig, start_server
from edgeseg.sources import Source, SourceItem

pytest.importorskip("aiohttp", reason='the live view needs the serve extra: pip install "edgeseg[serve]"')
# A stalled server or runner shows as a hang: fail the test, not the run. Slow: a server, runners and a browser.
pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class PacedSource(Source):
    """A Source of in-memory frames at ``fps``, cycling through ``images`` until ``count`` frames or ``stop``."""

    def __init__(self, images: list[np.ndarray], *, fps: float = 30.0, count: int = 10_000, stop: threading.Event | None = None):
        self.name, self.live, self.fps, self.warnings = "paced", False, fps, []
        self.images, self.count, self.stop = images, count, stop or threading.Event()

    def __iter__(self):
        t0 = time.monotonic()
        for i in range(self.count):
            if self.stop.is_set():
                return
            time.sleep(max(0.0, t0 + i / self.fps - time.monotonic()))
            yield SourceItem(i, self.name, self.images[i % len(self.images)], time_s=i / self.fps)


class BoxSegmenter:
    """A stand-in ``Predictor`` (fast, deterministic): one 'person' box in the middle of every frame; the model facts
    are the embedded model's."""

    info = read_model_info(DEFAULT_MODEL)
    options = DecodeOptions()

    def __call__(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        box = np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32)
        mask = np.ones((h // 2, w // 2), bool)
        return Detections(box, np.array([0.9], np.float32), np.array([0]), (h, w), {0: "person"}, [mask], np.array([[w // 4, h // 4]]))

    def workers(self, count: int) -> list[BoxSegmenter]:
        return [BoxSegmenter() for _ in range(count)]


def sample_slides(count: int = 4) -> list[np.ndarray]:
    """The project's sample image slid by multiples of 32 px: the embedded model detects things in each."""
    image = cv2.imread(str(SAMPLE_IMAGE))
    h, w = image.shape[:2]
    return [cv2.warpAffine(image, np.float32([[1, 0, 32 * k], [0, 1, 0]]), (w, h), borderValue=(114, 114, 114)) for k in range(count)]


def run_in_thread(target, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def work():
        try:
            out["result"] = target(*args, **kwargs)
        except BaseException as exc:  # surfaced by the test
            out["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, out


def get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def health(server) -> dict:
    return json.loads(get(server.url + "health")[1])


def wait_until(predicate, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def read_jpegs(response, count: int) -> list[bytes]:
    """``count`` parts of a multipart MJPEG response, by their Content-Length."""
    parts = []
    while len(parts) < count:
        line = response.readline()
        assert line, "the MJPEG stream ended early"
        if line.strip() != b"--edgeseg-frame":
            continue
        headers = {}
        while (line := response.readline().strip()) != b"":
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(response.read(int(headers["content-length"])))
    return parts


def read_events(response) -> list[tuple[str, str]]:
    """(event, data) of a Server-Sent Events response up to its ``end`` event."""
    events, kind, data = [], "message", []
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        elif not line and data:
            events.append((kind, "\n".join(data)))
            if kind == "end":
                return events
            kind, data = "message", []
    return events


def assert_jpeg(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a complete JPEG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.size
    return image


# ------------------------------------------------------------------------------------------ configuration


def test_addresses_and_tokens_are_checked_before_anything_binds(monkeypatch):
    import argparse

    assert serve_address("8080") == ("127.0.0.1", 8080)
    assert serve_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert serve_address("[::1]:9000") == ("::1", 9000)
    for bad in ("abc", ":80", "host:", "70000", "a[::1]:80", "²"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected \\[HOST:\\]PORT"):
            serve_address(bad)
    monkeypatch.delenv("EDGESEG_SERVE_TOKEN", raising=False)
    for host in ("0.0.0.0", "192.0.2.1", "board.local", "::"):
        with pytest.raises(EdgesegError, match="needs a token"):
            ServeConfig(host=host, port=0)
    assert ServeConfig.from_cli(("localhost", 0)).token is None
    monkeypatch.setenv("EDGESEG_SERVE_TOKEN", "from-env")
    assert ServeConfig.from_cli(("0.0.0.0", 0)).token == "from-env"
    assert ServeConfig.from_cli(("0.0.0.0", 0), token="given").token == "given"


def test_a_non_loopback_bind_without_a_token_refuses_to_start_with_one_line(default_model):
    env = {k: v for k, v in os.environ.items() if k != "EDGESEG_SERVE_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg.cli", "predict", str(default_model), str(SAMPLE_IMAGE), "--serve", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "edgeseg: error: --serve 0.0.0.0: binding off loopback needs a token (--serve-token TOKEN or $EDGESEG_SERVE_TOKEN)"
    ]


def test_a_port_in_use_is_a_one_line_error():
    with start_server(ServeConfig(port=0)) as first, pytest.raises(EdgesegError, match=f"cannot listen on 127.0.0.1:{first.port}"):
        start_server(ServeConfig(port=first.port))


def test_without_aiohttp_the_error_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "edgeseg.serve.server", raising=False)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # what an install without the extra looks like to an import
    with pytest.raises(EdgesegError, match=r'pip install "edgeseg\[serve\]"'):
        start_server(ServeConfig(port=0))


# ------------------------------------------------------------------------------------------ access


def test_a_wrong_or_missing_token_gets_401_and_the_right_one_gets_in():
    with start_server(ServeConfig(port=0, token="s3cret")) as server:
        base = server.url.split("?")[0]
        for path in ("", "health", "events", "stream.mjpg", "frame.jpg", "metrics"):
            assert get(base + path)[0] == 401, path
            assert get(base + path + "?token=wrong")[0] == 401, path
            assert get(base + path, headers={"Authorization": "Bearer wrong"})[0] == 401, path
        status, body = get(base + "?token=s3cret")
        assert status == 200 and b'<section id="grid"' in body
        assert get(base + "health", headers={"Authorization": "Bearer s3cret"})[0] == 200
        status, body = get(base + "metrics", headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and b"# TYPE edgeseg_frames_total counter" in body
        assert server.url == base + "?token=s3cret"
        assert get(base + "app.js")[0] == get(base + "style.css")[0] == 200  # the page's own code: no data in it


def raw_get(port: int, path: str, host: str | None) -> int:
    """The status of GET ``path`` with exactly this ``Host`` header (None: no Host header at all, HTTP/1.0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"GET {path} HTTP/1.0\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "\r\n"
        s.sendall(head.encode())
        return int(s.makefile("rb").readline().split()[1])


def test_on_loopback_a_foreign_host_header_is_refused_dns_rebinding():
    """A web page whose name an attacker re-points at 127.0.0.1 reaches the server with its own name as Host."""
    with start_server(ServeConfig(port=0)) as server:
        port = server.port
        for path in ("/", "/events", "/stream.mjpg", "/health", "/metrics", "/app.js"):
            for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"localhost.evil:{port}"):
                assert raw_get(port, path, host) == 403, (path, host)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "127.0.0.1", "localhost:9999", None):
            assert raw_get(port, "/health", host) == 200, host  # another port: an SSH tunnel (ssh -L 9999:localhost:PORT)
        assert health(server)["viewers"] == 0


def test_a_viewer_that_drops_mid_mjpeg_is_released_even_when_no_frame_comes():
    """Viewers count back to zero when clients go, also while the stream waits for its next frame (a camera that
    paused): a client that left must not hold a viewer slot."""
    resume = threading.Event()

    class Pausing(PacedSource):
        def __iter__(self):
            for item in super().__iter__():
                if item.index == 3:
                    resume.wait(30)  # no frame for a while: nothing is written to the clients
                yield item

    with start_server(ServeConfig(port=0)) as server:
        thread, out = run_in_thread(
            predict_sources, BoxSegmenter(), [Pausing(sample_slides(), fps=30, count=6)], show_progress=False, run_outputs=[server.hub]
        )
        clients = []
        for path in ("/stream.mjpg", "/stream.mjpg", "/events"):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            clients.append(s)
        wait_until(lambda: server.hub.viewers == 3, what="three viewers")
        wait_until(lambda: server.hub.seq == 3, what="the pause")
        for s in clients:  # the viewers drop mid-stream
            s.close()
        wait_until(lambda: server.hub.viewers == 0, timeout=10, what="the viewers to be released")
        assert health(server)["viewers"] == 0
        resume.set()
        thread.join(20)
    assert "error" not in out and out["result"].processed == 6


def test_viewers_past_the_limit_get_503_and_a_freed_slot_is_taken_again():
    stop = threading.Event()
    with start_server(ServeConfig(port=0, max_viewers=2)) as server:
        thread, _ = run_in_thread(
            predict_sources,
            BoxSegmenter(),
            [PacedSource(sample_slides(), fps=30, stop=stop)],
            show_progress=False,
            run_outputs=[server.hub],
        )
        try:
            first = urllib.request.urlopen(server.url + "stream.mjpg", timeout=10)
            second = urllib.request.urlopen(server.url + "events", timeout=10)
            wait_until(lambda: server.hub.viewers == 2, what="two viewers")
            for path in ("stream.mjpg", "events"):
                status, body = get(server.url + path)
                assert status == 503 and b"2 viewers" in body, (path, status, body)
            assert get(server.url + "health")[0] == get(server.url)[0] == 200  # the page and /health are not viewers
            first.close()
            wait_until(lambda: server.hub.viewers == 1, what="the freed slot")
            with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as third:
                assert_jpeg(read_jpegs(third, 1)[0])
            second.close()
        finally:
            stop.set()
            thread.join(20)
    with pytest.raises(EdgesegError, match="max_viewers must be >= 1"):
        ServeConfig(max_viewers=0)


def test_only_the_page_and_its_endpoints_are_served():
    with start_server(ServeConfig(port=0)) as server:
        for path in ("static/", "static/index.html", "serve/", "../", "%2e%2e/%2e%2e/etc/passwd", "index.html", "hub.py", "favicon.ico"):
            assert get(server.url + path)[0] == 404, path
        status, body = get(server.url + "app.js")
        assert status == 200 and b"EventSource" in body
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/", body=b"x")
        assert conn.getresponse().status == 405
        conn.close()
        with urllib.request.urlopen(server.url, timeout=10) as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff" and "default-src 'self'" in r.headers["Content-Security-Policy"]


# ------------------------------------------------------------------------------------------ streaming


def test_mjpeg_frames_are_valid_jpegs_whose_count_grows_while_the_stream_runs():
    stop = threading.Event()
    with start_server(ServeConfig(port=0)) as server:
        thread, out = run_in_thread(
            predict_sources,
            BoxSegmenter(),
            [PacedSource(sample_slides(), fps=30, stop=stop)],
            show_progress=False,
            run_outputs=[server.hub],
        )
        try:
            with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as r:
                assert r.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=edgeseg-frame"
                first = read_jpegs(r, 3)
                seen_at_first = server.hub.seq
                more = read_jpegs(r, 3)
                h = health(server)
                assert h["status"] == "running" and h["source"] == "paced" and h["viewers"] == 1 and h["failed"] == 0, h
                assert h["frames"] >= 6 and h["fps"] > 0 and h["latency_ms"] >= 0, h
            assert server.hub.seq > seen_at_first  # frames kept coming while the client read
            for data in first + more:
                image = assert_jpeg(data)
                assert image.shape == (480, 640, 3)
            assert len({d for d in first + more}) > 1  # not one frame repeated: the view follows the stream
        finally:
            stop.set()
            thread.join(20)
    assert "error" not in out and out["result"].processed > 0


def test_events_are_the_save_jsonl_lines_one_per_frame(tmp_path, coco128_images, default_model):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for p in coco128_images[:6]:
        writer.write(cv2.resize(cv2.imread(str(p)), (320, 240)))
    writer.release()
    jsonl = tmp_path / "frames.jsonl"
    with start_server(ServeConfig(port=0)) as server, urllib.request.urlopen(server.url + "events", timeout=30) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        wait_until(lambda: server.hub.viewers == 1, what="the events client")
        summary = predict_sources(
            Segmenter(default_model, threads=1),
            [clip],
            outputs=PredictOutputs(save_jsonl=jsonl),
            show_progress=False,
            run_outputs=[server.hub],
        )
        events = read_events(r)
    lines = jsonl.read_text().splitlines()
    assert summary.processed == len(lines) == 6 and summary.detections > 0
    assert [kind for kind, _ in events] == ["message"] * 6 + ["end"]
    assert [data for _, data in events[:-1]] == lines  # byte for byte the --save-jsonl lines
    assert json.loads(events[-1][1])["frames"] == 6


def test_nothing_is_encoded_without_viewers_and_each_frame_at_most_once_with_many():
    with start_server(ServeConfig(port=0)) as server:
        predict_sources(BoxSegmenter(), [PacedSource(sample_slides(), fps=200, count=20)], show_progress=False, run_outputs=[server.hub])
        assert server.hub.seq == 20 and server.hub.jpeg_encodes == 0
    stop = threading.Event()
    with start_server(ServeConfig(port=0)) as server:
        encoded, encode = [], server.hub._encode
        server.hub._encode = lambda frame: encoded.append(frame.index) or encode(frame)
        thread, _ = run_in_thread(
            predict_sources,
            BoxSegmenter(),
            [PacedSource(sample_slides(), fps=30, stop=stop)],
            show_progress=False,
            run_outputs=[server.hub],
        )
        responses = [urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda r: read_jpegs(r, 5), responses))
        stop.set()
        thread.join(20)
        for r in responses:
            r.close()
    assert len(encoded) >= 5 and len(encoded) == len(set(encoded)), encoded  # four viewers, one JPEG per frame


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_view_works_at_a_lower_priority_than_the_pipeline():
    from edgeseg.serve.hub import VIEW_NICE

    with start_server(ServeConfig(port=0)) as server:
        thread, _ = run_in_thread(
            predict_sources, BoxSegmenter(), [PacedSource(sample_slides(), fps=30, count=10)], show_progress=False, run_outputs=[server.hub]
        )
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as r:
            read_jpegs(r, 1)
        view = [t for t in threading.enumerate() if t.name.startswith("edgeseg-view")]
        assert len(view) == 1
        assert os.getpriority(os.PRIO_PROCESS, view[0].native_id) == min(os.getpriority(os.PRIO_PROCESS, 0) + VIEW_NICE, 19)
        thread.join(20)


def test_an_image_folder_is_a_slideshow_with_one_message_per_image(tmp_path):
    for k, image in enumerate(sample_slides(3)):
        cv2.imwrite(str(tmp_path / f"slide{k}.jpg"), image)
    with start_server(ServeConfig(port=0)) as server, urllib.request.urlopen(server.url + "events", timeout=10) as r:
        wait_until(lambda: server.hub.viewers == 1, what="the events client")
        predict_sources(BoxSegmenter(), [tmp_path], show_progress=False, run_outputs=[server.hub])
        events = read_events(r)
    images = [json.loads(data)["detections"][0]["image"] for kind, data in events if kind == "message"]
    assert images == [str(tmp_path / f"slide{k}.jpg") for k in range(3)]


def test_the_live_view_needs_no_onnx():
    """It serves .bin models on the board as well: nothing in it touches ONNX or a backend."""
    import ast

    import edgeseg.serve

    for path in Path(edgeseg.serve.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {n.split(".")[-1] for n in names} & {"onnx", "onnxruntime", "onnxgraph", "backends", "predict"}, (path, names)


def test_a_client_that_never_reads_does_not_stall_the_runner():
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 255, (720, 1280, 3), np.uint8) for _ in range(2)]  # incompressible: ~1.5 MB a JPEG
    with start_server(ServeConfig(port=0)) as server:
        stalled = []
        for path in ("/stream.mjpg", "/events"):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            stalled.append(s)  # never read from
        wait_until(lambda: server.hub.viewers == 2, what="the stalled clients")
        source = PacedSource(noise, fps=25, count=60)
        thread, out = run_in_thread(predict_sources, BoxSegmenter(), [source], show_progress=False, run_outputs=[server.hub])
        wait_until(lambda: server.hub.seq > 0, what="the first frame")  # the stalled clients came before it, this one after
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as r:
            seqs = []
            for _ in range(4):  # a reading client keeps getting fresh frames all the while
                read_jpegs(r, 1)
                seqs.append(server.hub.seq)
        thread.join(30)
        assert not thread.is_alive(), "the runner stalled behind a client that does not read"
        assert "error" not in out and out["result"].processed == 60 and server.hub.seq == 60
        assert seqs == sorted(seqs) and seqs[-1] > seqs[0]

        # The stalled clients were served, not skipped: what waits in their sockets is a whole JPEG part (MJPEG)
        # and an event, pushed at them until their buffers filled.
        def received(s: socket.socket, enough) -> bytes:
            s.settimeout(5)
            data = b""
            while not enough(data):
                chunk = s.recv(1 << 16)
                assert chunk, "the connection ended before a whole part came"
                data += chunk
            s.close()
            return data

        def whole_jpeg(data: bytes) -> bytes | None:
            head = b"--edgeseg-frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
            if head not in data or b"\r\n\r\n" not in data[data.index(head) :]:
                return None
            part = data[data.index(head) + len(head) :]
            length, body = int(part.split(b"\r\n", 1)[0]), part.split(b"\r\n\r\n", 1)[1]
            return body[:length] if len(body) >= length else None

        body = whole_jpeg(received(stalled[0], whole_jpeg))
        assert assert_jpeg(body).shape == (720, 1280, 3)
        pushed = {"/events": received(stalled[1], lambda data: b"\ndata: " in data)}
        assert pushed["/events"].count(b"\ndata: ") >= 1


def test_ten_concurrent_clients_are_served():
    stop = threading.Event()
    with start_server(ServeConfig(port=0)) as server:
        thread, _ = run_in_thread(
            predict_sources,
            BoxSegmenter(),
            [PacedSource(sample_slides(), fps=30, stop=stop)],
            show_progress=False,
            run_outputs=[server.hub],
        )

        all_in = threading.Barrier(10, timeout=20)

        def viewer(_):
            with urllib.request.urlopen(server.url + "stream.mjpg", timeout=15) as r:
                jpegs = read_jpegs(r, 1)
                all_in.wait()  # all ten are connected at this moment
                at_once = server.hub.viewers
                jpegs += read_jpegs(r, 4)
            with urllib.request.urlopen(server.url + "events", timeout=15) as r:
                id_line, data_line = r.readline(), r.readline()  # a new client gets the newest frame at once
            assert id_line.startswith(b"id: ") and data_line.startswith(b"data: ")
            return at_once, [assert_jpeg(j) for j in jpegs], json.loads(data_line.removeprefix(b"data: "))

        try:
            with ThreadPoolExecutor(10) as pool:
                results = list(pool.map(viewer, range(10)))
        finally:
            stop.set()
            thread.join(20)
    assert max(at_once for at_once, _, _ in results) == 10  # ten responses open together (none refused, none queued)
    for _, frames, first in results:
        assert [f.shape for f in frames] == [(480, 640, 3)] * 5
        assert first["detections"][0]["class_name"] == "person"


def test_the_server_stops_with_the_stream_and_ctrl_c_ends_both(tmp_path, default_model):
    clip = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for image in sample_slides() * 50:
        writer.write(cv2.resize(image, (160, 120)))
    writer.release()
    proc = start_cli(["predict", default_model, clip, "--serve", "0"], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = proc.stderr.readline()
        assert line.startswith("edgeseg: live view on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].split()[0]
        wait_until(lambda: json.loads(get(url + "health")[1])["frames"] > 0, what="the first frame")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "edgeseg: interrupted" in err and "Traceback" not in err, err
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "health", timeout=5)


# ------------------------------------------------------------------------------------------ a real browser


def _chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("needs playwright (the test extra) to drive a browser; .ci/run installs it")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("needs headless Chromium (Debian's chromium package); .ci/run installs it")
    return path


def open_page(url: str, screenshot: Path | None = None, size=(1280, 720)) -> dict:
    """Open ``url`` in headless Chromium, wait for the video and a detection row, and report what the page shows."""
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS, viewport={"width": size[0], "height": size[1]}
        )
        try:
            page = context.new_page()
            page.goto(url, timeout=20_000)
            # locator waits, not wait_for_function: the page's Content-Security-Policy forbids evaluating strings
            expect(page.locator("#detections tbody tr").first).to_be_visible(timeout=20_000)
            expect(page.locator("#fps")).not_to_have_text("–", timeout=20_000)
            video_img = page.locator(".tile img").first  # one camera: one tile
            wait_until(lambda: video_img.evaluate("img => img.naturalWidth") > 0, what="the first video frame")
            time.sleep(0.3)  # one more frame drawn
            video = cv2.imdecode(np.frombuffer(video_img.screenshot(), np.uint8), cv2.IMREAD_COLOR)
            rows = page.locator("#detections tbody tr").all_inner_texts()
            if screenshot is not None:
                page.screenshot(path=str(screenshot))
            return {"video": video, "rows": rows, "state": page.inner_text("#state"), "fps": page.inner_text("#fps")}
        finally:
            context.close()


def test_a_real_browser_shows_the_video_and_the_detections(tmp_path, default_model):
    _chromium()
    stop = threading.Event()
    with start_server(ServeConfig(port=0, token="t0k")) as server:
        seg = Segmenter(default_model, threads=1)
        thread, out = run_in_thread(
            predict_sources, seg, [PacedSource(sample_slides(), fps=5, stop=stop)], show_progress=False, run_outputs=[server.hub]
        )
        try:
            page = open_page(server.url, screenshot=tmp_path / "page.png")
        finally:
            stop.set()
            thread.join(30)
    assert "error" not in out, out.get("error")
    video = page["video"]
    seen = {"video": video.shape, "video_std": float(video.std()), "state": page["state"], "fps": page["fps"], "rows": page["rows"]}
    assert video.shape[0] > 100 and video.shape[1] > 100 and float(video.std()) > 20, seen  # a picture, not a blank area
    assert page["rows"] and all(row.strip() for row in page["rows"]) and page["state"] == "live", seen
    names = set(Segmenter(default_model).info.names.values())
    assert any(row.split("\t")[0].strip() in names for row in page["rows"]), page["rows"]
    assert cv2.imread(str(tmp_path / "page.png")) is not None


def test_tracked_events_carry_ids_events_and_counts_as_the_jsonl_does(tmp_path, default_model):
    from edgeseg.engines.command import StreamOptions
    from edgeseg.tracking import TrackingOptions, parse_line

    jsonl = tmp_path / "frames.jsonl"
    tracking = TrackingOptions(lines=(parse_line("gate=0.4,0,0.4,1"),))
    with start_server(ServeConfig(port=0)) as server, urllib.request.urlopen(server.url + "events", timeout=30) as r:
        wait_until(lambda: server.hub.viewers == 1, what="the events client")
        predict_sources(
            Segmenter(default_model, threads=1),
            [PacedSource(sample_slides(6), fps=50, count=6)],
            outputs=PredictOutputs(save_jsonl=jsonl),
            stream=StreamOptions(tracking=tracking),
            show_progress=False,
            run_outputs=[server.hub],
        )
        events = read_events(r)
        jpeg = server.hub._encode(server.hub.cameras()[0].newest)
    lines = jsonl.read_text().splitlines()
    assert [data for _, data in events[:-1]] == lines  # byte for byte the --save-jsonl lines
    last = json.loads(lines[-1])
    assert last["counts"]["lines"]["gate"]["out"] >= 1 and all("track_id" in d for d in last["detections"])
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None


# ------------------------------------------------------------------------------------------ several cameras


def camera_frame(camera: str, index: int, image: np.ndarray, *, latency_ms: float = 20.0, age_ms: float = 50.0, **extra):
    """A frame of ``camera`` as the engine hands it over: nothing detected, so its drawing is the image itself."""
    from edgeseg.engines.threads import StreamFrame

    fields = {"source": f"{camera}.mp4", "time_s": index / 10, **extra}
    if fields.get("error"):
        return StreamFrame(index, image=None, detections=None, camera=camera, **fields)
    detections = Detections.empty(image.shape[:2], {0: "person"})
    return StreamFrame(index, image=image, detections=detections, latency_ms=latency_ms, age_ms=age_ms, camera=camera, **fields)


def distinct_images(coco128_images, sizes) -> list[np.ndarray]:
    """Different coco128 pictures, one per size (w, h): a camera's stream is told apart by its content and size."""
    return [cv2.resize(cv2.imread(str(p)), size) for p, size in zip(coco128_images[::7], sizes)]


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def scrape(server) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` parsed by prometheus_client's own parser: {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(server.url + "metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_health_and_metrics_report_each_camera_as_fed(coco128_images):
    from edgeseg.engines.threads import StreamStats
    from edgeseg.tracking import TrackedFrame

    image = distinct_images(coco128_images, [(160, 120)])[0]
    now = time.time()
    latencies, ages = {"A": [4.0, 30.0, 200.0], "B": [40.0]}, {"A": [10.0, 60.0, 3000.0], "B": [80.0]}
    counts = {"lines": {"gate": {"in": 3, "out": 1}}, "zones": {"dock": {"entered": 4, "exited": 2, "occupancy": 2}}}
    with start_server(ServeConfig(port=0)) as server:
        hub = server.hub
        a = StreamStats(camera="A", state="live", dropped=5, last_frame_at=now - 30)
        for k, (latency, age) in enumerate(zip(latencies["A"], ages["A"])):
            tracking = TrackedFrame(Detections.empty((120, 160)), [], counts, {}, [], []) if k == 2 else None
            hub.on_frame(camera_frame("A", k, image, latency_ms=latency, age_ms=age, tracking=tracking), a)
        hub.on_frame(camera_frame("A", 3, image, error="cannot decode"), a)
        hub.on_state(StreamStats(camera="C", state="connecting", state_detail="opening rtsp://c"))  # before any frame of C
        b = StreamStats(camera="B", state="live", last_frame_at=now - 100)
        hub.on_frame(camera_frame("B", 0, image, latency_ms=latencies["B"][0], age_ms=ages["B"][0]), b)
        b.state, b.state_detail, b.reconnects = "reconnecting", "no frame for 5 s", 2
        hub.on_state(b)

        h = health(server)
        cams = {c["name"]: c for c in h["cameras"]}
        assert [c["name"] for c in h["cameras"]] == ["A", "C", "B"]  # in the order they appeared
        assert (cams["A"]["frames"], cams["A"]["failed"], cams["A"]["dropped"], cams["A"]["reconnects"]) == (3, 1, 5, 0)
        assert (cams["A"]["state"], cams["A"]["latency_ms"], cams["A"]["age_ms"]) == ("live", 30.0, 60.0)
        assert 30 <= cams["A"]["last_frame_age_s"] < 40 and 100 <= cams["B"]["last_frame_age_s"] < 110
        assert (cams["B"]["state"], cams["B"]["state_detail"], cams["B"]["reconnects"], cams["B"]["frames"]) == (
            "reconnecting",
            "no frame for 5 s",
            2,
            1,
        )
        assert (cams["C"]["state"], cams["C"]["frames"], cams["C"]["last_frame_age_s"], cams["C"]["fps"]) == ("connecting", 0, None, None)
        assert (h["status"], h["frames"], h["failed"], h["dropped"], h["reconnects"]) == ("running", 4, 1, 5, 2)

        m = scrape(server)

        def value(name: str, **labels) -> float | None:
            return m.get((name, frozenset(labels.items())))

        assert [value("edgeseg_frames_total", camera=c) for c in "ABC"] == [3, 1, 0]
        assert [value("edgeseg_frames_failed_total", camera=c) for c in "ABC"] == [1, 0, 0]
        assert [value("edgeseg_frames_dropped_total", camera=c) for c in "ABC"] == [5, 0, 0]
        assert [value("edgeseg_reconnects_total", camera=c) for c in "ABC"] == [0, 2, 0]
        states = {
            c: [s for s in ("connecting", "live", "reconnecting", "ended") if value("edgeseg_camera_state", camera=c, state=s) == 1]
            for c in "ABC"
        }
        assert states == {"A": ["live"], "B": ["reconnecting"], "C": ["connecting"]}
        assert value("edgeseg_camera_state", camera="A", state="ended") == 0
        for name, fed in (("edgeseg_inference_latency_seconds", latencies), ("edgeseg_end_to_end_latency_seconds", ages)):
            for camera, values in fed.items():
                buckets = {
                    dict(labels)["le"]: v for (n, labels), v in m.items() if n == f"{name}_bucket" and dict(labels)["camera"] == camera
                }
                assert len(buckets) > 5 and buckets["+Inf"] == len(values)
                for le, count in buckets.items():  # each bucket counts the fed values up to its bound
                    assert count == sum(v / 1000 <= float(le) for v in values), (name, camera, le)
                assert value(f"{name}_count", camera=camera) == len(values)
                assert value(f"{name}_sum", camera=camera) == pytest.approx(sum(values) / 1000)
        assert value("edgeseg_line_crossings_total", camera="A", line="gate", direction="in") == 3
        assert value("edgeseg_line_crossings_total", camera="A", line="gate", direction="out") == 1
        assert value("edgeseg_zone_crossings_total", camera="A", zone="dock", direction="entered") == 4
        assert value("edgeseg_zone_crossings_total", camera="A", zone="dock", direction="exited") == 2
        assert value("edgeseg_zone_occupancy", camera="A", zone="dock") == 2
        assert value("edgeseg_line_crossings_total", camera="B", line="gate", direction="in") is None  # B does not count
        assert 30 <= value("edgeseg_last_frame_age_seconds", camera="A") < 40
        assert value("edgeseg_last_frame_age_seconds", camera="C") is None  # no frame yet
        assert 10e6 < value("process_resident_memory_bytes") < 64e9

        hub.close()  # the run is over: every camera has ended
        h = health(server)
        assert h["status"] == "ended" and [c["state"] for c in h["cameras"]] == ["ended"] * 3
        m = scrape(server)
        assert [value("edgeseg_camera_state", camera=c, state="ended") for c in "ABC"] == [1, 1, 1]
        assert value("edgeseg_camera_state", camera="B", state="reconnecting") == 0


def test_each_camera_streams_its_own_frames_and_an_unknown_one_is_404(coco128_images):
    from urllib.parse import quote

    from edgeseg.engines.threads import StreamStats

    names = ["A", "B", "yard cam"]
    images = dict(zip(names, distinct_images(coco128_images, [(320, 240)] * 3)))
    with start_server(ServeConfig(port=0)) as server:
        for k, name in enumerate(names):
            server.hub.on_frame(camera_frame(name, k, images[name]), StreamStats(camera=name, state="live"))

        def streamed(query: str) -> np.ndarray:
            with urllib.request.urlopen(server.url + "stream.mjpg" + query, timeout=10) as r:
                return assert_jpeg(read_jpegs(r, 1)[0])

        for name in names:
            picture = streamed("?camera=" + quote(name))
            differences = {other: mean_difference(picture, images[other]) for other in names}
            assert differences[name] < 12 and all(d > 25 for other, d in differences.items() if other != name), (name, differences)
        assert mean_difference(streamed(""), images["A"]) < 12  # no camera named: the first one
        for name in names:  # one frame as one JPEG: the page's tiles past the browser's connection limit
            status, body = get(server.url + "frame.jpg?camera=" + quote(name))
            differences = {other: mean_difference(assert_jpeg(body), images[other]) for other in names}
            assert status == 200 and min(differences, key=differences.get) == name and differences[name] < 12, (name, differences)
        for path in ("stream.mjpg", "frame.jpg"):
            status, body = get(server.url + path + "?camera=Z")
            assert (status, body) == (404, b"404: no camera 'Z' in this run (/health lists them)\n")
        server.hub.on_state(StreamStats(camera="D", state="connecting"))
        assert get(server.url + "frame.jpg?camera=D") == (503, b"503: no frame of this camera yet\n")
        assert server.hub.viewers == 0
        with urllib.request.urlopen(server.url + "events", timeout=10) as r:
            id_line, data_line = r.readline(), r.readline()  # a new client gets the newest frame at once
        assert id_line == b"id: 3\n" and json.loads(data_line.removeprefix(b"data: "))["camera"] == "yard cam"


def test_a_single_unnamed_source_is_one_camera_named_by_its_source(coco128_images):
    from edgeseg.engines.threads import StreamFrame, StreamStats

    image = distinct_images(coco128_images, [(160, 120)])[0]
    stats = StreamStats()  # today's single-source runs: no camera name, no states
    with start_server(ServeConfig(port=0)) as server:
        for k, source in enumerate(["slides/a.jpg", "slides/b.jpg"]):  # an image folder: a source per image
            stats.frames += 1
            server.hub.on_frame(StreamFrame(k, source, image, Detections.empty((120, 160))), stats)
        h = health(server)
        assert [(c["name"], c["camera"], c["state"], c["frames"]) for c in h["cameras"]] == [("slides/b.jpg", "", "live", 2)]
        assert h["source"] == "slides/b.jpg"
        with urllib.request.urlopen(server.url + "stream.mjpg?camera=slides/b.jpg", timeout=10) as r:
            assert mean_difference(assert_jpeg(read_jpegs(r, 1)[0]), image) < 12
        assert get(server.url + "stream.mjpg?camera=slides/a.jpg")[0] == 404
        with urllib.request.urlopen(server.url + "events", timeout=10) as r:
            r.readline()
            assert "camera" not in json.loads(r.readline().removeprefix(b"data: "))  # the --save-jsonl line as it is
        assert scrape(server)[("edgeseg_frames_total", frozenset({"camera": "slides/b.jpg"}.items()))] == 2


def test_a_real_browser_shows_a_tile_per_camera_as_cameras_join(tmp_path, coco128_images):
    from playwright.sync_api import expect, sync_playwright

    from edgeseg.engines.threads import StreamStats

    chromium = _chromium()
    # A tile's picture size says whose it is; "stalled" sends one frame, then is reconnecting. Six cameras: past the
    # browser's six connections to a server, so the last tiles show single frames (/frame.jpg), not a stream.
    sizes = {"front": (320, 240), "back": (400, 300), "gate": (480, 360), "stalled": (224, 168), "side": (288, 216), "roof": (352, 264)}
    images = dict(zip(sizes, distinct_images(coco128_images, list(sizes.values()))))
    active, stop = ["front", "back", "side", "roof"], threading.Event()

    def feed(hub):
        stats = {name: StreamStats(camera=name, state="live") for name in sizes}
        hub.on_frame(camera_frame("stalled", 0, images["stalled"]), stats["stalled"])
        stats["stalled"].state = "reconnecting"
        hub.on_state(stats["stalled"])
        for k in range(10_000):
            if stop.wait(0.1):
                return
            for name in list(active):
                stats[name].frames += 1
                stats[name].last_frame_at = time.time()
                hub.on_frame(camera_frame(name, k, images[name]), stats[name])

    with start_server(ServeConfig(port=0, token="t0k")) as server:
        feeder = threading.Thread(target=feed, args=(server.hub,), daemon=True)
        feeder.start()
        try:
            with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 720}
                )
                try:
                    page = context.new_page()
                    page.goto(server.url, timeout=20_000)
                    expect(page.locator(".tile")).to_have_count(5, timeout=20_000)
                    active.append("gate")  # a camera joins while the page is open
                    expect(page.locator(".tile")).to_have_count(6, timeout=20_000)
                    for name in sizes:
                        state = "reconnecting" if name == "stalled" else "live"
                        expect(page.locator(".tile", has_text=name).locator(".badge")).to_have_text(state, timeout=20_000)
                    expect(page.locator(".tile .fps").first).not_to_have_text("–", timeout=20_000)
                    tiles = page.locator(".tile")

                    def shown() -> dict:
                        return {
                            tiles.nth(i).locator(".name").inner_text(): tiles.nth(i)
                            .locator("img")
                            .evaluate("i => [i.naturalWidth, i.naturalHeight]")
                            for i in range(tiles.count())
                        }

                    wait_until(lambda: all(w for w, _ in shown().values()), timeout=10, what=f"a picture in every tile: {shown()}")
                    seen = shown()
                    page.screenshot(path=str(tmp_path / "grid.png"))
                    texts = tiles.all_inner_texts()
                    state = page.inner_text("#state")
                finally:
                    context.close()
        finally:
            stop.set()
            feeder.join(10)
    assert seen == {name: list(size) for name, size in sizes.items()}, seen  # each tile streams its own camera
    assert all("dropped" in t and "frames/s" in t for t in texts) and state == "live", (texts, state)


def test_metrics_show_the_runs_other_outputs_counters():
    from edgeseg.outputs import OutputBase

    class Broker(OutputBase):
        def __init__(self) -> None:
            super().__init__(name="MQTT broker 127.0.0.1:1883", on_failure="continue")
            self.totals = {"published": 7, "dropped": 3, "reconnects": 1}

        def counters(self) -> dict[str, int]:
            return dict(self.totals)

    broker, silent = Broker(), OutputBase(name="a bag")
    with start_server(ServeConfig(port=0)) as server:
        server.hub.watch([server.hub, broker, silent])
        m = scrape(server)
        found = {(name, frozenset(labels)): v for (name, labels), v in m.items() if name.startswith("edgeseg_output_")}
        assert found == {
            ("edgeseg_output_messages_total", frozenset({("output", broker.name), ("outcome", "published")})): 7,
            ("edgeseg_output_messages_total", frozenset({("output", broker.name), ("outcome", "dropped")})): 3,
            ("edgeseg_output_reconnects_total", frozenset({("output", broker.name)})): 1,
        }
        broker.totals["dropped"] = 5  # read at each scrape
        assert scrape(server)[("edgeseg_output_messages_total", frozenset({("output", broker.name), ("outcome", "dropped")}))] == 5
