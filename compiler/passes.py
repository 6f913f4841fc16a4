"""Graph optimisations and the static memory plan. Each pass takes and returns a Graph.

Pipeline (:func:`optimise`): fold constant sub-graphs, fold per-channel scale/shift (a
BatchNormalization, or an ONNX ``MatMul`` + ``Add``) into the dense/conv layer before it, cancel
transpose pairs, fuse activations into the layer before them, drop dead nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Graph, Node, Tensor

#: Activations a dense/conv kernel can apply on its own output.
FUSABLE = {"linear", "relu", "relu6", "leaky_relu", "elu", "selu", "tanh", "sigmoid",
           "hard_sigmoid", "softplus", "softsign", "silu", "gelu", "gelu_tanh", "exponential"}


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    users: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for t in n.inputs:
            users.setdefault(t, []).append(n)
    return users


def _protected(graph: Graph) -> set[str]:
    return set(graph.inputs) | set(graph.outputs) | {t for pair in graph.states for t in pair}


def fold_constants(graph: Graph) -> Graph:
    """Evaluate, at compile time, nodes whose inputs are all constants."""
    from .reference import evaluate

    keep: list[Node] = []
    for node in graph.nodes:
        ins = [graph.tensors[t] for t in node.inputs]
        if ins and all(t.is_const for t in ins) and node.outputs[0] not in graph.outputs:
            value = evaluate(graph, node, [t.data for t in ins])
            if value is not None:
                graph.tensors[node.outputs[0]].data = value
                continue
        keep.append(node)
    graph.nodes = keep
    return graph


def _rename_input(graph: Graph, old: str, new: str) -> None:
    for n in graph.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]


def fold_scale_shift(graph: Graph) -> Graph:
    """Fold ``mul``/``add``/``sub`` by a per-channel constant into a linear dense/conv before it."""
    changed = True
    while changed:
        changed = False
        users = _consumers(graph)
        protected = _protected(graph)
        for node in graph.nodes:
            if node.op not in ("dense", "conv") or node.attrs.get("activation", "linear") != "linear":
                continue
            y = node.outputs[0]
            nxt = users.get(y, [])
            if len(nxt) != 1 or y in protected:
                continue
            m = nxt[0]
            if m.op not in ("add", "sub", "mul") or m.inputs[0] != y or m.inputs[1] == y:
                continue
            c = graph.tensors[m.inputs[1]]
            n_out = graph.tensors[node.inputs[1]].shape[0]
            if not c.is_const or c.size not in (1, n_out):
                continue
            v = np.broadcast_to(c.data.astype(np.float64).ravel(), (n_out,))
            W = graph.tensors[node.inputs[1]]
            b = graph.tensors[node.inputs[2]]
            Wd, bd = W.data.astype(np.float64), b.data.astype(np.float64)
            if m.op == "mul":
                Wd = Wd * v.reshape((-1,) + (1,) * (Wd.ndim - 1))
                bd = bd * v
            else:
                bd = bd + (v if m.op == "add" else -v)
            # New constants (the old ones may be shared with another node).
            wn, bn = f"{W.name}~{m.name}", f"{b.name}~{m.name}"
            graph.tensors[wn] = Tensor(wn, W.shape, "float32", Wd.astype(np.float32))
            graph.tensors[bn] = Tensor(bn, b.shape, "float32", bd.astype(np.float32))
            node.inputs = [node.inputs[0], wn, bn]
            # The dense/conv now writes what the folded op wrote.
            node.outputs = list(m.outputs)
            node.source = f"{node.source}+{m.source}"
            graph.nodes.remove(m)
            changed = True
            break
    return graph


def fuse_activations(graph: Graph) -> Graph:
    """Fold an ``activation`` node into the linear dense/conv whose only user it is."""
    users = _consumers(graph)
    protected = _protected(graph)
    producer = {t: n for n in graph.nodes for t in n.outputs}
    drop: set[int] = set()
    for node in graph.nodes:
        if node.op != "activation" or node.attrs["activation"] not in FUSABLE:
            continue
        prev = producer.get(node.inputs[0])
        if (prev is None or prev.op not in ("dense", "conv")
                or prev.attrs.get("activation", "linear") != "linear"
                or len(users.get(node.inputs[0], [])) != 1 or node.inputs[0] in protected):
            continue
        prev.outputs = list(node.outputs)
        for k in ("activation", "alpha", "beta"):
            if k in node.attrs:
                prev.attrs[k] = node.attrs[k]
        prev.source = f"{prev.source}+{node.source}"
        for t in node.outputs:
            producer[t] = prev
        drop.add(id(node))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
    return graph


def cancel_transposes(graph: Graph) -> Graph:
    """Replace transpose(p) -> transpose(q) with composition identity by a reshape."""
    users = _consumers(graph)
    producer = {t: n for n in graph.nodes for t in n.outputs}
    for node in graph.nodes:
        if node.op != "transpose":
            continue
        prev = producer.get(node.inputs[0])
        if prev is None or prev.op != "transpose" or len(users.get(node.inputs[0], [])) != 1:
            continue
        p, q = prev.attrs["perm"], node.attrs["perm"]
        if [p[i] for i in q] == list(range(len(p))):
            node.op, node.attrs = "reshape", {}
            node.inputs = [prev.inputs[0]]
    return graph


def prune(graph: Graph) -> Graph:
    """Drop nodes whose outputs nobody needs, and tensors nobody refers to."""
    needed = set(graph.outputs) | {o for _, o in graph.states}
    keep: list[Node] = []
    for n in reversed(graph.nodes):
        if any(t in needed for t in n.outputs):
            keep.append(n)
            needed.update(n.inputs)
    graph.nodes = keep[::-1]
    used = needed | set(graph.inputs) | {t for pair in graph.states for t in pair}
    graph.tensors = {k: v for k, v in graph.tensors.items() if k in used}
    return graph


def optimise(graph: Graph) -> Graph:
    """Run the standard pass pipeline (idempotent)."""
    if graph.step_graph is not None:
        graph.step_graph = optimise(graph.step_graph)
    graph = fold_constants(graph)
    graph = fold_scale_shift(graph)
    graph = cancel_transposes(graph)
    graph = fuse_activations(graph)
    graph = prune(graph)
    graph.validate()
    return graph


# ---- Static memory plan ------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryPlan:
    """Float offsets of every planned buffer inside one arena, and the arena size."""

    offsets: dict[str, int]
    size: int  # in floats


def place(intervals: dict[str, tuple[int, int, int]]) -> MemoryPlan:
    """First-fit placement, largest first, of buffers ``name -> (size, first, last)`` so that
    two buffers whose lifetimes [first, last] overlap never share a float."""
    order = sorted(intervals, key=lambda t: (-intervals[t][0], intervals[t][1], t))
    placed: list[tuple[int, int, int, int]] = []  # (start, end, first, last)
    offsets: dict[str, int] = {}
    for t in order:
        size, f0, l0 = intervals[t]
        clashes = sorted((s, e) for s, e, f, l in placed if not (l < f0 or l0 < f))
        offset = 0
        for s, e in clashes:
            if offset + size <= s:
                break
            offset = max(offset, e)
        offsets[t] = offset
        placed.append((offset, offset + size, f0, l0))
    return MemoryPlan(offsets, max((e for _, e, _, _ in placed), default=0))


def alias_roots(graph: Graph) -> dict[str, str]:
    """Map each reshape output to the tensor whose buffer it shares (buffers are flat).

    A reshape between two caller-owned buffers (input to output) is not aliased; it is a copy.
    """
    external = _protected(graph)
    root: dict[str, str] = {}

    def find(t: str) -> str:
        while t in root:
            t = root[t]
        return t

    for n in graph.nodes:
        if n.op != "reshape":
            continue
        src, dst = find(n.inputs[0]), n.outputs[0]
        if graph.tensors[src].is_const:
            continue
        if src in external and dst in external:
            continue
        if dst in external:  # the producer writes straight into the caller's buffer
            root[src] = dst
        else:
            root[dst] = src
    return {t: find(t) for t in graph.tensors}
