"""Full-integer (int8) models: TFLite's quantisation scheme, bit for bit.

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

:func:`lower_int8` then writes ``NAME_predict_int8`` on raw int8 and ``NAME_predict`` on float
with quantisation at the edges. No float arithmetic is used between the edges.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import __version__
from .errors import CompileError
from .ir import Graph, Node, Tensor


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
        inputs, float_in = [], {}
        for i in L.sg.inputs:
            dt = L.dtype(i)
            if dt == np.int8:
                t = self.add(L.batchless(L.shape(i)), base=L.tname(i))
                self.names[i] = t
                self.qp[t] = self.q1(i)
                inputs.append(t)
            elif dt == np.float32:
                float_in[i] = None
            else:
                L.node_name = L.tname(i)
                self.fail(f"input type {dt} is not supported (supported: int8, float32 + QUANTIZE)")
        for k, (opname, op) in enumerate(ops):
            L.node_name = L.tname(op.outputs[0]) if len(op.outputs) else f"op{k}"
            if opname == "QUANTIZE" and op.inputs[0] in float_in:
                t = self.add(L.out_shape_of(op.outputs[0]), base=L.tname(op.outputs[0]))
                self.names[op.outputs[0]] = t
                self.qp[t] = self.q1(op.outputs[0])
                inputs.append(t)
                continue
            if opname == "DEQUANTIZE" and op.outputs[0] in L.sg.outputs:
                self.names[op.outputs[0]] = self.x(op.inputs[0])
                continue
            fn = getattr(self, "op_" + opname, None)
            if fn is None:
                from .frontends.tflite import _INT8_OPS
                self.fail(f"int8 op '{opname}' is not supported "
                          f"(supported: {', '.join(sorted(_INT8_OPS))})")
            fn(op)
        L.node_name = ""
        outputs = []
        for i in L.sg.outputs:
            t = self.names.get(i) or self.fail(f"output '{L.tname(i)}' is not computed")
            if t in inputs or t in outputs or self.tensors[t].is_const:
                self.fail("an output that is an input or a constant is not supported")
            outputs.append(t)
        if len(inputs) != 1 or len(outputs) != 1:
            self.fail("int8 models with several inputs or outputs are not supported")
        (si, zi), (so, zo) = self.qp[inputs[0]], self.qp[outputs[0]]
        return Graph(name=L.path.stem, inputs=inputs, outputs=outputs, tensors=self.tensors,
                     nodes=self.nodes, source_file=str(L.path),
                     int8={"in_scale": si, "in_zp": zi, "out_scale": so, "out_zp": zo})

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


# ---- Lowering to C --------------------------------------------------------------------------

def lower_int8(graph: Graph, name: str):
    from .codegen import (Buf, ConstArray, Function, ModelSource, Program, Struct, _function,
                          _symbol, _window_fields, c_float, c_int_array, content_key)
    from .passes import alias_roots

    q = graph.int8
    used: set[str] = set()
    consts: list[ConstArray] = []
    structs: list[Struct] = []
    syms: dict[tuple, str] = {}
    ctypes = {"int8": "int8_t", "int32": "int32_t"}

    def const(t: str) -> Buf:
        tensor = graph.tensors[t]
        key = content_key(tensor.data)
        if key not in syms:
            sym = f"{name}_{_symbol(t, used)}"
            syms[key] = sym
            consts.append(ConstArray(ctypes[tensor.dtype], sym, tensor.size,
                                     c_int_array(tensor.data), f"{t} {list(tensor.shape)}"))
        return Buf(syms[key])

    def folded(values, what: str) -> Buf:
        data = np.asarray(values, np.int32)
        key = content_key(data)
        if key not in syms:
            sym = f"{name}_{_symbol(what, used)}"
            syms[key] = sym
            consts.append(ConstArray("int32_t", sym, data.size, c_int_array(data),
                                     f"{what}: bias minus input zero point x row sums"))
        return Buf(syms[key])

    def int_array(values, what: str) -> str:
        sym = f"{name}_{_symbol(what, used)}"
        consts.append(ConstArray("int32_t", sym, len(values), c_int_array(values), what))
        return sym

    def struct(ctype: str, fields, comment: str) -> str:
        sym = f"{name}_{_symbol(comment.split(':')[0] + '_' + ctype.replace('nnmpc_', '').replace('_t', ''), used)}"
        structs.append(Struct(ctype, sym, fields, comment))
        return "&" + sym

    roots = alias_roots(graph)
    ext = {graph.inputs[0]: Buf("input"), graph.outputs[0]: Buf("output")}
    p = Program()

    def v(t: str) -> Buf:
        r = roots[t]
        if graph.tensors[r].is_const:
            return const(r)
        if r in ext:
            return ext[r]
        return p.scratch("v:" + r, graph.tensors[r].size)

    for node in graph.nodes:
        a = node.attrs
        x, y = node.inputs[0], node.outputs[0]
        comment = f"{node.source}: {node.op}"
        if node.op in ("qdense", "qconv"):
            mult = int_array(a["mult"], f"{node.source}:mult")
            shift = int_array(a["shift"], f"{node.source}:shift")
            qs = struct("nnmpc_q_params_t",
                        [("in_zp", str(a["in_zp"])), ("out_zp", str(a["out_zp"])),
                         ("act_min", str(a["act_min"])), ("act_max", str(a["act_max"])),
                         ("mult", mult), ("shift", shift),
                         ("double_rounding", "1" if node.op == "qconv" else "0")],
                        f"{node.source}: requantisation")
            W = const(node.inputs[1])
            if node.op == "qdense":
                n_out, n_in = graph.tensors[node.inputs[1]].shape
                Wd = np.asarray(graph.tensors[node.inputs[1]].data, np.int64)
                bz = (np.asarray(graph.tensors[node.inputs[2]].data, np.int64).reshape(n_out)
                      - int(a["in_zp"]) * Wd.sum(axis=1))
                if np.all(np.abs(bz) < 2 ** 31):
                    # the input zero point folded into the bias: b - in_zp sum_j W[i][j]
                    p.emit("nnmpc_q_dense_z", v(x), W, folded(bz, f"{node.source}:bz"), v(y),
                           a["rows"], n_out, n_in, qs, comment=comment)
                else:
                    p.emit("nnmpc_q_dense", v(x), W, const(node.inputs[2]), v(y), a["rows"],
                           n_out, n_in, qs, comment=comment)
            else:
                win = struct("nnmpc_window_t", _window_fields(graph, node), f"{node.source}: window")
                p.emit("nnmpc_q_conv", v(x), W, const(node.inputs[2]), v(y), win, qs,
                       comment=comment)
        elif node.op == "qpool":
            win = struct("nnmpc_window_t", _window_fields(graph, node), f"{node.source}: window")
            p.emit("nnmpc_q_pool", v(x), v(y), win, 0 if a["kind"] == "max" else 1,
                   a["act_min"], a["act_max"], comment=comment)
        elif node.op == "qadd":
            keys = ["a_offset", "b_offset", "out_zp", "a_mult", "b_mult", "out_mult", "a_shift",
                    "b_shift", "out_shift", "left_shift", "act_min", "act_max"]
            qa = struct("nnmpc_q_add_t", [(k, str(a[k])) for k in keys] + [("double_rounding", "1")],
                        f"{node.source}: add")
            n, nb = graph.tensors[y].size, graph.tensors[node.inputs[1]].size
            p.emit("nnmpc_q_add", v(x), v(node.inputs[1]), v(y), n, nb, qa, comment=comment)
        elif node.op == "qmul":
            keys = ["a_offset", "b_offset", "out_zp", "mult", "shift", "act_min", "act_max"]
            qm = struct("nnmpc_q_mul_t", [(k, str(a[k])) for k in keys] + [("double_rounding", "1")],
                        f"{node.source}: mul")
            n, nb = graph.tensors[y].size, graph.tensors[node.inputs[1]].size
            p.emit("nnmpc_q_mul_elem", v(x), v(node.inputs[1]), v(y), n, nb, qm, comment=comment)
        elif node.op == "qconcat":
            shape = graph.tensors[y].shape
            outer = int(np.prod(shape[:a["axis"]], dtype=np.int64))
            total, off = graph.tensors[y].size // outer, 0
            for k, t in enumerate(node.inputs):
                ln = graph.tensors[t].size // outer
                p.emit("nnmpc_q_copy_blocks", v(t), v(y) + off, outer, ln, ln, total,
                       comment=comment if k == 0 else "")
                off += ln
        elif node.op == "qlut":
            p.emit("nnmpc_q_lut", v(x), v(y), graph.tensors[y].size, const(node.inputs[1]),
                   comment=comment)
        elif node.op == "reshape":
            if roots[x] != roots[y]:
                p.emit("nnmpc_q_copy", v(x), v(y), graph.tensors[y].size, comment=comment)
        else:
            raise CompileError(f"op '{node.op}' in an int8 model", file=graph.source_file,
                               layer=node.source)
    offsets, size = p.plan()
    arena = f"{name}_arena8"
    n_in, n_out = graph.input_size, graph.output_size
    src = ModelSource(
        name=name, guard=f"{name.upper()}_H", version=__version__,
        model_hash=graph.content_hash()[:16], source_file=Path(graph.source_file).name,
        input_size=n_in, output_size=n_out, arena_floats=0, params=graph.param_count(),
        includes=["nnmpc_nn.h", "nnmpc_ops.h", "nnmpc_q8.h"],
    )
    src.int8 = {"in_scale": c_float(q["in_scale"]), "in_zp": q["in_zp"],
                "out_scale": c_float(q["out_scale"]), "out_zp": q["out_zp"],
                "arena": arena}
    src.arena_bytes = max(size + n_in + n_out, 1)
    src.functions.append(_function(
        f"void {name}_predict_int8(const int8_t *input, int8_t *output)", p, offsets, arena))
    src.functions.append(Function(f"void {name}_predict(const float *input, float *output)", [
        "/* quantise the input, run the integer model, dequantise the output */",
        f"nnmpc_q_quantize(input, {arena} + {size}, {n_in}, {c_float(q['in_scale'])}, {q['in_zp']});",
        f"{name}_predict_int8({arena} + {size}, {arena} + {size + n_in});",
        f"nnmpc_q_dequantize({arena} + {size + n_in}, output, {n_out}, "
        f"{c_float(q['out_scale'])}, {q['out_zp']});",
    ]))
    src.consts, src.structs = consts, structs
    return src
