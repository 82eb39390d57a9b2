"""Artefacts for Horizon's toolchain (RDK X3 / X5 boards): the ``hb_mapper makertbin`` yaml, the
calibration data it points at, the ``hb_model_modifier -r`` command that removes the Dequantize nodes of
the box and mask-coefficient heads (integer heads, as ``quantize`` makes them, on the board's own toolchain), the sidecar the
board backends read (``backends/board.py``) and ``run_on_board.md``, every command from here to a report.

Horizon names the Dequantize node of an output ``<name of the Conv output tensor>_HzDequantize``. The Conv
behind each head output is found in the graph (output shape [1,H,W,4*reg_max] or [1,H,W,nm], then back
through the NHWC Transpose), never assumed: names differ between exports.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import ModelInfo, Sidecar, read_model_info
from .backends.base import BOX, CLS, MC
from .backends.board import NV12_RANGE, SIDECAR_SUFFIX, output_kind
from .errors import EdgesegError, Problem
from .fileio import unique_name, write_bytes_atomic, write_json_atomic
from .onnxgraph import layout_chain, load_model, metadata, parameter_count, producers, stem_nodes, tensor_dims
from .preprocess import as_bgr, letterbox
from .progress import progress
from .sources import image_directory, readable_images

MARCHES = ("bayes-e", "bernoulli2")  # RDK X5 (Bayes-e BPU), RDK X3 (Bernoulli2 BPU)
INPUT_TYPES = ("nv12", "rgb")
DEQUANTIZE_SUFFIX = "_HzDequantize"


@dataclass(frozen=True)
class HeadConv:
    """One head output and the Conv output tensor behind it."""

    output: str
    kind: str  # "box" or "mc"
    shape: tuple[int, ...]
    conv_output: str

    @property
    def dequantize_node(self) -> str:
        return self.conv_output + DEQUANTIZE_SUFFIX


def _conv_behind(model, tensor: str, path: Path, writers) -> str:
    """Name of the Conv output that ``tensor`` is a layout change of."""
    name = layout_chain(model.graph, tensor, writers)[-1]
    node = writers.get(name)
    if node is None or node.op_type != "Conv":
        found = "a graph input" if node is None else f"a {node.op_type}"
        raise EdgesegError(f"output {tensor!r} comes from {found}, not from a Conv (expected a split-head export)", path)
    return name


def head_convs(model_path: str | os.PathLike) -> list[HeadConv]:
    """The box and mc head outputs of a split-head ONNX model with the Conv output behind each.

    An output is a box head when its shape is [1,H,W,4*reg_max] and a mask-coefficient head when it is
    [1,H,W,nm] at a detection stride (the proto plane, [1,h/4,w/4,nm], is not a head). For edgeseg
    models reg_max, nm, strides and the input size come from the metadata; for other split-head exports
    (e.g. the RDK model zoo's) nm 32, strides 8,16,32, the input shape, and box heads of 64 channels (DFL,
    reg_max 16) or 4 (YOLO26's distances, reg_max 1)."""
    path = Path(model_path)
    model = load_model(path)
    try:
        info = ModelInfo.from_metadata(metadata(model), path)
        box_channels, nm, strides, (ih, iw) = (4 * info.reg_max,), info.num_masks, info.strides, info.imgsz
    except EdgesegError:
        dims = tensor_dims(model.graph.input[0]) if model.graph.input else ()
        if len(dims) != 4 or dims[1] != 3 or dims[2] <= 0:
            raise EdgesegError("expected one NCHW image input [1,3,H,W]", path) from None
        box_channels, nm, strides, (ih, iw) = (64, 4), 32, (8, 16, 32), (dims[2], dims[3])
    grids = {(ih // s, iw // s): s for s in strides}
    writers = producers(model.graph)
    heads: list[HeadConv] = []
    for out in model.graph.output:
        shape = tensor_dims(out)
        if len(shape) != 4 or shape[0] != 1 or (shape[1], shape[2]) not in grids:
            continue
        if output_kind(out.name) == CLS:  # a model with 64 or 32 classes: same shape, not a head
            continue
        kind = BOX if shape[3] in box_channels else MC if shape[3] == nm else None
        if kind is None:
            continue
        heads.append(HeadConv(out.name, kind, shape, _conv_behind(model, out.name, path, writers)))
    want = 2 * len(strides)
    if len(heads) != want or sorted(h.kind for h in heads).count(BOX) != len(strides):
        found = ", ".join(f"{h.output}{list(h.shape)}" for h in heads) or "none"
        raise EdgesegError(
            f"expected {len(strides)} box outputs [1,H,W,{' or '.join(map(str, box_channels))}] and {len(strides)} mask-coefficient "
            f"outputs [1,H,W,{nm}], found {found}",
            path,
        )
    order = {BOX: 0, MC: 1}
    heads.sort(key=lambda h: (order[h.kind], -h.shape[1] * h.shape[2]))
    return heads


def _shell_word(text: str) -> str:
    """Double-quoted when that is safe (as these commands are usually written), else shell-escaped."""
    return f'"{text}"' if re.fullmatch(r"[A-Za-z0-9_./:+-]+", text) else shlex.quote(text)


def modifier_command(bin_path: str, heads: Sequence[HeadConv]) -> str:
    """``hb_model_modifier BIN -r "NODE" ...`` in one-flag-per-line shell form."""
    lines = [f"hb_model_modifier {shlex.quote(bin_path)}"]
    lines += [f"-r {_shell_word(h.dequantize_node)}" for h in heads]
    return " \\\n".join(lines)


# --------------------------------------------------------------------------------------------------
# yaml


def _q(value: str) -> str:
    """A single-quoted YAML scalar."""
    return "'" + str(value).replace("'", "''") + "'"


def _node_info(int16_nodes: Sequence[str]) -> str:
    """The yaml's ``node_info`` line: these nodes on the BPU with int16 inputs and outputs ('' for none)."""
    if not int16_nodes:
        return ""
    entries = ", ".join(f"{_q(n)}: {{'ON': 'BPU', 'InputType': 'int16', 'OutputType': 'int16'}}" for n in int16_nodes)
    return (
        "  # the input stem (the conv that reads the image, and its SiLU) in int16 (edgeseg horizon --int16-stem),\n"
        "  # as `edgeseg quantize --float-stem` keeps it float: 8 bits there cost the mask outputs the most cosine\n"
        f"  node_info: {{{entries}}}\n"
    )


def mapper_yaml(
    onnx_model: str, *, working_dir: str, prefix: str, cal_data_dir: str, config: HorizonConfig, int16_nodes: Sequence[str] = ()
) -> str:
    """The ``hb_mapper makertbin`` config in the layout of Horizon's / the RDK model zoo's yamls;
    ``int16_nodes`` run on the BPU with int16 inputs and outputs (``node_info``)."""
    march, input_type_rt = config.march, config.input_type_rt
    rt_layout = (
        f"  # NV12 as OpenCV (and edgeseg on the board) makes it: BT.601 video range, Y 16..235\n"
        f"  input_space_and_range: {_q(NV12_RANGE)}\n"
        if input_type_rt == "nv12"
        else "  # layout of the runtime input (not used for nv12)\n  input_layout_rt: 'NHWC'\n"
    )
    return f"""# hb_mapper makertbin config written by `edgeseg horizon`.
# Run from this directory: hb_mapper makertbin --model-type onnx --config {prefix}.yaml

# model conversion parameters
model_parameters:
  # the float ONNX model (split-head export: NHWC cls/box/mc per stride + protos)
  onnx_model: {_q(onnx_model)}
  # BPU micro-architecture: bayes-e (RDK X5) or bernoulli2 (RDK X3)
  march: {_q(march)}
  # dump every layer's output during conversion (slow; for debugging only)
  layer_out_dump: False
  # where conversion results (.bin, intermediate .onnx, logs) are written
  working_dir: {_q(working_dir)}
  # name prefix of the .bin for the board
  output_model_file_prefix: {_q(prefix)}
{_node_info(int16_nodes)}
# model input parameters
input_parameters:
  # empty: take the input name from the model
  input_name: ''
  # what the board feeds at run time
  input_type_rt: {_q(input_type_rt)}
{rt_layout}  # what the network was trained on: RGB, NCHW
  input_type_train: 'rgb'
  input_layout_train: 'NCHW'
  # empty: take the input shape from the model
  input_shape: ''
  # the model expects RGB/255: the BPU scales the 0..255 input by 1/255
  norm_type: 'data_scale'
  mean_value: ''
  scale_value: 0.003921568627451

# calibration parameters
calibration_parameters:
  # letterboxed like inference (pad 114, RGB, NCHW), raw float32 in 0..255 (before the 1/255 above)
  cal_data_dir: {_q(cal_data_dir)}
  cal_data_type: 'float32'
  # default: the toolchain picks among its calibration methods (kl / max)
  calibration_type: 'default'

# compiler parameters
compiler_parameters:
  # optimise for latency (alternative: bandwidth)
  compile_mode: 'latency'
  debug: False
  # O3: slowest compile, fastest model
  optimize_level: 'O3'
"""


# --------------------------------------------------------------------------------------------------
# the whole job


@dataclass
class HorizonArtefacts:
    """What ``horizon_artefacts`` wrote."""

    out_dir: Path
    onnx_model: Path
    yaml: Path
    calibration_dir: Path
    calibration_files: list[Path]
    skipped: list[Problem]
    heads: list[HeadConv]
    bin_path: str
    modifier_command: str
    script: Path
    sidecar: Path
    board_guide: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def remove_nodes(self) -> list[str]:
        return [h.dequantize_node for h in self.heads]


@dataclass(frozen=True)
class HorizonConfig:
    """The board and its input: ``march`` (one of ``MARCHES``), ``num`` calibration images, and the
    run-time input format ``input_type_rt`` (one of ``INPUT_TYPES``)."""

    march: str = "bayes-e"
    num: int = 50
    input_type_rt: str = "nv12"
    int16_stem: bool = False  # the input stem's Conv and SiLU in int16 (``node_info``): quantize's ``float_stem``

    def __post_init__(self) -> None:
        if self.march not in MARCHES:
            raise EdgesegError(f"unknown march {self.march!r} (choose from {', '.join(MARCHES)})")
        if self.input_type_rt not in INPUT_TYPES:
            raise EdgesegError(f"unknown input type {self.input_type_rt!r} (choose from {', '.join(INPUT_TYPES)})")
        if self.num < 1:
            raise EdgesegError(f"--num must be >= 1, got {self.num}")


def _write_calibration_data(
    files: Sequence[Path], cal_dir: Path, imgsz: tuple[int, int], num: int, show_progress: bool
) -> tuple[list[Path], list[Problem]]:
    """The first ``num`` readable images of ``files`` as ``.rgbchw`` raw files in ``cal_dir``; returns
    the files written and the (image, problem) of the unreadable ones."""
    for old in cal_dir.glob("*.rgbchw"):  # a rerun must not leave stale samples behind
        old.unlink()
    skipped: list[Problem] = []
    written: list[Path] = []
    used_names: set[str] = set()
    for item in progress(readable_images(files, num, skipped), desc="calibration data", total=num, enabled=show_progress):
        # Same letterbox as inference; Horizon wants the values before the model's 1/255 (norm_type
        # data_scale): the letterboxed uint8 pixels as float32 RGB CHW.
        padded, _ = letterbox(as_bgr(item.image), imgsz)
        data = padded[..., ::-1].transpose(2, 0, 1).astype(np.float32)
        name = unique_name(Path(item.name).stem, ".rgbchw", used_names)
        written.append(write_bytes_atomic(cal_dir / name, np.ascontiguousarray(data).tobytes()))
    return written, skipped


def _int16_stem(model) -> list[str]:
    """The stem nodes as Horizon names them: the Conv that reads the image and the Mul of its SiLU (the
    toolchain fuses Sigmoid + Mul into one HzSwish that keeps the Mul's name)."""
    kinds = {n.name: n.op_type for n in model.graph.node}
    return [n for n in stem_nodes(model) if kinds[n] in ("Conv", "Mul")]


def horizon_artefacts(
    model: str | os.PathLike,
    calib: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: HorizonConfig | None = None,
    show_progress: bool = False,
) -> HorizonArtefacts:
    """Write into ``out_dir``: a copy of the float model, ``<prefix>.yaml`` for ``hb_mapper makertbin``,
    the calibration data it names (``config.num`` images of ``calib``, letterboxed like inference, float32
    RGB NCHW 0..255, ``.rgbchw`` raw files), and ``convert.sh`` with the checker, makertbin and
    ``hb_model_modifier -r`` commands. Every path in the yaml and the script is relative to ``out_dir``."""
    config = config or HorizonConfig()
    march, num, input_type_rt = config.march, config.num, config.input_type_rt
    src = Path(model)
    info = read_model_info(src)
    heads = head_convs(src)
    files = image_directory(calib, "calibration")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EdgesegError("exists and is not a directory", out)
    ih, iw = info.imgsz
    march_tag = march.replace("-", "")
    prefix = f"{src.stem}_{march_tag}_{ih}x{iw}_{input_type_rt}"
    cal_name = f"calibration_data_rgb_f32_{ih}x{iw}"
    cal_dir = out / cal_name
    cal_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = _write_calibration_data(files, cal_dir, (ih, iw), num, show_progress)
    if not written:
        raise EdgesegError(f"none of the {len(skipped)} calibration image(s) could be read", calib)
    warnings = []
    if len(written) < num:
        warnings.append(f"{calib}: only {len(written)} usable calibration image(s), {num} asked")

    float_model = load_model(src)
    model_copy = out / src.name
    if model_copy.resolve() != src.resolve():
        write_bytes_atomic(model_copy, src.read_bytes())
    working_dir = "bpu_model_output"
    yaml_path = write_bytes_atomic(
        out / f"{prefix}.yaml",
        mapper_yaml(
            f"./{model_copy.name}",
            working_dir=working_dir,
            prefix=prefix,
            cal_data_dir=f"./{cal_name}",
            config=config,
            int16_nodes=_int16_stem(float_model) if config.int16_stem else (),
        ).encode(),
    )
    bin_path = f"{working_dir}/{prefix}.bin"
    command = modifier_command(bin_path, heads)
    script = "\n".join(
        [
            "#!/usr/bin/env bash",
            "# Written by `edgeseg horizon`. Run inside Horizon's OpenExplorer docker, from this directory.",
            "set -euo pipefail",
            'cd "$(dirname "$0")"',
            f"hb_mapper checker --model-type onnx --march {march} --model {shlex.quote('./' + model_copy.name)}",
            f"hb_mapper makertbin --model-type onnx --config {shlex.quote(yaml_path.name)}",
            "# Remove the Dequantize nodes of the box and mask-coefficient heads: the board's CPU then",
            f"# dequantizes only the rows it keeps (hb_model_modifier writes {prefix}_modified.bin).",
            command,
            "",
        ]
    )
    script_path = write_bytes_atomic(out / "convert.sh", script.encode())
    script_path.chmod(0o755)
    sidecar = Sidecar(info, input_type_rt=input_type_rt, onnx_model=src.name, params=parameter_count(float_model))
    sidecar_path = write_json_atomic(out / f"{src.stem}{SIDECAR_SUFFIX}", sidecar.to_dict())
    r = HorizonArtefacts(
        out,
        model_copy,
        yaml_path,
        cal_dir,
        written,
        skipped,
        heads,
        bin_path,
        command,
        script_path,
        sidecar_path,
        out / "run_on_board.md",
        warnings,
    )
    write_bytes_atomic(r.board_guide, board_guide(r, config, calib).encode())
    return r


def board_guide(r: HorizonArtefacts, config: HorizonConfig, images: str | os.PathLike) -> str:
    """``run_on_board.md``: every command from the ONNX to a report on the board, in order (``images``:
    a directory of test images to copy to the board)."""
    modified = r.bin_path.removesuffix(".bin") + "_modified.bin"  # where hb_model_modifier saves it
    board_bin = Path(modified).name
    board = {"bayes-e": "RDK X5", "bernoulli2": "RDK X3"}[config.march]
    step = "\n```bash\n{}\n```\n".format
    return "\n".join(
        [
            f"# Run {r.onnx_model.name} on the {board}",
            "",
            "Written by `edgeseg horizon`; paths are relative to this directory. Steps 1-3 run inside Horizon's "
            "OpenExplorer docker (`./convert.sh` runs the same three), step 4 here, steps 5-8 on the board.",
            "",
            "1. Check that every operator maps to the BPU:"
            + step(f"hb_mapper checker --model-type onnx --march {config.march} --model {shlex.quote('./' + r.onnx_model.name)}"),
            f"2. Compile: calibrate on `{r.calibration_dir.name}/` and write `{r.bin_path}`:"
            + step(f"hb_mapper makertbin --model-type onnx --config {shlex.quote(r.yaml.name)}"),
            f"3. Remove the Dequantize nodes of the {len(r.heads)} box and mask-coefficient heads (the board's CPU then "
            f"dequantizes only the rows it keeps); this writes `{modified}`:" + step(r.modifier_command),
            f"4. Copy the model, its sidecar `{r.sidecar.name}` (the class names and geometry a .bin lacks; keep it in the "
            "same directory as the .bin) and some test images to the board:"
            + step(
                "\n".join(
                    [
                        'BOARD="root@<board-ip>"  # your board\'s user@address',
                        'ssh "$BOARD" mkdir -p edgeseg',
                        f'scp {shlex.quote(modified)} {shlex.quote(r.sidecar.name)} "$BOARD:edgeseg/"',
                        f'scp -r {shlex.quote(os.fspath(images))} "$BOARD:edgeseg/images"',
                    ]
                )
            ),
            '5. On the board (`ssh "$BOARD"`, then `cd edgeseg`): install edgeseg with the board runtime:'
            + step('pip install "edgeseg[rdk]"'),
            "6. Segment the test images with the BPU model and edgeseg's decoder:"
            + step(f"edgeseg predict {board_bin} images --out predictions --save-json predictions/detections.json"),
            "7. Benchmark: per-stage latency and throughput with 1, 2, 4 and 8 worker threads:"
            + step(f"edgeseg bench {board_bin} --images images --threads 1,2,4,8 --json bench.json"),
            "8. The report (table and plots; add `--val val.json` from `edgeseg val` for the accuracy columns):"
            + step("edgeseg report --bench bench.json -o report"),
        ]
    )
