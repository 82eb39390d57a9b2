"""What a measurement ran on, and the thread pools around ONNX Runtime.

Machine facts (CPU model, cores, library versions, load, the CPU's int8 dot-product instructions) go into
every results JSON so numbers from different machines are never compared blind. ``helper_threads`` pins
OpenBLAS, OpenCV and torch to a thread count, so that "one thread" really means one.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import functools
import itertools
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

# CPU flags (as /proc/cpuinfo names them) of the int8 dot-product instructions that ONNX Runtime's integer
# kernels use; without any of them (AVX2-only x86) int8 convolutions are only about 2x float.
INT8_DOT_FLAGS = ("avx_vnni", "avx512_vnni", "avx512vnni", "amx_int8", "asimddp", "i8mm")
_CPU_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model")


@functools.cache
def _proc_cpuinfo() -> str | None:
    """/proc/cpuinfo, read once per process (None where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo_value(cpuinfo: str, keys: tuple[str, ...]) -> str | None:
    """The value of the first line whose key is one of ``keys``."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value
    return None


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    value = _cpuinfo_value(_proc_cpuinfo() or "", _CPU_MODEL_KEYS)
    if value is not None:
        return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def int8_dot_instructions(cpuinfo: str | None = None) -> list[str] | None:
    """The int8 dot-product extensions of this CPU (``INT8_DOT_FLAGS``), [] if it has none, None when
    unknown (no /proc/cpuinfo)."""
    if cpuinfo is None:
        cpuinfo = _proc_cpuinfo()
        if cpuinfo is None:
            return None
    value = _cpuinfo_value(cpuinfo, ("flags", "Features"))
    if value is None:
        return None
    present = set(value.split())
    return [flag for flag in INT8_DOT_FLAGS if flag in present]


def int8_speed_note(ratio: float, dot: list[str] | None) -> str | None:
    """A one-line explanation when INT8 is under 2x float on a CPU without int8 dot products."""
    if ratio >= 2.0 or dot is None or dot:
        return None
    return (
        f"INT8 is {ratio:.2f}x float here: this CPU has no int8 dot-product instructions (VNNI / ARM dotprod), "
        "so integer convolutions are only about 2x float and SiLU, concat and requantization do not speed up; "
        "on CPUs with them, and on NPUs, the gap is larger"
    )


def int8_path(*, model: str, cpuinfo: str | None = None) -> str:
    """Where a run of ``model`` does its INT8 arithmetic and what the project measured there, in one line: the
    board's BPU for a ``.bin``, else the CPU's int8 dot-product instructions (VNNI, ARM dotprod) or their absence
    (AVX2 only); ``cpuinfo`` is /proc/cpuinfo's text (default: this machine's)."""
    if Path(model).suffix == ".bin":
        return "INT8 path: the BPU (a Horizon .bin runs on the board's accelerator, not on these CPU cores)"
    text = _proc_cpuinfo() if cpuinfo is None else cpuinfo
    dot = int8_dot_instructions(text)
    flags = set((_cpuinfo_value(text or "", ("flags", "Features")) or "").split())
    if dot and {"avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8"} & set(dot):
        kind = "AVX-512 VNNI" if {"avx512_vnni", "avx512vnni"} & set(dot) else "AMX" if "amx_int8" in dot else "AVX-VNNI"
        return (
            f"INT8 path: {kind} ({', '.join(dot)}): on a 2-core VNNI Xeon the project measured INT8 at 1.9-2.1x FP32 "
            "on one thread for the n models and 2.5-3.5x for s to x (docs/performance.md)"
        )
    if dot:
        return (
            f"INT8 path: ARM dot product ({', '.join(dot)}): integer convolutions several times faster than float "
            "(docs/quantize.md; not measured by the project on ARM)"
        )
    if dot is None:
        return "INT8 path: unknown (no CPU flags readable): measure INT8 against FP32 here (benchmarks/int8_speed.py)"
    if "avx2" in flags:
        return (
            "INT8 path: AVX2 only (no VNNI): measured INT8 inference 1.5-1.8x FP32 on one thread of such a CPU "
            "(2-core AMD EPYC, docs/quantize.md); the 2x and more of VNNI or ARM dot-product CPUs is out of reach"
        )
    return "INT8 path: no int8 dot-product or AVX2 instructions: INT8 is likely no faster than float here"


def startup_banner(*, model: str, backend: str, int8: bool, workers: int, cameras: Sequence[str], cpuinfo: str | None = None) -> list[str]:
    """The lines a long run prints when it starts: the model (and whether it is INT8), the backend, the workers,
    the cameras, and ``int8_path``'s line for this CPU (``cpuinfo``: /proc/cpuinfo's text, default this
    machine's)."""
    names = ", ".join(cameras) if cameras else "none"
    path = int8_path(model=model, cpuinfo=cpuinfo)
    if not int8 and Path(model).suffix != ".bin":
        path += " (this model is float: edgeseg quantize makes an INT8 one)"
    return [
        f"model: {Path(model).name} ({'INT8' if int8 else 'float'})",
        f"backend: {backend}",
        f"workers: {workers}",
        f"cameras: {len(cameras)} ({names})",
        path,
    ]


def steady_allocator() -> bool:
    """For a run of days on glibc: frame-sized buffers (>= 256 KB) always from mmap, so that a freed frame goes back
    to the OS, and at most two malloc arenas. By default glibc raises its mmap threshold after such a buffer is freed
    and then serves the next frames from its heaps; frames made by a reader thread and freed by a worker (and
    FFmpeg's buffers opened on a helper thread at each reconnect) then ratchet the resident memory up, a few MB
    after each camera drop. True where it was set (glibc), False elsewhere (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold, m_arena_max = -3, -8  # malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 256 * 1024)) and bool(libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):
        return False


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages, rounded (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def usable_cores() -> int | None:
    """Cores this process may run on (its affinity mask), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


@dataclass
class MachineInfo:
    """What the numbers were measured on: CPU, cores, library versions, load (None: unknown)."""

    cpu: str | None = None
    cores: int | None = None
    usable_cores: int | None = None
    machine: str | None = None
    system: str | None = None
    python: str | None = None
    numpy: str | None = None
    onnxruntime: str | None = None
    opencv: str | None = None
    edgeseg: str | None = None
    blas: dict[str, Any] | None = None
    int8_dot_instructions: list[str] | None = None
    loadavg_start: list[float] | None = None
    date_utc: str | None = None
    loadavg_end: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MachineInfo:
        """Every fact is optional: a results file from another tool may know fewer of them."""
        return cls(**{f.name: doc.get(f.name) for f in fields(cls)})


def machine_info() -> MachineInfo:
    """The facts of this machine now (``loadavg_end`` is the caller's to fill in)."""
    import cv2
    import onnxruntime

    from . import __version__

    return MachineInfo(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        usable_cores=usable_cores(),
        machine=platform.machine(),
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        numpy=np.__version__,
        onnxruntime=onnxruntime.__version__,
        opencv=cv2.__version__,
        edgeseg=__version__,
        blas=BlasThreads.get().describe(),
        int8_dot_instructions=int8_dot_instructions(),
        loadavg_start=loadavg(),
        date_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


class BlasThreads:
    """Runtime control of OpenBLAS' thread count through its C API (what threadpoolctl does), so that
    "one thread" really means one: numpy's matmul otherwise fans out to every core."""

    _instance: BlasThreads | None = None

    def __init__(self) -> None:
        self.name: str | None = None
        self._get: Callable[[], int] | None = None
        self._set: Callable[[int], None] | None = None
        self.default: int | None = None
        for path in self._loaded_openblas():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in itertools.product(("scipy_openblas", "openblas"), ("64_", "")):
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    self.name, self._get, self._set = Path(path).name, getter, setter
                    self.default = self.threads()  # before anyone pins it
                    return

    @staticmethod
    def _loaded_openblas() -> list[str]:
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
        except OSError:
            return []
        return sorted(paths)

    @classmethod
    def get(cls) -> BlasThreads:
        """The process-wide instance (OpenBLAS is loaded once per process)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @property
    def available(self) -> bool:
        return self._get is not None

    def threads(self) -> int | None:
        return int(self._get()) if self._get else None

    def set_threads(self, n: int) -> None:
        if self._set:
            self._set(int(n))

    def describe(self) -> dict[str, Any]:
        return {"library": self.name, "default_threads": self.default} if self.available else {"library": None}


@contextlib.contextmanager
def helper_threads(n: int = 1) -> Iterator[dict[str, Any]]:
    """Limit the thread pools around ORT (OpenBLAS, OpenCV, torch if loaded) to ``n`` for the block."""
    import cv2

    blas = BlasThreads.get()
    saved_blas, saved_cv = blas.threads(), cv2.getNumThreads()
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch is not None else None
    blas.set_threads(n)
    cv2.setNumThreads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        yield {"blas": n if blas.available else None, "opencv": n, "torch": n if torch is not None else None}
    finally:
        if saved_blas is not None:
            blas.set_threads(saved_blas)
        cv2.setNumThreads(saved_cv)
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)
