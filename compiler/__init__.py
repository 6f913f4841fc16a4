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


def load_model(path: str | Path) -> Graph:
    """Read a model file into the (validated, unoptimised) IR."""
    from .frontends import load_model as _load

    return _load(path)


def compile_model(model: str | Path | Graph, out_dir: str | Path, name: str = "model",
                  jacobian: str = "auto") -> list[Path]:
    """Compile ``model`` (a file or a Graph) to C in ``out_dir``; return the files written.

    ``jacobian`` picks how ``NAME_jacobian`` is computed: ``forward`` mode (cost ~ INPUT_SIZE
    model passes), ``reverse`` mode (~ OUTPUT_SIZE passes) or ``auto`` (the cheaper one).
    Nothing is written unless every step succeeds.
    """
    from .backend.codegen import check_name
    from .backend.emit import check_out_dir, render, write_files
    from .passes import optimise

    check_name(name)
    check_out_dir(Path(out_dir))
    graph = model if isinstance(model, Graph) else load_model(model)
    graph = optimise(graph)
    files = render(graph, name, jacobian)
    return write_files(files, out_dir)
