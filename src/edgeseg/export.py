"""Split-head ONNX export of Ultralytics segmentation checkpoints (needs the ``export`` extra): the ``Segment``
head of YOLOv8/v9/11/12-seg (P6 too) and the ``Segment26`` head of YOLO26-seg.

A model yaml name instead of a checkpoint (``yolov8s-seg.yaml``, ``yolo11n-seg.yaml``, resolved by Ultralytics
from its installed package; nothing is downloaded) builds that architecture with random weights
(``torch.manual_seed(0)``: repeated exports are identical), BatchNorm statistics settled on Ultralytics' two
sample images and COCO's 80 class names: for speed, size and the INT8 speed-up, which do not depend on trained
weights (float-vs-INT8 agreement does). The metadata key ``edgeseg.weights`` says how the weights were made.

The Segment head's forward is replaced, on the loaded model instance only and for the duration of the
export, by one that stops at the last conv of each branch and returns NHWC tensors:
``cls_strideS`` [1,H,W,nc], ``box_strideS`` [1,H,W,4*reg_max], ``mc_strideS`` [1,H,W,nm] per stride S,
and ``protos`` [1,imgsz/4,imgsz/4,nm]. No installed file is edited.

YOLO26-seg has two sets of head convs: one-to-one (trained to need no NMS; Ultralytics' ``nms=False``) and
one-to-many (Ultralytics' default, decoded with NMS). ``head`` picks which one the graph ends at, the
one-to-one by default; the metadata (``edgeseg.end2end``, ``edgeseg.reg_max`` 1: boxes are 4 distances, no
DFL) tells the decoder which selection to run. Its ``Proto26`` reads all three scales; the semantic branch
is training-only and dropped by Ultralytics' ``fuse``.
"""

from __future__ import annotations

import contextlib
import io
import os
import types
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .backends.base import BOX, CLS, MC, PROTOS, ModelInfo, output_name
from .errors import EdgesegError, first_line
from .onnxgraph import save_model, set_metadata
from .preprocess import normalise_imgsz

DEFAULT_OPSET = 11  # what Horizon's toolchain (hb_mapper) accepts
WEIGHTS_META = "edgeseg.weights"  # "random init from <yaml> ..." for models built from a yaml; absent for checkpoints
YAML_SUFFIXES = (".yaml", ".yml")
HEADS = ("one2one", "one2many")  # which head convs of an end-to-end (YOLO26) model the export ends at
SUPPORTED_HEADS = ("Segment", "Segment26")
SUPPORTED = "supported: Segment (YOLOv8/v9/11/12-seg, P6 too) and Segment26 (YOLO26-seg)"


def _split_head_forward(self, x):
    """Replacement Segment/Segment26.forward: raw conv outputs per branch, NHWC, in ``ModelInfo.output_names``
    order, from the head convs ``end2end`` selects (after ``fuse`` the only ones left)."""
    convs = self.one2one if self.end2end else self.one2many
    outs = []
    for i in range(self.nl):
        outs.append(convs["cls_head"][i](x[i]).permute(0, 2, 3, 1).contiguous())  # cls logits
        outs.append(convs["box_head"][i](x[i]).permute(0, 2, 3, 1).contiguous())  # DFL logits or 4 distances
        outs.append(convs["mask_head"][i](x[i]).permute(0, 2, 3, 1).contiguous())  # mask coefficients
    proto_input = x if type(self).__name__ == "Segment26" else x[0]  # Proto26 fuses P3-P5
    outs.append(self.proto(proto_input).permute(0, 2, 3, 1).contiguous())
    return tuple(outs)


@contextlib.contextmanager
def split_head(head) -> Iterator[None]:
    """Patch the head instance's forward for the duration of the block, then restore it."""
    had_own = "forward" in vars(head)
    saved = vars(head).get("forward")
    head.forward = types.MethodType(_split_head_forward, head)
    try:
        yield
    finally:
        if had_own:
            head.forward = saved
        else:
            del head.forward


def _find_segment_head(model, weights: Path):
    head = model.model[-1] if hasattr(model, "model") else None
    needed = ("cv2", "cv3", "cv4", "proto", "nl", "nc", "nm", "stride")
    if head is None or not all(hasattr(head, a) for a in needed) or type(head).__name__ == "Pose":
        kind = type(head).__name__ if head is not None else type(model).__name__
        raise EdgesegError(f"not a YOLO segmentation checkpoint (last layer is {kind}; {SUPPORTED})", weights)
    if type(head).__name__ not in SUPPORTED_HEADS:  # YOLOE, YOLOESegment26, ... (subclasses included)
        raise EdgesegError(f"head {type(head).__name__} is not supported ({SUPPORTED})", weights)
    return head


def _has_one2one(head) -> bool:
    return getattr(head, "one2one_cv2", None) is not None


def select_head(model, head: str | None, weights: Path):
    """Point an unfused model's Segment head at the one-to-one (``one2one``) or one-to-many (``one2many``)
    convs before ``fuse`` drops the other set; ``None``: one-to-one when the model has them. Returns the head."""
    seg = _find_segment_head(model, weights)
    if head is not None and head not in HEADS:
        raise EdgesegError(f"head must be one of {', '.join(HEADS)}, got {head!r}", weights)
    one2one = _has_one2one(seg) if head is None else head == "one2one"
    if one2one and not _has_one2one(seg):
        raise EdgesegError(
            f"this {type(seg).__name__} head has no one-to-one convs (only YOLO26-seg has them): use --head one2many", weights
        )
    if not one2one and seg.cv2 is None:
        raise EdgesegError("the one-to-many head was removed from this checkpoint: use --head one2one", weights)
    if _has_one2one(seg):
        seg.end2end = one2one
    return seg


def load_checkpoint(weights: str | os.PathLike, head: str | None = None):
    """Load an Ultralytics checkpoint as a fused float32 eval-mode torch model (``head``: see ``select_head``)."""
    weights = Path(weights)
    if not weights.exists():
        raise EdgesegError("no such file", weights)
    try:
        from ultralytics.nn.tasks import load_checkpoint as ul_load
    except ImportError:  # older Ultralytics
        try:
            from ultralytics.nn.tasks import attempt_load_one_weight as ul_load
        except ImportError as exc:
            raise EdgesegError("export needs Ultralytics and PyTorch: pip install 'edgeseg[export]'", weights) from exc
    try:
        with contextlib.redirect_stdout(io.StringIO()), _quiet_ultralytics():
            model, _ = ul_load(str(weights), device="cpu", fuse=False)
    except Exception as exc:
        msg = first_line(exc)
        raise EdgesegError(f"cannot load as an Ultralytics checkpoint ({msg})", weights) from None
    select_head(model, head, weights)
    with contextlib.redirect_stdout(io.StringIO()), _quiet_ultralytics():
        model = model.fuse(verbose=False)
    return model.float().eval()


def is_model_yaml(weights: str | os.PathLike) -> bool:
    """Whether ``weights`` names a model yaml (an architecture) rather than a checkpoint."""
    return str(weights).lower().endswith(YAML_SUFFIXES)


def _coco_names(nc: int) -> dict[int, str]:
    """COCO's class names from Ultralytics' installed ``coco.yaml`` when the model has 80 classes."""
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    return {int(k): str(v) for k, v in names.items()} if len(names) == nc else {i: f"class{i}" for i in range(nc)}


def build_from_yaml(name: str | os.PathLike, imgsz: int | Sequence[int], head: str | None = None) -> tuple[Any, str]:
    """A fused float32 eval-mode model of the architecture in the Ultralytics model yaml ``name``: random
    weights (``torch.manual_seed(0)``; the global RNG state is left as it was) and BatchNorm statistics
    settled on Ultralytics' two sample images at ``imgsz`` (see ``_settle_batchnorm``); also the words for
    ``edgeseg.weights``."""
    text = str(name)
    if "://" in text:
        raise EdgesegError(
            "a model yaml must be a local file or the name of one of Ultralytics' model yamls "
            "(e.g. yolov8s-seg.yaml); nothing is downloaded",
            text,
        )
    try:
        import torch
        import ultralytics
        from ultralytics.nn.tasks import SegmentationModel
    except ImportError as exc:
        raise EdgesegError("export needs Ultralytics and PyTorch: pip install 'edgeseg[export]'", text) from exc
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()), _quiet_ultralytics():
        torch.manual_seed(0)
        try:
            model = SegmentationModel(text, verbose=False)
        except FileNotFoundError:
            raise EdgesegError(
                "unknown model yaml: neither a file nor one of Ultralytics' model yamls (e.g. yolov8s-seg.yaml, yolo11n-seg.yaml)", text
            ) from None
        except Exception as exc:
            head = _yaml_head(text)
            if head is not None and head not in SUPPORTED_HEADS:  # e.g. YOLOE's, which needs text embeddings to build
                raise EdgesegError(f"head {head} is not supported ({SUPPORTED})", text) from None
            raise EdgesegError(f"cannot build a model from this yaml ({first_line(exc)})", text) from None
        model.names = _coco_names(int(model.yaml.get("nc", 80)))
        seg = select_head(model, head, Path(text))
        images = _settle_batchnorm(model, normalise_imgsz(imgsz, int(max(seg.stride.tolist()))))
        model = model.fuse(verbose=False)
    how = (
        f"random init from {Path(text).name} (Ultralytics {ultralytics.__version__}, torch.manual_seed(0)), "
        f"BatchNorm statistics from {' and '.join(images)}"
    )
    return model.float().eval(), how


def _yaml_head(name: str) -> str | None:
    """The module name of a model yaml's last layer (its head), None when the yaml cannot be read."""
    try:
        from ultralytics.nn.tasks import yaml_model_load

        return str(yaml_model_load(name)["head"][-1][2])
    except Exception:
        return None


def _settle_batchnorm(model, size: tuple[int, int]) -> list[str]:
    """Set every BatchNorm's running mean and variance to those of one training-mode pass over Ultralytics'
    sample images (letterboxed like inference); returns their names.

    Freshly built, a BatchNorm holds mean 0 / variance 1, so in eval mode it passes its input through and
    every conv shrinks the signal (PyTorch's default init keeps about a third of the variance): the heads
    then output their biases, near-constant maps whose float-vs-INT8 cosine is 1 whatever quantization
    does. With settled statistics each layer's activations are normalised as in a trained network; only
    BatchNorm buffers change, no weight."""
    import numpy as np
    import torch
    from ultralytics.utils import ASSETS

    from .preprocess import load_image, preprocess

    files = sorted(Path(ASSETS).glob("*.jpg"))
    if not files:
        raise EdgesegError("Ultralytics' sample images (bus.jpg, zidane.jpg) are missing from its installation", ASSETS)
    batch = torch.from_numpy(np.concatenate([preprocess(load_image(f), size)[0] for f in files]))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one pass, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()
    return [f.name for f in files]


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Silence Ultralytics' model summary while loading (the CLI prints its own one-line result)."""
    import logging

    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(
    weights: str | os.PathLike,
    *,
    imgsz: int | Sequence[int] = 640,
    opset: int = DEFAULT_OPSET,
    output: str | os.PathLike | None = None,
    simplify: bool = True,
    head: str | None = None,
) -> Path:
    """Export a segmentation checkpoint, or a model yaml's architecture with random weights (see the module
    docstring), to an edgeseg split-head ONNX model; returns its path. ``head``: ``one2one`` or ``one2many``
    for models that have both (YOLO26); ``None``: one-to-one where there is one.

    The file is written atomically; its metadata carries class names, strides, reg_max, end2end, imgsz, the
    layout version, the source checkpoint's (or yaml's) name and, for a yaml, ``edgeseg.weights``."""
    import onnx
    import torch

    random_init = None
    if is_model_yaml(weights):
        model, random_init = build_from_yaml(weights, imgsz, head)
    else:
        model = load_checkpoint(weights, head)
    weights = Path(weights)
    head = _find_segment_head(model, weights)
    max_stride = int(max(head.stride.tolist()))
    size = normalise_imgsz(imgsz, max_stride)
    strides = tuple(int(s) for s in head.stride.tolist())
    names = model.names if isinstance(model.names, dict) else dict(enumerate(model.names))
    info = ModelInfo(
        names={int(k): str(v) for k, v in names.items()},
        strides=strides,
        imgsz=size,
        reg_max=int(head.reg_max),
        num_masks=int(head.nm),
        source=weights.name,
        end2end=bool(head.end2end),
    )
    out = Path(output) if output else weights.with_name(f"{weights.stem}-edgeseg-{size[0]}x{size[1]}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in model.parameters():
        p.requires_grad_(False)
    dummy = torch.zeros(1, 3, *size)
    buffer = io.BytesIO()
    with split_head(head), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch >= 2.9 but is the one that still emits opset 11.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            dummy,
            buffer,
            opset_version=opset,
            input_names=["images"],
            output_names=info.output_names,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    if simplify:
        proto = _simplify(proto)
    _check_outputs(proto, info, weights)
    set_metadata(proto, {**info.to_metadata(), **({WEIGHTS_META: random_init} if random_init else {})})
    onnx.checker.check_model(proto)
    return save_model(proto, out)


def _simplify(proto):
    """Fold constants with onnxslim when available (keeps the graph small and Horizon-friendly)."""
    try:
        import onnxslim
    except ImportError:
        return proto
    try:
        return onnxslim.slim(proto)
    except Exception:  # simplification is an optimisation; the unsimplified graph is correct
        return proto


def _check_outputs(proto, info: ModelInfo, weights: Path) -> None:
    ih, iw = info.imgsz
    dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    expected = {}
    for s in info.strides:
        h, w = ih // s, iw // s
        expected[output_name(CLS, s)] = [1, h, w, info.num_classes]
        expected[output_name(BOX, s)] = [1, h, w, 4 * info.reg_max]
        expected[output_name(MC, s)] = [1, h, w, info.num_masks]
    expected[PROTOS] = [1, ih // 4, iw // 4, info.num_masks]
    if dims != expected:
        raise EdgesegError(f"export produced unexpected outputs {dims}, expected {expected}", weights)
