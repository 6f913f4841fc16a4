"""The generated C of a trial's net built with the host's C compiler (``cc -std=c99 -O2``, the
`cc -c DIR/*.c` contract of docs/COMPILER.md): the same code the board runs, fed rows through a
pipe, for scoring a net on a log where there is no simulated plant to close the loop with."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..toolchain import require

CFLAGS = ["-std=c99", "-O2"]

HARNESS = r"""
/* reads N (argv[1]) rows of MODEL_INPUT_SIZE float32 on stdin, writes N rows of
 * MODEL_OUTPUT_SIZE float32 from model_predict on stdout */
#include <stdio.h>
#include <stdlib.h>
#include "model.h"
int main(int argc, char **argv)
{
    static float x[MODEL_INPUT_SIZE], y[MODEL_OUTPUT_SIZE];
    long n = argc > 1 ? atol(argv[1]) : 0, i;
    for (i = 0; i < n; ++i) {
        if (fread(x, sizeof(float), MODEL_INPUT_SIZE, stdin) != MODEL_INPUT_SIZE) return 1;
        model_predict(x, y);
        fwrite(y, sizeof(float), MODEL_OUTPUT_SIZE, stdout);
    }
    return 0;
}
"""


class HostNet:
    """``model_predict`` of a compiled model folder, built for the host."""

    def __init__(self, model_dir: Path, work: Path) -> None:
        cc = require("cc")
        model_dir, work = Path(model_dir), Path(work)
        text = (model_dir / "model.h").read_text()
        self.n_in = int(re.search(r"#define MODEL_INPUT_SIZE (\d+)", text).group(1))
        self.n_out = int(re.search(r"#define MODEL_OUTPUT_SIZE (\d+)", text).group(1))
        work.mkdir(parents=True, exist_ok=True)
        src = work / "host_predict.c"
        src.write_text(HARNESS)
        self.exe = work / "host_predict"
        cmd = [cc, *CFLAGS, f"-I{model_dir}", str(src),
               *sorted(str(c) for c in model_dir.glob("*.c")), "-o", str(self.exe), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            line = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
            raise NnmpcError(f"{model_dir}: the host build of the generated C failed: {line}")

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), self.n_in)
        proc = subprocess.run([str(self.exe), str(len(x))], input=x.tobytes(),
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise NnmpcError(f"{self.exe}: exited with {proc.returncode}")
        return np.frombuffer(proc.stdout, dtype=np.float32).reshape(len(x), self.n_out)


def free_run(net: HostNet, ds, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop replay of a NARX net (features ``[y[k..k-lag+1], u[k..k-lag+1]]``) over the
    held-out segments of ``ds``: after the first ``lag`` measured outputs it sees only its own
    predictions, the inputs are the logged ones. Returns ``(predicted, measured)``, both
    ``(segments, T - lag, outputs)``; one pipe call per period for all segments at once."""
    from ..learn.datasets import narx_features

    u = ds.traj_u[ds.traj_val].astype(np.float64)
    y_true = ds.traj_y[ds.traj_val][:, :u.shape[1] + 1].astype(np.float64)
    y = y_true.copy()
    for k in range(lag - 1, u.shape[1]):
        f = narx_features(y[:, k - lag + 1:k + 1], u[:, k - lag + 1:k + 1], lag, lag)[:, -1]
        y[:, k + 1] = net.predict(f)
    return y[:, lag:], y_true[:, lag:]
