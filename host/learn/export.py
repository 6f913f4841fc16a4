"""Export a trained raw-units Keras model: .keras, .tflite (float and full-integer int8),
.onnx, and a metadata JSON that says what goes in and out.

Every file is first written into a temporary folder next to the destination and moved into
place only when all exports have succeeded, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from .mlenv import import_keras

FORMAT_VERSION = 1


@contextlib.contextmanager
def _quiet():
    """Silence the converters' stdout/stderr chatter (Python prints and C++ logs alike);
    replay it if the block fails."""
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        except BaseException:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sink.seek(0)
            tail = sink.read().decode(errors="replace").strip().splitlines()[-20:]
            if tail:
                print("\n".join(tail), file=sys.stderr)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def fixed_batch(model):
    """The same model with batch size 1 for recurrent nets: the converters then fold the
    initial-state shape arithmetic (SHAPE, FILL) into constants. Dense-only models are
    returned as they are."""
    keras = import_keras()
    if not any(isinstance(l, keras.layers.RNN) for l in model.layers):
        return model
    inp = keras.Input(tuple(model.inputs[0].shape[1:]), batch_size=1, name=model.inputs[0].name)
    clone = keras.models.clone_model(model, input_tensors=inp)
    clone.set_weights(model.get_weights())
    return clone


def tflite_bytes(model, representative: np.ndarray | None = None) -> bytes:
    """Convert to a TFLite flatbuffer: float32, or full-integer int8 (int8 input and output
    tensors, int8 weights and activations) calibrated on ``representative``."""
    import tensorflow as tf

    import_keras()
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed_batch(model))
    if representative is not None:
        rep = np.asarray(representative, dtype=np.float32)

        def gen():
            for row in rep:
                yield [row[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with _quiet():
        return conv.convert()


def onnx_bytes(model, opset: int = 17) -> bytes:
    """Convert to ONNX through tf2onnx (from a tf.function: Keras 3 models need that path)."""
    import tensorflow as tf

    import_keras()
    import tf2onnx

    model = fixed_batch(model)
    shape = (model.inputs[0].shape[0],) + tuple(int(d) for d in model.inputs[0].shape[1:])
    spec = [tf.TensorSpec(shape, tf.float32, name="input")]
    with _quiet():
        proto, _ = tf2onnx.convert.from_function(tf.function(model), input_signature=spec,
                                                 opset=opset, output_path=None)
    return proto.SerializeToString()


def _tflite_io(data: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():
        it = Interpreter(model_content=data)
    info = {}
    for key, dets in (("input", it.get_input_details()), ("output", it.get_output_details())):
        d = dets[0]
        scale, zero = d["quantization"]
        info[key] = {"dtype": np.dtype(d["dtype"]).name, "shape": [int(v) for v in d["shape"]],
                     "scale": float(scale), "zero_point": int(zero)}
    return info


def export_all(model, out_dir: str | Path, stem: str, metadata: dict,
               representative: np.ndarray,
               formats: tuple[str, ...] = ("keras", "tflite", "int8", "onnx"),
               extra_files: dict[str, Path] | None = None) -> list[Path]:
    """Write ``stem.keras``, ``stem.tflite``, ``stem_int8.tflite``, ``stem.onnx`` and
    ``stem.json`` into ``out_dir``, and copy ``extra_files`` (final name -> file already
    written) in with them; return the paths. All or nothing."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NnmpcError(f"cannot create output folder {out_dir}: {e.strerror}") from None
    names = {"keras": f"{stem}.keras", "tflite": f"{stem}.tflite",
             "int8": f"{stem}_int8.tflite", "onnx": f"{stem}.onnx"}
    for fmt in formats:
        if fmt not in names:
            raise NnmpcError(f"unknown export format '{fmt}' (known: {', '.join(names)})")
    meta = dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    meta["files"] = {}
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=out_dir))
    try:
        written = []
        for fmt in formats:
            path = staging / names[fmt]
            if fmt == "keras":
                model.save(path)
                meta["files"]["keras"] = {"file": names[fmt]}
            elif fmt in ("tflite", "int8"):
                data = tflite_bytes(model, representative if fmt == "int8" else None)
                path.write_bytes(data)
                entry = {"file": names[fmt], **_tflite_io(data)}
                if fmt == "int8":
                    entry["calibration_samples"] = int(len(representative))
                meta["files"][fmt] = entry
            elif fmt == "onnx":
                path.write_bytes(onnx_bytes(model))
                meta["files"]["onnx"] = {"file": names[fmt], "input": "input"}
            else:
                raise NnmpcError(f"unknown export format '{fmt}' "
                                 f"(known: {', '.join(names)})")
            written.append(path)
        js = staging / f"{stem}.json"
        js.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        written.append(js)
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, staging / name)
            written.append(staging / name)
        final = []
        for p in written:
            dest = out_dir / p.name
            os.replace(p, dest)
            final.append(dest)
        return final
    except NnmpcError:
        raise
    except Exception as e:  # a converter failed: say which model and why, in one line
        msg = str(e).strip().splitlines()
        raise NnmpcError(f"exporting {stem} failed: {type(e).__name__}: "
                         f"{msg[-1] if msg else ''}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def representative_subset(x: np.ndarray, n: int = 200, seed: int = 0,
                          y: np.ndarray | None = None) -> np.ndarray:
    """Training inputs to calibrate int8 quantisation on: the rows where each input (and each
    output, if ``y`` is given) reaches its minimum and maximum, so the calibrated ranges cover
    the data, topped up with a random sample to ``n`` rows."""
    flat = np.asarray(x).reshape(len(x), -1)
    cols = [flat] + ([np.asarray(y).reshape(len(y), -1)] if y is not None else [])
    keep = {int(i) for c in cols for i in (*c.argmin(axis=0), *c.argmax(axis=0))}
    rng = np.random.default_rng(seed)
    rest = rng.permutation(np.setdiff1d(np.arange(len(x)), sorted(keep)))
    idx = sorted(keep) + sorted(rest[:max(0, n - len(keep))].tolist())
    return np.asarray(x[np.sort(idx)], dtype=np.float32)


def run_tflite(path_or_bytes, x: np.ndarray) -> np.ndarray:
    """Run a .tflite model on float inputs (quantising and dequantising int8 I/O), row by row
    (the exported models have batch size 1)."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():  # the XNNPACK delegate announces itself on stderr
        if isinstance(path_or_bytes, (bytes, bytearray)):
            it = Interpreter(model_content=bytes(path_or_bytes))
        else:
            it = Interpreter(model_path=str(path_or_bytes))
        it.allocate_tensors()
    di, do = it.get_input_details()[0], it.get_output_details()[0]
    si, zi = di["quantization"]
    so, zo = do["quantization"]
    out = []
    for row in np.asarray(x, dtype=np.float32):
        v = row[None]
        if di["dtype"] == np.int8:
            v = np.clip(np.round(v / si) + zi, -128, 127).astype(np.int8)
        it.set_tensor(di["index"], v)
        it.invoke()
        r = it.get_tensor(do["index"])
        if do["dtype"] == np.int8:
            r = (r.astype(np.float32) - zo) * so
        out.append(r[0])
    return np.array(out)


def run_onnx(path_or_bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    src = path_or_bytes
    src = bytes(src) if isinstance(src, (bytes, bytearray)) else str(src)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.asarray(x, dtype=np.float32)
    if inp.shape[0] == 1:  # a fixed-batch export: row by row
        return np.concatenate([sess.run(None, {inp.name: row[None]})[0] for row in x])
    return sess.run(None, {inp.name: x})[0]
