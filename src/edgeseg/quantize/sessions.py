"""ONNX Runtime as the quantizer talks to it: CPU sessions over a file or serialized bytes, interleaved
latency of several models, and ORT's quantization chatter kept off the console."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ..errors import EdgesegError, first_line

log = logging.getLogger("edgeseg.quantize")


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """Silence ORT's quantization chatter (root-logger warnings, prints) unless edgeseg runs with logging
    at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def cpu_session(model: str | os.PathLike | bytes, threads: int = 1):
    """An ORT CPU session over a model file or serialized model; ``threads``: intra-op threads (0: ORT's choice)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def check_loads(model_bytes: bytes, path: Path) -> None:
    """The model about to be written to ``path`` must load in ONNX Runtime (guards the graph surgery)."""
    try:
        cpu_session(model_bytes)
    except Exception as exc:
        first = first_line(exc)
        raise EdgesegError(f"internal error: the quantized model does not load in ONNX Runtime ({first})", path) from None


def session_latency_ms(
    models: Mapping[str, str | os.PathLike | bytes], tensor: np.ndarray, *, runs: int = 20, threads: int = 1, warmup: int = 2
) -> dict[str, float]:
    """Median latency in ms of one bare ``session.run`` per model (no decode), 1 ORT thread by default,
    runs interleaved (round robin) so that load from other processes hits every model alike."""
    sessions = {k: cpu_session(v, threads) for k, v in models.items()}
    name = next(iter(sessions.values())).get_inputs()[0].name
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, {name: tensor})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {name: tensor})
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}
