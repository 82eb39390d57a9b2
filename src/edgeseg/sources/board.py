"""The RDK X5's own inputs as NV12 frames, never BGR: its MIPI cameras and its hardware video decoder, through
``libsrcampy`` (``hobot_vio`` on the board image, ``hobot_vio_rdkx5`` from the wheel), as its source behaves
(D-Robotics/x5-hobot-spdev ``src/python/vpp_python.cpp`` and ``src/vpp_interface/``):

- ``Camera().open_cam(pipe_id, video_index, fps, widths, heights, raw_height, raw_width)`` returns 0 or an error
  code; lists of sizes ask the hardware scaler for one output each (one more, at the sensor's size, is added);
  ``get_img(2, w, h)`` returns the NV12 bytes (Y then interleaved UV) of the output of that size, or None after
  its 2 s wait; ``close_cam()``. In its default mode an X5 MIPI camera is not a ``/dev/video*`` device.
  Several cameras: one ``Camera()`` each (each holds its own pipeline context, ``VPPCamera``); ``pipe_id`` is
  unused on the X5 (``VPPCamera::CamInitParam`` never reads it), ``video_index`` picks camera N of
  ``/etc/board_config.json`` (its ``mipi_host``), -1 the first with a sensor. An index in 0..3 that the board's
  config does not list is not refused there: it probes mipi host 0, i.e. the first camera again, so ``mipi:N``
  is checked here against the board's config, and a camera already open in this process is refused here.
- ``Decoder().decode(file, chn, type, w, h)`` (1 = H.264, 2 = H.265, 3 = MJPEG) returns ``[ret, frames]``; its
  optional arguments are C statics that persist across calls, so all five are always passed. ``chn`` is parsed
  and dropped: ``VPPDecode::OpenDecode`` takes the lowest free of 8 codec pipelines of the process
  (``VPPModule::GetPipeId``, ``VP_MAX_PIPELINE_NUM``; encoders share them) and returns -1 past 8; ``close()``
  frees it. Pipelines are counted here the same way, so the ninth is a one-line error before the library's -1.
  With ``file`` "" it decodes packets given by ``set_img(packet, chn)``; ``get_img()`` returns NV12 bytes or None
  while the decoder fills (the first frames come out a few packets late). Packets are read, not decoded, by
  OpenCV's FFmpeg demuxer (``CAP_PROP_FORMAT = -1``), as the board's RTSP sample does, one decoder per stream,
  closed and reopened with the stream when it drops (x5-hobot-sp-samples ``pydev_demo/08_decode_rtsp_stream``).

``mipi:N`` asks the scaler for the letterbox's inner size of the model (640x360 of a 1920x1080 scene for a
640x640 model), so that the CPU only pads. A live source with a retry policy of ``attempts=None`` reopens
forever when its frames stop (states through ``state_listener``); otherwise it ends as before. Both sources are
tested against stand-ins written from that source (tests/fakes/hobot_vio); what only a board can show is in
docs/rdk.md.
"""

from __future__ import annotations

import importlib
import itertools
import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2

from ..errors import EdgesegError
from ..preprocess import Nv12Frame, letterbox_params
from .base import CONNECTING, LIVE, RECONNECTING, Source, SourceItem, StateListener, strided_length
from .video import RetryPolicy

VIO_PACKAGES = ("hobot_vio", "hobot_vio_rdkx5")
_MIPI = re.compile(r"^mipi(?::(-?\d+))?(?:@(\d+)x(\d+))?$")
_CODECS = {"h264": 1, "avc1": 1, "hevc": 2, "h265": 2, "hev1": 2, "hvc1": 2, "mjpg": 3, "mjpeg": 3}
_VPS = 2  # get_img's module: the scaler's outputs
CAMERA_FPS = 30
MAX_CAMERAS = 4  # vpp_camera.h MAX_CAMERAS: open_cam takes video_index -1..3
CODEC_PIPES = 8  # vp_common.h VP_MAX_PIPELINE_NUM: decoders (and encoders) one process may hold
# Where the runtime reads the board's camera ports (vpp_camera.cpp parse_config); paths, so tests can point them.
BOARD_CONFIG = Path("/etc/board_config.json")
BOARD_ID = Path("/sys/class/socinfo/board_id")

_lock = threading.Lock()  # the runtime's pipeline mask has no lock of its own (GetPipeId): opens are serialized
_open_cameras: set[int] = set()  # video indices open in this process (-1: the first found)
_codec_pipes: set[int] = set()  # decoder pipelines held by this process, numbered as GetPipeId numbers them


def is_mipi(spec: str) -> bool:
    return bool(_MIPI.match(spec))


def import_libsrcampy(spec: str) -> ModuleType:
    """``libsrcampy``, or a one-line error saying where it comes from."""
    reasons = []
    for package in VIO_PACKAGES:
        try:
            return importlib.import_module(f"{package}.libsrcampy")
        except (ImportError, OSError, AttributeError) as exc:
            reasons.append(f"{package}: {exc}")
    raise EdgesegError(
        "needs the RDK board's camera and codec library (hobot_vio, on the board image), which cannot be "
        f"imported here ({'; '.join(reasons)})",
        spec,
    )


@dataclass(frozen=True)
class MipiSpec:
    """``mipi[:INDEX][@WxH]``: the camera (``video_index``; -1 = the first found) and the scene size."""

    video_index: int = -1
    width: int = 1920
    height: int = 1080

    @classmethod
    def parse(cls, spec: str) -> MipiSpec:
        m = _MIPI.match(spec)
        if not m:
            raise EdgesegError("a MIPI camera is mipi, mipi:N or mipi:N@WIDTHxHEIGHT (e.g. mipi:0@1920x1080)", spec)
        index = int(m.group(1)) if m.group(1) is not None else -1
        width, height = (int(m.group(2)), int(m.group(3))) if m.group(2) else (cls.width, cls.height)
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EdgesegError(f"the scene size must be even and positive, got {width}x{height}", spec)
        return cls(index, width, height)


def board_cameras(config: Path = BOARD_CONFIG, board_id: Path = BOARD_ID) -> int | None:
    """The camera ports the board's config lists for this board (``parse_config``: the ``board_<id>`` entry's
    ``cameras``), or None where it cannot be read (not a board, an image without the file)."""
    try:
        entry = json.loads(config.read_text())[f"board_{board_id.read_text().split()[0]}"]
        return len(entry["cameras"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _wait(stop: threading.Event, seconds: float) -> bool:
    """A backoff wait that ``close()`` ends at once: True when the source was closed meanwhile."""
    return stop.wait(seconds)


class _States:
    """A source's state, told to its ``state_listener`` when it changes."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.reconnects = 0

    def report(self, listener: StateListener | None, state: str, detail: str) -> None:
        if state == self.state:
            return
        self.reconnects += state == RECONNECTING
        self.state = state
        if listener is not None:
            listener(state, detail)


def _claim_camera(spec: str, index: int) -> None:
    if index < -1 or index >= MAX_CAMERAS:
        raise EdgesegError(f"the board's camera library takes mipi:0 to mipi:{MAX_CAMERAS - 1} (or mipi for the first found)", spec)
    ports = board_cameras(BOARD_CONFIG, BOARD_ID)  # read at each open: tests point them elsewhere
    if ports is not None and index >= ports:
        # the runtime would open mipi host 0 instead (camera_info of an unlisted index is zeroed): refuse here
        raise EdgesegError(f"this board has {ports} camera port(s) (mipi:0 to mipi:{ports - 1})", spec)
    with _lock:
        if index in _open_cameras and index != -1:
            raise EdgesegError(f"MIPI camera {index} is already open in this run", spec)
        if _open_cameras and -1 in (index, *_open_cameras):  # -1 is whichever camera the runtime finds first
            raise EdgesegError("mipi (the first camera found) cannot run beside another MIPI camera: name each (mipi:0 mipi:1)", spec)
        _open_cameras.add(index)


class MipiCamera(Source):
    """Frames of one of the board's MIPI cameras as ``Nv12Frame``s at the letterbox's inner size for a model of
    ``imgsz`` (scaled by the hardware; ``source_shape`` is the scene size, so detections land in scene pixels).

    ``missing_after``: consecutive empty reads (each a 2 s wait in the library) after which the camera counts as
    gone. With ``retry.attempts`` None it is then closed and reopened, with backoff, for as long as it takes
    (``reconnecting``, then ``live`` again through ``state_listener``; a camera that cannot be opened at start is
    retried the same way); with a finite policy the source ends and says why in ``failed`` (predict reports it
    and exits 1). ``live`` (default True): runners drop stale frames rather than fall behind."""

    def __init__(
        self,
        spec: str,
        *,
        imgsz: tuple[int, int],
        live: bool | None = None,
        missing_after: int = 3,
        retry: RetryPolicy = RetryPolicy(),
        vio: ModuleType | None = None,
    ) -> None:
        self.name = spec
        self.live = True if live is None else live
        self.spec = MipiSpec.parse(spec)
        self.warnings: list[str] = []
        self.failed: str | None = None
        self.missing_after = missing_after
        self.retry = retry
        self.states = _States()
        lb = letterbox_params((self.spec.height, self.spec.width), imgsz)
        h, w = lb.content_shape
        self.frame_shape = (h + h % 2, w + w % 2)  # the scaler's outputs have even sizes
        self.fps: float | None = float(CAMERA_FPS)
        vio = vio or import_libsrcampy(spec)
        _claim_camera(spec, self.spec.video_index)
        self._claimed, self._opened, self._iterating = True, False, False
        self._stop = threading.Event()
        self._cam = vio.Camera()
        ret = self._open()
        if ret != 0 and retry.attempts is not None:
            self._release()
            raise EdgesegError(f"cannot open the MIPI camera (open_cam returned {ret}): is one connected, and free?", spec)
        self._opened = ret == 0

    def _open(self) -> int:
        fh, fw = self.frame_shape
        # pipe_id 0: the X5's runtime does not use it; the camera is video_index's
        return self._cam.open_cam(0, self.spec.video_index, CAMERA_FPS, [fw, self.spec.width], [fh, self.spec.height])

    def _reopen(self, rng: random.Random) -> bool:
        """Until the camera opens again: wait, open (each wait longer, up to the cap). False when closed meanwhile."""
        for attempt in itertools.count():
            if _wait(self._stop, self.retry.delay(attempt, rng)):
                return False
            if self._open() == 0:
                self._opened = True
                return True
        return False  # not reached: count() never ends

    def __iter__(self) -> Iterator[SourceItem]:
        fh, fw = self.frame_shape
        scene = (self.spec.height, self.spec.width)
        index = 0
        rng = random.Random()
        self._iterating = True
        try:
            self.states.report(self.state_listener, CONNECTING, f"opening MIPI camera {self.spec.video_index}")
            while not self._stop.is_set():
                if not self._opened and not self._reopen(rng):
                    return
                misses = 0
                while misses < self.missing_after and not self._stop.is_set():
                    data = self._cam.get_img(_VPS, fw, fh)
                    if data is None:
                        misses += 1
                        continue
                    misses = 0
                    self.states.report(self.state_listener, LIVE, "frames are coming")
                    frame = Nv12Frame.from_bytes(data, fh, fw, source_shape=scene)
                    yield SourceItem(index, self.name, image=frame, time_s=index / self.fps if self.fps else None)
                    index += 1
                if self._stop.is_set():
                    return
                why = f"the camera gave no frame for {misses} reads in a row after frame {index}"
                if self.retry.attempts is not None:
                    self.failed = why
                    return
                self.states.report(self.state_listener, RECONNECTING, why)
                self._cam.close_cam()
                self._opened = False
        finally:
            self._iterating = False
            self._release()

    def close(self) -> None:
        """Stop, from any thread: a camera being read stops at its next read (at most the library's 2 s wait) or at
        once in a backoff wait, and is released by its own iteration (a read of the library is never cut from
        another thread); one not being read is released now (twice is harmless)."""
        self._stop.set()
        if not self._iterating:
            self._release()

    def _release(self) -> None:
        """Closes the camera and frees its index for another source of this run (twice is harmless)."""
        if self._opened:
            self._cam.close_cam()
            self._opened = False
        if self._claimed:
            with _lock:
                _open_cameras.discard(self.spec.video_index)
            self._claimed = False


def _demuxer(spec: str) -> cv2.VideoCapture:
    """OpenCV's FFmpeg demuxer giving packets, or a one-line error."""
    cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
    if not cap.isOpened() or not cap.set(cv2.CAP_PROP_FORMAT, -1):
        cap.release()
        raise EdgesegError("cannot open for hardware decoding (OpenCV's FFmpeg cannot demux it)", spec)
    return cap


class _CodecRefused(EdgesegError):
    """A stream the hardware decoder does not take: final, reopening it changes nothing."""


class HardwareDecoded(Source):
    """A video file or stream decoded by the board's hardware decoder into ``Nv12Frame``s (H.264, H.265, MJPEG):
    OpenCV demuxes (packets, not pictures), the decoder decodes; each source holds one of the process's 8 codec
    pipelines (``channel``) while it is open. A ``live`` stream with ``retry.attempts`` None that cannot be reached
    at start (``codec`` then None until it is) or that drops is opened again (demuxer and decoder) with backoff for
    as long as it takes, frame indices going on; otherwise it is a one-line error at start and ends where its
    packets end."""

    def __init__(
        self, spec: str, *, live: bool, vid_stride: int = 1, retry: RetryPolicy = RetryPolicy(), vio: ModuleType | None = None
    ) -> None:
        self.name = spec
        self.live = live
        self.vid_stride = vid_stride
        self.retry = retry
        self.states = _States()
        self.warnings: list[str] = []
        self.failed: str | None = None
        self.codec: int | None = None
        self.fps: float | None = None
        self.frame_count: int | None = None
        self.width = self.height = 0
        self.channel: int | None = None
        self._cap: cv2.VideoCapture | None = None
        self._stop, self._iterating = threading.Event(), False
        self._decoder = (vio or import_libsrcampy(spec)).Decoder()
        try:
            self._connect()
        except _CodecRefused:
            raise
        except EdgesegError:
            if not (live and retry.attempts is None):
                raise
        self.length = strided_length(self.frame_count, vid_stride)

    def _connect(self) -> None:
        """Opens the demuxer, reads what it carries, opens the decoder; a one-line error where any cannot."""
        cap = _demuxer(self.name)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower().strip("\x00 ")
        if fourcc not in _CODECS:
            cap.release()
            raise _CodecRefused(f"the hardware decoder takes H.264, H.265 and MJPEG, this is {fourcc!r} (drop --hw-decode)", self.name)
        self.codec = _CODECS[fourcc]
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None
        self._cap = cap
        try:
            ret = self._open_decoder()
        except EdgesegError:
            self._release()
            raise
        if ret != 0:
            self._release()
            raise EdgesegError(f"the hardware decoder refused {fourcc} {self.width}x{self.height} (decode returned {ret})", self.name)

    def _open_decoder(self) -> int:
        """Takes the lowest free codec pipeline (as ``GetPipeId`` does) and opens the decoder on it: its return code."""
        self.width, self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        with _lock:
            free = [p for p in range(CODEC_PIPES) if p not in _codec_pipes]
            if not free:
                raise EdgesegError(f"the board's codec library decodes at most {CODEC_PIPES} streams in one process, all in use", self.name)
            # chn is dropped by the X5's runtime, passed all the same: the five arguments are C statics
            ret = self._decoder.decode("", free[0], self.codec, self.width, self.height)[0]
            if ret == 0:
                self.channel = free[0]
                _codec_pipes.add(free[0])
        return ret

    def _close_decoder(self) -> None:
        if self.channel is not None:
            self._decoder.close()
            with _lock:
                _codec_pipes.discard(self.channel)
            self.channel = None

    def _reopen(self, rng: random.Random) -> bool:
        """Until demuxer and decoder are open again: wait, open both (each wait longer, up to the cap). False when
        the stream came back as something the decoder does not take (``failed`` says what), or when closed."""
        self._release()
        for attempt in itertools.count():
            if _wait(self._stop, self.retry.delay(attempt, rng)):
                return False
            try:
                self._connect()
                return True
            except _CodecRefused as exc:
                self.failed = exc.problem
                return False
            except EdgesegError:
                continue  # unreachable still, or every pipeline taken meanwhile
        return False  # not reached: count() never ends

    def _packets(self) -> Iterator[bytes]:
        """The decoder's NV12 pictures, as the packets go in, and the pictures still inside at the end of a run of
        packets. A packet it refuses ends the source (``failed``)."""
        for packet_index in itertools.count():
            if self._stop.is_set():
                return
            ok, packet = self._cap.read()
            if not ok or packet is None:
                break
            ret = self._decoder.set_img(packet.tobytes(), self.channel)
            if ret != 0:
                self.failed = f"the hardware decoder stopped at packet {packet_index} (set_img returned {ret})"
                return
            data = self._decoder.get_img()
            if data is not None:
                yield data
        while (data := self._decoder.get_img()) is not None:  # the frames still inside the decoder
            yield data

    def _pictures(self) -> Iterator[bytes]:
        """Every picture of the source, across reopenings of a live stream that dropped."""
        rng = random.Random()
        self.states.report(self.state_listener, CONNECTING, "opening the stream")
        if self._cap is None and not self._reopen(rng):  # not reachable at start
            return
        while True:
            for data in self._packets():
                self.states.report(self.state_listener, LIVE, "frames are coming")
                yield data
            if self.failed or not self.live or self.retry.attempts is not None or self._stop.is_set():
                return
            self.states.report(self.state_listener, RECONNECTING, "the stream gave no more packets")
            if not self._reopen(rng):
                return

    def __iter__(self) -> Iterator[SourceItem]:
        decoded = 0
        self._iterating = True
        try:
            for decoded, data in enumerate(self._pictures(), 1):
                index = decoded - 1
                if index % self.vid_stride == 0:
                    frame = Nv12Frame.from_bytes(data, self.height, self.width)
                    yield SourceItem(index, self.name, image=frame, time_s=index / self.fps if self.fps else None)
            if not self.failed and self.frame_count and decoded < self.frame_count:
                self.warnings.append(f"{self.name}: the hardware decoder gave {decoded} of {self.frame_count} frames")
        finally:
            self._iterating = False
            self._release()

    def close(self) -> None:
        """Stop, from any thread: a stream being read stops before its next packet or at once in a backoff wait and
        is released by its own iteration; one not being read is released now (twice is harmless)."""
        self._stop.set()
        if not self._iterating:
            self._release()

    def _release(self) -> None:
        """Frees the decoder's pipeline and the demuxer (twice is harmless)."""
        self._close_decoder()
        if self._cap is not None:
            self._cap.release()
            self._cap = None
