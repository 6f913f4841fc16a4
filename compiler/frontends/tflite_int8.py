"""Full-integer (int8) TFLite models into the IR: TFLite's quantisation scheme, bit for bit.

The TFLite front-end hands a full-integer model to :class:`Int8Builder`, which converts it into
IR nodes of the integer ops:

* ``qdense`` / ``qconv``: ``inputs = [x, W (int8), b (int32)]``; attributes ``in_zp``,
  ``out_zp``, ``act_min``, ``act_max``, ``mult`` and ``shift`` (one fixed-point multiplier per
  output channel, computed here exactly as TFLite's ``QuantizeMultiplier``); ``qconv`` also
  carries the window geometry of ``conv``. The TFLite interpreter's reference kernels round a
  fully-connected accumulator once and a convolution's, a product's or a sum's twice
  (gemmlowp), so the C kernels are told which, per op.
* ``qpool``: ``kind`` max/avg with the activation range.
* ``qadd``: TFLite's int8 addition (inputs rescaled with ``left_shift = 20``).
* ``qlut``: ``inputs = [x, table]``, a 256-entry table of an element-wise function (LOGISTIC,
  TANH), filled the way TFLite fills its own lookup table.
* ``qsoftmax``: ``inputs = [x]``, softmax over the last axis in the interpreter's reference
  integer arithmetic (output scale 1/256, zero point -128); attributes ``mult``,
  ``left_shift``, ``diff_min`` (see :func:`softmax_params`).
* ``qpad``: ``inputs = [x]``, constant padding (PAD with the zero point, PADV2 with its
  constant); attributes ``pads`` (``(before, after)`` per axis of ``x``) and ``value``.
* TRANSPOSE is the IR's ``transpose`` (and ``reshape``) on int8 values: data movement only.

Several inputs (each quantised its own way) are read in the model's (the subgraph's) order,
concatenated, as the float path reads them, and several outputs are written the same way;
``Graph.int8["inputs"]`` and ``Graph.int8["outputs"]`` list each one's name, shape, scale and
zero point for the header.

The back-end's :func:`nnmpc.compiler.backend.int8.lower_int8` then writes ``NAME_predict_int8`` on raw int8 and ``NAME_predict`` on float
with quantisation at the edges. No float arithmetic is used between the edges.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node, Tensor

#: TFLite int8 ops the builder converts.
_INT8_OPS = ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
             "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "ADD", "MUL",
             "CONCATENATION", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE", "SUB", "UNPACK",
             "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SLICE", "MEAN", "SOFTMAX", "TRANSPOSE", "PAD",
             "PADV2"]


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: real = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(_round_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return q_fixed, shift


def softmax_params(in_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """The interpreter's reference int8 softmax set-up (``SoftmaxPrepare``, kReference):
    ``PreprocessSoftmaxScaling(beta, s_in, 5)`` gives the multiplier of the input differences
    into Q5.26, ``min(beta s_in 2^26, 2^31 - 1)`` as ``(mult, left_shift)`` (left_shift >= 0),
    and ``diff_min = -floor(31 2^26 / 2^left_shift)`` (``CalculateInputRadius(5, shift)``)."""
    real = min(float(beta) * float(np.float32(in_scale)) * float(1 << 26), float((1 << 31) - 1))
    mult, shift = quantize_multiplier(real)
    radius = math.floor(31.0 * float(1 << 26) / float(2 ** shift)) if shift >= 0 else None
    return mult, shift, (-radius if radius is not None else None)


def _round_away(v):
    """Round half away from zero (std::round)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _act_range(act: str, scale: float, zp: int) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for int8."""
    q = lambda f: zp + int(_round_away(np.float32(f) / np.float32(scale)))  # noqa: E731
    lo, hi = -128, 127
    if act == "relu":
        lo = max(lo, q(0.0))
    elif act == "relu6":
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    return lo, hi


def lut(fn, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """TFLite ``LUTPopulate<int8_t>`` in float32: table[v + 128] for v in [-128, 127]."""
    vals = np.arange(-128, 128, dtype=np.int32)
    deq = np.float32(in_scale) * (vals - in_zp).astype(np.float32)
    transformed = np.asarray(fn(deq), dtype=np.float32)
    inv = np.float32(1.0) / np.float32(out_scale)
    rescaled = _round_away((transformed * inv).astype(np.float32))
    return np.clip(rescaled.astype(np.int64) + out_zp, -128, 127).astype(np.int8)


def _libm_float_fns():
    """The C library's float ``tanhf`` and ``expf``: the TFLite interpreter fills its int8 tables
    with ``std::tanh(float)`` and ``1.0f / (1.0f + std::exp(-x))``, so using the same functions
    makes the tables (and so the outputs) bit-exact with it, even where the C library is an ulp
    away from the correctly rounded value (a table entry on a rounding tie then differs by one).
    Falls back to correctly rounded float64 maths where no C library can be loaded."""
    import ctypes
    import ctypes.util

    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        fns = []
        for name in ("tanhf", "expf"):
            f = getattr(libm, name)
            f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
            fns.append(f)
    except (OSError, AttributeError):
        return np.tanh, lambda x: 1.0 / (1.0 + np.exp(-x))
    tanhf, expf = fns
    one = np.float32(1.0)

    def tanh(x):
        return np.array([tanhf(float(v)) for v in np.asarray(x, np.float32)], np.float32)

    def logistic(x):
        e = np.array([expf(float(-v)) for v in np.asarray(x, np.float32)], np.float32)
        return one / (one + e)

    return tanh, logistic


_TANH, _LOGISTIC = _libm_float_fns()
_LUT_FN = {"LOGISTIC": _LOGISTIC, "TANH": _TANH}


class Int8Builder:
    """Converts the operators of a full-integer TFLite model (see the module docstring)."""

    def __init__(self, loader) -> None:
        self.L = loader
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.names: dict[int, str] = {}
        self.qp: dict[str, tuple[float, int]] = {}

    def fail(self, msg: str):
        self.L.fail(msg)

    def add(self, shape, data=None, base="t", dtype="int8") -> str:
        name = f"{base}#{len(self.tensors)}"
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), dtype, data)
        return name

    def node(self, op: str, inputs: list[str], out_idx: int, **attrs) -> str:
        shape = self.L.out_shape_of(out_idx)
        out = self.add(shape, base=f"{self.L.node_name}:out")
        self.nodes.append(Node(op, inputs, [out], attrs, name=out, source=self.L.node_name))
        self.qp[out] = self.q1(out_idx)
        self.names[out_idx] = out
        return out

    def q1(self, i: int) -> tuple[float, int]:
        s, z = self.L.quant(i)
        if len(s) != 1:
            self.fail(f"tensor '{self.L.tname(i)}' has per-channel activation quantisation")
        return float(s[0]), int(z[0])

    def x(self, i: int) -> str:
        if i in self.names:
            return self.names[i]
        d = self.L.data(i)
        if d is None or self.L.dtype(i) != np.int8:
            self.fail(f"tensor '{self.L.tname(i)}' is used before it is computed")
        name = self.add(d.shape if d.ndim else (1,), np.ascontiguousarray(d.reshape(-1) if d.ndim <= 1 else d),
                        base=self.L.tname(i))
        self.qp[name] = self.q1(i)
        self.names[i] = name
        return name

    def run(self, ops) -> Graph:
        L = self.L
        L.out_shape_of = lambda i: (tuple(L.shape(i)[1:]) if len(L.shape(i)) > 1 and L.shape(i)[0] == 1
                                    else tuple(L.shape(i)))
        in_of, float_in = {}, {}  # subgraph input -> IR input (int8, or its QUANTIZE's output)
        for i in L.sg.inputs:
            dt = L.dtype(i)
            if dt == np.int8:
                t = self.add(L.input_shape(i), base=L.tname(i))
                self.names[i] = t
                self.qp[t] = self.q1(i)
                in_of[i] = t
            elif dt == np.float32:
                L.input_shape(i)  # a given shape must agree with the file's
                float_in[i] = None
            else:
                L.node_name = L.tname(i)
                self.fail(f"input type {dt} is not supported (supported: int8, float32 + QUANTIZE)")
        for k, (opname, op) in enumerate(ops):
            L.node_name = L.tname(op.outputs[0]) if len(op.outputs) else f"op{k}"
            if opname == "QUANTIZE" and op.inputs[0] in float_in:
                if op.inputs[0] in in_of:
                    if self.qp[in_of[op.inputs[0]]] != self.q1(op.outputs[0]):
                        self.fail(f"float input '{L.tname(op.inputs[0])}' is quantised twice, "
                                  "with different scales or zero points")
                    self.names[op.outputs[0]] = in_of[op.inputs[0]]
                    continue
                t = self.add(L.out_shape_of(op.outputs[0]), base=L.tname(op.outputs[0]))
                self.names[op.outputs[0]] = t
                self.qp[t] = self.q1(op.outputs[0])
                in_of[op.inputs[0]] = t
                continue
            if opname == "DEQUANTIZE" and op.outputs[0] in L.sg.outputs:
                self.names[op.outputs[0]] = self.x(op.inputs[0])
                continue
            fn = getattr(self, "op_" + opname, None)
            if fn is None:
                self.fail(f"int8 op '{opname}' is not supported "
                          f"(supported: {', '.join(sorted(_INT8_OPS))})")
            fn(op)
        L.node_name = ""
        for i in L.sg.inputs:
            if i not in in_of:
                L.node_name = L.tname(i)
                self.fail(f"float input '{L.tname(i)}' is not quantised (QUANTIZE) in the model")
        L.node_name = ""
        in_index = list(L.sg.inputs)
        inputs = [in_of[i] for i in in_index]
        outputs = []
        for i in L.sg.outputs:
            L.node_name = L.tname(i)
            t = self.names.get(i) or self.fail(f"output '{L.tname(i)}' is not computed")
            if self.tensors[t].is_const:
                self.fail("an output that is a constant is not supported")
            if t in inputs or t in outputs:
                # an input given back, or one tensor as two outputs (an int8 output and its
                # DEQUANTIZE): a copy of its int8 values, quantised alike
                out = self.add(self.tensors[t].shape, base=f"{L.tname(i)}:copy")
                self.nodes.append(Node("reshape", [t], [out], {}, name=out, source=L.tname(i)))
                self.qp[out] = self.qp[t]
                t = out
            outputs.append(t)
        L.node_name = ""
        if not inputs:
            self.fail("an int8 model without an input is not supported")
        (si, zi), (so, zo) = self.qp[inputs[0]], self.qp[outputs[0]]

        def edge(index, tensors):
            return [{"name": L.tname(i), "tensor": t,
                     "shape": self.tensors[t].shape, "size": self.tensors[t].size,
                     "scale": self.qp[t][0], "zp": self.qp[t][1]}
                    for i, t in zip(index, tensors)]
        return Graph(name=L.path.stem, inputs=inputs, outputs=outputs, tensors=self.tensors,
                     nodes=self.nodes, source_file=str(L.path),
                     int8={"in_scale": si, "in_zp": zi, "out_scale": so, "out_zp": zo,
                           "inputs": edge(in_index, inputs),
                           "outputs": edge(list(L.sg.outputs), outputs)})

    # ops
    def _weights(self, op, what: str):
        L = self.L
        W = L.data(op.inputs[1])
        if W is None or L.dtype(op.inputs[1]) != np.int8:
            self.fail(f"{what} weights must be constant int8")
        ws, wz = L.quant(op.inputs[1])
        if np.any(wz != 0):
            self.fail(f"{what} weights with non-zero zero points are not supported")
        b = None
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            b = L.data(op.inputs[2])
            if b is None or L.dtype(op.inputs[2]) != np.int32:
                self.fail(f"{what} bias must be constant int32")
        return W, ws, b

    def _requant(self, op, ws: np.ndarray, n_out: int, per_channel_formula: bool):
        si, zi = self.q1(op.inputs[0])
        so, zo = self.q1(op.outputs[0])
        mult, shift = [], []
        for c in range(n_out):
            s_w = ws[c] if len(ws) > 1 else ws[0]
            if per_channel_formula:
                real = float(np.float32(si)) * float(np.float32(s_w)) / float(np.float32(so))
            else:  # GetQuantizedConvolutionMultipler: the product in float
                real = float(np.float32(si) * np.float32(s_w)) / float(np.float32(so))
            m, s = quantize_multiplier(real)
            mult.append(m)
            shift.append(s)
        lo, hi = _act_range(self.L.fused(op), so, zo)
        return dict(in_zp=zi, out_zp=zo, act_min=lo, act_max=hi, mult=tuple(mult),
                    shift=tuple(shift))

    def _bias(self, b, n: int) -> str:
        data = np.zeros(n, np.int32) if b is None else np.asarray(b, np.int32).reshape(n)
        return self.add((n,), data, base=f"{self.L.node_name}:b", dtype="int32")

    def op_FULLY_CONNECTED(self, op):
        x = self.x(op.inputs[0])
        W, ws, b = self._weights(op, "FULLY_CONNECTED")
        n_out, n_in = W.shape
        if self.tensors[x].size % n_in:
            self.fail(f"FULLY_CONNECTED of {n_in} inputs on shape {self.tensors[x].shape}")
        q = self._requant(op, ws, n_out, len(ws) > 1)
        w = self.add(W.shape, np.ascontiguousarray(W), base=f"{self.L.node_name}:W")
        self.node("qdense", [x, w, self._bias(b, n_out)], op.outputs[0],
                  rows=self.tensors[x].size // n_in, **q)

    def _conv(self, op, W, ws, b, groups):
        x = self.x(op.inputs[0])
        geo, out = self.L._conv_geo(op, W.shape[1], W.shape[2], self.tensors[x].shape)
        q = self._requant(op, ws, W.shape[0], True)
        w = self.add(W.shape, np.ascontiguousarray(W), base=f"{self.L.node_name}:W")
        self.node("qconv", [x, w, self._bias(b, W.shape[0])], op.outputs[0], groups=groups,
                  **geo, **q)

    def op_CONV_2D(self, op):
        W, ws, b = self._weights(op, "CONV_2D")
        x = self.x(op.inputs[0])
        self._conv(op, W, ws, b, self.tensors[x].shape[-1] // W.shape[3])

    def op_DEPTHWISE_CONV_2D(self, op):
        Wd, ws, b = self._weights(op, "DEPTHWISE_CONV_2D")
        W = np.moveaxis(Wd[0], -1, 0)[..., None]
        x = self.x(op.inputs[0])
        self._conv(op, W, ws, b, self.tensors[x].shape[-1])

    def _pool(self, op, kind):
        x = self.x(op.inputs[0])
        if self.q1(op.inputs[0]) != self.q1(op.outputs[0]):
            self.fail("int8 pooling with different input and output quantisation")
        o = self.L.opts(op)
        geo, _ = self.L._conv_geo(op, o.filterHeight, o.filterWidth, self.tensors[x].shape)
        geo.pop("dilations")
        so, zo = self.q1(op.outputs[0])
        lo, hi = _act_range(self.L.fused(op), so, zo)
        self.node("qpool", [x], op.outputs[0], kind=kind, kernel=(o.filterHeight, o.filterWidth),
                  act_min=lo, act_max=hi, **geo)

    def op_MAX_POOL_2D(self, op):
        self._pool(op, "max")

    def op_AVERAGE_POOL_2D(self, op):
        self._pool(op, "avg")

    def _reshape(self, op):
        x = self.x(op.inputs[0])
        if self.q1(op.inputs[0]) != self.q1(op.outputs[0]):
            self.fail("int8 reshape that changes the quantisation is not supported")
        self.node("reshape", [x], op.outputs[0])

    op_RESHAPE = op_SQUEEZE = op_EXPAND_DIMS = _reshape

    def op_ADD(self, op):
        a, b = self.x(op.inputs[0]), self.x(op.inputs[1])
        (sa, za), (sb, zb) = self.q1(op.inputs[0]), self.q1(op.inputs[1])
        if self.tensors[a].is_const and not self.tensors[b].is_const:
            a, b, sa, za, sb, zb = b, a, sb, zb, sa, za
        if self.tensors[a].size % self.tensors[b].size:
            self.fail("int8 ADD with a broadcast other than a trailing constant")
        so, zo = self.q1(op.outputs[0])
        left = 20
        twice = 2.0 * float(max(np.float32(sa), np.float32(sb)))
        ma, sha = quantize_multiplier(float(np.float32(sa)) / twice)
        mb, shb = quantize_multiplier(float(np.float32(sb)) / twice)
        mo, sho = quantize_multiplier(twice / float(np.float32((1 << left) * np.float32(so))))
        lo, hi = _act_range(self.L.fused(op), so, zo)
        self.node("qadd", [a, b], op.outputs[0], a_offset=-za, b_offset=-zb, out_zp=zo,
                  a_mult=ma, b_mult=mb, out_mult=mo, a_shift=sha, b_shift=shb, out_shift=sho,
                  left_shift=left, act_min=lo, act_max=hi)

    def op_MUL(self, op):
        a, b = self.x(op.inputs[0]), self.x(op.inputs[1])
        (sa, za), (sb, zb) = self.q1(op.inputs[0]), self.q1(op.inputs[1])
        if self.tensors[a].is_const and not self.tensors[b].is_const:
            a, b, sa, za, sb, zb = b, a, sb, zb, sa, za
        if self.tensors[a].size % self.tensors[b].size:
            self.fail("int8 MUL with a broadcast other than a trailing constant")
        so, zo = self.q1(op.outputs[0])
        m, sh = quantize_multiplier(float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(so)))
        lo, hi = _act_range(self.L.fused(op), so, zo)
        self.node("qmul", [a, b], op.outputs[0], a_offset=-za, b_offset=-zb, out_zp=zo,
                  mult=m, shift=sh, act_min=lo, act_max=hi)

    def op_CONCATENATION(self, op):
        ins = [self.x(i) for i in op.inputs]
        qo = self.q1(op.outputs[0])
        if any(self.q1(i) != qo for i in op.inputs) or self.L.fused(op) != "linear":
            self.fail("int8 CONCATENATION of inputs quantised unlike its output is not supported")
        out = self.L.out_shape_of(op.outputs[0])
        axis = int(self.L.opts(op).axis)
        axis = axis + len(out) + 1 if axis < 0 else axis
        if axis == 0:
            self.fail("CONCATENATION along the batch dimension is not supported")
        self.node("qconcat", ins, op.outputs[0], axis=axis - 1)

    def _lut(self, op, kind):
        x = self.x(op.inputs[0])
        (si, zi), (so, zo) = self.q1(op.inputs[0]), self.q1(op.outputs[0])
        table = lut(_LUT_FN[kind], si, zi, so, zo)
        t = self.add((256,), table, base=f"{self.L.node_name}:table")
        self.node("qlut", [x, t], op.outputs[0])

    def op_LOGISTIC(self, op):
        self._lut(op, "LOGISTIC")

    def op_TANH(self, op):
        self._lut(op, "TANH")

    def op_SOFTMAX(self, op):
        x = self.x(op.inputs[0])
        (si, _), (so, zo) = self.q1(op.inputs[0]), self.q1(op.outputs[0])
        beta = float(self.L.opts(op).beta) if self.L.opts(op) is not None else 1.0
        if zo != -128 or abs(so * 256.0 - 1.0) > 1e-3:
            self.fail(f"int8 SOFTMAX output '{self.L.tname(op.outputs[0])}' has scale {so:g} and "
                      f"zero point {zo} (supported: 1/256 and -128, as the converter writes)")
        mult, shift, diff_min = softmax_params(si, beta)
        if shift < 0 or mult == 0:
            self.fail(f"int8 SOFTMAX input '{self.L.tname(op.inputs[0])}' scale {si:g} x beta "
                      f"{beta:g} is too small (the interpreter needs scale x beta x 2^26 > 1)")
        shape = self.tensors[x].shape
        self.node("qsoftmax", [x], op.outputs[0], mult=mult, left_shift=shift,
                  diff_min=diff_min, depth=int(shape[-1]) if shape else 1)

    def _moved(self, op, what: str) -> str:
        """The input of a data-movement op, which must be quantised like its output."""
        x = self.x(op.inputs[0])
        if self.q1(op.inputs[0]) != self.q1(op.outputs[0]):
            self.fail(f"int8 {what} whose output '{self.L.tname(op.outputs[0])}' is quantised "
                      "unlike its input is not supported")
        return x

    def _shaped(self, op: str, inputs: list[str], shape, qp, **attrs) -> str:
        out = self.add(shape, base=f"{self.L.node_name}:{op}")
        self.nodes.append(Node(op, inputs, [out], attrs, name=out, source=self.L.node_name))
        self.qp[out] = qp
        return out

    def op_TRANSPOSE(self, op):
        L = self.L
        x = self._moved(op, "TRANSPOSE")
        perm = [int(p) for p in np.atleast_1d(L.const(op.inputs[1], "TRANSPOSE perm"))]
        full = (1,) + self.tensors[x].shape
        if sorted(perm) != list(range(len(full))):
            self.fail(f"TRANSPOSE attribute perm {perm} does not match input "
                      f"'{L.tname(op.inputs[0])}' of shape {list(full)}")
        # axes of size 1 (the batch among them) move freely: only the others are transposed
        keep = [a for a in range(len(full)) if full[a] != 1]
        order = [a for a in perm if full[a] != 1]
        qp = self.q1(op.outputs[0])
        if order == keep:
            self.node("reshape", [x], op.outputs[0])
            return
        if len(keep) > 4:
            self.fail(f"int8 TRANSPOSE of {len(keep)} axes of size > 1 (input "
                      f"'{L.tname(op.inputs[0])}', perm {perm}) is not supported (at most 4)")
        reduced = tuple(full[a] for a in keep)
        if reduced != self.tensors[x].shape:
            x = self._shaped("reshape", [x], reduced, qp)
        y = self._shaped("transpose", [x], tuple(full[a] for a in order), qp,
                         perm=[keep.index(a) for a in order])
        self.node("reshape", [y], op.outputs[0])

    def _pad(self, op, value: int):
        L = self.L
        x = self._moved(op, "PAD")
        pads = np.asarray(L.const(op.inputs[1], "PAD paddings"), np.int64).reshape(-1, 2)
        shape = self.tensors[x].shape
        if len(pads) != len(shape) + 1:
            self.fail(f"PAD attribute paddings of {len(pads)} axes for input "
                      f"'{L.tname(op.inputs[0])}' of shape {[1, *shape]}")
        if pads[0].any():
            self.fail(f"PAD of the batch dimension of '{L.tname(op.inputs[0])}' is not supported")
        if (pads < 0).any():
            self.fail(f"PAD attribute paddings {pads.tolist()} has negative values")
        pairs = [tuple(int(v) for v in p) for p in pads[1:]]
        if not any(b or a for b, a in pairs):
            self.node("reshape", [x], op.outputs[0])
            return
        if len(shape) > 4:
            self.fail(f"int8 PAD of a {len(shape)}-D input '{L.tname(op.inputs[0])}' is not "
                      "supported (at most 4 axes besides the batch)")
        self.node("qpad", [x], op.outputs[0], pads=tuple(pairs), value=int(value))

    def op_PAD(self, op):
        self._pad(op, self.q1(op.outputs[0])[1])

    def op_PADV2(self, op):
        L = self.L
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return self.op_PAD(op)
        c = L.data(op.inputs[2])
        if c is None or L.dtype(op.inputs[2]) != np.int8 or c.size != 1:
            self.fail(f"PADV2 constant_values '{L.tname(op.inputs[2])}' must be one constant "
                      "int8 value")
        if self.q1(op.inputs[2]) != self.q1(op.outputs[0]):
            self.fail(f"PADV2 constant_values '{L.tname(op.inputs[2])}' is quantised unlike the "
                      "output")
        self._pad(op, int(c.reshape(-1)[0]))


class Int8Recurrent(Int8Builder):
    """The TFLite front-end's int8 builder: :class:`Int8Builder` with the ops of unrolled
    recurrent layers.

    They are expressed in the integer IR ops the int8 back-end already lowers:

    * a slice (UNPACK, SPLIT, SPLIT_V, STRIDED_SLICE, SLICE; input and output quantised alike,
      as the converter makes them) is a ``qdense`` whose weights are a 0/1 selection matrix,
      zero bias and the multiplier 1 (``2^30``, shift 1): the accumulator is ``x - zp`` exactly
      and the single-rounding requantisation returns it unchanged, so the copy is exact;
    * SUB is TFLite's int8 ADD with the second input's multiplier negated (what the
      interpreter's own SUB does), as a ``qadd``;
    * the converter's float islands inside an int8 LSTM (DEQUANTIZE, a float SPLIT, QUANTIZE back
      to the same scale and zero point) are exact round trips: the SPLIT is done on the int8
      values.
    """

    def qp_of(self, i: int) -> tuple[float, int]:
        """Quantisation of TFLite tensor i; a float tensor of a DEQUANTIZE island carries
        its int8 source's."""
        if self.L.dtype(i) == np.float32 and i in self.names:
            return self.qp[self.names[i]]
        return self.q1(i)

    def _select(self, x: str, full, axis: int, start: int, stop: int, out_idx: int,
                qp) -> str:
        L = self.L
        full = tuple(int(d) for d in full)
        outer = int(np.prod(full[:axis], dtype=np.int64))
        inner = int(np.prod(full[axis + 1:], dtype=np.int64))
        n_in, n_out = full[axis] * inner, (stop - start) * inner
        if n_in * n_out > (1 << 20):
            self.fail(f"int8 slice of shape {list(full)} is too large")
        W = np.zeros((n_out, n_in), np.int8)
        W[np.arange(n_out), start * inner + np.arange(n_out)] = 1
        w = self.add(W.shape, W, base=f"{L.node_name}:select")
        b = self.add((n_out,), np.zeros(n_out, np.int32), base=f"{L.node_name}:b", dtype="int32")
        out = self.add(L.out_shape_of(out_idx), base=f"{L.node_name}:out")
        self.nodes.append(Node("qdense", [x, w, b], [out], dict(
            rows=outer, in_zp=qp[1], out_zp=qp[1], act_min=-128, act_max=127,
            mult=(1 << 30,) * n_out, shift=(1,) * n_out), name=out, source=L.node_name))
        self.qp[out] = qp
        self.names[out_idx] = out
        return out

    def _same_q(self, op, x_index: int):
        qp = self.qp_of(x_index)
        for o in op.outputs:
            if self.L.dtype(o) == np.int8 and self.q1(o) != qp:
                self.fail("int8 slice whose output is quantised unlike its input is not "
                          "supported")
        return qp

    def _pieces(self, op, x_index: int, axis: int, sizes) -> None:
        L = self.L
        fs = tuple(L.shape(x_index))
        if sum(sizes) != fs[axis] or len(sizes) != len(op.outputs):
            self.fail(f"split of axis {axis} of shape {list(fs)} into {list(sizes)}")
        qp, x, start = self._same_q(op, x_index), self.x(x_index), 0
        for o, n in zip(op.outputs, sizes):
            L.node_name = L.tname(o)
            self._select(x, fs, axis, start, start + n, o, qp)
            start += n

    def op_UNPACK(self, op):
        fs = tuple(self.L.shape(op.inputs[0]))
        axis = self.L._axis(self.L.opts(op).axis, len(fs))
        self._pieces(op, op.inputs[0], axis, [1] * fs[axis])

    def op_SPLIT(self, op):
        fs = tuple(self.L.shape(op.inputs[1]))
        axis = self.L._axis(np.atleast_1d(self.L.const(op.inputs[0], "SPLIT axis"))[0], len(fs))
        n = int(self.L.opts(op).numSplits)
        if n < 1 or fs[axis] % n:
            self.fail(f"SPLIT of axis {axis} of shape {list(fs)} into {n} equal parts")
        self._pieces(op, op.inputs[1], axis, [fs[axis] // n] * n)

    def op_SPLIT_V(self, op):
        fs = tuple(self.L.shape(op.inputs[0]))
        sizes = [int(v) for v in self.L.const(op.inputs[1], "SPLIT_V sizes")]
        axis = self.L._axis(np.atleast_1d(self.L.const(op.inputs[2], "SPLIT_V axis"))[0], len(fs))
        if sizes.count(-1) == 1:
            sizes[sizes.index(-1)] = fs[axis] - sum(v for v in sizes if v != -1)
        self._pieces(op, op.inputs[0], axis, sizes)

    def _slice(self, op, begin, end) -> None:
        L = self.L
        fs = tuple(L.shape(op.inputs[0]))
        qp = self._same_q(op, op.inputs[0])
        cut = [ax for ax in range(len(fs)) if (int(begin[ax]), int(end[ax])) != (0, fs[ax])]
        x = self.x(op.inputs[0])
        if not cut:
            self.names[op.outputs[0]] = x
            return
        if len(cut) > 1:
            self.fail(f"int8 slice of several axes {cut} of shape {list(fs)} is not supported")
        ax = cut[0]
        b0, e0 = int(begin[ax]), int(end[ax])
        if not 0 <= b0 < e0 <= fs[ax]:
            self.fail(f"int8 slice [{b0}:{e0}] of axis {ax} of shape {list(fs)}")
        self._select(x, fs, ax, b0, e0, op.outputs[0], qp)

    def op_STRIDED_SLICE(self, op):
        L = self.L
        o = L.opts(op)
        begin = L.const(op.inputs[1], "STRIDED_SLICE begin").astype(np.int64).copy()
        end = L.const(op.inputs[2], "STRIDED_SLICE end").astype(np.int64).copy()
        strides = L.const(op.inputs[3], "STRIDED_SLICE strides")
        if np.any(strides != 1) or o.ellipsisMask or o.newAxisMask or getattr(o, "offset", False):
            self.fail("STRIDED_SLICE with strides other than 1, ellipsis or new axes is not "
                      "supported")
        fs = tuple(L.shape(op.inputs[0]))
        if len(fs) != len(begin):
            self.fail(f"STRIDED_SLICE of shape {list(fs)} with {len(begin)} bounds")
        for ax in range(len(begin)):
            begin[ax] = 0 if o.beginMask >> ax & 1 else begin[ax] + (fs[ax] if begin[ax] < 0 else 0)
            end[ax] = fs[ax] if o.endMask >> ax & 1 else end[ax] + (fs[ax] if end[ax] < 0 else 0)
            if o.shrinkAxisMask >> ax & 1:
                end[ax] = begin[ax] + 1
            end[ax] = min(end[ax], fs[ax])
        self._slice(op, begin, end)

    def op_SLICE(self, op):
        L = self.L
        begin = L.const(op.inputs[1], "SLICE begin").astype(np.int64)
        size = L.const(op.inputs[2], "SLICE size").astype(np.int64)
        fs = tuple(L.shape(op.inputs[0]))
        end = [fs[i] if size[i] == -1 else begin[i] + size[i] for i in range(len(size))]
        self._slice(op, begin, end)

    def op_SUB(self, op):
        a, b = self.x(op.inputs[0]), self.x(op.inputs[1])
        (sa, za), (sb, zb) = self.q1(op.inputs[0]), self.q1(op.inputs[1])
        so, zo = self.q1(op.outputs[0])
        left = 20
        twice = 2.0 * float(max(np.float32(sa), np.float32(sb)))
        ma, sha = quantize_multiplier(float(np.float32(sa)) / twice)
        mb, shb = quantize_multiplier(float(np.float32(sb)) / twice)
        mb = -mb  # the interpreter's SUB: ADD with input 2's multiplier negated
        mo, sho = quantize_multiplier(twice / float(np.float32((1 << left) * np.float32(so))))
        if self.tensors[a].is_const and not self.tensors[b].is_const:
            a, b, ma, mb, sha, shb, za, zb = b, a, mb, ma, shb, sha, zb, za
        if self.tensors[a].size % self.tensors[b].size:
            self.fail("int8 SUB with a broadcast other than a trailing constant")
        lo, hi = _act_range(self.L.fused(op), so, zo)
        self.node("qadd", [a, b], op.outputs[0], a_offset=-za, b_offset=-zb, out_zp=zo,
                  a_mult=ma, b_mult=mb, out_mult=mo, a_shift=sha, b_shift=shb,
                  out_shift=sho, left_shift=left, act_min=lo, act_max=hi)

    def op_MEAN(self, op):
        """Global average pooling. The reference interpreter (keep_dims false, input and
        output quantised differently) computes ``acc = sum (x - zp_in)`` over the n values,
        takes ``(q, shift) = QuantizeMultiplier(s_in / s_out)``, folds 1/n in as
        ``k = min(floor(log2 n), 32, 31 + shift)``, ``q' = (q << k) / n``, requantises acc by
        ``(q', shift - k)`` with two roundings, adds ``zp_out`` and clamps (found by
        comparing with the interpreter). With keep_dims (Keras' GlobalAveragePooling2D with
        keepdims=True, as keras.applications.MobileNet's head has it) the reference computes
        the same (checked bit-exact at several window sizes); only the output's shape
        differs. Here: a depthwise ``qconv`` whose window is the whole input, with unit
        weights."""
        L = self.L
        x = self.x(op.inputs[0])
        shape = self.tensors[x].shape
        axes = sorted(int(a) % (len(shape) + 1)
                      for a in np.atleast_1d(L.const(op.inputs[1], "MEAN axes")))
        (si, zi), (so, zo) = self.q1(op.inputs[0]), self.q1(op.outputs[0])
        if (si, zi) == (so, zo):
            self.fail("int8 MEAN with equal input and output quantisation is not supported")
        if len(shape) == 3 and axes == [1, 2]:
            (h, w, c), geo = shape, dict(rank=2, out_spatial=(1, 1))
        elif len(shape) == 2 and axes == [1]:
            (h, w, c), geo = (1,) + shape, dict(rank=1, out_spatial=(1,))
        else:
            self.fail(f"int8 MEAN over axes {axes} of shape {shape} is not supported "
                      "(supported: global average pooling)")
        n = h * w
        om, osh = quantize_multiplier(float(np.float32(si)) / float(np.float32(so)))
        k = min(n.bit_length() - 1, 32, 31 + osh)  # 1/n folded into the multiplier
        m, sh = (om << k) // n, osh - k
        W = np.ones((c, h, w, 1), np.int8)
        wt = self.add(W.shape, W, base=f"{L.node_name}:ones")
        b = self.add((c,), np.zeros(c, np.int32), base=f"{L.node_name}:b", dtype="int32")
        self.node("qconv", [x, wt, b], op.outputs[0], groups=c, strides=(1, 1),
                  dilations=(1, 1), pads=(0, 0), in_zp=zi, out_zp=zo, act_min=-128,
                  act_max=127, mult=(m,) * c, shift=(sh,) * c, **geo)

    def op_DEQUANTIZE(self, op):
        # Not an output (run() handles those): the start of a float island.
        if self.L.dtype(op.inputs[0]) != np.int8:
            self.fail("DEQUANTIZE of a non-int8 tensor inside an int8 model")
        self.names[op.outputs[0]] = self.x(op.inputs[0])

    def op_QUANTIZE(self, op):
        i = op.inputs[0]
        if i not in self.names or self.L.dtype(i) not in (np.float32, np.int8):
            self.fail("QUANTIZE of a tensor that is not computed in the model")
        if self.qp_of(i) == self.q1(op.outputs[0]):
            self.names[op.outputs[0]] = self.names[i]
            return
        if self.L.dtype(i) != np.int8:
            self.fail("int8 QUANTIZE of a float island that changes the scale or zero point is "
                      "not supported")
        self._requantize(op)

    def _requantize(self, op):
        """int8 to int8 QUANTIZE (the converter's rescaling before a CONCATENATION of inputs
        quantised unlike its output): the interpreter's ``Requantize``, ``(x - zp_in)`` times
        ``QuantizeMultiplier(s_in / s_out)`` rounded twice, ``+ zp_out``, clamped. Here a 1x1
        convolution by the unit weight (``qconv``, which rounds twice), one row per value."""
        L = self.L
        x = self.x(op.inputs[0])
        (si, zi), (so, zo) = self.q1(op.inputs[0]), self.q1(op.outputs[0])
        n = self.tensors[x].size
        m, sh = quantize_multiplier(float(np.float32(si)) / float(np.float32(so)))
        col = self._shaped("reshape", [x], (n, 1), (si, zi))
        wt = self.add((1, 1, 1, 1), np.ones((1, 1, 1, 1), np.int8), base=f"{L.node_name}:one")
        b = self.add((1,), np.zeros(1, np.int32), base=f"{L.node_name}:b", dtype="int32")
        y = self._shaped("qconv", [col, wt, b], (n, 1), (so, zo), groups=1, strides=(1, 1),
                         dilations=(1, 1), pads=(0, 0), in_zp=zi, out_zp=zo, act_min=-128,
                         act_max=127, mult=(m,), shift=(sh,), rank=1, out_spatial=(n,))
        self.node("reshape", [y], op.outputs[0])
