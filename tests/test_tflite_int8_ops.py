"""int8 SOFTMAX, TRANSPOSE, PAD/PADV2, several inputs and outputs, and the TFLite Micro
hello_world model.

Every int8 output is compared with the TFLite interpreter's reference kernels
(``OpResolverType.BUILTIN_REF``, as ``zoo.tflite_interpreter`` sets it up) and must be equal bit
for bit, from ``NAME_predict_int8`` on random int8 inputs and on quantised real data;
``NAME_predict`` (float in, float out) must give the dequantised reference exactly.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nnmpc.compiler import compile_model, load_model
from support import HOST_CFLAGS, build_host, rel_err
from zoo import tflite_interpreter

HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include "{name}.h"
/* int8 inputs on stdin; per row: NAME_predict_int8's output, then NAME_predict's on the
 * dequantised input (floats). in_scale/in_zp: each input value's quantisation. */
static const float in_scale[{NAME}_INPUT_SIZE] = {{ {scales} }};
static const int in_zp[{NAME}_INPUT_SIZE] = {{ {zps} }};
int main(void)
{{
    static int8_t x[{NAME}_INPUT_SIZE], y[{NAME}_OUTPUT_SIZE];
    static float xf[{NAME}_INPUT_SIZE], yf[{NAME}_OUTPUT_SIZE];
    int i;
    while (fread(x, 1, {NAME}_INPUT_SIZE, stdin) == {NAME}_INPUT_SIZE) {{
        {name}_predict_int8(x, y);
        for (i = 0; i < {NAME}_INPUT_SIZE; ++i)
            xf[i] = in_scale[i] * (float)(x[i] - in_zp[i]);
        {name}_predict(xf, yf);
        fwrite(y, 1, {NAME}_OUTPUT_SIZE, stdout);
        fwrite(yf, sizeof(float), {NAME}_OUTPUT_SIZE, stdout);
    }}
    return 0;
}}
"""


def _convert(model, path: Path, rep, int8: bool = True) -> Path:
    """Full-integer (int8 in and out) TFLite conversion; ``rep`` yields one list (or dict by
    input name) of batch-1 float arrays per calibration sample."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


def _rows(shape, data):
    def rep():
        for row in data:
            yield [row.reshape((1,) + tuple(shape)).astype(np.float32)]
    return rep


class Int8Run:
    """A compiled int8 model and its reference interpreter, fed the same concatenated inputs."""

    def __init__(self, path: Path, out: Path, name: str) -> None:
        self.path, self.name = path, name
        d = out / name
        compile_model(path, d, name=name)
        self.header = (d / f"{name}.h").read_text()
        self.it = tflite_interpreter(path, reference=True)
        self.ins = self.it.get_input_details()
        self.outs = self.it.get_output_details()
        self.out = self.outs[0]
        assert all(i["dtype"] == np.int8 for i in self.ins + self.outs)
        self.sizes = [int(np.prod(i["shape"])) for i in self.ins]
        scales = [float(i["quantization"][0]) for i, n in zip(self.ins, self.sizes) for _ in range(n)]
        zps = [int(i["quantization"][1]) for i, n in zip(self.ins, self.sizes) for _ in range(n)]
        src = out / f"h_{name}.c"
        src.write_text(HARNESS.format(name=name, NAME=name.upper(),
                                      scales=", ".join(f"{float(np.float32(s))!r}f" for s in scales),
                                      zps=", ".join(map(str, zps))))
        self.exe = out / f"h_{name}"
        subprocess.run(["cc", *HOST_CFLAGS, f"-I{d}", str(src), *map(str, sorted(d.glob("*.c"))),
                        "-o", str(self.exe)], check=True, capture_output=True)
        self.out_sizes = [int(np.prod(o["shape"])) for o in self.outs]
        self.n_in, self.n_out = sum(self.sizes), sum(self.out_sizes)

    def reference(self, xs: np.ndarray, it=None) -> np.ndarray:
        it = it or self.it
        ys = []
        for row in xs:
            off = 0
            for i, n in zip(self.ins, self.sizes):
                it.set_tensor(i["index"], row[off:off + n].reshape(i["shape"]))
                off += n
            it.invoke()
            ys.append(np.concatenate([it.get_tensor(o["index"]).reshape(-1) for o in self.outs]))
        return np.array(ys)

    def run(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = subprocess.run([str(self.exe)], input=np.ascontiguousarray(xs, np.int8).tobytes(),
                             capture_output=True, check=True).stdout
        rows = np.frombuffer(raw, np.uint8).reshape(len(xs), self.n_out * 5)
        return (rows[:, :self.n_out].copy().view(np.int8),
                rows[:, self.n_out:].copy().view(np.float32))

    def check(self, xs: np.ndarray) -> np.ndarray:
        """C equals the reference interpreter bit for bit (both entry points); the reference."""
        ref = self.reference(xs)
        got, got_f = self.run(xs)
        assert np.array_equal(got, ref), f"{np.sum(got != ref)} of {ref.size} outputs differ"
        s = np.concatenate([np.full(n, np.float32(o["quantization"][0]), np.float32)
                            for o, n in zip(self.outs, self.out_sizes)])
        z = np.concatenate([np.full(n, o["quantization"][1], np.float32)
                            for o, n in zip(self.outs, self.out_sizes)])
        assert np.array_equal(got_f, (s * (ref.astype(np.float32) - z)).astype(np.float32))
        return ref

    def quantise(self, x: np.ndarray) -> np.ndarray:
        (s, z), = [i["quantization"] for i in self.ins]
        return np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)


def _random_int8(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, size)).astype(np.int8)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("int8_ops")


# ---- SOFTMAX -----------------------------------------------------------------------------------

def test_int8_softmax_is_bit_exact_at_three_input_scales(out):
    """SOFTMAX over the last axis of a (4, 8) input at three input scales: the input's own
    (~0.03), x 12 (~0.4: input differences below diff_min = -62 give -128 without an exp) and
    x 0.02 (~6e-4). Random int8 inputs cover every difference from 0 to -255. The converter
    rescales the softmax outputs before the CONCATENATION (int8 to int8 QUANTIZE ops)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(3)
    x = keras.Input(batch_shape=(1, 4, 8))
    ys = [L.Softmax()(x), L.Softmax()(L.Rescaling(12.0)(x)), L.Softmax()(L.Rescaling(0.02)(x))]
    m = keras.Model(x, L.Concatenate()(ys))
    rep = np.random.default_rng(0).uniform(-4, 4, (100, 4, 8))
    r = Int8Run(_convert(m, out / "softmax3.tflite", _rows((4, 8), rep)), out, "softmax3")
    g = load_model(r.path)
    sms = [n for n in g.nodes if n.op == "qsoftmax"]
    assert len(sms) == 3 and len({n.attrs["left_shift"] for n in sms}) == 3
    assert any(n.attrs["diff_min"] > -255 for n in sms)  # one cut-off inside the int8 range
    xs = _random_int8(400, r.n_in, 1)
    ref = r.check(xs)
    assert len(np.unique(ref)) > 100  # not degenerate
    # the interpreter's optimised kernels (a float exp table): within 1 LSB of the reference
    # (about 0.1 % of these outputs differ; see the classifier test for why)
    optimised = r.reference(xs, tflite_interpreter(r.path, reference=False))
    assert np.abs(optimised.astype(int) - ref).max() <= 1


def test_int8_trained_classifier_softmax_is_bit_exact_and_near_the_optimised_kernels(out):
    """A small classifier (4 features, 3 Gaussian classes, Dense 16 relu, Dense 3, softmax)
    trained for a few epochs: bit-exact with the reference interpreter on quantised test data
    and random inputs, and as accurate as the float model.

    The interpreter's default (optimised) SOFTMAX is a different algorithm: a 256-entry float
    table of exp(scale (d - 255)) and a float sum, rounded to the 1/256 grid. It differs from
    the reference's gemmlowp fixed-point exp (what nnmpc implements) by at most 1 LSB (1/256):
    both round the same real softmax to a step of 1/256 from approximations of it that differ
    by far less than a step, so they part only where the value is near a rounding boundary
    (here no output differs; on the three-scale test about 0.1 % do, by 1)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    centres = rng.normal(0, 2, (3, 4))
    labels = rng.integers(0, 3, 900)
    feats = (centres[labels] + rng.normal(0, 0.8, (900, 4))).astype(np.float32)
    m = keras.Sequential([keras.Input(batch_shape=(1, 4)), L.Dense(16, activation="relu"),
                          L.Dense(3), L.Softmax()])
    train = keras.Sequential([keras.Input((4,))] + m.layers)
    train.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    train.fit(feats[:600], labels[:600], epochs=15, batch_size=64, verbose=0)
    r = Int8Run(_convert(m, out / "classifier.tflite", _rows((4,), feats[:200])), out, "classifier")
    test_q = r.quantise(feats[600:])
    ref = r.check(test_q)
    r.check(_random_int8(300, 4, 2))
    acc_int8 = np.mean(np.argmax(ref, axis=1) == labels[600:])
    acc_float = np.mean(np.argmax(train.predict(feats[600:], verbose=0), axis=1) == labels[600:])
    assert acc_int8 >= 0.8 and acc_int8 >= acc_float - 0.03, (acc_int8, acc_float)
    optimised = r.reference(np.concatenate([test_q, _random_int8(300, 4, 2)]),
                            tflite_interpreter(r.path, reference=False))
    exact = r.reference(np.concatenate([test_q, _random_int8(300, 4, 2)]))
    assert np.abs(optimised.astype(int) - exact).max() <= 1


# ---- TRANSPOSE, PAD, PADV2 ---------------------------------------------------------------------

class _PadValue:
    """keras.ops.pad with a non-zero constant: the converter writes PADV2."""

    @staticmethod
    def layer(keras):
        class PadValue(keras.layers.Layer):
            def call(self, x):
                return keras.ops.pad(x, ((0, 0), (1, 2), (0, 0)), constant_values=0.75)
        return PadValue()


def test_int8_transpose_pad_padv2_are_exact_data_movement(out):
    """PADV2 (a constant of 0.75 after a relu), TRANSPOSE (Permute 2-D and 3-D), PAD (zero
    padding 1-D and 2-D, with the zero point) and CONV_2D on a padded and permuted input."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input(batch_shape=(1, 5, 3)), L.Dense(4, activation="relu"),
                          _PadValue.layer(keras), L.Permute((2, 1)), L.ZeroPadding1D((1, 0)),
                          L.Reshape((5, 8, 1)), L.ZeroPadding2D(((0, 1), (2, 0))),
                          L.Permute((2, 1, 3)), L.Conv2D(2, 3), L.Permute((3, 1, 2)),
                          L.Flatten(), L.Dense(3)])
    rep = np.random.default_rng(0).uniform(-2, 2, (100, 5, 3))
    r = Int8Run(_convert(m, out / "movement.tflite", _rows((5, 3), rep)), out, "movement")
    ops = [n.op for n in load_model(r.path).nodes]
    assert ops.count("qpad") == 3 and ops.count("transpose") == 3, ops
    pads = [n for n in load_model(r.path).nodes if n.op == "qpad"]
    assert len({n.attrs["value"] for n in pads}) == 2  # the zero point, and PADV2's constant
    r.check(_random_int8(300, r.n_in, 3))


def test_int8_transpose_of_five_axes_is_one_clear_error(out):
    """A TRANSPOSE the int8 kernel cannot do (five axes of size > 1) is refused in one line
    naming the op, the tensor and the attribute."""
    import keras
    from nnmpc.compiler.errors import CompileError

    L = keras.layers
    m = keras.Sequential([keras.Input(batch_shape=(1, 2, 3, 2, 3, 2)),
                          L.Permute((2, 1, 3, 4, 5)), L.Flatten(), L.Dense(2)])
    rep = np.random.default_rng(0).uniform(-1, 1, (20, 2, 3, 2, 3, 2))
    p = _convert(m, out / "transpose5.tflite", _rows((2, 3, 2, 3, 2), rep))
    with pytest.raises(CompileError) as e:
        load_model(p)
    msg = str(e.value)
    assert "\n" not in msg and "TRANSPOSE" in msg and "perm" in msg and "serving_default" in msg


# ---- several inputs ----------------------------------------------------------------------------

def test_int8_model_with_two_inputs_reads_them_concatenated_in_model_order(out):
    """Two Keras inputs (different scales), concatenated and added: the generated predict
    functions take the inputs concatenated in the TFLite subgraph's order (as the float path
    does; the converter may list them unlike Keras), each quantised its own way, and the
    header lists them with their offsets, sizes, scales and zero points."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(6)
    a = keras.Input(batch_shape=(1, 3), name="a")
    b = keras.Input(batch_shape=(1, 4), name="b")
    c = L.Concatenate()([L.Dense(5, activation="tanh")(a), b])
    d = L.Add()([L.Dense(4)(c), b])
    m = keras.Model([a, b], L.Dense(2)(d))
    rng = np.random.default_rng(6)

    def rep():
        for _ in range(100):
            yield {"a": rng.uniform(-2, 2, (1, 3)).astype(np.float32),
                   "b": rng.uniform(-5, 5, (1, 4)).astype(np.float32)}
    r = Int8Run(_convert(m, out / "two_inputs.tflite", rep), out, "two_inputs")
    assert len(r.ins) == 2 and len({tuple(i["quantization"]) for i in r.ins}) == 2
    g = load_model(r.path)
    assert [g.tensors[t].size for t in g.inputs] == r.sizes
    off = 0
    for k, (i, n) in enumerate(zip(r.ins, r.sizes)):
        assert f"TWO_INPUTS_INPUT{k}_OFFSET {off}\n" in r.header
        assert f"TWO_INPUTS_INPUT{k}_SIZE {n}\n" in r.header
        assert f"TWO_INPUTS_INPUT{k}_ZERO_POINT {i['quantization'][1]}\n" in r.header
        assert i["name"] in r.header
        off += n
    assert "TWO_INPUTS_INPUT_SCALE" not in r.header  # no single input scale to give
    r.check(_random_int8(300, r.n_in, 4))


# ---- several outputs ---------------------------------------------------------------------------

def _three_outputs(keras):
    """One input, three outputs quantised three ways; one of them (h) also read inside."""
    L = keras.layers
    keras.utils.set_random_seed(7)
    a = keras.Input(batch_shape=(1, 3), name="a")
    h = L.Dense(5, activation="tanh", name="h")(a)
    return keras.Model(a, [L.Dense(2, name="o1")(h), h,
                           L.Dense(3, activation="sigmoid", name="o2")(h)])


def _uniform_rep(size: int, seed: int, lim: float = 2.0):
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(100):
            yield [rng.uniform(-lim, lim, (1, size)).astype(np.float32)]
    return rep


def test_int8_model_with_several_outputs_writes_them_concatenated_in_model_order(out):
    """Three outputs (different scales and zero points, one an intermediate tensor read by the
    other two): written concatenated in the TFLite subgraph's output order (as the float path
    writes them), NAME_predict dequantising each with its own, the header listing them; bit-
    exact with the interpreter."""
    import keras

    r = Int8Run(_convert(_three_outputs(keras), out / "three_out.tflite", _uniform_rep(3, 7)),
                out, "three_out")
    assert len(r.outs) == 3 and len({tuple(o["quantization"]) for o in r.outs}) == 3
    g = load_model(r.path)
    assert [g.tensors[t].size for t in g.outputs] == r.out_sizes
    off = 0
    for k, (o, n) in enumerate(zip(r.outs, r.out_sizes)):
        assert f"THREE_OUT_OUTPUT{k}_OFFSET {off}\n" in r.header
        assert f"THREE_OUT_OUTPUT{k}_SIZE {n}\n" in r.header
        assert f"THREE_OUT_OUTPUT{k}_ZERO_POINT {o['quantization'][1]}\n" in r.header
        assert f"output[{off} .. {off + n - 1}]: {o['name']}," in r.header
        off += n
    assert "THREE_OUT_OUTPUT_SCALE" not in r.header  # no single output scale to give
    assert "THREE_OUT_INPUT_SCALE" in r.header
    r.check(_random_int8(400, r.n_in, 8))
    real = np.random.default_rng(9).uniform(-2, 2, (200, 3)).astype(np.float32)
    r.check(r.quantise(real))


def test_int8_outputs_that_are_an_input_or_one_tensor_twice_are_copies(out):
    """Keras outputs [d, b, d]: the converter lists the input b as an output and d twice; each
    is a copy of the int8 values (quantised alike), bit-exact with the interpreter."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(8)
    b = keras.Input(batch_shape=(1, 4), name="b")
    d = L.Dense(3, name="d")(b)
    r = Int8Run(_convert(keras.Model(b, [d, b, d]), out / "echo.tflite", _uniform_rep(4, 8)),
                out, "echo")
    assert len(r.outs) == 3 and sum(r.out_sizes) == 10
    assert len({o["index"] for o in r.outs}) == 2  # one tensor twice
    ref = r.check(_random_int8(300, r.n_in, 5))
    xs = _random_int8(300, r.n_in, 5)
    at = [k for k, o in enumerate(r.outs) if o["index"] == r.ins[0]["index"]]
    if at:  # the input given back
        off = sum(r.out_sizes[:at[0]])
        assert np.array_equal(ref[:, off:off + 4], xs)


FLOAT_HARNESS = r"""
#include <stdio.h>
#include "{name}.h"
int main(void)
{{
    static float x[{NAME}_INPUT_SIZE], y[{NAME}_OUTPUT_SIZE];
    while (fread(x, sizeof(float), {NAME}_INPUT_SIZE, stdin) == {NAME}_INPUT_SIZE) {{
        {name}_predict(x, y);
        fwrite(y, sizeof(float), {NAME}_OUTPUT_SIZE, stdout);
    }}
    return 0;
}}
"""


def test_int8_model_with_float_edges_and_several_outputs(out):
    """The same three outputs with float input and outputs (QUANTIZE in, a DEQUANTIZE per
    output): NAME_predict equals the interpreter's float outputs exactly."""
    import keras
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(_three_outputs(keras))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _uniform_rep(3, 7)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = out / "three_out_float.tflite"
    path.write_bytes(conv.convert())
    it = tflite_interpreter(path, reference=True)
    (i,), outs = it.get_input_details(), it.get_output_details()
    assert i["dtype"] == np.float32 and all(o["dtype"] == np.float32 for o in outs)
    name = "three_out_float"
    d = out / name
    compile_model(path, d, name=name)
    assert "_predict_int8" in (d / f"{name}.h").read_text()
    src = out / f"h_{name}.c"
    src.write_text(FLOAT_HARNESS.format(name=name, NAME=name.upper()))
    exe = out / f"h_{name}"
    subprocess.run(["cc", *HOST_CFLAGS, f"-I{d}", str(src), *map(str, sorted(d.glob("*.c"))),
                    "-o", str(exe)], check=True, capture_output=True)
    xs = np.random.default_rng(10).uniform(-2.5, 2.5, (300, 3)).astype(np.float32)
    got = np.frombuffer(subprocess.run([str(exe)], input=xs.tobytes(), capture_output=True,
                                       check=True).stdout, np.float32).reshape(len(xs), -1)
    ref = []
    for row in xs:
        it.set_tensor(i["index"], row.reshape(i["shape"]))
        it.invoke()
        ref.append(np.concatenate([it.get_tensor(o["index"]).reshape(-1) for o in outs]))
    assert np.array_equal(got, np.array(ref))


# ---- TensorFlow Lite Micro's hello_world ------------------------------------------------------

@pytest.fixture(scope="session")
def hello_world(tmp_path_factory):
    """TFLite Micro's hello_world model recreated: its train script's data and model, with
    fewer epochs. The shipped files (hello_world_float.tflite, hello_world_int8.tflite) cannot
    be downloaded here (no internet), so they are rebuilt the same way: 1000 samples of
    x ~ U(0, 2 pi) (numpy and TF seeds 1, shuffled), y = sin x + 0.1 N(0, 1), split 60/20/20;
    Dense(16, relu), Dense(16, relu), Dense(1); adam, mse, batch 64 (the script trains 500
    epochs, here 40: a looser fit); converted to float TFLite, and to full-integer int8 (int8 input and
    output) with the first 500 training x as the representative dataset."""
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("hello_world")
    np.random.seed(1)
    tf.random.set_seed(1)
    keras.utils.set_random_seed(1)
    samples = 1000
    x = np.random.uniform(low=0, high=2 * math.pi, size=samples).astype(np.float32)
    np.random.shuffle(x)
    y = (np.sin(x) + 0.1 * np.random.randn(*x.shape)).astype(np.float32)
    train_split, test_split = int(0.6 * samples), int(0.2 * samples + 0.6 * samples)
    x_train, x_test, _ = np.split(x, [train_split, test_split])
    y_train, y_test, _ = np.split(y, [train_split, test_split])
    L = keras.layers
    model = keras.Sequential([keras.Input((1,)), L.Dense(16, activation="relu"),
                              L.Dense(16, activation="relu"), L.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    # (the script also passes validation_data, which only reports: left out to save time)
    model.fit(x_train, y_train, epochs=40, batch_size=64, verbose=0)
    fp = _convert(model, d / "hello_world_float.tflite", None, int8=False)

    def rep():
        for i in range(500):
            yield [x_train[i].reshape(1, 1)]
    q = _convert(model, d / "hello_world_int8.tflite", rep)
    return fp, q, x_test, y_test


def test_hello_world_float_matches_the_interpreter(hello_world, out):
    fp, _, x_test, _ = hello_world
    g = load_model(fp)
    assert [n.op for n in g.nodes] == ["dense", "dense", "dense"]
    compile_model(fp, out / "hw_float", name="hw_float")
    host = build_host(out / "hw_float", "hw_float", 1, 1)
    xs = np.concatenate([x_test, np.linspace(-1, 7.5, 200, dtype=np.float32)])[:, None]
    it = tflite_interpreter(fp, reference=False)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ref = []
    for v in xs:
        it.set_tensor(i["index"], v.reshape(1, 1))
        it.invoke()
        ref.append(it.get_tensor(o["index"]).reshape(-1).copy())
    y_c, _ = host.run(xs)
    assert rel_err(y_c, np.array(ref)) <= 1e-5


def test_hello_world_int8_is_bit_exact_with_the_interpreter(hello_world, out):
    _, q, x_test, _ = hello_world
    r = Int8Run(q, out, "hw_int8")
    assert [n.op for n in load_model(q).nodes] == ["qdense", "qdense", "qdense"]
    ref = r.check(np.concatenate([r.quantise(x_test[:, None]), _random_int8(256, 1, 0)]))
    # every int8 input value, and the model still fits sin (a loose check of the recreation)
    r.check(np.arange(-128, 128, dtype=np.int8)[:, None])
    s, z = r.out["quantization"]
    y = s * (ref[:len(x_test), 0].astype(np.float32) - z)
    assert np.mean(np.abs(y - np.sin(x_test))) < 0.45  # predicting 0 would give 2/pi


def test_tflite_micros_shipped_sine_model_matches_the_interpreter(out):
    """The hello_world sine model as TensorFlow Lite Micro ships it: `sine_float.tflite` from
    the `tflite-micro` wheel on PyPI (a test-only dependency, requirements-nodeps.txt), not a
    recreation. Compiled, it matches the TFLite interpreter within 1e-5 (1 + |y|) over the
    trained range and beyond, and still fits sin x."""
    import importlib.resources

    try:
        src = importlib.resources.files("tflite_micro") / "python" / "tflite_micro" / \
            "sine_float.tflite"
        blob = src.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("tflite-micro is not installed (pip install --no-deps tflite-micro)")
    fp = out / "sine_float.tflite"
    fp.write_bytes(blob)
    assert [n.op for n in load_model(fp).nodes] == ["dense", "dense", "dense"]
    compile_model(fp, out / "sine", name="sine")
    host = build_host(out / "sine", "sine", 1, 1)
    xs = np.linspace(-1.0, 7.5, 400, dtype=np.float32)[:, None]
    it = tflite_interpreter(fp, reference=False)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ref = []
    for v in xs:
        it.set_tensor(i["index"], v.reshape(1, 1))
        it.invoke()
        ref.append(it.get_tensor(o["index"]).reshape(-1).copy())
    y_c, _ = host.run(xs)
    assert rel_err(y_c, np.array(ref)) <= 1e-5
    inside = (xs[:, 0] >= 0) & (xs[:, 0] <= 2 * np.pi)
    assert np.mean(np.abs(y_c[inside, 0] - np.sin(xs[inside, 0]))) < 0.1
