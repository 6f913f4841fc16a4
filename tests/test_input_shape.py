"""``input_shapes`` / ``--input-shape``: models whose inputs have a dynamic dimension (a ``None``
time axis in Keras, a symbolic ONNX dimension) compiled with it fixed, compared with Keras,
PyTorch and onnxruntime (outputs and Jacobians); and the errors (a dim left dynamic, a given
dim contradicting the model, an unknown input name, bad command-line syntax)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from nnmpc.compiler import CompileError, compile_model, load_model
from onnx_batch import build_batch
from support import rel_err, tape_jacobians

T_GRU, T_CONV, T_LSTM, T_TORCH = 10, 12, 6, 8


def cli(*args) -> tuple[int, str, str]:
    from nnmpc.host.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _randomise(model, seed: int, scale: float = 0.5) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, scale, np.shape(w)).astype(np.float32)
                       for w in model.get_weights()])


def _tape(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and Jacobians (flattened, row-major) of a Keras model at the batch x."""
    import tensorflow as tf

    y = model(tf.constant(x))
    (J,) = tape_jacobians(lambda xt: model(xt[0]), [x])
    n = len(x)
    return y.numpy().reshape(n, -1), J.reshape(n, int(np.prod(y.shape[1:])), -1)


class _TorchGRU:
    """A batch_first GRU with a linear head on every step (PyTorch), built lazily."""

    def __new__(cls):
        import torch

        class M(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.gru = torch.nn.GRU(3, 5, batch_first=True)
                self.head = torch.nn.Linear(5, 2)

            def forward(self, x):
                return self.head(self.gru(x)[0])

        torch.manual_seed(0)
        return M().eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The models, saved with dynamic dims, loaded with them fixed and built into one program."""
    import keras

    root = tmp_path_factory.mktemp("dyn")
    keras.utils.set_random_seed(0)
    m = {}
    gru = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4, name="gru"),
                            keras.layers.Dense(2, activation="tanh")])
    _randomise(gru, 1)
    gru.save(root / "gru.keras")
    m["gru"] = (gru, root / "gru.keras", {"input": (T_GRU, 3)})
    inp = keras.Input((None, 2), name="seq")
    y = keras.layers.Conv1D(4, 3, padding="causal", activation="tanh", name="c1")(inp)
    y = keras.layers.Conv1D(3, 2, dilation_rate=2, name="c2")(y)
    conv = keras.Model(inp, y)
    _randomise(conv, 2)
    conv.save(root / "conv.keras")
    m["conv"] = (conv, root / "conv.keras", (T_CONV, 2))
    graphs = [(k, load_model(p, s)) for k, (_, p, s) in m.items()]
    torch = pytest.importorskip("torch")
    net = _TorchGRU()
    for k, axes in (("torch_seq", {1: "seq"}), ("torch_batch_seq", {0: "batch", 1: "seq"})):
        path = root / f"{k}.onnx"
        torch.onnx.export(net, (torch.zeros(1, 5, 3),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes})
        m[k] = (net, path, {"x": (T_TORCH, 3)})
        graphs.append((k, load_model(path, {"x": (T_TORCH, 3)})))
    batch = build_batch(graphs, root / "c")
    return m, dict(graphs), batch, root


def test_keras_gru_over_a_none_time_axis_fixed_to_ten_steps(models, summary):
    m, graphs, batch, _ = models
    model = m["gru"][0]
    g = graphs["gru"]
    assert g.tensors[g.inputs[0]].shape == (T_GRU, 3) and g.window == T_GRU
    assert g.step_graph is not None  # the streaming form too
    x = np.random.default_rng(1).uniform(-1.5, 1.5, (40, T_GRU, 3)).astype(np.float32)
    y_c, J_c = batch.run("gru", x.reshape(40, -1))
    y_k, J_k = _tape(model, x)
    summary(f"input_shape gru.keras T={T_GRU}: y {rel_err(y_c, y_k):.1e}, "
            f"J {rel_err(J_c, J_k):.1e}")
    assert rel_err(y_c, y_k) <= 1e-5
    assert rel_err(J_c, J_k) <= 1e-4
    assert np.abs(J_k).max() > 1e-2


def test_keras_conv1d_over_a_none_time_axis(models, summary):
    m, graphs, batch, _ = models
    model = m["conv"][0]
    g = graphs["conv"]
    assert g.tensors[g.inputs[0]].shape == (T_CONV, 2)
    assert g.tensors[g.outputs[0]].shape == (T_CONV - 2, 3)
    x = np.random.default_rng(2).uniform(-1.5, 1.5, (30, T_CONV, 2)).astype(np.float32)
    y_c, J_c = batch.run("conv", x.reshape(30, -1))
    y_k, J_k = _tape(model, x)
    summary(f"input_shape conv.keras T={T_CONV}: y {rel_err(y_c, y_k):.1e}, "
            f"J {rel_err(J_c, J_k):.1e}")
    assert rel_err(y_c, y_k) <= 1e-5
    assert rel_err(J_c, J_k) <= 1e-4


@pytest.mark.parametrize("key", ["torch_seq", "torch_batch_seq"])
def test_pytorch_gru_with_a_dynamic_sequence_axis(models, key, summary):
    import onnxruntime as ort
    import torch

    m, graphs, batch, _ = models
    net, path, _ = m[key]
    g = graphs[key]
    assert g.tensors[g.inputs[0]].shape == (T_TORCH, 3)
    x = np.random.default_rng(3).uniform(-1.5, 1.5, (6, T_TORCH * 3)).astype(np.float32)
    y_c, J_c = batch.run(key, x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y_o = np.array([sess.run(None, {"x": r.reshape(1, T_TORCH, 3)})[0].ravel() for r in x])
    f = lambda v: net(v.reshape(1, T_TORCH, 3)).reshape(-1)  # noqa: E731
    J_t = np.array([torch.autograd.functional.jacobian(f, torch.tensor(r)).numpy() for r in x])
    summary(f"input_shape {key}.onnx T={T_TORCH}: y vs ORT {rel_err(y_c, y_o):.1e}, "
            f"J vs autograd {rel_err(J_c, J_t):.1e}")
    assert rel_err(y_c, y_o) <= 1e-5
    assert rel_err(J_c, J_t) <= 1e-4
    assert np.abs(J_t).max() > 1e-2


def test_legacy_keras2_h5_lstm_over_a_none_time_axis(tmp_path, summary):
    tfk = pytest.importorskip("tf_keras")
    pytest.importorskip("h5py")
    import tensorflow as tf

    from support import build_host

    L = tfk.layers
    model = tfk.Sequential([L.LSTM(4, batch_input_shape=(None, None, 3), name="lstm"),
                            L.Dense(2, name="head")])
    _randomise(model, 4)
    p = tmp_path / "lstm.h5"
    model.save(p)
    with pytest.raises(CompileError, match=r"--input-shape input=d0,3"):
        load_model(p)
    compile_model(p, tmp_path / "out", name="lstm", input_shapes=(T_LSTM, 3))
    host = build_host(tmp_path / "out", "lstm", T_LSTM * 3, 2)
    x = np.random.default_rng(5).uniform(-1.5, 1.5, (20, T_LSTM, 3)).astype(np.float32)
    y_c, J_c = host.run(x.reshape(20, -1))
    y = model(tf.constant(x))
    (J_k,) = tape_jacobians(lambda xt: model(xt[0]), [x])
    summary(f"input_shape lstm.h5 (Keras 2) T={T_LSTM}: y {rel_err(y_c, y.numpy()):.1e}, "
            f"J {rel_err(J_c, J_k):.1e}")
    assert rel_err(y_c, y.numpy()) <= 1e-5
    assert rel_err(J_c, J_k) <= 1e-4


def test_cli_input_shape_writes_what_the_library_writes(models, tmp_path):
    m, _, _, _ = models
    path = m["gru"][1]
    compile_model(path, tmp_path / "lib", name="g", input_shapes={"input": (T_GRU, 3)})
    for flag in (f"input={T_GRU},3", f"{T_GRU},3"):
        out = tmp_path / flag.replace("=", "_").replace(",", "_")
        code, stdout, err = cli("compile", path, "-o", out, "--name", "g", "--input-shape", flag)
        assert code == 0, err
        for f in (tmp_path / "lib").iterdir():
            assert (out / f.name).read_text() == f.read_text(), f.name
    code, _, err = cli("compile", m["torch_seq"][1], "-o", tmp_path / "t", "--input-shape",
                       f"x={T_TORCH},3")
    assert code == 0, err


def test_help_documents_the_flag():
    code, out, _ = cli("compile", "--help")
    assert code == 0 and "--input-shape NAME=d1,d2,..." in out


# ---- errors ------------------------------------------------------------------------------

def test_a_dynamic_dim_left_unfixed_says_how_to_fix_it(models):
    m, _, _, root = models
    with pytest.raises(CompileError) as e:
        load_model(m["gru"][1])
    msg = str(e.value)
    assert "input 'input'" in msg and "dynamic axis 0" in msg and "(None, 3)" in msg
    assert "--input-shape input=d0,3" in msg and "\n" not in msg
    with pytest.raises(CompileError) as e:
        load_model(m["torch_batch_seq"][1])
    msg = str(e.value)
    assert "input 'x'" in msg and "dynamic axis 0 ('seq')" in msg
    assert "--input-shape x=seq,3" in msg
    code, _, err = cli("compile", m["conv"][1], "-o", root / "never")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--input-shape seq=d0,2" in err
    assert not (root / "never").exists()


def test_a_given_dim_contradicting_the_model_names_input_axis_and_values(models):
    m, _, _, _ = models
    with pytest.raises(CompileError) as e:
        load_model(m["gru"][1], {"input": (T_GRU, 4)})
    msg = str(e.value)
    assert "input 'input'" in msg and "axis 1" in msg and "fixes it to 3" in msg
    assert "says 4" in msg
    with pytest.raises(CompileError, match=r"input 'x'.*axis 1.*fixes it to 3.*says 5"):
        load_model(m["torch_seq"][1], {"x": (T_TORCH, 5)})
    with pytest.raises(CompileError, match=r"has 1 axis, the model's input \(None, 3\) has 2"):
        load_model(m["gru"][1], (T_GRU,))


def test_a_shape_for_an_input_that_does_not_exist_names_the_inputs(models, tmp_path):
    m, _, _, _ = models
    with pytest.raises(CompileError, match=r"input 'seqq'.*its inputs: 'seq'"):
        load_model(m["conv"][1], {"seqq": (T_CONV, 2)})
    with pytest.raises(CompileError, match=r"input 'input'.*its inputs: 'x'"):
        load_model(m["torch_seq"][1], {"input": (T_TORCH, 3)})
    # two inputs: an unnamed shape is refused, naming both
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "T", 3]),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "T", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 3])])
    p = tmp_path / "two.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
                  .SerializeToString())
    with pytest.raises(CompileError, match=r"2 inputs \('a', 'b'\)"):
        load_model(p, (4, 3))
    g2 = load_model(p, {"a": (4, 3), "b": (4, 3)})
    assert [g2.tensors[i].shape for i in g2.inputs] == [(4, 3), (4, 3)]
    with pytest.raises(CompileError, match=r"input 'b'.*dynamic axis 0 \('T'\)"):
        load_model(p, {"a": (4, 3)})


def test_bad_values_are_refused_before_reading(tmp_path):
    missing = tmp_path / "none.keras"
    for bad in ((0, 3), (2.5, 3), "20,3", {"x": ()}, {"x": (True, 3)}):
        with pytest.raises(CompileError, match="positive integers|is empty"):
            load_model(missing, bad)


@pytest.mark.parametrize("flag", ["input=10,x", "=10,3", "10;3", "input=", "input=10,,3",
                                  "input=-1,3", "input=0,3"])
def test_bad_cli_syntax_is_one_line_naming_the_value(models, tmp_path, flag):
    m, _, _, _ = models
    out = tmp_path / "out"
    code, stdout, err = cli("compile", m["gru"][1], "-o", out, "--input-shape", flag)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"--input-shape '{flag}'" in lines[0] and "Traceback" not in err
    assert not out.exists()


def test_cli_repeated_and_mixed_flags(models, tmp_path):
    m, _, _, _ = models
    path = m["gru"][1]
    for flags in (["input=10,3", "input=10,3"], ["10,3", "input=10,3"]):
        args = [a for f in flags for a in ("--input-shape", f)]
        code, _, err = cli("compile", path, "-o", tmp_path / "o", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_graph_takes_no_input_shapes(models, tmp_path):
    _, graphs, _, _ = models
    with pytest.raises(CompileError, match="pass input_shapes to load_model"):
        compile_model(graphs["gru"], tmp_path / "o", input_shapes=(T_GRU, 3))


def test_tflite_dynamic_time_axis_is_refused_saying_to_convert_a_fixed_shape(models, tmp_path):
    import tensorflow as tf

    m, _, _, _ = models
    model = m["conv"][0]
    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([1, None, 2])])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    p = tmp_path / "dyn.tflite"
    p.write_bytes(conv.convert())
    for shapes in (None, (T_CONV, 2)):
        with pytest.raises(CompileError, match=r"dynamic shape \[1, -1, 2\].*fixed input shape"):
            load_model(p, shapes)
