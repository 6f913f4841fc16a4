"""Keras layers lowered onto the existing IR ops (BatchNormalization on any axis, shared layers,
PReLU, Maximum/Minimum, UpSampling1D/2D/3D, ReLU with a threshold, SpatialDropout3D, Embedding,
Dot, TimeDistributed of any stateless layer, softmax in recurrent cells, Conv3D, the 3-D pools,
ZeroPadding3D, Cropping3D, Lambda layers that are linear maps), compiled to C, built with the host cc and compared with Keras:
outputs within 1e-5 (1 + |y|) (an Embedding's rows bit for bit), Jacobians against
GradientTape within 1e-4 (1 + |J|). Also the refusals (stateful RNNs, interpolations other
than nearest/bilinear, a quantized Embedding, TimeDistributed of a recurrent layer, a Lambda
that is not linear or loaded without allow_lambda) and the
generated Keras table of docs/COMPILER.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnmpc.compiler import CompileError, compile_model
from nnmpc.compiler.frontends import load_model
from support import build_host, randomise, rel_err, tape_jacobians

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
L = keras.layers


def keras_out(model, x: np.ndarray) -> np.ndarray:
    y = model(tf.constant(x), training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return np.concatenate([np.asarray(t).reshape(len(x), -1) for t in ys], axis=1)


def _flat(y, n: int):
    ys = y if isinstance(y, (list, tuple)) else [y]
    return tf.concat([tf.reshape(t, (n, -1)) for t in ys], axis=1)


def tape_jacobian(model, x: np.ndarray) -> np.ndarray:
    (J,) = tape_jacobians(lambda xt: _flat(model(xt[0], training=False), xt[0].shape[0]), [x])
    return J


def check(tmp_path: Path, model, x: np.ndarray, tag: str, n_jac: int = 100,
          allow_lambda: bool = False):
    """Save, compile and build the model; compare the C with Keras on x. Returns the graph."""
    path = tmp_path / f"{tag}.keras"
    model.save(path)
    graph = load_model(path, allow_lambda=allow_lambda)
    compile_model(path, tmp_path / "out", name="net", allow_lambda=allow_lambda)
    host = build_host(tmp_path / "out", "net", graph.input_size, graph.output_size)
    y_c, J_c = host.run(x.reshape(len(x), -1))
    y_k = keras_out(model, x)
    J_k = tape_jacobian(model, x[:n_jac])
    ey, eJ = rel_err(y_c, y_k), rel_err(J_c[:n_jac], J_k)
    print(f"\n{tag}: max output error {ey:.2e}, max Jacobian error {eJ:.2e}")
    assert y_k.std(axis=0).max() > 1e-2 and np.abs(J_k).max() > 1e-2  # not a trivial model
    assert ey <= 1e-5
    assert eJ <= 1e-4
    return graph


def uniform(rng, shape, n: int = 300, r: float = 2.0) -> np.ndarray:
    return rng.uniform(-r, r, size=(n,) + tuple(shape)).astype(np.float32)


# ---- 1. BatchNormalization on a non-last axis -----------------------------------------------

def test_batchnorm_on_the_time_axis_of_a_sequence(tmp_path, rng):
    m = keras.Sequential([keras.Input((5, 3)), L.Dense(4, activation="tanh", name="d"),
                          L.BatchNormalization(axis=1, name="bn_t"),
                          L.BatchNormalization(axis=-2, name="bn_t2"),
                          L.Flatten(), L.Dense(3, name="out")])
    randomise(m, 1)
    g = check(tmp_path, m, uniform(rng, (5, 3)), "bn_axis1")
    # per time step: the constants cover the (T, F) block, not only the features
    (mul,) = [n for n in g.nodes if n.op == "mul" and n.source == "bn_t"]
    assert g.tensors[mul.inputs[1]].shape == (5, 4)


def test_batchnorm_on_the_channels_first_axis(tmp_path, rng):
    m = keras.Sequential([keras.Input((3, 4, 5)), L.BatchNormalization(axis=1, name="bn_c"),
                          L.Permute((2, 3, 1)), L.Conv2D(2, 3, activation="elu"),
                          L.Flatten(), L.Dense(2)])
    randomise(m, 2)
    check(tmp_path, m, uniform(rng, (3, 4, 5)), "bn_channels_first")


# ---- 2. a layer shared by two branches ------------------------------------------------------

def test_shared_dense_and_shared_nested_model(tmp_path, rng):
    x = keras.Input((3,), name="x")
    shared = L.Dense(3, activation="tanh", name="shared")
    inner = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="relu", name="in_d")],
                             name="inner")
    a = shared(x)
    b = shared(L.Dense(3, name="pre")(x))
    c = shared(shared(a))                      # a chain of calls: calls 2 and 3 read call 0
    z = L.Concatenate(name="cat")([a, b, c, inner(a), inner(b)])
    m = keras.Model(x, L.Dense(2, name="out")(z))
    randomise(m, 3)
    check(tmp_path, m, uniform(rng, (3,)), "shared")
    # the shared weights are stored once: the C holds exactly Keras' parameters
    header = " ".join((tmp_path / "out" / "net.h").read_text().split())
    assert f"#define NET_PARAMS {m.count_params()}" in header


# ---- 3. PReLU, Maximum, Minimum -------------------------------------------------------------

def test_prelu_maximum_minimum(tmp_path, rng):
    x = keras.Input((6,), name="x")
    a = L.Dense(6, name="da")(x)
    b = L.Dense(6, name="db")(x)
    c = L.Dense(6, name="dc")(x)
    p = L.PReLU(name="prelu")(a)                                  # one alpha per element
    mx = L.Maximum(name="max")([a, b, c])
    mn = L.Minimum(name="min")([b, c])
    m = keras.Model(x, L.Dense(3, name="out")(L.Concatenate()([p, mx, mn])))
    randomise(m, 4)
    check(tmp_path, m, uniform(rng, (6,)), "prelu_max_min")


def test_prelu_shared_axes_on_an_image(tmp_path, rng):
    m = keras.Sequential([keras.Input((5, 5, 2)), L.Conv2D(3, 3, name="conv"),
                          L.PReLU(shared_axes=[1, 2], name="prelu_c"),
                          L.Conv2D(2, 2, name="conv2"),
                          L.PReLU(shared_axes=[3], name="prelu_hw"),
                          L.Flatten(), L.Dense(2)])
    randomise(m, 5)
    g = check(tmp_path, m, uniform(rng, (5, 5, 2)), "prelu_shared_axes")
    alphas = {n.source: g.tensors[n.inputs[1]].shape for n in g.nodes
              if n.op == "mul" and "alpha" in n.inputs[1]}
    assert alphas == {"prelu_c": (3,), "prelu_hw": (2, 2, 2)}  # over leading axes only


def test_prelu_with_one_alpha_is_a_leaky_relu(tmp_path, rng):
    m = keras.Sequential([keras.Input((4,)), L.Dense(5), L.PReLU(shared_axes=[1], name="pr"),
                          L.Dense(2)])
    randomise(m, 6)
    g = check(tmp_path, m, uniform(rng, (4,)), "prelu_one")
    assert [n.attrs.get("activation") for n in g.nodes if n.source == "pr"] == ["leaky_relu"]


# ---- 4. UpSampling1D / UpSampling2D ---------------------------------------------------------

def test_upsampling1d_and_2d_nearest(tmp_path, rng):
    x = keras.Input((4, 3, 2), name="img")
    u = L.UpSampling2D((2, 3), name="up2")(x)
    y = L.Conv2D(2, 3, strides=2, activation="tanh", name="conv")(u)       # (3, 4, 2)
    s = L.Reshape((12, 2))(y)
    s = L.UpSampling1D(3, name="up1")(L.Conv1D(3, 2, name="c1")(s))        # (33, 3)
    m = keras.Model(x, L.Dense(2, name="out")(L.Flatten()(s)))
    randomise(m, 7)
    g = check(tmp_path, m, uniform(rng, (4, 3, 2)), "upsampling_nearest")
    assert not any(n.op == "dense" and n.source.startswith("up") for n in g.nodes)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_upsampling2d_bilinear(tmp_path, rng, fmt):
    shape = (3, 4, 2) if fmt == "channels_last" else (2, 3, 4)
    m = keras.Sequential([keras.Input(shape),
                          L.UpSampling2D((2, 3), interpolation="bilinear", data_format=fmt,
                                         name="up"),
                          L.Flatten(), L.Dense(3)])
    randomise(m, 8)
    check(tmp_path, m, uniform(rng, shape), f"upsampling_bilinear_{fmt}")


def test_upsampling2d_other_interpolations_are_refused(tmp_path):
    m = keras.Sequential([keras.Input((3, 3, 1)),
                          L.UpSampling2D(2, interpolation="bicubic", name="up_cubic")])
    m.save(tmp_path / "m.keras")
    with pytest.raises(CompileError) as e:
        load_model(tmp_path / "m.keras")
    msg = str(e.value)
    assert "up_cubic" in msg and "interpolation='bicubic'" in msg and "\n" not in msg


# ---- 5. ReLU with a threshold ---------------------------------------------------------------

RELUS = {
    "t": dict(threshold=0.5),
    "t_slope": dict(threshold=0.5, negative_slope=0.2),
    "t_max": dict(threshold=0.3, max_value=1.2),
    "t_slope_max6": dict(threshold=0.7, negative_slope=0.1, max_value=6.0),
    "max": dict(max_value=2.5),
    "max_slope": dict(max_value=1.0, negative_slope=0.3),
    "big_t_small_max": dict(threshold=2.0, max_value=1.0, negative_slope=0.05),
}


def test_relu_threshold_negative_slope_max_value(tmp_path, rng):
    """Every configuration in one model: each ReLU on the input itself, where the inputs
    include the thresholds, the floats next to them and zero, and each after a Dense."""
    x = keras.Input((8,), name="x")
    h = L.Dense(8, name="d")(x)
    direct = [L.ReLU(**kw, name=f"relu_{k}")(x) for k, kw in RELUS.items()]
    hidden = [L.ReLU(**kw, name=f"relu_h_{k}")(h) for k, kw in RELUS.items()]
    m = keras.Model(x, [L.Concatenate()(direct),
                        L.Dense(3, name="out")(L.Concatenate()(hidden))])
    randomise(m, 9)
    # (not max_value itself: TF's clip passes the gradient there, the C takes 0 at that kink;
    # nor the subnormal floats next to 0, which TensorFlow flushes to zero)
    edges = [0.0, 0.1, -0.1, 3.0, 7.0, -7.0]
    for kw in RELUS.values():
        t = np.float32(kw.get("threshold", 0.0))
        if t:
            edges += [t, np.nextafter(t, np.float32(9)), np.nextafter(t, np.float32(-9)), -t]
    edges = np.array(edges, np.float32)
    cols = [np.roll(edges, k)[:8] for k in range(len(edges))]
    xs = np.concatenate([np.array(cols), uniform(rng, (8,), r=3.0)]).astype(np.float32)
    check(tmp_path, m, xs, "relu_threshold", n_jac=len(cols) + 60)


def test_relu_threshold_step_is_exact_at_the_threshold(tmp_path):
    """x just above t gives x, t itself gives 0 (the step is exact in float32)."""
    t = np.float32(0.3)
    m = keras.Sequential([keras.Input((3,)), L.ReLU(threshold=float(t), name="r")])
    m.save(tmp_path / "m.keras")
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="net")
    host = build_host(tmp_path / "out", "net", 3, 3)
    up, down = np.nextafter(t, np.float32(1)), np.nextafter(t, np.float32(0))
    xs = np.array([[t, up, down], [1e30, -1e30, 5e-6]], np.float32)
    y, J = host.run(xs)
    assert np.array_equal(y, np.asarray(m(xs)))
    assert np.array_equal(y[0], [0.0, up, 0.0])
    assert np.array_equal(J[0], np.diag([0.0, 1.0, 0.0]).astype(np.float32))


# ---- 6. SpatialDropout3D --------------------------------------------------------------------

def test_spatial_dropout3d_is_removed(tmp_path, rng):
    m = keras.Sequential([keras.Input((2, 3, 3, 2)), L.SpatialDropout3D(0.4, name="sd3"),
                          L.Flatten(), L.Dense(4, activation="tanh"), L.Dense(2)])
    randomise(m, 10)
    g = check(tmp_path, m, uniform(rng, (2, 3, 3, 2)), "spatial_dropout3d")
    assert not any(n.source == "sd3" for n in g.nodes)


# ---- 7. stateful recurrent layers -----------------------------------------------------------

@pytest.mark.parametrize("cls", ["GRU", "LSTM", "SimpleRNN"])
def test_stateful_rnn_is_refused_by_name(tmp_path, cls):
    m = keras.Sequential([keras.Input(batch_shape=(1, 4, 3)),
                          getattr(L, cls)(5, stateful=True, name="carry"), L.Dense(1)])
    m.save(tmp_path / "s.keras")
    with pytest.raises(CompileError) as e:
        load_model(tmp_path / "s.keras")
    msg = str(e.value)
    assert "carry" in msg and f"{cls} with stateful=True is not supported" in msg
    assert "\n" not in msg


# ---- 8. the generated table of docs/COMPILER.md ---------------------------------------------

def test_compiler_doc_lists_the_front_ends_keras_table():
    from nnmpc.compiler.frontends.keras import (_CONVERTERS, LAYERS, MODEL_CLASSES,
                                                SUPPORTED_LAYERS, layers_table)

    doc = (Path(__file__).resolve().parent.parent / "docs" / "COMPILER.md").read_text()
    begin, end = "<!-- keras-layers:begin -->\n", "\n<!-- keras-layers:end -->"
    assert doc[doc.index(begin) + len(begin):doc.index(end)] == layers_table()
    assert set(_CONVERTERS) == set(LAYERS)
    assert SUPPORTED_LAYERS == set(LAYERS) | set(MODEL_CLASSES)
    assert len(layers_table().splitlines()) == len(SUPPORTED_LAYERS) + 2


def test_repeat_vector_feeds_a_recurrent_layer(tmp_path, rng):
    """RepeatVector (an encoder's vector as n rows for a decoder GRU) against Keras."""
    m = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="tanh"), L.RepeatVector(5),
                          L.GRU(6, return_sequences=True), L.Flatten()])
    check(tmp_path, m, uniform(rng, (3,)), "repeat_vector")


@pytest.mark.parametrize("cls", ["SimpleRNN", "GRU", "LSTM"])
def test_go_backwards_runs_the_window_from_its_end(tmp_path, rng, cls):
    """go_backwards=True (as keras2c tests it): the window from its last step, outputs in that
    order with return_sequences; there is no one-step streaming form of it."""
    R = getattr(L, cls)
    inp = keras.Input((6, 3))
    seq = R(4, go_backwards=True, return_sequences=True)(inp)
    last = R(3, go_backwards=True)(seq)
    m = keras.Model(inp, [L.Flatten()(seq), last])
    graph = check(tmp_path, m, uniform(rng, (6, 3), n=200), f"backwards_{cls}")
    assert graph.step_graph is None


def test_bidirectional_recurrent_layers(tmp_path, rng):
    """Bidirectional: the forward and the backward layer, the backward sequence flipped back
    into time order, merged as merge_mode says (concat, sum, mul, ave in one model)."""
    inp = keras.Input((5, 3))
    outs = []
    for mode, cls in (("concat", L.GRU), ("sum", L.SimpleRNN), ("mul", L.LSTM), ("ave", L.GRU)):
        seq = L.Bidirectional(cls(3, return_sequences=True), merge_mode=mode)(inp)
        outs += [L.Flatten()(seq), L.Bidirectional(cls(2), merge_mode=mode)(seq)]
    m = keras.Model(inp, outs)
    graph = check(tmp_path, m, uniform(rng, (5, 3), n=100), "bidirectional", n_jac=25)
    assert graph.step_graph is None      # needs the whole window


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv_transpose_1d_and_2d(tmp_path, rng, padding):
    """Conv1DTranspose and Conv2DTranspose (strides, a kernel shorter and longer than the
    stride; TensorFlow runs no dilated transposed convolution on the CPU) as the IR's
    deconv, against Keras."""
    inp1 = keras.Input((6, 2))
    a = L.Conv1DTranspose(3, 3, strides=2, padding=padding, activation="tanh")(inp1)
    a = L.Conv1DTranspose(2, 1, strides=3, padding=padding)(a)
    a = L.Conv1DTranspose(2, 2, padding=padding)(a)
    inp2 = keras.Input((3, 4, 2))
    c = L.Conv2DTranspose(2, (3, 2), strides=(2, 1), padding=padding, activation="relu")(inp2)
    m = keras.Model([inp1, inp2], [L.Flatten()(a), L.Flatten()(c)])
    x1, x2 = uniform(rng, (6, 2), n=100), uniform(rng, (3, 4, 2), n=100)
    path = tmp_path / "ct.keras"
    m.save(path)
    graph = load_model(path)
    compile_model(path, tmp_path / "out", name="net")
    host = build_host(tmp_path / "out", "net", graph.input_size, graph.output_size)
    x = np.concatenate([x1.reshape(100, -1), x2.reshape(100, -1)], axis=1)
    y_c, J_c = host.run(x)
    y_k = np.concatenate([np.asarray(t).reshape(100, -1) for t in m([x1, x2], training=False)],
                         axis=1)
    assert rel_err(y_c, y_k) <= 1e-5
    # the Jacobian against GradientTape on both inputs
    J_k = np.concatenate(tape_jacobians(lambda t: _flat(m(t, training=False), t[0].shape[0]),
                                        [x1[:20], x2[:20]]), axis=2)
    assert rel_err(J_c[:20], J_k) <= 1e-4


# ---- 9. Embedding (float indices), Dot, TimeDistributed of any layer, softmax RNNs ----------

def test_embedding_reads_the_rows_keras_reads_bit_for_bit(tmp_path):
    """Keras truncates float indices to int32 and reads a negative one from the end of the
    table; the C gives the same rows exactly (and a zero Jacobian) at integers, the floats
    next to them, halves, -0.0 and in a model with a continuous input beside the indices."""
    idx, x = keras.Input((6,), name="idx"), keras.Input((2,), name="x")
    e = L.Flatten()(L.Embedding(5, 3, name="emb")(idx))
    m = keras.Model([idx, x], L.Concatenate()([e, L.Dense(2, activation="tanh")(x)]))
    randomise(m, 11)
    path = tmp_path / "emb.keras"
    m.save(path)
    compile_model(path, tmp_path / "out", name="net")
    host = build_host(tmp_path / "out", "net", 8, 20)
    vals = [float(k) for k in range(-5, 5)] + [-0.0, 0.5, -0.5, 4.5, -4.5, 2.999, -3.001]
    vals += [float(np.nextafter(np.float32(k), np.float32(d))) for k in range(-5, 5)
             for d in (-9, 9) if -5 < np.nextafter(np.float32(k), np.float32(d)) < 5]
    vals = np.array(vals, np.float32)
    rows = np.array([np.roll(vals, k)[:6] for k in range(len(vals))], np.float32)
    xs = np.random.default_rng(0).uniform(-2, 2, (len(rows), 2)).astype(np.float32)
    y_c, J_c = host.run(np.concatenate([rows, xs], axis=1))
    y_k = np.concatenate([np.asarray(t) for t in [m([rows, xs], training=False)]], axis=1)
    assert np.array_equal(y_c[:, :18], y_k[:, :18])          # the table rows, bit for bit
    assert rel_err(y_c[:, 18:], y_k[:, 18:]) <= 1e-5
    assert not np.any(J_c[:, :, :6])                         # no derivative by an index
    (J_k,) = tape_jacobians(lambda t: m([t[0], t[1]], training=False), [rows, xs])[1:]
    assert rel_err(J_c[:, :, 6:], J_k) <= 1e-4


def test_embedding_with_a_quantized_table_is_refused(tmp_path):
    m = keras.Sequential([keras.Input((3,)), L.Embedding(4, 2, name="emb_q")])
    m.quantize("int8")
    m.save(tmp_path / "q.keras")
    with pytest.raises(CompileError) as e:
        load_model(tmp_path / "q.keras")
    msg = str(e.value)
    assert "emb_q" in msg and "Embedding" in msg and "\n" not in msg


def test_dot_axes_ranks_and_normalize(tmp_path, rng):
    """Dot as Keras' batch_dot: a matrix product, vectors, a leading axis, a rank-3 operand,
    negative axes, and normalize=True (cosine), on tensors computed from one input."""
    x = keras.Input((10,), name="x")

    def part(shape, act="tanh"):
        h = L.Dense(int(np.prod(shape)), activation=act)(x)
        return L.Reshape(shape)(h)

    outs = [
        L.Dot(axes=(2, 1))([part((3, 4)), part((4, 5))]),               # (3, 5)
        L.Dot(axes=1)([part((4,)), part((4,))]),                         # (1,)
        L.Dot(axes=1)([part((3, 4)), part((3, 2))]),                     # (4, 2)
        L.Dot(axes=(3, 1))([part((2, 3, 4)), part((4, 3))]),             # (2, 3, 3)
        L.Dot(axes=(1, -1))([part((3,)), part((2, 3))]),                 # (2,)
        L.Dot(axes=(2, 2), normalize=True)([part((3, 4)), part((4, 4))]),  # (3, 4)
        L.Dot(axes=1, normalize=True)([part((5,), None), part((5,), None)]),  # (1,)
    ]
    m = keras.Model(x, [L.Flatten()(o) if len(o.shape) > 2 else o for o in outs])
    randomise(m, 12)
    check(tmp_path, m, uniform(rng, (10,)), "dot")


@pytest.mark.parametrize("cls", ["SimpleRNN", "GRU", "LSTM"])
def test_recurrent_layers_with_softmax_activations(tmp_path, rng, cls):
    """softmax (over the units, as Keras applies it) as the activation and as the recurrent
    activation (GRU both with reset_after True and False)."""
    R = getattr(L, cls)
    inp = keras.Input((5, 3))
    a = R(4, activation="softmax", return_sequences=True)(inp)
    kw = {} if cls == "SimpleRNN" else {"recurrent_activation": "softmax"}
    if cls == "GRU":
        kw["reset_after"] = False
    c = R(3, activation="softsign", **kw)(a)
    m = keras.Model(inp, [L.Flatten()(a), c])
    randomise(m, 13)
    check(tmp_path, m, uniform(rng, (5, 3), n=150), f"softmax_{cls}", n_jac=40)


def test_time_distributed_convolutions_pools_and_a_model(tmp_path, rng):
    """TimeDistributed of Conv1D (causal, strides), MaxPooling1D, Conv2D, a global pool and a
    nested Sequential: the inner layer once per time step."""
    seq_in = keras.Input((3, 7, 2), name="seq")
    a = L.TimeDistributed(L.Conv1D(3, 3, padding="causal", activation="elu"))(seq_in)
    a = L.TimeDistributed(L.MaxPooling1D(2))(a)                              # (3, 3, 3)
    inner = keras.Sequential([keras.Input((3, 3)), L.Conv1D(2, 2, strides=1), L.Flatten(),
                              L.Dense(2, activation="tanh")])
    a = L.TimeDistributed(inner)(a)                                          # (3, 2)
    m1 = keras.Model(seq_in, a)
    randomise(m1, 14)
    check(tmp_path, m1, uniform(rng, (3, 7, 2), n=100), "td_1d")
    img_in = keras.Input((2, 5, 4, 2), name="frames")
    b_ = L.TimeDistributed(L.Conv2D(3, (2, 3), strides=(2, 1), padding="same"))(img_in)
    b_ = L.TimeDistributed(L.GlobalAveragePooling2D())(b_)                  # (2, 3)
    m2 = keras.Model(img_in, L.Dense(2)(L.Flatten()(b_)))
    randomise(m2, 15)
    check(tmp_path, m2, uniform(rng, (2, 5, 4, 2), n=100), "td_2d")


def test_time_distributed_recurrent_layer_is_refused(tmp_path):
    m = keras.Sequential([keras.Input((2, 4, 3)), L.TimeDistributed(L.GRU(2), name="td_gru")])
    m.save(tmp_path / "t.keras")
    with pytest.raises(CompileError) as e:
        load_model(tmp_path / "t.keras")
    msg = str(e.value)
    assert "td_gru" in msg and "TimeDistributed(GRU) is not supported" in msg
    assert "\n" not in msg


# ---- 10. 3-D layers: Conv3D, pools, padding, cropping, upsampling ---------------------------

@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv3d_and_3d_pools(tmp_path, rng, padding):
    """Conv3D (strides, in depth too; dilation with 'same'; softmax), MaxPooling3D and AveragePooling3D (TensorFlow
    averages only the cells inside the volume at 'same' borders) and the global 3-D pools."""
    inp = keras.Input((5, 4, 5, 2))
    if padding == "valid":
        c = L.Conv3D(3, (3, 2, 2), strides=(2, 1, 2), activation="tanh")(inp)   # (2, 3, 2, 3)
    else:
        c = L.Conv3D(3, (2, 3, 2), dilation_rate=(2, 1, 2), padding="same",
                     activation="relu")(inp)                                     # (5, 4, 5, 3)
    mp = L.MaxPooling3D((2, 2, 3), strides=(1, 2, 2), padding=padding)(inp)
    ap = L.AveragePooling3D((3, 2, 2), strides=(2, 1, 3), padding=padding)(inp)
    c2 = L.Conv3D(2, (3, 2, 3), strides=(2, 2, 1), padding=padding,    # strides in depth,
                  activation="softmax")(inp)                           # softmax on channels
    outs = [L.Flatten()(t) for t in (c, mp, ap, c2)]
    outs += [L.GlobalMaxPooling3D()(c), L.GlobalAveragePooling3D()(inp)]
    m = keras.Model(inp, outs)
    randomise(m, 16)
    check(tmp_path, m, uniform(rng, (5, 4, 5, 2), n=60), f"conv3d_{padding}", n_jac=20)


def test_zero_padding_cropping_upsampling_3d(tmp_path, rng):
    inp = keras.Input((3, 4, 2, 2))
    z = L.ZeroPadding3D(((1, 2), (0, 1), (2, 1)))(inp)
    c = L.Cropping3D(((1, 0), (1, 2), (0, 1)))(inp)
    u = L.UpSampling3D((2, 1, 3))(inp)
    m = keras.Model(inp, [L.Dense(2)(L.Flatten()(t)) for t in (z, c)] + [L.Flatten()(u)])
    randomise(m, 17)
    check(tmp_path, m, uniform(rng, (3, 4, 2, 2), n=100), "pad_crop_up_3d")


@pytest.mark.parametrize("cls", ["Conv3D", "Conv2DTranspose"])
def test_theano_file_conv3d_and_conv_transpose_are_refused(tmp_path, cls):
    """Keras 2 stored these kernels flipped in Theano-backend files; not undone, so refused."""
    h5py = pytest.importorskip("h5py")
    tfk = pytest.importorskip("tf_keras")
    shape = (3, 4, 4, 2) if cls == "Conv3D" else (4, 4, 2)
    m = tfk.Sequential([getattr(tfk.layers, cls)(2, 2, input_shape=shape, name="th_conv")])
    p = tmp_path / "th.h5"
    m.save(p)
    with h5py.File(p, "r+") as f:
        f.attrs["keras_version"] = "2.6.0"
        f.attrs["backend"] = "theano"
    with pytest.raises(CompileError) as e:
        load_model(p)
    msg = str(e.value)
    assert "th_conv" in msg and f"{cls} from a Theano-backend file is not supported" in msg
    assert "\n" not in msg


# ---- Lambda layers that are linear maps (allow_lambda) ----------------------------------------

def test_lambda_slice(tmp_path, rng):
    x = keras.Input((4, 5), name="x")
    y = L.Lambda(lambda t: t[:, 1:3, 2:], name="cut")(L.Dense(5, activation="tanh")(x))
    m = keras.Model(x, L.Dense(3)(L.Flatten()(y)))
    randomise(m, 40)
    g = check(tmp_path, m, uniform(rng, (4, 5)), "lambda_slice", allow_lambda=True)
    assert {n.op for n in g.nodes if n.source == "cut"} <= {"slice", "reshape"}


def test_lambda_split_feeds_two_branches(tmp_path, rng):
    x = keras.Input((7,), name="x")
    a, c = L.Lambda(lambda t: tf.split(t, [3, 4], axis=1), name="split")(x)
    y = L.Concatenate()([L.Dense(2, activation="tanh")(a), L.Dense(3, activation="relu")(c)])
    m = keras.Model(x, L.Dense(2)(y))
    randomise(m, 41)
    g = check(tmp_path, m, uniform(rng, (7,)), "lambda_split", allow_lambda=True)
    assert [n.op for n in g.nodes if n.source == "split"] == ["slice", "slice"]


def test_lambda_split_outputs_are_the_model_outputs(tmp_path, rng):
    x = keras.Input((6,), name="x")
    h = L.Dense(6, activation="tanh")(x)
    m = keras.Model(x, L.Lambda(lambda t: tf.split(t, [1, 2, 3], axis=1), name="split")(h))
    randomise(m, 42)
    g = check(tmp_path, m, uniform(rng, (6,)), "lambda_split_out", allow_lambda=True)
    assert len(g.outputs) == 3


def test_lambda_scaling_and_a_linear_mix(tmp_path, rng):
    x = keras.Input((3, 4), name="x")
    y = L.Lambda(lambda t: t * 0.5, name="half")(x)
    z = L.Lambda(lambda t: tf.reduce_sum(t, axis=1) - 2.0 * t[:, 0, :], name="mix")(y)
    m = keras.Model(x, L.Dense(2, activation="tanh")(z))
    randomise(m, 43)
    g = check(tmp_path, m, uniform(rng, (3, 4)), "lambda_scale", allow_lambda=True)
    assert [n.op for n in g.nodes if n.source == "half"] == ["mul"]
    assert "dense" in [n.op for n in g.nodes if n.source == "mix"]


def test_lambda_reshape_and_permutation(tmp_path, rng):
    m = keras.Sequential([keras.Input((6, 2)), L.Dense(4, activation="elu"),
                          L.Lambda(lambda t: tf.reshape(t, (-1, 3, 8)), name="rs"),
                          L.Lambda(lambda t: keras.ops.transpose(t, (0, 2, 1)), name="tp"),
                          L.Flatten(), L.Dense(3)])
    randomise(m, 44)
    g = check(tmp_path, m, uniform(rng, (6, 2)), "lambda_reshape", allow_lambda=True)
    assert [n.op for n in g.nodes if n.source == "rs"] == ["reshape"]
    assert [n.op for n in g.nodes if n.source == "tp"] == ["transpose"]


@pytest.mark.parametrize("fn", [lambda t: tf.square(t), lambda t: keras.ops.relu(t),
                                lambda t: t + 1.0])
def test_lambda_that_is_not_linear_is_refused(tmp_path, fn):
    x = keras.Input((4,), name="x")
    m = keras.Model(x, L.Dense(2)(L.Lambda(fn, name="nonlin")(x)))
    m.save(tmp_path / "m.keras")
    with pytest.raises(CompileError) as e:
        load_model(tmp_path / "m.keras", allow_lambda=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert "Lambda 'nonlin' is not a linear map of its input" in msg


def test_lambda_of_two_inputs_is_refused(tmp_path):
    x, y = keras.Input((4,), name="x"), keras.Input((4,), name="y")
    m = keras.Model([x, y], L.Lambda(lambda ts: ts[0] - ts[1], name="diff")([x, y]))
    m.save(tmp_path / "m.keras")
    with pytest.raises(CompileError, match="Lambda 'diff' has 2 inputs"):
        load_model(tmp_path / "m.keras", allow_lambda=True)


def test_lambda_without_the_option_is_refused_with_the_hint(tmp_path):
    x = keras.Input((4,), name="x")
    m = keras.Model(x, L.Lambda(lambda t: t[:, :2], name="cut")(x))
    m.save(tmp_path / "m.keras")
    with pytest.raises(CompileError) as e:
        compile_model(tmp_path / "m.keras", tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg and "layer 'cut'" in msg and "--allow-lambda" in msg
    assert "trusted" in msg
    assert not (tmp_path / "out").exists()


def test_lambda_of_a_large_input_is_refused(tmp_path):
    x = keras.Input((65, 64), name="x")
    m = keras.Model(x, L.Lambda(lambda t: t[:, :2], name="big")(x))
    m.save(tmp_path / "m.keras")
    with pytest.raises(CompileError, match="Lambda 'big' has an input of 4160 values"):
        load_model(tmp_path / "m.keras", allow_lambda=True)
