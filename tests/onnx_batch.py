"""Many small compiled models in one host program: the ONNX node-case and op tests compile
hundreds of tiny graphs, so their C is built with a few cc calls (in parallel) into one
executable that runs model k on request, instead of one build per model."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nnmpc.compiler.backend.emit import render
from nnmpc.compiler.passes import optimise

CFLAGS = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Wdouble-promotion", "-Werror"]

MAIN = r"""
/* Runs model argv[1] on argv[2] inputs read from stdin (raw float32); writes each one's outputs
 * and then its Jacobian (from NAME_predict_jacobian; exit 3 if its outputs differ from
 * NAME_predict's). */
#include <stdio.h>
#include <stdlib.h>
%(protos)s
typedef struct { int n_in, n_out; void (*p)(const float *, float *);
                 void (*pj)(const float *, float *, float *); } entry_t;
static const entry_t models[] = {
%(table)s
};
int main(int argc, char **argv)
{
    const entry_t *m;
    long n, i;
    int k;
    float *x, *y, *y2, *J;
    if (argc < 3) return 2;
    m = &models[atoi(argv[1])];
    n = atol(argv[2]);
    x = malloc(sizeof(float) * (size_t)(m->n_in + 1));
    y = malloc(sizeof(float) * (size_t)(m->n_out + 1));
    y2 = malloc(sizeof(float) * (size_t)(m->n_out + 1));
    J = malloc(sizeof(float) * (size_t)(m->n_out * m->n_in + 1));
    for (i = 0; i < n; ++i) {
        if (fread(x, sizeof(float), (size_t)m->n_in, stdin) != (size_t)m->n_in) return 1;
        m->p(x, y);
        m->pj(x, y2, J);
        for (k = 0; k < m->n_out; ++k) if (y[k] != y2[k]) return 3;
        fwrite(y, sizeof(float), (size_t)m->n_out, stdout);
        fwrite(J, sizeof(float), (size_t)(m->n_out * m->n_in), stdout);
    }
    return 0;
}
"""


class Batch:
    """Compiled models ``name -> index``; :meth:`run` gives outputs and Jacobians."""

    def __init__(self, exe: Path, sizes: dict[str, tuple[int, int, int]]) -> None:
        self.exe, self.sizes = exe, sizes

    def run(self, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k, n_in, n_out = self.sizes[name]
        x = np.ascontiguousarray(x, np.float32).reshape(-1, n_in)
        out = subprocess.run([str(self.exe), str(k), str(len(x))], input=x.tobytes(),
                             capture_output=True, check=True).stdout
        r = np.frombuffer(out, np.float32).reshape(len(x), n_out + n_out * n_in)
        return r[:, :n_out], r[:, n_out:].reshape(len(x), n_out, n_in)


def build_batch(graphs: list[tuple[str, object]], work: Path, jobs: int = 2) -> Batch:
    """Render every (name, Graph) into ``work`` and build them into one program."""
    work.mkdir(parents=True, exist_ok=True)
    protos, table, sizes, sources = [], [], {}, []
    runtime_done = False
    for k, (name, graph) in enumerate(graphs):
        files = render(optimise(graph), name)
        for fname, text in files.items():
            if fname.startswith(name + ".") or not runtime_done:
                (work / fname).write_text(text)
        runtime_done = True
        sources.append(work / f"{name}.c")
        protos.append(f"void {name}_predict(const float *, float *);\n"
                      f"void {name}_predict_jacobian(const float *, float *, float *);")
        table.append(f"    {{{graph.input_size}, {graph.output_size}, {name}_predict, "
                     f"{name}_predict_jacobian}},")
        sizes[name] = (k, graph.input_size, graph.output_size)
    (work / "batch_main.c").write_text(MAIN % {"protos": "\n".join(protos),
                                               "table": "\n".join(table)})
    sources += [work / "nnmpc_nn.c", work / "batch_main.c"]
    chunks = [sources[i::jobs] for i in range(jobs)]

    def cc(chunk: list[Path]) -> subprocess.CompletedProcess:
        return subprocess.run(["cc", *CFLAGS, "-c", *map(str, chunk)], cwd=work,
                              capture_output=True, text=True)

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(cc, [c for c in chunks if c]))
    errs = [r.stderr for r in results if r.returncode]
    if errs:
        raise RuntimeError("cc failed:\n" + "\n".join(e[:4000] for e in errs))
    exe = work / "batch"
    subprocess.run(["cc", *[str(work / (s.stem + ".o")) for s in sources], "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return Batch(exe, sizes)
