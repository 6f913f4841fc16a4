"""Keras 2 HDF5 files (``.h5`` / ``.hdf5`` written by Keras 2.x and tf.keras 2.x), read directly.

Keras 3 refuses many Keras 2 files (``time_major`` in recurrent configs, ``dtype`` in
initializer configs, ``batch_input_shape`` on a Sequential's first layer, ...), and where it
loads one it gives some layers Keras 3 meanings. This reader never deserialises the file with
Keras: it reads the ``model_config`` JSON attribute and the ``model_weights`` groups with h5py
(the layout Keras 2's ``save_model`` writes), turns each layer into a
:class:`~.keras.LayerSpec` with the meaning the writing Keras version gave it, and lowers the
result with the same code as the ``.keras`` path (:func:`.keras.graph_from_spec`).

Per-version meaning (see docs/COMPILER.md, "Legacy Keras 2 HDF5 files"):

* ``hard_sigmoid`` is clip(0.2 x + 0.5, 0, 1) in every Keras 2 (Keras 3: slope 1/6);
* a GRU config without ``reset_after`` (files before Keras 2.1) computes reset-before; when the
  key is present its value is used (standalone Keras 2 defaulted to False, tf.keras to True);
* the input shape is the InputLayer's ``batch_input_shape``, else the first layer's
  ``batch_input_shape`` (Keras <= 2.3 Sequentials), else the Sequential's ``build_input_shape``;
* ``time_major=False`` is the (batch, time, features) layout and is read; ``True`` is rejected;
* files written with the Theano backend hold flipped convolution kernels, flipped back here as
  Keras 2's own loader did.

Files written by Keras 3 (``keras_version`` >= 3) go to Keras 3 (:func:`.keras.load_keras`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CompileError
from ..ir import Graph
from .keras import (SUPPORTED_LAYERS, Dialect, LayerSpec, ModelSpec, Spec, _history_refs,
                    graph_from_spec, load_keras, one_line)
from .shapes import InputShapes

_MODELS = ("Sequential", "Functional", "Model")
#: Layers whose kernels Keras 2 flipped when a Theano file was loaded on another backend.
_THEANO_FLIPPED = ("Conv1D", "Conv2D")


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray):  # name lists (an empty one is stored as float64)
        return [_text(x) for x in v.tolist()]
    return v


def _attr(obj, key: str) -> Any:
    """An attribute as Keras 2 wrote it: whole, or split into ``key0``, ``key1``, ... when
    it was larger than HDF5's 64 KiB attribute limit."""
    if obj is None:
        return None
    if key in obj.attrs:
        return _text(obj.attrs[key])
    parts, i = [], 0
    while f"{key}{i}" in obj.attrs:
        parts.extend(_text(obj.attrs[f"{key}{i}"]))
        i += 1
    return parts if i else None


def _version(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", text or "")
    return tuple(int(g or 0) for g in m.groups()) if m else None


def load_h5(path: Path, input_shapes: InputShapes = None) -> Graph:
    """Read an ``.h5``/``.hdf5`` Keras model: Keras 2 files here, Keras 3 files by Keras 3
    (``input_shapes`` fixes dynamic input dimensions, batch aside)."""
    import h5py  # noqa: PLC0415  (a dependency of the ml extra, like keras)

    try:
        f = h5py.File(path, "r")
    except Exception as e:  # h5py raises OSError subclasses for damaged files
        raise CompileError(f"the HDF5 file cannot be opened ({one_line(e)}); it is corrupt or "
                           "truncated", file=str(path)) from None
    with f:
        try:
            version = _attr(f, "keras_version") or _attr(f.get("model_weights"), "keras_version")
            backend = _attr(f, "backend") or _attr(f.get("model_weights"), "backend")
            config = _attr(f, "model_config")
        except Exception as e:
            raise CompileError(f"the HDF5 file's attributes cannot be read ({one_line(e)}); it "
                               "is corrupt or truncated", file=str(path)) from None
        v = _version(version)
        if v is not None and v[0] >= 3:
            keras3 = True
        else:
            keras3 = False
            spec, dialect = _read_legacy(f, path, version, v, backend, config)
    if keras3:
        return load_keras(path, input_shapes)
    return graph_from_spec(spec, path, dialect, input_shapes)


def _read_legacy(f, path: Path, version: str | None, v, backend: str | None, config):
    origin = f"Keras {version}" if version else "Keras 2 (version not recorded)"
    if backend and backend != "tensorflow":
        origin += f", {backend} backend"
    where = f"{path} ({origin})"
    if config is None:
        raise CompileError(
            "the file holds weights only, no model configuration (it was written by "
            "save_weights); save the whole model with model.save()", file=where)
    if v is not None and v[0] < 2:
        raise CompileError(f"files written by Keras {version} are not supported (supported: "
                           "Keras 2.x and 3.x); load it in Keras 2 and save it again",
                           file=where)
    try:
        top = json.loads(config)
    except ValueError as e:
        raise CompileError(f"the model_config attribute is not valid JSON ({one_line(e)}); "
                           "the file is corrupt", file=where) from None
    dialect = Dialect(origin=origin, hard_sigmoid_slope=0.2, legacy=True)
    reader = _Legacy(path, where, backend or "tensorflow")
    weights = reader.read_weights(f)
    if not isinstance(top, dict) or top.get("class_name") not in _MODELS:
        kind = top.get("class_name") if isinstance(top, dict) else type(top).__name__
        raise CompileError(f"the model_config is a {kind!r}, not a Sequential or functional "
                           "model", file=where)
    name = _config_name(top) or "model"
    return reader.model(top, name, weights), dialect


def _config_name(entry: dict) -> str:
    cfg = entry.get("config")
    return str(entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else "") or "")


def _batch_shape(cfg: dict) -> tuple[int, ...] | None:
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    if shape is None:
        return None
    return tuple(-1 if d is None else int(d) for d in list(shape)[1:])


class _Legacy:
    """Builds specs from a Keras 2 model config and the weights of its layer groups."""

    def __init__(self, path: Path, where: str, backend: str) -> None:
        self.path, self.where, self.backend = path, where, backend

    def fail(self, layer: str, msg: str):
        raise CompileError(msg, file=self.where, layer=layer)

    def read_weights(self, f) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Layer name -> [(weight name, array)] in the order Keras wrote them."""
        g = f["model_weights"] if "model_weights" in f else f
        out: dict[str, list[tuple[str, np.ndarray]]] = {}
        try:
            for lname in _attr(g, "layer_names") or []:
                lg = g[lname]
                out[lname] = [(n, np.asarray(lg[n])) for n in _attr(lg, "weight_names") or []]
        except Exception as e:  # missing groups, unreadable chunks
            raise CompileError(f"the layer weights cannot be read ({one_line(e)}); the file is "
                               "corrupt or truncated", file=self.where) from None
        return out

    # -- models ---------------------------------------------------------------------------

    def model(self, entry: dict, name: str, weights: dict[str, list]) -> ModelSpec:
        """``weights``: layer name -> [(weight name, array)] for the layers of this model."""
        cfg = entry.get("config")
        if entry.get("class_name") == "Sequential":
            layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers", [])
            shape = None
            body = []
            for e in layers:
                if e.get("class_name") == "InputLayer":
                    shape = _batch_shape(e.get("config", {}))
                else:
                    body.append(e)
            if shape is None and body and isinstance(body[0].get("config"), dict):
                shape = _batch_shape(body[0]["config"])
            if shape is None and isinstance(cfg, dict) and cfg.get("build_input_shape"):
                shape = _batch_shape({"batch_input_shape": cfg["build_input_shape"]})
            specs = [self.layer(e, weights) for e in body]
            return ModelSpec(name, True, specs, shape)
        if not isinstance(cfg, dict) or "layers" not in cfg:
            self.fail(name, "the functional model's config has no 'layers' list")
        m = ModelSpec(name, False, [], input_refs=_history_refs(cfg.get("input_layers", [])),
                      output_refs=_history_refs(cfg.get("output_layers", [])))
        for e in cfg["layers"]:
            lname = _config_name(e)
            if e.get("class_name") == "InputLayer":
                shape = _batch_shape(e.get("config", {}))
                if shape is None:
                    self.fail(lname, "the InputLayer has no batch_input_shape")
                m.layers.append(LayerSpec("InputLayer", {"name": lname}))
                m.calls.append(None)
                m.input_shapes[lname] = shape
            else:
                m.layers.append(self.layer(e, weights))
                m.calls.append(e.get("inbound_nodes") or [])
        return m

    def _split(self, name: str, entries: list, owned: list) -> dict[str, list]:
        """Give each sub-layer of a nested model its weights: a weight name such as
        ``dense_3/kernel:0`` or ``gru/gru_cell/kernel:0`` names its layer in a path part."""
        subs = {_config_name(e) for e in entries}
        out: dict[str, list] = {}
        for wname, arr in owned:
            parts = wname.split("/")[:-1]
            owner = next((p for p in parts if p in subs), None)
            if owner is None:
                self.fail(name, f"weight '{wname}' of the nested model names none of its layers "
                                f"({', '.join(sorted(subs))})")
            out.setdefault(owner, []).append((wname, arr))
        return out

    # -- layers ---------------------------------------------------------------------------

    def layer(self, entry: dict, weights: dict[str, list]) -> Spec:
        cls = entry.get("class_name")
        name = _config_name(entry)
        if not isinstance(cls, str) or not isinstance(entry.get("config"), (dict, list)):
            self.fail(name, "a layer entry of the model_config has no class_name/config")
        if cls in _MODELS:
            cfg = entry["config"]
            inner = cfg if isinstance(cfg, list) else cfg.get("layers", [])
            sub = self._split(name, inner, weights.get(name, []))
            return self.model(entry, name, sub)
        if cls not in SUPPORTED_LAYERS:
            return LayerSpec(cls, {"name": name})   # the lowering names it as unsupported
        cfg = dict(entry["config"])
        cfg["name"] = name
        w = self._short(name, weights.get(name, []))
        return self._normalise(cls, cfg, w)

    def _short(self, layer: str, owned: list) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for wname, arr in owned:
            key = wname.split("/")[-1].split(":")[0]
            if key in out:
                self.fail(layer, f"two weights are named '{key}' ({wname})")
            out[key] = arr
        return out

    def _normalise(self, cls: str, cfg: dict, w: dict[str, np.ndarray]) -> LayerSpec:
        """The config as the shared lowering reads it, with this file's meaning."""
        name = cfg["name"]
        if cls in ("SimpleRNN", "GRU", "LSTM"):
            if cfg.pop("time_major", False):
                self.fail(name, f"{cls} with time_major=True is not supported (supported: "
                                "time_major=False, inputs shaped (batch, time, features))")
            if cls == "GRU" and "reset_after" not in cfg:
                # Keras before 2.1 had no reset_after: its GRU computed reset-before. The bias
                # shape tells the two apart: (2, 3H) is reset-after.
                bias = w.get("bias")
                cfg["reset_after"] = bias is not None and np.ndim(bias) == 2
        if cls in _THEANO_FLIPPED and self.backend == "theano" and "kernel" in w:
            k = np.asarray(w["kernel"])
            rank = k.ndim - 2
            w["kernel"] = np.ascontiguousarray(k[(slice(None, None, -1),) * rank])
        if cls == "Normalization":
            for key in ("mean", "variance"):
                if key not in w and cfg.get(key) is not None:
                    w[key] = np.asarray(cfg[key], np.float64)
        inner = None
        if cls == "TimeDistributed":
            sub = cfg.get("layer") or {}
            icls = sub.get("class_name", "?")
            icfg = dict(sub.get("config") or {})
            icfg["name"] = name
            inner = (self._normalise(icls, icfg, w) if icls in SUPPORTED_LAYERS
                     else LayerSpec(icls, icfg))
        return LayerSpec(cls, cfg, w, inner)
