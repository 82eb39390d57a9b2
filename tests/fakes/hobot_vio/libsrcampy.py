"""Stand-in for ``hobot_vio.libsrcampy`` as its C source behaves (D-Robotics/x5-hobot-spdev
``src/python/vpp_python.cpp``):

- ``Camera()``; ``open_cam(pipe_id, video_index, fps=30, width=None, height=None, raw_height=-1, raw_width=-1,
  crop_rect=None)`` returns an int (0 = opened); ``width``/``height`` are an int or lists of the same length
  (``py_obj_to_array``; else ValueError set and -1 returned), one scaler output per size, and one more at the
  sensor's own size (``Camera_open_cam`` appends a 0-size channel). ``get_img(module=2, width=0, height=0)``
  returns the NV12 bytes (Y, then interleaved UV: ``PyBytes_ConcatAndDel`` of the two planes) of the output of
  that size, or None when none comes within its wait (2 s on the board; at once here); ``close_cam()`` -> None.
  The "sensor" plays the clip named by EDGESEG_FAKE_MIPI_CLIP (BGR frames, converted by the "ISP" to NV12 and
  resized by the "scaler" with OpenCV); video index -1 or 0 is that camera, any other has none (-1).
- ``Decoder()``; ``decode(file, video_chn=0, type=1, width=1920, height=1080)`` -> ``[ret, frame_count]``; the
  optional arguments are C ``static``s in ``Decoder_decode``, so an argument left out keeps the value of the
  previous call, in any decoder. ``set_img(img, chn=-1, eos=0)`` -> int (``eos`` is parsed and dropped);
  ``get_img()`` -> NV12 bytes or None; ``close()`` -> int. This stand-in decodes MJPEG packets (type 3) for real
  and holds the first two decoded frames back (a decoder's start-up latency); H.264/H.265 packets (types 1, 2)
  it cannot decode: ``set_img`` returns -1.
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


class Camera:
    def __init__(self) -> None:
        self._cap = None
        self._outputs: set[tuple[int, int]] = set()

    def open_cam(self, pipe_id, video_index, fps=30, width=None, height=None, raw_height=-1, raw_width=-1, crop_rect=None):
        widths, heights = _sizes(width), _sizes(height)
        if widths is None or heights is None or len(widths) != len(heights):
            return -1  # "width and height must have same length"
        clip = os.environ.get("EDGESEG_FAKE_MIPI_CLIP")
        if video_index not in (-1, 0) or not clip:
            return -1
        self._cap = cv2.VideoCapture(clip)
        if not self._cap.isOpened():
            return -1
        sensor = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._outputs = {(w, h) for w, h in zip(widths, heights) if w and h} | {sensor}
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
        self._cap = None


class Decoder:
    # Decoder_decode's optional arguments are function statics: shared by every decoder, kept between calls.
    _statics = {"video_chn": 0, "type": 1, "width": 1920, "height": 1080}
    _channels_in_use: set[int] = set()

    def __init__(self) -> None:
        self._open = False
        self._frames: deque[bytes] = deque()
        self._held = 0

    def decode(self, file, video_chn=None, type=None, width=None, height=None):  # noqa: A002 - the runtime's name
        given = {"video_chn": video_chn, "type": type, "width": width, "height": height}
        Decoder._statics.update({k: v for k, v in given.items() if v is not None})
        self.channel, self.codec = Decoder._statics["video_chn"], Decoder._statics["type"]
        self.width, self.height = Decoder._statics["width"], Decoder._statics["height"]
        if self.channel in Decoder._channels_in_use or self.codec not in (1, 2, 3):
            return [-1, 0]
        Decoder._channels_in_use.add(self.channel)
        self._open = True
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
        if self._open:
            Decoder._channels_in_use.discard(self.channel)
        self._open = False
        return 0
