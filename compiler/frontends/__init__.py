"""Front-ends: read a model file into the IR. The format is found from the file's bytes."""

from __future__ import annotations

from pathlib import Path

from ..errors import CompileError
from ..ir import Graph
from .shapes import InputShapes, normalise

#: Formats by the magic bytes at the start of the file.
FORMATS = {
    "keras": "Keras v3 archive (.keras)",
    "h5": "Keras HDF5 (.h5)",
    "tflite": "TensorFlow Lite flatbuffer (.tflite)",
    "onnx": "ONNX protobuf (.onnx)",
}

_EXT = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".tflite": "tflite", ".onnx": "onnx"}


def sniff(path: Path) -> str:
    """Return the format of ``path`` from its content, checking that the extension agrees."""
    try:
        head = path.read_bytes()[:16]
    except OSError as e:
        raise CompileError(f"cannot read model file: {e.strerror}", file=str(path)) from None
    if head.startswith(b"PK\x03\x04"):
        fmt = "keras"
    elif head.startswith(b"\x89HDF\r\n\x1a\n"):
        fmt = "h5"
    elif head[4:8] == b"TFL3":
        fmt = "tflite"
    elif head[:1] == b"\x08":  # ONNX ModelProto starts with field 1 (ir_version), varint
        fmt = "onnx"
    else:
        raise CompileError(
            "not a model file this compiler reads (supported: "
            + ", ".join(FORMATS.values()) + "); the file may be corrupt or truncated",
            file=str(path),
        )
    ext_fmt = _EXT.get(path.suffix.lower())
    if ext_fmt is not None and ext_fmt != fmt:
        raise CompileError(
            f"extension '{path.suffix}' says {FORMATS[ext_fmt]} but the content is "
            f"{FORMATS[fmt]}; rename the file or export it again",
            file=str(path),
        )
    return fmt


def load_model(path: str | Path, input_shapes: InputShapes = None,
               allow_lambda: bool = False) -> Graph:
    """Read ``path`` (.keras, .h5, .tflite or .onnx) into a validated :class:`Graph`.

    ``input_shapes`` fixes dynamic input dimensions (a ``None`` time axis, an ONNX dim_param):
    {input name: shape without the batch axis}, or one shape for a one-input model.
    ``allow_lambda`` lets Keras load Lambda layers (it runs the file's Python code).
    """
    path = Path(path)
    normalise(input_shapes)  # bad values are refused before the (slow) read
    fmt = sniff(path)
    try:
        return _load(path, fmt, input_shapes, allow_lambda)
    except CompileError:
        raise
    except (MemoryError, RecursionError) as e:
        raise CompileError(f"the model is too large or deeply nested to read ({type(e).__name__})",
                           file=str(path)) from None
    except Exception as e:  # a damaged file can break a parser in any of many ways
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CompileError(f"{FORMATS[fmt]} could not be converted ({type(e).__name__}: {msg}); "
                           "the file may be corrupt or truncated", file=str(path)) from None


def _load(path: Path, fmt: str, input_shapes: InputShapes = None,
          allow_lambda: bool = False) -> Graph:
    if fmt == "keras":
        from .keras import load_keras

        graph = load_keras(path, input_shapes, allow_lambda=allow_lambda)
    elif fmt == "h5":
        from .keras import ALLOW_LAMBDA
        from .keras_h5 import load_h5  # Keras 2 files read directly, Keras 3 ones by Keras

        token = ALLOW_LAMBDA.set(allow_lambda)
        try:
            graph = load_h5(path, input_shapes)
        finally:
            ALLOW_LAMBDA.reset(token)
    elif fmt == "onnx":
        from .onnx import load_onnx

        graph = load_onnx(path, input_shapes)
    elif fmt == "tflite":
        from .tflite import load_tflite

        graph = load_tflite(path, input_shapes)
    else:
        raise CompileError(f"{FORMATS[fmt]} is not supported yet", file=str(path))
    graph.validate()
    return graph
