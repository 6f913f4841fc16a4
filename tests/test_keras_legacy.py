"""Keras 2 HDF5 files (as tf.keras 2.x and Keras 2.2.4 wrote them), read without Keras 3.

The files are made with ``tf_keras`` (the Keras 2 code base), which writes the legacy HDF5
layout; where a Keras 2.2.4 file looked different (no InputLayer entry in a Sequential: the
first layer carries ``batch_input_shape``; a ``keras_version`` of 2.2.4; no ``reset_after`` in
GRUs before 2.1) the file's attributes are rewritten with h5py. Outputs of the generated C are
compared with tf_keras, Jacobians with GradientTape.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnmpc.compiler import CompileError, compile_model
from nnmpc.compiler.frontends import load_model
from support import build_host, rel_err, tape_jacobians

tfk = pytest.importorskip("tf_keras")
import tensorflow as tf  # noqa: E402

h5py = pytest.importorskip("h5py")
L = tfk.layers


def randomise(model, seed: int, scale: float = 0.5) -> None:
    """Random weights with non-zero biases; BatchNorm variances kept positive."""
    rng = np.random.default_rng(seed)
    ws = []
    for v in model.weights:
        shape = tuple(v.shape)
        if "moving_variance" in v.name:
            ws.append(rng.uniform(0.5, 2.0, shape))
        else:
            ws.append(rng.normal(0.0, scale, shape))
    model.set_weights([w.astype(np.float32) for w in ws])


def rewrite(path, version: str | None = None, drop_input_layer: bool = False,
            drop_keys: tuple[str, ...] = ()) -> None:
    """Make a tf_keras file look as an older Keras wrote it."""
    with h5py.File(path, "r+") as f:
        if version is not None:
            f.attrs["keras_version"] = version
            if "model_weights" in f:
                f["model_weights"].attrs["keras_version"] = version
        cfg = json.loads(f.attrs["model_config"])
        layers = cfg["config"]["layers"]
        if drop_input_layer:
            assert layers[0]["class_name"] == "InputLayer"
            assert "batch_input_shape" in layers[1]["config"]
            del layers[0]
        for layer in layers:
            for k in drop_keys:
                layer["config"].pop(k, None)
        f.attrs["model_config"] = json.dumps(cfg)


def tape_jacobian(model, x: np.ndarray) -> np.ndarray:
    def f(xt):
        y = model(xt[0], training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return tf.concat([tf.reshape(t, (xt[0].shape[0], -1)) for t in ys], axis=1)
    (J,) = tape_jacobians(f, [x])
    return J


def keras_out(model, x: np.ndarray) -> np.ndarray:
    y = model(tf.constant(x), training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return np.concatenate([np.asarray(t).reshape(len(x), -1) for t in ys], axis=1)


# ---- the models -----------------------------------------------------------------------------

def gru_keras224(tmp_path):
    """Keras 2.2.4 defaults: reset_after=False, hard_sigmoid gates; first layer batch_input_shape."""
    m = tfk.Sequential([L.GRU(8, batch_input_shape=(None, 6, 3), reset_after=False,
                              recurrent_activation="hard_sigmoid", name="gru_1"),
                        L.Dense(2, name="dense_1")])
    randomise(m, 1)
    p = tmp_path / "gru224.h5"
    m.save(p)
    rewrite(p, "2.2.4", drop_input_layer=True)
    return m, p


def gru_before_reset_after(tmp_path):
    """A GRU config with no reset_after key at all (Keras before 2.1): reset-before."""
    m = tfk.Sequential([L.GRU(5, batch_input_shape=(None, 4, 2), reset_after=False,
                              recurrent_activation="hard_sigmoid", return_sequences=True,
                              name="gru_1"),
                        L.Flatten(name="flat"), L.Dense(3, name="out")])
    randomise(m, 2)
    p = tmp_path / "gru20.hdf5"
    m.save(p, save_format="h5")
    rewrite(p, "2.0.8", drop_input_layer=True, drop_keys=("reset_after", "time_major"))
    return m, p


def gru_tf_keras(tmp_path):
    """tf.keras 2.x defaults (reset_after=True, sigmoid), time_major=False in the config."""
    m = tfk.Sequential([L.InputLayer(input_shape=(3, 4)), L.GRU(6, name="gru"),
                        L.Dense(2, activation="tanh", name="d")])
    randomise(m, 3)
    p = tmp_path / "gru27.h5"
    m.save(p)
    rewrite(p, "2.7.0")
    return m, p


def lstm_time_distributed(tmp_path):
    """LSTM with hard_sigmoid gates and return_sequences, then TimeDistributed(Dense)."""
    m = tfk.Sequential([L.LSTM(6, input_shape=(5, 3), recurrent_activation="hard_sigmoid",
                               return_sequences=True, name="lstm"),
                        L.TimeDistributed(L.Dense(2, activation="sigmoid"), name="td"),
                        L.Flatten(name="flat")])
    randomise(m, 4)
    p = tmp_path / "lstm.h5"
    m.save(p)
    rewrite(p, "2.4.0")
    return m, p


def simple_rnn_one_step(tmp_path):
    """A one-step window (T = 1) SimpleRNN."""
    m = tfk.Sequential([L.SimpleRNN(7, batch_input_shape=(None, 1, 4), name="rnn"),
                        L.Dense(1, name="out")])
    randomise(m, 5)
    p = tmp_path / "rnn1.h5"
    m.save(p)
    rewrite(p, "2.2.4", drop_input_layer=True)
    return m, p


def conv1d_pool(tmp_path):
    """Conv1D (causal, same, valid) with max/average/global pooling and Flatten."""
    m = tfk.Sequential([
        L.Conv1D(4, 3, padding="causal", activation="relu", batch_input_shape=(None, 12, 2),
                 name="c1"),
        L.MaxPooling1D(2, name="mp"),
        L.Conv1D(5, 2, padding="same", activation="tanh", name="c2"),
        L.AveragePooling1D(2, name="ap"),
        L.Conv1D(3, 2, name="c3"),
        L.Flatten(name="flat"),
        L.Dense(2, name="out")])
    randomise(m, 6)
    p = tmp_path / "conv.h5"
    m.save(p)
    rewrite(p, "2.3.1", drop_input_layer=True)
    return m, p


def conv1d_global(tmp_path):
    m = tfk.Sequential([L.Conv1D(6, 3, batch_input_shape=(None, 8, 3), name="c"),
                        L.GlobalMaxPooling1D(name="gmp"), L.Dense(2, name="out")])
    randomise(m, 7)
    p = tmp_path / "convg.h5"
    m.save(p)
    rewrite(p, "2.6.0")
    return m, p


def dense_first_26(tmp_path):
    """An old Sequential whose first Dense carries batch_input_shape (None, 26); a
    hard_sigmoid Activation, BatchNormalization and Dropout."""
    m = tfk.Sequential([L.Dense(16, activation="tanh", batch_input_shape=(None, 26),
                                name="dense_1"),
                        L.BatchNormalization(name="bn"),
                        L.Dropout(0.3, name="drop"),
                        L.Dense(8, name="dense_2"),
                        L.Activation("hard_sigmoid", name="hs"),
                        L.Dense(3, activation="hard_sigmoid", name="dense_3")])
    randomise(m, 8, scale=0.6)
    p = tmp_path / "dense26.h5"
    m.save(p)
    rewrite(p, "2.2.4", drop_input_layer=True)
    return m, p


def functional_two_outputs(tmp_path):
    """Two outputs, listed in the opposite order to the layers: the C output is
    [first model output, second model output]."""
    x = L.Input((5,), name="obs")
    h = L.Dense(8, activation="relu", name="hidden")(x)
    a = L.Dense(2, name="head_a")(h)
    b = L.Dense(3, activation="sigmoid", name="head_b")(L.Concatenate(name="cat")([h, x]))
    m = tfk.Model(x, [b, a], name="two_heads")
    randomise(m, 9)
    p = tmp_path / "two.h5"
    m.save(p)
    rewrite(p, "2.5.0")
    return m, p


def cnn2d(tmp_path):
    """ZeroPadding2D, strided Conv2D, BatchNormalization, DepthwiseConv2D, 2-D pooling,
    Cropping2D, Reshape, Permute: the image layers of the .keras path."""
    m = tfk.Sequential([
        L.InputLayer(input_shape=(8, 8, 2)),
        L.ZeroPadding2D(1, name="pad"),
        L.Conv2D(4, 3, strides=2, activation="selu", name="conv"),
        L.BatchNormalization(name="bn"),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="softplus",
                          name="dw"),
        L.Cropping2D(((0, 1), (1, 0)), name="crop"),
        L.AveragePooling2D(1, name="ap"),
        L.MaxPooling2D(2, padding="same", name="mp"),
        L.Reshape((4, 8), name="rs"),
        L.Permute((2, 1), name="perm"),
        L.Conv1D(3, 2, activation="elu", name="c1"),
        L.GlobalAveragePooling1D(name="gap"),
        L.Dense(3, activation="softsign", name="out")])
    randomise(m, 10, scale=0.4)
    p = tmp_path / "cnn.h5"
    m.save(p)
    rewrite(p, "2.7.0")
    return m, p


def functional_merge(tmp_path):
    """Normalization, Rescaling, Add/Subtract/Multiply/Average, ReLU/LeakyReLU/ELU/Softmax
    layers, a nested Sequential, and the swish/gelu/exponential/relu/sigmoid activations."""
    x = L.Input((6,), name="x")
    n = L.Normalization(mean=[0.1, -0.2, 0.3, 0.0, 0.5, -1.0],
                        variance=[1.0, 2.0, 0.5, 1.5, 1.0, 4.0], name="norm")(x)
    r = L.Rescaling(0.5, offset=0.1, name="resc")(n)
    a = L.Dense(8, activation="swish", name="da")(r)
    b = L.Dense(8, activation="gelu", name="db")(r)
    c = L.Dense(8, activation="exponential", name="dc")(r)
    s = L.Add(name="add")([a, b])
    d = L.Subtract(name="sub")([b, c])
    mu = L.Multiply(name="mul")([a, c])
    av = L.Average(name="avg")([s, d, mu])
    h = L.ReLU(max_value=6.0, name="relu6")(av)
    h2 = L.LeakyReLU(name="leaky")(d)
    h3 = L.ELU(alpha=0.7, name="elu")(s)
    inner = tfk.Sequential([L.Dense(5, activation="relu", input_shape=(24,), name="in_d1"),
                            L.Dense(4, activation="sigmoid", name="in_d2")], name="inner")
    z = inner(L.Concatenate(name="cat")([h, h2, h3]))
    out = L.Softmax(name="sm")(L.Dense(3, name="logits")(z))
    m = tfk.Model(x, [out, z], name="merge")
    randomise(m, 11, scale=0.3)
    p = tmp_path / "merge.h5"
    m.save(p)
    rewrite(p, "2.6.0")
    return m, p


def image_new_layers(tmp_path):
    """PReLU (shared_axes), bilinear and nearest UpSampling2D, BatchNormalization over two axes
    (Keras 2 only) and over a non-last axis, UpSampling1D, ReLU with threshold, negative_slope
    and max_value."""
    m = tfk.Sequential([
        L.InputLayer(input_shape=(3, 4, 2)),
        L.Conv2D(3, 2, padding="same", name="conv"),
        L.PReLU(shared_axes=[1, 2], name="prelu"),
        L.UpSampling2D((2, 2), interpolation="bilinear", name="up_bl"),
        L.BatchNormalization(axis=[1, 3], name="bn_hc"),
        L.Conv2D(2, 3, strides=2, activation="tanh", name="conv2"),     # (2, 3, 2)
        L.UpSampling2D((1, 2), name="up_nn"),
        L.Reshape((12, 2), name="rs"),
        L.BatchNormalization(axis=1, name="bn_t"),
        L.UpSampling1D(2, name="up1"),
        L.Conv1D(3, 3, name="c1"),
        L.Flatten(name="flat"),
        L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2, name="relu_t"),
        L.Dense(3, name="out")])
    randomise(m, 12, scale=0.5)
    p = tmp_path / "img_new.h5"
    m.save(p)
    rewrite(p, "2.11.0")
    return m, p


def shared_layers(tmp_path):
    """A Dense called three times, a nested Sequential and a nested functional model each
    called twice (Keras 2 numbers a nested model's calls from 1), Maximum and Minimum."""
    x = L.Input((4,), name="x")
    shared = L.Dense(4, activation="tanh", name="shared")
    inner = tfk.Sequential([L.Dense(3, activation="relu", input_shape=(4,), name="in_d")],
                           name="inner")
    fi = L.Input((4,), name="fi")
    fmodel = tfk.Model(fi, L.Dense(4, activation="sigmoid", name="fd")(fi), name="fmodel")
    a = shared(x)
    b = shared(L.Dense(4, name="pre")(x))
    c = shared(fmodel(b))
    mx = L.Maximum(name="max")([a, b, c])
    mn = L.Minimum(name="min")([fmodel(a), c])
    z = L.Concatenate(name="cat")([mx, mn, inner(a), inner(c)])
    m = tfk.Model(x, L.Dense(2, name="out")(z), name="shared")
    randomise(m, 13)
    p = tmp_path / "shared.h5"
    m.save(p)
    rewrite(p, "2.9.0")
    return m, p


MODELS = {f.__name__: f for f in (
    gru_keras224, gru_before_reset_after, gru_tf_keras, lstm_time_distributed,
    simple_rnn_one_step, conv1d_pool, conv1d_global, dense_first_26, functional_two_outputs,
    cnn2d, functional_merge, image_new_layers, shared_layers)}


@pytest.mark.parametrize("key", list(MODELS))
def test_legacy_h5_matches_tf_keras(tmp_path, rng, key):
    model, path = MODELS[key](tmp_path)
    graph = load_model(path)
    n_in, n_out = graph.input_size, graph.output_size
    compile_model(path, tmp_path / "out", name="net")
    host = build_host(tmp_path / "out", "net", n_in, n_out)

    shape = (400,) + tuple(int(d) for d in model.inputs[0].shape[1:])
    x = rng.uniform(-2.5, 2.5, size=shape).astype(np.float32)
    y_c, J_c = host.run(x.reshape(len(x), -1))
    y_k = keras_out(model, x)
    assert y_k.shape == y_c.shape
    ey = rel_err(y_c, y_k)
    J_k = tape_jacobian(model, x[:100])
    eJ = rel_err(J_c[:100], J_k)
    print(f"\n{key}: max output error {ey:.2e}, max Jacobian error {eJ:.2e}")
    assert y_k.std(axis=0).min() > 1e-3 and np.abs(J_k).max() > 1e-2  # not a trivial model
    assert ey <= 1e-5
    assert eJ <= 1e-4


def test_keras2_hard_sigmoid_slope_is_0_2(tmp_path):
    """Keras 2's hard_sigmoid is clip(0.2 x + 0.5): the Keras 3 slope 1/6 would be wrong by
    up to 0.1 here, far outside the tolerance of the comparison above."""
    m, p = dense_first_26(tmp_path)
    g = load_model(p)
    slopes = {n.attrs["alpha"] for n in g.nodes if n.attrs.get("activation") == "hard_sigmoid"}
    assert slopes == {0.2}
    x = np.linspace(-3, 3, 61, dtype=np.float32)
    k2 = tfk.activations.hard_sigmoid(tf.constant(x)).numpy()
    assert np.abs(k2 - np.clip(0.2 * x + 0.5, 0, 1)).max() < 1e-7
    assert np.abs(k2 - np.clip(x / 6 + 0.5, 0, 1)).max() > 0.08  # 1/12 at |x| = 2.5


def test_gru_reset_after_key_is_read(tmp_path):
    """The reset_after in the config decides the GRU's form: a Keras 2.2.4 file claiming
    reset_after=True for its 1-D bias is rejected by name, not computed wrongly."""
    _, p = gru_keras224(tmp_path)
    with h5py.File(p, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][0]["config"]["reset_after"] = True
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(CompileError, match=r"Keras 2.2.4.*gru_1.*reset_after=True"):
        load_model(p)


STEP_HARNESS = r"""
#include <stdio.h>
#include "net.h"
int main(void)
{
    static float x[NET_INPUT_SIZE], y[NET_OUTPUT_SIZE], s[NET_STEP_OUTPUT_SIZE];
    int t;
    while (fread(x, sizeof(float), NET_INPUT_SIZE, stdin) == NET_INPUT_SIZE) {
        net_predict(x, y);
        net_reset();
        for (t = 0; t < NET_WINDOW; ++t) net_step(x + t * NET_STEP_INPUT_SIZE, s);
        fwrite(y, sizeof(float), NET_OUTPUT_SIZE, stdout);
        fwrite(s, sizeof(float), NET_STEP_OUTPUT_SIZE, stdout);
    }
    return 0;
}
"""


def test_streaming_steps_equal_the_window(tmp_path, rng):
    """The one-step form of a Keras 2 GRU, stepped over a window, ends at the window's output."""
    import subprocess

    from support import HOST_CFLAGS

    _, path = gru_keras224(tmp_path)
    out = tmp_path / "out"
    compile_model(path, out, name="net")
    (tmp_path / "h.c").write_text(STEP_HARNESS)
    exe = tmp_path / "h"
    subprocess.run(["cc", *HOST_CFLAGS, f"-I{out}", str(tmp_path / "h.c"),
                    *map(str, sorted(out.glob("*.c"))), "-o", str(exe), "-lm"], check=True)
    x = rng.uniform(-2.5, 2.5, (50, 6 * 3)).astype(np.float32)
    r = np.frombuffer(subprocess.run([str(exe)], input=x.tobytes(), capture_output=True,
                                     check=True).stdout, np.float32).reshape(50, 4)
    assert np.abs(r[:, :2]).max() > 0.05
    assert rel_err(r[:, 2:], r[:, :2]) <= 1e-5


def test_keras3_h5_keeps_the_keras3_path(tmp_path):
    """An .h5 written by Keras 3 is loaded by Keras 3, with Keras 3 meanings (slope 1/6)."""
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="hard_sigmoid")])
    p = tmp_path / "k3.h5"
    m.save(p)
    with h5py.File(p) as f:
        assert str(f.attrs["keras_version"]).startswith("3.")
    g = load_model(p)
    slopes = {n.attrs["alpha"] for n in g.nodes if n.attrs.get("activation") == "hard_sigmoid"}
    assert slopes == {1.0 / 6.0}
    x = np.random.default_rng(0).uniform(-4, 4, (50, 4)).astype(np.float32)
    compile_model(p, tmp_path / "out", name="k3")
    host = build_host(tmp_path / "out", "k3", 4, 3)
    assert rel_err(host.predict(x), np.asarray(m(x))) <= 1e-5


# ---- messages -------------------------------------------------------------------------------

def test_truncated_file_says_truncated(tmp_path):
    _, p = dense_first_26(tmp_path)
    data = p.read_bytes()
    t = tmp_path / "trunc.h5"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(CompileError) as e:
        load_model(t)
    msg = str(e.value)
    assert "trunc.h5" in msg and "truncated" in msg and "corrupt" in msg
    assert "\n" not in msg


def test_intact_file_with_unsupported_layer_names_layer_and_version(tmp_path):
    m = tfk.Sequential([L.Dense(4, batch_input_shape=(None, 3), name="d0"),
                        L.LayerNormalization(name="norm_me"), L.Dense(1, name="d1")])
    p = tmp_path / "ln.h5"
    m.save(p)
    rewrite(p, "2.7.0")
    with pytest.raises(CompileError) as e:
        compile_model(p, tmp_path / "out")
    msg = str(e.value)
    assert "norm_me" in msg and "LayerNormalization" in msg and "Keras 2.7.0" in msg
    assert "corrupt" not in msg and "truncated" not in msg
    assert "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_time_major_true_is_rejected_by_name(tmp_path):
    m = tfk.Sequential([L.InputLayer(input_shape=(4, 3)),
                        L.GRU(3, time_major=False, name="tm_gru"), L.Dense(1)])
    p = tmp_path / "tm.h5"
    m.save(p)
    with h5py.File(p, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["config"]["time_major"] = True
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(CompileError, match=r"tm_gru.*time_major=True is not supported"):
        load_model(p)


def test_stateful_rnn_is_refused_by_name(tmp_path):
    m = tfk.Sequential([L.LSTM(3, stateful=True, batch_input_shape=(1, 4, 2), name="carry"),
                        L.Dense(1)])
    p = tmp_path / "st.h5"
    m.save(p)
    rewrite(p, "2.8.0")
    with pytest.raises(CompileError, match=r"Keras 2.8.0.*carry.*LSTM with stateful=True is "
                                           r"not supported: the generated predict"):
        load_model(p)


def test_weights_only_file_is_explained(tmp_path):
    m = tfk.Sequential([L.Dense(2, input_shape=(3,))])
    p = tmp_path / "w.h5"
    m.save_weights(p)
    with pytest.raises(CompileError, match="weights only"):
        load_model(p)


def test_theano_file_kernels_are_flipped_back(tmp_path, rng):
    """A Theano-backend file stores convolution kernels flipped (Keras 2's convert_kernel); the
    same model written that way compiles to the same function."""
    m, p = conv1d_global(tmp_path)
    with h5py.File(p, "r+") as f:
        f.attrs["backend"] = "theano"
        g = f["model_weights"]["c"]
        (kname,) = [n for n in _names(g.attrs["weight_names"]) if "kernel" in n]
        g[kname][...] = np.asarray(g[kname])[::-1]
    graph = load_model(p)
    compile_model(p, tmp_path / "out", name="th")
    host = build_host(tmp_path / "out", "th", graph.input_size, graph.output_size)
    x = rng.uniform(-2, 2, (100, 8, 3)).astype(np.float32)
    assert rel_err(host.predict(x.reshape(100, -1)), keras_out(m, x)) <= 1e-5


def _names(v) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in v]


def test_keras3_load_error_is_whole_and_not_called_corrupt(tmp_path):
    """An intact .keras archive that Keras 3 refuses: the whole cause, the layer, no 'corrupt'."""
    import zipfile

    import keras

    m = keras.Sequential([keras.Input((4, 3)), keras.layers.GRU(3, name="odd_gru"),
                          keras.layers.Dense(1)])
    src, dst = tmp_path / "m.keras", tmp_path / "odd.keras"
    m.save(src)
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for item in zi.infolist():
            data = zi.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                cfg["config"]["layers"][1]["config"]["time_major"] = False
                data = json.dumps(cfg).encode()
            zo.writestr(item, data)
    with pytest.raises(CompileError) as e:
        load_model(dst)
    msg = str(e.value)
    assert "odd_gru" in msg and "time_major" in msg and "Keras 3" in msg
    assert "corrupt" not in msg and "truncated" not in msg and "\n" not in msg
