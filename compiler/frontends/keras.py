"""Keras front-end: ``.keras`` archives (Keras 3) and legacy ``.h5`` files, into the IR.

Keras itself loads the file (so every quirk of its format is handled by its authors); this
module walks the loaded model's layers and its functional-graph config and converts each layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CompileError
from ..ir import Graph, Node, Tensor


def _import_keras():
    # Keep TensorFlow quiet and deterministic (oneDNN reorders float sums).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import keras  # noqa: PLC0415
    except ImportError:
        raise CompileError(
            "reading Keras models needs the 'keras' and 'tensorflow-cpu' packages "
            "(pip install 'nnmpc[ml]')"
        ) from None
    return keras


class _Builder:
    """Accumulates IR tensors and nodes while layers are converted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []

    def add_tensor(self, name: str, shape, data: np.ndarray | None = None) -> str:
        if name in self.tensors:
            raise CompileError(f"duplicate tensor name '{name}'", file=str(self.path))
        if data is not None:
            data = np.ascontiguousarray(data, dtype=np.float32)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), "float32", data)
        return name

    def add_node(self, op: str, layer: str, inputs: list[str], out_shape, **attrs) -> str:
        out = self.add_tensor(f"{layer}:out", out_shape)
        self.nodes.append(Node(op, inputs, [out], attrs, name=layer, source=layer))
        return out

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape


def _activation_name(value: Any, layer: str, path: Path) -> str:
    """Keras stores activations as a string, or a dict for serialized functions."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name") or value.get("class_name")
    if value is None:
        return "linear"
    if not isinstance(value, str):
        raise CompileError(f"activation {value!r} is not a named function", file=str(path),
                           layer=layer)
    return value


def _dense(b: _Builder, layer, cfg: dict, inputs: list[str]) -> str:
    name = cfg["name"]
    (x,) = inputs
    in_shape = b.shape(x)
    if len(in_shape) != 1:
        raise CompileError(
            f"Dense on a {len(in_shape)}-D input {in_shape} is not supported "
            "(add a Flatten before it)", file=str(b.path), layer=name,
        )
    weights = layer.get_weights()
    kernel = np.asarray(weights[0], dtype=np.float32)
    bias = (np.asarray(weights[1], dtype=np.float32) if cfg.get("use_bias", True)
            else np.zeros(kernel.shape[1], np.float32))
    units = kernel.shape[1]
    w = b.add_tensor(f"{name}:W", (units, kernel.shape[0]), kernel.T)
    bb = b.add_tensor(f"{name}:b", (units,), bias)
    act = _activation_name(cfg.get("activation"), name, b.path)
    return b.add_node("dense", name, [x, w, bb], (units,), activation=act)


def _activation(b: _Builder, layer, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    act = _activation_name(cfg.get("activation"), cfg["name"], b.path)
    return b.add_node("activation", cfg["name"], [x], b.shape(x), activation=act)


def _relu(b: _Builder, layer, cfg: dict, inputs: list[str]) -> str:
    (x,) = inputs
    if cfg.get("max_value") is not None or cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
        raise CompileError(
            "ReLU with max_value, negative_slope or threshold is not supported "
            "(plain ReLU is)", file=str(b.path), layer=cfg["name"],
        )
    return b.add_node("activation", cfg["name"], [x], b.shape(x), activation="relu")


def _identity(b: _Builder, layer, cfg: dict, inputs: list[str]) -> str:
    """Layers with no effect at inference (Dropout and friends): pass the input through."""
    (x,) = inputs
    return x


_CONVERTERS: dict[str, Callable[..., str]] = {
    "Dense": _dense,
    "Activation": _activation,
    "ReLU": _relu,
    "Dropout": _identity,
    "GaussianNoise": _identity,
    "GaussianDropout": _identity,
    "AlphaDropout": _identity,
}


def _convert(b: _Builder, layer, inputs: list[str]) -> str:
    cls = type(layer).__name__
    fn = _CONVERTERS.get(cls)
    if fn is None:
        raise CompileError(
            f"layer type '{cls}' is not supported (supported: {', '.join(sorted(_CONVERTERS))})",
            file=str(b.path), layer=layer.name,
        )
    return fn(b, layer, layer.get_config(), inputs)


def _history_refs(obj: Any) -> list[tuple[str, int, int]]:
    """Find every ``keras_history`` reference in a functional layer's inbound-node args."""
    found: list[tuple[str, int, int]] = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            h = obj["config"]["keras_history"]
            found.append((h[0], int(h[1]), int(h[2])))
        else:
            for v in obj.values():
                found.extend(_history_refs(v))
    elif isinstance(obj, (list, tuple)):
        # Legacy (.h5 / Keras 2) inbound nodes are lists like [name, node, tensor, kwargs].
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            found.append((obj[0], int(obj[1]), int(obj[2])))
        else:
            for v in obj:
                found.extend(_history_refs(v))
    return found


def _batchless(shape) -> tuple[int, ...]:
    dims = tuple(shape)[1:]
    return tuple(-1 if d is None else int(d) for d in dims)


def load_keras(path: Path) -> Graph:
    keras = _import_keras()
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # Keras raises many types for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CompileError(
            f"Keras could not load the file ({type(e).__name__}: {msg[:200]}); "
            "it may be corrupt, truncated, or use custom layers", file=str(path),
        ) from None

    b = _Builder(path)
    if isinstance(model, keras.Sequential):
        x = b.add_tensor("input", _batchless(model.inputs[0].shape))
        inputs = [x]
        for layer in model.layers:
            x = _convert(b, layer, [x])
        outputs = [x]
    else:
        cfg = model.get_config()
        produced: dict[tuple[str, int, int], str] = {}
        for lcfg in cfg["layers"]:
            layer = model.get_layer(lcfg["name"])
            if type(layer).__name__ == "InputLayer":
                t = b.add_tensor(lcfg["name"], _batchless(layer.output.shape))
                produced[(lcfg["name"], 0, 0)] = t
                continue
            nodes = lcfg.get("inbound_nodes") or []
            if len(nodes) != 1:
                raise CompileError(
                    f"layer is called {len(nodes)} times; shared layers are not supported",
                    file=str(path), layer=lcfg["name"],
                )
            refs = _history_refs(nodes[0])
            ins = [produced[r] for r in refs]
            produced[(lcfg["name"], 0, 0)] = _convert(b, layer, ins)
        inputs = [produced[r] for r in _history_refs(cfg["input_layers"])]
        outputs = [produced[r] for r in _history_refs(cfg["output_layers"])]

    return Graph(
        name=model.name, inputs=inputs, outputs=outputs, tensors=b.tensors, nodes=b.nodes,
        source_file=str(path),
    )
