"""export/attention.py on hand-built graphs: the rewrite to 3D Attention computes the same, and anything off the
exporter's pattern is left alone."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bertcli.export.attention import attention_on_hidden_states  # noqa: E402

HEADS, WIDTH = 4, 8
HIDDEN = HEADS * WIDTH


def heads_graph(share_query: bool = False) -> onnx.ModelProto:
    """x (batch, length, hidden) -> q/k/v projections -> reshape to heads -> transpose -> Attention(keep4) ->
    transpose -> reshape -> y, as torch's exporter writes SDPA at opset 23; `share_query` also outputs the query's
    transposed heads, so that transpose must stay."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32), f"w{p}") for p in "qkv"]
    shape = numpy_helper.from_array(np.array([0, 0, HEADS, WIDTH], np.int64), "to_heads")
    merged = numpy_helper.from_array(np.array([0, 0, HIDDEN], np.int64), "to_hidden")
    nodes = []
    for p in "qkv":
        nodes += [
            helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}_flat"]),
            helper.make_node("Reshape", [f"{p}_flat", "to_heads"], [f"{p}_split"]),
            helper.make_node("Transpose", [f"{p}_split"], [f"{p}_heads"], perm=[0, 2, 1, 3]),
        ]
    nodes += [
        helper.make_node("Attention", ["q_heads", "k_heads", "v_heads", "keep4"], ["att"], scale=0.3),
        helper.make_node("Transpose", ["att"], ["att_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["att_t", "to_hidden"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", HIDDEN])]
    if share_query:
        outputs.append(helper.make_tensor_value_info("q_heads", TensorProto.FLOAT, ["b", HEADS, "s", WIDTH]))
    graph = helper.make_graph(
        nodes,
        "heads",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", HIDDEN]),
            helper.make_tensor_value_info("keep4", TensorProto.BOOL, ["b", 1, "s", "s"]),
        ],
        outputs,
        [*weights, shape, merged],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], feeds)[0]


def test_the_rewrite_reads_hidden_states_directly_and_computes_the_same():
    rng = np.random.default_rng(1)
    keep = np.ones((3, 1, 7, 7), bool)
    keep[1, :, :, 4:] = False  # padding: the mask reaches the rewritten node unchanged
    feeds = {"x": rng.normal(size=(3, 7, HIDDEN)).astype(np.float32), "keep4": keep}
    model = heads_graph()
    before = run(model, feeds)
    assert attention_on_hidden_states(model, HEADS) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "Transpose" not in ops and "Reshape" not in ops and ops.count("Attention") == 1
    node = next(n for n in model.graph.node if n.op_type == "Attention")
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attributes["q_num_heads"] == attributes["kv_num_heads"] == HEADS
    assert attributes["scale"] == pytest.approx(0.3)
    assert {i.name for i in model.graph.initializer} == {"wq", "wk", "wv"}  # the shape constants went too
    np.testing.assert_array_equal(run(model, feeds), before)


def test_a_transposed_tensor_read_elsewhere_leaves_the_node_as_exported():
    model = heads_graph(share_query=True)
    before = model.SerializeToString()
    assert attention_on_hidden_states(model, HEADS) == 0
    assert model.SerializeToString() == before
