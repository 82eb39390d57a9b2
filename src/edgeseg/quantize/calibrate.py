"""Calibration: network inputs read exactly like inference, fed one image at a time to an ONNX Runtime
calibrator, and the activation ranges it computes, with the head and SiLU-input floors applied."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import PROTOS, ModelInfo, output_name
from ..backends.base import BOX, CLS, MC
from ..errors import EdgesegError, Problem
from ..onnxgraph import consumers, output_chains
from ..preprocess import preprocess
from ..progress import progress
from ..sources import readable_images
from .sessions import quiet_ort

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "percentile"
DEFAULT_NUM = 50
PERCENTILE = 99.999  # ``percentile``: the central share of each activation's calibration histogram kept
# Head ranges: the decoder never tells a cls logit of -30 (sigmoid 1e-13) from -90, nor weighs a DFL bin
# at -20 against its side's best bin (above 0 in every cell that survives even conf 0.001 on coco128), so
# the ranges start there instead of at the calibrated minima (about -90 and -37 on the shared checkpoint):
# 2.6x and 1.4x finer steps where it matters, while the clipped values barely move the cosine (> 0.998).
CLS_LOGIT_FLOOR = -30.0
BOX_LOGIT_FLOOR = -20.0
# A Conv output that only feeds its SiLU needs no range below -5: SiLU(-5) = -0.03, one step of the SiLU
# output's own 8-bit grid, and SiLU(x < -5) is closer to 0 still. Dropping the rest of the (roughly
# symmetric) negative range gives the positive values, the ones that pass, a finer step: on the shared
# checkpoint box/mc cosines +0.0006, float-vs-INT8 detections matched 95.3 -> 96.9 %, mask IoU 0.931 -> 0.937.
SILU_INPUT_FLOOR = -5.0


def image_tensors(paths: Sequence[Path], imgsz: tuple[int, int], count: int, skipped: list[Problem]) -> Iterator[tuple[Path, np.ndarray]]:
    """Up to ``count`` (path, network input) pairs of ``paths`` in order, letterboxed like inference;
    unreadable files go to ``skipped`` and are replaced by the next file."""
    for item in readable_images(paths, count, skipped):
        yield Path(item.name), preprocess(item.image, imgsz)[0]


@dataclass
class ImageTensors:
    """Network inputs from a directory of images: the tensors, the files they came from and the files
    that could not be read (with the reason)."""

    tensors: list[np.ndarray] = field(default_factory=list)
    used: list[Path] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)


def load_tensors(paths: Sequence[Path], imgsz: tuple[int, int], count: int) -> ImageTensors:
    """Read and letterbox the first ``count`` readable images of ``paths``."""
    loaded = ImageTensors()
    for path, tensor in image_tensors(paths, imgsz, count, loaded.skipped):
        loaded.used.append(path)
        loaded.tensors.append(tensor)
    return loaded


class OneTensorReader:
    """ORT CalibrationDataReader over one tensor: the calibration loop feeds images one at a time so that
    it can show progress, skip bad files and keep memory flat (ORT's histogram calibrators otherwise hold
    every intermediate tensor of every image at once)."""

    def __init__(self, name: str, tensor: np.ndarray) -> None:
        self.items = [{name: tensor}]

    def get_next(self):
        return self.items.pop() if self.items else None

    def __len__(self) -> int:
        return len(self.items)


def calibration_method(method: str):
    """ORT's CalibrationMethod for one of ``METHODS``."""
    from onnxruntime.quantization import CalibrationMethod

    try:
        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[
            method
        ]
    except KeyError:
        raise EdgesegError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})") from None


def head_floors(model13, info: ModelInfo) -> dict[str, float | None]:
    """The head tensors whose range is set apart from the calibration method: tensor -> lower bound of
    its range (None: the observed minimum). Head values keep their observed min/max (clipping the logits
    the decoder thresholds and soft-maxes hurts), except that cls logits start at ``CLS_LOGIT_FLOOR`` and
    box DFL logits at ``BOX_LOGIT_FLOOR``. A head's tensors are its output and the tensors behind it
    through layout-only ops (the NHWC Transpose): the same values as the decoder reads them."""
    chains = output_chains(model13.graph)
    floors: dict[str, float | None] = {}
    for s in info.strides:
        for kind, floor in ((CLS, CLS_LOGIT_FLOOR), (BOX, BOX_LOGIT_FLOOR), (MC, None)):
            for t in chains.get(output_name(kind, s), []):
                floors[t] = floor
    for t in chains.get(PROTOS, []):
        floors[t] = None
    return floors


def silu_input_floors(model) -> dict[str, float]:
    """``SILU_INPUT_FLOOR`` for every tensor whose only consumers are a SiLU's Sigmoid and Mul."""
    outputs = {o.name for o in model.graph.output}
    floors = {}
    for tensor, nodes in consumers(model.graph).items():
        sig = [n for n in nodes if n.op_type == "Sigmoid"]
        mul = [n for n in nodes if n.op_type == "Mul"]
        if len(nodes) == 2 and len(sig) == 1 and len(mul) == 1 and sig[0].output[0] in mul[0].input and tensor not in outputs:
            floors[tensor] = SILU_INPUT_FLOOR
    return floors


@dataclass(frozen=True)
class CalibrationPlan:
    """What ``calibrate`` computes: ``method`` over the first ``num`` readable images at ``imgsz``, the
    head ranges set apart from the method (``head_floors``), the lower bounds raised for other tensors
    (``silu_input_floors``), and how many input tensors to keep for the mixed-precision search."""

    imgsz: tuple[int, int]
    method: str = DEFAULT_METHOD
    num: int = DEFAULT_NUM
    head_ranges: Mapping[str, float | None] = field(default_factory=dict)
    floors: Mapping[str, float] = field(default_factory=dict)
    keep_tensors: int = 0


@dataclass
class Calibration:
    """Calibrated tensor ranges (an ORT calibration cache file) and what went into them."""

    cache: Path
    method: str
    used: list[Path]
    skipped: list[Problem]
    rest: list[Path]
    search_tensors: list[np.ndarray]  # the first few calibration inputs, for the mixed-precision search
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # the calibrated range per tensor


def calibrate(
    model13_path: Path, files: Sequence[Path], plan: CalibrationPlan, *, workdir: Path, show_progress: bool = True
) -> Calibration:
    """Run the float model over up to ``plan.num`` images of ``files`` and compute activation ranges.

    ``minmax`` keeps every observed value; ``percentile`` (the central 99.999 %) and ``entropy`` (KL)
    clip rare outliers, except for the tensors in ``plan.head_ranges``, which keep their observed min/max
    raised to the given floor; ``plan.floors`` raise the lower end of other tensors' ranges.
    ``Calibration.ranges`` holds the ranges used."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options: dict[str, Any] = {}
    if plan.method == "percentile":
        # asymmetric: activations are uint8 with a zero point, and SiLU outputs are almost all >= 0, so a
        # symmetric range would waste half of the codes
        options = {"percentile": PERCENTILE, "symmetric": False}
    with quiet_ort():
        calibrator = create_calibrator(
            model13_path,
            None,
            augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=calibration_method(plan.method),
            extra_options=options,
        )
    input_name = calibrator.infer_session.get_inputs()[0].name
    skipped: list[Problem] = []
    used: list[Path] = []
    kept: list[np.ndarray] = []
    bar = progress(total=plan.num, desc=f"calibrate ({plan.method})", enabled=show_progress)
    try:
        for path, tensor in image_tensors(files, plan.imgsz, plan.num, skipped):
            with quiet_ort():
                calibrator.collect_data(OneTensorReader(input_name, tensor))
            used.append(path)
            if len(kept) < plan.keep_tensors:
                kept.append(tensor)
            bar.update(1)
            bar.set_postfix(skipped=len(skipped))
    finally:
        bar.close()
    if not used:
        raise EdgesegError(f"none of the {len(skipped)} calibration image(s) could be read", Path(files[0]).parent)
    with quiet_ort():
        ranges = calibrator.compute_data()
    final = _apply_floors(ranges, _observed_ranges(calibrator, ranges), plan)
    cache = workdir / f"calibration-{plan.method}.json"
    save_tensors_data(ranges, cache)
    del calibrator
    n_seen = len(used) + len(skipped)
    return Calibration(cache, plan.method, used, skipped, list(files[n_seen:]), kept, final)


def _observed_ranges(calibrator, ranges) -> dict[str, tuple[float, float]]:
    """Per tensor, the smallest and largest value seen (a histogram calibrator keeps them apart from the
    clipped range it computes)."""
    observed: dict[str, tuple[float, float]] = {}
    collector = getattr(calibrator, "collector", None)
    for name, td in ranges.data.items():
        if collector is not None and name in collector.histogram_dict:
            h = collector.histogram_dict[name]
            observed[name] = (float(h[2]), float(h[3]))
        else:
            lo, hi = td.range_value
            observed[name] = (float(np.min(lo)), float(np.max(hi)))
    return observed


def _apply_floors(ranges, observed: Mapping[str, tuple[float, float]], plan: CalibrationPlan) -> dict[str, tuple[float, float]]:
    """Set the head ranges and the raised lower bounds in ``ranges`` (ORT's TensorsData, in place);
    returns every tensor's final (low, high)."""
    from onnxruntime.quantization.calibrate import TensorData

    for name, floor in plan.head_ranges.items():
        if name in ranges.data and name in observed:
            lo, hi = observed[name]
            lo = lo if floor is None or floor >= hi else max(lo, floor)
            ranges.data[name] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
    for name, floor in plan.floors.items():
        if name in ranges.data and name not in plan.head_ranges:
            lo, hi = ranges.data[name].range_value
            if float(np.max(hi)) > floor:
                ranges.data[name] = TensorData(
                    lowest=np.maximum(lo, np.float32(floor)).astype(np.float32), highest=np.asarray(hi, np.float32)
                )
    final = {}
    for name, td in ranges.data.items():
        lo, hi = td.range_value
        final[name] = (float(np.min(lo)), float(np.max(hi)))
    return final
