"""The intermediate representation: the one contract between front-ends and the C back-end.

A :class:`Graph` is a list of :class:`Node` objects in topological order. Each node reads and
writes named :class:`Tensor` objects; constant tensors (weights) carry their data. Shapes
exclude the batch dimension. The IR knows nothing of Keras, TFLite, ONNX or C.

Layout conventions (front-ends convert to these):

* ``dense``: ``inputs = [x, W, b]`` with ``W`` shaped ``(out, in)`` (row-major, one row per
  output) and ``b`` shaped ``(out,)``; attribute ``activation``.
* ``activation``: ``inputs = [x]``; attribute ``activation`` and, for some kinds, ``alpha``.

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
    "tanh": (),
    "sigmoid": (),
}

#: Ops the back-end can emit, with the number of inputs each takes (None: variadic).
OPS: dict[str, int | None] = {
    "dense": 3,
    "activation": 1,
}


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
        return sum(t.size for t in self.tensors.values() if t.is_const)

    def content_hash(self) -> str:
        """A stable hash of structure and weights (independent of where the file was read)."""
        h = hashlib.sha256()
        for name in self.inputs + ["|"] + self.outputs:
            h.update(name.encode())
        for n in self.nodes:
            h.update(repr((n.op, n.inputs, n.outputs, sorted(n.attrs.items()))).encode())
        for name in sorted(self.tensors):
            t = self.tensors[name]
            h.update(repr((name, t.shape, t.dtype)).encode())
            if t.data is not None:
                h.update(np.ascontiguousarray(t.data).tobytes())
        return h.hexdigest()

    def validate(self) -> None:
        """Check the graph is well formed; raise :class:`CompileError` naming the culprit."""
        where = self.source_file or self.name
        known = set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const}
        for name in self.inputs + self.outputs:
            if name not in self.tensors:
                raise CompileError(f"graph tensor '{name}' is not defined", file=where)
        for t in self.tensors.values():
            if any((not isinstance(d, (int, np.integer))) or d <= 0 for d in t.shape):
                raise CompileError(
                    f"tensor '{t.name}' has dynamic or empty shape {t.shape}; "
                    "only fixed shapes (batch dimension aside) are supported",
                    file=where,
                )
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
            known.update(n.outputs)
        for name in self.outputs:
            if name not in known:
                raise CompileError(f"output '{name}' is never computed", file=where)
