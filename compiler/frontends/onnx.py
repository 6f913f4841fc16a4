"""ONNX front-end (opset 13 and later) into the IR.

ONNX images are NCHW; the IR is channels-last. Every ONNX tensor is tracked with the layout
its IR tensor is stored in: ``plain`` (the ONNX order, batch dropped) or ``cl`` (channels
moved last). Convolutions and pools want ``cl``; reshapes, transposes, matmuls and concats
want ``plain``; element-wise ops take either. A transpose is inserted only where a layout
must change, and the optimiser cancels transpose pairs that meet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CompileError
from ..ir import MAX_ELEMENTS, Graph, Node, Tensor
from .shapes import GivenShapes, InputShapes

#: Every ONNX op the front-end converts, with what of it is supported (docs/COMPILER.md's
#: ONNX table is generated from this: :func:`ops_table`).
OPS: dict[str, str] = {
    "Abs": "`abs` (derivative sign(x))",
    "Add": "`add`; a constant broadcast, or a computed operand over leading axes",
    "AveragePool": "1-D, 2-D, 3-D (separable); pads, auto_pad, strides, `ceil_mode`, "
                   "`count_include_pad`, `dilations` (the last three as a depthwise `conv` "
                   "by ones times 1/count)",
    "BatchNormalization": "inference mode (folded into the layer before it, else a scale "
                          "and shift); `training_mode=1` refused",
    "Clip": "any constant bounds: [0, 6] `relu6`, [0, inf) `relu`, [lo, hi] a "
            "`hard_sigmoid` scaled, one-sided bounds with `relu`",
    "Concat": "any axis (the batch axis only when the batch is fixed)",
    "Constant": "value, value_float(s), value_int(s)",
    "Conv": "1-D, 2-D; pads, auto_pad, strides, dilations, group",
    "ConvTranspose": "1-D, 2-D; pads, auto_pad, output_padding, output_shape, strides, "
                     "dilations, group (`deconv`; its adjoint is a `conv`)",
    "Div": "by a constant",
    "Dropout": "removed; `training_mode` True or computed, or a mask output read, refused",
    "Elu": "`elu`",
    "Exp": "`exponential`",
    "Flatten": "any axis, negative too",
    "Gelu": "`gelu`, approximate='tanh' `gelu_tanh`",
    "Gemm": "constant B, transA, transB, alpha, beta; C a constant (vector or matrix) or "
            "computed",
    "GlobalAveragePool": "1-D, 2-D",
    "GlobalMaxPool": "1-D, 2-D",
    "GRU": "unrolled over the window (and a one-step streaming form: forward, initial "
           "state absent or zeros); forward, reverse, bidirectional; "
           "linear_before_reset 0 or 1; layout 0 or 1; any batch; initial_h constant, "
           "computed or absent (zeros); sequence_lens absent or the whole window; "
           "activations Sigmoid, Tanh, Relu, Softsign, Softplus",
    "HardSigmoid": "`hard_sigmoid` (alpha, beta)",
    "HardSwish": "x `hard_sigmoid`(x) (`mul`)",
    "Identity": "removed",
    "LeakyRelu": "`leaky_relu`",
    "Log": "`log`",
    "LogSoftmax": "`log_softmax`, any axis (transposed to the last)",
    "LSTM": "as GRU (gates i, o, f, c), with initial_c and peepholes P; no input_forget",
    "MatMul": "by a constant: 2-D, 1-D (vector), N-D (batched weights, broadcast); or a "
              "constant on the left (A x)",
    "MaxPool": "1-D, 2-D, 3-D (separable); pads, auto_pad, strides, `ceil_mode`, "
               "`dilations`; no Indices output, storage_order 0",
    "Mul": "`mul`; as Add",
    "Neg": "`mul` by -1",
    "Pad": "constant mode, any value, negative pads (crops), axes",
    "PRelu": "`leaky_relu` (one slope) or relu(x) - slope relu(-x)",
    "ReduceMean": "any axes, keepdims (a `dense` by 1/n)",
    "Relu": "`relu`",
    "Reshape": "constant shape (0 and -1), allowzero without empty dimensions",
    "Resize": "constant scales or sizes (keep_aspect_ratio_policy 'stretch'); nearest, "
              "linear, cubic; every coordinate_transformation_mode; antialias (a `dense` "
              "per resized axis, from the ONNX reference evaluator)",
    "RNN": "as GRU",
    "Selu": "`selu`; other alpha/gamma as gamma `elu`",
    "Sigmoid": "`sigmoid`",
    "Slice": "constant starts/ends/axes, step 1",
    "Softmax": "`softmax`, any axis (transposed to the last)",
    "Softplus": "`softplus`",
    "Softsign": "`softsign`",
    "Split": "constant split sizes or num_outputs",
    "Sqrt": "`sqrt`",
    "Squeeze": "constant axes",
    "Sub": "`sub`; constant - x as `mul` by -1 + `add`",
    "Tanh": "`tanh`",
    "Transpose": "any rank (above 4-D: unit axes dropped, neighbours merged, then swaps of "
                 "neighbouring blocks)",
    "Unsqueeze": "constant axes",
}
SUPPORTED = sorted(OPS)


def ops_table() -> str:
    """The Markdown table of :data:`OPS` (in docs/COMPILER.md between the onnx-ops markers)."""
    rows = ["| ONNX op | supported |", "|---|---|"]
    rows += [f"| {op} | {OPS[op]} |" for op in sorted(OPS, key=str.lower)]
    return "\n".join(rows)

#: Ops that read tensors whose first axis is not the batch (see ``_Val.nobatch``).
_NOBATCH_OK = {"Reshape", "Transpose", "Split", "Squeeze", "Slice", "Identity", "Dropout",
               "Relu", "Tanh", "Sigmoid", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign",
               "HardSigmoid", "Exp", "Gelu", "Abs", "Sqrt", "Log", "HardSwish", "PRelu", "Neg",
               "Clip", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div", "MatMul", "Gemm",
               "Concat", "Pad", "Flatten", "Unsqueeze", "ReduceMean", "GRU", "LSTM", "RNN",
               "Resize", "BatchNormalization"}

_UNARY = {
    "Relu": ("relu", {}), "Tanh": ("tanh", {}), "Sigmoid": ("sigmoid", {}),
    "Softplus": ("softplus", {}), "Softsign": ("softsign", {}), "Exp": ("exponential", {}),
}


class _Val:
    """An ONNX tensor: its IR tensor (or constant), its ONNX shape without batch, its layout.

    In a model whose batch is fixed to 1, an exporter may reshape or transpose the batch axis
    away (tf2onnx's unrolled recurrent layers put the time axis first: ``(1, T, F)`` to
    ``(T, 1, F)``). Such a tensor is ``nobatch``: ``shape`` is its whole ONNX shape and its first
    axis is not the batch; it is always stored ``plain``. A tensor whose leading axis is 1
    again is an ordinary batched one.
    """

    def __init__(self, ir: str | None, shape: tuple[int, ...], layout: str = "plain",
                 const: np.ndarray | None = None, nobatch: bool = False) -> None:
        self.ir, self.shape, self.layout, self.const = ir, tuple(shape), layout, const
        self.nobatch = nobatch

    @property
    def full(self) -> tuple[int, ...]:
        """The ONNX shape with the batch axis (of 1)."""
        return self.shape if self.nobatch else (1,) + self.shape


def _cl_perm(rank: int) -> list[int]:
    """Batchless (C, spatial...) -> (spatial..., C)."""
    return list(range(1, rank)) + [0]


def _plain_perm(rank: int) -> list[int]:
    return [rank - 1] + list(range(rank - 1))


class _OnnxLoader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.vals: dict[str, _Val] = {}
        self.lazy: dict[str, tuple] = {}  # Split outputs, sliced when first read
        self._n = 0
        self.node_name = ""
        self.states: list[tuple[str, str]] = []
        self.rnn_steps: list[int] = []
        self.given = GivenShapes(None, str(path))  # shapes fixing dynamic input dimensions
        self.n_inputs = 1
        #: the one-step (streaming) form: every recurrent op reads and writes its state through
        #: ``states``; ``step_axes`` sets each input's time axis (batch aside) to one step
        self.streaming = False
        self.step_axes: dict[str, int] = {}

    # -- helpers --
    def fail(self, msg: str):
        raise CompileError(msg, file=str(self.path), layer=self.node_name)

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}#{self._n}"

    def tensor(self, shape, data=None, base="t") -> str:
        name = self.fresh(base)
        if data is not None:
            data = np.ascontiguousarray(data, np.float32)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), "float32", data)
        return name

    def node(self, op: str, inputs: list[str], out_shape, **attrs) -> str:
        out = self.tensor(out_shape, base=f"{self.node_name}:out")
        self.nodes.append(Node(op, inputs, [out], attrs, name=out, source=self.node_name))
        return out

    def ir_shape(self, v: _Val) -> tuple[int, ...]:
        return self.tensors[v.ir].shape

    def as_layout(self, v: _Val, layout: str) -> str:
        """The IR tensor holding v in ``layout`` (inserting a transpose if needed)."""
        if v.const is not None:
            data = v.const.reshape(v.shape) if v.shape else v.const
            if layout == "cl" and len(v.shape) >= 2:
                data = np.transpose(data, _cl_perm(len(v.shape)))
            return self.tensor(data.shape, data, base=f"{self.node_name}:const")
        if v.layout == layout or len(v.shape) < 2:
            return v.ir
        rank = len(v.shape)
        perm = _cl_perm(rank) if layout == "cl" else _plain_perm(rank)
        src = self.ir_shape(v)
        return self.node("transpose", [v.ir], tuple(src[p] for p in perm), perm=perm)

    def get(self, name: str) -> _Val:
        if name in self.lazy:
            x, axis, b0, e0 = self.lazy.pop(name)
            saved, self.node_name = self.node_name, name
            self.vals[name] = self._slice_full(x, {axis: (b0, e0)})
            self.node_name = saved
        if name not in self.vals:
            self.fail(f"input '{name}' is not produced by any node")
        return self.vals[name]

    def const_of(self, name: str, what: str) -> np.ndarray:
        v = self.get(name)
        if v.const is None:
            self.fail(f"{what} must be a constant (initializer)")
        return v.const

    # -- conversion --
    def run(self, model) -> Graph:
        from onnx import numpy_helper

        g = model.graph
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            self.vals[init.name] = _Val(None, arr.shape, const=np.asarray(arr))
        inputs, outputs = [], []
        self.fixed_batch = True  # every input's batch dimension is 1 (not symbolic)
        names = [vi.name for vi in g.input if vi.name not in self.vals]
        self.given.check_names(names)
        self.n_inputs = len(names)
        for vi in g.input:
            if vi.name in self.vals:
                continue
            dims = vi.type.tensor_type.shape.dim
            if dims and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0) \
                    and self.given.get(vi.name, self.n_inputs) is None:
                self.fixed_batch = False  # a symbolic batch (a given shape fixes it to 1)
            shape, nobatch = self._shape_of(vi)
            t = self.tensor(shape, base=vi.name)
            self.vals[vi.name] = _Val(t, shape, nobatch=nobatch)
            inputs.append(t)
        self.read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for n in g.node:
            self.node_name = n.name or f"{n.op_type}:{n.output[0]}"
            if n.op_type in ("Loop", "Scan", "If"):
                self.fail(f"op '{n.op_type}' (control flow) is not supported; export recurrent "
                          "layers as the ONNX RNN/GRU/LSTM ops (PyTorch does), or compile the "
                          ".keras file, which is unrolled over the window")
            if self._fold(n):
                continue
            if n.op_type not in SUPPORTED:
                self.fail(f"op '{n.op_type}' is not supported (supported: {', '.join(SUPPORTED)})")
            if n.domain not in ("", "ai.onnx"):
                self.fail(f"op '{n.op_type}' of domain '{n.domain}' is not supported")
            if n.op_type not in _NOBATCH_OK:
                for i in n.input:
                    if i and (i in self.vals or i in self.lazy) and self.get(i).nobatch:
                        self.fail(f"{n.op_type} of '{i}', of shape {list(self.vals[i].shape)} "
                                  "whose first axis is not the batch, is not supported")
            getattr(self, "op_" + n.op_type)(n, {a.name: _attr(a) for a in n.attribute})
        self.node_name = ""
        for vi in g.output:
            v = self.get(vi.name)
            if v.const is not None:
                self.fail(f"output '{vi.name}' is a constant")
            t = self.as_layout(v, "plain")
            if t in inputs or t in outputs:
                self.node_name = vi.name
                t = self.node("reshape", [t], self.tensors[t].shape)
            outputs.append(t)
        return Graph(name=g.name or self.path.stem, inputs=inputs, outputs=outputs,
                     tensors=self.tensors, nodes=self.nodes, source_file=str(self.path),
                     states=self.states)

    def _fold(self, n) -> bool:
        """Evaluate a node at compile time when its inputs are constants (weights arithmetic an
        exporter left in the graph: Sqrt, Max, Cast, ...) or when it only reads a shape."""
        if n.op_type == "Shape" and (n.input[0] in self.vals or n.input[0] in self.lazy):
            v = self.get(n.input[0])
            self.vals[n.output[0]] = _Val(None, (len(v.full),), const=np.array(v.full, np.int64))
            return True
        if n.op_type == "Constant" or any(a.g.node or a.graphs for a in n.attribute):
            return False
        ins = [i for i in n.input if i]
        if not ins or not all(i in self.vals and self.vals[i].const is not None for i in ins):
            return False
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        size = self._folded_size(n)
        if size is not None and size > MAX_ELEMENTS:
            raise CompileError(f"{n.op_type} makes a constant of {size} values (at most "
                               f"{MAX_ELEMENTS})", file=str(self.path),
                               layer=n.name or n.output[0])
        try:
            inits = [numpy_helper.from_array(np.asarray(self.vals[i].const), i) for i in set(ins)]
            g = helper.make_graph([n], "fold", [], [helper.make_tensor_value_info(o, 0, None)
                                                    for o in n.output], inits)
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
            outs = ReferenceEvaluator(model).run(None, {})
        except Exception:
            return False
        for o, val in zip(n.output, outs):
            val = np.asarray(val)
            self.vals[o] = _Val(None, val.shape, const=val)
        return True

    def _folded_size(self, n) -> int | None:
        """The number of values a constant-folded node would make, where its inputs say so
        before it runs (so that a huge Expand is refused, not built)."""
        c = [np.asarray(self.vals[i].const) if i else None for i in n.input]
        try:
            if n.op_type == "ConstantOfShape":
                return int(np.prod(c[0].astype(np.int64), dtype=object))
            if n.op_type == "Expand":
                a, b = list(c[0].shape), [int(v) for v in c[1].ravel()]
                k = max(len(a), len(b))
                a, b = [1] * (k - len(a)) + a, [1] * (k - len(b)) + b
                return int(np.prod([max(x, y) for x, y in zip(a, b)], dtype=object))
            if n.op_type == "Tile":
                return int(c[0].size * np.prod(c[1].astype(np.int64), dtype=object))
        except (IndexError, ValueError, TypeError, AttributeError):
            return None
        return None

    def _shape_of(self, vi) -> tuple[tuple[int, ...], bool]:
        """An input's shape without the batch, and whether it has none (``nobatch``): a leading
        axis is the batch when it is 1 or symbolic; a fixed size other than 1 is data."""
        tt = vi.type.tensor_type
        if tt.elem_type not in (1,):  # FLOAT
            from onnx import TensorProto
            raise CompileError(f"input '{vi.name}' has element type "
                               f"{TensorProto.DataType.Name(tt.elem_type)}; only float32 inputs "
                               "are supported", file=str(self.path), layer=vi.name)
        dims = tt.shape.dim
        vals = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in dims]
        labels = [None if v is not None else (d.dim_param or None) for d, v in zip(dims, vals)]
        if vals and vals[0] in (None, 1):  # the batch
            shape = self.given.fix(vi.name, vals[1:], labels[1:], self.n_inputs)
            nobatch = False
        else:
            shape = self.given.fix(vi.name, vals, labels, self.n_inputs,
                                   "no batch axis: the leading axis is neither 1 nor symbolic")
            nobatch = True
        if vi.name in self.step_axes:
            shape = tuple(1 if k == self.step_axes[vi.name] else d for k, d in enumerate(shape))
        return shape, nobatch

    def set(self, n, v: _Val) -> None:
        self.vals[n.output[0]] = v

    # element-wise
    def _unary(self, n, kind: str, attrs: dict) -> None:
        v = self.get(n.input[0])
        if v.const is not None:
            from ..reference import activation
            self.set(n, _Val(None, v.shape, const=activation(v.const, kind, **attrs)))
            return
        t = self.node("activation", [v.ir], self.ir_shape(v), activation=kind, **attrs)
        self.set(n, _Val(t, v.shape, v.layout, nobatch=v.nobatch))

    def op_Relu(self, n, a):
        self._unary(n, "relu", {})

    def op_Tanh(self, n, a):
        self._unary(n, "tanh", {})

    def op_Sigmoid(self, n, a):
        self._unary(n, "sigmoid", {})

    def op_Softplus(self, n, a):
        self._unary(n, "softplus", {})

    def op_Softsign(self, n, a):
        self._unary(n, "softsign", {})

    def op_Exp(self, n, a):
        self._unary(n, "exponential", {})

    def op_Abs(self, n, a):
        self._unary(n, "abs", {})

    def op_Sqrt(self, n, a):
        self._unary(n, "sqrt", {})

    def op_Log(self, n, a):
        self._unary(n, "log", {})

    def op_Elu(self, n, a):
        self._unary(n, "elu", {"alpha": float(a.get("alpha", 1.0))})

    def op_LeakyRelu(self, n, a):
        self._unary(n, "leaky_relu", {"alpha": float(a.get("alpha", 0.01))})

    def op_HardSigmoid(self, n, a):
        self._unary(n, "hard_sigmoid", {"alpha": float(a.get("alpha", 0.2)),
                                        "beta": float(a.get("beta", 0.5))})

    def op_HardSwish(self, n, a):
        v = self.get(n.input[0])
        hs = self.node("activation", [v.ir], self.ir_shape(v), activation="hard_sigmoid",
                       alpha=1.0 / 6.0, beta=0.5)
        t = self.node("mul", [v.ir, hs], self.ir_shape(v))
        self.set(n, _Val(t, v.shape, v.layout, nobatch=v.nobatch))

    def op_PRelu(self, n, a):
        v = self.get(n.input[0])
        slope = np.asarray(self.const_of(n.input[1], "PRelu slope"), np.float64)
        if slope.size == 1:
            self._unary(n, "leaky_relu", {"alpha": float(slope.reshape(-1)[0])})
            return
        # prelu(x) = relu(x) + (-slope) relu(-x)
        shape = self.ir_shape(v)
        pos = self.node("activation", [v.ir], shape, activation="relu")
        neg = self.node("mul", [v.ir, self.tensor((1,), [-1.0], base="neg")], shape)
        neg = self.node("activation", [neg], shape, activation="relu")
        neg = self.node("mul", [neg, self._broadcast_const(-slope, v)], shape)
        self.set(n, _Val(self.node("add", [pos, neg], shape), v.shape, v.layout,
                         nobatch=v.nobatch))

    def op_Selu(self, n, a):
        alpha, gamma = float(a.get("alpha", 1.67326319)), float(a.get("gamma", 1.05070102))
        if abs(alpha - 1.67326319) > 1e-6 or abs(gamma - 1.05070102) > 1e-6:
            # gamma elu(x, alpha)
            self._unary(n, "elu", {"alpha": alpha})
            v = self.get(n.output[0])
            t = self.node("mul", [v.ir, self.tensor((1,), [gamma], base="selu")], self.ir_shape(v))
            self.set(n, _Val(t, v.shape, v.layout, nobatch=v.nobatch))
            return
        self._unary(n, "selu", {})

    def op_Gelu(self, n, a):
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        if approx not in ("none", "tanh"):
            self.fail(f"Gelu approximate='{approx}' is not supported (supported: none, tanh)")
        self._unary(n, "gelu_tanh" if approx == "tanh" else "gelu", {})

    def _softmax(self, n, a, kind: str) -> None:
        v = self.get(n.input[0])
        rank = len(v.full)
        axis = int(a.get("axis", -1))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            self.fail(f"{n.op_type} axis {a.get('axis')} out of range for shape {list(v.full)}")
        t = self.as_layout(v, "plain")
        if axis == rank - 1:
            self.set(n, _Val(self.node("activation", [t], self.tensors[t].shape, activation=kind),
                             v.shape, nobatch=v.nobatch))
            return
        ax = axis - (0 if v.nobatch else 1)
        if ax < 0:
            self.fail(f"{n.op_type} over the batch dimension is not supported")
        r = len(self.tensors[t].shape)
        perm = [i for i in range(r) if i != ax] + [ax]
        t = self.tr(t, perm)
        t = self.node("activation", [t], self.tensors[t].shape, activation=kind)
        t = self.tr(t, [perm.index(i) for i in range(r)])
        self.set(n, _Val(t, v.shape, nobatch=v.nobatch))

    def op_Softmax(self, n, a):
        self._softmax(n, a, "softmax")

    def op_LogSoftmax(self, n, a):
        self._softmax(n, a, "log_softmax")

    def op_Clip(self, n, a):
        v = self.get(n.input[0])
        lo = float(self.const_of(n.input[1], "Clip min")) if len(n.input) > 1 and n.input[1] else None
        hi = float(self.const_of(n.input[2], "Clip max")) if len(n.input) > 2 and n.input[2] else None
        if lo == 0.0 and hi == 6.0:
            self._unary(n, "relu6", {})
        elif lo == 0.0 and hi is None:
            self._unary(n, "relu", {})
        elif lo == 0.0 and hi is not None and hi > 0:
            # clip(x, 0, h) = h * hard_sigmoid with slope 1/h, offset 0
            self._unary(n, "hard_sigmoid", {"alpha": 1.0 / hi, "beta": 0.0})
            v2 = self.get(n.output[0])
            t = self.node("mul", [v2.ir, self.tensor((1,), [hi], base="clip_max")],
                          self.ir_shape(v2))
            self.set(n, _Val(t, v2.shape, v2.layout, nobatch=v.nobatch))
        else:
            shape = self.ir_shape(v)
            c = lambda val: self.tensor((1,), [val], base="clip")  # noqa: E731
            t = v.ir
            if lo is not None and hi is not None and hi <= lo:  # every value becomes max
                t = self.node("add", [self.node("mul", [t, c(0.0)], shape), c(hi)], shape)
            elif lo is not None and hi is not None:
                # clip(x, l, h) = l + (h - l) hard_sigmoid((x - l) / (h - l))
                w = hi - lo
                t = self.node("activation", [t], shape, activation="hard_sigmoid",
                              alpha=1.0 / w, beta=-lo / w)
                t = self.node("add", [self.node("mul", [t, c(w)], shape), c(lo)], shape)
            elif lo is not None:  # l + relu(x - l)
                t = self.node("add", [t, c(-lo)], shape)
                t = self.node("add", [self.node("activation", [t], shape, activation="relu"),
                                      c(lo)], shape)
            elif hi is not None:  # h - relu(h - x)
                t = self.node("add", [self.node("mul", [t, c(-1.0)], shape), c(hi)], shape)
                t = self.node("activation", [t], shape, activation="relu")
                t = self.node("add", [self.node("mul", [t, c(-1.0)], shape), c(hi)], shape)
            self.set(n, _Val(t, v.shape, v.layout, nobatch=v.nobatch))

    def op_Identity(self, n, a):
        self.set(n, self.get(n.input[0]))

    def op_Dropout(self, n, a):
        if len(n.input) > 2 and n.input[2]:
            mode = self.get(n.input[2])
            if mode.const is None:
                self.fail("Dropout with a computed training_mode is not supported")
            if bool(np.asarray(mode.const).reshape(-1)[0]):
                self.fail("Dropout with training_mode=True is not supported (it is random); "
                          "export the model in inference mode (model.eval())")
        if len(n.output) > 1 and n.output[1] and n.output[1] in self.read:
            self.fail("Dropout with a mask output is not supported")
        self.set(n, self.get(n.input[0]))

    def op_Constant(self, n, a):
        from onnx import numpy_helper
        if "value" in a:
            arr = np.asarray(numpy_helper.to_array(a["value"]))
        elif "value_float" in a:
            arr = np.asarray(a["value_float"], np.float32)
        elif "value_floats" in a:
            arr = np.asarray(a["value_floats"], np.float32)
        elif "value_int" in a:
            arr = np.asarray(a["value_int"], np.int64)
        elif "value_ints" in a:
            arr = np.asarray(a["value_ints"], np.int64)
        else:
            self.fail("Constant without a tensor 'value' is not supported")
        self.set(n, _Val(None, arr.shape, const=arr))

    def op_Neg(self, n, a):
        v = self.get(n.input[0])
        if v.const is not None:
            self.set(n, _Val(None, v.shape, const=-v.const))
            return
        t = self.node("mul", [v.ir, self.tensor((1,), [-1.0], base="neg")], self.ir_shape(v))
        self.set(n, _Val(t, v.shape, v.layout, nobatch=v.nobatch))

    def _broadcast_const(self, c: np.ndarray, v: _Val) -> str:
        """A constant broadcast against v, laid out like v's IR tensor, as small as possible."""
        try:
            full = np.broadcast_to(np.asarray(c, np.float32), v.full)
        except ValueError:
            self.fail(f"constant of shape {c.shape} does not broadcast to {list(v.full)}")
        if not v.nobatch:
            full = full[0]
        if full.shape != v.shape:
            self.fail(f"constant of shape {c.shape} does not broadcast to {v.shape}")
        if v.layout == "cl" and len(v.shape) >= 2:
            full = np.transpose(full, _cl_perm(len(v.shape)))
        flat = full.reshape(-1)
        for tail in (1, full.shape[-1] if full.ndim else 1):
            rows = flat.reshape(-1, tail)
            if np.all(rows == rows[0]):
                return self.tensor((tail,), rows[0].copy(), base=f"{self.node_name}:const")
        return self.tensor(full.shape, full, base=f"{self.node_name}:const")

    def _binary(self, n, op: str) -> None:
        va, vb = self.get(n.input[0]), self.get(n.input[1])
        if va.const is not None and vb.const is not None:
            f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op]
            r = f(va.const, vb.const)
            self.set(n, _Val(None, r.shape, const=r))
            return
        if op == "div":
            if vb.const is None:
                self.fail("Div by a non-constant tensor is not supported")
            vb = _Val(None, vb.const.shape, const=1.0 / vb.const.astype(np.float64))
            op = "mul"
        if va.const is not None:
            if op == "sub":  # c - x = (-1) x + c
                neg = self.node("mul", [vb.ir, self.tensor((1,), [-1.0], base="neg")],
                                self.ir_shape(vb))
                vb, va = va, _Val(neg, vb.shape, vb.layout, nobatch=vb.nobatch)
                op = "add"
            else:
                va, vb = vb, va
        if vb.const is not None:
            if len(vb.const.shape) > len(va.full):
                self.fail(f"constant {vb.const.shape} broadcasts beyond {va.shape}")
            c = self._broadcast_const(vb.const, va)
            t = self.node(op, [va.ir, c], self.ir_shape(va))
            self.set(n, _Val(t, va.shape, va.layout, nobatch=va.nobatch))
            return
        if va.shape != vb.shape or va.nobatch != vb.nobatch:
            fa, fb = list(va.full), list(vb.full)
            while fa and fa[0] == 1:
                fa.pop(0)
            while fb and fb[0] == 1:
                fb.pop(0)
            if fa != fb:
                self._binary_tiled(n, op, va, vb)
                return
            big = va if len(va.full) >= len(vb.full) else vb
            ta = self.as_layout(va, "plain")
            tb = self.as_layout(vb, "plain")
            if self.tensors[tb].shape != self.tensors[ta].shape:
                tb = self.node("reshape", [tb], self.tensors[ta].shape)
            t = self.node(op, [ta, tb], self.tensors[ta].shape)
            self.set(n, self.from_full(t, big.full))
            return
        layout = va.layout if va.layout == vb.layout else "plain"
        ta, tb = self.as_layout(va, layout), self.as_layout(vb, layout)
        self.set(n, _Val(self.node(op, [ta, tb], self.tensors[ta].shape), va.shape, layout,
                         nobatch=va.nobatch))

    def _binary_tiled(self, n, op: str, va: _Val, vb: _Val) -> None:
        """a op b where one computed operand's shape is a trailing part of the other's: the
        smaller one repeated (a concat of copies) to the larger's shape."""
        fa, fb = list(va.full), list(vb.full)
        try:
            out = tuple(np.broadcast_shapes(tuple(fa), tuple(fb)))
        except ValueError:
            out = None
        small, big = (vb, va) if out == tuple(fa) else (va, vb)
        sf = [d for d in small.full]
        while sf and sf[0] == 1:
            sf.pop(0)
        if out is None or out != tuple(big.full) or tuple(out[len(out) - len(sf):]) != tuple(sf):
            self.fail(f"{n.op_type} of shapes {list(va.full)} and {list(vb.full)}: only equal "
                      "shapes, a constant broadcast or a computed one over leading axes are "
                      "supported")
        size = int(np.prod(sf, dtype=np.int64)) if sf else 1
        reps = int(np.prod(out, dtype=np.int64)) // size
        ts = self.as_layout(small, "plain")
        ts = self.node("reshape", [ts], (1, size))
        ts = self.node("concat", [ts] * reps, (reps, size), axis=0)
        tb = self.full_ir(big)
        ts = self.node("reshape", [ts], self.tensors[tb].shape)
        ta, tc = (tb, ts) if big is va else (ts, tb)
        self.set(n, self.from_full(self.node(op, [ta, tc], self.tensors[tb].shape), out))

    def op_Add(self, n, a):
        self._binary(n, "add")

    def op_Sub(self, n, a):
        self._binary(n, "sub")

    def op_Mul(self, n, a):
        self._binary(n, "mul")

    def op_Div(self, n, a):
        self._binary(n, "div")

    # dense
    def op_Gemm(self, n, a):
        x = self.get(n.input[0])
        if len(x.full) != 2:
            self.fail(f"Gemm of a {len(x.full)}-D input is not supported (Gemm is 2-D)")
        if a.get("transA", 0):
            if not self.fixed_batch:
                self.fail("Gemm with transA=1 is not supported with a symbolic batch")
            x = self._transpose_full(x, [1, 0])
        B = self.const_of(n.input[1], "Gemm B").astype(np.float64)
        W = B if a.get("transB", 0) else B.T          # (out, in)
        W = W * float(a.get("alpha", 1.0))
        bias = np.zeros(W.shape[0])
        if len(n.input) > 2 and n.input[2] and self.get(n.input[2]).const is None:
            # C computed by the graph (tf2onnx folds the recurrent term h U into it): A B + C
            vc = self.get(n.input[2])
            if float(a.get("beta", 1.0)) != 1.0:
                self.fail("Gemm with a computed C and beta != 1 is not supported")
            self._dense(n, x, W, bias)
            vy = self.get(n.output[0])
            if vc.shape != vy.shape:
                self.fail(f"Gemm C of shape {vc.shape} for an output of shape {vy.shape}: only "
                          "equal shapes are supported when C is not a constant")
            t = self.node("add", [vy.ir, self.as_layout(vc, "plain")], self.ir_shape(vy))
            self.set(n, _Val(t, vy.shape, nobatch=vy.nobatch))
            return
        if len(n.input) > 2 and n.input[2]:
            c = self.const_of(n.input[2], "Gemm C").astype(np.float64)
            if c.ndim >= 2 and c.shape[0] != 1 or c.size not in (1, W.shape[0]):
                # a bias that differs per row: A B, then + beta C
                self._dense(n, x, W, bias)
                vy = self.get(n.output[0])
                t = self.node("add", [vy.ir, self._broadcast_const(c * float(a.get("beta", 1.0)),
                                                                    vy)], self.ir_shape(vy))
                self.set(n, _Val(t, vy.shape, nobatch=vy.nobatch))
                return
            bias = np.broadcast_to(c.reshape(-1) if c.size == W.shape[0] else c, (W.shape[0],)) \
                * float(a.get("beta", 1.0))
        self._dense(n, x, W, bias)

    def full_ir(self, v: _Val) -> str:
        """An IR tensor holding v in the ONNX order, shaped as its whole ONNX shape."""
        if v.const is not None:
            data = np.asarray(v.const, np.float32)
            return self.tensor(data.shape, data, base=f"{self.node_name}:const")
        t = self.as_layout(v, "plain")
        if self.tensors[t].shape != v.full:
            t = self.node("reshape", [t], v.full)
        return t

    def _dense_ir(self, t: str, W: np.ndarray, bias: np.ndarray | None = None) -> str:
        shape = self.tensors[t].shape
        bias = np.zeros(W.shape[0]) if bias is None else bias
        return self.node("dense", [t, self.tensor(W.shape, W, base=f"{self.node_name}:W"),
                                   self.tensor(bias.shape, bias, base=f"{self.node_name}:b")],
                         shape[:-1] + (W.shape[0],), activation="linear")

    def op_MatMul(self, n, a):
        va, vb = self.get(n.input[0]), self.get(n.input[1])
        if va.const is not None and vb.const is None:
            self._matmul_left(n, np.asarray(va.const, np.float64), vb)
            return
        if vb.const is None:
            self.fail("MatMul of two computed tensors is not supported (one side must be a "
                      "constant)")
        x = va
        B = self.const_of(n.input[1], "MatMul B").astype(np.float64)
        if B.ndim == 2:
            self._dense(n, x, B.T, np.zeros(B.shape[1]))
            return
        xf = x.full
        if B.ndim == 1:  # x @ v: the last axis contracted away
            if xf[-1] != B.shape[0]:
                self.fail(f"MatMul of shape {list(xf)} by a vector of {B.shape[0]}")
            t = self._dense_ir(self.full_ir(x), B[None, :])
            self.set(n, self.from_full(t, tuple(xf[:-1])))
            return
        K, N = B.shape[-2:]
        if xf[-1] != K:
            self.fail(f"MatMul of shape {list(xf)} by a constant of shape {list(B.shape)}")
        if len(xf) == 1:  # v @ B[..., K, N] -> [..., N]
            Bl = B.reshape(-1, K, N)
            W = np.concatenate([b.T for b in Bl], axis=0)
            t = self._dense_ir(self.full_ir(x), W)
            self.set(n, self.from_full(t, tuple(B.shape[:-2]) + (N,)))
            return
        try:
            lead = tuple(np.broadcast_shapes(tuple(xf[:-2]), tuple(B.shape[:-2])))
        except ValueError:
            self.fail(f"MatMul shapes {list(xf)} and {list(B.shape)} do not broadcast")
        L, Lx, M = int(np.prod(lead)), int(np.prod(xf[:-2])), xf[-2]
        pick = np.broadcast_to(np.arange(Lx).reshape(tuple(xf[:-2])), lead).reshape(-1)
        Bb = np.broadcast_to(B, lead + (K, N)).reshape(L, K, N)
        x3 = self.node("reshape", [self.full_ir(x)], (Lx, M, K))
        parts = []
        for k in range(L):
            j = int(pick[k])
            xs = x3 if Lx == 1 else self.node("slice", [x3], (1, M, K), axis=0, start=j,
                                              stop=j + 1)
            xs = self.node("reshape", [xs], (M, K))
            parts.append(self._dense_ir(xs, Bb[k].T))
        t = parts[0] if L == 1 else self.node("concat", parts, (L * M, N), axis=0)
        self.set(n, self.from_full(t, lead + (M, N)))

    def _matmul_left(self, n, A: np.ndarray, v: _Val) -> None:
        """A @ x with a constant A and a computed x: (x^T A^T)^T."""
        xf = v.full
        if A.ndim > 2:
            self.fail(f"MatMul by a {A.ndim}-D constant on the left is not supported")
        if A.ndim == 1:
            A = A[None, :]
            drop = True
        else:
            drop = False
        M, K = A.shape
        t = self.full_ir(v)
        if len(xf) == 1:
            if xf[0] != K:
                self.fail(f"MatMul of a constant {list(A.shape)} by shape {list(xf)}")
            t = self._dense_ir(t, A)
            out = () if drop else (M,)
        else:
            if xf[-2] != K:
                self.fail(f"MatMul of a constant {list(A.shape)} by shape {list(xf)}")
            r = len(xf)
            sw = list(range(r - 2)) + [r - 1, r - 2]
            t = self._dense_ir(self.tr(t, sw), A)       # (..., N, M)
            t = self.tr(t, sw)                           # (..., M, N)
            out = tuple(xf[:-2]) + ((xf[-1],) if drop else (M, xf[-1]))
        self.set(n, self.from_full(t, out))

    def _dense(self, n, x: _Val, W: np.ndarray, bias: np.ndarray) -> None:
        t = self.as_layout(x, "plain")
        shape = self.tensors[t].shape
        if not shape or shape[-1] != W.shape[1]:
            self.fail(f"{n.op_type} of {W.shape[1]} inputs applied to shape {shape}")
        out = shape[:-1] + (W.shape[0],)
        w = self.tensor(W.shape, W, base=f"{self.node_name}:W")
        b = self.tensor(bias.shape, bias, base=f"{self.node_name}:b")
        self.set(n, _Val(self.node("dense", [t, w, b], out, activation="linear"), out,
                         nobatch=x.nobatch))

    def tr(self, t: str, perm: list[int]) -> str:
        """IR transpose of t; above 4-D (the kernel's limit) unit axes are dropped, axes that
        stay together merged, and what is left done as swaps of neighbouring blocks."""
        shape = self.tensors[t].shape
        perm = list(perm)
        out = tuple(shape[p] for p in perm)
        if perm == list(range(len(perm))):
            return t
        if len(perm) <= 4:
            return self.node("transpose", [t], out, perm=perm)
        order = [p for p in perm if shape[p] != 1]
        groups: list[list[int]] = []
        for p in order:
            if groups and groups[-1][-1] + 1 == p:
                groups[-1].append(p)
            else:
                groups.append([p])
        ins = sorted(groups)                     # the groups in memory order
        sizes = [int(np.prod([shape[a] for a in g])) for g in ins]
        cur = list(range(len(ins)))              # memory order of group ids
        target = [ins.index(g) for g in groups]
        if len(ins) <= 1:
            pass
        elif len(ins) <= 4:
            t = self.node("reshape", [t], tuple(sizes)) if tuple(sizes) != shape else t
            t = self.node("transpose", [t], tuple(sizes[g] for g in target), perm=target)
        else:
            for i in range(len(target)):       # selection by neighbour swaps
                j = cur.index(target[i])
                while j > i:
                    s = [sizes[g] for g in cur]
                    before, after = int(np.prod(s[:j - 1])), int(np.prod(s[j + 1:]))
                    t = self.node("reshape", [t], (before, s[j - 1], s[j], after))
                    t = self.node("transpose", [t], (before, s[j], s[j - 1], after),
                                  perm=[0, 2, 1, 3])
                    cur[j - 1], cur[j] = cur[j], cur[j - 1]
                    j -= 1
        return self.node("reshape", [t], out)

    def op_BatchNormalization(self, n, a):
        if a.get("training_mode", 0):
            self.fail("BatchNormalization with training_mode=1 is not supported (it updates "
                      "the statistics); export the model in inference mode")
        x = self.get(n.input[0])
        s, bb, m, var = (self.const_of(i, "BatchNormalization parameter").astype(np.float64)
                         for i in n.input[1:5])
        scale = s / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        shift = bb - m * scale
        if x.nobatch:  # (N, C, ...): per channel of axis 1
            if len(x.full) < 2:
                self.fail(f"BatchNormalization of shape {list(x.full)}")
            tail = (1,) * (len(x.full) - 2)
            y = self.node("mul", [x.ir, self._broadcast_const(scale.reshape((-1,) + tail), x)],
                          self.ir_shape(x))
            y = self.node("add", [y, self._broadcast_const(shift.reshape((-1,) + tail), x)],
                          self.ir_shape(x))
            self.set(n, _Val(y, x.shape, nobatch=True))
            return
        t = self.as_layout(x, "cl") if len(x.shape) >= 2 else x.ir
        layout = "cl" if len(x.shape) >= 2 else x.layout
        y = self.node("mul", [t, self.tensor(scale.shape, scale)], self.tensors[t].shape)
        y = self.node("add", [y, self.tensor(shift.shape, shift)], self.tensors[t].shape)
        self.set(n, _Val(y, x.shape, layout))

    # convolution and pooling
    def _window(self, n, a, x: _Val, kernel: tuple[int, ...], ceil_ok: bool = False):
        spatial = x.shape[1:]
        rank = len(spatial)
        if rank not in (1, 2):
            self.fail(f"{n.op_type} on a {rank}-D image is not supported (supported: 1-D, 2-D)")
        strides = tuple(a.get("strides", [1] * rank))
        dil = tuple(a.get("dilations", [1] * rank))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        ceil = bool(a.get("ceil_mode", 0))
        if ceil and not ceil_ok:
            self.fail(f"{n.op_type} with ceil_mode=1 is not supported")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out, pads = [], []
            for s_, k, st, d in zip(spatial, kernel, strides, dil):
                o = -(-s_ // st)
                tot = max((o - 1) * st + (k - 1) * d + 1 - s_, 0)
                out.append(o)
                pads.append(tot // 2 if auto == "SAME_UPPER" else tot - tot // 2)
        elif auto in ("NOTSET", "VALID"):
            p = list(a.get("pads", [0] * (2 * rank))) if auto == "NOTSET" else [0] * (2 * rank)
            out, pads = [], []
            for i, (s_, k, st, d) in enumerate(zip(spatial, kernel, strides, dil)):
                span = s_ + p[i] + p[i + rank] - ((k - 1) * d + 1)
                o = (-(-span // st) if ceil else span // st) + 1
                if ceil and (o - 1) * st >= s_ + p[i]:
                    o -= 1  # the last window must start inside the input or its leading padding
                out.append(o)
                pads.append(p[i])
        else:
            self.fail(f"auto_pad '{auto}' is not supported")
        if any(o < 1 for o in out):
            self.fail(f"{n.op_type} window {list(kernel)} larger than the input {list(spatial)}")
        pad1 = (1,) * (2 - rank)
        return rank, tuple(out), dict(strides=pad1 + strides, dilations=pad1 + dil,
                                      pads=(0,) * (2 - rank) + tuple(pads))

    def op_Conv(self, n, a):
        x = self.get(n.input[0])
        Wt = self.const_of(n.input[1], "Conv weights").astype(np.float32)   # (O, I/g, k...)
        groups = int(a.get("group", 1))
        rank, out_sp, geo = self._window(n, a, x, tuple(Wt.shape[2:]))
        W = np.moveaxis(Wt, 1, -1)                                           # (O, k..., I/g)
        if rank == 1:
            W = W[:, None]
        cout = Wt.shape[0]
        bias = (self.const_of(n.input[2], "Conv bias") if len(n.input) > 2 and n.input[2]
                else np.zeros(cout))
        t = self.as_layout(x, "cl")
        y = self.node("conv", [t, self.tensor(W.shape, W, base=f"{self.node_name}:W"),
                               self.tensor((cout,), bias, base=f"{self.node_name}:b")],
                      out_sp + (cout,), rank=rank, out_spatial=out_sp, groups=groups,
                      activation="linear", **geo)
        self.set(n, _Val(y, (cout,) + out_sp, "cl"))

    def op_ConvTranspose(self, n, a):
        x = self.get(n.input[0])
        Wt = self.const_of(n.input[1], "ConvTranspose weights").astype(np.float32)  # (I, O/g, k..)
        groups = int(a.get("group", 1))
        spatial = x.shape[1:]
        rank = len(spatial)
        if rank not in (1, 2):
            self.fail(f"ConvTranspose on a {rank}-D image is not supported (supported: 1-D, 2-D)")
        cin = x.shape[0]
        if Wt.ndim != rank + 2 or Wt.shape[0] != cin or cin % groups:
            self.fail(f"ConvTranspose weights {list(Wt.shape)} do not match input {list(x.full)}"
                      f" and group={groups}")
        ks = tuple(Wt.shape[2:])
        strides = tuple(a.get("strides", [1] * rank))
        dil = tuple(a.get("dilations", [1] * rank))
        opad = tuple(a.get("output_padding", [0] * rank))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        full = [st * (s_ - 1) + op + (k - 1) * d + 1
                for s_, st, op, k, d in zip(spatial, strides, opad, ks, dil)]
        if "output_shape" in a:
            want = list(a["output_shape"])[-rank:]
            tot = [f - w for f, w in zip(full, want)]
            if auto == "SAME_UPPER":
                pads = [t_ // 2 for t_ in tot]
            else:
                pads = [t_ - t_ // 2 for t_ in tot]
            out = want
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            want = [s_ * st for s_, st in zip(spatial, strides)]
            tot = [f - w for f, w in zip(full, want)]
            pads = [t_ // 2 if auto == "SAME_UPPER" else t_ - t_ // 2 for t_ in tot]
            out = want
        elif auto in ("NOTSET", "VALID"):
            p = list(a.get("pads", [0] * (2 * rank))) if auto == "NOTSET" else [0] * (2 * rank)
            pads = p[:rank]
            out = [f - p[i] - p[i + rank] for i, f in enumerate(full)]
        else:
            self.fail(f"auto_pad '{auto}' is not supported")
        if any(o < 1 for o in out):
            self.fail(f"ConvTranspose output {out} is empty")
        W = np.moveaxis(Wt, 1, -1)                                          # (I, k..., O/g)
        if rank == 1:
            W = W[:, None]
        cout = Wt.shape[1] * groups
        bias = (self.const_of(n.input[2], "ConvTranspose bias") if len(n.input) > 2
                and n.input[2] else np.zeros(cout))
        pad1 = (1,) * (2 - rank)
        out_sp = tuple(int(o) for o in out)
        t = self.as_layout(x, "cl")
        y = self.node("deconv", [t, self.tensor(W.shape, W, base=f"{self.node_name}:W"),
                                 self.tensor((cout,), bias, base=f"{self.node_name}:b")],
                      out_sp + (cout,), rank=rank, out_spatial=out_sp, groups=groups,
                      activation="linear", strides=pad1 + strides, dilations=pad1 + dil,
                      pads=(0,) * (2 - rank) + tuple(int(q) for q in pads))
        self.set(n, _Val(y, (cout,) + out_sp, "cl"))

    def _pool(self, n, a, kind: str, glob: bool) -> None:
        x = self.get(n.input[0])
        if len(x.shape) == 4 and not glob:
            self.set(n, self._pool3d(n, a, x, kind))
            return
        self.set(n, self._pool_val(n, a, x, kind, glob))

    def _pool3d(self, n, a, x: _Val, kind: str) -> _Val:
        """A 3-D pool as a 2-D pool over (H, W) then a 1-D pool over D (both max and average
        pooling are separable: a window's count is the product of its counts per axis)."""
        C, D, H, W_ = x.shape
        ks = list(a["kernel_shape"])
        st = list(a.get("strides", [1, 1, 1]))
        dl = list(a.get("dilations", [1, 1, 1]))
        pd = list(a.get("pads", [0] * 6))
        common = {k: a[k] for k in ("auto_pad", "ceil_mode", "count_include_pad") if k in a}
        a_hw = dict(common, kernel_shape=ks[1:], strides=st[1:], dilations=dl[1:],
                    pads=[pd[1], pd[2], pd[4], pd[5]])
        a_d = dict(common, kernel_shape=ks[:1], strides=st[:1], dilations=dl[:1],
                   pads=[pd[0], pd[3]])
        t = self.tr(self.as_layout(x, "cl"), [1, 2, 0, 3])                  # (H, W, D, C)
        t = self.node("reshape", [t], (H, W_, D * C))
        v = self._pool_val(n, a_hw, _Val(t, (D * C, H, W_), "cl"), kind, False)
        oh, ow = v.shape[1:]
        t = self.node("reshape", [v.ir], (oh * ow, D, C))
        t = self.node("reshape", [self.tr(t, [1, 0, 2])], (D, oh * ow * C))
        v = self._pool_val(n, a_d, _Val(t, (oh * ow * C, D), "cl"), kind, False)
        od = v.shape[1]
        return _Val(self.node("reshape", [v.ir], (od, oh, ow, C)), (C, od, oh, ow), "cl")

    def _pool_val(self, n, a, x: _Val, kind: str, glob: bool) -> _Val:
        spatial = x.shape[1:]
        dilated = False
        if glob:
            if len(spatial) not in (1, 2):
                self.fail(f"{n.op_type} on a {len(spatial)}-D image is not supported "
                          "(supported: 1-D, 2-D)")
            rank, ks = len(spatial), tuple(spatial)
            out_sp, geo = (1,) * rank, dict(strides=(1, 1), dilations=(1, 1), pads=(0, 0))
        else:
            ks = tuple(a["kernel_shape"])
            rank, out_sp, geo = self._window(n, a, x, ks, ceil_ok=True)
            dilated = tuple(geo["dilations"]) != (1, 1)
            if kind == "avg" and (dilated or a.get("count_include_pad", 0) and any(geo["pads"])
                                  or a.get("ceil_mode", 0)):
                return self._avgpool_as_conv(n, a, x, rank, ks, out_sp, geo)
        if not dilated:
            geo.pop("dilations", None)
        t = self.as_layout(x, "cl")
        pad1 = (1,) * (2 - rank)
        y = self.node("pool", [t], out_sp + (x.shape[0],), kind=kind, rank=rank,
                      out_spatial=out_sp, kernel=pad1 + ks, **geo)
        return _Val(y, (x.shape[0],) + out_sp, "cl")

    def _avgpool_as_conv(self, n, a, x: _Val, rank: int, ks, out_sp, geo) -> _Val:
        """An average pool the pooling kernel does not do (dilations, padding counted, ceil
        mode) as a depthwise convolution by ones times 1 / (count of each window)."""
        C = x.shape[0]
        pad1 = (1,) * (2 - rank)
        k2 = pad1 + tuple(ks)
        spatial = pad1 + tuple(x.shape[1:])
        osp = pad1 + tuple(out_sp)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        p = list(a.get("pads", [0] * (2 * rank))) if auto == "NOTSET" else [0] * (2 * rank)
        ends = (0,) * (2 - rank) + tuple(p[rank:]) if auto == "NOTSET" else None
        include = bool(a.get("count_include_pad", 0))
        counts = np.ones(osp)
        for axis in range(2):
            c = np.zeros(osp[axis])
            for o in range(osp[axis]):
                for k in range(k2[axis]):
                    i = o * geo["strides"][axis] + k * geo["dilations"][axis] - geo["pads"][axis]
                    end = spatial[axis] + (ends[axis] if ends is not None else 0)
                    if (0 <= i < spatial[axis]) or (include and -geo["pads"][axis] <= i < end):
                        c[o] += 1
            counts = counts * (c[:, None] if axis == 0 else c[None, :])
        W = np.ones((C,) + k2 + (1,), np.float32)
        t = self.as_layout(x, "cl")
        y = self.node("conv", [t, self.tensor(W.shape, W, base=f"{self.node_name}:W"),
                               self.tensor((C,), np.zeros(C), base=f"{self.node_name}:b")],
                      tuple(out_sp) + (C,), rank=rank, out_spatial=tuple(out_sp), groups=C,
                      activation="linear", **geo)
        inv = 1.0 / np.maximum(counts, 1)
        if np.all(inv == inv.flat[0]):
            c = self.tensor((1,), [inv.flat[0]], base=f"{self.node_name}:count")
        else:
            c = np.repeat(inv.reshape(-1, 1), C, axis=1).reshape(tuple(out_sp) + (C,))
            c = self.tensor(c.shape, c, base=f"{self.node_name}:count")
        y = self.node("mul", [y, c], tuple(out_sp) + (C,))
        return _Val(y, (C,) + tuple(out_sp), "cl")

    def op_MaxPool(self, n, a):
        if len(n.output) > 1 and n.output[1]:
            self.fail("MaxPool with an Indices output is not supported")
        if a.get("storage_order", 0):
            self.fail("MaxPool with storage_order=1 is not supported")
        self._pool(n, a, "max", False)

    def op_AveragePool(self, n, a):
        self._pool(n, a, "avg", False)

    def op_GlobalAveragePool(self, n, a):
        self._pool(n, a, "avg", True)

    def op_GlobalMaxPool(self, n, a):
        self._pool(n, a, "max", True)

    # shape ops
    def _reshape_to(self, n, x: _Val, shape: tuple[int, ...]) -> None:
        if x.const is not None:
            self.set(n, _Val(None, shape, const=x.const.reshape(shape)))
            return
        if (x.layout == "cl" and len(shape) >= 2 and shape[0] == x.shape[0]
                and [d for d in shape[1:] if d != 1] == [d for d in x.shape[1:] if d != 1]):
            # Only unit spatial axes come or go (Squeeze/Unsqueeze around a 1-D convolution):
            # the channels-last buffer is already in the new shape's channels-last order.
            cl = tuple(shape[1:]) + (shape[0],)
            self.set(n, _Val(self.node("reshape", [x.ir], cl), shape, "cl"))
            return
        t = self.as_layout(x, "plain")
        if int(np.prod(shape, dtype=np.int64)) != self.tensors[t].size:
            self.fail(f"cannot reshape {x.shape} to {shape}")
        self.set(n, _Val(self.node("reshape", [t], shape), shape))

    def op_Reshape(self, n, a):
        x = self.get(n.input[0])
        target = [int(d) for d in self.const_of(n.input[1], "Reshape shape")]
        full = (1,) + x.shape if x.const is not None else x.full
        out = []
        for i, d in enumerate(target):
            out.append(full[i] if d == 0 and not a.get("allowzero", 0) else d)
        size = int(np.prod(full))
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1]))
            out[out.index(-1)] = size // known
        if x.const is None and self.fixed_batch and (x.nobatch or not out or out[0] != 1):
            t = self.as_layout(x, "plain")
            if int(np.prod(out, dtype=np.int64)) != self.tensors[t].size:
                self.fail(f"cannot reshape {list(x.full)} to {out}")
            self.set(n, self.from_full(t, tuple(out)))
            return
        if not out or out[0] != 1:
            self.fail(f"Reshape to {target} changes the batch dimension")
        self._reshape_to(n, x, tuple(out[1:]))

    def op_Flatten(self, n, a):
        x = self.get(n.input[0])
        full = x.full
        axis = int(a.get("axis", 1))
        axis = axis + len(full) if axis < 0 else axis
        if not 0 <= axis <= len(full):
            self.fail(f"Flatten axis {a.get('axis')} out of range for shape {list(full)}")
        if axis == 1 and not x.nobatch:
            self._reshape_to(n, x, (int(np.prod(x.shape)),))
            return
        if not self.fixed_batch:
            self.fail(f"Flatten with axis {axis} merges the symbolic batch dimension")
        out = (int(np.prod(full[:axis], dtype=np.int64)), int(np.prod(full[axis:], dtype=np.int64)))
        if x.const is not None:
            self.set(n, _Val(None, out, const=x.const.reshape(out)))
            return
        self.set(n, self.from_full(self.as_layout(x, "plain"), out))

    def _axes(self, n, a, rank: int) -> list[int]:
        if "axes" in a:
            axes = list(a["axes"])
        elif len(n.input) > 1 and n.input[1]:
            axes = [int(v) for v in self.const_of(n.input[1], "axes")]
        else:
            axes = []
        return [ax + rank if ax < 0 else ax for ax in axes]

    def op_Squeeze(self, n, a):
        x = self.get(n.input[0])
        full = x.full
        axes = self._axes(n, a, len(full)) or [i for i, d in enumerate(full) if d == 1 and i]
        if x.const is None and any(not 0 <= ax < len(full) or full[ax] != 1 for ax in axes):
            self.fail(f"Squeeze of axes {axes} of shape {list(full)}: an axis is not 1")
        if x.const is None and self.fixed_batch and (x.nobatch or 0 in axes):
            out = tuple(d for i, d in enumerate(full) if i not in axes)
            self.set(n, self.from_full(self.as_layout(x, "plain"), out))
            return
        if 0 in axes:
            self.fail("Squeeze of the batch dimension is not supported")
        self._reshape_to(n, x, tuple(d for i, d in enumerate(full) if i not in axes)[1:])

    def op_Unsqueeze(self, n, a):
        x = self.get(n.input[0])
        n_new = len(self._axes(n, a, 0))
        axes = sorted(self._axes(n, a, len(x.shape) + 1 + n_new))
        out = list((1,) + x.shape)
        for ax in axes:
            out.insert(ax, 1)
        if x.const is None and self.fixed_batch and (x.nobatch or 0 in axes):
            out = list(x.full)
            for ax in sorted(self._axes(n, a, len(x.full) + n_new)):
                out.insert(ax, 1)
            self.set(n, self.from_full(self.as_layout(x, "plain"), tuple(out)))
            return
        if 0 in axes:
            self.fail("Unsqueeze before the batch dimension is not supported")
        self._reshape_to(n, x, tuple(out[1:]))

    def op_Transpose(self, n, a):
        x = self.get(n.input[0])
        rank = len(x.full)
        perm = list(a.get("perm", list(range(rank))[::-1]))
        if sorted(perm) != list(range(rank)):
            self.fail(f"Transpose perm {perm} does not match shape {list(x.full)}")
        if x.const is None and self.fixed_batch and (x.nobatch or perm[0] != 0):
            self.set(n, self._transpose_full(x, perm))
            return
        if perm[0] != 0:
            self.fail("Transpose that moves the batch dimension is not supported")
        p = [q - 1 for q in perm[1:]]
        shape = tuple(x.shape[q] for q in p)
        if x.const is not None:
            self.set(n, _Val(None, shape, const=np.transpose(x.const.reshape(x.shape), p)))
            return
        t = self.as_layout(x, "plain")
        if p == list(range(len(p))):
            self.set(n, _Val(t, shape))
            return
        self.set(n, _Val(self.tr(t, p), shape))

    # batch-1 exports: tensors whose first axis is not the batch
    def from_full(self, t: str, full: tuple[int, ...]) -> _Val:
        """The value of IR tensor t (plain, any shape of the right size) as ONNX shape full."""
        if len(full) >= 2 and full[0] == 1:
            shape, nobatch = tuple(full[1:]), False
        else:
            shape, nobatch = tuple(full), True
        if self.tensors[t].shape != shape:
            t = self.node("reshape", [t], shape)
        return _Val(t, shape, nobatch=nobatch)

    def _transpose_full(self, x: _Val, perm: list[int]) -> _Val:
        full = x.full
        if sorted(perm) != list(range(len(full))):
            self.fail(f"Transpose perm {perm} does not match shape {list(full)}")
        out = tuple(full[p] for p in perm)
        t = self.as_layout(x, "plain")
        # Axes of size 1 (the batch among them) move freely: transpose the others.
        keep = [ax for ax in range(len(full)) if full[ax] != 1]
        order = [ax for ax in perm if full[ax] != 1]
        if order != keep:
            reduced = tuple(full[ax] for ax in keep)
            if self.tensors[t].shape != reduced:
                t = self.node("reshape", [t], reduced)
            t = self.tr(t, [keep.index(ax) for ax in order])
        return self.from_full(t, out)

    def _slice_full(self, x: _Val, bounds: dict[int, tuple[int, int]]) -> _Val:
        """x[bounds] for full-shape axes -> (start, stop); the batch axis must stay whole."""
        full = list(x.full)
        t = self.as_layout(x, "plain")
        off = 0 if x.nobatch else 1
        for ax in sorted(bounds):
            b0, e0 = bounds[ax]
            if (b0, e0) == (0, full[ax]):
                continue
            if e0 <= b0:
                self.fail(f"empty slice [{b0}:{e0}] of axis {ax} of shape {list(x.full)}")
            if ax < off:
                self.fail("a slice of the batch dimension is not supported")
            full[ax] = e0 - b0
            t = self.node("slice", [t], tuple(full[off:]), axis=ax - off, start=b0, stop=e0)
        return self.from_full(t, tuple(full))

    def op_Split(self, n, a):
        x = self.get(n.input[0])
        if x.const is not None:  # constants are folded before: only a failed fold gets here
            self.fail("Split of a constant that could not be evaluated")
        full = x.full
        axis = int(a.get("axis", 0))
        axis = axis + len(full) if axis < 0 else axis
        if not 0 <= axis < len(full):
            self.fail(f"Split axis {a.get('axis', 0)} out of range for shape {list(full)}")
        outs = [o for o in n.output]
        if len(n.input) > 1 and n.input[1]:
            sizes = [int(v) for v in self.const_of(n.input[1], "Split sizes")]
        elif "split" in a:
            sizes = [int(v) for v in a["split"]]
        else:
            k = len(outs)
            step = -(-full[axis] // k)  # opset 18 num_outputs: the last piece may be smaller
            sizes = [min(step, full[axis] - i * step) for i in range(k)]
        if len(sizes) != len(outs) or sum(sizes) != full[axis] or min(sizes) < 1:
            self.fail(f"Split of axis {axis} of shape {list(full)} into {sizes} is not supported")
        start = 0
        for o, size in zip(outs, sizes):
            # Cut where first read (fewer live buffers than every time step up front).
            self.lazy[o] = (x, axis, start, start + size)
            start += size

    def op_Slice(self, n, a):
        x = self.get(n.input[0])
        if x.const is not None:
            self.fail("Slice of a constant that could not be evaluated")
        full = x.full
        get = lambda k: ([int(v) for v in self.const_of(n.input[k], "Slice bounds").reshape(-1)]  # noqa: E731
                         if len(n.input) > k and n.input[k] else None)
        starts, ends = get(1), get(2)
        axes = get(3) or list(range(len(starts)))
        steps = get(4) or [1] * len(starts)
        if any(st != 1 for st in steps):
            self.fail(f"Slice with steps {steps} is not supported (supported: step 1)")
        bounds = {}
        for b0, e0, ax in zip(starts, ends, axes):
            ax = ax + len(full) if ax < 0 else ax
            if not 0 <= ax < len(full):
                self.fail(f"Slice axis {ax} out of range for shape {list(full)}")
            dim = full[ax]
            b0 = max(0, min(b0 + dim if b0 < 0 else b0, dim))
            e0 = max(0, min(e0 + dim if e0 < 0 else e0, dim))
            bounds[ax] = (b0, e0)
        self.set(n, self._slice_full(x, bounds))

    def op_Concat(self, n, a):
        vals = [self.get(i) for i in n.input]
        rank = len(vals[0].shape) + 1
        axis = int(a["axis"])
        axis = axis + rank if axis < 0 else axis
        if any(v.nobatch for v in vals) or axis == 0:
            if not self.fixed_batch:
                self.fail("Concat along the batch dimension is not supported")
            fulls = [v.full for v in vals]
            rank = len(fulls[0])
            axis = int(a["axis"]) + (rank if int(a["axis"]) < 0 else 0)
            if any(len(f) != rank for f in fulls) or not 0 <= axis < rank:
                self.fail(f"Concat of shapes {[list(f) for f in fulls]} along axis {a['axis']}")
            shape = list(fulls[0])
            shape[axis] = sum(f[axis] for f in fulls)
            ts = [self.full_ir(v) for v in vals]
            t = self.node("concat", ts, tuple(shape), axis=axis)
            self.set(n, self.from_full(t, tuple(shape)))
            return
        ts = [self.as_layout(v, "plain") for v in vals]
        shape = list(vals[0].shape)
        shape[axis - 1] = sum(v.shape[axis - 1] for v in vals)
        self.set(n, _Val(self.node("concat", ts, tuple(shape), axis=axis - 1), tuple(shape)))

    def op_Pad(self, n, a):
        x = self.get(n.input[0])
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            self.fail(f"Pad mode '{mode}' is not supported (supported: constant)")
        pads = [int(p) for p in self.const_of(n.input[1], "Pad pads").reshape(-1)]
        cval = 0.0
        if len(n.input) > 2 and n.input[2]:
            cv = np.asarray(self.const_of(n.input[2], "Pad value")).reshape(-1)
            cval = float(cv[0]) if cv.size else 0.0
        full = x.full
        rank = len(full)
        if len(n.input) > 3 and n.input[3]:
            axes = [int(v) + (rank if int(v) < 0 else 0)
                    for v in self.const_of(n.input[3], "Pad axes").reshape(-1)]
            if len(pads) != 2 * len(axes) or any(not 0 <= ax < rank for ax in axes):
                self.fail(f"Pad axes {axes} and pads {pads} do not match shape {list(full)}")
            p = [0] * (2 * rank)
            for i, ax in enumerate(axes):
                p[ax], p[ax + rank] = pads[i], pads[i + len(axes)]
            pads = p
        if len(pads) != 2 * rank:
            self.fail(f"Pad pads {pads} do not match shape {list(full)}")
        if (not x.nobatch and cval == 0.0 and not any(p < 0 for p in pads)
                and not pads[0] and not pads[rank]):
            self._pad_zeros(n, x, pads)
            return
        if not self.fixed_batch and (pads[0] or pads[rank]):
            self.fail("Pad of the batch dimension is not supported")
        t = self.full_ir(x)
        shape = list(full)
        for ax in range(rank):
            before, after = pads[ax], pads[ax + rank]
            if before < 0 or after < 0:  # negative pads crop
                b0, e0 = max(-before, 0), shape[ax] - max(-after, 0)
                if e0 <= b0:
                    self.fail(f"Pad {pads} crops shape {list(full)} to nothing")
                shape[ax] = e0 - b0
                t = self.node("slice", [t], tuple(shape), axis=ax, start=b0, stop=e0)
                before, after = max(before, 0), max(after, 0)
            if not before and not after:
                continue
            parts = []
            for k in (before, after):
                zs = list(shape)
                zs[ax] = k
                parts.append(self.tensor(zs, np.full(zs, cval), base="pad") if k else None)
            shape[ax] += before + after
            ins = [p for p in (parts[0], t, parts[1]) if p is not None]
            t = self.node("concat", ins, tuple(shape), axis=ax)
        self.set(n, self.from_full(t, tuple(shape)))

    def _pad_zeros(self, n, x: _Val, pads: list[int]) -> None:
        rank = len(x.shape) + 1
        t = self.as_layout(x, "plain")
        shape = list(x.shape)
        for ax in range(1, rank):
            before, after = pads[ax], pads[ax + rank]
            if not before and not after:
                continue
            parts = []
            for k in (before, after):
                zs = list(shape)
                zs[ax - 1] = k
                parts.append(self.tensor(zs, np.zeros(zs), base="pad") if k else None)
            shape[ax - 1] += before + after
            ins = [p for p in (parts[0], t, parts[1]) if p is not None]
            t = self.node("concat", ins, tuple(shape), axis=ax - 1)
        self.set(n, _Val(t, tuple(shape)))

    def op_ReduceMean(self, n, a):
        x = self.get(n.input[0])
        full = x.full
        rank = len(full)
        axes = self._axes(n, a, rank)
        if any(not 0 <= ax < rank for ax in axes):
            self.fail(f"ReduceMean axes {axes} out of range for shape {list(full)}")
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                self.set(n, x)
                return
            axes = list(range(rank))
        axes = sorted(set(axes))
        keep = [i for i in range(rank) if i not in axes]
        r = int(np.prod([full[i] for i in axes], dtype=np.int64))
        outer = int(np.prod([full[i] for i in keep], dtype=np.int64))
        t = self.tr(self.full_ir(x), keep + axes)
        t = self.node("reshape", [t], (outer, r))
        t = self._dense_ir(t, np.full((1, r), 1.0 / r))
        if a.get("keepdims", 1):
            out = tuple(1 if i in axes else full[i] for i in range(rank))
        else:
            out = tuple(full[i] for i in keep)
        self.set(n, self.from_full(t, out))

    def op_Resize(self, n, a):
        x = self.get(n.input[0])
        full = x.full
        rank = len(full)
        attr = lambda k, d: (a.get(k, d).decode() if isinstance(a.get(k, d), bytes)  # noqa: E731
                             else a.get(k, d))
        mode = attr("mode", "nearest")
        if mode not in ("nearest", "linear", "cubic"):
            self.fail(f"Resize mode '{mode}' is not supported (supported: nearest, linear, cubic)")
        ctm = attr("coordinate_transformation_mode", "half_pixel")
        if attr("keep_aspect_ratio_policy", "stretch") != "stretch":
            self.fail("Resize with keep_aspect_ratio_policy other than 'stretch' is not supported")
        axes = [ax + rank if ax < 0 else ax for ax in a.get("axes", list(range(rank)))]
        inp = lambda k: (np.asarray(self.const_of(n.input[k], "Resize scales/sizes"))  # noqa: E731
                         if len(n.input) > k and n.input[k] else None)
        scales, sizes = inp(2), inp(3)
        roi = inp(1) if ctm == "tf_crop_and_resize" else None
        if ctm == "tf_crop_and_resize" and (roi is None or roi.size != 2 * len(axes)):
            self.fail("Resize with tf_crop_and_resize needs a constant roi")
        if scales is not None and scales.size == 0:
            scales = None
        if (scales is None) == (sizes is None):
            self.fail("Resize needs constant scales or sizes (one of them)")
        out = list(full)
        per_axis = {}
        for i, ax in enumerate(axes):
            if scales is not None:
                s = float(scales.reshape(-1)[i])
                out[ax] = int(np.floor(full[ax] * s + 1e-9)) if s > 0 else 0
                per_axis[ax] = ("scales", s)
            else:
                out[ax] = int(sizes.reshape(-1)[i])
                per_axis[ax] = ("sizes", out[ax])
        if any(o < 1 for o in out):
            self.fail(f"Resize of {list(full)} to {out} is empty")
        if not self.fixed_batch and out[0] != full[0]:
            self.fail("Resize of the batch dimension is not supported")
        t = self.full_ir(x)
        cur = list(full)
        for ax in range(rank):
            if ax not in per_axis or (out[ax] == full[ax] and per_axis[ax][1] in (1.0, full[ax])):
                continue
            box = None
            if roi is not None:
                k = axes.index(ax)
                box = (float(roi.reshape(-1)[k]), float(roi.reshape(-1)[k + len(axes)]))
            M, c = self._resize_matrix(n, full[ax], per_axis[ax], box)
            perm = [i for i in range(rank) if i != ax] + [ax]
            t = self.tr(t, perm) if ax != rank - 1 else t
            t = self._dense_ir(t, M, c)
            cur[ax] = out[ax]
            if ax != rank - 1:
                t = self.tr(t, [perm.index(i) for i in range(rank)])
        self.set(n, self.from_full(t, tuple(out)))

    def _resize_matrix(self, n, size: int, how, box=None) -> tuple[np.ndarray, np.ndarray]:
        """The (out, in) matrix and the offset of a Resize along one axis, from the ONNX
        reference evaluator applied to the identity and to zeros (every mode acts on each
        axis alone; the offset is tf_crop_and_resize's extrapolation value outside the box)."""
        from onnx import TensorProto, helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        kind, val = how
        attrs = {at.name: helper.get_attribute_value(at) for at in n.attribute
                 if at.name not in ("axes",)}
        eye = np.concatenate([np.eye(size), np.zeros((1, size))]).astype(np.float32)
        roi = np.zeros(0, np.float32) if box is None else np.array([0, box[0], 1, box[1]], np.float32)
        inits = [numpy_helper.from_array(eye, "x"), numpy_helper.from_array(roi, "roi")]
        if kind == "scales":
            inits.append(numpy_helper.from_array(np.array([1.0, val], np.float32), "s"))
            ins = ["x", "roi", "s"]
        else:
            inits.append(numpy_helper.from_array(np.array([size + 1, val], np.int64), "z"))
            ins = ["x", "roi", "", "z"]
        node = helper.make_node("Resize", ins, ["y"], **attrs)
        g = helper.make_graph([node], "r", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", max(self.opset, 13))])
        y = np.asarray(ReferenceEvaluator(model).run(None, {})[0], np.float64)
        c = y[size]
        return (y[:size] - c).T, c

    # recurrent layers (the ONNX RNN, GRU and LSTM ops, as PyTorch exports them)
    def op_RNN(self, n, a):
        self._recurrent(n, a, "RNN")

    def op_GRU(self, n, a):
        self._recurrent(n, a, "GRU")

    def op_LSTM(self, n, a):
        self._recurrent(n, a, "LSTM")

    _RNN_ACTS = {"Tanh": ("tanh", {}), "Sigmoid": ("sigmoid", {}), "Relu": ("relu", {}),
                 "Softsign": ("softsign", {}), "Softplus": ("softplus", {})}

    def _recurrent(self, n, a, kind: str) -> None:
        gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "reverse", "bidirectional"):
            self.fail(f"{kind} with direction='{direction}' is not supported")
        dirs = 2 if direction == "bidirectional" else 1
        if "clip" in a:
            self.fail(f"{kind} with clip is not supported")
        if a.get("input_forget", 0):
            self.fail("LSTM with input_forget=1 is not supported")
        defaults = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"],
                    "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[kind]
        names = [s.decode() if isinstance(s, bytes) else s
                 for s in a.get("activations", defaults * dirs)]
        if len(names) != len(defaults) * dirs:
            self.fail(f"{kind} with activations {names} is not supported ({len(defaults)} per "
                      "direction)")
        acts = []
        for name in names:
            if name not in self._RNN_ACTS:
                self.fail(f"{kind} activation '{name}' is not supported (supported: "
                          f"{', '.join(sorted(self._RNN_ACTS))})")
            acts.append(self._RNN_ACTS[name])
        layout = int(a.get("layout", 0))
        opt = lambda k: n.input[k] if len(n.input) > k and n.input[k] else None  # noqa: E731
        x = self.get(n.input[0])
        full = x.full
        if len(full) != 3:
            self.fail(f"{kind} input of shape {list(full)}: expected 3-D")
        T, B, F = (full if layout == 0 else (full[1], full[0], full[2]))
        if not self.fixed_batch and (layout == 0 and T != 1 or B != 1):
            self.fail(f"{kind} with a symbolic batch is not supported: export with a batch of 1")
        W = np.asarray(self.const_of(n.input[1], f"{kind} W"), np.float64)
        R = np.asarray(self.const_of(n.input[2], f"{kind} R"), np.float64)
        H = int(a.get("hidden_size", R.shape[-1]))
        if W.shape != (dirs, gates * H, F) or R.shape != (dirs, gates * H, H):
            self.fail(f"{kind} weights of shapes {list(W.shape)} and {list(R.shape)} do not "
                      f"match {F} input features and {H} units")
        Bias = (np.asarray(self.const_of(opt(3), f"{kind} B"), np.float64).reshape(dirs, 2, gates, H)
                if opt(3) else np.zeros((dirs, 2, gates, H)))
        if opt(4):
            sl = self.get(opt(4))
            if sl.const is None or np.any(np.asarray(sl.const).reshape(-1) != T):
                self.fail(f"{kind} with sequence_lens shorter than the window is not supported")
        P = np.zeros((dirs, 3, H))
        if kind == "LSTM" and opt(7):
            P = np.asarray(self.const_of(opt(7), "LSTM P"), np.float64).reshape(dirs, 3, H)
        streaming = self.streaming
        if streaming and (dirs == 2 or direction == "reverse"):
            raise _NoStream()
        # the window as rows: step t is x_all[t] of shape (B, F)
        x_all = self.full_ir(x)
        if layout == 1 and B > 1 and T > 1:
            x_all = self.tr(x_all, [1, 0, 2])
        x_all = self.node("reshape", [x_all], (T, B * F)) if self.tensors[x_all].shape != (T, B * F) else x_all
        hs = (B, H) if B > 1 else (H,)
        self.rnn_steps.append(T)

        def initial(idx, what: str, d: int) -> tuple[str, bool]:
            """The initial state of direction d, and whether it is all zeros."""
            if opt(idx):
                v = self.get(opt(idx))
                if streaming:
                    if v.const is None or np.any(np.asarray(v.const) != 0):
                        raise _NoStream()
                else:
                    if v.const is not None:
                        c = np.asarray(v.const, np.float32)
                        c = (c.reshape(dirs, B, H) if layout == 0
                             else np.moveaxis(c.reshape(B, dirs, H), 1, 0))[d]
                        return (self.tensor(hs, c.reshape(hs), base=f"{self.node_name}:{what}0"),
                                not np.any(c != 0))
                    t = self.full_ir(v)
                    if self.tensors[t].size != dirs * B * H:
                        self.fail(f"{kind} {what} of shape {list(v.full)} for {H} units")
                    if layout == 1 and dirs > 1 and B > 1:
                        t = self.tr(self.node("reshape", [t], (B, dirs, H)), [1, 0, 2])
                    t = self.node("reshape", [t], (dirs, B * H))
                    if dirs > 1:
                        t = self.node("slice", [t], (1, B * H), axis=0, start=d, stop=d + 1)
                    return self.node("reshape", [t], hs), False
            if streaming:
                t = self.tensor(hs, base=f"{self.node_name}:{what}_state")
                return t, False
            return self.tensor(hs, np.zeros(hs, np.float32), base=f"{self.node_name}:{what}0"), True

        per_dir = []
        for d in range(dirs):
            rev = direction == "reverse" or d == 1
            zeros: set[str] = set()
            h, hz = initial(5, "h", d)
            if hz:
                zeros.add(h)
            c = ""
            if kind == "LSTM":
                c, cz = initial(6, "c", d)
                if cz:
                    zeros.add(c)
            h_in, c_in = h, c
            outs = self._cell_steps(kind, T, B, H, F, x_all, hs, zeros, h, c, rev,
                                    W[d].reshape(gates, H, F), R[d].reshape(gates, H, H),
                                    Bias[d, 0], Bias[d, 1], P[d], acts[d * len(defaults):(d + 1) * len(defaults)],
                                    int(a.get("linear_before_reset", 0)))
            seq, h, c = outs
            if streaming:
                self.states.append((h_in, h))
                if kind == "LSTM":
                    self.states.append((c_in, c))
            per_dir.append((seq, h, c))
        # Y: layout 0 (T, dirs, B, H); layout 1 (B, T, dirs, H). Y_h, Y_c: (dirs, B, H) / (B, dirs, H)
        if dirs == 1:
            ys = per_dir[0][0]                             # (T, B, H)
        else:
            ys = self.node("concat", [self.node("reshape", [p[0]], (T, 1, B * H)) for p in per_dir],
                           (T, dirs, B * H), axis=1)
        ys = self.node("reshape", [ys], (T, dirs, B, H)) if self.tensors[ys].shape != (T, dirs, B, H) else ys
        if layout == 1:
            ys = self.tr(ys, [2, 0, 1, 3])
            yfull = (B, T, dirs, H)
        else:
            yfull = (T, dirs, B, H)
        results = [(ys, yfull)]
        for k in (1, 2):
            if k == 2 and kind != "LSTM":
                break
            parts = [self.node("reshape", [p[k]], (1, B * H)) for p in per_dir]
            st = parts[0] if dirs == 1 else self.node("concat", parts, (dirs, B * H), axis=0)
            st = self.node("reshape", [st], (dirs, B, H))
            if layout == 1:
                st = self.tr(st, [1, 0, 2])
                results.append((st, (B, dirs, H)))
            else:
                results.append((st, (dirs, B, H)))
        for o, (t, shp) in zip(n.output, results):
            if o:
                if self.tensors[t].is_const:
                    self.fail(f"{kind} output '{o}' does not depend on the input")
                self.vals[o] = self.from_full(t, shp)

    def _cell_steps(self, kind, T, B, H, F, x_all, hs, zeros, h, c, rev, Wx, Wh, bx, bh, P,
                    acts, lbr):
        """One direction of a recurrent layer unrolled over the window: (Y rows, h, c)."""
        from ..reference import activation as ref_act

        def lin(parts, bias, act=None):
            live = [(t, Wm) for t, Wm in parts if t not in zeros]
            if not live:
                b = np.broadcast_to(np.asarray(bias, np.float64), hs)
                if act is not None:
                    b = ref_act(b, act[0], **act[1])
                return self.tensor(hs, b, base=f"{self.node_name}:c")
            if len(live) == 1:
                xin, Wm = live[0]
            else:
                size = sum(self.tensors[t].shape[-1] for t, _ in live)
                xin = self.node("concat", [t for t, _ in live], hs[:-1] + (size,), axis=len(hs) - 1)
                Wm = np.concatenate([Wm for _, Wm in live], axis=1)
            y = self._dense_ir(xin, Wm, np.asarray(bias, np.float64))
            if act is not None and act[0] != "linear":
                y = self.node("activation", [y], hs, activation=act[0], **act[1])
            return y

        def op(o, p, q):
            return self.node(o, [p, q], hs)

        def act_of(t, act):
            if self.tensors[t].is_const:
                return self.tensor(hs, ref_act(self.tensors[t].data, act[0], **act[1]),
                                   base=f"{self.node_name}:c")
            return self.node("activation", [t], hs, activation=act[0], **act[1])

        def peep(pre, k, cell, act):
            """act(pre + P_k c) for an LSTM gate with peephole weights P_k."""
            if not np.any(P[k] != 0) or cell in zeros:
                return act_of(pre, act)
            t = op("mul", cell, self.tensor((H,), P[k], base=f"{self.node_name}:P"))
            return act_of(op("add", pre, t) if not self.tensors[pre].is_const
                          else op("add", t, pre), act)

        outs = [None] * T
        for step in (range(T - 1, -1, -1) if rev else range(T)):
            xt = (x_all if T == 1 else
                  self.node("slice", [x_all], (1, B * F), axis=0, start=step, stop=step + 1))
            if self.tensors[xt].shape != hs[:-1] + (F,):
                xt = self.node("reshape", [xt], hs[:-1] + (F,))
            if kind == "RNN":
                h = lin([(xt, Wx[0]), (h, Wh[0])], bx[0] + bh[0], acts[0])
            elif kind == "GRU":  # ONNX gates z, r, h
                f_, g_ = acts
                z = lin([(xt, Wx[0]), (h, Wh[0])], bx[0] + bh[0], f_)
                r = lin([(xt, Wx[1]), (h, Wh[1])], bx[1] + bh[1], f_)
                if lbr:  # g(x W_h + Wb_h + r (h R_h + Rb_h))
                    xh = lin([(xt, Wx[2])], bx[2])
                    hh = act_of(op("add", xh, op("mul", r, lin([(h, Wh[2])], bh[2]))), g_)
                else:    # g(x W_h + (r h) R_h + Wb_h + Rb_h)
                    rh = h if h in zeros else op("mul", r, h)
                    if h in zeros:
                        zeros.add(rh)
                    hh = lin([(xt, Wx[2]), (rh, Wh[2])], bx[2] + bh[2], g_)
                if h in zeros:   # h = (1 - z) hh
                    h = op("sub", hh, op("mul", z, hh))
                else:            # h = z h + (1 - z) hh = hh + z (h - hh)
                    h = op("add", hh, op("mul", z, op("sub", h, hh)))
            else:  # LSTM: ONNX gates i, o, f, c; peepholes i, o, f
                f_, g_, h_ = acts
                ig = peep(lin([(xt, Wx[0]), (h, Wh[0])], bx[0] + bh[0]), 0, c, f_)
                fg = peep(lin([(xt, Wx[2]), (h, Wh[2])], bx[2] + bh[2]), 2, c, f_)
                gg = lin([(xt, Wx[3]), (h, Wh[3])], bx[3] + bh[3], g_)
                ci = op("mul", ig, gg)
                c = ci if c in zeros else op("add", op("mul", fg, c), ci)
                og = peep(lin([(xt, Wx[1]), (h, Wh[1])], bx[1] + bh[1]), 1, c, f_)
                h = op("mul", og, act_of(c, h_))
            outs[step] = h
        seq = outs[0] if T == 1 else self.node("concat", outs, (T * (B if B > 1 else 1), H)
                                               if B > 1 else (T * H,), axis=0)
        return seq, h, c


class _NoStream(Exception):
    """The model has no one-step (streaming) form."""


def _attr(a):
    from onnx import helper
    return helper.get_attribute_value(a)


def load_onnx(path: Path, input_shapes: InputShapes = None) -> Graph:
    """Read an ONNX file; ``input_shapes`` fixes the symbolic dimensions of its inputs."""
    try:
        import onnx
    except ImportError:
        raise CompileError("reading ONNX models needs the 'onnx' package", file=str(path)) from None
    def bad(e: Exception) -> CompileError:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return CompileError(f"ONNX could not read the file ({type(e).__name__}: {msg[:200]}); "
                            "it may be corrupt or truncated", file=str(path))

    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise bad(e) from None
    try:
        onnx.checker.check_model(model)
        invalid = None
    except Exception as e:  # an unknown op is reported better by the converter, naming the node
        invalid = bad(e)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise CompileError(f"ONNX opset {opset} is not supported (supported: opset 13 and later)",
                           file=str(path))
    loader = _OnnxLoader(path)
    loader.given = GivenShapes(input_shapes, str(path))
    loader.opset = opset
    graph = loader.run(model)
    if invalid is not None:
        raise invalid
    _attach_step_form(graph, model, path, input_shapes, opset, loader)
    return graph


def _attach_step_form(graph: Graph, model, path: Path, input_shapes: InputShapes, opset: int,
                      window: _OnnxLoader) -> None:
    """Give a model of native RNN/GRU/LSTM ops its one-step (streaming) form, as the Keras
    front-end does: the same model read again with the time axis of every input set to one
    step, each recurrent op's initial state in ``states``. There is none when a recurrent op
    runs backwards or from a computed or non-zero initial state, when the ops do not all run
    over the same window of two steps or more, when an input's leading axis of size > 1 is not
    the time axis (the window must be ``T`` rows of one step's input), or when the steps do
    not reproduce the window: ``reset`` then ``step`` over the window's rows must give the
    window's outputs, each one either the last step's output or the steps' outputs one after
    the other (checked at compile time on random inputs, so a layer that needs the whole
    window, such as a mean over time, leaves the model without a streaming form)."""
    steps = set(window.rnn_steps)
    if len(steps) != 1:
        return
    (T,) = steps
    if T < 2:
        return
    inits = {i.name for i in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    axes = {}
    for name, t in zip(names, graph.inputs):
        shape = graph.tensors[t].shape
        lead = next((k for k, d in enumerate(shape) if d > 1), None)
        if lead is None or shape[lead] != T:
            return
        axes[name] = lead
    loader = _OnnxLoader(path)
    loader.given = GivenShapes(input_shapes, str(path))
    loader.opset = opset
    loader.streaming = True
    loader.step_axes = axes
    try:
        step = loader.run(model)
        if set(loader.rnn_steps) != {1} or not step.states:
            return
        step.validate()
        if not _steps_reproduce_window(graph, step, T):
            return
    except Exception:  # _NoStream, a CompileError, or anything else: the window form stands
        return
    graph.step_graph = step
    graph.window = T


def _steps_reproduce_window(graph: Graph, step: Graph, T: int) -> bool:
    """Whether ``step`` run over a random window's rows from zero states gives ``graph``'s
    outputs on that window (numpy, float32 as the C; False where an op is not evaluated)."""
    from ..reference import evaluate

    def run(g: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        vals = {k: t.data for k, t in g.tensors.items() if t.is_const}
        vals.update(feeds)
        for n in g.nodes:
            y = evaluate(g, n, [vals[i] for i in n.inputs])
            if y is None:
                return None
            vals[n.outputs[0]] = y
        return vals

    rng = np.random.default_rng(0)
    for _ in range(2):
        xs = {t: rng.uniform(-1, 1, graph.tensors[t].shape).astype(np.float32)
              for t in graph.inputs}
        w = run(graph, xs)
        if w is None:
            return False
        state = {s: np.zeros(step.tensors[s].shape, np.float32) for s, _ in step.states}
        outs: list[list[np.ndarray]] = [[] for _ in step.outputs]
        for t in range(T):
            feeds = {s: xs[wi].reshape(T, -1)[t].reshape(step.tensors[s].shape)
                     for s, wi in zip(step.inputs, graph.inputs)}
            feeds.update(state)
            v = run(step, feeds)
            if v is None:
                return False
            for k, o in enumerate(step.outputs):
                outs[k].append(np.asarray(v[o], np.float32).reshape(-1))
            state = {s_in: v[s_out] for s_in, s_out in step.states}
        for o, rows in zip(graph.outputs, outs):
            got = np.asarray(w[o], np.float64).reshape(-1)
            rows = np.asarray(rows, np.float64)
            if got.size == rows.shape[1]:
                ref = rows[-1]
            elif got.size == rows.size:
                ref = rows.reshape(-1)
            else:
                return False
            if not np.abs(got - ref).max() <= 1e-4 * (1 + np.abs(got).max()):
                return False
    return True
