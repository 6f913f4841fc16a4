"""Graph optimisations and the static memory plan. Each pass takes and returns a Graph."""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph, Node

#: Ops that write each output element from the same input element only.
ELEMENTWISE = {"activation"}


def fuse_activations(graph: Graph) -> Graph:
    """Fold an ``activation`` node into the ``dense`` node before it (when it is the only user
    of that dense output and the dense layer is linear)."""
    nodes: list[Node] = []
    for node in graph.nodes:
        prev = nodes[-1] if nodes else None
        if (
            node.op == "activation"
            and prev is not None
            and prev.op == "dense"
            and prev.attrs.get("activation", "linear") == "linear"
            and prev.outputs[0] == node.inputs[0]
            and len(graph.consumers(node.inputs[0])) == 1
            and node.inputs[0] not in graph.outputs
            and set(node.attrs) == {"activation"}
        ):
            del graph.tensors[prev.outputs[0]]
            prev.outputs = list(node.outputs)
            prev.attrs["activation"] = node.attrs["activation"]
            prev.source = f"{prev.source}+{node.source}"
            continue
        nodes.append(node)
    graph.nodes = nodes
    return graph


def optimise(graph: Graph) -> Graph:
    """Run the standard pass pipeline."""
    graph = fuse_activations(graph)
    graph.validate()
    return graph


@dataclass(frozen=True)
class MemoryPlan:
    """Float offsets of every intermediate tensor inside one arena, and the arena size."""

    offsets: dict[str, int]
    size: int  # in floats


def plan_memory(graph: Graph) -> MemoryPlan:
    """Assign each intermediate tensor an offset in one arena, reusing space by liveness.

    Graph inputs and outputs live in the caller's buffers; constants live in flash. The others
    are placed first-fit, largest first, so that two tensors whose lifetimes overlap never
    share a float.
    """
    external = set(graph.inputs) | set(graph.outputs)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            if t not in external:
                first.setdefault(t, i)
                last.setdefault(t, i)
        for t in node.inputs:
            if t in first:
                last[t] = i
    order = sorted(first, key=lambda t: (-graph.tensors[t].size, first[t], t))
    placed: list[tuple[int, int, int, int]] = []  # (start, end, first, last)
    offsets: dict[str, int] = {}
    for t in order:
        size = graph.tensors[t].size
        clashes = sorted((s, e) for s, e, f, l in placed if not (l < first[t] or last[t] < f))
        offset = 0
        for s, e in clashes:
            if offset + size <= s:
                break
            offset = max(offset, e)
        offsets[t] = offset
        placed.append((offset, offset + size, first[t], last[t]))
    size = max((e for _, e, _, _ in placed), default=0)
    return MemoryPlan(offsets, size)
