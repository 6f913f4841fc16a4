"""TensorFlow Lite Micro's example models `micro_speech` and `person_detect`, re-created.

The shipped files (micro_speech_quantized.tflite, person_detect.tflite) are downloaded by TFLite
Micro's build from its storage bucket and are in no package this project's machines can
install, so both are rebuilt from their published architectures and converted to full-integer
int8 (int8 input and output) by the TFLite converter in the venv, as the int8 hello_world is
(tests/test_tflite_int8_ops.py). The weights are not the shipped ones; the graphs, their
operators and their quantisation are the point. Every int8 output is compared with the TFLite
interpreter's reference kernels and must be equal bit for bit (``Int8Run.check``, which also
checks ``NAME_predict``, float in and float out, against the dequantised reference).

(The hello_world model, float and int8, is in tests/test_tflite_int8_ops.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
from nnmpc.compiler import load_model
from test_tflite_int8_ops import Int8Run, _convert, _random_int8
from zoo import tflite_interpreter


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("tflm_examples")


def _tflite_ops(path) -> list[str]:
    return [d["op_name"] for d in tflite_interpreter(path)._get_ops_details()]


# ---- micro_speech ------------------------------------------------------------------------------

def _spectrograms(rng, labels):
    """Synthetic 49 x 40 'spectrograms' in the micro frontend's range (0 to about 26): a noise
    floor, and for the words (labels 2, 3) a burst of energy in a band of frequency channels
    that tells them apart, a weaker burst elsewhere for 'unknown' (1), none for silence (0)."""
    n = len(labels)
    x = rng.uniform(0, 6, (n, 49, 40))
    t0 = rng.integers(5, 25, n)
    for k, (lab, t) in enumerate(zip(labels, t0)):
        if lab == 0:
            continue
        band = {1: slice(28, 40), 2: slice(4, 16), 3: slice(16, 28)}[int(lab)]
        x[k, t:t + 20, band] += rng.uniform(3, 8) if lab > 1 else rng.uniform(1.5, 4)
    return np.clip(x, 0, 26).astype(np.float32).reshape(n, 1960)


@pytest.fixture(scope="module")
def micro_speech(out):
    """TFLite Micro's micro_speech model, `tiny_conv` of the speech_commands train script
    (models.py, create_tiny_conv_model): the 1960-value fingerprint (49 frames x 40 channels)
    reshaped to 49x40x1, Conv2D 8 filters of 10x8 (height x width), stride 2x2, padding SAME,
    bias, ReLU, dropout (training only), flatten, Dense 4 (silence, unknown, yes, no), softmax.
    Trained a few epochs on synthetic spectrograms (the point is the graph and its quantisation,
    not the accuracy), converted with 200 training fingerprints as the representative dataset.
    A batch-1 input, as the shipped file has ([1, 1960]), so the reshape is a constant RESHAPE."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 600)
    x = _spectrograms(rng, labels)
    layers = [L.Reshape((49, 40, 1)),
              L.Conv2D(8, (10, 8), strides=(2, 2), padding="same", activation="relu"),
              L.Dropout(0.5), L.Flatten(), L.Dense(4), L.Softmax()]
    train = keras.Sequential([keras.Input((1960,))] + layers)
    train.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy")
    train.fit(x[:400], labels[:400], epochs=4, batch_size=32, verbose=0)
    m = keras.Sequential([keras.Input(batch_shape=(1, 1960))] + layers)

    def rep():
        for row in x[:200]:
            yield [row[None]]
    path = _convert(m, out / "micro_speech.tflite", rep)
    return path, x[400:], labels[400:]


def test_micro_speech_int8_is_bit_exact_with_the_interpreter(micro_speech, out):
    path, x_test, labels = micro_speech
    assert _tflite_ops(path) == ["RESHAPE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    assert [n.op for n in load_model(path).nodes] == \
        ["reshape", "qconv", "reshape", "qdense", "qsoftmax"]
    conv = load_model(path).nodes[1].attrs
    assert (conv["strides"], conv["out_spatial"]) == ((2, 2), (25, 20))  # SAME: ceil(49/2)
    r = Int8Run(path, out, "micro_speech")
    assert (r.n_in, r.n_out) == (1960, 4)
    assert r.ins[0]["quantization"][1] == -128  # a fingerprint is never negative
    ref = r.check(r.quantise(x_test))
    # random int8 fingerprints, over the whole int8 range and near the noise floor (the
    # classifier is sure of the former), and blends of test fingerprints with silence: the
    # softmax outputs away from 0 and 1
    rng = np.random.default_rng(0)
    low = rng.integers(-128, -70, (50, 1960)).astype(np.int8)
    a = np.linspace(0, 1, 50, dtype=np.float32)[:, None]
    blends = r.quantise(a * x_test[:50] + (1 - a) * x_test[labels == 0][:1])
    probe = np.concatenate([r.check(_random_int8(50, 1960, 0)), r.check(low), r.check(blends)])
    assert len(np.unique(probe)) > 50  # not degenerate
    # the re-creation learnt its synthetic task (chance is 1/4)
    assert np.mean(np.argmax(ref, axis=1) == labels) > 0.8


# ---- person_detect -----------------------------------------------------------------------------

_MOBILENET_V1 = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + \
    [(256, 2), (256, 1)]  # (pointwise filters, depthwise stride) at alpha 0.25


def _batchnorm_statistics(model, rng, calib) -> None:
    """Random BatchNormalization scales and offsets, and the moving statistics of ``calib``
    (one training-mode call with momentum 0), so that no normalisation is the identity."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.beta.assign(rng.normal(0.5, 0.5, n).astype(np.float32))
            layer.momentum = 0.0
    model(calib, training=True)


def _person_detect_keras(rng, calib: np.ndarray, features: bool = False):
    """MobileNet v1, alpha 0.25, as TF-Slim's mobilenet_v1 builds it (what the person_detection
    model was trained with): a 3x3 stride-2 Conv2D of 8 filters, then 13 depthwise separable
    blocks (3x3 depthwise, stride 1 or 2, and 1x1 pointwise), each convolution padding SAME,
    without bias, batch-normalised and ReLU6; a 3x3 VALID average pool (3x3 -> 1x1), dropout,
    a 1x1 Conv2D of 2 filters with bias (the logits), reshape to 2, softmax. The batch-norm
    scales and offsets are drawn at random and their moving statistics set from a batch of
    ``calib`` (momentum 0, one training-mode pass), so that every layer is live (untrained,
    the model is an input-dependent function, not a constant). ``features``: the model up to
    the average pool (256 values)."""
    import keras

    L = keras.layers
    layers = []
    for k, (f, s) in enumerate([(8, 2)] + _MOBILENET_V1):
        if k:
            layers += [L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False),
                       L.BatchNormalization(), L.ReLU(6.0)]
        layers += [L.Conv2D(f, 3 if k == 0 else 1, strides=s if k == 0 else 1, padding="same",
                            use_bias=False), L.BatchNormalization(), L.ReLU(6.0)]
    layers.append(L.AveragePooling2D(3))
    head = [L.Dropout(0.001), L.Conv2D(2, 1), L.Reshape((2,)), L.Softmax()]
    _batchnorm_statistics(keras.Sequential([keras.Input((96, 96, 1))] + layers + head), rng,
                          calib)
    m = keras.Sequential([keras.Input(batch_shape=(1, 96, 96, 1))] + layers + head)
    if not features:
        return m, None  # (batch 1, as the shipped file: the RESHAPE has a constant shape)
    return m, keras.Sequential([keras.Input(batch_shape=(1, 96, 96, 1))] + layers +
                               [L.Reshape((256,))])


def _images(rng, n: int) -> np.ndarray:
    """Grayscale 96x96 images in [-1, 1] (the model's input range): a random 6x6 pattern
    blown up to 16x16 blocks, plus noise."""
    lo = np.kron(rng.uniform(-1, 1, (n, 6, 6, 1)), np.ones((1, 16, 16, 1)))
    return np.clip(lo + rng.normal(0, 0.3, (n, 96, 96, 1)), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def person_detect(out):
    """The person_detect re-creation (see ``_person_detect_keras``) as full-integer int8, with
    32 images as the representative dataset, and its feature extractor (the same layers up to
    the average pool) converted with the same data."""
    import keras

    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    calib = _images(rng, 32)
    m, feats = _person_detect_keras(rng, calib, features=True)

    def rep():
        for row in calib:
            yield [row[None]]
    return (_convert(m, out / "person_detect.tflite", rep),
            _convert(feats, out / "person_detect_features.tflite", rep), _images(rng, 20))


def test_person_detect_int8_is_bit_exact_with_the_interpreter(person_detect, out):
    path, _, images = person_detect
    assert _tflite_ops(path) == ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 13 + \
        ["AVERAGE_POOL_2D", "CONV_2D", "RESHAPE", "SOFTMAX"]
    g = load_model(path)
    assert [n.op for n in g.nodes] == ["qconv"] * 27 + ["qpool", "qconv", "reshape", "qsoftmax"]
    dw = [n.attrs for n in g.nodes if n.op == "qconv" and n.attrs["groups"] > 1]
    assert len(dw) == 13 and sum(a["strides"] == (2, 2) for a in dw) == 4  # stride 2, SAME
    assert [a["out_spatial"] for a in dw][-1] == (3, 3)
    assert 250_000 < path.stat().st_size < 400_000  # the shipped file: about 300 KB
    r = Int8Run(path, out, "person_detect")
    assert (r.n_in, r.n_out) == (96 * 96, 2)
    ref = np.concatenate([r.check(_random_int8(50, 96 * 96, 0)), r.check(r.quantise(images))])
    assert len(np.unique(ref[:, 0])) > 20  # an input-dependent function, not a constant


@pytest.mark.soak  # the long form (make soak); the default run keeps the whole model's check
def test_person_detect_features_are_bit_exact_with_the_interpreter(person_detect, out):
    """The same 28 layers up to the average pool, their 256 int8 outputs compared (the two-class
    softmax alone shows one number per input)."""
    _, path, images = person_detect
    r = Int8Run(path, out, "person_features")
    assert (r.n_in, r.n_out) == (96 * 96, 256)
    ref = np.concatenate([r.check(_random_int8(50, 96 * 96, 1)), r.check(r.quantise(images))])
    assert len(np.unique(ref)) > 100


# ---- MEAN with keep_dims (keras.applications.MobileNet's head) ---------------------------------

@pytest.mark.parametrize("shape", [(3, 3, 3), (5, 7, 3), (9, 3)], ids=["3x3", "5x7", "1d9"])
def test_int8_mean_with_keep_dims_is_bit_exact(shape, out):
    """GlobalAveragePooling2D/1D with keepdims=True, converted to an int8 MEAN with keep_dims
    (input and output quantised differently): the reference interpreter computes the same as
    without keep_dims, windows of 9 and 35 values."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(7)
    conv = L.Conv2D if len(shape) == 3 else L.Conv1D
    pool = L.GlobalAveragePooling2D if len(shape) == 3 else L.GlobalAveragePooling1D
    m = keras.Sequential([keras.Input(batch_shape=(1,) + shape), conv(6, 1, activation="relu"),
                          pool(keepdims=True)])
    calib = np.random.default_rng(7).uniform(-1, 1, (30,) + shape).astype(np.float32)

    def rep():
        for row in calib:
            yield [row[None]]
    name = "mean_keep_" + "x".join(map(str, shape))
    r = Int8Run(_convert(m, out / f"{name}.tflite", rep), out, name)
    mean, = [d for d in r.it._get_ops_details() if d["op_name"] == "MEAN"]
    q = {t["index"]: t["quantization"] for t in r.it.get_tensor_details()}
    assert q[mean["inputs"][0]] != q[mean["outputs"][0]]
    assert len(r.out["shape"]) == len(shape) + 1  # the axes kept
    ref = r.check(_random_int8(300, r.n_in, 1))
    assert len(np.unique(ref)) > 100


@pytest.mark.soak  # the long form (make soak); the default run keeps the whole model's check
def test_keras_applications_mobilenet_person_detect_is_bit_exact(out):
    """The other way to build person_detect: keras.applications.MobileNet(input_shape=(96, 96,
    1), alpha=0.25, weights=None, classes=2) (ZeroPadding2D and VALID stride-2 convolutions,
    GlobalAveragePooling2D with keepdims=True: an int8 MEAN with keep_dims), its batch norms
    made live as in ``_person_detect_keras``; bit-exact on 20 random int8 inputs and 10
    images. (The Slim-style build above is the shipped graph; this one is what Keras users
    have.)"""
    import keras

    keras.utils.set_random_seed(8)
    rng = np.random.default_rng(8)
    calib = _images(rng, 32)
    net = keras.applications.MobileNet(input_shape=(96, 96, 1), alpha=0.25, weights=None,
                                       classes=2)
    _batchnorm_statistics(net, rng, calib)
    i = keras.Input(batch_shape=(1, 96, 96, 1))
    m = keras.Model(i, net(i))

    def rep():
        for row in calib:
            yield [row[None]]
    path = _convert(m, out / "mobilenet_app.tflite", rep)
    ops = _tflite_ops(path)
    assert ops.count("DEPTHWISE_CONV_2D") == 13 and "MEAN" in ops
    r = Int8Run(path, out, "mobilenet_app")
    ref = np.concatenate([r.check(_random_int8(20, 96 * 96, 2)),
                          r.check(r.quantise(_images(rng, 10)))])
    assert len(np.unique(ref[:, 0])) > 10
