"""The map in docs/architecture.md, checked: module sizes, and arrows that only point from the tools layer
into the core (never back, never sideways through the core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "edgeseg"
MAX_LINES = 500
# The inference path a board runs: it must work with numpy + onnxruntime + opencv (+ onnx for metadata).
CORE = {"preprocess", "backends", "decode", "masks", "results", "predict", "sources", "onnxgraph", "errors",
        "fileio", "draw", "reference", "stream", "sinks", "batch", "tracking"}  # fmt: skip
TOOLS = {"quantize", "evaluate", "bench", "report", "horizon", "machine", "export", "cli", "serve", "distributed"}
OPTIONAL_HEAVY = {"torch", "ultralytics", "matplotlib", "pycocotools", "faster_coco_eval", "scipy", "supervision", "trackers", "lap"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[tuple[str, int]]:
    """(imported edgeseg room or external top-level package, line) for every import, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # how many packages deep below edgeseg
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = (node.module or "").split(".") if node.module else []
                if node.level > depth:  # reaches edgeseg itself: the first part names the room
                    rooms = parts[:1] or [a.name for a in node.names]
                    found.update((r, node.lineno) for r in rooms)
                else:
                    found.add((_top(path), node.lineno))
            elif node.module:
                root = node.module.split(".")[0]
                if root == "edgeseg":
                    sub = node.module.split(".")[1:2] or [a.name for a in node.names]
                    found.update((s, node.lineno) for s in sub)
                else:
                    found.add((root, node.lineno))
        elif isinstance(node, ast.Import):
            found.update((a.name.split(".")[0], node.lineno) for a in node.names)
    return found


def test_every_room_is_on_the_map():
    rooms = {_top(p) for p in _modules()} - {"__init__"}
    assert rooms <= CORE | TOOLS, f"add {sorted(rooms - CORE - TOOLS)} to the map (docs/architecture.md and this test)"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_over_the_size_limit(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (> {MAX_LINES}): split it by responsibility"


@pytest.mark.parametrize("path", [p for p in _modules() if _top(p) in CORE], ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_core_imports_no_tools_and_no_optional_heavy_package(path):
    bad = sorted((name, line) for name, line in _imports(path) if name in TOOLS or name in OPTIONAL_HEAVY)
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: the core must run on a board with no tools layer"


def test_public_api_names_resolve_and_version_has_one_source():
    import tomllib

    import edgeseg

    missing = [name for name in edgeseg.__all__ if name != "export_onnx" and not hasattr(edgeseg, name)]
    assert not missing, f"edgeseg.__all__ names {missing}, which `import edgeseg` does not give"
    for name in ("StreamFrame", "StreamStats", "StreamRunner", "Source", "SourceItem", "open_sources", "draw_detections",
                 "Backend", "open_backend", "BoardOptions", "Nv12Frame", "Detections", "Segmenter", "EdgesegError"):  # fmt: skip
        assert name in edgeseg.__all__, name
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert edgeseg.__version__ == pyproject["project"]["version"]
    written = [p.relative_to(PACKAGE).as_posix() for p in _modules() if f'"{edgeseg.__version__}"' in p.read_text(encoding="utf-8")]
    assert not written, f"the version is written in {written}: pyproject.toml is its one place"
