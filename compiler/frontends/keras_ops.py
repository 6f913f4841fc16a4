"""Pieces the Keras front-end's modules share (:mod:`.keras`, :mod:`.keras_lower`): the Keras
activation names, IR node helpers, window geometry with TensorFlow's rules, and the one-line
form of an exception. ``b`` is the front-end's graph builder (``keras._Builder``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CompileError

#: Keras activation names -> (IR activation, attributes).
_KERAS_ACT = {
    "linear": ("linear", {}),
    "relu": ("relu", {}),
    "relu6": ("relu6", {}),
    "leaky_relu": ("leaky_relu", {"alpha": 0.2}),
    "elu": ("elu", {"alpha": 1.0}),
    "selu": ("selu", {}),
    "tanh": ("tanh", {}),
    "sigmoid": ("sigmoid", {}),
    "hard_sigmoid": ("hard_sigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    "softplus": ("softplus", {}),
    "softsign": ("softsign", {}),
    "swish": ("silu", {}),
    "silu": ("silu", {}),
    "gelu": ("gelu", {}),
    "exponential": ("exponential", {}),
    "softmax": ("softmax", {}),
}


def _activation_name(value: Any, layer: str, where: str) -> str:
    """Keras stores activations as a string, or a dict for serialized functions."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name") or value.get("class_name")
    if value is None:
        return "linear"
    if not isinstance(value, str):
        raise CompileError(f"activation {value!r} is not a named function", file=where,
                           layer=layer)
    return value


def _act(b: Any, value: Any, layer: str) -> tuple[str, dict]:
    name = _activation_name(value, layer, b.where)
    if name not in _KERAS_ACT:
        b.fail(layer, f"activation '{name}' is not supported "
                      f"(supported: {', '.join(sorted(_KERAS_ACT))})")
    kind, attrs = _KERAS_ACT[name]
    attrs = dict(attrs)
    if kind == "hard_sigmoid":
        attrs["alpha"] = b.dialect.hard_sigmoid_slope
    return kind, attrs


def _apply_act(b: Any, x: str, kind: str, attrs: dict, layer: str) -> str:
    if kind == "linear":
        return x
    return b.add_node("activation", layer, [x], b.shape(x), activation=kind, **attrs)


def _dense_node(b: Any, layer: str, x: str, W_out_in: np.ndarray, bias: np.ndarray,
                kind: str = "linear", attrs: dict | None = None) -> str:
    """A dense node on the last axis of x (the activation fused unless it is softmax)."""
    n_out, n_in = W_out_in.shape
    shape = b.shape(x)
    if b.tensors[x].size % n_in or (len(shape) > 1 and shape[-1] != n_in):
        b.fail(layer, f"Dense of {n_in} inputs applied to shape {shape}")
    out_shape = (shape[:-1] if len(shape) > 1 else ()) + (n_out,)
    w = b.const(layer, "W", W_out_in)
    bb = b.const(layer, "b", bias)
    if kind == "softmax":
        y = b.add_node("dense", layer, [x, w, bb], out_shape, activation="linear")
        return _apply_act(b, y, kind, {}, layer)
    return b.add_node("dense", layer, [x, w, bb], out_shape, activation=kind, **(attrs or {}))


def _tuple(v, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    return tuple(int(i) for i in v)


def _geometry(b: Any, name: str, spatial, kernel, strides, dilations, padding: str):
    """Output size and leading padding per spatial axis, with TensorFlow's rules."""
    out, pads = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        eff = (k - 1) * d + 1
        if padding == "valid":
            o = (n - eff) // s + 1
            p = 0
        elif padding == "same":
            o = -(-n // s)
            p = max((o - 1) * s + eff - n, 0) // 2
        elif padding == "causal":
            o = -(-n // s) if s > 1 else n
            p = eff - 1
            o = (n + p - eff) // s + 1
        else:
            b.fail(name, f"padding '{padding}' is not supported (supported: valid, same, causal)")
        if o <= 0:
            b.fail(name, f"window {kernel} does not fit the input {tuple(spatial)}")
        out.append(o)
        pads.append(p)
    return tuple(out), tuple(pads)


def _check_channels_last(b: Any, cfg: dict) -> None:
    if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
        b.fail(cfg["name"], f"data_format='{cfg['data_format']}' is not supported "
                            "(supported: channels_last)")


def one_line(e: BaseException) -> str:
    """An exception as one untruncated line: its type and its whole message."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
