"""``edgeseg bench``: per-stage latency, throughput vs threads, and the fast decoder against the reference
decoder and Ultralytics' post-processing on the same raw outputs.

Everything here measures; nothing asserts. Numbers depend on the machine and its load, so the results
record the machine, the library versions and the load average before and after the run.

Modules: ``suite`` (``BenchConfig``, ``run_bench``), ``measure`` (latency interleaved, throughput in
turns), ``timing`` (stage clock on the real ``Segmenter``), ``compare`` (decoders), ``stream`` (a video
clip through the sequential loop, the pipelined runner and bare inference), ``stats`` (model facts from the
ONNX graph), ``result`` (``BenchResult``: the JSON as types).
"""

from __future__ import annotations

from .result import BenchResult, bench_summary, read_bench_result
from .stream import StreamBenchConfig
from .suite import BenchConfig, run_bench

__all__ = ["BenchConfig", "BenchResult", "StreamBenchConfig", "bench_summary", "read_bench_result", "run_bench"]
