"""The Python API for inference: ``Segmenter``, the one pipeline (one image -> ``Detections``: preprocess, backend,
decode, masks), which every engine drives as its ``Predictor``; ``Segmenter.stream()`` runs it over a video,
camera or stream on the local-threads engine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, BoardOptions, ModelInfo, open_backend
from .decode import DecodeOptions, decode
from .engines.threads import Camera, FrameStream, StreamRunner
from .errors import EdgesegError
from .preprocess import Nv12Frame, as_bgr, letterbox, letterbox_nv12, load_image, nv12_input_tensor, to_input_tensor
from .results import Detections
from .sources import Source, open_sources
from .stages import INFERENCE, PREPROCESS, StageClock
from .tracking import TrackingOptions

ASSETS = Path(__file__).with_name("assets")
DEFAULT_MODEL = ASSETS / "yolov8n-seg-coco128-640.onnx"
SAMPLE_IMAGE = ASSETS / "sample.jpg"  # made by tools/make_sample_image.py: the project's own, redistributable


class Segmenter:
    """Runs an edgeseg model on images.

    ``model`` is a model file (default: the embedded model; the backend is chosen from the file by
    ``open_backend``) or any ``Backend``. Options are those of ``DecodeOptions`` (``conf``, ``iou``,
    ``max_det``, ``classes``, ``agnostic``, ``multi_label``) or ``options=`` one. ``board``: how a ``.bin``
    runs on the RDK board (runtime, BPU core, priority). One Segmenter may be shared by threads: ONNX Runtime's
    ``run`` is thread-safe and the decoder keeps no state (the board runtimes are not: use ``workers``)."""

    def __init__(
        self,
        model: str | os.PathLike | Backend | None = None,
        *,
        options: DecodeOptions | None = None,
        threads: int = 0,
        providers: list[str] | None = None,
        board: BoardOptions | None = None,
        **option_values,
    ) -> None:
        self.options = replace(options or DecodeOptions(), **option_values)
        self.model_path: Path | None = None
        self.providers = providers
        self.board = board
        if model is None or isinstance(model, (str, os.PathLike)):
            self.model_path = Path(model or DEFAULT_MODEL)
            self.backend: Backend = open_backend(self.model_path, threads=threads, providers=providers, board=board)
        else:
            self.backend = model
        self.info: ModelInfo = self.backend.info
        if self.options.classes is not None:
            bad = [c for c in self.options.classes if c not in self.info.names]
            if bad:
                raise EdgesegError(f"class ids {bad} not in this model (0..{self.info.num_classes - 1})")

    @property
    def names(self) -> dict[int, str]:
        return self.info.names

    def raw(self, image: np.ndarray | Nv12Frame, clock: StageClock | None = None):
        """Letterbox, make the backend's input and run the network: (outputs by name, Letterbox). The input
        is the backend's own ``prepare(padded, lb)`` when it has one (NV12 for the RDK board), else the
        float NCHW tensor. An ``Nv12Frame`` is letterboxed in NV12 and handed to ``prepare_nv12`` (an NV12
        model takes it as it is: no colour conversion), or converted once at the input size."""
        if isinstance(image, Nv12Frame):
            padded, lb = letterbox_nv12(image, self.info.imgsz)
            prepare = getattr(self.backend, "prepare_nv12", None)
            inputs = nv12_input_tensor(padded, self.info.imgsz) if prepare is None else prepare(padded, lb)
        else:
            padded, lb = letterbox(as_bgr(image), self.info.imgsz)
            prepare = getattr(self.backend, "prepare", None)
            inputs = to_input_tensor(padded) if prepare is None else prepare(padded, lb)
        if clock is not None:
            clock.mark(PREPROCESS)
        outputs = self.backend.run(inputs)
        if clock is not None:
            clock.mark(INFERENCE)
        return outputs, lb

    def __call__(
        self, image: str | os.PathLike | np.ndarray | Nv12Frame, with_masks: bool = True, clock: StageClock | None = None
    ) -> Detections:
        """Detections for one image (a path, an 8-bit BGR array or an ``Nv12Frame``). ``clock`` is told when each stage
        of ``stages.STAGES`` ends (the benchmark's hook)."""
        if not isinstance(image, (np.ndarray, Nv12Frame)):
            image = load_image(image)
        outputs, lb = self.raw(image, clock)
        return decode(outputs, self.info, lb, self.options, with_masks=with_masks, clock=clock)

    predict = __call__

    def workers(self, count: int) -> list[Segmenter]:
        """``count`` Segmenters for worker threads: each its own one-thread session of the same model file
        (several small sessions beat one wide one for throughput), or this one shared when it wraps a
        backend object (ONNX Runtime sessions are thread-safe)."""
        if count < 1:
            raise EdgesegError(f"workers must be >= 1, got {count}")
        if self.model_path is None:
            return [self] * count
        return [_load(*self._recipe()) for _ in range(count)]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the recipe to load the model again (what an engine in other processes, Ray, needs); one
        intra-op thread per copy, as ``workers`` gives."""
        if self.model_path is None:
            raise EdgesegError("running in other processes needs a Segmenter made from a model file (each copy loads it)")
        return (_load, self._recipe())

    def _recipe(self) -> tuple[str, dict[str, Any]]:
        """(model file, options) of a copy with one intra-op thread: a worker's, or one in another process (the
        path resolved, so a process with another working directory finds the same file)."""
        settings = {"options": self.options, "threads": 1, "providers": self.providers, "board": self.board}
        return os.fspath(self.model_path.resolve()), settings

    def stream(
        self,
        source: str | os.PathLike | Source | Sequence[str | os.PathLike | Source | Camera],
        *,
        workers: int = 1,
        live: bool | None = None,
        vid_stride: int = 1,
        track: bool | TrackingOptions = False,
    ) -> FrameStream:
        """Frames of a video file, camera (``0``), stream URL or image directory, in order, with
        ``frame.index``, ``frame.time_s`` and ``frame.detections`` (see ``engines.threads.StreamRunner``); the returned
        iterator's ``stats`` (``StreamStats``: frames, failed, dropped, fps, latencies) are live while iterating
        and final after. ``workers``: inference threads, each its own session (as ``predict --workers``; one
        worker is this Segmenter itself). ``track`` (True, or ``tracking.TrackingOptions`` with lines and
        zones) gives the detections ``track_ids`` and each frame its ``frame.tracking`` (counting events,
        running counts, trails).

        A list of sources (or ``engines.threads.Camera``s, each with its own name, tracking and fps cap) runs them
        all at once on the one pool of ``workers``: frames come as they are ready, each camera's in its own
        order, ``frame.camera`` naming it; ``stats`` are the totals and ``cameras`` each camera's."""
        tracking = TrackingOptions() if track is True else (track or None)
        segmenters = [self] if workers == 1 else self.workers(workers)
        runner = StreamRunner(segmenters, live=live, tracking=tracking)
        if isinstance(source, (list, tuple)):
            return FrameStream(runner, [s if isinstance(s, Camera) else self._open(s, live=live, vid_stride=vid_stride) for s in source])
        return FrameStream(runner, self._open(source, live=live, vid_stride=vid_stride))

    @staticmethod
    def _open(source: str | os.PathLike | Source, *, live: bool | None, vid_stride: int) -> Source:
        if not isinstance(source, (str, os.PathLike)):
            return source
        opened = open_sources([source], live=live, vid_stride=vid_stride)
        if not opened.sources:
            raise opened.problems[0].error()
        return opened.sources[0]


def _load(model: str, recipe: dict[str, Any]) -> Segmenter:
    return Segmenter(model, **recipe)
