"""The map in docs/architecture.md, checked: module sizes, arrows that only point down the layers (core, engines,
api, tools), no import cycle, and every import against the module map's "may import" column."""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "edgeseg"
ARCHITECTURE = PACKAGE.parents[1] / "docs" / "architecture.md"
MAX_LINES = 500
OPTIONAL_HEAVY = {"torch", "ultralytics", "matplotlib", "pycocotools", "faster_coco_eval", "scipy", "supervision", "trackers", "lap"}
ANYTHING = None  # a "may import" of "everything"
LAYERS = ("core", "engines", "api", "tools")  # bottom to top: a module imports its own layer and those below


def read_module_map(text: str) -> dict[str, tuple[str, set[str] | None]]:
    """room -> (layer, what it may import) from the module map's rows ``| layer | `room.py` or `room/` | job |
    may import |``; ``core`` expands to every core room, ``errors`` is open to all, a note in brackets is ignored."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] not in LAYERS:
            continue
        assert len(cells) == 4, f"docs/architecture.md: a module-map row needs 4 cells (a `|` in a cell?): {line[:80]}"
        room = re.match(r"`(\w+)(?:\.py|/)`", cells[1])
        assert room, f"docs/architecture.md: no `module.py` or `package/` in {cells[1]!r}"
        names = [] if cells[3] == "—" else [n.strip() for n in re.sub(r"\(.*?\)", "", cells[3]).split(",")]
        rows[room.group(1)] = (cells[0], names)
    core = {room for room, (layer, _) in rows.items() if layer == "core"}
    table = {}
    for room, (layer, names) in rows.items():
        if "everything" in names:
            table[room] = (layer, ANYTHING)
            continue
        allowed = {"errors"}
        for name in names:
            allowed |= core if name == "core" else {name}
        table[room] = (layer, allowed)
    return table


MODULE_MAP = read_module_map(ARCHITECTURE.read_text(encoding="utf-8"))
LAYER = {room: layer for room, (layer, _) in MODULE_MAP.items()}
CORE = {room for room, layer in LAYER.items() if layer == "core"}
TOOLS = {room for room, layer in LAYER.items() if layer == "tools"}


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
    assert rooms <= set(LAYER), f"add {sorted(rooms - set(LAYER))} to the map (docs/architecture.md)"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_over_the_size_limit(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (> {MAX_LINES}): split it by responsibility"


@pytest.mark.parametrize("path", [p for p in _modules() if _top(p) in CORE], ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_core_imports_no_tools_and_no_optional_heavy_package(path):
    bad = sorted((name, line) for name, line in _imports(path) if name in TOOLS or name in OPTIONAL_HEAVY)
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: the core must run on a board with no tools layer"


def layer_violations(relative: str, text: str) -> list[tuple[str, int]]:
    """(imported room, line) for every import of a room in a higher layer than the importing module's."""
    own = LAYERS.index(LAYER[PurePosixPath(relative).parts[0].removesuffix(".py")])
    return sorted(
        (target.split(".")[0], line)
        for target, line in edgeseg_imports(relative, text, ROOMS)
        if target.split(".")[0] in LAYER and LAYERS.index(LAYER[target.split(".")[0]]) > own
    )


@pytest.mark.parametrize("path", [p for p in _modules() if _top(p) != "__init__"], ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_point_down_the_layers(path):
    relative = path.relative_to(PACKAGE).as_posix()
    bad = layer_violations(relative, path.read_text(encoding="utf-8"))
    assert not bad, f"{relative} ({LAYER[_top(path)]}) imports {bad} of a higher layer: arrows point down (core, engines, api, tools)"


@pytest.mark.parametrize(
    ("relative", "text", "caught"),
    [
        ("engines/threads.py", "from ..predict import Segmenter\n", [("predict", 1)]),
        ("sources/files.py", "def f():\n    from ..engines.threads import StreamRunner\n", [("engines", 2)]),
        ("predict.py", "from .bench import run_bench\n", [("bench", 1)]),
        ("predict.py", "from .engines.threads import StreamRunner\n", []),
    ],
    ids=["engine->api", "core->engine", "api->tools", "api->engine (allowed)"],
)
def test_a_planted_upward_import_is_caught(relative, text, caught):
    assert layer_violations(relative, text) == caught


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "edgeseg"


def import_graph(sources: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """module -> the edgeseg modules it imports (lazy and type-only imports included); ``sources`` maps a module
    name to (its path below the package, its text). An import of a package counts as one of its ``__init__``."""
    graph = {}
    for name, (relative, text) in sources.items():
        targets = set()
        for target, _ in edgeseg_imports(relative, text, ROOMS):
            while target and target not in sources:  # ``from .x import name``: name is not a module
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_sources() -> dict[str, tuple[str, str]]:
    return {_module_name(p): (p.relative_to(PACKAGE).as_posix(), p.read_text(encoding="utf-8")) for p in _modules()}


def test_no_import_cycle():
    graph = import_graph(_package_sources())
    # A package's __init__ re-exports its modules: its own modules importing siblings through it is not a cycle
    # that matters, so the edges from __init__ into its own package are left out.
    for name in graph:
        if name == "edgeseg" or (PACKAGE / Path(*name.split(".")) / "__init__.py").is_file():
            graph[name] = {t for t in graph[name] if name != "edgeseg" and not t.startswith(name + ".")}
    found = cycles(graph)
    assert not found, f"import cycles (lazy imports included): {found}"


def test_a_planted_cycle_is_caught():
    sources = _package_sources()
    relative, text = sources["engines.threads"]
    sources["engines.threads"] = (relative, text + "\n\ndef f():\n    from ..predict import Segmenter\n")
    assert any({"engines.threads", "predict"} <= set(c) for c in cycles(import_graph(sources)))


def test_public_api_names_resolve_and_version_has_one_source():
    import tomllib

    import edgeseg

    missing = [name for name in edgeseg.__all__ if name != "export_onnx" and not hasattr(edgeseg, name)]
    assert not missing, f"edgeseg.__all__ names {missing}, which `import edgeseg` does not give"
    for name in (
        "StreamFrame",
        "StreamStats",
        "StreamRunner",
        "Source",
        "SourceItem",
        "open_sources",
        "draw_detections",
        "Backend",
        "open_backend",
        "BoardOptions",
        "Nv12Frame",
        "Detections",
        "Segmenter",
        "EdgesegError",
    ):
        assert name in edgeseg.__all__, name
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert edgeseg.__version__ == pyproject["project"]["version"]
    written = [p.relative_to(PACKAGE).as_posix() for p in _modules() if f'"{edgeseg.__version__}"' in p.read_text(encoding="utf-8")]
    assert not written, f"the version is written in {written}: pyproject.toml is its one place"


def edgeseg_imports(relative: str, text: str, rooms: set[str]) -> list[tuple[str, int]]:
    """(imported edgeseg module as a dotted path below the package, line) for every import in the module at
    ``relative`` (a path below ``src/edgeseg``), lazy and type-only ones included; ``edgeseg`` is the package
    itself (``from . import __version__``)."""
    package = list(PurePosixPath(relative).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            if node.module:
                found.append((".".join([*base, node.module]), node.lineno))
            else:
                found += [(".".join([*base, a.name]) if base or a.name in rooms else "edgeseg", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgeseg":
            found.append((node.module.partition(".")[2] or "edgeseg", node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name.partition(".")[2] or "edgeseg", node.lineno) for a in node.names if a.name.split(".")[0] == "edgeseg"]
    return found


def imports_not_allowed(relative: str, text: str, table: dict[str, tuple[str, set[str] | None]], rooms: set[str]) -> list[tuple[str, int]]:
    """The imports of a module that its room's "may import" does not allow (its own room is always allowed)."""
    room = PurePosixPath(relative).parts[0].removesuffix(".py")
    allowed = table[room][1]
    if allowed is ANYTHING:
        return []
    return sorted(
        (target, line)
        for target, line in edgeseg_imports(relative, text, rooms)
        if target.split(".")[0] != room and not any(target == a or target.startswith(a + ".") for a in allowed)
    )


ROOMS = {_top(p) for p in _modules()} - {"__init__"}


@pytest.mark.parametrize("path", [p for p in _modules() if _top(p) != "__init__"], ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_are_what_the_module_map_allows(path):
    relative = path.relative_to(PACKAGE).as_posix()
    bad = imports_not_allowed(relative, path.read_text(encoding="utf-8"), MODULE_MAP, ROOMS)
    assert not bad, f'{relative} imports {bad}, which the "may import" column of docs/architecture.md does not allow'


def test_the_module_map_is_read():
    assert {"errors", "preprocess", "decode", "results", "sources", "tracking"} <= CORE
    assert LAYER["engines"] == "engines" and LAYER["predict"] == "api"
    assert {"quantize", "evaluate", "bench", "report", "cli", "serve"} <= TOOLS
    assert MODULE_MAP["masks"][1] == {"errors"}  # "—": nothing but the error type
    assert MODULE_MAP["decode"][1] == {"errors", "backends.base", "masks", "preprocess", "results", "stages"}
    assert MODULE_MAP["engines"][1] == CORE | {"errors", "outputs"} and LAYER["outputs"] == "engines"
    assert MODULE_MAP["export"][1] == CORE | {"errors"} and MODULE_MAP["cli"][1] is ANYTHING


PLANTED = [
    # (module, text, what must be caught)
    ("decode.py", "from .engines.threads import StreamRunner\n", [("engines.threads", 1)]),
    ("engines/threads.py", "from ..predict import Segmenter\n", [("predict", 1)]),
    ("engines/cluster.py", "def f():\n    from ..evaluate import Dataset\n", [("evaluate", 2)]),
    ("decode.py", "from .backends import open_backend\n", [("backends", 1)]),  # only backends.base is allowed
    ("decode.py", "import numpy as np\n\n\ndef f():\n    from .quantize.rewrite import x\n", [("quantize.rewrite", 5)]),
    (
        "decode.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .engines.command import PredictOutputs\n",
        [("engines.command", 3)],
    ),
    ("backends/ort.py", "from ..evaluate import ValConfig\nfrom . import base\n", [("evaluate", 1)]),
    ("sources/files.py", "import edgeseg.predict\nfrom edgeseg.draw import annotate\n", [("draw", 2), ("predict", 1)]),
    ("masks.py", "from . import __version__\n", [("edgeseg", 1)]),
    ("export.py", "from .machine import usable_cores\n", [("machine", 1)]),
]


@pytest.mark.parametrize(("relative", "text", "caught"), PLANTED, ids=[f"{r}:{t.splitlines()[-1].strip()}" for r, t, _ in PLANTED])
def test_a_planted_wrong_import_is_caught(relative, text, caught):
    assert imports_not_allowed(relative, text, MODULE_MAP, ROOMS) == caught


ALLOWED = [
    ("decode.py", "from .backends.base import ModelInfo\nfrom .errors import EdgesegError\n"),
    ("backends/board.py", "from ..preprocess import Letterbox\nfrom .base import ModelInfo\n"),
    ("cli/tools.py", "from ..quantize import quantize\n"),
    ("predict.py", "from .engines.threads import StreamRunner\n"),
    ("engines/cluster.py", "from ..address import parse_host_port\n"),
    ("machine.py", "from . import __version__\n"),
]


@pytest.mark.parametrize(("relative", "text"), ALLOWED, ids=[r for r, _ in ALLOWED])
def test_allowed_imports_pass(relative, text):
    assert imports_not_allowed(relative, text, MODULE_MAP, ROOMS) == []
