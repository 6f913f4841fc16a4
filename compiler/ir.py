"""The intermediate representation: the one contract between front-ends and the C back-end.

A :class:`Graph` is a list of :class:`Node` objects in topological order. Each node reads and
writes named :class:`Tensor` objects; constant tensors (weights) carry their data. Shapes
exclude the batch dimension. The IR knows nothing of Keras, TFLite, ONNX or C.

Layout conventions (front-ends convert to these):

Tensors are channels-last: an image is ``(H, W, C)``, a sequence ``(T, F)``.

* ``dense``: ``inputs = [x, W, b]`` with ``W`` shaped ``(out, in)`` (row-major, one row per
  output) and ``b`` shaped ``(out,)``; acts on the last axis of ``x`` (leading axes are rows);
  attributes ``activation`` (+ ``alpha``/``beta``).
* ``conv``: ``inputs = [x, W, b]``, ``x`` ``(H, W, C)`` or ``(L, C)`` (1-D), ``W`` shaped
  ``(out_c, kh, kw, in_c / groups)``; attributes ``strides`` ``(sh, sw)``, ``dilations``,
  ``pads`` ``(top, left)`` (the bottom/right padding follows from the output shape),
  ``groups`` (depthwise: ``groups == in_c``), ``activation``.
* ``pool``: ``inputs = [x]``; attributes ``kind`` (``max``/``avg``), ``kernel``, ``strides``,
  ``pads`` as for ``conv``. Global pooling is a pool whose window is the whole input.
* ``deconv``: a transposed convolution, ``inputs = [x, W, b]``, ``W`` shaped
  ``(in_c, kh, kw, out_c / groups)``; ``y[o] = b + sum x[i] W`` over ``o = i * stride +
  k * dilation - pad``; attributes as for ``conv`` (``out_spatial`` is the output's).
* ``activation``: ``inputs = [x]``; attributes ``activation`` and, for some kinds, ``alpha``,
  ``beta``. ``softmax`` and ``log_softmax`` act on the last axis.
* ``add``/``sub``/``mul``: ``inputs = [a, b]``; ``b`` has ``a``'s size, or is a constant whose
  size divides it (broadcast over leading axes: per-channel scale and shift).
* ``concat``: any number of inputs joined along attribute ``axis`` (of the output).
* ``slice``: ``inputs = [x]``; attributes ``axis``, ``start``, ``stop``.
* ``reshape``: ``inputs = [x]``; same data, new shape (free: buffers are flat).
* ``transpose``: ``inputs = [x]``; attribute ``perm`` (output axis i is input axis perm[i]).

A graph may carry ``states``: pairs ``(state_in, state_out)`` of a streaming recurrent model;
``state_in`` tensors are read like inputs from persistent memory, which ``state_out`` then
overwrites after each step.

Every activation name the back-end understands is listed in :data:`ACTIVATIONS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CompileError

#: Element-wise activations, with the attributes each one reads.
ACTIVATIONS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "relu": (),
    "relu6": (),
    "leaky_relu": ("alpha",),
    "elu": ("alpha",),
    "selu": (),
    "tanh": (),
    "sigmoid": (),
    "hard_sigmoid": ("alpha", "beta"),
    "softplus": (),
    "softsign": (),
    "silu": (),
    "gelu": (),
    "gelu_tanh": (),
    "exponential": (),
    "softmax": (),
    # later additions (nnmpc_fx / nnmpc_log_softmax in the runtime; never fused into a layer)
    "abs": (),
    "sqrt": (),
    "log": (),
    "log_softmax": (),
}

#: Ops the back-end can emit, with the number of inputs each takes (None: variadic).
OPS: dict[str, int | None] = {
    "dense": 3,
    "conv": 3,
    "pool": 1,
    "activation": 1,
    "add": 2,
    "sub": 2,
    "mul": 2,
    "concat": None,
    "slice": 1,
    "reshape": 1,
    "transpose": 1,
    "deconv": 3,
    # full-integer ops (see nnmpc.compiler.frontends.tflite_int8)
    "qdense": 3,
    "qconv": 3,
    "qpool": 1,
    "qadd": 2,
    "qlut": 2,
    "qmul": 2,
    "qconcat": None,
    "qsoftmax": 1,
    "qpad": 1,
}


#: Largest tensor (in values) the compiler accepts: far beyond any microcontroller's memory.
MAX_ELEMENTS = 1 << 24


@dataclass
class Tensor:
    """A named value. ``data`` is set for constants (weights, biases), ``None`` otherwise."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Node:
    """One operation. ``source`` names the layer or node in the original file, for messages."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    source: str = ""


@dataclass
class Graph:
    """A model: input and output tensor names, all tensors, and nodes in execution order."""

    name: str
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, Tensor]
    nodes: list[Node]
    source_file: str = ""
    source_hash: str = ""
    states: list[tuple[str, str]] = field(default_factory=list)
    #: A recurrent model's window length and its one-step (streaming) form, if any.
    window: int = 0
    step_graph: "Graph | None" = None
    #: Set for a full-integer model: see :mod:`nnmpc.compiler.frontends.tflite_int8`.
    int8: Any = None

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def consumers(self, tensor_name: str) -> list[Node]:
        return [n for n in self.nodes if tensor_name in n.inputs]

    def producer(self, tensor_name: str) -> Node | None:
        for n in self.nodes:
            if tensor_name in n.outputs:
                return n
        return None

    @property
    def input_size(self) -> int:
        return sum(self.tensors[t].size for t in self.inputs)

    @property
    def output_size(self) -> int:
        return sum(self.tensors[t].size for t in self.outputs)

    def param_count(self) -> int:
        """Constant values, counting constants with equal contents (shared weights) once."""
        seen: dict[tuple, int] = {}
        for t in self.tensors.values():
            if t.is_const:
                a = np.ascontiguousarray(t.data)
                seen[(a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())] = t.size
        return sum(seen.values())

    def content_hash(self) -> str:
        """A stable hash of structure and weights (independent of where the file was read)."""
        h = hashlib.sha256()
        for name in self.inputs + ["|"] + self.outputs:
            h.update(name.encode())
        for n in self.nodes:
            h.update(repr((n.op, n.inputs, n.outputs, sorted(n.attrs.items()))).encode())
        h.update(repr(self.states).encode())
        for name in sorted(self.tensors):
            t = self.tensors[name]
            h.update(repr((name, t.shape, t.dtype)).encode())
            if t.data is not None:
                h.update(np.ascontiguousarray(t.data).tobytes())
        return h.hexdigest()

    def validate(self) -> None:
        """Check the graph is well formed; raise :class:`CompileError` naming the culprit."""
        where = self.source_file or self.name
        known = (set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const}
                 | {s for s, _ in self.states})
        for name in self.inputs + self.outputs:
            if name not in self.tensors:
                raise CompileError(f"graph tensor '{name}' is not defined", file=where)
        total = 0
        for t in self.tensors.values():
            if any((not isinstance(d, (int, np.integer))) or d <= 0 for d in t.shape):
                raise CompileError(
                    f"tensor '{t.name}' has dynamic or empty shape {t.shape}; "
                    "only fixed shapes (batch dimension aside) are supported",
                    file=where,
                )
            total += t.size
            if t.size > MAX_ELEMENTS or total > 4 * MAX_ELEMENTS:
                raise CompileError(
                    f"tensor '{t.name}' of shape {t.shape} makes the model larger than "
                    f"{MAX_ELEMENTS} values per tensor / {4 * MAX_ELEMENTS} in all; too large "
                    "for a microcontroller (or a damaged file)", file=where)
            if t.data is not None and t.data.dtype.kind == "f" and not np.all(np.isfinite(t.data)):
                raise CompileError(
                    f"constant '{t.name}' holds NaN or Inf values", file=where,
                )
        for n in self.nodes:
            if n.op not in OPS:
                raise CompileError(
                    f"op '{n.op}' is not supported by the back-end "
                    f"(supported: {', '.join(sorted(OPS))})",
                    file=where, layer=n.source or n.name,
                )
            arity = OPS[n.op]
            if arity is not None and len(n.inputs) != arity:
                raise CompileError(
                    f"op '{n.op}' takes {arity} inputs, got {len(n.inputs)}",
                    file=where, layer=n.source or n.name,
                )
            act = n.attrs.get("activation")
            if act is not None and act not in ACTIVATIONS:
                raise CompileError(
                    f"activation '{act}' is not supported "
                    f"(supported: {', '.join(sorted(ACTIVATIONS))})",
                    file=where, layer=n.source or n.name,
                )
            for i in n.inputs:
                if i not in self.tensors:
                    raise CompileError(f"input tensor '{i}' is not defined", file=where,
                                       layer=n.source or n.name)
                if i not in known:
                    raise CompileError(f"tensor '{i}' is used before it is computed", file=where,
                                       layer=n.source or n.name)
            for o in n.outputs:
                if o in known:
                    raise CompileError(f"tensor '{o}' is written twice", file=where,
                                       layer=n.source or n.name)
            known.update(n.outputs)
            if n.op in ("add", "sub", "mul", "qadd", "qmul"):
                a, b = (self.tensors[i] for i in n.inputs)
                if a.size != b.size and not (b.is_const and a.size % b.size == 0):
                    raise CompileError(
                        f"op '{n.op}' on shapes {a.shape} and {b.shape}: only equal shapes or "
                        "a constant broadcast over leading axes are supported",
                        file=where, layer=n.source or n.name)
        for name in self.outputs:
            if name not in known:
                raise CompileError(f"output '{name}' is never computed", file=where)
