"""Stand-in for ``hobot_vio.libsrcampy`` as its C source behaves (D-Robotics/x5-hobot-spdev
``src/python/vpp_python.cpp`` and the ``src/vpp_interface/`` classes it calls):

- ``Camera()``; ``open_cam(pipe_id, video_index, fps=30, width=None, height=None, raw_height=-1, raw_width=-1,
  crop_rect=None)`` returns an int (0 = opened); ``width``/``height`` are an int or lists of the same length
  (``py_obj_to_array``; else ValueError set and -1 returned), one scaler output per size, and one more at the
  sensor's own size (``Camera_open_cam`` appends a 0-size channel). ``get_img(module=2, width=0, height=0)``
  returns the NV12 bytes (Y, then interleaved UV: ``PyBytes_ConcatAndDel`` of the two planes) of the output of
  that size, or None when none comes within its wait (2 s on the board; at once here); ``close_cam()`` -> None.
  The board: EDGESEG_FAKE_MIPI_CLIP holds one clip per camera port of ``/etc/board_config.json``, separated by
  ``os.pathsep`` (camera i of the config; its mipi host is ``CONFIG_HOSTS[i]``); each "sensor" plays its clip
  (BGR frames, converted by the "ISP" to NV12 and resized by the "scaler" with OpenCV) from the start at each
  open. Quirks, each after ``vpp_camera.cpp``:
  * ``pipe_id`` is never read (``VPPCamera::OpenCamera`` / ``CamInitParam`` take it and do nothing with it).
  * each ``Camera()`` is its own pipeline (``Camera_init``: ``new VPPCamera()``, one ``m_vp_vflow_context``
    each), so two cameras open together on two objects.
  * ``video_index`` -1 probes the config's cameras in order and takes the first with a sensor; 0..3 takes
    ``camera_info[video_index].mipi_host`` without checking ``enable``, so an index the config does not list
    reads a zeroed entry: mipi host 0 (``CamInitParam``); any other index is -1 ("Please set it to one of
    [-1, 0, 1, 2, 3]"). No sensor on the host: -1.
  * the same sensor opened by a second ``Camera()`` while the first holds it: -1. Not in the open source
    (``vp_vin_init`` -> ``hbn_vnode_open(HB_VIN, mipi_rx, ...)`` of libhbn); assumed, a board shows it.
- ``Decoder()``; ``decode(file, video_chn=0, type=1, width=1920, height=1080)`` -> ``[ret, frame_count]``; the
  optional arguments are C ``static``s in ``Decoder_decode``, so an argument left out keeps the value of the
  previous call, in any decoder. Quirks, after ``Decoder_decode`` and ``vpp_codec.cpp``:
  * ``video_chn`` is parsed and dropped: ``OpenDecode(type, width, height, file, &frame_count)`` has no channel.
  * the decoder takes the lowest free of ``PIPES`` (8) pipelines of the process (``VPPDecode::OpenDecode`` ->
    ``VPPModule::GetPipeId(&s_pipe_mask)``, ``VP_MAX_PIPELINE_NUM 8``; the mask is one static of
    ``vpp_codec.cpp``, encoders take from it too); none free: ``[-1, 0]``. ``pipe_id`` here shows which.
  * ``decode`` again on an open decoder changes nothing and returns 0 ("Decode already init").
  * ``close()`` frees the pipeline (``PutPipeId``) -> 0; on a decoder not open -> -1.
  ``set_img(img, chn=-1, eos=0)`` -> int (``chn`` and ``eos`` parsed and dropped: ``SetImageFrame(frame)``; -1 on
  a decoder not open); ``get_img()`` -> NV12 bytes or None. This stand-in decodes MJPEG packets (type 3) for
  real and holds the first two decoded frames back (a decoder's start-up latency); H.264/H.265 packets (types
  1, 2) it cannot decode: ``set_img`` returns -1.
"""

from __future__ import annotations

import os
from collections import deque

import cv2
import numpy as np


def _nv12(bgr: np.ndarray) -> bytes:
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: h * w], i420[h * w : h * w * 5 // 4], i420[h * w * 5 // 4 :]
    return y.tobytes() + np.stack([u, v], axis=1).reshape(-1).tobytes()


def _sizes(obj) -> list[int] | None:
    if obj is None:
        return []
    if isinstance(obj, int):
        return [obj]
    if isinstance(obj, list) and all(isinstance(v, int) for v in obj):
        return list(obj)
    return None


PIPES = 8  # vp_common.h VP_MAX_PIPELINE_NUM
MAX_CAMERAS = 4  # vpp_camera.h MAX_CAMERAS
CONFIG_HOSTS = (0, 2, 1, 3)  # mipi host of config camera i ("RDK X5 has two CAM ports: mipi host0 and host2")


def _board_sensors() -> dict[int, str]:
    """mipi host -> the clip its sensor plays, one per camera of the board's config."""
    clips = [c for c in os.environ.get("EDGESEG_FAKE_MIPI_CLIP", "").split(os.pathsep) if c]
    return {CONFIG_HOSTS[i]: clip for i, clip in enumerate(clips[:MAX_CAMERAS])}


class Camera:
    _hosts_open: set[int] = set()  # sensors held by a Camera() of this process (hbn_vnode_open, assumed exclusive)

    def __init__(self) -> None:
        self._cap = None
        self._host: int | None = None
        self._outputs: set[tuple[int, int]] = set()

    def open_cam(self, pipe_id, video_index, fps=30, width=None, height=None, raw_height=-1, raw_width=-1, crop_rect=None):
        widths, heights = _sizes(width), _sizes(height)
        if widths is None or heights is None or len(widths) != len(heights):
            return -1  # "width and height must have same length"
        sensors = _board_sensors()
        n = len(sensors)
        if 0 <= video_index < MAX_CAMERAS:
            host = CONFIG_HOSTS[video_index] if video_index < n else 0  # an unlisted entry is zeroed: host 0
        elif video_index == -1:
            host = next(iter(sensors), None)
        else:
            return -1
        if host not in sensors or host in Camera._hosts_open:
            return -1
        self._cap = cv2.VideoCapture(sensors[host])
        if not self._cap.isOpened():
            return -1
        sensor = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._outputs = {(w, h) for w, h in zip(widths, heights) if w and h} | {sensor}
        self._host = host
        Camera._hosts_open.add(host)
        self.opened_with = {"pipe_id": pipe_id, "video_index": video_index, "fps": fps, "width": width, "height": height}
        return 0

    def get_img(self, module=2, width=0, height=0):
        if self._cap is None or (width, height) not in self._outputs:
            return None
        ok, frame = self._cap.read()
        if not ok:
            return None  # the wait ran out
        if frame.shape[1::-1] != (width, height):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        return _nv12(frame)

    def close_cam(self):
        if self._cap is not None:
            self._cap.release()
            Camera._hosts_open.discard(self._host)
        self._cap = None


class Decoder:
    # Decoder_decode's optional arguments are function statics: shared by every decoder, kept between calls.
    _statics = {"video_chn": 0, "type": 1, "width": 1920, "height": 1080}
    _pipe_mask: set[int] = set()  # s_pipe_mask of vpp_codec.cpp

    def __init__(self) -> None:
        self._open = False
        self.pipe_id: int | None = None
        self._frames: deque[bytes] = deque()
        self._held = 0

    def decode(self, file, video_chn=None, type=None, width=None, height=None):  # noqa: A002 - the runtime's name
        given = {"video_chn": video_chn, "type": type, "width": width, "height": height}
        Decoder._statics.update({k: v for k, v in given.items() if v is not None})
        if self._open:
            return [0, 0]  # "Decode already init": nothing changes
        free = [p for p in range(PIPES) if p not in Decoder._pipe_mask]
        codec = Decoder._statics["type"]
        if not free or codec not in (1, 2, 3):
            return [-1, 0]
        self.codec, self.width, self.height = codec, Decoder._statics["width"], Decoder._statics["height"]
        self.pipe_id = free[0]
        Decoder._pipe_mask.add(self.pipe_id)
        self._open = True
        self._frames.clear()
        self._held = 0
        return [0, 0]

    def set_img(self, img, chn=-1, eos=0):
        if not self._open:
            return -1
        if self.codec != 3:
            return -1  # this stand-in cannot decode H.264/H.265 packets
        frame = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR)
        if frame is None or frame.shape[1::-1] != (self.width, self.height):
            return -1
        self._frames.append(_nv12(frame))
        return 0

    def get_img(self):
        if not self._frames:
            return None
        if self._held < 2:  # start-up latency: the first frames come out later
            self._held += 1
            return None
        return self._frames.popleft()

    def close(self):
        if not self._open:
            return -1  # "Decoder channel dose not created!"
        Decoder._pipe_mask.discard(self.pipe_id)
        self._open = False
        return 0
