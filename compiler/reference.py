"""A numpy evaluator of the IR, used to fold constant sub-graphs at compile time.

It implements the ops whose inputs can all be constants in the graphs the front-ends build
(weights arithmetic, initial recurrent states); conv and pool are evaluated in C only.
"""

from __future__ import annotations

import math

import numpy as np

from .ir import Graph, Node

_SQRT2 = math.sqrt(2.0)


def activation(x: np.ndarray, kind: str, alpha: float = 0.0, beta: float = 0.0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if kind == "linear":
        y = x
    elif kind == "relu":
        y = np.maximum(x, 0)
    elif kind == "relu6":
        y = np.clip(x, 0, 6)
    elif kind == "leaky_relu":
        y = np.where(x >= 0, x, alpha * x)
    elif kind == "elu":
        y = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    elif kind == "selu":
        y = 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0)))
    elif kind == "tanh":
        y = np.tanh(x)
    elif kind == "sigmoid":
        y = 1 / (1 + np.exp(-x))
    elif kind == "hard_sigmoid":
        y = np.clip(alpha * x + beta, 0, 1)
    elif kind == "softplus":
        y = np.logaddexp(0, x)
    elif kind == "softsign":
        y = x / (1 + np.abs(x))
    elif kind == "silu":
        y = x / (1 + np.exp(-x))
    elif kind == "gelu":
        from math import erf
        y = 0.5 * x * (1 + np.vectorize(erf)(x / _SQRT2))
    elif kind == "gelu_tanh":
        y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    elif kind == "exponential":
        y = np.exp(x)
    elif kind == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
    elif kind == "abs":
        y = np.abs(x)
    elif kind == "sqrt":
        y = np.sqrt(np.maximum(x, 0))
    elif kind == "log":
        y = np.log(np.where(x > 0, x, 1e-30))
    elif kind == "log_softmax":
        m = x.max(axis=-1, keepdims=True)
        y = x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    else:
        raise KeyError(kind)
    return y.astype(np.float32)


def evaluate(graph: Graph, node: Node, args: list[np.ndarray]) -> np.ndarray | None:
    """The value of ``node`` given its inputs' values, or None if this op is not evaluated here."""
    out_shape = graph.tensors[node.outputs[0]].shape
    a = node.attrs
    op = node.op
    if op == "dense":
        x, W, b = args
        y = x.reshape(-1, W.shape[1]).astype(np.float64) @ W.T.astype(np.float64) + b
        y = activation(y, a.get("activation", "linear"), a.get("alpha", 0.0), a.get("beta", 0.0))
    elif op == "activation":
        y = activation(args[0], a["activation"], a.get("alpha", 0.0), a.get("beta", 0.0))
    elif op in ("add", "sub", "mul"):
        x, b = (np.asarray(v, np.float32) for v in args)
        b = np.tile(b.ravel(), x.size // b.size)
        y = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](x.ravel(), b)
    elif op == "concat":
        outer = int(np.prod(out_shape[:a["axis"]], dtype=np.int64))
        y = np.concatenate([v.reshape(outer, -1) for v in args], axis=1)
    elif op == "slice":
        x = args[0].reshape(graph.tensors[node.inputs[0]].shape)
        idx = [slice(None)] * x.ndim
        idx[a["axis"]] = slice(a["start"], a["stop"])
        y = x[tuple(idx)]
    elif op == "reshape":
        y = args[0]
    elif op == "transpose":
        y = np.transpose(args[0].reshape(graph.tensors[node.inputs[0]].shape), a["perm"])
    else:
        return None
    return np.ascontiguousarray(np.asarray(y, np.float32).reshape(out_shape))
