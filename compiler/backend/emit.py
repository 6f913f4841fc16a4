"""Render an optimised IR graph to C: pick the lowering (float or int8), fill the templates,
copy the runtime, and write the files whole or not at all."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import jinja2

from ..errors import CompileError
from ..ir import Graph
from .codegen import RUNTIME_DIR, RUNTIME_FILES, TEMPLATE_DIR, ModelSource, check_name, lower_float
from .int8 import lower_int8


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The mode of every generated file: 0666 less the process's umask, as ``open`` would give.
_FILE_MODE = 0o666 & ~_umask()


def lower(graph: Graph, name: str, jacobian: str = "auto") -> ModelSource:
    """Decide every call, buffer and symbol of the generated C for ``graph``."""
    if graph.int8 is not None:
        return lower_int8(graph, name)
    return lower_float(graph, name, jacobian)


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # One environment for the process: it caches the parsed templates (and reloads one whose
    # file changed); building one per call cost about 23 ms of every compile.
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
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in files.items():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{fname}.")
        try:
            os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; generated sources are ordinary files
            with os.fdopen(fd, "w", newline="\n") as fh:
                fh.write(text)
            os.replace(tmp, out / fname)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(out / fname)
    return written


def check_out_dir(out: Path) -> None:
    """Refuse an output path that cannot become a folder, before any work is done."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise CompileError(f"output folder {out}: {p} exists and is not a folder")
            if not os.access(p, os.W_OK | os.X_OK) and p == out:
                raise CompileError(f"output folder {out}: not writable")
            return
