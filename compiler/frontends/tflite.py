"""TensorFlow Lite front-end: float32 models, and full-integer int8 models, into the IR.

The flatbuffer is read with the TFLite schema classes that TensorFlow ships (loaded on their
own from their file, without starting TensorFlow). TFLite is channels-last like the IR.

A full-integer model (int8 activations, int8 weights, int32 biases) becomes a graph of the
IR's integer ops (``q*``), described in :mod:`nnmpc.compiler.frontends.tflite_int8`.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np

from ..errors import CompileError
from ..ir import Graph, Node, Tensor
from .shapes import GivenShapes, InputShapes
from .tflite_int8 import Int8Recurrent

_FLOAT_OPS = ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
              "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "MEAN", "REDUCE_MAX", "ADD",
              "SUB", "MUL", "CONCATENATION", "SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6",
              "ELU", "LEAKY_RELU", "GELU", "EXP", "HARD_SWISH", "PAD", "TRANSPOSE", "DEQUANTIZE",
              "STRIDED_SLICE", "SLICE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "UNPACK",
              "SPLIT", "SPLIT_V", "PACK"]

_FUSED = {0: "linear", 1: "relu", 3: "relu6"}  # ActivationFunctionType NONE, RELU, RELU6
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8,
           7: np.int16}


def _schema():
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise CompileError("reading TFLite models needs the 'tensorflow-cpu' package "
                           "(for its TFLite schema)")
    path = Path(list(spec.submodule_search_locations)[0]) / "lite" / "python" / "schema_py_generated.py"
    mspec = importlib.util.spec_from_file_location("_nnmpc_tflite_schema", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


class _TfliteLoader:
    def __init__(self, path: Path, S, model, input_shapes: InputShapes = None) -> None:
        self.path, self.S, self.m = path, S, model
        self.sg = model.subgraphs[0]
        self.given = GivenShapes(input_shapes, str(path))
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.names: dict[int, str] = {}   # TFLite tensor index -> IR tensor
        self.lazy: dict[int, tuple] = {}  # outputs of UNPACK/SPLIT, sliced when first read
        self.node_name = ""
        self.op_names = {v: k for k, v in S.BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def fail(self, msg: str):
        raise CompileError(msg, file=str(self.path), layer=self.node_name)

    # tensors
    def t(self, i: int):
        return self.sg.tensors[i]

    def tname(self, i: int) -> str:
        n = self.t(i).name
        return n.decode() if isinstance(n, bytes) else str(n)

    def shape(self, i: int) -> tuple[int, ...]:
        t = self.t(i)
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        sig = t.shapeSignature
        if sig is not None and any(int(d) < 0 for d in list(sig)[1:]):
            self.fail(f"tensor '{self.tname(i)}' has a dynamic shape {[int(d) for d in sig]} "
                      "(-1 beyond the batch); a TFLite file sizes every tensor for one input "
                      "shape, fixed when the model is converted, so --input-shape cannot fix "
                      "it: convert the model with a fixed input shape (e.g. keras.Input((20, 3)) "
                      "or a tf.function input_signature of shape [1, 20, 3]), or compile the "
                      ".keras/.onnx model with --input-shape")
        return tuple(shape)

    def dtype(self, i: int):
        return _DTYPES.get(self.t(i).type)

    def data(self, i: int) -> np.ndarray | None:
        buf = self.m.buffers[self.t(i).buffer]
        if buf.data is None or len(buf.data) == 0:
            return None
        dt = self.dtype(i)
        if dt is None:
            self.fail(f"tensor '{self.tname(i)}' has an unsupported type {self.t(i).type}")
        return np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), dtype=dt).reshape(self.shape(i))

    def quant(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.t(i).quantization
        if q is None or q.scale is None:
            self.fail(f"tensor '{self.tname(i)}' has no quantisation parameters")
        return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64)

    def add_tensor(self, shape, data=None, base="t", dtype="float32") -> str:
        name = f"{base}#{len(self.tensors)}"
        if data is not None:
            data = np.ascontiguousarray(data, dtype=np.float32 if dtype == "float32" else data.dtype)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), dtype, data)
        return name

    def node(self, op: str, inputs: list[str], out_shape, dtype="float32", **attrs) -> str:
        out = self.add_tensor(out_shape, base=f"{self.node_name}:out", dtype=dtype)
        self.nodes.append(Node(op, inputs, [out], attrs, name=out, source=self.node_name))
        return out

    def input_shape(self, i: int) -> tuple[int, ...]:
        """Graph input i's shape without the batch, checked against any given shape."""
        n = len(self.sg.inputs)
        return self.given.fix(self.tname(i), self.batchless(self.shape(i)), n_inputs=n)

    def batchless(self, shape) -> tuple[int, ...]:
        if not shape or shape[0] != 1:
            self.fail(f"shape {list(shape)}: the first dimension must be the batch of 1")
        return tuple(shape[1:])

    def ir(self, i: int) -> str:
        """IR tensor for TFLite tensor i (constants are created on first use)."""
        if i in self.names:
            return self.names[i]
        if i in self.lazy:
            self.names[i] = self._cut(i)
            return self.names[i]
        d = self.data(i)
        if d is None:
            self.fail(f"tensor '{self.tname(i)}' is used before it is computed")
        if self.dtype(i) == np.float16:
            d = d.astype(np.float32)
        name = self.add_tensor(d.shape, d.astype(np.float32), base=self.tname(i))
        self.names[i] = name
        return name

    def const(self, i: int, what: str) -> np.ndarray:
        d = self.data(i)
        if d is None:
            self.fail(f"{what} must be a constant")
        return d

    def opts(self, op):
        return op.builtinOptions

    # conversion
    def run(self) -> Graph:
        S = self.S
        codes = self.m.operatorCodes
        ops = []
        for op in self.sg.operators:
            c = codes[op.opcodeIndex]
            ops.append((self.op_names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?"), op))
        self.given.check_names([self.tname(i) for i in self.sg.inputs])
        in_types = {self.dtype(i) for i in self.sg.inputs}
        is_int8 = any(self.dtype(op.inputs[1]) == np.int8 for name, op in ops
                      if name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")) or np.int8 in in_types
        if is_int8:
            return Int8Recurrent(self).run(ops)
        inputs = []
        for i in self.sg.inputs:
            if self.dtype(i) != np.float32:
                self.fail(f"input '{self.tname(i)}' of type {self.dtype(i)} is not supported")
            self.names[i] = self.add_tensor(self.input_shape(i), base=self.tname(i))
            inputs.append(self.names[i])
        fused, skip = self._decomposed(ops)
        for k, (opname, op) in enumerate(ops):
            self.node_name = self.tname(op.outputs[0]) if len(op.outputs) else f"op{k}"
            if k in skip:
                continue
            if k in fused:
                x, act = fused[k]
                xi = self.ir(x)
                self.names[op.outputs[0]] = self.node("activation", [xi], self.tensors[xi].shape,
                                                      activation=act)
                continue
            fn = getattr(self, "op_" + opname, None)
            if fn is None or opname not in _FLOAT_OPS:
                self.fail(f"op '{opname}' is not supported (supported: {', '.join(sorted(_FLOAT_OPS))})")
            out = fn(op)
            if out is not None:  # None: several outputs, cut when read (UNPACK, SPLIT)
                self.names[op.outputs[0]] = out
        self.node_name = ""
        outputs = []
        for i in self.sg.outputs:
            t = self.ir(i)
            if t in inputs or t in outputs:
                t = self.node("reshape", [t], self.tensors[t].shape)
            outputs.append(t)
        del S
        return Graph(name=self.path.stem, inputs=inputs, outputs=outputs, tensors=self.tensors,
                     nodes=self.nodes, source_file=str(self.path))

    def _decomposed(self, ops):
        """The converter's decompositions of softplus (EXP, ADD 1, LOG), softsign (ABS, ADD 1,
        DIV) and selu (GREATER 0, MUL, EXP, SUB 1, MUL, SELECT/SELECT_V2), found as patterns and
        compiled as the one activation: ``{last op: (input tensor, activation)}`` and the other
        ops of each pattern, to skip."""
        producer, readers = {}, {}
        for k, (_, op) in enumerate(ops):
            for o in op.outputs:
                producer[o] = k
            for i in op.inputs:
                readers.setdefault(i, []).append(k)
        outs = set(self.sg.outputs)

        def const(i):
            d = self.data(i) if i >= 0 else None
            return None if d is None or d.size != 1 else float(np.asarray(d, np.float64).reshape(-1)[0])

        def inner(t, k):  # t is produced by an op and read only by op k
            return t in producer and readers.get(t) == [k] and t not in outs

        def src(t, name):  # the op producing t, if it is `name`
            k = producer.get(t)
            return (k, ops[k][1]) if k is not None and ops[k][0] == name else (None, None)

        def plus_one(k, op):  # ADD(a, 1): a
            if ops[k][0] != "ADD" or self.fused(op) != "linear":
                return None
            a, b = op.inputs[:2]
            return a if const(b) == 1.0 else (b if const(a) == 1.0 else None)

        fused, skip = {}, set()
        for k, (name, op) in enumerate(ops):
            if name == "LOG":  # softplus: LOG(ADD(EXP(x), 1))
                ka, add = src(op.inputs[0], "ADD")
                e = plus_one(ka, add) if add is not None else None
                ke, exp = src(e, "EXP") if e is not None else (None, None)
                if exp is not None and inner(op.inputs[0], k) and inner(e, ka):
                    fused[k] = (exp.inputs[0], "softplus")
                    skip |= {ka, ke}
            elif name == "DIV" and self.fused(op) == "linear":  # softsign: DIV(x, ADD(ABS(x), 1))
                x, d = op.inputs[:2]
                ka, add = src(d, "ADD")
                a = plus_one(ka, add) if add is not None else None
                kb, ab = src(a, "ABS") if a is not None else (None, None)
                if ab is not None and ab.inputs[0] == x and inner(d, k) and inner(a, ka):
                    fused[k] = (x, "softsign")
                    skip |= {ka, kb}
            elif name in ("SELECT", "SELECT_V2"):  # selu
                c, t, f = op.inputs[:3]
                kg, gt = src(c, "GREATER")
                km1, m1 = src(t, "MUL")
                km2, m2 = src(f, "MUL")
                if gt is None or m1 is None or m2 is None or const(gt.inputs[1]) != 0.0:
                    continue
                x = gt.inputs[0]
                if m1.inputs[0] != x or self.fused(m1) != "linear" or self.fused(m2) != "linear":
                    continue
                ks, sub = src(m2.inputs[0], "SUB")
                if sub is None or const(sub.inputs[1]) != 1.0 or self.fused(sub) != "linear":
                    continue
                ke, exp = src(sub.inputs[0], "EXP")
                if exp is None or exp.inputs[0] != x:
                    continue
                scale, scale_alpha = const(m1.inputs[1]), const(m2.inputs[1])
                if scale is None or scale_alpha is None:
                    continue
                if not (abs(scale - 1.0507009873554805) < 1e-6
                        and abs(scale_alpha - 1.0507009873554805 * 1.6732632423543772) < 1e-6):
                    continue
                if all(inner(t_, k_) for t_, k_ in ((c, k), (t, k), (f, k), (m2.inputs[0], km2),
                                                    (sub.inputs[0], ks))):
                    fused[k] = (x, "selu")
                    skip |= {kg, km1, km2, ks, ke}
        return fused, skip

    def out_shape(self, op) -> tuple[int, ...]:
        shape = self.shape(op.outputs[0])
        if len(shape) > 1 and shape[0] == 1:
            return tuple(shape[1:])
        return tuple(shape)  # the converter squeezed the batch dimension away

    def fused(self, op, attr="fusedActivationFunction") -> str:
        o = self.opts(op)
        f = getattr(o, attr, 0) if o is not None else 0
        if f not in _FUSED:
            self.fail(f"fused activation {f} is not supported (supported: none, relu, relu6)")
        return _FUSED[f]

    def act_after(self, y: str, act: str) -> str:
        if act == "linear":
            return y
        return self.node("activation", [y], self.tensors[y].shape, activation=act)

    # float ops
    def op_FULLY_CONNECTED(self, op):
        x = self.ir(op.inputs[0])
        W = self.const(op.inputs[1], "FULLY_CONNECTED weights").astype(np.float32)
        b = (self.const(op.inputs[2], "FULLY_CONNECTED bias").astype(np.float32)
             if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(W.shape[0], np.float32))
        xs = self.tensors[x].shape
        if xs[-1] != W.shape[1]:
            x = self.node("reshape", [x], (self.tensors[x].size // W.shape[1], W.shape[1]))
        out = self.out_shape(op)
        w = self.add_tensor(W.shape, W, base=f"{self.node_name}:W")
        bb = self.add_tensor(b.shape, b, base=f"{self.node_name}:b")
        return self.node("dense", [x, w, bb], out, activation=self.fused(op))

    def _conv_geo(self, op, kh, kw, in_shape):
        o = self.opts(op)
        sh, sw = o.strideH, o.strideW
        dh, dw = getattr(o, "dilationHFactor", 1) or 1, getattr(o, "dilationWFactor", 1) or 1
        ih, iw = in_shape[0], in_shape[1]
        out = self.out_shape(op)
        oh, ow = out[0], out[1]
        if o.padding == 0:  # SAME
            ph = max((oh - 1) * sh + (kh - 1) * dh + 1 - ih, 0) // 2
            pw = max((ow - 1) * sw + (kw - 1) * dw + 1 - iw, 0) // 2
        else:
            ph = pw = 0
        return dict(rank=2, out_spatial=(oh, ow), strides=(sh, sw), dilations=(dh, dw),
                    pads=(ph, pw)), out

    def op_SPACE_TO_BATCH_ND(self, op):
        """The first half of TensorFlow's dilated convolution: remembered, not emitted."""
        block = self.const(op.inputs[1], "SPACE_TO_BATCH_ND block").astype(np.int64)
        pads = self.const(op.inputs[2], "SPACE_TO_BATCH_ND paddings").astype(np.int64)
        if block.shape != (2,) or pads.shape != (2, 2):
            self.fail("SPACE_TO_BATCH_ND other than a 2-D dilated convolution's is not supported")
        self.s2b = getattr(self, "s2b", {})
        self.s2b[op.outputs[0]] = (self.ir(op.inputs[0]), block, pads)
        return self.add_tensor((1,), base=f"{self.node_name}:space_to_batch")

    def _dilated(self, op, W, b, groups) -> str:
        """A conv on a SPACE_TO_BATCH_ND output: remembered until BATCH_TO_SPACE_ND."""
        x, block, pads = self.s2b[op.inputs[0]]
        o = self.opts(op)
        if o.padding != 1 or o.strideH != 1 or o.strideW != 1:
            self.fail("a SPACE_TO_BATCH_ND convolution must be VALID with stride 1")
        self.b2s = getattr(self, "b2s", {})
        self.b2s[op.outputs[0]] = (x, W, b, groups, self.fused(op), block, pads)
        return self.add_tensor((1,), base=f"{self.node_name}:batched")

    def op_BATCH_TO_SPACE_ND(self, op):
        if op.inputs[0] not in getattr(self, "b2s", {}):
            self.fail("BATCH_TO_SPACE_ND not after a SPACE_TO_BATCH_ND convolution")
        x, W, b, groups, act, block, pads = self.b2s[op.inputs[0]]
        crops = self.const(op.inputs[2], "BATCH_TO_SPACE_ND crops").astype(np.int64)
        out = self.out_shape(op)
        top, left = int(pads[0][0] - crops[0][0]), int(pads[1][0] - crops[1][0])
        w = self.add_tensor(W.shape, W, base=f"{self.node_name}:W")
        bb = self.add_tensor(b.shape, b, base=f"{self.node_name}:b")
        return self.node("conv", [x, w, bb], out, groups=groups, activation=act, rank=2,
                         out_spatial=out[:2], strides=(1, 1), dilations=tuple(int(v) for v in block),
                         pads=(top, left))

    def op_CONV_2D(self, op):
        if op.inputs[0] in getattr(self, "s2b", {}):
            W = self.const(op.inputs[1], "CONV_2D weights").astype(np.float32)
            b = (self.const(op.inputs[2], "bias").astype(np.float32)
                 if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(W.shape[0], np.float32))
            cin = self.tensors[self.s2b[op.inputs[0]][0]].shape[-1]
            return self._dilated(op, W, b, cin // W.shape[3])
        x = self.ir(op.inputs[0])
        W = self.const(op.inputs[1], "CONV_2D weights").astype(np.float32)  # (O, kh, kw, I/g)
        geo, out = self._conv_geo(op, W.shape[1], W.shape[2], self.tensors[x].shape)
        b = (self.const(op.inputs[2], "bias").astype(np.float32)
             if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(W.shape[0], np.float32))
        groups = self.tensors[x].shape[-1] // W.shape[3]
        w = self.add_tensor(W.shape, W, base=f"{self.node_name}:W")
        bb = self.add_tensor(b.shape, b, base=f"{self.node_name}:b")
        return self.node("conv", [x, w, bb], out, groups=groups, activation=self.fused(op), **geo)

    def op_DEPTHWISE_CONV_2D(self, op):
        Wd = self.const(op.inputs[1], "DEPTHWISE_CONV_2D weights").astype(np.float32)  # (1,kh,kw,C*M)
        W = np.moveaxis(Wd[0], -1, 0)[..., None]
        if op.inputs[0] in getattr(self, "s2b", {}):
            b = (self.const(op.inputs[2], "bias").astype(np.float32)
                 if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(W.shape[0], np.float32))
            return self._dilated(op, W, b, self.tensors[self.s2b[op.inputs[0]][0]].shape[-1])
        x = self.ir(op.inputs[0])
        geo, out = self._conv_geo(op, W.shape[1], W.shape[2], self.tensors[x].shape)
        b = (self.const(op.inputs[2], "bias").astype(np.float32)
             if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(W.shape[0], np.float32))
        w = self.add_tensor(W.shape, W, base=f"{self.node_name}:W")
        bb = self.add_tensor(b.shape, b, base=f"{self.node_name}:b")
        return self.node("conv", [x, w, bb], out, groups=self.tensors[x].shape[-1],
                         activation=self.fused(op), **geo)

    def _pool(self, op, kind):
        x = self.ir(op.inputs[0])
        o = self.opts(op)
        geo, out = self._conv_geo(op, o.filterHeight, o.filterWidth, self.tensors[x].shape)
        geo.pop("dilations")
        y = self.node("pool", [x], out, kind=kind, kernel=(o.filterHeight, o.filterWidth), **geo)
        return self.act_after(y, self.fused(op))

    def op_MAX_POOL_2D(self, op):
        return self._pool(op, "max")

    def op_AVERAGE_POOL_2D(self, op):
        return self._pool(op, "avg")

    def _reduce(self, op, kind):
        x = self.ir(op.inputs[0])
        shape = self.tensors[x].shape
        axes = sorted(int(a) % (len(shape) + 1) for a in np.atleast_1d(self.const(op.inputs[1], "axes")))
        if len(shape) == 2 and axes == [1]:
            y = self.node("pool", [x], (shape[1],), kind=kind, rank=1, out_spatial=(1,),
                          kernel=(1, shape[0]), strides=(1, 1), pads=(0, 0))
            out = self.out_shape(op)
            return self.node("reshape", [y], out) if out != (shape[1],) else y
        if len(shape) != 3 or axes != [1, 2]:
            self.fail(f"reduction over axes {axes} of shape {shape} is not supported "
                      "(supported: the spatial axes of an image, i.e. global pooling)")
        y = self.node("pool", [x], (1, 1, shape[2]), kind=kind, rank=2, out_spatial=(1, 1),
                      kernel=shape[:2], strides=(1, 1), pads=(0, 0))
        out = self.out_shape(op)
        return self.node("reshape", [y], out) if out != (1, 1, shape[2]) else y

    def op_MEAN(self, op):
        return self._reduce(op, "avg")

    def op_REDUCE_MAX(self, op):
        return self._reduce(op, "max")

    def _reshape(self, op):
        x = self.ir(op.inputs[0])
        out = self.out_shape(op)
        if int(np.prod(out)) != self.tensors[x].size:
            self.fail(f"cannot reshape {self.tensors[x].shape} to {out}")
        return self.node("reshape", [x], out)

    op_RESHAPE = op_SQUEEZE = op_EXPAND_DIMS = _reshape

    def op_DEQUANTIZE(self, op):
        d = self.data(op.inputs[0])
        if d is None or self.dtype(op.inputs[0]) != np.float16:
            self.fail("DEQUANTIZE of a non-constant or non-float16 tensor in a float model")
        return self.add_tensor(d.shape, d.astype(np.float32), base=self.node_name)

    def _binary(self, op, kind):
        a, b = self.ir(op.inputs[0]), self.ir(op.inputs[1])
        ta, tb = self.tensors[a], self.tensors[b]
        if ta.is_const and not tb.is_const:
            if kind == "sub":  # c - x = (-1) x + c (GRU cells' 1 - z)
                neg = self.add_tensor((1,), np.array([-1.0], np.float32), base=f"{self.node_name}:neg")
                b = self.node("mul", [b, neg], tb.shape)
                kind, tb = "add", self.tensors[b]
            a, b, ta, tb = b, a, tb, ta
        if tb.is_const:
            data = tb.data.reshape(-1)
            if ta.size % data.size:
                self.fail(f"constant of shape {tb.shape} does not broadcast to {ta.shape}")
            if tb.shape and tb.shape[0] == 1 and len(tb.shape) > len(ta.shape):
                pass
            b = self.add_tensor(data.shape, data, base=f"{self.node_name}:c")
        elif ta.size != tb.size:
            self.fail(f"{kind} of shapes {ta.shape} and {tb.shape} is not supported")
        y = self.node(kind, [a, b], self.out_shape(op))
        return self.act_after(y, self.fused(op))

    def op_ADD(self, op):
        return self._binary(op, "add")

    def op_SUB(self, op):
        return self._binary(op, "sub")

    def op_MUL(self, op):
        return self._binary(op, "mul")

    def op_CONCATENATION(self, op):
        ins = [self.ir(i) for i in op.inputs]
        out = self.out_shape(op)
        axis = int(self.opts(op).axis)
        axis = axis + len(out) + 1 if axis < 0 else axis
        if axis == 0:
            self.fail("CONCATENATION along the batch dimension is not supported")
        y = self.node("concat", ins, out, axis=axis - 1)
        return self.act_after(y, self.fused(op))

    def _unary(self, op, kind, **attrs):
        x = self.ir(op.inputs[0])
        return self.node("activation", [x], self.tensors[x].shape, activation=kind, **attrs)

    def op_SOFTMAX(self, op):
        if abs(self.opts(op).beta - 1.0) > 0:
            self.fail("SOFTMAX with beta != 1 is not supported")
        return self._unary(op, "softmax")

    def op_LOGISTIC(self, op):
        return self._unary(op, "sigmoid")

    def op_TANH(self, op):
        return self._unary(op, "tanh")

    def op_RELU(self, op):
        return self._unary(op, "relu")

    def op_RELU6(self, op):
        return self._unary(op, "relu6")

    def op_ELU(self, op):
        return self._unary(op, "elu", alpha=1.0)

    def op_EXP(self, op):
        return self._unary(op, "exponential")

    def op_LEAKY_RELU(self, op):
        return self._unary(op, "leaky_relu", alpha=float(self.opts(op).alpha))

    def op_GELU(self, op):
        o = self.opts(op)
        return self._unary(op, "gelu_tanh" if (o is not None and o.approximate) else "gelu")

    def op_HARD_SWISH(self, op):
        x = self.ir(op.inputs[0])
        s = self.node("activation", [x], self.tensors[x].shape, activation="hard_sigmoid",
                      alpha=1.0 / 6.0, beta=0.5)
        return self.node("mul", [x, s], self.tensors[x].shape)

    def op_PAD(self, op):
        x = self.ir(op.inputs[0])
        pads = self.const(op.inputs[1], "PAD paddings").astype(np.int64)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            self.fail("PAD with a value is not supported")
        if pads[0].any():
            self.fail("PAD of the batch dimension is not supported")
        shape = list(self.tensors[x].shape)
        for ax in range(len(shape)):
            before, after = (int(v) for v in pads[ax + 1])
            if not before and not after:
                continue
            parts = []
            for k in (before, after):
                zs = list(shape)
                zs[ax] = k
                parts.append(self.add_tensor(zs, np.zeros(zs), base="pad") if k else None)
            shape[ax] += before + after
            x = self.node("concat", [p for p in (parts[0], x, parts[1]) if p is not None],
                          tuple(shape), axis=ax)
        return x

    def _slices(self, op, begin, end) -> str:
        """Slices along every axis whose range is not the whole axis (stride 1)."""
        x = self.ir(op.inputs[0])
        full = tuple(self.shape(op.inputs[0]))
        if len(full) != len(begin) or full[0] != 1:
            self.fail(f"slice of shape {list(full)} with {len(begin)} bounds is not supported")
        if self.tensors[x].shape != full[1:]:
            x = self.node("reshape", [x], full[1:])
        for ax in range(1, len(full)):
            b0, e0 = int(begin[ax]), int(end[ax])
            b0, e0 = b0 + full[ax] if b0 < 0 else b0, e0 + full[ax] if e0 < 0 else e0
            b0, e0 = max(0, min(b0, full[ax])), max(0, min(e0, full[ax]))
            if e0 <= b0:
                self.fail(f"empty slice [{b0}:{e0}] of axis {ax}")
            if (b0, e0) != (0, full[ax]):
                shape = list(self.tensors[x].shape)
                shape[ax - 1] = e0 - b0
                x = self.node("slice", [x], tuple(shape), axis=ax - 1, start=b0, stop=e0)
        out = self.out_shape(op)
        if self.tensors[x].shape != out:
            x = self.node("reshape", [x], out)
        return x

    def op_STRIDED_SLICE(self, op):
        o = self.opts(op)
        begin = self.const(op.inputs[1], "STRIDED_SLICE begin").astype(np.int64).copy()
        end = self.const(op.inputs[2], "STRIDED_SLICE end").astype(np.int64).copy()
        strides = self.const(op.inputs[3], "STRIDED_SLICE strides")
        if np.any(strides != 1) or o.ellipsisMask or o.newAxisMask or getattr(o, "offset", False):
            self.fail("STRIDED_SLICE with strides other than 1, ellipsis or new axes is not "
                      "supported")
        full = tuple(self.shape(op.inputs[0]))
        if len(full) != len(begin):
            self.fail(f"STRIDED_SLICE of shape {list(full)} with {len(begin)} bounds is not supported")
        for ax in range(len(begin)):
            if o.beginMask >> ax & 1:
                begin[ax] = 0
            if o.endMask >> ax & 1:
                end[ax] = full[ax]
            if o.shrinkAxisMask >> ax & 1:
                end[ax] = begin[ax] + 1 if begin[ax] != -1 else full[ax]
        if begin[0] != 0 or (end[0] not in (1, full[0]) and not o.endMask & 1):
            self.fail("STRIDED_SLICE of the batch dimension is not supported")
        return self._slices(op, begin, end)

    def op_SLICE(self, op):
        begin = self.const(op.inputs[1], "SLICE begin").astype(np.int64)
        size = self.const(op.inputs[2], "SLICE size").astype(np.int64)
        full = tuple(self.shape(op.inputs[0]))
        end = np.array([full[i] if size[i] == -1 else begin[i] + size[i] for i in range(len(size))])
        if begin[0] != 0:
            self.fail("SLICE of the batch dimension is not supported")
        return self._slices(op, begin, end)

    # ops of unrolled recurrent layers (batch-1 exports: the time axis may lead)
    def full(self, i: int) -> str:
        """The IR tensor of TFLite tensor i reshaped (free) to its full TFLite shape."""
        x, fs = self.ir(i), tuple(self.shape(i))
        if self.tensors[x].shape != fs:
            x = self.node("reshape", [x], fs)
        return x

    def _axis(self, axis: int, rank: int) -> int:
        axis = int(axis) + rank if int(axis) < 0 else int(axis)
        if not 0 <= axis < rank:
            self.fail(f"axis {axis} out of range for rank {rank}")
        return axis

    def _pieces(self, op, x_index: int, axis: int, sizes) -> list[str]:
        """Slices of TFLite tensor x_index along full axis ``axis``, one per output of op."""
        fs = tuple(self.shape(x_index))
        if sum(sizes) != fs[axis] or len(sizes) != len(op.outputs):
            self.fail(f"split of axis {axis} of shape {list(fs)} into {list(sizes)} does not add up")
        x, start = self.full(x_index), 0
        for o, n in zip(op.outputs, sizes):
            # Each piece is cut where it is first read (as the .keras front-end does): fewer
            # live buffers than cutting every time step up front.
            self.lazy[o] = (x, fs, axis, start, n)
            start += n
        return None

    def _cut(self, i: int) -> str:
        x, fs, axis, start, n = self.lazy.pop(i)
        saved, self.node_name = self.node_name, self.tname(i)
        shape = list(fs)
        shape[axis] = n
        y = x if n == fs[axis] else self.node("slice", [x], tuple(shape), axis=axis,
                                               start=start, stop=start + n)
        out = self.out_shape_of(i)
        y = y if self.tensors[y].shape == out else self.node("reshape", [y], out)
        self.node_name = saved
        return y

    def out_shape_of(self, i: int) -> tuple[int, ...]:
        shape = tuple(self.shape(i))
        return shape[1:] if len(shape) > 1 and shape[0] == 1 else shape

    def op_UNPACK(self, op):
        fs = tuple(self.shape(op.inputs[0]))
        axis = self._axis(self.opts(op).axis, len(fs))
        return self._pieces(op, op.inputs[0], axis, [1] * fs[axis])

    def op_SPLIT(self, op):
        fs = tuple(self.shape(op.inputs[1]))
        axis = self._axis(np.atleast_1d(self.const(op.inputs[0], "SPLIT axis"))[0], len(fs))
        n = int(self.opts(op).numSplits)
        if n < 1 or fs[axis] % n:
            self.fail(f"SPLIT of axis {axis} of shape {list(fs)} into {n} equal parts")
        return self._pieces(op, op.inputs[1], axis, [fs[axis] // n] * n)

    def op_SPLIT_V(self, op):
        fs = tuple(self.shape(op.inputs[0]))
        sizes = [int(v) for v in self.const(op.inputs[1], "SPLIT_V sizes")]
        axis = self._axis(np.atleast_1d(self.const(op.inputs[2], "SPLIT_V axis"))[0], len(fs))
        if sizes.count(-1) == 1:
            sizes[sizes.index(-1)] = fs[axis] - sum(v for v in sizes if v != -1)
        if any(v < 1 for v in sizes):
            self.fail(f"SPLIT_V sizes {sizes} are not supported")
        return self._pieces(op, op.inputs[0], axis, sizes)

    def op_PACK(self, op):
        fs = tuple(self.shape(op.outputs[0]))
        axis = self._axis(self.opts(op).axis, len(fs))
        ins = []
        for i in op.inputs:
            shape = list(fs)
            shape[axis] = 1
            x = self.ir(i)
            ins.append(x if self.tensors[x].shape == tuple(shape)
                       else self.node("reshape", [x], tuple(shape)))
        y = self.node("concat", ins, fs, axis=axis)
        out = self.out_shape(op)
        return y if self.tensors[y].shape == out else self.node("reshape", [y], out)

    def op_TRANSPOSE(self, op):
        x = self.ir(op.inputs[0])
        perm = [int(p) for p in self.const(op.inputs[1], "TRANSPOSE perm")]
        full = (1,) + self.tensors[x].shape
        if len(full) != len(perm):
            self.fail(f"TRANSPOSE perm {perm} does not match shape {list(full)}")
        # Axes of size 1 (the batch among them) can move freely: transpose the others.
        keep = [a for a in range(len(full)) if full[a] != 1]
        order = [a for a in perm if full[a] != 1]
        out = self.out_shape(op)
        if order == keep:
            return self.node("reshape", [x], out)
        reduced = tuple(full[a] for a in keep)
        if reduced != self.tensors[x].shape:
            x = self.node("reshape", [x], reduced)
        y = self.node("transpose", [x], tuple(full[a] for a in order),
                      perm=[keep.index(a) for a in order])
        return y if self.tensors[y].shape == out else self.node("reshape", [y], out)


def load_tflite(path: Path, input_shapes: InputShapes = None) -> Graph:
    """Read a TFLite file. Its shapes are fixed at conversion: ``input_shapes`` may only agree
    with them."""
    S = _schema()
    data = path.read_bytes()
    try:
        model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
        if not model.subgraphs or model.subgraphs[0].tensors is None:
            raise ValueError("no subgraph")
    except Exception as e:
        if isinstance(e, (struct.error, IndexError)):
            why = f"its tables run past the end of the file's {len(data)} bytes"
        else:
            why = f"{type(e).__name__}: {str(e).strip() or 'no detail'}"
        raise CompileError(f"the TFLite flatbuffer cannot be read ({why}); the file is truncated "
                           "or corrupt", file=str(path)) from None
    if len(model.subgraphs) > 1:
        raise CompileError(f"{len(model.subgraphs)} subgraphs (control flow such as a recurrent "
                           "layer's While loop) are not supported; export recurrent models as "
                           ".keras", file=str(path))
    return _TfliteLoader(path, S, model, input_shapes).run()
