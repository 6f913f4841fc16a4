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
from ..ir import Graph, Node, Tensor

SUPPORTED = sorted([
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Tanh", "Sigmoid", "Elu", "Selu",
    "LeakyRelu", "Softplus", "Softsign", "HardSigmoid", "Exp", "Softmax", "Clip", "Gelu",
    "Identity", "Dropout", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Pad",
    "Constant", "BatchNormalization", "Neg", "Split", "Slice",
])

#: Ops that read tensors whose first axis is not the batch (see ``_Val.nobatch``).
_NOBATCH_OK = {"Reshape", "Transpose", "Split", "Squeeze", "Slice", "Identity", "Dropout"}

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
        for vi in g.input:
            if vi.name in self.vals:
                continue
            dims = vi.type.tensor_type.shape.dim
            if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value != 1:
                self.fixed_batch = False
            shape = self._shape_of(vi)
            t = self.tensor(shape, base=vi.name)
            self.vals[vi.name] = _Val(t, shape)
            inputs.append(t)
        for n in g.node:
            self.node_name = n.name or f"{n.op_type}:{n.output[0]}"
            if n.op_type in ("Loop", "Scan", "If", "LSTM", "GRU", "RNN"):
                self.fail(f"op '{n.op_type}' (control flow or a recurrent layer) is not supported; "
                          "compile recurrent models from their .keras file, which is unrolled "
                          "over the window")
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
                     tensors=self.tensors, nodes=self.nodes, source_file=str(self.path))

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

    def _shape_of(self, vi) -> tuple[int, ...]:
        dims = vi.type.tensor_type.shape.dim
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)  # batch
            else:
                raise CompileError(
                    f"input '{vi.name}' has a dynamic dimension {i} ('{d.dim_param}'); only "
                    "fixed shapes (batch dimension aside) are supported", file=str(self.path),
                    layer=vi.name)
        if not shape or shape[0] != 1:
            raise CompileError(f"input '{vi.name}' shape {shape}: the first dimension must be "
                               "the batch (1 or symbolic)", file=str(self.path), layer=vi.name)
        return tuple(shape[1:])

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
        self.set(n, _Val(t, v.shape, v.layout))

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

    def op_Elu(self, n, a):
        self._unary(n, "elu", {"alpha": float(a.get("alpha", 1.0))})

    def op_LeakyRelu(self, n, a):
        self._unary(n, "leaky_relu", {"alpha": float(a.get("alpha", 0.01))})

    def op_HardSigmoid(self, n, a):
        self._unary(n, "hard_sigmoid", {"alpha": float(a.get("alpha", 0.2)),
                                        "beta": float(a.get("beta", 0.5))})

    def op_Selu(self, n, a):
        if abs(a.get("alpha", 1.67326319) - 1.67326319) > 1e-6 or abs(a.get("gamma", 1.05070102) - 1.05070102) > 1e-6:
            self.fail("Selu with non-default alpha/gamma is not supported")
        self._unary(n, "selu", {})

    def op_Gelu(self, n, a):
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        if approx not in ("none", "tanh"):
            self.fail(f"Gelu approximate='{approx}' is not supported (supported: none, tanh)")
        self._unary(n, "gelu_tanh" if approx == "tanh" else "gelu", {})

    def op_Softmax(self, n, a):
        v = self.get(n.input[0])
        axis = int(a.get("axis", -1))
        rank = len(v.shape) + 1
        if axis not in (-1, rank - 1):
            self.fail(f"Softmax over axis {axis} is not supported (supported: the last axis)")
        t = self.as_layout(v, "plain")
        self.set(n, _Val(self.node("activation", [t], self.tensors[t].shape, activation="softmax"),
                         v.shape))

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
            self.set(n, _Val(t, v2.shape, v2.layout))
        else:
            self.fail(f"Clip to [{lo}, {hi}] is not supported (supported: [0, 6], [0, inf), [0, max])")

    def op_Identity(self, n, a):
        self.set(n, self.get(n.input[0]))

    def op_Dropout(self, n, a):
        self.set(n, self.get(n.input[0]))

    def op_Constant(self, n, a):
        from onnx import numpy_helper
        if "value" not in a:
            self.fail("Constant without a tensor 'value' is not supported")
        arr = np.asarray(numpy_helper.to_array(a["value"]))
        self.set(n, _Val(None, arr.shape, const=arr))

    def op_Neg(self, n, a):
        v = self.get(n.input[0])
        if v.const is not None:
            self.set(n, _Val(None, v.shape, const=-v.const))
            return
        t = self.node("mul", [v.ir, self.tensor((1,), [-1.0], base="neg")], self.ir_shape(v))
        self.set(n, _Val(t, v.shape, v.layout))

    def _broadcast_const(self, c: np.ndarray, v: _Val) -> str:
        """A constant broadcast against v, laid out like v's IR tensor, as small as possible."""
        full = np.broadcast_to(np.asarray(c, np.float32), (1,) + v.shape)[0]
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
                vb, va = va, _Val(neg, vb.shape, vb.layout)
                op = "add"
            else:
                va, vb = vb, va
        if vb.const is not None:
            if len(vb.const.shape) > len(va.shape) + 1:
                self.fail(f"constant {vb.const.shape} broadcasts beyond {va.shape}")
            c = self._broadcast_const(vb.const, va)
            t = self.node(op, [va.ir, c], self.ir_shape(va))
            self.set(n, _Val(t, va.shape, va.layout))
            return
        if va.shape != vb.shape:
            self.fail(f"{n.op_type} of shapes {va.shape} and {vb.shape}: only equal shapes or a "
                      "constant broadcast are supported")
        layout = va.layout if va.layout == vb.layout else "plain"
        ta, tb = self.as_layout(va, layout), self.as_layout(vb, layout)
        self.set(n, _Val(self.node(op, [ta, tb], self.tensors[ta].shape), va.shape, layout))

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
        if a.get("transA", 0):
            self.fail("Gemm with transA=1 is not supported")
        x = self.get(n.input[0])
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
            self.set(n, _Val(t, vy.shape))
            return
        if len(n.input) > 2 and n.input[2]:
            c = self.const_of(n.input[2], "Gemm C").astype(np.float64)
            bias = np.broadcast_to(c.reshape(-1) if c.size == W.shape[0] else c, (W.shape[0],)) \
                * float(a.get("beta", 1.0))
        self._dense(n, x, W, bias)

    def op_MatMul(self, n, a):
        x = self.get(n.input[0])
        B = self.const_of(n.input[1], "MatMul B").astype(np.float64)
        if B.ndim != 2:
            self.fail(f"MatMul by a {B.ndim}-D constant is not supported")
        self._dense(n, x, B.T, np.zeros(B.shape[1]))

    def _dense(self, n, x: _Val, W: np.ndarray, bias: np.ndarray) -> None:
        t = self.as_layout(x, "plain")
        shape = self.tensors[t].shape
        if not shape or shape[-1] != W.shape[1]:
            self.fail(f"{n.op_type} of {W.shape[1]} inputs applied to shape {shape}")
        out = shape[:-1] + (W.shape[0],)
        w = self.tensor(W.shape, W, base=f"{self.node_name}:W")
        b = self.tensor(bias.shape, bias, base=f"{self.node_name}:b")
        self.set(n, _Val(self.node("dense", [t, w, b], out, activation="linear"), out))

    def op_BatchNormalization(self, n, a):
        x = self.get(n.input[0])
        s, bb, m, var = (self.const_of(i, "BatchNormalization parameter").astype(np.float64)
                         for i in n.input[1:5])
        scale = s / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        shift = bb - m * scale
        t = self.as_layout(x, "cl") if len(x.shape) >= 2 else x.ir
        layout = "cl" if len(x.shape) >= 2 else x.layout
        y = self.node("mul", [t, self.tensor(scale.shape, scale)], self.tensors[t].shape)
        y = self.node("add", [y, self.tensor(shift.shape, shift)], self.tensors[t].shape)
        self.set(n, _Val(y, x.shape, layout))

    # convolution and pooling
    def _window(self, n, a, x: _Val, kernel: tuple[int, ...]):
        spatial = x.shape[1:]
        rank = len(spatial)
        if rank not in (1, 2):
            self.fail(f"{n.op_type} on a {rank}-D image is not supported (supported: 1-D, 2-D)")
        strides = tuple(a.get("strides", [1] * rank))
        dil = tuple(a.get("dilations", [1] * rank))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if a.get("ceil_mode", 0):
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
                o = (s_ + p[i] + p[i + rank] - ((k - 1) * d + 1)) // st + 1
                out.append(o)
                pads.append(p[i])
        else:
            self.fail(f"auto_pad '{auto}' is not supported")
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

    def _pool(self, n, a, kind: str, glob: bool) -> None:
        x = self.get(n.input[0])
        spatial = x.shape[1:]
        if glob:
            rank, ks = len(spatial), tuple(spatial)
            out_sp, geo = (1,) * rank, dict(strides=(1, 1), dilations=(1, 1), pads=(0, 0))
        else:
            ks = tuple(a["kernel_shape"])
            if kind == "avg" and a.get("count_include_pad", 0) and any(a.get("pads", [])):
                self.fail("AveragePool with count_include_pad=1 and padding is not supported")
            if any(d != 1 for d in a.get("dilations", [1])):
                self.fail(f"{n.op_type} with dilations is not supported")
            rank, out_sp, geo = self._window(n, a, x, ks)
        geo.pop("dilations", None)
        t = self.as_layout(x, "cl")
        pad1 = (1,) * (2 - rank)
        y = self.node("pool", [t], out_sp + (x.shape[0],), kind=kind, rank=rank,
                      out_spatial=out_sp, kernel=pad1 + ks, **geo)
        self.set(n, _Val(y, (x.shape[0],) + out_sp, "cl"))

    def op_MaxPool(self, n, a):
        if len(n.output) > 1 and n.output[1]:
            self.fail("MaxPool with an Indices output is not supported")
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
        full = (1,) + x.shape
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
        if int(a.get("axis", 1)) != 1:
            self.fail("Flatten with axis != 1 is not supported")
        self._reshape_to(n, x, (int(np.prod(x.shape)),))

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
        if 0 in axes:
            self.fail("Unsqueeze before the batch dimension is not supported")
        self._reshape_to(n, x, tuple(out[1:]))

    def op_Transpose(self, n, a):
        x = self.get(n.input[0])
        rank = len(x.full)
        perm = list(a.get("perm", list(range(rank))[::-1]))
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
        self.set(n, _Val(self.node("transpose", [t], shape, perm=p), shape))

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
            t = self.node("transpose", [t], tuple(full[ax] for ax in order),
                          perm=[keep.index(ax) for ax in order])
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
        if axis == 0:
            self.fail("Concat along the batch dimension is not supported")
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
        pads = [int(p) for p in self.const_of(n.input[1], "Pad pads")]
        if len(n.input) > 2 and n.input[2]:
            cval = self.const_of(n.input[2], "Pad value")
            if np.any(cval != 0):
                self.fail("Pad with a non-zero value is not supported")
        if len(n.input) > 3 and n.input[3]:
            self.fail("Pad with axes is not supported")
        rank = len(x.shape) + 1
        if any(p < 0 for p in pads) or pads[0] or pads[rank]:
            self.fail("Pad of the batch dimension or negative pads is not supported")
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


def _attr(a):
    from onnx import helper
    return helper.get_attribute_value(a)


def load_onnx(path: Path) -> Graph:
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
    loader.opset = opset
    graph = loader.run(model)
    if invalid is not None:
        raise invalid
    return graph
