"""The model zoo: small models covering every supported op, activation and format.

Models are built at test time (no committed binaries) with random non-trivial weights, saved in
their format (.keras, .h5, .onnx via tf2onnx, .tflite via the TFLite converter), and paired with
their reference runtime (Keras, onnxruntime, the TFLite interpreter).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ACTIVATIONS = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "tanh", "sigmoid",
               "hard_sigmoid", "softplus", "softsign", "swish", "gelu", "softmax", "exponential"]


@dataclass
class ZooModel:
    name: str
    fmt: str                      # keras, h5, onnx, tflite, tflite_int8
    path: Path
    in_shape: tuple[int, ...]
    out_size: int
    reference: Callable[[np.ndarray], np.ndarray] | None  # flat input batch -> flat output batch
    keras_model: object = None    # for GradientTape Jacobians (None: not checked)
    x_range: float = 2.0
    recurrent: bool = False
    int8: bool = False

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))


def _randomise(model, seed: int, scale: float = 0.3) -> None:
    """Random weights with non-zero biases and BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        v = w.numpy()
        name = w.path if hasattr(w, "path") else w.name
        if "moving_variance" in name:
            v = rng.uniform(0.5, 2.0, v.shape)
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            v = rng.normal(0, 0.2, v.shape)
        elif "gamma" in name:
            v = rng.uniform(0.5, 1.5, v.shape)
        else:
            fan = max(1, int(np.prod(v.shape[:-1])))
            v = rng.normal(0, 1.0, v.shape) * (scale * 3 / np.sqrt(fan))
        new.append(v.astype(np.float32))
    model.set_weights(new)


def _keras_ref(model):
    shape = tuple(model.inputs[0].shape[1:])

    def ref(x: np.ndarray) -> np.ndarray:
        y = model.predict(x.reshape((len(x),) + shape), verbose=0, batch_size=256)
        return np.asarray(y).reshape(len(x), -1)
    return ref


# ---- Keras model builders (name -> function(keras, L) returning a model) -------------------

def _seq(keras, inp, layers, name):
    return keras.Sequential([keras.Input(inp)] + layers, name=name)


def keras_builders():
    """name -> (builder(keras) -> model, formats to save in)."""
    B: dict[str, tuple[Callable, tuple[str, ...]]] = {}
    L = None  # filled lazily below

    def add(name, fmts=("keras",)):
        def deco(fn):
            B[name] = (fn, fmts)
            return fn
        return deco

    # MLPs with every activation, three per model
    acts = ACTIVATIONS
    for i in range(0, len(acts), 3):
        group = acts[i:i + 3]

        def mlp(keras, group=group):
            L = keras.layers
            layers = [L.Dense(12, activation=a) for a in group if a != "softmax"]
            layers.append(L.Dense(4, activation="softmax" if "softmax" in group else "linear"))
            return _seq(keras, (5,), layers, "mlp_" + "_".join(group))
        B["mlp_" + "_".join(group)] = (mlp, ("keras",))

    @add("mlp_h5_legacy", ("h5",))
    def _(keras):
        L = keras.layers
        return _seq(keras, (4,), [L.Dense(16, activation="tanh"), L.Dense(8, activation="relu"),
                                  L.Dense(2)], "mlp_h5")

    @add("act_layers")
    def _(keras):
        L = keras.layers
        return _seq(keras, (6,), [L.Dense(10), L.LeakyReLU(negative_slope=0.1), L.Dense(10),
                                  L.ELU(alpha=0.7), L.Dense(10), L.ReLU(max_value=6.0),
                                  L.Dense(10), L.Activation("gelu"), L.Dense(5), L.Softmax()],
                    "act_layers")

    @add("bn_dropout", ("keras", "h5"))
    def _(keras):
        L = keras.layers
        return _seq(keras, (6,), [L.Dense(16), L.BatchNormalization(), L.Activation("relu"),
                                  L.Dropout(0.3), L.Dense(16, activation="tanh"),
                                  L.BatchNormalization(), L.Dense(3)], "bn_dropout")

    @add("functional_add_concat_mul")
    def _(keras):
        L = keras.layers
        x = keras.Input((5,))
        a = L.Dense(8, activation="tanh")(x)
        b = L.Dense(8, activation="sigmoid")(x)
        c = L.Add()([a, b])
        d = L.Multiply()([a, c])
        e = L.Concatenate()([d, x, b])
        f = L.Subtract()([L.Dense(6)(e), L.Dense(6, activation="relu")(e)])
        g = L.Average()([f, L.Dense(6)(x)])
        return keras.Model(x, L.Dense(3)(g), name="functional_add_concat_mul")

    @add("conv1d_pool")
    def _(keras):
        L = keras.layers
        return _seq(keras, (16, 3), [
            L.Conv1D(6, 3, activation="relu"), L.MaxPooling1D(2),
            L.Conv1D(8, 3, padding="same", strides=2, activation="tanh"),
            L.AveragePooling1D(2, padding="same"),
            L.Conv1D(4, 2, dilation_rate=2, padding="causal"),
            L.Flatten(), L.Dense(3)], "conv1d_pool")

    @add("conv1d_bn_gap")
    def _(keras):
        L = keras.layers
        return _seq(keras, (12, 2), [
            L.Conv1D(8, 3, padding="same"), L.BatchNormalization(), L.Activation("swish"),
            L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="elu"),
            L.GlobalAveragePooling1D(), L.Dense(2)], "conv1d_bn_gap")

    @add("conv2d_valid_same")
    def _(keras):
        L = keras.layers
        return _seq(keras, (8, 8, 2), [
            L.Conv2D(4, 3, activation="relu"),
            L.Conv2D(6, (3, 2), strides=(2, 1), padding="same", activation="softplus"),
            L.MaxPooling2D((2, 2), padding="same"), L.Flatten(), L.Dense(3)], "conv2d_valid_same")

    @add("conv2d_dilation_depthwise")
    def _(keras):
        L = keras.layers
        return _seq(keras, (9, 9, 3), [
            L.Conv2D(4, 3, dilation_rate=2, activation="selu"),
            L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6"),
            L.AveragePooling2D(2), L.Conv2D(5, 1), L.GlobalAveragePooling2D(),
            L.Dense(2)], "conv2d_dilation_depthwise")

    @add("conv2d_bn_reshape", ("keras", "h5"))
    def _(keras):
        L = keras.layers
        return _seq(keras, (24,), [
            L.Reshape((4, 6, 1)), L.Conv2D(4, 2, padding="same"), L.BatchNormalization(),
            L.Activation("tanh"), L.GlobalMaxPooling2D(), L.Dense(4, activation="sigmoid")],
            "conv2d_bn_reshape")

    @add("preprocessing_padding", ("keras", "h5"))
    def _(keras):
        L = keras.layers
        return _seq(keras, (10, 3), [
            L.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0]),
            L.Rescaling(1.5, offset=0.1), L.ZeroPadding1D((1, 2)), L.Conv1D(4, 3),
            L.Cropping1D((2, 1)), L.Permute((2, 1)), L.TimeDistributed(L.Dense(3)),
            L.Identity(), L.Reshape((4, 3, 1)), L.ZeroPadding2D(((1, 0), (0, 2))),
            L.Cropping2D(((0, 1), (1, 0))), L.Conv2D(2, 2), L.Flatten(), L.Dense(2)],
            "preprocessing_padding")

    @add("nested_models")
    def _(keras):
        L = keras.layers
        inner = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="tanh"), L.Dense(4)],
                                 name="inner")
        enc_in = keras.Input((6,))
        enc = keras.Model(enc_in, L.Dense(6, activation="sigmoid")(enc_in), name="enc")
        x = keras.Input((5,))
        h = L.Dense(6, activation="relu")(x)
        m = keras.Model(x, L.Dense(2)(L.Concatenate()([inner(enc(h)), h])), name="mid")
        return _seq(keras, (5,), [m, L.Activation("elu")], "nested_models")

    @add("simple_rnn")
    def _(keras):
        L = keras.layers
        return _seq(keras, (6, 3), [L.SimpleRNN(8), L.Dense(2)], "simple_rnn")

    @add("gru_reset_after", ("keras", "h5"))
    def _(keras):
        L = keras.layers
        return _seq(keras, (5, 3), [L.GRU(8), L.Dense(2)], "gru_reset_after")

    @add("gru_reset_before")
    def _(keras):
        L = keras.layers
        return _seq(keras, (5, 2), [L.GRU(6, reset_after=False, return_sequences=True),
                                    L.GRU(4), L.Dense(3)], "gru_reset_before")

    @add("lstm")
    def _(keras):
        L = keras.layers
        return _seq(keras, (6, 4), [L.LSTM(8, return_sequences=True), L.Dense(5, activation="relu"),
                                    L.LSTM(5), L.Dense(2)], "lstm")

    # Unrolled recurrent layers (as `nnmpc train --gru` makes them): the TFLite converter and
    # tf2onnx write them out step by step (UNPACK/Split, SPLIT, STRIDED_SLICE/Slice, ...).
    for name, make in UNROLLED.items():
        B[name] = ((lambda keras, name=name, make=make: _unrolled(keras, name, make)), ())

    return B


UNROLLED = {
    "unrolled_gru": lambda L: L.GRU(6, unroll=True),
    "unrolled_gru_reset_before": lambda L: L.GRU(5, reset_after=False, unroll=True),
    "unrolled_lstm": lambda L: L.LSTM(5, unroll=True),
    "unrolled_simple_rnn": lambda L: L.SimpleRNN(5, unroll=True),
}


def _unrolled(keras, name, make):
    L = keras.layers
    return _seq(keras, (4, 3), [make(L), L.Dense(5, activation="tanh"), L.Dense(2)], name)


def to_onnx(model, path: Path) -> None:
    """Export a Keras model to ONNX (opset 17) with tf2onnx, the way that works with Keras 3."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((1,) + tuple(model.inputs[0].shape[1:]), tf.float32, name="x")]
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda x: model(x)),
                                             input_signature=spec, opset=17)
    path.write_bytes(proto.SerializeToString())


def onnx_ref(path: Path, in_shape):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def ref(x: np.ndarray) -> np.ndarray:
        return np.concatenate([sess.run(None, {name: x[i:i + 1].reshape((1,) + tuple(in_shape))})[0]
                               .reshape(1, -1) for i in range(len(x))])
    return ref


def to_tflite(model, path: Path, int8_data: np.ndarray | None = None,
              batch_one: bool = True) -> None:
    """Convert a Keras model with the TFLite converter (float32, or full-integer int8).

    ``batch_one`` fixes the batch to 1 so that Flatten/Reshape convert to static reshapes;
    without it the converter writes dilated convolutions as SPACE_TO_BATCH_ND + CONV_2D +
    BATCH_TO_SPACE_ND."""
    import tensorflow as tf

    import keras

    if batch_one:
        inp = keras.Input(batch_shape=(1,) + tuple(model.inputs[0].shape[1:]))
        model = keras.Model(inp, model(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8_data is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def rep():
            for row in int8_data:
                yield [row[None].astype(np.float32)]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())


def tflite_interpreter(path: Path, reference: bool = True):
    """The TFLite interpreter with its reference kernels (no XNNPACK delegate, whose int8
    arithmetic rounds differently from TFLite's own), or its default optimised set-up."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    it = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    return it


def tflite_ref(path: Path, in_shape):
    it = tflite_interpreter(path, reference=False)
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def ref(x: np.ndarray) -> np.ndarray:
        ys = []
        for row in x:
            it.set_tensor(i["index"], row.reshape((1,) + tuple(in_shape)).astype(i["dtype"]))
            it.invoke()
            ys.append(it.get_tensor(o["index"]).reshape(-1).copy())
        return np.array(ys)
    return ref


def int8_keras_builders():
    """Models for full-integer TFLite: the ops the int8 back-end supports."""
    B = {}

    def mlp_relu(keras):
        L = keras.layers
        return _seq(keras, (6,), [L.Dense(16, activation="relu"), L.Dense(16, activation="relu6"),
                                  L.Dense(3)], "q_mlp_relu")

    def mlp_tanh_sigmoid(keras):
        L = keras.layers
        return _seq(keras, (4,), [L.Dense(12, activation="tanh"), L.Dense(12, activation="sigmoid"),
                                  L.Dense(2)], "q_mlp_tanh_sigmoid")

    def residual(keras):
        L = keras.layers
        x = keras.Input((5,))
        a = L.Dense(8, activation="relu")(x)
        b = L.Dense(8)(a)
        c = L.Add()([a, b])
        return keras.Model(x, L.Dense(2)(c), name="q_residual")

    def merge(keras):
        L = keras.layers
        x = keras.Input((6,))
        a = L.Dense(8, activation="tanh")(x)
        b = L.Dense(8, activation="sigmoid")(x)
        c = L.Multiply()([a, b])
        d = L.Concatenate()([c, L.Dense(4, activation="relu")(x)])
        return keras.Model(x, L.Dense(3)(d), name="q_merge")

    def conv2d(keras):
        L = keras.layers
        return _seq(keras, (8, 8, 2), [L.Conv2D(4, 3, activation="relu"),
                                       L.DepthwiseConv2D(3, padding="same"),
                                       L.MaxPooling2D(2), L.Conv2D(3, 2, strides=2, padding="same"),
                                       L.AveragePooling2D(2, padding="same"),
                                       L.Flatten(), L.Dense(3)], "q_conv2d")

    def conv1d(keras):
        L = keras.layers
        return _seq(keras, (12, 3), [L.Conv1D(6, 3, activation="relu"), L.MaxPooling1D(2),
                                     L.Conv1D(4, 3, padding="same", activation="tanh"),
                                     L.Flatten(), L.Dense(2)], "q_conv1d")

    def gap(keras):  # int8 MEAN over the spatial axes, 2-D and 1-D
        L = keras.layers
        x = keras.Input((6, 6, 2))
        a = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(x))
        b = L.GlobalAveragePooling1D()(L.Conv1D(3, 2, activation="tanh")(L.Reshape((12, 6))(x)))
        return keras.Model(x, L.Dense(2)(L.Concatenate()([a, b])), name="q_gap")

    for fn in (mlp_relu, mlp_tanh_sigmoid, residual, merge, conv2d, conv1d, gap):
        B[fn.__name__] = fn
    # Unrolled recurrent layers in int8 (UNPACK, SPLIT, STRIDED_SLICE, SUB, tanh/logistic tables).
    for name in ("unrolled_gru", "unrolled_gru_reset_before", "unrolled_lstm", "unrolled_simple_rnn"):
        B[name] = (lambda keras, name=name: _unrolled(keras, "q_" + name, UNROLLED[name]))
    B["vision_pad_permute_softmax"] = _q_vision_pad_permute_softmax  # sorts last: seeds kept
    return B


def _q_vision_pad_permute_softmax(keras):
    """int8 PAD (zero padding, the zero point), TRANSPOSE (Permute) and SOFTMAX."""
    L = keras.layers
    return _seq(keras, (6, 6, 2), [L.ZeroPadding2D(((1, 0), (0, 2))), L.Conv2D(3, 3),
                                   L.Permute((2, 1, 3)), L.Flatten(), L.Dense(4), L.Softmax()],
                "q_vision_pad_permute_softmax")


# ---- The zoo: every model in every format it is tested in ------------------------------------

#: Keras builders exported to ONNX (tf2onnx) and to float TFLite.
ONNX_MODELS = ["mlp_linear_relu_relu6", "mlp_leaky_relu_elu_selu", "mlp_tanh_sigmoid_hard_sigmoid",
               "mlp_softplus_softsign_swish", "functional_add_concat_mul", "bn_dropout",
               "conv1d_pool", "conv1d_bn_gap", "conv2d_valid_same", "conv2d_dilation_depthwise",
               "conv2d_bn_reshape", *UNROLLED]
TFLITE_MODELS = ["mlp_linear_relu_relu6", "mlp_tanh_sigmoid_hard_sigmoid",
                 "mlp_gelu_softmax_exponential", "functional_add_concat_mul", "bn_dropout",
                 "conv1d_pool", "conv1d_bn_gap", "conv2d_bn_reshape", "act_layers_tflite",
                 "tflite_crop_permute", "tflite_dilated", "mlp_leaky_relu_elu_selu",
                 "mlp_softplus_softsign_swish", *UNROLLED]


def _tflite_act_layers(keras):
    L = keras.layers
    return _seq(keras, (6,), [L.Dense(10), L.LeakyReLU(negative_slope=0.1), L.Dense(10),
                              L.ELU(), L.Dense(10, activation="relu"), L.Dense(8),
                              L.Activation("hard_swish"), L.Dense(4), L.Softmax()],
                "act_layers_tflite")


def _tflite_dilated(keras):
    L = keras.layers
    return _seq(keras, (10, 10, 2), [L.Conv2D(4, 3, dilation_rate=2, activation="relu"),
                                     L.Conv2D(3, 3, dilation_rate=(1, 2), padding="same"),
                                     L.GlobalAveragePooling2D(), L.Dense(2)], "tflite_dilated")


def _tflite_crop_permute(keras):
    L = keras.layers
    return _seq(keras, (10, 3), [L.Rescaling(0.5, offset=0.2), L.ZeroPadding1D((2, 1)),
                                 L.Conv1D(4, 3, activation="relu"), L.Cropping1D((1, 2)),
                                 L.Permute((2, 1)), L.Dense(5, activation="tanh"), L.Flatten(),
                                 L.Dense(2)], "tflite_crop_permute")


def onnx_handmade(path: Path):
    """An ONNX graph written directly (opset 20): Gelu (exact and tanh), Softmax, Exp, Div, Neg, Sub of a
    constant, Flatten and a MatMul + Add, ops tf2onnx does not emit for Keras models."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    W1 = rng.normal(0, 0.5, (6, 8)).astype(np.float32)
    b1 = rng.normal(0, 0.2, (8,)).astype(np.float32)
    W2 = rng.normal(0, 0.5, (8, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(W2, "W2"),
             numpy_helper.from_array(np.array([2.0], np.float32), "two"),
             numpy_helper.from_array(np.array([0.5], np.float32), "half")]
    nodes = [
        helper.make_node("Flatten", ["x"], ["xf"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["xf", "W1"], ["h0"], name="matmul1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="bias1"),
        helper.make_node("Gelu", ["h1"], ["g1"], name="gelu"),
        helper.make_node("Gelu", ["h1"], ["g2"], approximate="tanh", name="gelu_tanh"),
        helper.make_node("Add", ["g1", "g2"], ["h2"], name="add"),
        helper.make_node("Div", ["h2", "two"], ["h3"], name="div"),
        helper.make_node("Sub", ["half", "h3"], ["h4"], name="rsub"),
        helper.make_node("Neg", ["h4"], ["h5"], name="neg"),
        helper.make_node("Exp", ["h5"], ["h6"], name="exp"),
        helper.make_node("MatMul", ["h6", "W2"], ["h7"], name="matmul2"),
        helper.make_node("Softmax", ["h7"], ["y"], axis=-1, name="softmax"),
    ]
    g = helper.make_graph(nodes, "handmade",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())


def onnx_wild(path: Path):
    """Ops from PyTorch models (opset 17): ConvTranspose (the `deconv` IR op), Abs, Sqrt, Log,
    a dilated MaxPool, LogSoftmax over the channels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    f = lambda *s: rng.normal(0, 0.4, s).astype(np.float32)  # noqa: E731
    inits = {"w1": f(2, 3, 3, 3), "b1": f(3), "eps": np.float32(0.25)}
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w1", "b1"], ["c1"], strides=[2, 2],
                         pads=[1, 1, 0, 0], name="deconv"),
        helper.make_node("Abs", ["c1"], ["a1"], name="abs"),
        helper.make_node("Add", ["a1", "eps"], ["a2"], name="shift"),
        helper.make_node("Sqrt", ["a2"], ["s1"], name="sqrt"),
        helper.make_node("Log", ["a2"], ["l1"], name="log"),
        helper.make_node("Sub", ["s1", "l1"], ["d1"], name="sub"),
        helper.make_node("MaxPool", ["d1"], ["p1"], kernel_shape=[2, 2], dilations=[2, 2],
                         name="dilated_pool"),
        helper.make_node("LogSoftmax", ["p1"], ["y"], axis=1, name="logsoftmax"),
    ]
    g = helper.make_graph(nodes, "wild",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())


def onnx_nchw_cnn(path: Path):
    """An NCHW CNN as PyTorch exports them (opset 17): Conv with pads, BatchNormalization,
    Relu, MaxPool, a depthwise strided Conv, AveragePool with pads, GlobalAveragePool, Flatten,
    Gemm with transB=1, Sigmoid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    f = lambda *s: rng.normal(0, 0.4, s).astype(np.float32)  # noqa: E731
    inits = {"w1": f(4, 2, 3, 3), "b1": f(4), "g": rng.uniform(0.5, 1.5, 4).astype(np.float32),
             "be": f(4), "mu": f(4), "var": rng.uniform(0.5, 2, 4).astype(np.float32),
             "w2": f(8, 1, 3, 3), "b2": f(8), "w3": f(3, 8), "b3": f(3)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["n1"],
                         epsilon=1e-5, name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool1"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], group=4, strides=[2, 2],
                         pads=[1, 1, 1, 1], name="dwconv"),
        helper.make_node("Tanh", ["c2"], ["t2"], name="tanh2"),
        helper.make_node("AveragePool", ["t2"], ["a2"], kernel_shape=[2, 2], strides=[1, 1],
                         pads=[0, 0, 1, 1], name="avg2"),
        helper.make_node("GlobalAveragePool", ["a2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["fl"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["fl", "w3", "b3"], ["fc"], transB=1, name="fc"),
        helper.make_node("Sigmoid", ["fc"], ["y"], name="out"),
    ]
    g = helper.make_graph(nodes, "nchw_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())


def build_zoo(root: Path) -> list[ZooModel]:
    """Build every zoo model under ``root`` (about a minute) and return them."""
    import keras

    root.mkdir(parents=True, exist_ok=True)
    zoo: list[ZooModel] = []
    builders = dict(keras_builders())
    builders["act_layers_tflite"] = (_tflite_act_layers, ())
    builders["tflite_crop_permute"] = (_tflite_crop_permute, ())
    builders["tflite_dilated"] = (_tflite_dilated, ())
    models = {}
    for i, (name, (fn, fmts)) in enumerate(sorted(builders.items())):
        keras.utils.set_random_seed(i)
        m = fn(keras)
        _randomise(m, 100 + i)
        models[name] = m
        shape = tuple(m.inputs[0].shape[1:])
        out = int(np.prod(m.outputs[0].shape[1:]))
        rec = any(type(layer).__name__ in ("SimpleRNN", "GRU", "LSTM") for layer in m.layers)
        for fmt in fmts:
            p = root / f"{name}.{fmt}"
            m.save(p)
            zoo.append(ZooModel(f"{fmt}:{name}", fmt, p, shape, out, _keras_ref(m), m,
                                recurrent=rec))
    for name in ONNX_MODELS:
        m = models[name]
        p = root / f"{name}.onnx"
        to_onnx(m, p)
        shape = tuple(m.inputs[0].shape[1:])
        zoo.append(ZooModel(f"onnx:{name}", "onnx", p, shape, int(np.prod(m.outputs[0].shape[1:])),
                            onnx_ref(p, shape), m))
    p = root / "handmade.onnx"
    onnx_handmade(p)
    zoo.append(ZooModel("onnx:handmade", "onnx", p, (2, 3), 4, onnx_ref(p, (2, 3))))
    p = root / "nchw_cnn.onnx"
    onnx_nchw_cnn(p)
    zoo.append(ZooModel("onnx:nchw_cnn", "onnx", p, (2, 8, 8), 3, onnx_ref(p, (2, 8, 8))))
    p = root / "wild.onnx"
    onnx_wild(p)
    zoo.append(ZooModel("onnx:wild", "onnx", p, (2, 3, 3), 48, onnx_ref(p, (2, 3, 3))))
    for name in TFLITE_MODELS:
        m = models[name]
        p = root / f"{name}.tflite"
        to_tflite(m, p, batch_one=name != "tflite_dilated")
        shape = tuple(m.inputs[0].shape[1:])
        zoo.append(ZooModel(f"tflite:{name}", "tflite", p, shape,
                            int(np.prod(m.outputs[0].shape[1:])), tflite_ref(p, shape), m))
    for i, (name, fn) in enumerate(sorted(int8_keras_builders().items())):
        keras.utils.set_random_seed(50 + i)
        m = fn(keras)
        _randomise(m, 200 + i)
        shape = tuple(m.inputs[0].shape[1:])
        rep = np.random.default_rng(i).uniform(-2, 2, (200,) + shape).astype(np.float32)
        p = root / f"{name}.int8.tflite"
        to_tflite(m, p, rep)
        zoo.append(ZooModel(f"int8:{name}", "tflite_int8", p, shape,
                            int(np.prod(m.outputs[0].shape[1:])), None, m, int8=True))
    return zoo


def zoo_names() -> list[str]:
    """The names build_zoo gives its models, known without building them."""
    names = [f"{fmt}:{n}" for n, (_, fmts) in sorted(keras_builders().items()) for fmt in fmts]
    names += [f"onnx:{n}" for n in ONNX_MODELS] + ["onnx:handmade", "onnx:nchw_cnn", "onnx:wild"]
    names += [f"tflite:{n}" for n in TFLITE_MODELS]
    names += [f"int8:{n}" for n in sorted(int8_keras_builders())]
    return names
