"""Lowering of full-integer (int8) graphs to C: ``NAME_predict_int8`` on raw int8 and
``NAME_predict`` on float with quantisation at the edges; no float arithmetic between the
edges. The integer IR ops (``qdense``, ``qconv``, ``qpool``, ``qadd``, ``qlut``, ...) are made by
the TFLite front-end (:mod:`nnmpc.compiler.frontends.tflite_int8`), which documents them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CompileError
from ..ir import Graph
from ..passes import alias_roots
from ..version import __version__
from .codegen import (Buf, ConstArray, Function, ModelSource, Program, Struct, _function, _symbol,
                      _window_fields, c_float, c_int_array, content_key)


def lower_int8(graph: Graph, name: str):
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
    # several inputs are read concatenated, in the graph's order, and several outputs written
    # so (the layout is in the header)
    ext, off = {}, 0
    for t in graph.inputs:
        ext[t] = Buf("input", off=off)
        off += graph.tensors[t].size
    off = 0
    for t in graph.outputs:
        ext[t] = Buf("output", off=off)
        off += graph.tensors[t].size
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
        elif node.op == "qsoftmax":
            sm = struct("nnmpc_q_softmax_t", [(k, str(a[k])) for k in ("mult", "left_shift", "diff_min")],
                        f"{node.source}: softmax")
            depth = int(a["depth"])
            p.emit("nnmpc_q_softmax", v(x), v(y), graph.tensors[y].size // depth, depth, sm,
                   comment=comment)
        elif node.op == "transpose":
            shape = list(graph.tensors[x].shape)
            pad = 4 - len(shape)
            tp = struct("nnmpc_transpose_t",
                        [("shape", "{" + ", ".join(map(str, [1] * pad + shape)) + "}"),
                         ("perm", "{" + ", ".join(map(str, list(range(pad)) + [q + pad for q in a["perm"]])) + "}")],
                        f"{node.source}: transpose")
            p.emit("nnmpc_q_transpose", v(x), v(y), tp, comment=comment)
        elif node.op == "qpad":
            shape = list(graph.tensors[x].shape)
            pad = 4 - len(shape)
            pairs = [(0, 0)] * pad + [tuple(q) for q in a["pads"]]
            def arr(vals):
                return "{" + ", ".join(map(str, vals)) + "}"
            pp = struct("nnmpc_q_pad_t", [("shape", arr([1] * pad + shape)),
                                          ("before", arr([b for b, _ in pairs])),
                                          ("after", arr([e for _, e in pairs])),
                                          ("value", str(a["value"]))],
                        f"{node.source}: pad")
            p.emit("nnmpc_q_pad", v(x), v(y), pp, comment=comment)
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
    layout = [dict(e) for e in q.get("inputs") or []] or [{"name": graph.inputs[0], "shape": graph.tensors[graph.inputs[0]].shape,
                                   "size": n_in, "scale": q["in_scale"], "zp": q["in_zp"]}]
    quantise, off = [], 0
    for k, e in enumerate(layout):
        at = f" + {off}" if off else ""
        quantise.append(f"nnmpc_q_quantize(input{at}, {arena} + {size + off}, {e['size']}, "
                        f"{c_float(e['scale'])}, {e['zp']});")
        e["offset"], e["scale_c"] = off, c_float(e["scale"])
        off += e["size"]
    src.int8["inputs"] = layout if len(layout) > 1 else []
    src.int8["same_input_q"] = len({(c_float(e["scale"]), e["zp"]) for e in layout}) == 1
    outs = [dict(e) for e in q.get("outputs") or []] or [{
        "name": graph.outputs[0], "shape": graph.tensors[graph.outputs[0]].shape, "size": n_out,
        "scale": q["out_scale"], "zp": q["out_zp"]}]
    dequantise, off = [], 0
    for e in outs:
        at = f" + {off}" if off else ""
        dequantise.append(f"nnmpc_q_dequantize({arena} + {size + n_in + off}, output{at}, "
                          f"{e['size']}, {c_float(e['scale'])}, {e['zp']});")
        e["offset"], e["scale_c"] = off, c_float(e["scale"])
        off += e["size"]
    src.int8["outputs"] = outs if len(outs) > 1 else []
    src.int8["same_output_q"] = len({(c_float(e["scale"]), e["zp"]) for e in outs}) == 1
    src.functions.append(Function(f"void {name}_predict(const float *input, float *output)", [
        "/* quantise the input" + ("s (each with its own scale and zero point)" if len(layout) > 1 else "")
        + ", run the integer model, dequantise the output"
        + ("s (each with its own)" if len(outs) > 1 else "") + " */",
        *quantise,
        f"{name}_predict_int8({arena} + {size}, {arena} + {size + n_in});",
        *dequantise,
    ]))
    src.consts, src.structs = consts, structs
    return src
