"""The RDK X5's own inputs as NV12 frames, never BGR: its MIPI camera and its hardware video decoder, through
``libsrcampy`` (``hobot_vio`` on the board image, ``hobot_vio_rdkx5`` from the wheel), as its source behaves
(D-Robotics/x5-hobot-spdev ``src/python/vpp_python.cpp``):

- ``Camera().open_cam(pipe_id, video_index, fps, widths, heights, raw_height, raw_width)`` returns 0 or an error
  code; lists of sizes ask the hardware scaler for one output each (one more, at the sensor's size, is added);
  ``get_img(2, w, h)`` returns the NV12 bytes (Y then interleaved UV) of the output of that size, or None after
  its 2 s wait; ``close_cam()``. In its default mode an X5 MIPI camera is not a ``/dev/video*`` device.
- ``Decoder().decode(file, chn, type, w, h)`` (1 = H.264, 2 = H.265, 3 = MJPEG) returns ``[ret, frames]``; its
  optional arguments are C statics that persist across calls, so all five are always passed. With ``file`` ""
  it decodes packets given by ``set_img(packet, chn)``; ``get_img()`` returns NV12 bytes or None while the
  decoder fills (the first frames come out a few packets late); ``close()``. Packets are read, not decoded, by
  OpenCV's FFmpeg demuxer (``CAP_PROP_FORMAT = -1``), as the board's RTSP sample does
  (x5-hobot-sp-samples ``pydev_demo/08_decode_rtsp_stream``).

``mipi:N`` asks the scaler for the letterbox's inner size of the model (640x360 of a 1920x1080 scene for a
640x640 model), so that the CPU only pads. Both sources are tested against stand-ins written from that source
(tests/fakes/hobot_vio); what only a board can show is in docs/rdk.md.
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import cv2

from ..errors import EdgesegError
from ..preprocess import Nv12Frame, letterbox_params
from .base import Source, SourceItem, strided_length

VIO_PACKAGES = ("hobot_vio", "hobot_vio_rdkx5")
_MIPI = re.compile(r"^mipi(?::(-?\d+))?(?:@(\d+)x(\d+))?$")
_CODECS = {"h264": 1, "avc1": 1, "hevc": 2, "h265": 2, "hev1": 2, "hvc1": 2, "mjpg": 3, "mjpeg": 3}
_VPS = 2  # get_img's module: the scaler's outputs
CAMERA_FPS = 30
_DECODER_CHANNELS = itertools.count()  # one hardware decoder channel per source in this process


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


class MipiCamera(Source):
    """Frames of the board's MIPI camera as ``Nv12Frame``s at the letterbox's inner size for a model of
    ``imgsz`` (scaled by the hardware; ``source_shape`` is the scene size, so detections land in scene pixels).

    ``missing_after``: consecutive empty reads (each a 2 s wait in the library) after which the camera counts as
    gone: the source ends and says why in ``failed`` (predict reports it and exits 1). ``live`` (default True): runners drop stale
    frames rather than fall behind."""

    def __init__(
        self, spec: str, *, imgsz: tuple[int, int], live: bool | None = None, missing_after: int = 3, vio: ModuleType | None = None
    ) -> None:
        self.name = spec
        self.live = True if live is None else live
        self.spec = MipiSpec.parse(spec)
        self.warnings: list[str] = []
        self.failed: str | None = None
        self.missing_after = missing_after
        lb = letterbox_params((self.spec.height, self.spec.width), imgsz)
        h, w = lb.content_shape
        self.frame_shape = (h + h % 2, w + w % 2)  # the scaler's outputs have even sizes
        self.fps: float | None = float(CAMERA_FPS)
        vio = vio or import_libsrcampy(spec)
        self._cam = vio.Camera()
        fh, fw = self.frame_shape
        ret = self._cam.open_cam(0, self.spec.video_index, CAMERA_FPS, [fw, self.spec.width], [fh, self.spec.height])
        if ret != 0:
            raise EdgesegError(f"cannot open the MIPI camera (open_cam returned {ret}): is one connected, and free?", spec)

    def __iter__(self) -> Iterator[SourceItem]:
        fh, fw = self.frame_shape
        scene = (self.spec.height, self.spec.width)
        misses = index = 0
        try:
            while True:
                data = self._cam.get_img(_VPS, fw, fh)
                if data is None:
                    misses += 1
                    if misses >= self.missing_after:
                        self.failed = f"the camera gave no frame for {misses} reads in a row after frame {index}"
                        return
                    continue
                misses = 0
                frame = Nv12Frame.from_bytes(data, fh, fw, source_shape=scene)
                yield SourceItem(index, self.name, image=frame, time_s=index / self.fps if self.fps else None)
                index += 1
        finally:
            self._cam.close_cam()


class HardwareDecoded(Source):
    """A video file or stream decoded by the board's hardware decoder into ``Nv12Frame``s (H.264, H.265, MJPEG):
    OpenCV demuxes (packets, not pictures), the decoder decodes."""

    def __init__(self, spec: str, *, live: bool, vid_stride: int = 1, vio: ModuleType | None = None) -> None:
        self.name = spec
        self.live = live
        self.vid_stride = vid_stride
        self.warnings: list[str] = []
        self.failed: str | None = None
        vio = vio or import_libsrcampy(spec)
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
        if not cap.isOpened() or not cap.set(cv2.CAP_PROP_FORMAT, -1):
            cap.release()
            raise EdgesegError("cannot open for hardware decoding (OpenCV's FFmpeg cannot demux it)", spec)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower().strip("\x00 ")
        self.codec = _CODECS.get(fourcc)
        if self.codec is None:
            cap.release()
            raise EdgesegError(f"the hardware decoder takes H.264, H.265 and MJPEG, this is {fourcc!r} (drop --hw-decode)", spec)
        self.width, self.height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(fps) if fps and 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = count if count > 0 and not live else None
        self.length = strided_length(self.frame_count, vid_stride)
        self._cap = cap
        self.channel = next(_DECODER_CHANNELS) % 32
        self._decoder = vio.Decoder()
        ret = self._decoder.decode("", self.channel, self.codec, self.width, self.height)  # all five: they are C statics
        if ret[0] != 0:
            cap.release()
            raise EdgesegError(f"the hardware decoder refused {fourcc} {self.width}x{self.height} (decode returned {ret[0]})", spec)

    def _pictures(self) -> Iterator[bytes]:
        """The decoder's NV12 pictures in order: packets in, pictures out (a few packets late), then the pictures
        still inside the decoder. A packet it refuses ends the source (``failed``)."""
        for packet_index in itertools.count():
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

    def __iter__(self) -> Iterator[SourceItem]:
        decoded = 0
        try:
            for decoded, data in enumerate(self._pictures(), 1):
                index = decoded - 1
                if index % self.vid_stride == 0:
                    frame = Nv12Frame.from_bytes(data, self.height, self.width)
                    yield SourceItem(index, self.name, image=frame, time_s=index / self.fps if self.fps else None)
            if not self.failed and self.frame_count and decoded < self.frame_count:
                self.warnings.append(f"{self.name}: the hardware decoder gave {decoded} of {self.frame_count} frames")
        finally:
            self._decoder.close()
            self._cap.release()
