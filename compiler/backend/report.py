"""Per-layer cost report: MACs, parameters, flash and RAM bytes (``nnmpc compile --report``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph
from ..passes import alias_roots
from .codegen import content_key
from .emit import lower
from .cost import node_macs

_BYTES = {"float32": 4, "int8": 1, "int32": 4}


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    macs: int
    params: int
    flash_bytes: int
    ram_bytes: int


def layer_costs(graph: Graph) -> list[LayerCost]:
    """One row per node: multiply-accumulates, parameters, their flash bytes (weights shared by
    several nodes, as in an unrolled recurrent layer, count at their first user), and the bytes
    of the node's output buffer (0 when it lives in the caller's buffer or aliases its input)."""
    roots = alias_roots(graph)
    external = set(graph.inputs) | set(graph.outputs) | {s for pair in graph.states for s in pair}
    rows = []
    seen: set[tuple] = set()
    for node in graph.nodes:
        consts = []
        for t in node.inputs:  # constants stored once (shared weights) count once
            c = graph.tensors[t]
            if c.is_const and content_key(c.data) not in seen:
                seen.add(content_key(c.data))
                consts.append(c)
        out = node.outputs[0]
        shared = roots[out] != out or out in external
        ram = 0 if shared else graph.tensors[out].size * _BYTES[graph.tensors[out].dtype]
        rows.append(LayerCost(node.source or node.name, node.op, node_macs(graph, node),
                              sum(t.size for t in consts),
                              sum(t.size * _BYTES[t.dtype] for t in consts), ram))
    return rows


def format_report(graph: Graph, name: str = "model") -> str:
    """The table ``nnmpc compile --report`` prints; the total RAM is the generated arena."""
    rows = layer_costs(graph)
    src = lower(graph, name)
    head = f"{'layer':<28} {'op':<10} {'MACs':>9} {'params':>8} {'flash B':>9} {'RAM B':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        label = r.name.split(";")[0]
        label = label if len(label) <= 28 else "..." + label[-25:]  # the most specific end
        lines.append(f"{label:<28} {r.op:<10} {r.macs:>9} {r.params:>8} "
                     f"{r.flash_bytes:>9} {r.ram_bytes:>8}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<28} {'':<10} {sum(r.macs for r in rows):>9} "
                 f"{sum(r.params for r in rows):>8} {sum(r.flash_bytes for r in rows):>9} "
                 f"{src.arena_bytes:>8}")
    lines.append(f"{name.upper()}_ARENA_BYTES = {src.arena_bytes}: one static arena shared, by "
                 "liveness, by every layer's output"
                 + ("" if graph.int8 is not None else ", the Jacobian's tangents and scratch"))
    if src.state_floats:
        lines.append(f"{name.upper()}_STATE_BYTES = {src.state_floats * 4}: recurrent state of "
                     f"{name}_step")
    return "\n".join(lines)
