"""Shared fixtures: real data from ../shared and models exported by the project itself."""

from __future__ import annotations

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
