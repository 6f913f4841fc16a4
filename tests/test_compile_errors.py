"""Bad input in every format: one line naming the file, the layer or node, what is wrong and
what is supported; a non-zero exit; nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnmpc.compiler import CompileError, compile_model
from zoo import _randomise, to_onnx, to_tflite


def run_cli(*args) -> subprocess.CompletedProcess:
    """`nnmpc ARGS` in this process (imports are paid once), with its exit code and output."""
    import contextlib
    import io

    from nnmpc.host.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_cli_process_exits_non_zero_with_one_line(tmp_path):
    """The real process: exit status 2 and one line on stderr."""
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x08\x07garbage")
    r = subprocess.run([sys.executable, "-m", "nnmpc.host.cli", "compile", str(p), "-o",
                        str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "junk.onnx" in r.stderr
    assert not (tmp_path / "out").exists()


def assert_rejected(path: Path, out: Path, *needles: str) -> str:
    r = run_cli("compile", path, "-o", out)
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert path.name in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("err")
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh", name="hidden"),
                          keras.layers.Dense(2, name="head")])
    _randomise(m, 0)
    m.save(d / "mlp.keras")
    to_onnx(m, d / "mlp.onnx")
    to_tflite(m, d / "mlp.tflite")
    return m, d


def _onnx_model(nodes, inits, x_shape, y_shape, opset=17):
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_onnx_unknown_op_names_the_node_and_lists_the_supported(tmp_path):
    from onnx import helper

    m = _onnx_model([helper.make_node("Relu", ["x"], ["h"], name="ok"),
                     helper.make_node("Cos", ["h"], ["y"], name="my_cosine")], [], [1, 3], [1, 3])
    p = tmp_path / "cos.onnx"
    p.write_bytes(m.SerializeToString())
    line = assert_rejected(p, tmp_path / "out", "my_cosine", "'Cos' is not supported", "Gemm")


def test_onnx_unsupported_attribute(tmp_path):
    from onnx import helper, numpy_helper

    m = _onnx_model([helper.make_node("Slice", ["x", "b", "e", "ax", "st"], ["y"], name="rev")],
                    [numpy_helper.from_array(np.array([v], np.int64), k)
                     for k, v in (("b", 2), ("e", 0), ("ax", 1), ("st", -1))], [1, 3], [1, 2])
    p = tmp_path / "slice.onnx"
    p.write_bytes(m.SerializeToString())
    assert_rejected(p, tmp_path / "out", "rev", "steps")


def test_onnx_batch_axis_moved_away(tmp_path):
    """A batch-1 export may reshape the batch axis away (the time axis leads, as tf2onnx writes
    unrolled recurrent layers); ops that need a leading batch axis reject such a tensor, and a
    symbolic batch may not be reshaped away at all."""
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([4, 1, 3], np.int64), "s")
    m = _onnx_model([helper.make_node("Reshape", ["x", "s"], ["t"], name="time_first"),
                     helper.make_node("GlobalMaxPool", ["t"], ["y"], name="pool_on_time")], [shape],
                    [1, 4, 3], [4, 1, 1])
    p = tmp_path / "tf.onnx"
    p.write_bytes(m.SerializeToString())
    assert_rejected(p, tmp_path / "out", "pool_on_time", "first axis is not the batch")
    m = _onnx_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="time_first")], [shape],
                    ["N", 4, 3], [4, 1, 3])
    p = tmp_path / "dyn_batch.onnx"
    p.write_bytes(m.SerializeToString())
    assert_rejected(p, tmp_path / "out", "time_first", "changes the batch dimension")


def test_onnx_batch_one_split_squeeze_slice_compile(tmp_path):
    """The same moves with a fixed batch of 1 compile and compute the right thing."""
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([4, 1, 3], np.int64), "s"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([1], np.int64), "b1"),
             numpy_helper.from_array(np.array([3], np.int64), "e3"),
             numpy_helper.from_array(np.array([-1], np.int64), "axl")]
    m = _onnx_model([helper.make_node("Reshape", ["x", "s"], ["t"], name="time_first"),
                     helper.make_node("Split", ["t"], ["a", "b", "c", "d"], axis=0, name="rows"),
                     helper.make_node("Squeeze", ["c", "ax0"], ["c2"], name="sq"),
                     helper.make_node("Slice", ["c2", "b1", "e3", "axl"], ["y"], name="cut")],
                    inits, [1, 4, 3], [1, 2])
    p = tmp_path / "rows.onnx"
    p.write_bytes(m.SerializeToString())
    from support import build_host

    compile_model(p, tmp_path / "c", name="rows")
    host = build_host(tmp_path / "c", "rows", 12, 2)
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    y, J = host.run(x)
    assert np.array_equal(y, x.reshape(2, 4, 3)[:, 2, 1:3])
    assert np.array_equal(J[0], np.eye(12, dtype=np.float32)[[7, 8]])


def test_tflite_lone_log_is_rejected(tmp_path):
    """LOG outside the converter's softplus pattern names the op."""
    import keras

    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="relu"),
                          keras.layers.Lambda(lambda v: keras.ops.log(v + 1.0), name="logp")])
    p = tmp_path / "log.tflite"
    to_tflite(m, p)
    assert_rejected(p, tmp_path / "out", "'LOG' is not supported")


def test_onnx_dynamic_shape(tmp_path):
    from onnx import helper

    m = _onnx_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [], ["N", "T", 3],
                    ["N", "T", 3])
    p = tmp_path / "dyn.onnx"
    p.write_bytes(m.SerializeToString())
    assert_rejected(p, tmp_path / "out", "dynamic", "'T'", "fixed shapes")


def test_onnx_nan_and_inf_weights(tmp_path):
    from onnx import helper, numpy_helper

    for bad in (np.nan, np.inf):
        W = np.ones((3, 2), np.float32)
        W[1, 1] = bad
        m = _onnx_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                        [numpy_helper.from_array(W, "W")], [1, 3], [1, 2])
        p = tmp_path / f"w{bad}.onnx"
        p.write_bytes(m.SerializeToString())
        assert_rejected(p, tmp_path / "out", "NaN or Inf", "mm")


def test_onnx_old_opset(tmp_path):
    from onnx import helper

    m = _onnx_model([helper.make_node("Relu", ["x"], ["y"])], [], [1, 3], [1, 3], opset=11)
    p = tmp_path / "old.onnx"
    p.write_bytes(m.SerializeToString())
    assert_rejected(p, tmp_path / "out", "opset 11", "13 and later")


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "keras"])
def test_truncated_and_corrupt_files(mlp, tmp_path, fmt):
    _, d = mlp
    data = (d / f"mlp.{fmt}").read_bytes()
    trunc = tmp_path / f"trunc.{fmt}"
    trunc.write_bytes(data[: len(data) // 3])
    assert_rejected(trunc, tmp_path / "o1", "corrupt")
    flipped = bytearray(data)
    for i in range(40, len(flipped), 97):
        flipped[i] ^= 0xA5
    bad = tmp_path / f"flipped.{fmt}"
    bad.write_bytes(bytes(flipped))
    r = run_cli("compile", bad, "-o", tmp_path / "o2")
    # a corrupted file is rejected with one clean line, or (if the damage hit only weights)
    # compiles; it never crashes with a traceback
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 1


@pytest.mark.parametrize("fmt,ext", [("onnx", ".tflite"), ("tflite", ".onnx"), ("keras", ".h5"),
                                     ("tflite", ".keras")])
def test_extension_that_lies(mlp, tmp_path, fmt, ext):
    _, d = mlp
    p = tmp_path / f"liar{ext}"
    p.write_bytes((d / f"mlp.{fmt}").read_bytes())
    assert_rejected(p, tmp_path / "out", f"extension '{ext}'")


def test_tflite_unsupported_op_names_the_op(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d"),
                          keras.layers.Lambda(lambda v: keras.ops.sin(v), name="sine")])
    p = tmp_path / "sin.tflite"
    to_tflite(m, p)
    assert_rejected(p, tmp_path / "out", "'SIN' is not supported", "FULLY_CONNECTED")


def test_keras_unsupported_attribute_names_layer_and_attribute(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((6, 3)), keras.layers.Conv1DTranspose(
        2, 3, strides=2, output_padding=1, name="padded_up"), keras.layers.Flatten()])
    p = tmp_path / "op.keras"
    m.save(p)
    assert_rejected(p, tmp_path / "out", "padded_up", "output_padding")
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="mish", name="mishy")])
    p = tmp_path / "mish.keras"
    m.save(p)
    assert_rejected(p, tmp_path / "out", "mishy", "activation 'mish' is not supported", "gelu")


def test_keras_dynamic_time_axis(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(4), keras.layers.Dense(1)])
    p = tmp_path / "dyn.keras"
    m.save(p)
    assert_rejected(p, tmp_path / "out", "dynamic")


def test_keras_inf_weights(tmp_path, mlp):
    m, _ = mlp
    import keras

    m2 = keras.models.clone_model(m)
    w = [v.copy() for v in m.get_weights()]
    w[1][0] = np.inf
    m2.set_weights(w)
    m2.save(tmp_path / "inf.keras")
    with pytest.raises(CompileError, match="NaN or Inf"):
        compile_model(tmp_path / "inf.keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_report_prints_a_row_per_layer(mlp, tmp_path):
    _, d = mlp
    r = run_cli("compile", d / "mlp.tflite", "-o", tmp_path / "out", "--name", "net", "--report")
    assert r.returncode == 0, r.stderr
    assert "MACs" in r.stdout and "NET_ARENA_BYTES" in r.stdout
    h = (tmp_path / "out" / "net.h").read_text()
    arena = h.split("NET_ARENA_BYTES ")[1].split()[0]
    assert f"NET_ARENA_BYTES = {arena}" in r.stdout
    rows = [line for line in r.stdout.splitlines() if " dense " in line]
    assert len(rows) == 2
    assert rows[0].split()[2] == str(4 * 6)  # MACs of the hidden layer


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_random_damage_never_crashes_the_compiler(mlp, tmp_path, fmt):
    """Byte flips, truncations and splices of a valid file: each either compiles or raises one
    CompileError; never another exception, and nothing is written on error."""
    _, d = mlp
    data = (d / f"mlp.{fmt}").read_bytes()
    rng = np.random.default_rng(17)
    outcomes = {"ok": 0, "rejected": 0}
    for k in range(150):
        b = bytearray(data)
        kind = k % 3
        if kind == 0:
            for i in rng.integers(8, len(b), size=int(rng.integers(1, 8))):
                b[i] = int(rng.integers(0, 256))
        elif kind == 1:
            b = b[: int(rng.integers(8, len(b)))]
        else:
            i, j = sorted(rng.integers(8, len(b), size=2))
            b = b[:i] + bytes(rng.integers(0, 256, size=int(j - i)).astype(np.uint8)) + b[j:]
        p = tmp_path / f"m{k}.{fmt}"
        p.write_bytes(bytes(b))
        out = tmp_path / f"out{k}"
        try:
            compile_model(p, out, name="m")
            outcomes["ok"] += 1
        except CompileError as e:
            assert p.name in str(e)
            assert not out.exists()
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 0
