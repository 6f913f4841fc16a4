"""The pipeline's boundaries, read from the source: every import in compiler/ and host/, at
module level and inside functions, resolved to the module it names.

Rules (docs/ARCHITECTURE.md):
- no import cycle anywhere;
- the compiler never imports the host;
- the IR layer (ir, passes, reference, errors, version) imports no front-end and no back-end;
- a front-end never imports the back-end or reads templates/; the back-end never imports a
  front-end;
- the host stages run one way: plants -> learn -> build -> link -> loop, then bench, sweep and
  cli on top; a stage imports only the shared modules (errors, progress, toolchain) and
  earlier stages;
  the plants import no compiler.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from support import REPO

ROOTS = {"compiler": "nnmpc.compiler", "host": "nnmpc.host"}
IR_LAYER = {"nnmpc.compiler.ir", "nnmpc.compiler.passes", "nnmpc.compiler.reference",
            "nnmpc.compiler.errors", "nnmpc.compiler.version"}
HOST_SHARED = {"errors", "progress", "toolchain"}
HOST_STAGES = ["plants", "learn", "build", "link", "loop", "bench", "sweep", "cli"]


def modules(repo: Path) -> dict[str, tuple[Path, bool]]:
    """{module name: (file, is package)} for every .py file under compiler/ and host/."""
    out = {}
    for folder, pkg in ROOTS.items():
        for f in sorted((repo / folder).rglob("*.py")):
            parts = list(f.relative_to(repo / folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg or parts[-1] == "__main__":
                parts = parts[:-1] if is_pkg else parts
            name = ".".join([pkg, *parts])
            if name == "nnmpc.host.api":  # host/api/ is installed as the top package `nnmpc`
                name = "nnmpc"
            out[name] = (f, is_pkg)
    return out


def imports(name: str, path: Path, is_pkg: bool, known: set[str]) -> list[tuple[str, int]]:
    """(module, line) for each nnmpc module that ``name`` imports, anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{a.name}"
                found.append((sub if sub in known else mod, node.lineno))
    return [(m, ln) for m, ln in found if m.startswith("nnmpc.")]


def import_graph(repo: Path) -> dict[str, list[tuple[str, int]]]:
    mods = modules(repo)
    known = set(mods)
    return {m: imports(m, f, pkg, known) for m, (f, pkg) in mods.items()}


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan)."""
    edges = {m: sorted({t for t, _ in deps if t in graph}) for m, deps in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _stage(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "host" else None


def violations(repo: Path) -> list[str]:
    """Every broken rule, one line each (file:line, importer -> imported, the rule)."""
    graph = import_graph(repo)
    files = modules(repo)
    bad = [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    for mod, deps in graph.items():
        where = files[mod][0].relative_to(repo)
        for dep, line in deps:
            at = f"{where}:{line}: {mod} imports {dep}"
            if mod.startswith("nnmpc.compiler") and dep.startswith("nnmpc.host"):
                bad.append(f"{at}: the compiler never imports the host")
            if mod in IR_LAYER and dep.startswith(("nnmpc.compiler.frontends",
                                                   "nnmpc.compiler.backend")):
                bad.append(f"{at}: the IR layer imports no front-end or back-end")
            if mod.startswith("nnmpc.compiler.frontends") and dep.startswith(
                    ("nnmpc.compiler.backend", "nnmpc.templates")):
                bad.append(f"{at}: a front-end never imports the back-end or templates")
            if mod.startswith("nnmpc.compiler.backend") and dep.startswith(
                    "nnmpc.compiler.frontends"):
                bad.append(f"{at}: the back-end never imports a front-end")
            if mod.startswith("nnmpc.compiler.") and dep == "nnmpc.compiler":
                bad.append(f"{at}: only users import the compiler's facade")
            if mod != "nnmpc" and dep == "nnmpc":
                bad.append(f"{at}: only users import the `nnmpc` facade")
            src, dst = _stage(mod), _stage(dep)
            if src == "plants" and dep.startswith("nnmpc.compiler"):
                bad.append(f"{at}: the plants import no compiler")
            if src in HOST_STAGES and dst in HOST_STAGES and \
                    HOST_STAGES.index(dst) > HOST_STAGES.index(src):
                bad.append(f"{at}: host stage '{src}' imports the later stage '{dst}'")
            if src in HOST_SHARED and dst in HOST_STAGES:
                bad.append(f"{at}: a shared host module imports the stage '{dst}'")
    for f in (repo / "compiler" / "frontends").rglob("*.py"):  # templates read by path
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("templates", "templates/"):
                bad.append(f"{f.relative_to(repo)}:{node.lineno}: a front-end reads templates/")
    return bad


def test_the_pipeline_boundaries_hold():
    assert violations(REPO) == []


def test_every_import_is_seen_including_imports_inside_functions():
    graph = import_graph(REPO)
    deps = {d for d, _ in graph["nnmpc.host.loop.nets"]}
    assert "nnmpc.host.learn.datasets" in deps  # imported inside train_default
    assert "nnmpc.compiler" in deps
    assert {d for d, _ in graph["nnmpc.compiler.frontends.tflite"]} >= {
        "nnmpc.compiler.frontends.tflite_int8", "nnmpc.compiler.ir"}
    assert len(graph) > 60


@pytest.fixture
def tree(tmp_path) -> Path:
    for folder in ROOTS:
        shutil.copytree(REPO / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(path: Path, line: str) -> None:
    text = path.read_text()
    path.write_text(text + f"\n\ndef _planted():\n    {line}\n")


def test_a_planted_cycle_inside_a_function_fails(tree):
    _plant(tree / "compiler" / "passes.py", "from .backend import emit  # noqa")
    bad = violations(tree)
    assert any(b.startswith("import cycle:") and "nnmpc.compiler.passes" in b
               and "nnmpc.compiler.backend.emit" in b for b in bad), bad


def test_each_planted_boundary_crossing_fails(tree):
    _plant(tree / "compiler" / "ir.py", "from nnmpc.host.plants import get_plant  # noqa")
    _plant(tree / "compiler" / "reference.py", "from .backend import cost  # noqa")
    _plant(tree / "compiler" / "frontends" / "onnx.py", "from ..backend.codegen import c_float")
    _plant(tree / "compiler" / "backend" / "cost.py", "from ..frontends import keras")
    _plant(tree / "host" / "plants" / "msd.py", "from nnmpc.compiler import compile_model")
    _plant(tree / "host" / "learn" / "train.py", "from ..loop import reference")
    bad = "\n".join(violations(tree))
    for rule in ("the compiler never imports the host",
                 "the IR layer imports no front-end or back-end",
                 "a front-end never imports the back-end",
                 "the back-end never imports a front-end",
                 "the plants import no compiler",
                 "host stage 'learn' imports the later stage 'loop'"):
        assert rule in bad, rule


def test_import_nnmpc_exposes_the_documented_api():
    """`import nnmpc` is not an empty namespace: the objects behind the commands, each with a
    docstring, and every name docs/PYTHON.md uses."""
    import re

    import nnmpc

    assert nnmpc.__version__ and nnmpc.__doc__
    for name in nnmpc.__all__:
        obj = getattr(nnmpc, name)
        if callable(obj):
            assert obj.__doc__, f"nnmpc.{name} has no docstring"
    doc = (REPO / "docs" / "PYTHON.md").read_text()
    used = set(re.findall(r"\bnnmpc\.([A-Za-z_]\w*)", doc)) - {"host", "compiler"}
    assert used and used <= set(nnmpc.__all__), used - set(nnmpc.__all__)
