"""Per-layer cost report: MACs, parameters, flash and RAM bytes."""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph
from .passes import plan_memory


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    macs: int
    params: int
    flash_bytes: int
    ram_bytes: int


def layer_costs(graph: Graph) -> list[LayerCost]:
    plan = plan_memory(graph)
    rows = []
    for node in graph.nodes:
        consts = [graph.tensors[t] for t in node.inputs if graph.tensors[t].is_const]
        params = sum(t.size for t in consts)
        out = graph.tensors[node.outputs[0]]
        x = graph.tensors[node.inputs[0]]
        macs = out.size * x.size if node.op == "dense" else 0
        ram = 0 if node.outputs[0] not in plan.offsets else out.size * 4
        rows.append(LayerCost(node.source or node.name, node.op, macs, params,
                              sum(t.size * 4 for t in consts), ram))
    return rows


def format_report(graph: Graph) -> str:
    rows = layer_costs(graph)
    plan = plan_memory(graph)
    head = f"{'layer':<24} {'op':<12} {'MACs':>8} {'params':>8} {'flash B':>9} {'RAM B':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name[:24]:<24} {r.op:<12} {r.macs:>8} {r.params:>8} "
                     f"{r.flash_bytes:>9} {r.ram_bytes:>7}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<24} {'':<12} {sum(r.macs for r in rows):>8} "
                 f"{sum(r.params for r in rows):>8} {sum(r.flash_bytes for r in rows):>9} "
                 f"{plan.size * 4:>7}  (arena after buffer reuse)")
    return "\n".join(lines)
