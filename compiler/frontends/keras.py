"""Keras front-end: ``.keras`` archives and ``.h5`` files written by Keras 3, into the IR.

Keras itself loads the file (so every quirk of its format is handled by its authors); this
module turns the loaded model into :class:`ModelSpec` / :class:`LayerSpec` records (class name,
config, weights by name) and lowers those to the IR. Keras 2 HDF5 files are read without Keras
by :mod:`.keras_h5`, which builds the same records and shares the lowering here.
"""

from __future__ import annotations

import contextvars
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from ..errors import CompileError
from ..ir import Graph, Node, Tensor
from . import keras_lower as _kl
from .keras_ops import (
    _KERAS_ACT,
    _act,
    _apply_act,
    _check_channels_last,
    _dense_node,
    _geometry,
    _tuple,
    one_line,
)
from .shapes import GivenShapes, InputShapes


def _import_keras():
    # Keep TensorFlow quiet and deterministic (oneDNN reorders float sums).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import keras  # noqa: PLC0415
    except ImportError:
        raise CompileError(
            "reading Keras models needs the 'keras' and 'tensorflow-cpu' packages "
            "(pip install 'nnmpc[ml]')"
        ) from None
    return keras


class _Builder:
    """Accumulates IR tensors and nodes while layers are converted.

    ``streaming`` builds the one-step form of a recurrent model: the time axis has length 1
    and every recurrent layer reads and writes its state through ``states``.
    """

    def __init__(self, path: Path, streaming: bool = False, dialect: "Dialect | None" = None
                 ) -> None:
        self.path = path
        self.streaming = streaming
        self.dialect = dialect or KERAS3
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.states: list[tuple[str, str]] = []
        self.zeros: set[str] = set()
        self.recurrent = False
        self._n = 0

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}#{self._n}"

    def add_tensor(self, name: str, shape, data: np.ndarray | None = None) -> str:
        if name in self.tensors:
            raise CompileError(f"duplicate tensor name '{name}'", file=str(self.path))
        if data is not None:
            data = np.ascontiguousarray(data, dtype=np.float32)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), "float32", data)
        return name

    def const(self, layer: str, what: str, data) -> str:
        data = np.asarray(data, np.float32)
        return self.add_tensor(self.fresh(f"{layer}:{what}"), data.shape, data)

    def add_node(self, op: str, layer: str, inputs: list[str], out_shape, **attrs) -> str:
        out = self.add_tensor(self.fresh(f"{layer}:out"), out_shape)
        self.nodes.append(Node(op, inputs, [out], attrs, name=out, source=layer))
        return out

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    @property
    def where(self) -> str:
        """The file as messages name it, with the Keras version of a legacy file."""
        return self.dialect.where(self.path)

    def fail(self, layer: str, msg: str):
        raise CompileError(msg, file=self.where, layer=layer)


@dataclass(frozen=True)
class Dialect:
    """What a file's layer configs mean, which depends on the Keras that wrote it."""

    #: "Keras 3" or e.g. "Keras 2.7.0" (named in messages about legacy files).
    origin: str = "Keras 3"
    #: hard_sigmoid = clip(slope * x + 0.5, 0, 1): 1/6 in Keras 3, 0.2 in Keras 2.
    hard_sigmoid_slope: float = 1.0 / 6.0
    legacy: bool = False

    def where(self, path: Path) -> str:
        return f"{path} ({self.origin})" if self.legacy else str(path)


KERAS3 = Dialect()


@dataclass
class LayerSpec:
    """One layer as the lowering reads it: Keras class name, config, weights by short name
    (``kernel``, ``bias``, ``recurrent_kernel``, ``gamma``, ``moving_mean``, ``mean``, ...)."""

    cls: str
    cfg: dict
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inner: "LayerSpec | None" = None   # the wrapped layer of a TimeDistributed; the forward
    backward: "LayerSpec | None" = None  # and the backward layer of a Bidirectional

    @property
    def name(self) -> str:
        return str(self.cfg.get("name", ""))

    def weight(self, b: "_Builder", *names: str, optional: bool = False) -> np.ndarray | None:
        for n in names:
            if n in self.weights:
                return np.asarray(self.weights[n])
        if optional:
            return None
        b.fail(self.name, f"{self.cls} has no '{names[0]}' weight (weights present: "
                          f"{', '.join(sorted(self.weights)) or 'none'})")


@dataclass
class ModelSpec:
    """A Sequential (``layers`` in order, ``input_shape`` batch-less, -1 for unknown) or a
    functional model (``layers`` with their inbound-node configs in ``calls``, ``None`` for an
    InputLayer whose batch-less shape is in ``input_shapes``; ``input_refs``/``output_refs`` are
    (layer, node, tensor) triples in the model's order)."""

    name: str
    sequential: bool
    layers: list["Spec"]
    input_shape: tuple[int, ...] | None = None
    calls: list[Any] = field(default_factory=list)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_refs: list[tuple[str, int, int]] = field(default_factory=list)
    output_refs: list[tuple[str, int, int]] = field(default_factory=list)


Spec = Union[LayerSpec, ModelSpec]


def _dense(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    (x,) = inputs
    kernel = np.asarray(layer.weight(b, "kernel"), dtype=np.float32)
    if kernel.ndim != 2:
        b.fail(name, f"Dense kernel of rank {kernel.ndim} is not supported")
    bias = (np.asarray(layer.weight(b, "bias"), dtype=np.float32) if cfg.get("use_bias", True)
            else np.zeros(kernel.shape[1], np.float32))
    if b.shape(x)[-1] != kernel.shape[0]:
        b.fail(name, f"Dense expects {kernel.shape[0]} features on the last axis, got shape "
                     f"{b.shape(x)}")
    kind, attrs = _act(b, cfg.get("activation"), name)
    return _dense_node(b, name, x, kernel.T, bias, kind, attrs)


def _activation(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    kind, attrs = _act(b, cfg.get("activation"), cfg["name"])
    if kind == "linear":
        return b.add_node("reshape", cfg["name"], [x], b.shape(x))
    return _apply_act(b, x, kind, attrs, cfg["name"])


def _step(b: _Builder, name: str, x: str, t: float) -> str:
    """1 where x > t, else 0, exactly: hard_sigmoid clip(a (x - t), 0, 1) with a a power of two
    so large that the next float above t already gives 1 (a x and a t are exact in float32)."""
    if abs(t) < 1e-30:
        b.fail(name, f"ReLU threshold={t} is not supported (supported: 0 or |threshold| >= 1e-30)")
    _, exp = np.frexp(abs(t))              # |t| < 2^exp: the float32 spacing next to t
    a = float(2.0 ** (25 - int(exp)))      # is at least 2^(exp - 25), so a (x - t) >= 1
    return b.add_node("activation", name, [x], b.shape(x), activation="hard_sigmoid",
                      alpha=a, beta=float(-a * float(t)))


def _relu(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """Keras ReLU(max_value=m, negative_slope=s, threshold=t), as Keras computes it:
    f(x) = clip(x if x > t else 0, 0, m) - s * relu(t - x) (leaky_relu when only s is set)."""
    (x,) = inputs
    name = cfg["name"]
    mv, slope = cfg.get("max_value"), float(cfg.get("negative_slope") or 0.0)
    thr = float(np.float32(cfg.get("threshold") or 0.0))   # Keras compares in float32
    if mv is not None and float(mv) < 0.0:
        b.fail(name, f"ReLU with max_value={mv} is not supported (supported: None or >= 0)")
    shape = b.shape(x)
    if not thr and mv is None:
        if slope:
            return _apply_act(b, x, "leaky_relu", {"alpha": slope}, name)
        return _apply_act(b, x, "relu", {}, name)
    if thr:
        pos = b.add_node("mul", name, [x, _step(b, name, x, thr)], shape)
    else:
        pos = x if mv is not None else _apply_act(b, x, "relu", {}, name)
    if mv is not None:
        m = float(mv)
        if m == 6.0:
            pos = _apply_act(b, pos, "relu6", {}, name)
        elif m == 0.0:
            pos = b.add_node("mul", name, [pos, b.const(name, "zero", [0.0])], shape)
        else:   # clip(p, 0, m) = m clip(p / m, 0, 1)
            pos = b.add_node("activation", name, [pos], shape, activation="hard_sigmoid",
                             alpha=1.0 / m, beta=0.0)
            pos = b.add_node("mul", name, [pos, b.const(name, "max_value", [m])], shape)
    if not slope:
        return pos
    neg = b.add_node("mul", name, [x, b.const(name, "minus_one", [-1.0])], shape)
    if thr:
        neg = b.add_node("add", name, [neg, b.const(name, "threshold", [thr])], shape)
    neg = _apply_act(b, neg, "relu", {}, name)
    neg = b.add_node("mul", name, [neg, b.const(name, "slope", [slope])], shape)
    return b.add_node("sub", name, [pos, neg], shape)


def _prelu(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """PReLU: relu(x) - alpha relu(-x) as Keras computes it (one alpha: leaky_relu)."""
    (x,) = inputs
    name = cfg["name"]
    shape = b.shape(x)
    alpha = np.asarray(layer.weight(b, "alpha"), np.float64)
    if alpha.ndim == len(shape) + 1 and alpha.shape[0] == 1:
        alpha = alpha[0]
    try:
        full = np.broadcast_to(alpha.reshape(alpha.shape if alpha.ndim == len(shape)
                                             else (-1,)), shape)
    except ValueError:
        b.fail(name, f"PReLU alpha of shape {alpha.shape} (shared_axes="
                     f"{cfg.get('shared_axes')}) does not match the input {shape}")
    if np.all(full == full.flat[0]):
        return _apply_act(b, x, "leaky_relu", {"alpha": float(full.flat[0])}, name)
    pos = _apply_act(b, x, "relu", {}, name)
    neg = b.add_node("mul", name, [x, b.const(name, "minus_one", [-1.0])], shape)
    neg = _apply_act(b, neg, "relu", {}, name)
    neg = b.add_node("mul", name, [neg, _bcast_const(b, name, "alpha", full, shape)], shape)
    return b.add_node("sub", name, [pos, neg], shape)


def _bcast_const(b: _Builder, name: str, what: str, values, shape) -> str:
    """A constant equal to ``values`` broadcast to ``shape``, without the leading axes along
    which it is constant (the IR broadcasts a constant over leading axes)."""
    full = np.broadcast_to(np.asarray(values, np.float64), tuple(shape))
    k = 0
    while k < len(shape) - 1 and np.array_equal(
            np.broadcast_to(full[(0,) * (k + 1)], full.shape), full):
        k += 1
    return b.const(name, what, full[(0,) * k])


def _leaky_relu(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return _apply_act(b, x, "leaky_relu", {"alpha": float(slope)}, cfg["name"])


def _elu(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    return _apply_act(b, x, "elu", {"alpha": float(cfg.get("alpha", 1.0))}, cfg["name"])


def _softmax(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, len(b.shape(x))):
        b.fail(cfg["name"], f"Softmax over axis {axis} is not supported (supported: the last axis)")
    return _apply_act(b, x, "softmax", {}, cfg["name"])


def _identity(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """Layers with no effect at inference (Dropout and friends): pass the input through."""
    (x,) = inputs
    return x


def _reshape(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    size = b.tensors[x].size
    if layer.cls == "Flatten":
        if cfg.get("data_format", "channels_last") == "channels_first" and len(b.shape(x)) > 1:
            b.fail(cfg["name"], "Flatten with data_format='channels_first' is not supported")
        shape = (size,)
    else:
        target = list(cfg["target_shape"])
        if -1 in target:
            known = int(np.prod([d for d in target if d != -1]))
            target[target.index(-1)] = size // known
        shape = tuple(target)
        if int(np.prod(shape)) != size:
            b.fail(cfg["name"], f"cannot reshape {b.shape(x)} to {tuple(cfg['target_shape'])}")
    return b.add_node("reshape", cfg["name"], [x], shape)


def _rank(cls: str) -> int:
    """The number of spatial axes of a Keras class named ...1D, ...2D or ...3D."""
    return 1 if "1D" in cls else 3 if "3D" in cls else 2


def _conv_transpose(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """Conv1DTranspose/Conv2DTranspose as the IR's ``deconv``: TensorFlow's output lengths
    (valid: n s + max(k_eff - s, 0); same: n s) and leading padding (same: (k_eff - s) // 2)."""
    name = cfg["name"]
    (x,) = inputs
    _check_channels_last(b, cfg)
    rank = 1 if "1D" in layer.cls else 2
    shape = b.shape(x)
    if len(shape) != rank + 1:
        b.fail(name, f"{layer.cls} expects a {rank + 1}-D input (batch aside), got {shape}")
    if cfg.get("output_padding") is not None:
        b.fail(name, f"{layer.cls} with output_padding={cfg['output_padding']} is not supported")
    _kl.refuse_theano_kernel(b, name, layer.cls)
    kernel = np.asarray(layer.weight(b, "kernel"), np.float32)       # (k.., out_c, in_c)
    cout, cin = kernel.shape[-2], kernel.shape[-1]
    if cin != shape[-1]:
        b.fail(name, f"{layer.cls} kernel {kernel.shape} does not match {shape[-1]} channels")
    W = np.moveaxis(kernel, -1, 0)                                   # (in_c, k.., out_c)
    if rank == 1:
        W = W[:, None]
    bias = (np.asarray(layer.weight(b, "bias"), np.float32) if cfg.get("use_bias", True)
            else np.zeros(cout, np.float32))
    ks = _tuple(cfg["kernel_size"], rank)
    st = _tuple(cfg["strides"], rank)
    dl = _tuple(cfg.get("dilation_rate", 1), rank)
    padding = cfg.get("padding", "valid")
    out, pads = [], []
    for n, k, s_, d in zip(shape[:-1], ks, st, dl):
        eff = (k - 1) * d + 1
        if padding == "valid":
            out.append(n * s_ + max(eff - s_, 0))
            pads.append(0)
        elif padding == "same":
            out.append(n * s_)
            pads.append(max(eff - s_, 0) // 2)
        else:
            b.fail(name, f"padding '{padding}' is not supported (supported: valid, same)")
    kind, attrs = _act(b, cfg.get("activation"), name)
    out_sp = tuple(out)
    y = b.add_node("deconv", name, [x, b.const(name, "W", W), b.const(name, "b", bias)],
                   out_sp + (cout,), rank=rank, out_spatial=out_sp, groups=1,
                   strides=(1,) * (2 - rank) + st, dilations=(1,) * (2 - rank) + dl,
                   pads=(0,) * (2 - rank) + tuple(pads),
                   activation=kind if kind != "softmax" else "linear",
                   **(attrs if kind != "softmax" else {}))
    if kind == "softmax":
        y = _apply_act(b, y, kind, {}, name)
    return y


def _conv(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    cls = layer.cls
    (x,) = inputs
    _check_channels_last(b, cfg)
    rank = 1 if "1D" in cls else 2
    shape = b.shape(x)
    if len(shape) != rank + 1:
        b.fail(name, f"{cls} expects a {rank + 1}-D input (batch aside), got {shape}")
    depthwise = cls.startswith("Depthwise")
    kernel = np.asarray(layer.weight(b, *(("depthwise_kernel", "kernel") if depthwise
                                          else ("kernel",))), np.float32)
    cin = shape[-1]
    if depthwise:
        mult = int(cfg.get("depth_multiplier", 1))
        k2 = kernel.reshape(kernel.shape[:rank] + (cin * mult,))  # (k.., cin*mult)
        W = np.moveaxis(k2, -1, 0)[..., None]                    # (cout, k.., 1)
        groups, cout = cin, cin * mult
    else:
        groups = int(cfg.get("groups", 1))
        W = np.moveaxis(kernel, -1, 0)                           # (cout, k.., cin/groups)
        cout = kernel.shape[-1]
    if rank == 1:
        W = W[:, None]                                           # (cout, 1, k, cin/g)
    use_bias = cfg.get("use_bias", True)
    bias = (np.asarray(layer.weight(b, "bias"), np.float32) if use_bias
            else np.zeros(cout, np.float32))
    ks = _tuple(cfg["kernel_size"], rank)
    st = _tuple(cfg["strides"], rank)
    dl = _tuple(cfg.get("dilation_rate", 1), rank)
    padding = cfg.get("padding", "valid")
    if padding == "causal" and rank != 1:
        b.fail(name, "causal padding is only for Conv1D")
    out_sp, pads = _geometry(b, name, shape[:-1], ks, st, dl, padding)
    kind, attrs = _act(b, cfg.get("activation"), name)
    wt = b.const(name, "W", W)
    bt = b.const(name, "b", bias)
    pad2 = (0,) + pads if rank == 1 else pads
    y = b.add_node("conv", name, [x, wt, bt], out_sp + (cout,), rank=rank, out_spatial=out_sp,
                   strides=(1,) * (2 - rank) + st, dilations=(1,) * (2 - rank) + dl,
                   pads=pad2, groups=groups,
                   activation=kind if kind != "softmax" else "linear",
                   **(attrs if kind != "softmax" else {}))
    if kind == "softmax":
        y = _apply_act(b, y, kind, {}, name)
    return y


def _pool(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    cls = layer.cls
    (x,) = inputs
    _check_channels_last(b, cfg)
    shape = b.shape(x)
    rank = len(shape) - 1
    if rank != _rank(cls):
        b.fail(name, f"{cls} on input shape {shape} is not supported")
    kind = "max" if "Max" in cls else "avg"
    if rank == 3 and cls.startswith("Global"):   # the (D, H, W, C) volume as (D H W, C)
        if cfg.get("keepdims"):
            b.fail(name, f"{cls} with keepdims=True is not supported")
        x = b.add_node("reshape", name, [x], (int(np.prod(shape[:-1])), shape[-1]))
        shape, rank = b.shape(x), 1
    elif rank == 3:
        return _kl.pool3d(b, layer, cfg, inputs)
    if cls.startswith("Global"):
        if cfg.get("keepdims"):
            b.fail(name, f"{cls} with keepdims=True is not supported")
        ks, st, out_sp, pads = tuple(shape[:-1]), (1,) * rank, (1,) * rank, (0,) * rank
        out_shape = (shape[-1],)
    else:
        ks = _tuple(cfg["pool_size"], rank)
        st = _tuple(cfg.get("strides") or cfg["pool_size"], rank)
        out_sp, pads = _geometry(b, name, shape[:-1], ks, st, (1,) * rank, cfg.get("padding", "valid"))
        out_shape = out_sp + (shape[-1],)
    pad = (1,) * (2 - rank)
    return b.add_node("pool", name, [x], out_shape, kind=kind, rank=rank, out_spatial=out_sp,
                      kernel=pad + ks, strides=pad + st, pads=(0,) * (2 - rank) + pads)


def _keras_axes(b: _Builder, name: str, what: str, axis, nd: int) -> list[int]:
    """Keras axes (counting the batch axis, negative from the end) as IR axes."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in axes:
        a = int(a)
        if a == 0 or not -nd <= a <= nd:
            b.fail(name, f"{what} over axis {axis} is not supported (supported: the axes of "
                         f"the {nd}-D input, batch aside)")
        out.append(a - 1 if a > 0 else nd + a)
    return sorted(set(out))


def _batchnorm(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    (x,) = inputs
    shape = b.shape(x)
    axes = _keras_axes(b, name, "BatchNormalization", cfg.get("axis", -1), len(shape))
    pshape = tuple(shape[i] if i in axes else 1 for i in range(len(shape)))
    c = int(np.prod(pshape))

    def f64(what: str, default=None):
        v = layer.weight(b, what, optional=default is not None)
        v = np.asarray(default if v is None else v, np.float64)
        if v.size != c:
            b.fail(name, f"BatchNormalization '{what}' of shape {v.shape} does not match axis "
                         f"{cfg.get('axis')} of the input {shape}")
        return v.reshape(-1)

    gamma, beta = f64("gamma", np.ones(c)), f64("beta", np.zeros(c))
    mean, var = f64("moving_mean"), f64("moving_variance")
    scale = gamma / np.sqrt(var + float(cfg.get("epsilon", 1e-3)))
    shift = beta - mean * scale
    if axes == [len(shape) - 1]:
        sc, sh = b.const(name, "scale", scale), b.const(name, "shift", shift)
    else:   # per index of a non-last axis: constants over the axes from it on
        sc = _bcast_const(b, name, "scale", scale.reshape(pshape), shape)
        sh = _bcast_const(b, name, "shift", shift.reshape(pshape), shape)
    y = b.add_node("mul", name, [x, sc], shape)
    return b.add_node("add", name, [y, sh], shape)


def _scale_shift(b: _Builder, name: str, x: str, scale, shift) -> str:
    """y = x * scale + shift with constants broadcast over the last axis (or scalars)."""
    shape = b.shape(x)
    y = x
    scale, shift = np.asarray(scale, np.float64).ravel(), np.asarray(shift, np.float64).ravel()
    for v in (scale, shift):
        if v.size not in (1, shape[-1]):
            b.fail(name, f"per-feature constants of size {v.size} do not match the input {shape}")
    if not np.all(scale == 1.0):
        y = b.add_node("mul", name, [y, b.const(name, "scale", scale)], shape)
    if not np.all(shift == 0.0):
        y = b.add_node("add", name, [y, b.const(name, "shift", shift)], shape)
    return y if y != x else b.add_node("reshape", name, [x], shape)


def _normalization(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    name = cfg["name"]
    axis = cfg.get("axis", -1)
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    if axis not in ((-1,), (len(b.shape(x)),)):
        b.fail(name, f"Normalization over axis {cfg.get('axis')} is not supported (supported: -1)")
    mean = np.asarray(layer.weight(b, "mean"), np.float64).ravel()
    std = np.maximum(np.sqrt(np.asarray(layer.weight(b, "variance"), np.float64).ravel()), 1e-7)
    if cfg.get("invert"):
        return _scale_shift(b, name, x, std, mean)
    return _scale_shift(b, name, x, 1.0 / std, -mean / std)


def _rescaling(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    return _scale_shift(b, cfg["name"], x, cfg.get("scale", 1.0), cfg.get("offset", 0.0))


def _pad_crop(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """ZeroPadding1D/2D/3D (concatenation with zeros) and Cropping1D/2D/3D (slices)."""
    (x,) = inputs
    name = cfg["name"]
    cls = layer.cls
    _check_channels_last(b, cfg)
    rank = _rank(cls)
    shape = b.shape(x)
    if len(shape) != rank + 1:
        b.fail(name, f"{cls} on input shape {shape} is not supported")
    amounts = cfg["padding"] if cls.startswith("Zero") else cfg["cropping"]
    if rank == 1:
        amounts = [_tuple(amounts, 2)]
    else:
        amounts = [_tuple(a, 2) for a in (amounts if not isinstance(amounts, int)
                                          else (amounts,) * rank)]
        if len(amounts) != rank:
            b.fail(name, f"{cls} amounts {cfg.get('padding', cfg.get('cropping'))} do not "
                         f"match {rank} spatial axes")
    for ax, (before, after) in enumerate(amounts):
        shape = b.shape(x)
        if cls.startswith("Zero"):
            parts = []
            for k in (before, after):
                zs = list(shape)
                zs[ax] = k
                parts.append(b.const(name, "zeros", np.zeros(zs)) if k else None)
            out = list(shape)
            out[ax] += before + after
            if before or after:
                x = b.add_node("concat", name, [p for p in (parts[0], x, parts[1]) if p is not None],
                               tuple(out), axis=ax)
        else:
            out = list(shape)
            out[ax] -= before + after
            if out[ax] <= 0:
                b.fail(name, f"cropping {amounts} leaves nothing of {shape}")
            if before or after:
                x = b.add_node("slice", name, [x], tuple(out), axis=ax, start=before,
                               stop=shape[ax] - after)
    return x


def _repeat_vector(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """RepeatVector(n): a vector (F,) as n rows (n, F), n copies joined (no weights)."""
    (x,) = inputs
    n = int(cfg["n"])
    if len(b.shape(x)) != 1 or n < 1:
        b.fail(cfg["name"], f"RepeatVector needs a vector input and n >= 1 (got shape "
                            f"{b.shape(x)}, n = {n})")
    row = b.add_node("reshape", cfg["name"], [x], (1,) + b.shape(x))
    return b.add_node("concat", cfg["name"], [row] * n, (n,) + b.shape(x), axis=0)


def _repeat(b: _Builder, name: str, x: str, ax: int, k: int) -> str:
    """Each index of axis ``ax`` repeated k times (nearest upsampling): the data as
    (outer, 1, inner), k copies of it joined on the middle axis."""
    shape = b.shape(x)
    if k == 1:
        return x
    outer = int(np.prod(shape[:ax + 1], dtype=np.int64))
    inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
    t = b.add_node("reshape", name, [x], (outer, 1, inner))
    t = b.add_node("concat", name, [t] * k, (outer, k, inner), axis=1)
    out = list(shape)
    out[ax] *= k
    return b.add_node("reshape", name, [t], tuple(out))


def _bilinear_matrix(n: int, k: int) -> np.ndarray:
    """The (n k, n) matrix of a bilinear upsampling by k with half-pixel centres, as
    tf.image.resize (antialias off) computes it: source (i + 0.5) / k - 0.5, clamped."""
    M = np.zeros((n * k, n))
    for i in range(n * k):
        src = (i + 0.5) / k - 0.5
        lo = np.floor(src)
        frac = src - lo
        M[i, int(min(max(lo, 0), n - 1))] += 1.0 - frac
        M[i, int(min(max(lo + 1, 0), n - 1))] += frac
    return M


def _on_axis(b: _Builder, name: str, x: str, ax: int, M: np.ndarray) -> str:
    """A dense by M (out, n) along axis ``ax``: transposed to the last axis and back."""
    shape = b.shape(x)
    nd = len(shape)
    perm = [i for i in range(nd) if i != ax] + [ax]
    t = x
    if ax != nd - 1:
        t = b.add_node("transpose", name, [t], tuple(shape[p] for p in perm), perm=perm)
    t = _dense_node(b, name, t, M, np.zeros(M.shape[0]))
    if ax != nd - 1:
        inv = [perm.index(i) for i in range(nd)]
        tshape = b.shape(t)
        t = b.add_node("transpose", name, [t], tuple(tshape[p] for p in inv), perm=inv)
    return t


def _upsampling(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """UpSampling1D/2D/3D: nearest as repeats (concatenations), 2-D bilinear as a dense along
    each spatial axis."""
    (x,) = inputs
    name = cfg["name"]
    cls = layer.cls
    rank = _rank(cls)
    shape = b.shape(x)
    if len(shape) != rank + 1:
        b.fail(name, f"{cls} expects a {rank + 1}-D input (batch aside), got {shape}")
    size = _tuple(cfg.get("size", 2), rank)
    if len(size) != rank or any(k < 1 for k in size):
        b.fail(name, f"{cls} with size={cfg.get('size')} is not supported")
    fmt = cfg.get("data_format") or "channels_last"
    if fmt not in ("channels_last", "channels_first"):
        b.fail(name, f"{cls} with data_format='{fmt}' is not supported")
    axes = [i + (1 if fmt == "channels_first" else 0) for i in range(rank)]
    interp = str(cfg.get("interpolation", "nearest")).lower()
    if interp not in ("nearest", "bilinear"):
        b.fail(name, f"{cls} with interpolation='{interp}' is not supported (supported: "
                     "nearest, bilinear)")
    y = x
    for ax, k in zip(axes, size):
        if interp == "nearest":
            y = _repeat(b, name, y, ax, k)
        elif k > 1:
            y = _on_axis(b, name, y, ax, _bilinear_matrix(b.shape(y)[ax], k))
    return y if y != x else b.add_node("reshape", name, [x], shape)


def _permute(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    perm = [int(d) - 1 for d in cfg["dims"]]
    shape = b.shape(x)
    return b.add_node("transpose", cfg["name"], [x], tuple(shape[p] for p in perm), perm=perm)


def _time_distributed(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """TimeDistributed(Dense) as one Dense on the last axis; of another layer (or a nested
    model), the inner layer once per time step on its slice, the results joined in time."""
    name = cfg["name"]
    inner = layer.inner
    if isinstance(inner, LayerSpec) and inner.cls == "Dense":
        icfg = dict(inner.cfg)
        icfg["name"] = name
        return _dense(b, inner, icfg, inputs)
    cls = inner.cls if isinstance(inner, LayerSpec) else "a model" if inner else "?"
    if inner is None or cls in _STATEFUL_INNER:
        b.fail(name, f"TimeDistributed({cls}) is not supported (supported: a layer without "
                     "state, or a model of such layers)")
    (x,) = inputs
    shape = b.shape(x)
    if len(shape) < 2:
        b.fail(name, f"TimeDistributed expects a (time, ...) input, got {shape}")
    if isinstance(inner, ModelSpec):
        _no_state_inside(b, name, inner)
    rows = []
    for t in range(shape[0]):
        xt = b.add_node("slice", name, [x], (1,) + shape[1:], axis=0, start=t, stop=t + 1)
        xt = b.add_node("reshape", name, [xt], shape[1:])
        if isinstance(inner, ModelSpec):
            outs = _walk(b, inner, [xt], None)[1]
            if len(outs) != 1:
                b.fail(name, "TimeDistributed of a model with several outputs is not supported")
            yt = outs[0]
        else:
            icfg = dict(inner.cfg)
            icfg["name"] = name
            yt = _convert(b, LayerSpec(inner.cls, icfg, inner.weights, inner.inner,
                                       inner.backward), [xt])
        rows.append(b.add_node("reshape", name, [yt], (1,) + b.shape(yt)))
    out = (shape[0],) + b.shape(rows[0])[1:]
    return rows[0] if len(rows) == 1 else b.add_node("concat", name, rows, out, axis=0)


#: Inner layers a TimeDistributed cannot run one step at a time (they carry state in time).
_STATEFUL_INNER = ("SimpleRNN", "GRU", "LSTM", "Bidirectional")


def _no_state_inside(b: _Builder, name: str, model: "ModelSpec") -> None:
    for part in model.layers:
        if isinstance(part, ModelSpec):
            _no_state_inside(b, name, part)
        elif part.cls in _STATEFUL_INNER:
            b.fail(name, f"TimeDistributed of a model holding {part.cls} is not supported")


def _bidirectional(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    """Bidirectional(RNN): the forward layer and the backward one (go_backwards), the backward
    sequence flipped back into time order (with return_sequences), merged as merge_mode says."""
    name = cfg["name"]
    fwd, bwd = layer.inner, layer.backward
    if fwd is None or bwd is None or fwd.cls not in ("SimpleRNN", "GRU", "LSTM"):
        b.fail(name, "Bidirectional is supported around SimpleRNN, GRU and LSTM (Keras 3 files)")
    mode = cfg.get("merge_mode", "concat")
    if mode not in ("concat", "sum", "mul", "ave"):
        b.fail(name, f"Bidirectional merge_mode={mode!r} is not supported (concat, sum, mul, "
                     "ave)")
    outs = []
    for part in (fwd, bwd):
        pcfg = dict(part.cfg)
        pcfg["name"] = name
        outs.append(_recurrent(b, part, pcfg, inputs))
    y_f, y_b = outs
    shape = b.shape(y_f)
    if bwd.cfg.get("return_sequences") and len(shape) == 2 and shape[0] > 1:
        T, H = shape
        rows = [b.add_node("slice", name, [y_b], (1, H), axis=0, start=t, stop=t + 1)
                for t in reversed(range(T))]
        y_b = b.add_node("concat", name, rows, shape, axis=0)
    if mode == "concat":
        out = shape[:-1] + (shape[-1] * 2,)
        return b.add_node("concat", name, [y_f, y_b], out, axis=len(shape) - 1)
    if mode == "mul":
        return b.add_node("mul", name, [y_f, y_b], shape)
    y = b.add_node("add", name, [y_f, y_b], shape)
    if mode == "ave":
        half = b.add_tensor(b.fresh(f"{name}:half"), (1,), np.full(1, 0.5, np.float32))
        y = b.add_node("mul", name, [y, half], shape)
    return y


def _merge(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    cls = layer.cls
    shapes = {b.shape(t) for t in inputs}
    if len(shapes) != 1:
        b.fail(name, f"{cls} of different shapes {sorted(shapes)} is not supported "
                     "(supported: equal shapes)")
    shape = b.shape(inputs[0])
    if cls == "Subtract":
        return b.add_node("sub", name, inputs, shape)
    if cls in ("Maximum", "Minimum"):
        # max(y, t) = t + relu(y - t), min(y, t) = y - relu(y - t)
        y = inputs[0]
        for t in inputs[1:]:
            r = _apply_act(b, b.add_node("sub", name, [y, t], shape), "relu", {}, name)
            y = b.add_node("add", name, [t, r], shape) if cls == "Maximum" else \
                b.add_node("sub", name, [y, r], shape)
        return y
    op = "mul" if cls == "Multiply" else "add"
    y = inputs[0]
    for t in inputs[1:]:
        y = b.add_node(op, name, [y, t], shape)
    if cls == "Average":
        y = b.add_node("mul", name, [y, b.const(name, "inv_n", [1.0 / len(inputs)])], shape)
    return y


def _concat(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    shapes = [b.shape(t) for t in inputs]
    nd = len(shapes[0])
    axis = int(cfg.get("axis", -1))
    axis = axis - 1 if axis > 0 else nd + axis
    if any(len(s) != nd for s in shapes) or not 0 <= axis < nd or any(
            s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        b.fail(name, f"cannot concatenate shapes {shapes} on axis {cfg.get('axis')}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return b.add_node("concat", name, inputs, tuple(out), axis=axis)


# ---- Recurrent layers, unrolled over the window ------------------------------------------

class _Cell:
    """Emits one time step of a recurrent layer as IR nodes."""

    def __init__(self, b: _Builder, name: str) -> None:
        self.b, self.name = b, name

    def lin(self, parts: list[tuple[str, np.ndarray]], bias: np.ndarray, kind="linear",
            attrs=None) -> str:
        """dense over the concatenation of the non-zero parts: sum_i W_i x_i + bias."""
        live = [(t, W) for t, W in parts if t not in self.b.zeros]
        if not live:
            return self.b.const(self.name, "bias", bias)
        if len(live) == 1:
            x, W = live[0]
        else:
            n = sum(self.b.tensors[t].size for t, _ in live)
            x = self.b.add_node("concat", self.name, [t for t, _ in live], (n,), axis=0)
            W = np.concatenate([W for _, W in live], axis=1)
        return _dense_node(self.b, self.name, x, W, bias, kind, attrs)

    def op(self, op: str, a: str, c: str) -> str:
        return self.b.add_node(op, self.name, [a, c], self.b.shape(a))

    def act(self, x: str, kind_attrs) -> str:
        kind, attrs = kind_attrs
        if x in self.b.tensors and self.b.tensors[x].is_const:
            from ..reference import activation
            return self.b.const(self.name, "c", activation(self.b.tensors[x].data, kind, **attrs))
        return _apply_act(self.b, x, kind, attrs, self.name)


def _recurrent(b: _Builder, layer: LayerSpec, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    cls = layer.cls
    (x,) = inputs
    shape = b.shape(x)
    if len(shape) != 2:
        b.fail(name, f"{cls} expects a (time, features) input, got {shape}")
    if cfg.get("return_state"):
        b.fail(name, f"{cls} with return_state=True is not supported")
    backwards = bool(cfg.get("go_backwards"))
    if backwards and b.streaming:  # one step at a time has no "backwards": window form only
        b.fail(name, f"{cls} with go_backwards=True has no one-step streaming form")
    if cfg.get("stateful"):
        b.fail(name, f"{cls} with stateful=True is not supported: the generated predict starts "
                     "each window from zero states (save the model with stateful=False; its "
                     "NAME_step/NAME_reset carry the state from one call to the next)")
    b.recurrent = True
    T, F = shape
    H = int(cfg["units"])
    kernel = np.asarray(layer.weight(b, "kernel"), np.float64)
    rec = np.asarray(layer.weight(b, "recurrent_kernel"), np.float64)
    use_bias = cfg.get("use_bias", True)
    act = _act(b, cfg.get("activation", "tanh"), name)
    # (softmax, as either, acts on a gate's or the state's whole vector of units, as in Keras)
    ract = _act(b, cfg.get("recurrent_activation", "sigmoid"), name)
    cell = _Cell(b, name)
    gates = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}[cls]
    if kernel.shape != (F, gates * H) or rec.shape != (H, gates * H):
        b.fail(name, f"{cls} weights of shapes {kernel.shape} and {rec.shape} do not match "
                     f"{F} input features and {H} units")
    Wx = kernel.T.reshape(gates, H, F)
    Wh = rec.T.reshape(gates, H, H)
    reset_after = cls == "GRU" and cfg.get("reset_after", True)
    if use_bias:
        bias = np.asarray(layer.weight(b, "bias"), np.float64)
        if bias.shape != ((2, gates * H) if reset_after else (gates * H,)):
            b.fail(name, f"{cls} bias of shape {bias.shape} does not match reset_after="
                         f"{bool(reset_after)} and {H} units")
        bx, bh = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    else:
        bx = bh = np.zeros(gates * H)
    bx, bh = bx.reshape(gates, H), bh.reshape(gates, H)

    def state(what: str) -> str:
        if b.streaming:
            t = b.add_tensor(b.fresh(f"{name}:{what}_state"), (H,))
            return t
        t = b.add_tensor(b.fresh(f"{name}:{what}0"), (H,), np.zeros(H, np.float32))
        b.zeros.add(t)
        return t

    h = state("h")
    c = state("c") if cls == "LSTM" else ""
    h_in, c_in = h, c
    outs = []
    # go_backwards: the window from its last step to its first; the outputs (with
    # return_sequences) in that order too, as Keras returns them
    for t in (reversed(range(T)) if backwards else range(T)):
        xt = x if T == 1 else b.add_node("slice", name, [x], (F,), axis=0, start=t, stop=t + 1)
        if cls == "SimpleRNN":
            k, a = act
            h = cell.lin([(xt, Wx[0]), (h, Wh[0])], bx[0] + bh[0], k, a)
        elif cls == "GRU":
            rk, ra = ract
            z = cell.lin([(xt, Wx[0]), (h, Wh[0])], bx[0] + bh[0], rk, ra)
            r = cell.lin([(xt, Wx[1]), (h, Wh[1])], bx[1] + bh[1], rk, ra)
            if reset_after:
                xh = cell.lin([(xt, Wx[2])], bx[2])
                hh_r = cell.lin([(h, Wh[2])], bh[2])
                hh = cell.act(cell.op("add", xh, cell.op("mul", r, hh_r)), act)
            else:
                rh = h if h in b.zeros else cell.op("mul", r, h)
                if h in b.zeros:
                    b.zeros.add(rh)
                hh = cell.lin([(xt, Wx[2]), (rh, Wh[2])], bx[2], *act)
            if h in b.zeros:   # h = (1 - z) hh
                h = cell.op("sub", hh, cell.op("mul", z, hh))
            else:              # h = z h + (1 - z) hh = hh + z (h - hh)
                h = cell.op("add", hh, cell.op("mul", z, cell.op("sub", h, hh)))
        else:  # LSTM: gates i, f, c, o
            rk, ra = ract
            ig = cell.lin([(xt, Wx[0]), (h, Wh[0])], bx[0] + bh[0], rk, ra)
            fg = cell.lin([(xt, Wx[1]), (h, Wh[1])], bx[1] + bh[1], rk, ra)
            gg = cell.lin([(xt, Wx[2]), (h, Wh[2])], bx[2] + bh[2], *act)
            og = cell.lin([(xt, Wx[3]), (h, Wh[3])], bx[3] + bh[3], rk, ra)
            ci = cell.op("mul", ig, gg)
            c = ci if c in b.zeros else cell.op("add", cell.op("mul", fg, c), ci)
            h = cell.op("mul", og, cell.act(c, act))
        outs.append(h)
    if b.streaming:
        b.states.append((h_in, h))
        if cls == "LSTM":
            b.states.append((c_in, c))
    if cfg.get("return_sequences"):
        if T == 1:
            return b.add_node("reshape", name, [h], (1, H))
        return b.add_node("concat", name, outs, (T, H), axis=0)
    return h



#: Keras layer class -> (its lowering, what of it is supported). The Keras table of
#: docs/COMPILER.md is made from this (:func:`layers_table`; a test checks that they agree).
LAYERS: dict[str, tuple[Callable[..., str], str]] = {
    "Dense": (_dense, "any rank (on the last axis); `use_bias`; `activation` as Activation"),
    "Activation": (_activation, ", ".join(f"`{a}`" for a in sorted(_KERAS_ACT))
                   + " (Keras 2 files: `hard_sigmoid` slope 0.2)"),
    "ReLU": (_relu, "`max_value` (any, >= 0), `negative_slope`, `threshold` (x if x > t "
                    "else 0: an exact step, with derivative 0 at the jump)"),
    "LeakyReLU": (_leaky_relu, "`negative_slope` (Keras 2: `alpha`)"),
    "PReLU": (_prelu, "per-element `alpha`, `shared_axes`: relu(x) - alpha relu(-x) "
                      "(one alpha: `leaky_relu`)"),
    "ELU": (_elu, "`alpha`"),
    "Softmax": (_softmax, "the last axis"),
    "Conv1D": (_conv, "valid, same, causal; strides, dilation_rate, groups; channels_last"),
    "Conv2D": (_conv, "valid, same; strides, dilation_rate, groups; channels_last"),
    "Conv3D": (_kl.conv3d, "valid, same; strides, dilation_rate; channels_last (a 2-D conv "
                           "per output depth over the depths it reads, joined on channels)"),
    "Conv1DTranspose": (_conv_transpose, "valid, same; strides, dilation_rate; no "
                                         "output_padding; channels_last"),
    "Conv2DTranspose": (_conv_transpose, "as Conv1DTranspose"),
    "DepthwiseConv1D": (_conv, "as Conv1D, `depth_multiplier`"),
    "DepthwiseConv2D": (_conv, "as Conv2D, `depth_multiplier`"),
    "MaxPooling1D": (_pool, "valid, same; strides; channels_last"),
    "MaxPooling2D": (_pool, "valid, same; strides; channels_last"),
    "AveragePooling1D": (_pool, "valid, same; strides; channels_last"),
    "AveragePooling2D": (_pool, "valid, same; strides; channels_last"),
    "MaxPooling3D": (_pool, "valid, same; strides; channels_last (two 2-D pools: over depth "
                            "and height, then width)"),
    "AveragePooling3D": (_pool, "as MaxPooling3D"),
    "GlobalAveragePooling1D": (_pool, "channels_last; `keepdims` False"),
    "GlobalAveragePooling2D": (_pool, "channels_last; `keepdims` False"),
    "GlobalMaxPooling1D": (_pool, "channels_last; `keepdims` False"),
    "GlobalMaxPooling2D": (_pool, "channels_last; `keepdims` False"),
    "GlobalAveragePooling3D": (_pool, "channels_last; `keepdims` False"),
    "GlobalMaxPooling3D": (_pool, "channels_last; `keepdims` False"),
    "Flatten": (_reshape, "channels_last (free)"),
    "Reshape": (_reshape, "any target shape, -1 too (free)"),
    "BatchNormalization": (_batchnorm, "inference statistics; any `axis` (the last: folded "
                                       "into the Dense/Conv before it, else a scale and shift; "
                                       "another axis, e.g. channels_first: constants over the "
                                       "axes from it on), several axes (Keras 2)"),
    "Add": (_merge, "equal shapes"),
    "Subtract": (_merge, "equal shapes"),
    "Multiply": (_merge, "equal shapes"),
    "Average": (_merge, "equal shapes"),
    "Maximum": (_merge, "equal shapes: t + relu(y - t)"),
    "Minimum": (_merge, "equal shapes: y - relu(y - t)"),
    "Concatenate": (_concat, "any axis but the batch"),
    "Dot": (_kl.dot, "`axes` (one each, not the batch), `normalize` (x / max(norm, 1e-7) as "
                     "x exp(-log(max(sum x^2, 1e-14)) / 2)): copies, a product, a sum"),
    "Embedding": (_kl.embedding, "float indices, truncated and negative ones from the end as "
                                 "Keras casts them: the table row exactly, Jacobian 0 (exact "
                                 "0/1 steps, a one-hot, a Dense by the table)"),
    "SimpleRNN": (_recurrent, "unrolled over the window (and a one-step streaming form); "
                              "`return_sequences`, `go_backwards` (window form only); no "
                              "`return_state`, `stateful`; any activation, `softmax` too (over "
                              "the units)"),
    "GRU": (_recurrent, "as SimpleRNN; `reset_after` True and False"),
    "LSTM": (_recurrent, "as SimpleRNN"),
    "Normalization": (_normalization, "`axis` -1; `invert`"),
    "Rescaling": (_rescaling, "`scale`, `offset` (scalars or per last-axis feature)"),
    "ZeroPadding1D": (_pad_crop, "channels_last"),
    "ZeroPadding2D": (_pad_crop, "channels_last"),
    "ZeroPadding3D": (_pad_crop, "channels_last"),
    "Cropping1D": (_pad_crop, "channels_last"),
    "Cropping2D": (_pad_crop, "channels_last"),
    "Cropping3D": (_pad_crop, "channels_last"),
    "UpSampling1D": (_upsampling, "`size` (repeats, no weights)"),
    "RepeatVector": (_repeat_vector, "`n` copies of a vector as rows (no weights)"),
    "UpSampling2D": (_upsampling, "`size`; `interpolation` nearest (repeats) or bilinear "
                                  "(a Dense along each spatial axis; half-pixel centres, "
                                  "as tf.image.resize); channels_last and channels_first"),
    "UpSampling3D": (_upsampling, "`size` (repeats, no weights); channels_last and "
                                  "channels_first"),
    "Permute": (_permute, "any permutation"),
    "TimeDistributed": (_time_distributed, "of Dense (one Dense); of any layer without state "
                                          "(Conv1D, Conv2D, pools, ...) or a model of them: "
                                          "the layer once per time step"),
    "Bidirectional": (_bidirectional, "of SimpleRNN, GRU, LSTM; merge_mode concat, sum, mul, "
                                      "ave; window form only (Keras 3 files)"),
    "Identity": (_identity, "removed"),
    "Dropout": (_identity, "removed"),
    "SpatialDropout1D": (_identity, "removed"),
    "SpatialDropout2D": (_identity, "removed"),
    "SpatialDropout3D": (_identity, "removed"),
    "GaussianNoise": (_identity, "removed"),
    "GaussianDropout": (_identity, "removed"),
    "AlphaDropout": (_identity, "removed"),
    "ActivityRegularization": (_identity, "removed"),
    "Lambda": (_kl.lambda_layer, "with `allow_lambda` / `--allow-lambda` only (loading runs "
                                 "the file's Python): one input, a linear map of it (slices, "
                                 "splits, reshapes, permutations, scalings), found by "
                                 "evaluating it; its matrix probed exactly"),
}
_CONVERTERS: dict[str, Callable[..., str]] = {k: fn for k, (fn, _) in LAYERS.items()}

#: The model classes, inlined wherever they are used (a row each in the Keras table).
MODEL_CLASSES = {
    "InputLayer": "fixed shape (batch aside); `None` dims fixed with `--input-shape`",
    "Sequential": "a model, or nested as a layer (inlined)",
    "Functional": "any DAG: several inputs and outputs, shared layers (each call its own "
                  "nodes on the same weights), nested models (inlined, one output)",
    "Model": "as Functional",
}


def layers_table() -> str:
    """The Markdown table of :data:`LAYERS` and :data:`MODEL_CLASSES` (in docs/COMPILER.md
    between the keras-layers markers)."""
    notes = {k: d for k, (_, d) in LAYERS.items()} | MODEL_CLASSES
    rows = ["| Keras layer | supported |", "|---|---|"]
    rows += [f"| {k} | {notes[k]} |" for k in sorted(notes, key=str.lower)]
    return "\n".join(rows)


def _convert(b: _Builder, layer: LayerSpec, inputs: list[str]) -> str | list[str]:
    fn = _CONVERTERS.get(layer.cls)
    if fn is None:
        raise CompileError(
            f"layer type '{layer.cls}' is not supported "
            f"(supported: {', '.join(sorted(_CONVERTERS))})",
            file=b.where, layer=layer.name,
        )
    try:
        return fn(b, layer, layer.cfg, inputs)
    except CompileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CompileError(f"cannot read the {layer.cls} layer's configuration and weights "
                           f"({one_line(e)})", file=b.where, layer=layer.name) from None


SUPPORTED_LAYERS = frozenset(_CONVERTERS) | frozenset(MODEL_CLASSES)


def _history_refs(obj: Any) -> list[tuple[str, int, int]]:
    """Find every ``keras_history`` reference in a functional layer's inbound-node args."""
    found: list[tuple[str, int, int]] = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            h = obj["config"]["keras_history"]
            found.append((h[0], int(h[1]), int(h[2])))
        else:
            for v in obj.values():
                found.extend(_history_refs(v))
    elif isinstance(obj, (list, tuple)):
        # Legacy (.h5 / Keras 2) inbound nodes are lists like [name, node, tensor, kwargs].
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            found.append((obj[0], int(obj[1]), int(obj[2])))
        else:
            for v in obj:
                found.extend(_history_refs(v))
    return found


def _batchless(shape) -> tuple[int, ...]:
    dims = tuple(shape)[1:]
    return tuple(-1 if d is None else int(d) for d in dims)


def _is_model(layer) -> bool:
    return type(layer).__name__ in ("Sequential", "Functional", "Model")


# ---- Keras 3: a loaded model as specs -----------------------------------------------------

def _layer_spec(layer) -> Spec:
    if _is_model(layer):
        return _model_spec(layer)
    cls = type(layer).__name__
    weights: dict[str, np.ndarray] = {}
    for v in layer.weights:
        weights.setdefault(str(v.name).split("/")[-1].split(":")[0], np.asarray(v.numpy()))
    if cls == "Normalization":  # mean and variance given to the constructor are not variables
        weights["mean"], weights["variance"] = np.asarray(layer.mean), np.asarray(layer.variance)
    if cls == "Bidirectional":
        return LayerSpec(cls, layer.get_config(), {}, _layer_spec(layer.forward_layer),
                         _layer_spec(layer.backward_layer))
    inner = _layer_spec(layer.layer) if cls == "TimeDistributed" else None
    cfg = layer.get_config()
    if cls == "Lambda":  # evaluated (never read) when lowered: see keras_lower.lambda_layer
        cfg[_kl.LAMBDA_KEY] = layer
    return LayerSpec(cls, cfg, weights, inner)


def _model_spec(model) -> ModelSpec:
    if type(model).__name__ == "Sequential":
        try:
            shape = _batchless(model.inputs[0].shape)
        except (AttributeError, IndexError, TypeError, ValueError):
            shape = None
        return ModelSpec(model.name, True, [_layer_spec(l) for l in model.layers], shape)
    cfg = model.get_config()
    m = ModelSpec(model.name, False, [], input_refs=_history_refs(cfg["input_layers"]),
                  output_refs=_history_refs(cfg["output_layers"]))
    for lcfg in cfg["layers"]:
        layer = model.get_layer(lcfg["name"])
        if type(layer).__name__ == "InputLayer":
            m.layers.append(LayerSpec("InputLayer", {"name": lcfg["name"]}))
            m.calls.append(None)
            m.input_shapes[lcfg["name"]] = _batchless(layer.output.shape)
        else:
            spec = _layer_spec(layer)
            if isinstance(spec, ModelSpec):
                spec.name = lcfg["name"]
            m.layers.append(spec)
            m.calls.append(lcfg.get("inbound_nodes") or [])
    return m


#: allow_lambda for the Keras 3 reader when it is reached through another one (a Keras 3 .h5).
ALLOW_LAMBDA: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_lambda",
                                                                   default=False)


def _lambda_globals(keras) -> dict:
    """The global names a Lambda's function sees: a file stores its bytecode only, so the
    modules it calls by their usual names are bound here (Keras would give it none)."""
    import builtins

    names = {"__builtins__": builtins, "keras": keras, "ops": keras.ops, "K": keras.backend,
             "np": np, "numpy": np}
    try:
        import tensorflow as tf  # noqa: PLC0415

        names.update(tf=tf, tensorflow=tf)
    except ImportError:
        pass
    return names


def _load_unsafe(keras, path: Path):
    """Load with safe_mode=False, the Lambda functions bound to :func:`_lambda_globals`."""
    try:
        from keras.src.utils import python_utils  # noqa: PLC0415
        original = python_utils.func_load
    except (ImportError, AttributeError):  # another Keras layout: its own globals, then
        return keras.saving.load_model(str(path), compile=False, safe_mode=False)
    names = _lambda_globals(keras)

    def func_load(code, defaults=None, closure=None, globs=None):
        return original(code, defaults=defaults, closure=closure, globs=globs or names)

    python_utils.func_load = func_load
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=False)
    finally:
        python_utils.func_load = original


def load_keras(path: Path, input_shapes: InputShapes = None,
               allow_lambda: bool | None = None) -> Graph:
    """A ``.keras`` archive, or an ``.h5`` file written by Keras 3, loaded by Keras itself
    (``input_shapes``: see :func:`graph_from_spec`). ``allow_lambda`` loads Lambda layers,
    which runs Python code from the file (default: :data:`ALLOW_LAMBDA`)."""
    keras = _import_keras()
    if allow_lambda is None:
        allow_lambda = ALLOW_LAMBDA.get()
    try:
        if allow_lambda:
            model = _load_unsafe(keras, path)
        else:
            model = keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # Keras raises many types for bad files
        if not allow_lambda and "deserialization of a `Lambda`" in str(e):
            raise _lambda_refusal(path) from None
        raise _load_error(path, e) from None
    return graph_from_spec(_model_spec(model), path, input_shapes=input_shapes)


def _file_config(path: Path) -> dict:
    """The model config a .keras archive or a Keras 2 .h5 file stores (raises if unreadable)."""
    import json
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def _lambda_refusal(path: Path) -> CompileError:
    layer = ""
    try:
        cfg = _file_config(path)
        layer = next((str(c["name"]) for k, c in _layer_configs(cfg) if k == "Lambda"), "")
    except Exception:  # noqa: BLE001  (only the layer's name is at stake)
        pass
    return CompileError(f"Lambda {layer!r} is Python code stored in the file, which loading "
                        "runs; pass --allow-lambda (allow_lambda=True) if the file is trusted",
                        file=str(path), layer=layer)


def _load_error(path: Path, e: Exception) -> CompileError:
    """Why Keras could not load a file: "corrupt" only if the container itself is damaged."""
    import zipfile

    damaged = ""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                damaged = f"member '{bad}' fails its CRC check"
        except (zipfile.BadZipFile, OSError, EOFError) as ze:
            damaged = one_line(ze)
    elif path.suffix.lower() == ".keras" or path.read_bytes()[:2] == b"PK":
        damaged = "the zip archive's directory is missing"
    if damaged:
        return CompileError(f"the file is corrupt or truncated ({damaged}); Keras could not "
                            f"load it ({one_line(e)})", file=str(path))
    return CompileError(f"Keras 3 could not load the file ({one_line(e)})", file=str(path),
                        layer=_guess_layer(path, str(e)))


def _layer_configs(obj: Any):
    """Every (class_name, config) of a layer in a model config, nested ones included."""
    if isinstance(obj, dict):
        if isinstance(obj.get("class_name"), str) and isinstance(obj.get("config"), dict) \
                and "name" in obj["config"]:
            yield obj["class_name"], obj["config"]
        for v in obj.values():
            yield from _layer_configs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _layer_configs(v)


def _guess_layer(path: Path, msg: str) -> str:
    """The layer a Keras load error is about, from the file's own config: one whose name the
    message quotes, else one of the class it names that has the config keys it quotes."""
    try:
        cfg = _file_config(path)
    except Exception:  # noqa: BLE001  (only a better message is at stake)
        return ""
    layers = [(c, str(k["name"])) + (k,) for c, k in _layer_configs(cfg)]
    named = [n for _, n, _ in layers if re.search(rf"""['"]{re.escape(n)}['"]""", msg)]
    if len(named) == 1:
        return named[0]
    keys = set(re.findall(r"""['"](\w+)['"]\s*:""", msg))
    hits = [n for c, n, k in layers if re.search(rf"\b{re.escape(c)}\b", msg)
            and keys <= set(k)]
    return hits[0] if len(hits) == 1 else ""


# ---- Lowering of specs (both paths) -------------------------------------------------------

def _walk(b: _Builder, model: ModelSpec, given: list[str] | None, input_tensor
          ) -> tuple[list[str], list[str]]:
    """Convert the layers of a Sequential or functional model. ``given``: the tensors feeding a
    model nested as a layer (None: make the graph inputs)."""
    if model.sequential:
        if given is None:
            if model.input_shape is None:
                raise CompileError("the Sequential model has no input shape (it was never "
                                   "built); give its first layer an input shape",
                                   file=b.where, layer=model.name)
            x = input_tensor("input", model.input_shape)
        else:
            x = given[0]
        inputs = [x]
        for layer in model.layers:
            if isinstance(layer, ModelSpec):
                x = _walk(b, layer, [x], input_tensor)[1][0]
            else:
                x = _convert(b, layer, [x])
                if isinstance(x, list):
                    if len(x) != 1:
                        raise CompileError(f"the layer returns {len(x)} tensors, which a "
                                           "Sequential model cannot pass on", file=b.where,
                                           layer=layer.name)
                    x = x[0]
        return inputs, [x]
    # Keyed by (layer, call, output index). A layer called several times (a shared layer)
    # becomes new nodes at each call, on the same weights. A reference's node index is the
    # call, except that Keras 2 numbers a nested model's calls from 1 (its node 0 is the
    # model's own construction); the node index of a layer called once is not needed.
    produced: dict[tuple[str, int, int], str] = {}
    ncalls: dict[str, int] = {}
    nested: set[str] = set()

    def key(ref: tuple[str, int, int], reader: str) -> tuple[str, int, int]:
        name, node, tensor = ref
        n = ncalls.get(name, 1)
        if n == 1:
            return (name, 0, tensor)
        call = node - (1 if b.dialect.legacy and name in nested else 0)
        if not 0 <= call < n:
            raise CompileError(f"layer reads call {node} of {name!r}, which is called {n} "
                               "times", file=b.where, layer=reader)
        return (name, call, tensor)

    for layer, nodes in zip(model.layers, model.calls):
        ncalls[layer.name] = 1 if nodes is None else len(nodes)
        if isinstance(layer, ModelSpec):
            nested.add(layer.name)
    input_refs = [key(r, model.name) for r in model.input_refs]
    if given is not None and len(given) != len(input_refs):
        raise CompileError(f"nested model takes {len(input_refs)} inputs, given {len(given)}",
                           file=b.where, layer=model.name)
    # The calls in the config's order, each once its inputs are computed (a shared layer's
    # later call may read a layer listed after it).
    pending: list[tuple[Spec, int, Any]] = []
    for layer, nodes in zip(model.layers, model.calls):
        if nodes is None:  # an InputLayer
            k = (layer.name, 0, 0)
            if given is None:
                produced[k] = input_tensor(layer.name, model.input_shapes[layer.name])
            else:
                produced[k] = given[input_refs.index(k)]
            continue
        if not nodes:
            raise CompileError("layer is never called (it has no inbound nodes)",
                               file=b.where, layer=layer.name)
        pending += [(layer, call, node) for call, node in enumerate(nodes)]
    while pending:
        ready = [p for p in pending
                 if all(key(r, p[0].name) in produced for r in _history_refs(p[2]))]
        if not ready:
            layer, _, node = pending[0]
            r = next(key(r, layer.name) for r in _history_refs(node)
                     if key(r, layer.name) not in produced)
            raise CompileError(f"layer reads {r[0]!r} (call {r[1]}, output {r[2]}), which is "
                               "not computed before it", file=b.where, layer=layer.name)
        for layer, call, node in pending:
            refs = [key(r, layer.name) for r in _history_refs(node)]
            if any(r not in produced for r in refs):
                continue
            ins = [produced[r] for r in refs]
            if isinstance(layer, ModelSpec):
                outs = _walk(b, layer, ins, input_tensor)[1]
                if len(outs) != 1:
                    raise CompileError("a nested model with several outputs is not supported",
                                       file=b.where, layer=layer.name)
                produced[(layer.name, call, 0)] = outs[0]
            else:
                out = _convert(b, layer, ins)
                for i, t in enumerate(out if isinstance(out, list) else [out]):
                    produced[(layer.name, call, i)] = t
        pending = [p for p in pending if (p[0].name, p[1], 0) not in produced]
    out_refs = [key(r, model.name) for r in model.output_refs]
    missing = [r for r in out_refs if r not in produced]
    if missing:
        raise CompileError(f"model output {missing[0][0]!r} is not computed", file=b.where,
                           layer=model.name)
    return [produced[r] for r in input_refs], [produced[r] for r in out_refs]


def _input_names(model: ModelSpec) -> list[str]:
    """The graph inputs' names: ``input`` for a Sequential, the InputLayers' of a functional."""
    return ["input"] if model.sequential else [r[0] for r in model.input_refs]


def _build(model: ModelSpec, path: Path, streaming: bool, dialect: Dialect,
           given: GivenShapes) -> Graph:
    b = _Builder(path, streaming, dialect)
    n_inputs = len(_input_names(model))

    def input_tensor(name: str, shape) -> str:
        shape = given.fix(name, tuple(shape), n_inputs=n_inputs)
        if streaming and len(shape) == 2:
            shape = (1,) + shape[1:]
        return b.add_tensor(name, shape)

    inputs, outputs = _walk(b, model, None, input_tensor)
    window = 0
    if b.recurrent and not streaming:
        window = b.tensors[inputs[0]].shape[0]
    return Graph(
        name=model.name, inputs=inputs, outputs=outputs, tensors=b.tensors, nodes=b.nodes,
        source_file=str(path), states=b.states, window=window,
    )


def graph_from_spec(model: ModelSpec, path: Path, dialect: Dialect = KERAS3,
                    input_shapes: InputShapes = None) -> Graph:
    """The IR of a model (and, for a recurrent one, its one-step streaming form).
    ``input_shapes`` fixes the dynamic (``None``) dimensions of its inputs (batch aside)."""
    given = GivenShapes(input_shapes, dialect.where(path))
    given.check_names(_input_names(model))
    graph = _build(model, path, False, dialect, given)
    if graph.window:
        try:
            graph.step_graph = _build(model, path, True, dialect, given)
            graph.step_graph.validate()
        except CompileError:
            graph.step_graph = None  # the layers after the recurrent ones need the whole window
    return graph
