"""keras2c's layer test configurations, re-created as Keras 3 models and compiled to C.

keras2c (github.com/f0uriest/keras2c, now PlasmaControl/keras2c) tests each layer it supports
with small models in ``tests/test_core_layers.py``, ``test_convolution_layers.py``,
``test_pooling_layers.py``, ``test_recurrent_layers.py``, ``test_merge_layers.py``,
``test_advanced_activation_layers.py``, ``test_wrappers.py``, ``test_convtranspose_layers.py``
and ``test_split_layers.py``. Each entry of :data:`CONFIGS` is one of those tests, read from
those files: the same layers in the same order with the same arguments (units, filters,
kernel sizes, strides, padding, dilation, activations, axes, return_sequences, go_backwards,
stateful, use_bias, merge modes, ...). Two things differ, on purpose:

* the input shapes are scaled down (kept where already small) so that every Jacobian is at
  most a few 10^4 entries; every shape still fits its kernels, strides and dilations. The
  keras2c shape is noted next to each entry;
* keras2c's two randomised tests (Conv1DTranspose with 10 random geometries, a Lambda
  ``tf.split`` with 10 random split lists) draw from a seeded generator here, so the set is
  the same on every run.

A configuration Keras 3 cannot build (a removed argument) is counted and skipped. The others
get deterministic random weights, are saved as .keras and compiled with ``compile_model``
(the split ones with ``allow_lambda=True``: Keras 3 loads a Lambda only with safe_mode=False); a
configuration the compiler refuses must be one ``CompileError`` that names a layer of the
model (counted as rejected and listed); every compiled one is built into one host program
(two parallel cc calls) and must match Keras: outputs within 1e-5 (1 + |y|), Jacobians
against GradientTape (float32) within 1e-4 (1 + |J|); a model of index inputs (Embedding),
whose Keras Jacobian is zero, must give a zero Jacobian. A wrong number fails the test.
"""

from __future__ import annotations

import re
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from nnmpc.compiler import CompileError, compile_model
from onnx_batch import CFLAGS, MAIN, Batch
from support import randomise, rel_err, tape_jacobians

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
L = keras.layers


# ---- the configurations ---------------------------------------------------------------------
# Each builder returns a Keras model (and may raise if Keras 3 cannot build it).

def _one(shape, *layers, batch_shape=None):
    """Input(shape) (or Input(batch_shape=...)) followed by ``layers`` as a functional model."""
    a = keras.Input(batch_shape=batch_shape) if batch_shape else keras.Input(shape)
    x = a
    for layer in layers:
        x = layer(x)
    return keras.Model(a, x)


def _merge(cls, shapes, **kw):
    ins = [keras.Input(s) for s in shapes]
    return keras.Model(ins, cls(**kw)(ins))


def _seq(*layers):
    m = keras.Sequential(list(layers))
    m.build()
    return m


def _shared():
    xi, yi = keras.Input((2, 3)), keras.Input((2, 3))          # keras2c: (10, 20) each
    x = L.Dense(20, activation="relu")(xi)
    y = L.Dense(20, activation="relu")(yi)
    f = L.Dense(30, activation="relu")
    return keras.Model([xi, yi], L.Add()([f(x), f(y)]))


def _conv1d_transpose_cases(n: int = 10, seed: int = 2024):
    """keras2c's random Conv1DTranspose geometries (nh, nc, nf, nk, strides, valid/same),
    drawn from a seeded generator with smaller ranges."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        nh = int(rng.integers(2, 9))
        nc, nf = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        nk = int(rng.integers(1, nh))
        strides = int(rng.integers(1, max(nk, 2)))
        padding = "valid" if t % 2 == 0 else "same"
        out.append((f"Conv1DTranspose1_{t}", lambda nh=nh, nc=nc, nf=nf, nk=nk, s=strides,
                    p=padding: _one((nh, nc), L.Conv1DTranspose(
                        filters=nf, kernel_size=nk, strides=s, padding=p, dilation_rate=1,
                        activation=None, use_bias=False))))
    return out


def _split_cases(n: int = 10, seed: int = 2025):
    """keras2c's random tf.split in a Lambda, drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        n_splits = int(rng.integers(2, 10))
        in_dim = int(rng.integers(n_splits, 10 * n_splits))
        sizes: list[int] = []
        for i in range(n_splits - 1):
            sizes.append(int(rng.integers(1, in_dim - sum(sizes) - n_splits + i + 2)))
        sizes.append(in_dim - sum(sizes))

        def build(d=in_dim, s=tuple(sizes)):
            a = keras.Input((d,))
            return keras.Model(a, L.Lambda(lambda x: tf.split(x, list(s), axis=1))(a))
        out.append((f"SplitLayer_{t}", build))
    return out


BN_INIT = {"beta_initializer": "random_uniform", "gamma_initializer": "random_uniform"}

CONFIGS: list[tuple[str, str, object]] = [
    # --- test_core_layers.py
    ("core", "Dense1", lambda: _one((3, 2, 4), L.Dense(45, activation="relu"))),  # (21, 4, 9)
    ("core", "Dense2_Activation", lambda: _one(                                  # (40, 30)
        (2, 5), L.Dense(500, activation="tanh", use_bias=False), L.Activation("exponential"))),
    ("core", "Dropout_Reshape_Flatten", lambda: _one(                            # (10, 40, 30)
        (2, 4, 3), L.Flatten(), L.Dropout(0.4), L.Reshape((4, 3, 2)))),
    ("core", "Permute", lambda: _one((2, 3, 4), L.Permute((3, 1, 2)))),          # (6, 12, 9)
    ("core", "repeat_vector", lambda: _one(
        (13,), L.RepeatVector(23), L.ActivityRegularization(l1=0.5, l2=0.3), L.Dense(20))),
    ("core", "dummy_layers", lambda: _one(                                       # (4, 5, 6, 7)
        (2, 3, 2, 2), L.SpatialDropout3D(0.2), L.Reshape((6, 2, 2)), L.SpatialDropout2D(0.3),
        L.Reshape((6, 4)), L.SpatialDropout1D(0.4), L.Flatten())),
    ("core", "Embedding1", lambda: _one(                                         # (10, 20)
        (2, 3), L.Activation("relu"), L.Embedding(input_dim=20, output_dim=30))),
    ("core", "BatchNorm1", lambda: _one((2, 3, 4), L.BatchNormalization(        # (10, 11, 12)
        axis=3, scale=True, center=True, **BN_INIT))),
    ("core", "BatchNorm2", lambda: _one((2, 3, 4), L.BatchNormalization(
        axis=2, scale=False, center=True, **BN_INIT))),
    ("core", "BatchNorm3", lambda: _one((2, 3, 2, 2), L.BatchNormalization(     # (10,11,12,13)
        axis=1, scale=True, center=False, **BN_INIT))),
    ("core", "BatchNorm4", lambda: _one((2, 3, 4), L.BatchNormalization(
        axis=2, scale=False, center=False, **BN_INIT))),
    ("core", "SharedLayer1", _shared),
    # --- test_convolution_layers.py
    ("conv", "Conv3D1", lambda: _one((5, 7, 3, 2), L.Conv3D(                     # (25,32,3,4)
        13, (3, 4, 2), strides=(2, 3, 2), padding="valid", dilation_rate=1,
        activation="relu", use_bias=False))),
    ("conv", "Conv3D2", lambda: _one((4, 5, 3, 2), L.Conv3D(
        13, (3, 4, 3), strides=1, padding="same", dilation_rate=(1, 2, 3),
        activation="relu", use_bias=True))),
    ("conv", "Conv2D1", lambda: _one((7, 10, 3), L.Conv2D(                       # (25, 32, 3)
        13, (3, 4), strides=(2, 3), padding="valid", dilation_rate=1, activation="relu",
        use_bias=False))),
    ("conv", "Conv2D2", lambda: _one((5, 6, 2), L.Conv2D(                        # (13, 23, 10)
        17, 2, strides=1, padding="same", dilation_rate=(3, 2), activation="sigmoid",
        use_bias=True, bias_initializer="glorot_uniform"))),
    ("conv", "Conv1D1", lambda: _one((9, 4), L.Conv1D(                           # (25, 32)
        13, 3, strides=2, padding="valid", dilation_rate=1, activation="relu",
        use_bias=False))),
    ("conv", "Conv1D2", lambda: _one((13, 3), L.Conv1D(                          # (13, 23)
        17, 4, strides=1, padding="same", dilation_rate=3, activation="sigmoid",
        use_bias=True, bias_initializer="glorot_uniform"))),
    ("conv", "Conv1D3", lambda: _one((8, 3), L.Conv1D(                           # (8, 32)
        17, 4, strides=1, padding="causal", dilation_rate=1, activation="tanh",
        use_bias=True, bias_initializer="glorot_uniform"))),
    ("conv", "ZeroPad1D", lambda: _one((4, 3), L.ZeroPadding1D((3, 1)))),        # (10, 12)
    ("conv", "ZeroPad2D", lambda: _one(                                          # (10, 12, 5)
        (3, 4, 2), L.ZeroPadding2D(((3, 1), (4, 3))))),
    ("conv", "ZeroPad3D", lambda: _one(                                          # (10,12,5,4)
        (2, 3, 2, 2), L.ZeroPadding3D(((3, 1), (4, 3), (2, 4))))),
    ("conv", "Cropping1D", lambda: _one((6, 3), L.Cropping1D((3, 1)))),          # (10, 12)
    ("conv", "Cropping2D", lambda: _one(                                         # (10, 12, 5)
        (6, 9, 2), L.Cropping2D(((3, 1), (4, 3))))),
    ("conv", "Cropping3D", lambda: _one(                                         # (10,12,5,4)
        (6, 9, 4, 2), L.Cropping3D(((3, 1), (4, 3), (2, 0))))),
    ("conv", "UpSampling1D", lambda: _one((4, 3), L.UpSampling1D(3))),           # (4, 10)
    ("conv", "UpSampling2D", lambda: _one((2, 3, 2), L.UpSampling2D((3, 4)))),   # (4, 5, 10)
    ("conv", "UpSampling3D", lambda: _one(                                       # (4, 5, 10, 3)
        (2, 2, 2, 2), L.UpSampling3D((3, 4, 2)))),
    # --- test_pooling_layers.py
    ("pool", "MaxPooling1D1", lambda: _one((23, 3), L.MaxPooling1D(3, 2, "valid"))),  # (23,29)
    ("pool", "MaxPooling1D2", lambda: _one((13, 3), L.MaxPooling1D(2, 2, "same"))),   # (13,19)
    ("pool", "AveragePooling1D1", lambda: _one((23, 3), L.AveragePooling1D(2, 3, "valid"))),
    ("pool", "AveragePooling1D2", lambda: _one((13, 3), L.AveragePooling1D(3, 1, "same"))),
    ("pool", "MaxPooling2D1", lambda: _one(                                      # (23, 29, 7)
        (9, 8, 2), L.MaxPooling2D((3, 2), (2, 1), "valid"))),
    ("pool", "MaxPooling2D2", lambda: _one(                                      # (13, 19, 4)
        (7, 10, 2), L.MaxPooling2D((2, 4), (2, 3), "same"))),
    ("pool", "AveragePooling2D1", lambda: _one(                                  # (18, 25, 7)
        (6, 9, 2), L.AveragePooling2D((2, 3), (2, 2), "valid"))),
    ("pool", "AveragePooling2D2", lambda: _one(                                  # (23, 29, 5)
        (7, 9, 2), L.AveragePooling2D((2, 4), (3, 1), "same"))),
    ("pool", "GlobalAveragePooling1D", lambda: _one((16, 11), L.GlobalAveragePooling1D())),
    ("pool", "GlobalMaxPooling1D", lambda: _one((31, 21), L.GlobalMaxPooling1D())),
    ("pool", "GlobalAveragePooling2D", lambda: _one(                             # (16, 11, 13)
        (6, 5, 4), L.GlobalAveragePooling2D())),
    ("pool", "GlobalMaxPooling2D", lambda: _one((7, 6, 5), L.GlobalMaxPooling2D())),  # (31,21,5)
    ("pool", "GlobalAveragePooling3D", lambda: _one(                             # (16,11,4,5)
        (3, 3, 2, 4), L.GlobalAveragePooling3D())),
    ("pool", "GlobalMaxPooling3D", lambda: _one(                                 # (31,21,6,7)
        (3, 4, 2, 3), L.GlobalMaxPooling3D())),
    # --- test_recurrent_layers.py
    ("rnn", "SimpleRNN1", lambda: _one(None, L.SimpleRNN(                        # (4, 4, 46)
        17, activation="relu", return_sequences=False, stateful=True),
        batch_shape=(4, 4, 5))),
    ("rnn", "SimpleRNN2", lambda: _one((6, 3), L.SimpleRNN(                      # (34, 17)
        40, go_backwards=True, return_sequences=True, activation="tanh"))),
    ("rnn", "SimpleRNN3", lambda: _one((6, 3), L.SimpleRNN(
        40, go_backwards=False, return_sequences=True, activation="tanh", use_bias=False))),
    ("rnn", "LSTM1", lambda: _one((8, 3), L.LSTM(                                # (23, 32)
        19, activation="relu", return_sequences=False, recurrent_activation="hard_sigmoid"))),
    ("rnn", "LSTM2", lambda: _one((4, 5), L.LSTM(                                # (4, 80)
        23, go_backwards=True, return_sequences=True, activation="sigmoid",
        recurrent_activation="tanh"))),
    ("rnn", "LSTM3", lambda: _one(None, L.LSTM(                                  # (3, 4, 80)
        23, go_backwards=False, return_sequences=True, activation="sigmoid",
        recurrent_activation="tanh", use_bias=False, stateful=True), batch_shape=(3, 4, 5))),
    ("rnn", "GRU1", lambda: _one((6, 3), L.GRU(                                  # (12, 46)
        17, activation="softmax", recurrent_activation="softsign",
        return_sequences=False))),
    ("rnn", "GRU2", lambda: _one(None, L.GRU(                                    # (5, 12, 46)
        17, activation="softplus", recurrent_activation="sigmoid", return_sequences=True,
        go_backwards=True, reset_after=True, stateful=True), batch_shape=(5, 6, 3))),
    ("rnn", "GRU3", lambda: _one((6, 3), L.GRU(                                  # (12, 46)
        17, activation="softplus", recurrent_activation="sigmoid", return_sequences=True,
        go_backwards=False, reset_after=True, use_bias=False))),
    # --- test_merge_layers.py
    ("merge", "Dot1", lambda: _merge(L.Dot, [(3, 4), (4, 5)], axes=(2, 1))),     # (10,8),(8,12)
    ("merge", "Dot2", lambda: _merge(L.Dot, [(3, 4), (4, 4)], axes=(2, 2),       # (5,9),(9,9)
                                     normalize=True)),
    ("merge", "Add1", lambda: _merge(L.Add, [(2, 3, 2)] * 3)),                   # (10, 8, 12)
    ("merge", "Subtract1", lambda: _merge(L.Subtract, [(2, 2, 2, 3)] * 2)),      # (10, 8, 2, 3)
    ("merge", "Multiply1", lambda: _merge(L.Multiply, [(3, 2)] * 4)),            # (9, 12)
    ("merge", "Maximum1", lambda: _merge(L.Maximum, [(3, 2)] * 4)),              # (9, 14)
    ("merge", "Minimum1", lambda: _merge(L.Minimum, [(2, 2, 2)] * 4)),           # (7, 12, 2)
    ("merge", "Average1", lambda: _merge(L.Average, [(2, 3, 2)] * 4)),           # (4, 12, 2)
    ("merge", "Concatenate1", lambda: _merge(
        L.Concatenate, [(4, 3, 2), (4, 3, 3), (4, 3, 6)], axis=3)),
    ("merge", "Concatenate2", lambda: _merge(
        L.Concatenate, [(2, 3, 6), (2, 2, 6), (2, 4, 6)], axis=2)),
    ("merge", "Concatenate3", lambda: _merge(                                    # (_, 3, 6, 3)
        L.Concatenate, [(2, 3, 2, 3), (3, 3, 2, 3), (1, 3, 2, 3)], axis=1)),
    # --- test_advanced_activation_layers.py (keras2c: (9,7,6,3), (3,6,9,3), (13,6,9,13), ...)
    ("act", "LeakyReLU", lambda: _one((2, 3, 2, 3), L.LeakyReLU(alpha=0.5))),
    ("act", "PReLU", lambda: _one((2, 3, 2, 3), L.PReLU(alpha_initializer="glorot_uniform"))),
    ("act", "ELU", lambda: _one((2, 3, 2, 3), L.ELU(alpha=1.3))),
    ("act", "ThresholdedReLU", lambda: _one((2, 3, 2, 3), L.ReLU(threshold=0.3))),
    ("act", "ReLU", lambda: _one((2, 3, 2, 3), L.ReLU(
        max_value=1.0, negative_slope=1.0, threshold=0.3))),
    # --- test_wrappers.py
    ("wrap", "Bidirectional1", lambda: _seq(
        L.Bidirectional(L.LSTM(10, return_sequences=True), input_shape=(5, 10),
                        merge_mode="concat"),
        L.Bidirectional(L.LSTM(10, return_sequences=True), merge_mode="mul"),
        L.Dense(5))),
    ("wrap", "Bidirectional2", lambda: _seq(
        L.Dense(5, input_shape=(5, 10)),
        L.Bidirectional(L.LSTM(10, return_sequences=True), merge_mode="ave"),
        L.Bidirectional(L.LSTM(10, return_sequences=True), merge_mode="concat"),
        L.Dense(5))),
    ("wrap", "TimeDistributed1", lambda: _one((8, 5), L.TimeDistributed(
        L.Dense(7, use_bias=True)))),
    ("wrap", "TimeDistributed2", lambda: _seq(
        L.TimeDistributed(L.Dense(7, use_bias=True), input_shape=(8, 5)), L.Dense(10))),
    ("wrap", "TimeDistributed3", lambda: _seq(
        L.Dense(10, input_shape=(8, 5)), L.TimeDistributed(L.Dense(7, use_bias=True)))),
    ("wrap", "TimeDistributed4", lambda: _seq(
        L.Dense(10, input_shape=(8, 5)), L.TimeDistributed(L.Dense(7, use_bias=True)),
        L.Dense(10))),
    ("wrap", "TimeDistributed5", lambda: _seq(
        L.Dense(10, input_shape=(4, 8, 5)), L.TimeDistributed(L.Conv1D(7, kernel_size=2)),
        L.Dense(10))),
    ("wrap", "TimeDistributed6", lambda: _seq(                                  # (4, 7, 8, 5)
        L.Dense(10, input_shape=(2, 3, 4, 5)), L.TimeDistributed(L.Conv2D(7, kernel_size=2)),
        L.Dense(10))),
    # --- test_convtranspose_layers.py, test_split_layers.py (seeded)
    *[("convT", n, f) for n, f in _conv1d_transpose_cases()],
    *[("split", n, f) for n, f in _split_cases()],
]

#: The configurations the compiler refuses (each with one CompileError naming the layer): the
#: stateful RNNs (the generated predict starts each window from zero states). Any other
#: refusal fails.
REFUSED = re.compile(r"SimpleRNN1|LSTM3|GRU2")

#: The groups compiled with allow_lambda: keras2c's Lambda(tf.split), which Keras 3 loads only
#: with safe_mode=False (a split is a linear map: each output a slice of the input).
ALLOW_LAMBDA = {"split"}

#: How many of :data:`CONFIGS` compile and match Keras (all but the refused ones).
EXPECTED_PASSED = 92

#: Models whose inputs are indices (an Embedding casts them to int32): their Keras Jacobian
#: is zero, so they are checked on outputs that vary and a C Jacobian that is zero too.
INDEX_INPUTS = {"Embedding1"}

# ---- helpers --------------------------------------------------------------------------------

def _outputs(model, xs):
    y = model(xs if len(xs) > 1 else xs[0], training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    n = xs[0].shape[0]
    return tf.concat([tf.reshape(t, (n, -1)) for t in ys], axis=1)


def keras_out_and_jacobian(model, xs: list[np.ndarray], n_jac: int):
    y = _outputs(model, [tf.constant(x) for x in xs]).numpy()
    Js = tape_jacobians(lambda xt: _outputs(model, xt), [x[:n_jac] for x in xs])
    return y, np.concatenate(Js, axis=2)


def build_programs(work: Path, compiled: dict[str, tuple[Path, int, int]],
                   jobs: int = 2) -> Batch:
    """One host program from the C that compile_model wrote for each configuration (one
    runtime), built with ``jobs`` parallel cc calls."""
    protos, table, sizes, sources = [], [], {}, []
    for k, (name, (out_dir, n_in, n_out)) in enumerate(compiled.items()):
        sources.append(out_dir / f"{name}.c")
        protos.append(f"void {name}_predict(const float *, float *);\n"
                      f"void {name}_predict_jacobian(const float *, float *, float *);")
        table.append(f"    {{{n_in}, {n_out}, {name}_predict, {name}_predict_jacobian}},")
        sizes[name] = (k, n_in, n_out)
    first = next(iter(compiled.values()))[0]
    (work / "batch_main.c").write_text(MAIN % {"protos": "\n".join(protos),
                                               "table": "\n".join(table)})
    sources += [first / "nnmpc_nn.c", work / "batch_main.c"]
    chunks = [c for c in (sources[i::jobs] for i in range(jobs)) if c]

    def cc(chunk):
        return subprocess.run(["cc", *CFLAGS, "-c", *map(str, chunk)], cwd=work,
                              capture_output=True, text=True, check=False)

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(cc, chunks))
    errs = [r.stderr for r in results if r.returncode]
    assert not errs, "cc failed:\n" + "\n".join(e[:4000] for e in errs)
    exe = work / "batch"
    subprocess.run(["cc", *[str(work / (s.stem + ".o")) for s in sources], "-o", str(exe),
                    "-lm"], check=True, capture_output=True, text=True)
    return Batch(exe, sizes)


def _c_name(name: str) -> str:
    return "k2c_" + name.lower()


# ---- the test -------------------------------------------------------------------------------

def _series(names) -> str:
    """Names, with numbered series (keras2c's randomised tests) as one ``Name_0..9``."""
    out: dict[str, list[str]] = {}
    for n in names:
        m = re.fullmatch(r"(.*)_(\d+)", n)
        out.setdefault(m.group(1) if m else n, []).append(m.group(2) if m else "")
    return ", ".join(k if ks == [""] else f"{k}_{ks[0]}..{ks[-1]}" for k, ks in out.items())


def run_configs(tmp_path: Path, chosen, summary) -> None:
    t0 = time.perf_counter()
    not_built, rejected, compiled, models = {}, {}, {}, {}
    rng = np.random.default_rng(77)
    for k, (group, name, build) in enumerate(chosen):
        keras.utils.set_random_seed(k)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = build()
        except Exception as e:                     # noqa: BLE001 - Keras 3 refuses the config
            not_built[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            continue
        randomise(model, 100 + k)
        path = tmp_path / f"{name}.keras"
        model.save(path)
        out = tmp_path / name
        try:
            compile_model(path, out, name=_c_name(name), allow_lambda=group in ALLOW_LAMBDA)
        except CompileError as e:
            msg = str(e)
            assert "\n" not in msg, f"{name}: {msg}"
            assert any(f"layer '{layer.name}'" in msg for layer in model.layers), \
                f"{name}: the CompileError names no layer of the model: {msg}"
            rejected[name] = msg
            continue
        n_in = sum(int(np.prod(i.shape[1:])) for i in model.inputs)
        n_out = sum(int(np.prod(o.shape[1:])) for o in model.outputs)
        compiled[_c_name(name)] = (out, n_in, n_out)
        models[name] = model
    t_compile = time.perf_counter() - t0

    batch = build_programs(tmp_path, compiled) if compiled else None
    t_cc = time.perf_counter() - t0 - t_compile

    passed, failures = [], {}
    for name, model in models.items():
        xs = [rng.uniform(-2, 2, (12,) + tuple(i.shape[1:])).astype(np.float32)
              for i in model.inputs]
        y_k, J_k = keras_out_and_jacobian(model, xs, n_jac=4)
        y_c, J_c = batch.run(_c_name(name), np.concatenate([x.reshape(12, -1) for x in xs], 1))
        ey, eJ = rel_err(y_c, y_k), rel_err(J_c[:4], J_k)
        print(f"{name}: output error {ey:.1e}, Jacobian error {eJ:.1e}")
        if name in INDEX_INPUTS:                   # piecewise constant in its float indices
            if y_k.std(axis=0).max() < 1e-3:
                failures[name] = "the Keras outputs do not vary on the test inputs"
            elif ey <= 1e-5 and not np.any(J_k) and not np.any(J_c):
                passed.append(name)
            else:
                failures[name] = f"output error {ey:.2e}, Jacobian not zero"
        elif np.abs(J_k).max() < 1e-3:             # a trivial model would prove nothing
            failures[name] = "the Keras Jacobian is zero on the test inputs"
        elif ey <= 1e-5 and eJ <= 1e-4:
            passed.append(name)
        else:
            failures[name] = f"output error {ey:.2e}, Jacobian error {eJ:.2e}"
    t_all = time.perf_counter() - t0

    for name, why in not_built.items():
        print(f"not built by Keras 3: {name}: {why}")
    for name, why in rejected.items():
        print(f"rejected: {name}: {why}")
    total, built = len(chosen), len(chosen) - len(not_built)
    summary(f"keras2c layer configurations: {total} re-created, {built} built by Keras 3, "
            f"{len(passed)} passed, {len(failures)} failed "
            f"(rejected: {len(rejected)}: {_series(rejected) or 'none'}; "
            f"not built by Keras 3: {_series(not_built) or 'none'})")
    print(f"timings: Keras + compile_model {t_compile:.1f} s, cc {t_cc:.1f} s, "
          f"total {t_all:.1f} s")
    assert not failures, failures
    assert passed, "no configuration compiled"
    unexpected = {n: why for n, why in rejected.items() if not REFUSED.fullmatch(n)}
    assert not unexpected, unexpected
    return passed, not_built


def test_keras2c_layer_configurations(tmp_path, summary):
    passed, not_built = run_configs(tmp_path, CONFIGS, summary)
    if not not_built:
        assert len(passed) == EXPECTED_PASSED
