"""nnmpc compiler: model files (Keras, TFLite, ONNX) -> IR -> optimised IR -> C99.

A library on its own: it imports nothing from ``nnmpc.host``. Data flows one way:
``frontends/`` (model files) -> ``ir`` (the one contract) -> ``passes`` -> ``backend/`` (C).

>>> from nnmpc.compiler import compile_model
>>> compile_model("fk.keras", "build/model", name="fk")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from .errors import CompileError
from .ir import Graph
from .version import __version__

__all__ = ["CompileError", "Graph", "compile_model", "load_model", "__version__"]


def load_model(path: str | Path, input_shapes=None, allow_lambda: bool = False) -> Graph:
    """Read a model file into the (validated, unoptimised) IR.

    ``input_shapes`` fixes the dynamic dimensions of the inputs (a ``None`` time axis in
    Keras, a symbolic ONNX dimension): ``{input name: shape}`` with shapes as tuples without
    the batch axis, e.g. ``{"x": (20, 3)}``, or one tuple for a one-input model. A given size
    that contradicts a fixed one, or a name that is not an input, is a :class:`CompileError`.
    ``allow_lambda`` loads Keras Lambda layers, which runs Python code stored in the file (only
    for a trusted file); those that are linear maps of their input are compiled.
    """
    from .frontends import load_model as _load

    return _load(path, input_shapes, allow_lambda=allow_lambda)


def compile_model(model: str | Path | Graph, out_dir: str | Path, name: str = "model",
                  jacobian: str = "auto", input_shapes=None,
                  allow_lambda: bool = False) -> list[Path]:
    """Compile ``model`` (a file or a Graph) to C in ``out_dir``; return the files written.

    ``jacobian`` picks how ``NAME_jacobian`` is computed: ``forward`` mode (cost ~ INPUT_SIZE
    model passes), ``reverse`` mode (~ OUTPUT_SIZE passes) or ``auto`` (the cheaper one).
    ``input_shapes`` fixes dynamic input dimensions, as for :func:`load_model` (a file only:
    a Graph's shapes are already fixed); so does ``allow_lambda`` (see :func:`load_model`).
    Nothing is written unless every step succeeds.
    """
    from .backend.codegen import check_name
    from .backend.emit import check_out_dir, render, write_files
    from .passes import optimise

    check_name(name)
    check_out_dir(Path(out_dir))
    if isinstance(model, Graph) and input_shapes is not None:
        raise CompileError("input_shapes applies to a model file; a Graph's shapes are fixed "
                           "(pass input_shapes to load_model)")
    graph = (model if isinstance(model, Graph)
             else load_model(model, input_shapes, allow_lambda=allow_lambda))
    graph = optimise(graph)
    files = render(graph, name, jacobian)
    return write_files(files, out_dir)
