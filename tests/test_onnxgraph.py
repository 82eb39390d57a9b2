"""The one ONNX-graph helper and backend choice, on tiny graphs built here; no shared data needed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.backends import open_backend
from edgeseg.errors import EdgesegError
from edgeseg.onnxgraph import (
    consumers,
    initializer_array,
    is_quantized,
    layout_chain,
    load_model,
    metadata,
    output_chains,
    producers,
    save_model,
    set_metadata,
    topological_sort,
)


def _graph_model(nodes, outputs=("y",), out_type=TensorProto.FLOAT, initializers=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(o, out_type, [1, 4]) for o in outputs],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _conv_then_layout():
    """x -> Relu(r) -> Identity(i) -> Transpose(t) -> Reshape(y); Reshape's shape is an initializer."""
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["i"], name="ident"),
        helper.make_node("Transpose", ["i"], ["t"], name="tr", perm=[0, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["y"], name="rs"),
    ]
    return _graph_model(nodes, initializers=[shape])


def test_layout_chain_walks_back_through_every_layout_op_to_the_computing_node():
    model = _conv_then_layout()
    assert layout_chain(model.graph, "y") == ["y", "t", "i", "r"]
    assert output_chains(model.graph) == {"y": ["y", "t", "i", "r"]}
    assert producers(model.graph)["r"].op_type == "Relu"
    assert [n.name for n in consumers(model.graph)["r"]] == ["ident"] and consumers(model.graph)["y"] == []


def test_topological_sort_restores_a_valid_order_and_rejects_cycles():
    model = _conv_then_layout()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    topological_sort(model.graph)
    assert [n.name for n in model.graph.node] == ["relu", "ident", "tr", "rs"]
    onnx.checker.check_model(model)
    cyclic = _graph_model([helper.make_node("Add", ["x", "z"], ["y"]), helper.make_node("Relu", ["y"], ["z"])])
    with pytest.raises(EdgesegError, match="cycle or a missing input"):
        topological_sort(cyclic.graph)


def test_initializer_array_reads_initializers_and_constants():
    model = _conv_then_layout()
    model.graph.node.append(helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32([2.5]))))
    np.testing.assert_array_equal(initializer_array(model, "shape"), [1, 4])
    np.testing.assert_array_equal(initializer_array(model, "c"), [2.5])
    assert initializer_array(model, "absent") is None


def test_is_quantized_answers_from_the_graph_never_the_file_name(tmp_path):
    plain = _conv_then_layout()
    save_model(plain, tmp_path / "named-int8.onnx")
    assert not is_quantized(load_model(tmp_path / "named-int8.onnx"))
    scale = numpy_helper.from_array(np.float32(0.1), "s")
    zp = numpy_helper.from_array(np.uint8(128), "z")
    qdq = _graph_model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], out_type=TensorProto.UINT8, initializers=[scale, zp])
    save_model(qdq, tmp_path / "plain.onnx")
    assert is_quantized(load_model(tmp_path / "plain.onnx"))
    int8_out = _graph_model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT8)], out_type=TensorProto.INT8)
    assert is_quantized(int8_out)


def test_metadata_round_trip_and_atomic_save(tmp_path):
    model = _conv_then_layout()
    set_metadata(model, {"edgeseg.a": "1", "edgeseg.b": "[2]"})
    path = save_model(model, tmp_path / "sub" / "m.onnx")
    again = load_model(path)
    assert metadata(again) == {"edgeseg.a": "1", "edgeseg.b": "[2]"} and again.producer_name == "edgeseg"
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.onnx", None, "no such file"),
        ("junk.onnx", b"\x00\x01 definitely not protobuf \xff" * 8, "not a valid ONNX file (DecodeError)"),
    ],
)
def test_load_model_errors_are_one_line(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EdgesegError) as err:
        load_model(path)
    assert str(err.value) == f"{path}: {reason}"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("weights.pt", "is a PyTorch checkpoint, not an edgeseg model; export it first: edgeseg export {path}"),
        (
            "model.bin",
            "is a Horizon .bin model: it runs on an RDK board, and the board runtime cannot be imported here "
            "(hbm_runtime comes with RDK OS >= 3.5, hobot_dnn with the board image; "
            'or pip install "edgeseg[rdk]" on the board for hobot-dnn-rdkx5)',
        ),
        ("missing.onnx", "no such file"),
        ("a directory", "is a directory, expected an .onnx model"),
    ],
)
def test_open_backend_picks_by_file_and_explains_what_it_cannot_run(tmp_path, name, reason):
    path = tmp_path / name
    if name == "a directory":
        path.mkdir()
    elif name != "missing.onnx":
        path.write_bytes(b"PK\x03\x04 something")
    with pytest.raises(EdgesegError) as err:
        open_backend(path)
    assert str(err.value) == f"{path}: {reason.format(path=path)}"


def test_open_backend_runs_an_onnx_model(default_model):
    backend = open_backend(default_model, threads=1)
    tensor = np.zeros((1, 3, *backend.info.imgsz), np.float32)
    outputs = backend.run(tensor)
    assert sorted(outputs) == sorted(backend.info.output_names)
    assert outputs["protos"].shape == (1, backend.info.imgsz[0] // 4, backend.info.imgsz[1] // 4, backend.info.num_masks)
