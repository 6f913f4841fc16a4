"""Render an optimised IR graph to C: pick the lowering (float or int8), fill the templates,
copy the runtime, and write the files whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jinja2

from ..ir import Graph
from .codegen import RUNTIME_DIR, RUNTIME_FILES, TEMPLATE_DIR, ModelSource, check_name, lower_float
from .int8 import lower_int8


def lower(graph: Graph, name: str, jacobian: str = "auto") -> ModelSource:
    """Decide every call, buffer and symbol of the generated C for ``graph``."""
    if graph.int8 is not None:
        return lower_int8(graph, name)
    return lower_float(graph, name, jacobian)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(graph: Graph, name: str = "model", jacobian: str = "auto") -> dict[str, str]:
    """Render all output files for ``graph`` into memory: ``{filename: text}``."""
    check_name(name)
    src = lower(graph, name, jacobian)
    env = _env()
    files = {
        f"{name}.h": env.get_template("model.h.j2").render(m=src),
        f"{name}.c": env.get_template("model.c.j2").render(m=src),
    }
    for f in RUNTIME_FILES:
        files[f] = (RUNTIME_DIR / f).read_text()
    return files


def write_files(files: dict[str, str], out_dir: str | Path) -> list[Path]:
    """Write rendered files; each appears whole (temp file + rename) or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in files.items():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{fname}.")
        try:
            with os.fdopen(fd, "w", newline="\n") as fh:
                fh.write(text)
            os.replace(tmp, out / fname)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(out / fname)
    return written
