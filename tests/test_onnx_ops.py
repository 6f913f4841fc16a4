"""ONNX op gaps closed: small graphs built with onnx.helper, compiled into one host program,
compared with onnxruntime (outputs) and with central differences of onnxruntime (Jacobians)."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_batch import build_batch
from support import rel_err

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(11)


def _model(nodes, in_shape, out_shape, inits=None, opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _c(*shape):
    return RNG.normal(0, 1, shape).astype(np.float32)


CASES = {
    # a leading axis of fixed size other than 1 is data, not the batch
    "softmax_axis0_nobatch": (_model([helper.make_node("Softmax", ["x"], ["y"], axis=0)],
                                     [3, 4], [3, 4]), (3, 4)),
    "logsoftmax_axis1": (_model([helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)],
                                [1, 3, 5], [1, 3, 5]), (1, 3, 5)),
    "clip_both": (_model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [1, 7], [1, 7],
                         {"lo": np.float32(-0.4), "hi": np.float32(0.9)}), (1, 7)),
    "clip_min_only": (_model([helper.make_node("Clip", ["x", "lo"], ["y"])], [1, 7], [1, 7],
                             {"lo": np.float32(-0.3)}), (1, 7)),
    "clip_max_only": (_model([helper.make_node("Clip", ["x", "", "hi"], ["y"])], [1, 7], [1, 7],
                             {"hi": np.float32(0.2)}), (1, 7)),
    "matmul_vector": (_model([helper.make_node("MatMul", ["x", "v"], ["y"])], [1, 3, 4], [1, 3],
                             {"v": _c(4)}), (1, 3, 4)),
    "matmul_input_right": (_model([helper.make_node("MatMul", ["A", "x"], ["y"])], [1, 4, 3],
                                  [1, 2, 3], {"A": _c(2, 4)}), (1, 4, 3)),
    "matmul_batched_weights": (_model([helper.make_node("MatMul", ["x", "B"], ["y"])], [2, 3, 4],
                                      [2, 3, 5], {"B": _c(2, 4, 5)}), (2, 3, 4)),
    "transpose_5d": (_model([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 4, 2, 1, 3])],
                            [1, 2, 3, 2, 4], [1, 4, 3, 2, 2]), (1, 2, 3, 2, 4)),
    "transpose_6d": (_model([helper.make_node("Transpose", ["x"], ["y"], perm=[5, 3, 1, 0, 4, 2])],
                            [2, 3, 2, 2, 3, 2], [2, 2, 3, 2, 3, 2]), (2, 3, 2, 2, 3, 2)),
    "pad_value": (_model([helper.make_node("Pad", ["x", "p", "v"], ["y"])], [1, 2, 3], [1, 3, 6],
                         {"p": np.array([0, 1, 2, 0, 0, 1], np.int64), "v": np.float32(0.75)}),
                  (1, 2, 3)),
    "flatten_negative_axis": (_model([helper.make_node("Flatten", ["x"], ["y"], axis=-1)],
                                     [1, 2, 3, 4], [6, 4]), (1, 2, 3, 4)),
    "flatten_axis2": (_model([helper.make_node("Flatten", ["x"], ["z"], axis=2),
                              helper.make_node("Tanh", ["z"], ["y"])], [1, 2, 3, 4], [2, 12]),
                      (1, 2, 3, 4)),
    "abs_sqrt_log": (_model([helper.make_node("Abs", ["x"], ["a"]),
                             helper.make_node("Add", ["a", "one"], ["b"]),
                             helper.make_node("Sqrt", ["b"], ["s"]),
                             helper.make_node("Log", ["b"], ["l"]),
                             helper.make_node("Mul", ["s", "l"], ["y"])], [1, 6], [1, 6],
                            {"one": np.float32(0.3)}), (1, 6)),
    "prelu_channels": (_model([helper.make_node("PRelu", ["x", "s"], ["y"])], [1, 3, 2, 2],
                              [1, 3, 2, 2], {"s": _c(3, 1, 1)}), (1, 3, 2, 2)),
    "hardswish": (_model([helper.make_node("HardSwish", ["x"], ["y"])], [1, 9], [1, 9]), (1, 9)),
    "reduce_mean": (_model([helper.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=0)],
                           [1, 3, 4, 2], [1, 4], {"ax": np.array([1, 3], np.int64)}, opset=18),
                    (1, 3, 4, 2)),
    "resize_linear": (_model([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear")],
                             [1, 2, 3, 3], [1, 2, 6, 6],
                             {"sc": np.array([1, 1, 2, 2], np.float32)}), (1, 2, 3, 3)),
    "resize_nearest_down": (_model([helper.make_node("Resize", ["x", "", "sc"], ["y"],
                                                     mode="nearest")],
                                   [1, 1, 4, 6], [1, 1, 2, 3],
                                   {"sc": np.array([1, 1, 0.5, 0.5], np.float32)}), (1, 1, 4, 6)),
    "convtranspose_groups": (_model([helper.make_node("ConvTranspose", ["x", "W", "b"], ["y"],
                                                      strides=[2, 1], pads=[1, 0, 0, 1], group=2,
                                                      dilations=[1, 2])],
                                    [1, 4, 3, 3], [1, 6, 5, 5],
                                    {"W": _c(4, 3, 3, 3), "b": _c(6)}), (1, 4, 3, 3)),
    "convtranspose_1d": (_model([helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[3],
                                                  output_padding=[1])],
                                [1, 2, 4], [1, 3, 13], {"W": _c(2, 3, 3)}), (1, 2, 4)),
    "avgpool_dilated_pads": (_model([helper.make_node("AveragePool", ["x"], ["y"],
                                                      kernel_shape=[2, 2], dilations=[2, 2],
                                                      pads=[1, 1, 1, 1], strides=[2, 1])],
                                    [1, 2, 5, 5], [1, 2, 3, 5], opset=19), (1, 2, 5, 5)),
    "maxpool_dilated_ceil": (_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                                      dilations=[2, 1], strides=[2, 2],
                                                      ceil_mode=1)],
                                    [1, 2, 6, 5], [1, 2, 2, 3]), (1, 2, 6, 5)),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from nnmpc.compiler import load_model

    root = tmp_path_factory.mktemp("ops")
    graphs = []
    for name, (m, _) in CASES.items():
        onnx.checker.check_model(m)
        (root / f"{name}.onnx").write_bytes(m.SerializeToString())
        graphs.append((name, load_model(root / f"{name}.onnx")))
    return root, build_batch(graphs, root / "c")


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_onnxruntime_with_its_jacobian(built, name):
    root, batch = built
    shape = CASES[name][1]
    sess = ort.InferenceSession(str(root / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    n = int(np.prod(shape))

    def ref(v):
        return np.array([sess.run(None, {"x": r.reshape(shape).astype(np.float32)})[0].reshape(-1)
                         for r in v])

    x = np.random.default_rng(5).uniform(-2, 2, (5, n)).astype(np.float32)
    y_c, J_c = batch.run(name, x)
    assert rel_err(y_c, ref(x)) <= 1e-5, name
    h = 1e-3
    x0 = x[0].astype(np.float64)
    pts = np.array([x0 + h * e for e in np.eye(n)] + [x0 - h * e for e in np.eye(n)])
    y = ref(pts.astype(np.float32)).astype(np.float64)
    J_fd = ((y[:n] - y[n:]) / (2 * h)).T
    assert np.abs(J_c[0] - J_fd).max() <= 5e-3 * (1 + np.abs(J_fd).max()), name
    assert np.abs(J_fd).max() > 1e-2


def test_dropout_in_training_mode_is_refused(tmp_path):
    from nnmpc.compiler import CompileError, load_model

    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")], [1, 4], [1, 4],
               {"r": np.float32(0.5), "t": np.array(True)})
    (tmp_path / "d.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(CompileError, match="drop.*training_mode=True"):
        load_model(tmp_path / "d.onnx")
    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")], [1, 4], [1, 4],
               {"r": np.float32(0.5), "t": np.array(False)})
    (tmp_path / "e.onnx").write_bytes(m.SerializeToString())
    assert load_model(tmp_path / "e.onnx").input_size == 4


def test_compiler_doc_lists_the_front_ends_onnx_table():
    from pathlib import Path

    from nnmpc.compiler.frontends.onnx import OPS, SUPPORTED, ops_table

    doc = (Path(__file__).resolve().parent.parent / "docs" / "COMPILER.md").read_text()
    begin, end = "<!-- onnx-ops:begin -->\n", "\n<!-- onnx-ops:end -->"
    assert doc[doc.index(begin) + len(begin):doc.index(end)] == ops_table()
    assert sorted(OPS) == SUPPORTED and len(ops_table().splitlines()) == len(OPS) + 2


def test_a_huge_constant_expand_is_refused_before_it_is_built(tmp_path):
    """Constant folding checks the size first: an Expand of weights to 10^12 values is one
    clear error naming the node, in well under a second, not tens of GB of numpy."""
    import time

    from nnmpc.compiler import CompileError, load_model

    m = _model([helper.make_node("Expand", ["w", "shape"], ["big"], name="blow_up"),
                helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
                helper.make_node("Add", ["x", "s"], ["y"])], [1, 3], [1, 3],
               {"w": np.ones((1, 1), np.float32),
                "shape": np.array([1000000, 1000000], np.int64)})
    path = tmp_path / "big.onnx"
    path.write_bytes(m.SerializeToString())
    t0 = time.monotonic()
    with pytest.raises(CompileError, match=r"blow_up.*Expand makes a constant of 1000000000000"):
        load_model(path)
    assert time.monotonic() - t0 < 5.0
