"""Split-head export: outputs, metadata, and numerical equality with the checkpoint's own inference."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from edgeseg.backends import OnnxRuntimeBackend, read_model_info  # noqa: E402
from edgeseg.decode import dfl_dist2bbox  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.export import _find_segment_head, export_onnx, load_checkpoint, split_head  # noqa: E402

pytestmark = pytest.mark.slow  # exports checkpoints with torch


def _shapes(path):
    m = onnx.load(str(path))
    return {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}, m


def test_export_640_has_ten_named_nhwc_outputs(model_640):
    shapes, m = _shapes(model_640)
    assert shapes == {
        "cls_stride8": [1, 80, 80, 80],
        "box_stride8": [1, 80, 80, 64],
        "mc_stride8": [1, 80, 80, 32],
        "cls_stride16": [1, 40, 40, 80],
        "box_stride16": [1, 40, 40, 64],
        "mc_stride16": [1, 40, 40, 32],
        "cls_stride32": [1, 20, 20, 80],
        "box_stride32": [1, 20, 20, 64],
        "mc_stride32": [1, 20, 20, 32],
        "protos": [1, 160, 160, 32],
    }
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 640, 640]
    assert m.opset_import[0].version == 11
    # The graph ends at the convs: nothing but a layout Transpose after the last Conv of each head
    # (the proto branch's last Conv keeps its SiLU, x * sigmoid(x), as in Ultralytics' Proto module).
    producers = {o: n for n in m.graph.node for o in n.output}
    for name in shapes:
        node = producers[name]
        assert node.op_type == "Transpose", (name, node.op_type)
        before = producers[node.input[0]]
        if name == "protos":
            assert before.op_type == "Mul" and "Conv" in {producers[i].op_type for i in before.input}
        else:
            assert before.op_type == "Conv", name
    info = read_model_info(model_640)
    assert info.num_classes == 80 and info.names[0] == "person" and info.names[55] == "cake"
    assert info.strides == (8, 16, 32) and info.reg_max == 16 and info.imgsz == (640, 640)
    assert info.source == "yolov8n-seg-coco128.pt"
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["edgeseg.strides"]) == [8, 16, 32]


def _dense_from_split(outputs, info):
    """All anchors decoded like Ultralytics' eval head: xywh boxes, sigmoid scores, mask coefficients."""
    rows = []
    for s in info.strides:
        cls = outputs[f"cls_stride{s}"]
        w = cls.shape[2]
        box = outputs[f"box_stride{s}"].reshape(-1, 4 * info.reg_max)
        xyxy = dfl_dist2bbox(box, np.arange(box.shape[0]), w, s, info.reg_max)
        xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
        prob = 1 / (1 + np.exp(-cls.reshape(-1, info.num_classes)))
        rows.append(np.concatenate([xywh, prob, outputs[f"mc_stride{s}"].reshape(-1, info.num_masks)], 1))
    return np.concatenate(rows).T[None]


def _assert_matches_checkpoint(weights, onnx_path, imgsz):
    backend = OnnxRuntimeBackend(onnx_path)
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, *imgsz), dtype=np.float32)
    ours = backend.run(x)
    model = load_checkpoint(weights)
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    (y, protos) = out[0] if isinstance(out[0], tuple) else out
    np.testing.assert_allclose(_dense_from_split(ours, backend.info), y.numpy(), rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(ours["protos"], protos.permute(0, 2, 3, 1).numpy(), rtol=1e-3, atol=1e-3)


def test_export_matches_checkpoint_inference_at_other_size(checkpoint, tmp_path):
    path = export_onnx(checkpoint, imgsz=(320, 416), output=tmp_path / "v8-320x416.onnx")
    shapes, _ = _shapes(path)
    assert shapes["cls_stride8"] == [1, 40, 52, 80] and shapes["protos"] == [1, 80, 104, 32]
    _assert_matches_checkpoint(checkpoint, path, (320, 416))


@pytest.fixture(scope="module")
def yolo11_three_classes(tmp_path_factory):
    """A YOLO11n-seg with 3 custom classes, saved as an Ultralytics-style checkpoint (random weights)."""
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(0)
    model = SegmentationModel("yolo11n-seg.yaml", nc=3, verbose=False).eval()
    model.names = {0: "apple", 1: "pear", 2: "plum"}
    path = tmp_path_factory.mktemp("y11") / "yolo11n-seg-3cls.pt"
    torch.save({"model": model, "train_args": {}}, path)
    return path


def test_export_yolo11_custom_classes(yolo11_three_classes, tmp_path):
    path = export_onnx(yolo11_three_classes, imgsz=320, opset=13, output=tmp_path / "y11.onnx")
    shapes, m = _shapes(path)
    assert shapes["cls_stride32"] == [1, 10, 10, 3] and shapes["box_stride16"] == [1, 20, 20, 64]
    assert m.opset_import[0].version == 13
    assert read_model_info(path).names == {0: "apple", 1: "pear", 2: "plum"}
    _assert_matches_checkpoint(yolo11_three_classes, path, (320, 320))


def test_head_forward_is_restored_after_patch(checkpoint):
    model = load_checkpoint(checkpoint)
    head = _find_segment_head(model, checkpoint)
    with split_head(head):
        assert "forward" in vars(head)
    assert "forward" not in vars(head)
    out = model(torch.zeros(1, 3, 64, 64))
    assert isinstance(out, tuple) and out[0][0].shape[1] == 4 + 80 + 32  # Ultralytics' own eval output again


def test_export_errors_name_the_file(tmp_path, checkpoint):
    with pytest.raises(EdgesegError, match="missing.pt: no such file"):
        export_onnx(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgesegError, match="junk.pt: cannot load"):
        export_onnx(junk)
    from ultralytics.nn.tasks import DetectionModel

    det = tmp_path / "detect.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=2, verbose=False), "train_args": {}}, det)
    with pytest.raises(EdgesegError, match="detect.pt: not a YOLO segmentation checkpoint"):
        export_onnx(det)
    with pytest.raises(EdgesegError, match="multiples of 32"):
        export_onnx(checkpoint, imgsz=300)
