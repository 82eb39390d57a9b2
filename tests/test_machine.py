"""The startup banner: what a long run says about itself, and the INT8 path it names for the CPU it is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.machine import startup_banner

REPO = Path(__file__).resolve().parents[1]
AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
AVX512_VNNI = "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f avx512_vnni\n"
AVX_VNNI = "processor\t: 0\nflags\t\t: fpu avx avx2 avx_vnni\n"
ARM_DOTPROD = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"
NO_FLAGS = "processor\t: 0\n"


def banner(model: str = "models/yolov8n-seg-int8.onnx", cpuinfo: str = AVX2_ONLY, **kwargs) -> list[str]:
    args = {"backend": "onnxruntime", "int8": True, "workers": 2, "cameras": ["front", "gate"], **kwargs}
    return startup_banner(model=model, cpuinfo=cpuinfo, **args)


def test_the_banner_names_model_backend_workers_and_cameras():
    lines = banner()
    assert lines[:4] == ["model: yolov8n-seg-int8.onnx (INT8)", "backend: onnxruntime", "workers: 2", "cameras: 2 (front, gate)"]
    assert len(lines) == 5 and lines[4].startswith("INT8 path: ")
    assert banner(cameras=[])[3] == "cameras: 0 (none)"
    float_run = banner(model="m.onnx", int8=False)
    assert float_run[0] == "model: m.onnx (float)" and float_run[4].endswith("(this model is float: edgeseg quantize makes an INT8 one)")


@pytest.mark.parametrize(
    ("cpuinfo", "model", "says"),
    [
        (AVX2_ONLY, "m.onnx", "INT8 path: AVX2 only (no VNNI): measured INT8 inference 1.5-1.8x FP32"),
        (AVX512_VNNI, "m.onnx", "INT8 path: AVX-512 VNNI (avx512_vnni): on a 2-core VNNI Xeon the project measured INT8 at 1.9-2.1x"),
        (AVX_VNNI, "m.onnx", "INT8 path: AVX-VNNI (avx_vnni): "),
        (ARM_DOTPROD, "m.onnx", "INT8 path: ARM dot product (asimddp): "),
        (NO_FLAGS, "m.onnx", "INT8 path: unknown (no CPU flags readable)"),
        ("flags\t: fpu sse sse2\n", "m.onnx", "INT8 path: no int8 dot-product or AVX2 instructions: INT8 is likely no faster than float"),
        (AVX2_ONLY, "board/model.bin", "INT8 path: the BPU"),  # a .bin never runs on the CPU's instructions
    ],
)
def test_the_int8_path_follows_the_cpu_and_the_model(cpuinfo, model, says):
    line = banner(model=model, cpuinfo=cpuinfo)[4]
    assert line.startswith(says), line


def test_the_banner_quotes_the_ratios_the_docs_measured():
    """The ratios in the banner are the README's measurements (AVX2-only EPYC, VNNI Xeon), not guesses."""
    readme = (REPO / "README.md").read_text()
    assert "INT8 inference alone is 1.5-1.8x FP32 on one thread of this CPU" in readme
    assert "on a 2-core VNNI Xeon, INT8 is\n1.9-2.1x FP32 on one thread for the n models and 2.5-3.5x for s to x" in readme
    assert "1.5-1.8x FP32" in banner(cpuinfo=AVX2_ONLY)[4]
    assert "1.9-2.1x FP32 on one thread for the n models and 2.5-3.5x for s to x" in banner(cpuinfo=AVX512_VNNI)[4]
