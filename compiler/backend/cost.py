"""Operation counts of IR nodes, shared by the Jacobian-mode choice and the cost report."""

from __future__ import annotations

import numpy as np

from ..ir import Graph


def node_macs(graph: Graph, node) -> int:
    """Multiply-accumulates (or element operations) of one node's forward pass."""
    t = graph.tensors
    y = t[node.outputs[0]]
    if node.op in ("dense", "qdense"):
        n_out, n_in = t[node.inputs[1]].shape
        return (t[node.inputs[0]].size // n_in) * n_out * n_in
    if node.op in ("conv", "qconv"):
        W = t[node.inputs[1]]
        return y.size * int(np.prod(W.shape[1:]))
    if node.op == "deconv":
        W = t[node.inputs[1]]
        return t[node.inputs[0]].size * int(np.prod(W.shape[1:]))
    if node.op in ("pool", "qpool"):
        kh, kw = node.attrs["kernel"]
        return y.size * kh * kw
    if node.op in ("mul", "add", "sub", "qadd", "qmul"):
        return y.size
    return 0
