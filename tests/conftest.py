"""Shared fixtures: real data from ../shared and models exported by the project itself."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
COCO128 = SHARED / "datasets" / "coco128-seg"
CHECKPOINT = SHARED / "models" / "yolov8n-seg-coco128.pt"


def require_shared() -> None:
    """Skip (with the reason) a test that needs the shared data when it is absent; unit tests that need
    no data never call this and run anywhere."""
    if not COCO128.is_dir() or not CHECKPOINT.is_file():
        pytest.skip(f"needs the shared data (coco128-seg and the test checkpoint) at {SHARED}; set EDGESEG_SHARED")


# Fixtures that export, quantize or benchmark a model, run the CLI over a clip, or serve a real RTSP camera (its
# reader takes ~3 s of frames to open) (seconds to minutes): a test that needs one is slow (the `slow` marker)
# wherever it lives.
SLOW_FIXTURES = {
    "model_640",
    "int8_onnx",
    "board",
    "ultralytics_exports",
    "bench_result",
    "stream_bench_json",
    "tracked_run",
    "rtsp_cameras",
    "rtsp_camera",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    require_shared()
    return SHARED


@pytest.fixture(scope="session")
def coco128_dir() -> Path:
    require_shared()
    return COCO128


@pytest.fixture(scope="session")
def coco128_images(coco128_dir) -> list[Path]:
    return sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    require_shared()
    return CHECKPOINT


@pytest.fixture(scope="session")
def default_model() -> Path:
    from edgeseg.predict import DEFAULT_MODEL

    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def model_640(tmp_path_factory, checkpoint) -> Path:
    """The shared checkpoint exported at 640 by edgeseg's own export code (float32 split-head ONNX)."""
    pytest.importorskip("ultralytics", reason="export needs the [export] extra (torch, Ultralytics)")
    from edgeseg.export import export_onnx

    return export_onnx(checkpoint, imgsz=640, output=tmp_path_factory.mktemp("export") / "yolov8n-seg-640.onnx")


@pytest.fixture(scope="session")
def ultralytics_assets() -> Path:
    ultralytics = pytest.importorskip("ultralytics")
    return Path(ultralytics.__file__).parent / "assets"


# --------------------------------------------------------------------------------------------------
# the RDK board without a board: stand-ins of its runtimes (tests/fakes), a .bin directory as run_on_board.md
# leaves it

FAKES = REPO / "tests" / "fakes"
BOARD_PACKAGES = ("hobot_dnn", "hobot_dnn_rdkx5", "hbm_runtime", "hobot_vio", "hobot_vio_rdkx5", "fake_bpu")


def forget_board_modules() -> None:
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] in BOARD_PACKAGES]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def fakes():
    """The stand-ins importable (``hobot_dnn``, ``hbm_runtime``, ``hobot_vio``, ``fake_bpu``) for one test module,
    forgotten afterwards so that other tests see a machine without a board runtime."""
    import importlib

    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(FAKES))
        forget_board_modules()
        yield importlib.import_module("fake_bpu")
    forget_board_modules()


@pytest.fixture(scope="session")
def int8_onnx(tmp_path_factory, coco128_dir) -> Path:
    """The embedded model quantized by edgeseg (INT8, integer box/mc heads), as the .bin's source."""
    from edgeseg.predict import DEFAULT_MODEL
    from edgeseg.quantize import QuantizeConfig, quantize

    out = tmp_path_factory.mktemp("int8") / "yolov8n-seg-coco128-640-int8.onnx"
    config = QuantizeConfig(num=8, report_images=0, bench_runs=0)
    return quantize(DEFAULT_MODEL, coco128_dir / "images" / "train2017", config=config, output=out).output


@pytest.fixture(scope="module")
def board(tmp_path_factory, coco128_images, int8_onnx, fakes) -> dict[str, Path]:
    """A board directory: the sidecar `edgeseg horizon` wrote and fake .bins of the INT8 model beside it (NV12,
    RGB and BGR inputs)."""
    import shutil

    from edgeseg.hbmapper import HorizonConfig, horizon_artefacts
    from edgeseg.predict import DEFAULT_MODEL

    calib = tmp_path_factory.mktemp("calib")
    shutil.copy(coco128_images[0], calib)
    r = horizon_artefacts(DEFAULT_MODEL, calib, tmp_path_factory.mktemp("horizon"), config=HorizonConfig(num=1))
    d = tmp_path_factory.mktemp("board")
    shutil.copy(r.sidecar, d)
    prefix = Path(r.bin_path).stem
    return {
        "dir": d,
        "nv12": fakes.write_fake_bin(int8_onnx, d / f"{prefix}_modified.bin"),
        "rgb": fakes.write_fake_bin(int8_onnx, d / f"{prefix}_rgb.bin", input_type="RGB", input_layout="NHWC"),
        "bgr": fakes.write_fake_bin(int8_onnx, d / f"{prefix}_bgr.bin", input_type="BGR", input_layout="NHWC"),
    }


# --------------------------------------------------------------------------------------------------
# real RTSP cameras (benchmarks/rtsp_server.py): GStreamer's RTSP server serving coco128-seg pictures in real time


@pytest.fixture(scope="session")
def camera_pictures(tmp_path_factory, coco128_images) -> Path:
    """What the RTSP cameras show: 16 coco128-seg images at 640x480, looping."""
    from rtsp_server import gstreamer_missing, write_frames

    missing = gstreamer_missing()
    if missing:
        pytest.skip(missing)
    return write_frames(coco128_images[:16], tmp_path_factory.mktemp("camera-pictures"))


@pytest.fixture()
def rtsp_cameras(camera_pictures):
    """Start real RTSP cameras: ``rtsp_cameras(n, fps=10, running=True)`` -> n ``RtspCamera``s, each on a free
    loopback port (``camera.url``), running unless ``running=False`` (then ``camera.start()`` later); every one
    is killed when the test ends. ``camera.stop()`` / ``start()``: the camera drops and comes back on the same
    port; ``freeze()`` / ``thaw()``: it stalls (connections stay open, no frames); ``camera.frame_index(image)``:
    which served picture a decoded frame shows."""
    from rtsp_server import RtspCamera

    made: list[RtspCamera] = []

    def start(n: int = 1, *, fps: int = 10, running: bool = True) -> list[RtspCamera]:
        cameras = [RtspCamera(camera_pictures, fps=fps) for _ in range(n)]
        made.extend(cameras)
        for camera in cameras if running else ():
            camera.start()
        return cameras

    yield start
    for camera in made:
        camera.close()


@pytest.fixture()
def rtsp_camera(rtsp_cameras):
    """One running real RTSP camera at 10 fps (see ``rtsp_cameras``)."""
    return rtsp_cameras(1)[0]


@pytest.fixture(autouse=True)
def edgeseg_logger_plain():
    """``edgeseg.cli.main`` run in-process (by a test or a module's fixture) gives the ``edgeseg`` logger its stderr
    handler and stops it propagating: every test starts and ends with the plain logger, so ``caplog`` sees it."""

    def plain() -> None:
        logger = logging.getLogger("edgeseg")
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True

    plain()
    yield
    plain()
