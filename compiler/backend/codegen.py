"""C back-end: turn an optimised IR graph into ``NAME.h`` / ``NAME.c`` through Jinja2 templates.

All decisions (kernel calls, buffer offsets, symbol names, literal formatting) are made here;
the templates only lay out C syntax. Each generated function is a :class:`Program`: a list of
calls into the fixed runtime (``firmware/runtime``) whose buffer arguments are placeholders
until the whole list is known; then every placeholder gets an arena offset by liveness
(:func:`passes.place`), so values, tangents and scratch share one static arena.

The Jacobian is forward mode: every value carries its tangent ``d value / d input`` (``size x
INPUT_SIZE``, row-major) computed right after the value by the op's tangent kernel; the tangent
of the output is the Jacobian. The runtime is copied next to the generated files so
``cc -std=c99 -c DIR/*.c`` builds them with no include path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CompileError
from ..ir import Graph
from ..passes import alias_roots, place
from ..version import __version__
from .cost import node_macs

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # repo root, or site-packages/nnmpc
TEMPLATE_DIR = PACKAGE_ROOT / "templates"
RUNTIME_DIR = PACKAGE_ROOT / "firmware" / "runtime"
#: Runtime files every generated model needs, copied into the output folder.
#: nnmpc_ops.h and nnmpc_q8.h are header-only (static inline), so a build that compiles only
#: NAME.c (the firmware) still gets them.
RUNTIME_FILES = ("nnmpc_nn.h", "nnmpc_nn.c", "nnmpc_ops.h", "nnmpc_q8.h")
RUNTIME_VERSION = 2
OPS_VERSION = 1

#: Activations nnmpc_nn.c fuses into its dense kernel (derivative from the output).
_NN_ACT = {
    "linear": "NNMPC_ACT_LINEAR",
    "relu": "NNMPC_ACT_RELU",
    "tanh": "NNMPC_ACT_TANH",
    "sigmoid": "NNMPC_ACT_SIGMOID",
}

#: Activations of nnmpc_fx (added after nnmpc_fn's set, whose machine code stays as it was).
_FX = {"abs": "NNMPC_FX_ABS", "sqrt": "NNMPC_FX_SQRT", "log": "NNMPC_FX_LOG"}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def c_float(v: float) -> str:
    """A C float literal that reads back as exactly the same float32."""
    s = f"{float(np.float32(v)):.9g}"
    if s in ("inf", "-inf", "nan"):
        raise ValueError(f"non-finite constant {s}")
    if "." not in s and "e" not in s:
        s += ".0"
    return s + "f"


def c_array(values: np.ndarray, per_line: int = 8) -> str:
    flat = np.asarray(values, dtype=np.float32).ravel()
    lines = []
    for i in range(0, flat.size, per_line):
        lines.append("    " + ", ".join(c_float(v) for v in flat[i:i + per_line]) + ",")
    return "\n".join(lines)


def c_int_array(values, per_line: int = 16) -> str:
    flat = [int(v) for v in np.asarray(values).ravel()]
    lines = []
    for i in range(0, len(flat), per_line):
        lines.append("    " + ", ".join(str(v) for v in flat[i:i + per_line]) + ",")
    return "\n".join(lines)


def content_key(data: np.ndarray) -> tuple:
    """A key equal for constants with the same dtype, shape and bytes."""
    a = np.ascontiguousarray(data)
    return (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())


def fn_enum(act: str) -> str:
    return "NNMPC_FN_" + act.upper()


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise CompileError(f"model name '{name}' is not a C identifier (letters, digits, _)")
    if name.lower() == "nnmpc" or name.lower().startswith("nnmpc_"):
        raise CompileError(f"model name '{name}' would clash with the runtime's nnmpc_* symbols")
    return name


# ---- Buffers and programs ---------------------------------------------------------------

@dataclass(frozen=True)
class Buf:
    """A float buffer argument: a fixed C expression, or an arena placeholder ``key``."""

    base: str = ""
    key: str = ""
    off: int = 0

    def __add__(self, n: int) -> "Buf":
        return Buf(self.base, self.key, self.off + int(n))


NULL = Buf("NULL")


@dataclass
class Call:
    fn: str
    args: list
    comment: str = ""


@dataclass
class Program:
    """The calls of one generated function, with arena placeholders sized in floats."""

    calls: list[Call] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    def scratch(self, key: str, size: int) -> Buf:
        self.sizes[key] = max(self.sizes.get(key, 0), int(size))
        return Buf(key=key)

    def emit(self, fn: str, *args, comment: str = "") -> None:
        self.calls.append(Call(fn, list(args), comment))

    def plan(self) -> tuple[dict[str, int], int]:
        iv: dict[str, tuple[int, int, int]] = {}
        for i, c in enumerate(self.calls):
            for a in c.args:
                if isinstance(a, Buf) and a.key:
                    f = iv.get(a.key, (0, i, i))[1]
                    iv[a.key] = (self.sizes[a.key], f, i)
        p = place(iv)
        return p.offsets, p.size


@dataclass
class Function:
    decl: str
    lines: list[str]


@dataclass
class ConstArray:
    ctype: str
    symbol: str
    size: int
    body: str
    comment: str


@dataclass
class Struct:
    ctype: str
    symbol: str
    fields: list[tuple[str, str]]
    comment: str


@dataclass
class ModelSource:
    name: str
    guard: str
    version: str
    model_hash: str
    source_file: str
    input_size: int
    output_size: int
    arena_floats: int
    params: int
    consts: list[ConstArray] = field(default_factory=list)
    structs: list[Struct] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    arena_bytes: int = 0
    jacobian_mode: str = ""
    state_floats: int = 0
    window: int = 0        # time steps of a recurrent model's window (0: not recurrent)
    step_input_size: int = 0
    step_output_size: int = 0
    int8: dict | None = None
    includes: list[str] = field(default_factory=list)
    runtime_version: int = RUNTIME_VERSION
    ops_version: int = OPS_VERSION


def _symbol(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "t"
    base = re.sub(r"_+", "_", base)
    sym, i = base, 1
    while sym in used:
        i += 1
        sym = f"{base}_{i}"
    used.add(sym)
    return sym


# ---- Lowering ------------------------------------------------------------------------------

class Lowering:
    """Shared state of one model's lowering: constant arrays, structs and symbol names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.used: set[str] = set()
        self.consts: list[ConstArray] = []
        self.structs: list[Struct] = []
        self._const_syms: dict[int, str] = {}
        self._struct_syms: dict[tuple, str] = {}

    def const(self, graph: Graph, t: str) -> Buf:
        """The flash array of constant t; constants with equal contents share one array (an
        unrolled recurrent layer's weights are stored once, not once per time step)."""
        tensor = graph.tensors[t]
        key = content_key(tensor.data)
        if key not in self._const_syms:
            sym = f"{self.name}_{_symbol(t, self.used)}"
            self._const_syms[key] = sym
            self.consts.append(ConstArray("float", sym, tensor.size, c_array(tensor.data),
                                          f"{t} {list(tensor.shape)}"))
        return Buf(self._const_syms[key])

    def const_value(self, graph: Graph, name: str, data: np.ndarray) -> Buf:
        """A constant the lowering itself needs (not a tensor of the graph)."""
        key = ("value", name)
        if key not in self._const_syms:
            sym = f"{self.name}_{_symbol(name, self.used)}"
            self._const_syms[key] = sym
            self.consts.append(ConstArray("float", sym, data.size, c_array(data), name))
        return Buf(self._const_syms[key])

    def struct(self, ctype: str, fields: list[tuple[str, str]], comment: str) -> str:
        key = (ctype, tuple(fields))
        if key not in self._struct_syms:
            sym = f"{self.name}_{_symbol(ctype.replace('nnmpc_', '').replace('_t', ''), self.used)}"
            self._struct_syms[key] = sym
            self.structs.append(Struct(ctype, sym, fields, comment))
        return "&" + self._struct_syms[key]


def _window_fields(graph: Graph, node) -> list[tuple[str, str]]:
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    a = node.attrs
    if a.get("rank", len(x.shape) - 1) == 1:
        ih, iw, ic = 1, x.shape[0], x.shape[-1]
        oh, ow = 1, a["out_spatial"][0]
    else:
        ih, iw, ic = x.shape
        oh, ow = a["out_spatial"]
    if node.op in ("conv", "qconv"):
        W = graph.tensors[node.inputs[1]]
        oc, kh, kw = W.shape[0], W.shape[1], W.shape[2]
        groups = a.get("groups", 1)
    else:
        oc, (kh, kw), groups = ic, a["kernel"], 1
    assert oh * ow * oc == y.size, (node.name, oh, ow, oc, y.shape)
    sh, sw = a.get("strides", (1, 1))
    dh, dw = a.get("dilations", (1, 1))
    pt, pl = a.get("pads", (0, 0))
    vals = dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
                stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pt, pad_left=pl,
                groups=groups)
    return [(k, str(int(v))) for k, v in vals.items()]


def _deconv_fields(graph: Graph, node, adjoint: bool = False) -> list[tuple[str, str]]:
    """Geometry of a ``deconv`` (in: x, out: y), or of its adjoint convolution (in: y, out: x)."""
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    W = graph.tensors[node.inputs[1]]
    a = node.attrs
    groups = a.get("groups", 1)
    if a.get("rank", 2) == 1:
        (ih, iw, ic), (oh, ow) = (1,) + tuple(x.shape), (1, a["out_spatial"][0])
    else:
        (ih, iw, ic), (oh, ow) = x.shape, a["out_spatial"]
    oc = W.shape[3] * groups
    assert oh * ow * oc == y.size, (node.name, oh, ow, oc, y.shape)
    sh, sw = a.get("strides", (1, 1))
    dh, dw = a.get("dilations", (1, 1))
    pt, pl = a.get("pads", (0, 0))
    if adjoint:
        ih, iw, ic, oh, ow, oc = oh, ow, oc, ih, iw, ic
    vals = dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=W.shape[1],
                k_w=W.shape[2], stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pt,
                pad_left=pl, groups=groups)
    return [(k, str(int(v))) for k, v in vals.items()]


class GraphLowering:
    """Lower one graph into a program: ``predict`` (values only), ``forward`` (values and their
    tangents: forward-mode Jacobian) or ``reverse`` (values, then adjoints from the output back
    to the input: reverse-mode Jacobian)."""

    def __init__(self, low: Lowering, graph: Graph, *, mode: str = "predict",
                 state_base: str = "") -> None:
        self.low, self.g, self.mode = low, graph, mode
        self.tangents = mode == "forward"
        self.derivs = mode in ("forward", "reverse")
        self.dbuf: dict[int, Buf] = {}
        self.roots = alias_roots(graph)
        self.p = Program()
        self.K = graph.input_size
        self.state_base = state_base
        self.ext: dict[str, Buf] = {}
        off = 0
        for t in graph.inputs:
            self.ext[t] = Buf("input", off=off)
            off += graph.tensors[t].size
        off = 0
        for t in graph.outputs:
            self.ext[t] = Buf("output", off=off)
            off += graph.tensors[t].size
        self.in_off = {t: self.ext[t].off for t in graph.inputs}
        self.out_off = {t: self.ext[t].off for t in graph.outputs}
        off = 0
        self.state_off: dict[str, int] = {}
        for s_in, _ in graph.states:
            self.ext[s_in] = Buf(state_base, off=off)
            self.state_off[s_in] = off
            off += graph.tensors[s_in].size
        self.state_floats = off
        self.where = graph.source_file

    # -- buffers --
    def v(self, t: str) -> Buf:
        r = self.roots[t]
        if self.g.tensors[r].is_const:
            return self.low.const(self.g, r)
        if r in self.ext:
            return self.ext[r]
        return self.p.scratch("v:" + r, self.g.tensors[r].size)

    def has_t(self, t: str) -> bool:
        r = self.roots[t]
        return not self.g.tensors[r].is_const

    def T(self, t: str, allow_identity: bool = False) -> Buf:
        """Tangent buffer of ``t``; NULL for the single graph input when the kernel allows it."""
        r = self.roots[t]
        if r in self.out_off:
            return Buf("jacobian", off=self.out_off[r] * self.K)
        if r in self.in_off:
            if allow_identity and len(self.g.inputs) == 1:
                return NULL
            buf = self.p.scratch("T:" + r, self.g.tensors[r].size * self.K)
            if ("T:" + r) not in self._eyes:
                self._eyes.add("T:" + r)
                self.p.emit("nnmpc_eye_rows", buf, self.g.tensors[r].size, self.K, self.in_off[r],
                            comment=f"tangent of input '{t}': rows of the identity")
            return buf
        return self.p.scratch("T:" + r, self.g.tensors[r].size * self.K)

    def fail(self, node, msg: str):
        raise CompileError(msg, file=self.where, layer=node.source or node.name)

    # -- driver --
    def run(self) -> Program:
        self._eyes: set[str] = set()
        for i, node in enumerate(self.g.nodes):
            n0 = len(self.p.calls)
            getattr(self, "op_" + node.op)(node, i)
            if len(self.p.calls) > n0:
                act = node.attrs.get("activation")
                self.p.calls[n0].comment = (self.p.calls[n0].comment or
                                            f"{node.source or node.name}: {node.op}"
                                            + (f" {act}" if act and act != 'linear' else ""))
        if self.mode == "reverse":
            self.backward()
        return self.p

    # -- reverse mode --
    def backward(self) -> None:
        """Adjoints A_t (size x M, M = OUTPUT_SIZE lanes) from the outputs back to the inputs;
        the Jacobian is the transpose of the inputs' adjoints."""
        g, M, K = self.g, self.g.output_size, self.K
        self.M = M
        self.prescaled: set[int] = set()
        self.adj: dict[str, Buf] = {}
        first = True
        for t in g.outputs:
            r = self.roots[t]
            buf = self.p.scratch("A:" + r, g.tensors[r].size * M)
            self.p.emit("nnmpc_eye_rows", buf, g.tensors[r].size, M, self.out_off[r],
                        comment="reverse mode: the outputs' adjoints are rows of the identity"
                        if first else "")
            first = False
            self.adj[r] = buf
        for i in range(len(g.nodes) - 1, -1, -1):
            node = g.nodes[i]
            r = self.roots[node.outputs[0]]
            if r not in self.adj:
                continue
            n0 = len(self.p.calls)
            getattr(self, "vjp_" + node.op)(node, i, self.adj[r])
            if len(self.p.calls) > n0 and not self.p.calls[n0].comment:
                self.p.calls[n0].comment = f"{node.source or node.name}: adjoint of {node.op}"
        for t in g.inputs:
            r, n, off = self.roots[t], g.tensors[t].size, self.in_off[t]
            if r not in self.adj:
                self.p.emit("nnmpc_copy_blocks", NULL, Buf("jacobian", off=off), M, n, 0, K)
                continue
            tp = self.low.struct("nnmpc_transpose_t",
                                 [("shape", f"{{1, 1, {n}, {M}}}"), ("perm", "{0, 1, 3, 2}")],
                                 "adjoint (INPUT x OUTPUT) to Jacobian (OUTPUT x INPUT)")
            if len(g.inputs) == 1:
                self.p.emit("nnmpc_transpose", self.adj[r], Buf("jacobian"), tp, 1,
                            comment="the Jacobian is the transpose of the input's adjoint")
            else:
                tmp = self.p.scratch(f"J:{t}", n * M)
                self.p.emit("nnmpc_transpose", self.adj[r], tmp, tp, 1)
                self.p.emit("nnmpc_copy_blocks", tmp, Buf("jacobian", off=off), M, n, n, K)

    def contribute(self, t: str, buf: Buf, owned: bool) -> None:
        """Add an adjoint contribution to tensor t (owned: buf may become t's adjoint)."""
        r = self.roots[t]
        if self.g.tensors[r].is_const:
            return
        n = self.g.tensors[r].size * self.M
        if r in self.adj:
            self.p.emit("nnmpc_binary", self.adj[r], buf, self.adj[r], n, n, "NNMPC_BIN_ADD")
        elif owned:
            self.adj[r] = buf
        else:
            own = self.p.scratch(f"A:{r}", n)
            self.p.emit("nnmpc_copy_blocks", buf, own, 1, n, 0, 0)
            self.adj[r] = own

    def _scaled(self, i: int, A: Buf, n: int) -> None:
        d = self.dbuf.get(i, NULL)
        if d is not NULL:
            self.p.emit("nnmpc_scale_rows", A, d, A, n, self.M)

    def _fusable_input(self, i: int, x: str) -> int | None:
        """The dense node producing x whose activation derivative this dense layer's adjoint can
        apply itself (x read by this node only, one row, not a graph output)."""
        r = self.roots[x]
        if r in self.out_off or r in self.in_off:
            return None
        readers = [k for k, nd in enumerate(self.g.nodes)
                   if any(self.roots[t] == r for t in nd.inputs)]
        if readers != [i]:
            return None
        for k, nd in enumerate(self.g.nodes[:i]):
            if (nd.op == "dense" and self.roots[nd.outputs[0]] == r
                    and self.dbuf.get(k, NULL) is not NULL
                    and self.g.tensors[nd.inputs[0]].size == self.g.tensors[nd.inputs[1]].shape[1]):
                return k
        return None

    def vjp_dense(self, node, i, A) -> None:
        x, w = node.inputs[0], node.inputs[1]
        n_out, n_in = self.g.tensors[w].shape
        rows = self.g.tensors[x].size // n_in
        if i not in self.prescaled:
            self._scaled(i, A, rows * n_out)
        if not self.has_t(x):
            return
        C = self.p.scratch(f"C:{i}", rows * n_in * self.M)
        k = self._fusable_input(i, x) if rows == 1 else None
        if k is not None:
            # the previous layer's activation derivative applied inside the adjoint kernel
            self.prescaled.add(k)
            self.p.emit("nnmpc_dense_adjoint_scaled", self.low.const(self.g, w), A, C, n_out,
                        n_in, self.M, self.dbuf[k])
            self.contribute(x, C, True)
            return
        # nnmpc_nn.c's optimised kernel with the contract of nnmpc_dense_vjp (nnmpc_ops.h)
        self.p.emit("nnmpc_dense_adjoint", self.low.const(self.g, w), A, C, rows, n_out, n_in,
                    self.M)
        self.contribute(x, C, True)

    def vjp_conv(self, node, i, A) -> None:
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        self._scaled(i, A, self.g.tensors[y].size)
        win = self.low.struct("nnmpc_window_t", _window_fields(self.g, node),
                              f"{node.source}: convolution geometry")
        C = self.p.scratch(f"C:{i}", self.g.tensors[x].size * self.M)
        self.p.emit("nnmpc_conv2d_vjp", self.low.const(self.g, w), A, C, win, self.M)
        self.contribute(x, C, True)

    def vjp_deconv(self, node, i, A) -> None:
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        self._scaled(i, A, self.g.tensors[y].size)
        if not self.has_t(x):
            return
        # the adjoint of a transposed convolution is the convolution with the same weights
        win = self.low.struct("nnmpc_window_t", _deconv_fields(self.g, node, adjoint=True),
                              f"{node.source}: adjoint of the transposed convolution")
        C = self.p.scratch(f"C:{i}", self.g.tensors[x].size * self.M)
        self.p.emit("nnmpc_conv2d", self.low.const(self.g, w), NULL, A, C, win, self.M)
        self.contribute(x, C, True)

    def vjp_pool(self, node, i, A) -> None:
        x = node.inputs[0]
        win = self.low.struct("nnmpc_window_t", _window_fields(self.g, node),
                              f"{node.source}: pooling window")
        C = self.p.scratch(f"C:{i}", self.g.tensors[x].size * self.M)
        if node.attrs["kind"] == "max" and tuple(node.attrs.get("dilations", (1, 1))) != (1, 1):
            self.p.emit("nnmpc_maxpool_dil_lanes", self.v(x), A, C, win, self.M, 1)
        elif node.attrs["kind"] == "max":
            self.p.emit("nnmpc_maxpool_vjp", self.v(x), A, C, win, self.M)
        else:
            self.p.emit("nnmpc_avgpool_vjp", A, C, win, self.M)
        self.contribute(x, C, True)

    def vjp_activation(self, node, i, A) -> None:
        x, y = node.inputs[0], node.outputs[0]
        n = self.g.tensors[y].size
        if node.attrs["activation"] == "softmax":
            last = self.g.tensors[y].shape[-1] if self.g.tensors[y].shape else 1
            # the softmax Jacobian is symmetric: its adjoint is its tangent map
            self.p.emit("nnmpc_softmax_tangent", self.v(y), A, A, n // last, last, self.M)
        elif node.attrs["activation"] == "log_softmax":
            last = self.g.tensors[y].shape[-1] if self.g.tensors[y].shape else 1
            self.p.emit("nnmpc_log_softmax_vjp", self.v(y), A, A, n // last, last, self.M)
        else:
            self._scaled(i, A, n)
        self.contribute(x, A, True)

    def _vjp_binary(self, node, i, A, op: str) -> None:
        a, b = node.inputs
        if self.g.tensors[a].is_const:
            a, b = b, a
        n, nb, M = self.g.tensors[node.outputs[0]].size, self.g.tensors[b].size, self.M
        b_var = self.has_t(b)
        if op == "mul":
            Ca = self.p.scratch(f"C:{i}", n * M)
            self.p.emit("nnmpc_mul_tangent", self.v(a), self.v(b), A, NULL, Ca, n, nb, M)
            if b_var:
                Cb = self.p.scratch(f"Cb:{i}", n * M)
                self.p.emit("nnmpc_mul_tangent", self.v(b), self.v(a), A, NULL, Cb, n, n, M)
                self.contribute(b, Cb, True)
            self.contribute(a, Ca, True)
            return
        if b_var and op == "sub":
            Cb = self.p.scratch(f"Cb:{i}", n * M)
            minus = self.low.const_value(self.g, "minus_one", np.array([-1.0], np.float32))
            self.p.emit("nnmpc_binary", A, minus, Cb, n * M, 1, "NNMPC_BIN_MUL")
            self.contribute(b, Cb, True)
        elif b_var:
            self.contribute(b, A, False)
        self.contribute(a, A, True)

    def vjp_add(self, node, i, A) -> None:
        self._vjp_binary(node, i, A, "add")

    def vjp_sub(self, node, i, A) -> None:
        self._vjp_binary(node, i, A, "sub")

    def vjp_mul(self, node, i, A) -> None:
        self._vjp_binary(node, i, A, "mul")

    def vjp_concat(self, node, i, A) -> None:
        y = node.outputs[0]
        shape = self.g.tensors[y].shape
        outer = int(np.prod(shape[:node.attrs["axis"]], dtype=np.int64))
        total, M, off = self.g.tensors[y].size // outer, self.M, 0
        for k, x in enumerate(node.inputs):
            ln = self.g.tensors[x].size // outer
            if self.has_t(x):
                C = self.p.scratch(f"C:{i}:{k}", ln * outer * M)
                self.p.emit("nnmpc_copy_blocks", A + off * M, C, outer, ln * M, total * M, ln * M)
                self.contribute(x, C, True)
            off += ln

    def vjp_slice(self, node, i, A) -> None:
        x = node.inputs[0]
        shape = self.g.tensors[x].shape
        ax, s0, s1 = node.attrs["axis"], node.attrs["start"], node.attrs["stop"]
        outer = int(np.prod(shape[:ax], dtype=np.int64))
        inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
        ln, stride, M = (s1 - s0) * inner, shape[ax] * inner, self.M
        C = self.p.scratch(f"C:{i}", self.g.tensors[x].size * M)
        self.p.emit("nnmpc_copy_blocks", NULL, C, 1, self.g.tensors[x].size * M, 0, 0)
        self.p.emit("nnmpc_copy_blocks", A, C + s0 * inner * M, outer, ln * M, ln * M, stride * M)
        self.contribute(x, C, True)

    def vjp_reshape(self, node, i, A) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if self.roots[x] != self.roots[y]:
            self.contribute(x, A, True)

    def vjp_transpose(self, node, i, A) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = list(self.g.tensors[y].shape)
        perm = list(node.attrs["perm"])
        inv = [perm.index(k) for k in range(len(perm))]
        pad = 4 - len(shape)
        tp = self.low.struct("nnmpc_transpose_t",
                             [("shape", "{" + ", ".join(map(str, [1] * pad + shape)) + "}"),
                              ("perm", "{" + ", ".join(map(str, list(range(pad)) + [q + pad for q in inv])) + "}")],
                             f"{node.source}: inverse transpose")
        C = self.p.scratch(f"C:{i}", self.g.tensors[x].size * self.M)
        self.p.emit("nnmpc_transpose", A, C, tp, self.M)
        self.contribute(x, C, True)

    # -- ops --
    def op_dense(self, node, i) -> None:
        x, w, b = node.inputs
        y = node.outputs[0]
        W = self.g.tensors[w]
        n_out, n_in = W.shape
        rows = self.g.tensors[x].size // n_in
        act = node.attrs.get("activation", "linear")
        al, be = c_float(node.attrs.get("alpha", 0.0)), c_float(node.attrs.get("beta", 0.0))
        Wb, bb, xb, yb = self.low.const(self.g, w), self.low.const(self.g, b), self.v(x), self.v(y)
        d = self.p.scratch(f"d:{i}", rows * n_out) if (self.derivs and act != "linear") else NULL
        self.dbuf[i] = d
        if rows == 1 and act in _NN_ACT:
            # one entry point per activation: the image holds only the activation code it uses
            self.p.emit(f"nnmpc_dense_{act}", Wb, bb, xb, yb, n_out, n_in)
            if d is not NULL:
                self.p.emit("nnmpc_act_deriv", yb, d, n_out, _NN_ACT[act])
        else:
            if rows == 1:
                self.p.emit("nnmpc_dense_linear", Wb, bb, xb, yb, n_out, n_in)
            else:
                self.p.emit("nnmpc_dense_rows", Wb, bb, xb, yb, rows, n_out, n_in)
            if act != "linear":
                self.p.emit("nnmpc_fn", yb, yb, d, rows * n_out, fn_enum(act), al, be)
        if self.tangents:
            if rows == 1:
                self.p.emit("nnmpc_dense_tangent", Wb, d, self.T(x, allow_identity=True),
                            self.T(y), n_out, n_in, self.K)
            else:
                self.p.emit("nnmpc_dense_rows_tangent", Wb, d, self.T(x), self.T(y), rows,
                            n_out, n_in, self.K)

    def op_conv(self, node, i) -> None:
        x, w, b = node.inputs
        y = node.outputs[0]
        n = self.g.tensors[y].size
        win = self.low.struct("nnmpc_window_t", _window_fields(self.g, node),
                              f"{node.source}: convolution geometry")
        act = node.attrs.get("activation", "linear")
        al, be = c_float(node.attrs.get("alpha", 0.0)), c_float(node.attrs.get("beta", 0.0))
        Wb, bb, xb, yb = self.low.const(self.g, w), self.low.const(self.g, b), self.v(x), self.v(y)
        d = self.p.scratch(f"d:{i}", n) if (self.derivs and act != "linear") else NULL
        self.dbuf[i] = d
        self.p.emit("nnmpc_conv2d", Wb, bb, xb, yb, win, 1)
        if act != "linear":
            self.p.emit("nnmpc_fn", yb, yb, d, n, fn_enum(act), al, be)
        if self.tangents:
            Ty = self.T(y)
            self.p.emit("nnmpc_conv2d", Wb, NULL, self.T(x), Ty, win, self.K)
            if d is not NULL:
                self.p.emit("nnmpc_scale_rows", Ty, d, Ty, n, self.K)

    def op_deconv(self, node, i) -> None:
        x, w, b = node.inputs
        y = node.outputs[0]
        n = self.g.tensors[y].size
        win = self.low.struct("nnmpc_window_t", _deconv_fields(self.g, node),
                              f"{node.source}: transposed convolution geometry")
        act = node.attrs.get("activation", "linear")
        al, be = c_float(node.attrs.get("alpha", 0.0)), c_float(node.attrs.get("beta", 0.0))
        Wb, bb, xb, yb = self.low.const(self.g, w), self.low.const(self.g, b), self.v(x), self.v(y)
        d = self.p.scratch(f"d:{i}", n) if (self.derivs and act != "linear") else NULL
        self.dbuf[i] = d
        self.p.emit("nnmpc_deconv2d", Wb, bb, xb, yb, win, 1)
        if act != "linear":
            self.p.emit("nnmpc_fn", yb, yb, d, n, fn_enum(act), al, be)
        if self.tangents:
            Ty = self.T(y)
            self.p.emit("nnmpc_deconv2d", Wb, NULL, self.T(x), Ty, win, self.K)
            if d is not NULL:
                self.p.emit("nnmpc_scale_rows", Ty, d, Ty, n, self.K)

    def op_pool(self, node, i) -> None:
        x, y = node.inputs[0], node.outputs[0]
        win = self.low.struct("nnmpc_window_t", _window_fields(self.g, node),
                              f"{node.source}: pooling window")
        if node.attrs["kind"] == "max" and tuple(node.attrs.get("dilations", (1, 1))) != (1, 1):
            self.p.emit("nnmpc_maxpool_dil", self.v(x), self.v(y), win)
            if self.tangents:
                self.p.emit("nnmpc_maxpool_dil_lanes", self.v(x), self.T(x), self.T(y), win,
                            self.K, 0)
        elif node.attrs["kind"] == "max":
            self.p.emit("nnmpc_maxpool", self.v(x), self.v(y), win)
            if self.tangents:
                self.p.emit("nnmpc_maxpool_tangent", self.v(x), self.T(x), self.T(y), win, self.K)
        else:
            self.p.emit("nnmpc_avgpool", self.v(x), self.v(y), win, 1)
            if self.tangents:
                self.p.emit("nnmpc_avgpool", self.T(x), self.T(y), win, self.K)

    def op_activation(self, node, i) -> None:
        x, y = node.inputs[0], node.outputs[0]
        act = node.attrs["activation"]
        n = self.g.tensors[y].size
        xb, yb = self.v(x), self.v(y)
        if act == "softmax":
            last = self.g.tensors[y].shape[-1] if self.g.tensors[y].shape else 1
            self.p.emit("nnmpc_softmax", xb, yb, n // last, last)
            if self.tangents:
                self.p.emit("nnmpc_softmax_tangent", yb, self.T(x), self.T(y), n // last, last,
                            self.K)
            return
        if act == "log_softmax":
            last = self.g.tensors[y].shape[-1] if self.g.tensors[y].shape else 1
            self.p.emit("nnmpc_log_softmax", xb, yb, n // last, last)
            if self.tangents:
                self.p.emit("nnmpc_log_softmax_tangent", yb, self.T(x), self.T(y), n // last,
                            last, self.K)
            return
        d = self.p.scratch(f"d:{i}", n) if self.derivs else NULL
        self.dbuf[i] = d
        if act in _FX:
            self.p.emit("nnmpc_fx", xb, yb, d, n, _FX[act])
            if self.tangents:
                self.p.emit("nnmpc_scale_rows", self.T(x), d, self.T(y), n, self.K)
            return
        al, be = c_float(node.attrs.get("alpha", 0.0)), c_float(node.attrs.get("beta", 0.0))
        self.p.emit("nnmpc_fn", xb, yb, d, n, fn_enum(act), al, be)
        if self.tangents:
            self.p.emit("nnmpc_scale_rows", self.T(x), d, self.T(y), n, self.K)

    def _binary(self, node, i, op: str) -> None:
        a, b = node.inputs
        y = node.outputs[0]
        if self.g.tensors[a].is_const:
            if op == "sub":
                self.fail(node, "subtracting a tensor from a constant is not supported")
            a, b = b, a
        n, nb = self.g.tensors[y].size, self.g.tensors[b].size
        enum = {"add": "NNMPC_BIN_ADD", "sub": "NNMPC_BIN_SUB", "mul": "NNMPC_BIN_MUL"}[op]
        ab, bbuf, yb = self.v(a), self.v(b), self.v(y)
        if self.tangents and op == "mul":  # the tangent reads a and b, never y
            self.p.emit("nnmpc_binary", ab, bbuf, yb, n, nb, enum)
            Tb = self.T(b) if self.has_t(b) else NULL
            self.p.emit("nnmpc_mul_tangent", ab, bbuf, self.T(a), Tb, self.T(y), n, nb, self.K)
            return
        self.p.emit("nnmpc_binary", ab, bbuf, yb, n, nb, enum)
        if self.tangents:
            if self.has_t(b):
                self.p.emit("nnmpc_binary", self.T(a), self.T(b), self.T(y), n * self.K,
                            n * self.K, enum)
            else:
                self.p.emit("nnmpc_copy_blocks", self.T(a), self.T(y), 1, n * self.K, 0, 0)

    def op_add(self, node, i) -> None:
        self._binary(node, i, "add")

    def op_sub(self, node, i) -> None:
        self._binary(node, i, "sub")

    def op_mul(self, node, i) -> None:
        self._binary(node, i, "mul")

    def op_concat(self, node, i) -> None:
        y = node.outputs[0]
        shape = self.g.tensors[y].shape
        outer = int(np.prod(shape[:node.attrs["axis"]], dtype=np.int64))
        total = self.g.tensors[y].size // outer
        yb = self.v(y)
        off = 0
        for x in node.inputs:
            ln = self.g.tensors[x].size // outer
            self.p.emit("nnmpc_copy_blocks", self.v(x), yb + off, outer, ln, ln, total)
            off += ln
        if self.tangents:
            K, Ty, off = self.K, self.T(y), 0
            for x in node.inputs:
                ln = self.g.tensors[x].size // outer
                src = self.T(x) if self.has_t(x) else NULL
                self.p.emit("nnmpc_copy_blocks", src, Ty + off * K, outer, ln * K, ln * K,
                            total * K)
                off += ln

    def op_slice(self, node, i) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = self.g.tensors[x].shape
        ax, s0, s1 = node.attrs["axis"], node.attrs["start"], node.attrs["stop"]
        outer = int(np.prod(shape[:ax], dtype=np.int64))
        inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
        ln, stride = (s1 - s0) * inner, shape[ax] * inner
        self.p.emit("nnmpc_copy_blocks", self.v(x) + s0 * inner, self.v(y), outer, ln, stride, ln)
        if self.tangents:
            K = self.K
            self.p.emit("nnmpc_copy_blocks", self.T(x) + s0 * inner * K, self.T(y), outer,
                        ln * K, stride * K, ln * K)

    def op_reshape(self, node, i) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if self.roots[x] == self.roots[y]:
            return  # same buffer
        n = self.g.tensors[y].size
        self.p.emit("nnmpc_copy_blocks", self.v(x), self.v(y), 1, n, 0, 0)
        if self.tangents:
            self.p.emit("nnmpc_copy_blocks", self.T(x), self.T(y), 1, n * self.K, 0, 0)

    def op_transpose(self, node, i) -> None:
        x, y = node.inputs[0], node.outputs[0]
        shape = list(self.g.tensors[x].shape)
        perm = list(node.attrs["perm"])
        if len(shape) > 4:
            self.fail(node, f"transpose of a {len(shape)}-D tensor (at most 4-D is supported)")
        pad = 4 - len(shape)
        shape4 = [1] * pad + shape
        perm4 = list(range(pad)) + [p + pad for p in perm]
        tp = self.low.struct("nnmpc_transpose_t",
                             [("shape", "{" + ", ".join(map(str, shape4)) + "}"),
                              ("perm", "{" + ", ".join(map(str, perm4)) + "}")],
                             f"{node.source}: transpose")
        self.p.emit("nnmpc_transpose", self.v(x), self.v(y), tp, 1)
        if self.tangents:
            self.p.emit("nnmpc_transpose", self.T(x), self.T(y), tp, self.K)


def _render_args(args: list, offsets: dict[str, int], arena: str) -> str:
    out = []
    for a in args:
        if isinstance(a, Buf):
            if a.key:
                off = offsets[a.key] + a.off
                out.append(f"{arena} + {off}")
            elif a.off:
                out.append(f"{a.base} + {a.off}")
            else:
                out.append(a.base)
        else:
            out.append(str(a))
    return ", ".join(out)


def _function(decl: str, prog: Program, offsets: dict[str, int], arena: str,
              tail: list[str] | None = None) -> Function:
    lines = []
    for c in prog.calls:
        if c.comment:
            lines.append(f"/* {c.comment} */")
        lines.append(f"{c.fn}({_render_args(c.args, offsets, arena)});")
    return Function(decl, lines + (tail or []))


JACOBIAN_MODES = ("auto", "forward", "reverse")


# Activations whose derivative is 0 on about half the units: the dense tangent and adjoint
# kernels skip those units' rows and columns.
_SPARSE_ACTS = ("relu", "relu6")

#: The dense adjoint kernel keeps four adjoint columns in registers; with fewer (a net with one
#: to three outputs in reverse mode) it runs a scalar loop that costs about this many times
#: more per multiply-add than the tangent kernels (Cortex-M4 cycle counts, docs/BENCH.md: the
#: msd NARX net's Jacobian, 6 inputs and 2 outputs, 18.3k cycles reverse, 10.6k forward).
SCALAR_ADJOINT_COST = 4.5


def jacobian_cost(graph: Graph, mode: str) -> float:
    """Estimated multiply-adds of the derivative part of ``mode`` (forward: INPUT_SIZE lanes per
    value, reverse: OUTPUT_SIZE): every op's MACs (or its size) times the lanes; a dense layer
    counts only the units a relu may leave active (half) on either side, and the first dense
    layer of forward mode, whose tangent is W itself, counts one copy of its active rows."""
    t = graph.tensors
    lanes = graph.input_size if mode == "forward" else graph.output_size
    roots = alias_roots(graph)
    sparse = {roots[n.outputs[0]] for n in graph.nodes
              if n.op in ("dense", "conv") and n.attrs.get("activation") in _SPARSE_ACTS}
    inputs = {roots[x] for x in graph.inputs}

    def active(x: str) -> float:
        return 0.5 if roots[x] in sparse else 1.0

    cost = 0.0
    for node in graph.nodes:
        work = node_macs(graph, node) or t[node.outputs[0]].size
        if node.op == "dense":
            x, y = node.inputs[0], node.outputs[0]
            n_in = t[node.inputs[1]].shape[1]
            f = active(y) * active(x)
            if (mode == "forward" and roots[x] in inputs and len(graph.inputs) == 1
                    and t[x].size == n_in):
                cost += active(y) * t[y].size * lanes
                continue
            slow = SCALAR_ADJOINT_COST if mode == "reverse" and lanes < 4 else 1.0
            cost += work * f * lanes * slow
        else:
            cost += work * lanes
    return cost


def jacobian_mode(graph: Graph, mode: str = "auto") -> str:
    """``auto`` picks the mode with the smaller estimated cost (:func:`jacobian_cost`; about
    INPUT_SIZE passes of the model for forward mode, OUTPUT_SIZE for reverse), forward on a tie."""
    if mode not in JACOBIAN_MODES:
        raise CompileError(f"Jacobian mode '{mode}' is not one of {', '.join(JACOBIAN_MODES)}")
    if mode == "auto":
        if graph.output_size >= graph.input_size:
            return "forward"
        rev, fwd = jacobian_cost(graph, "reverse"), jacobian_cost(graph, "forward")
        return "reverse" if rev < fwd else "forward"
    return mode


def lower_float(graph: Graph, name: str, jacobian: str = "auto") -> ModelSource:
    """Decide every call, buffer and symbol of the generated C for a float ``graph``."""
    low = Lowering(name)
    arena = f"{name}_arena"
    pred = GraphLowering(low, graph, mode="predict").run()
    jmode = jacobian_mode(graph, jacobian)
    jac = GraphLowering(low, graph, mode=jmode).run()
    programs = [("predict", pred), ("jacobian", jac)]
    step_graph = graph.step_graph
    step = None
    if step_graph is not None:
        step = GraphLowering(low, step_graph, mode="predict", state_base=f"{name}_state")
        sprog = step.run()
        # The new state replaces the old one once every node has read it; these copies are
        # part of the program so that the new state's buffers stay live until they are done.
        for k, (s_in, s_out) in enumerate(step_graph.states):
            sprog.emit("nnmpc_copy_blocks", step.v(s_out), Buf(f"{name}_state", off=step.state_off[s_in]),
                       1, step_graph.tensors[s_in].size, 0, 0,
                       comment="the new recurrent state replaces the old one" if k == 0 else "")
        programs.append(("step", sprog))
    plans = {k: p.plan() for k, p in programs}
    floats = max(size for _, size in plans.values())
    out_scratch = floats
    arena_floats = floats + graph.output_size

    src = ModelSource(
        name=name, guard=f"{name.upper()}_H", version=__version__,
        model_hash=graph.content_hash()[:16], source_file=Path(graph.source_file).name,
        input_size=graph.input_size, output_size=graph.output_size,
        arena_floats=max(arena_floats, 1), params=graph.param_count(),
        includes=["nnmpc_nn.h", "nnmpc_ops.h"], arena_bytes=4 * max(arena_floats, 1),
        jacobian_mode=jmode,
    )
    src.functions.append(_function(f"void {name}_predict(const float *input, float *output)",
                                   pred, plans["predict"][0], arena))
    src.functions.append(_function(
        f"void {name}_predict_jacobian(const float *input, float *output, float *jacobian)",
        jac, plans["jacobian"][0], arena))
    src.functions.append(Function(f"void {name}_jacobian(const float *input, float *jacobian)",
                                  [f"{name}_predict_jacobian(input, {arena} + {out_scratch}, "
                                   "jacobian);"]))
    if step is not None:
        sg = step_graph
        src.functions.append(_function(
            f"void {name}_step(const float *input, float *output)", sprog, plans["step"][0], arena))
        src.functions.append(Function(f"void {name}_reset(void)",
                                      [f"nnmpc_copy_blocks(NULL, {name}_state, 1, "
                                       f"{step.state_floats}, 0, 0);"]))
        src.state_floats = step.state_floats
        src.step_input_size = sg.input_size
        src.step_output_size = sg.output_size
    src.window = graph.window
    src.consts, src.structs = low.consts, low.structs
    return src
