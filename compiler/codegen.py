"""C back-end: turn an optimised IR graph into ``NAME.h`` / ``NAME.c`` through Jinja2 templates.

All decisions (buffer offsets, symbol names, literal formatting, step order) are made here;
the templates only lay out C syntax. The fixed runtime (``firmware/runtime``) is copied next
to the generated files so ``cc -std=c99 -c DIR/*.c`` builds them with no include path.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from . import __version__
from .errors import CompileError
from .ir import Graph
from .passes import MemoryPlan, plan_memory

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # repo root, or site-packages/nnmpc
TEMPLATE_DIR = PACKAGE_ROOT / "templates"
RUNTIME_DIR = PACKAGE_ROOT / "firmware" / "runtime"
#: Runtime files every generated model needs, copied into the output folder.
RUNTIME_FILES = ("nnmpc_nn.h", "nnmpc_nn.c")
RUNTIME_VERSION = 1

_ACT_ENUM = {
    "linear": "NNMPC_ACT_LINEAR",
    "relu": "NNMPC_ACT_RELU",
    "tanh": "NNMPC_ACT_TANH",
    "sigmoid": "NNMPC_ACT_SIGMOID",
}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def c_float(v: float) -> str:
    """A C float literal that reads back as exactly the same float32."""
    s = f"{float(np.float32(v)):.9g}"
    if s in ("inf", "-inf", "nan"):
        raise ValueError(f"non-finite constant {s}")
    if "." not in s and "e" not in s:
        s += ".0"
    return s + "f"


def c_array(values: np.ndarray, per_line: int = 8) -> str:
    flat = np.asarray(values, dtype=np.float32).ravel()
    lines = []
    for i in range(0, flat.size, per_line):
        lines.append("    " + ", ".join(c_float(v) for v in flat[i:i + per_line]) + ",")
    return "\n".join(lines)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise CompileError(f"model name '{name}' is not a C identifier (letters, digits, _)")
    return name


@dataclass
class ConstArray:
    symbol: str
    size: int
    body: str
    comment: str


@dataclass
class Step:
    """One kernel call in predict, with what the fused predict+Jacobian needs beside it."""

    op: str
    comment: str
    x: str
    y: str
    n_out: int
    n_in: int
    act: str
    W: str = ""
    b: str = ""
    t_in: str = "NULL"   # incoming tangent buffer (NULL: identity)
    t_out: str = ""      # outgoing tangent buffer
    deriv: bool = False  # whether an activation derivative is needed


@dataclass
class ModelSource:
    name: str
    guard: str
    version: str
    model_hash: str
    source_file: str
    input_size: int
    output_size: int
    arena_floats: int
    plan_floats: int
    params: int
    consts: list[ConstArray] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    deriv_buf: str = ""
    jac_out_buf: str = ""
    runtime_version: int = RUNTIME_VERSION


def _symbol(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "t"
    sym, i = base, 1
    while sym in used:
        i += 1
        sym = f"{base}_{i}"
    used.add(sym)
    return sym


def lower(graph: Graph, name: str) -> ModelSource:
    """Decide every buffer and symbol of the generated C for ``graph``."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CompileError(
            f"models with {len(graph.inputs)} inputs and {len(graph.outputs)} outputs are not "
            "supported yet (one input, one output)", file=graph.source_file)
    plan: MemoryPlan = plan_memory(graph)
    k = graph.input_size
    n_max = max([graph.tensors[t].size for n in graph.nodes for t in n.outputs] + [1])
    # Arena layout: [forward plan | derivative | tangent A | tangent B | output scratch].
    deriv_off = plan.size
    tan_a = deriv_off + n_max
    tan_b = tan_a + n_max * k
    out_scratch = tan_b + n_max * k
    arena = out_scratch + graph.output_size

    used: set[str] = set()
    src = ModelSource(
        name=name, guard=f"{name.upper()}_H", version=__version__,
        model_hash=graph.content_hash()[:16], source_file=Path(graph.source_file).name,
        input_size=graph.input_size, output_size=graph.output_size,
        arena_floats=arena, plan_floats=plan.size, params=graph.param_count(),
        deriv_buf=f"{name}_arena + {deriv_off}", jac_out_buf=f"{name}_arena + {out_scratch}",
    )

    def buf(t: str) -> str:
        if t in graph.inputs:
            return "input"
        if t in graph.outputs:
            return "output"
        return f"{name}_arena + {plan.offsets[t]}"

    consts: dict[str, str] = {}
    for t in sorted({i for n in graph.nodes for i in n.inputs if graph.tensors[i].is_const},
                    key=lambda t: [i for n in graph.nodes for i in n.inputs].index(t)):
        sym = f"{name}_{_symbol(t, used)}"
        consts[t] = sym
        tensor = graph.tensors[t]
        src.consts.append(ConstArray(sym, tensor.size, c_array(tensor.data),
                                     f"{t} {list(tensor.shape)}"))

    tangents = [f"{name}_arena + {tan_a}", f"{name}_arena + {tan_b}"]
    t_in = "NULL"
    for i, node in enumerate(graph.nodes):
        x, y = node.inputs[0], node.outputs[0]
        act = node.attrs.get("activation", "linear")
        last = i == len(graph.nodes) - 1
        t_out = "jacobian" if last else tangents[i % 2]
        n_out, n_in = graph.tensors[y].size, graph.tensors[x].size
        step = Step(op=node.op, comment=f"{node.source or node.name}: {node.op} {act}",
                    x=buf(x), y=buf(y), n_out=n_out, n_in=n_in, act=_ACT_ENUM[act],
                    t_in=t_in, t_out=t_out, deriv=act != "linear")
        if node.op == "dense":
            step.W, step.b = consts[node.inputs[1]], consts[node.inputs[2]]
        elif node.op == "activation" and t_in == "NULL":
            raise CompileError("a model starting with an activation is not supported yet",
                               file=graph.source_file, layer=node.source)
        src.steps.append(step)
        t_in = t_out
    return src


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(graph: Graph, name: str = "model") -> dict[str, str]:
    """Render all output files for ``graph`` into memory: ``{filename: text}``."""
    check_name(name)
    src = lower(graph, name)
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
