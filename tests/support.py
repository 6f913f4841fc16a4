"""Shared helpers for the test-suite: build generated C with the host compiler and run it,
make small Keras models, and start firmware on the emulated board."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parent.parent
HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wdouble-promotion", "-Werror"]

HARNESS = r"""
/* Test harness: reads N from argv[1] and N*IN floats on stdin; writes N*OUT outputs and then
 * N*OUT*IN Jacobian entries (from NAME_predict_jacobian) as raw float32 on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include "{name}.h"
int main(int argc, char **argv)
{{
    static float x[{NAME}_INPUT_SIZE], y[{NAME}_OUTPUT_SIZE], y2[{NAME}_OUTPUT_SIZE];
    static float J[{NAME}_OUTPUT_SIZE * {NAME}_INPUT_SIZE];
    long n = argc > 1 ? atol(argv[1]) : 0, i;
    int k;
    for (i = 0; i < n; ++i) {{
        if (fread(x, sizeof(float), {NAME}_INPUT_SIZE, stdin) != {NAME}_INPUT_SIZE) return 1;
        {name}_predict(x, y);
        {name}_predict_jacobian(x, y2, J);
        for (k = 0; k < {NAME}_OUTPUT_SIZE; ++k) if (y[k] != y2[k]) return 3;
        fwrite(y, sizeof(float), {NAME}_OUTPUT_SIZE, stdout);
        fwrite(J, sizeof(float), {NAME}_OUTPUT_SIZE * {NAME}_INPUT_SIZE, stdout);
    }}
    return 0;
}}
"""


class HostModel:
    """Generated C compiled with the host cc, fed through a pipe."""

    def __init__(self, exe: Path, n_in: int, n_out: int) -> None:
        self.exe, self.n_in, self.n_out = exe, n_in, n_out

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), self.n_in)
        out = subprocess.run([str(self.exe), str(len(x))], input=x.tobytes(),
                             capture_output=True, check=True).stdout
        per = self.n_out + self.n_out * self.n_in
        r = np.frombuffer(out, dtype=np.float32).reshape(len(x), per)
        return r[:, :self.n_out], r[:, self.n_out:].reshape(len(x), self.n_out, self.n_in)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)[0]


def build_host(model_dir: Path, name: str, n_in: int, n_out: int, cc: str = "cc") -> HostModel:
    """Compile every .c in ``model_dir`` (the `cc -std=c99 -c DIR/*.c` contract) + a harness."""
    src = model_dir.parent / f"harness_{name}.c"
    src.write_text(HARNESS.format(name=name, NAME=name.upper()))
    exe = model_dir.parent / f"harness_{name}"
    objs = []
    for c in sorted(model_dir.glob("*.c")):
        o = model_dir.parent / f"{c.stem}.o"
        subprocess.run([cc, *HOST_CFLAGS, "-c", str(c), "-o", str(o)], check=True,
                       capture_output=True, text=True)
        objs.append(str(o))
    subprocess.run([cc, *HOST_CFLAGS, f"-I{model_dir}", str(src), *objs, "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    return HostModel(exe, n_in, n_out)


def keras_mlp(path: Path, n_in: int, layers: list[tuple[int, str]], seed: int = 0,
              functional: bool = False, extra=None):
    """Save a random-weight MLP (with non-zero biases) to ``path``; return the Keras model."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    if functional:
        x = inp = keras.Input((n_in,))
        for i, (units, act) in enumerate(layers):
            x = keras.layers.Dense(units, activation=act, name=f"dense_{i}")(x)
        model = keras.Model(inp, x)
    else:
        model = keras.Sequential([keras.Input((n_in,))] + [
            keras.layers.Dense(u, activation=a, name=f"dense_{i}") for i, (u, a) in enumerate(layers)])
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(path)
    return model


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / (1 + |b|), the suite's float tolerance measure."""
    return float((np.abs(a - b) / (1.0 + np.abs(b))).max())


def randomise(model, seed: int, scale: float = 0.5) -> None:
    """Keras weights at random (seeded): non-zero biases, BatchNorm statistics with positive
    variances and gammas, PReLU slopes of both signs."""
    rng = np.random.default_rng(seed)
    ws = []
    for v in model.weights:
        shape, name = tuple(v.shape), v.path
        if "moving_variance" in name:
            ws.append(rng.uniform(0.5, 2.0, shape))
        elif "gamma" in name:
            ws.append(rng.uniform(0.5, 1.5, shape))
        else:
            ws.append(rng.normal(0.0, scale, shape))
    model.set_weights([w.astype(np.float32) for w in ws])


def tape_jacobians(f, xs, rows: int = 8192) -> list[np.ndarray]:
    """Per-sample Jacobians of ``f`` by GradientTape (float32, reverse mode), one array
    ``(n, n_out, prod(input shape))`` per input of ``xs`` (each ``(n, ...)``); ``f`` takes a
    list of tensors and returns ``(batch, ...)`` (flattened to ``n_out`` per sample), every row a function of its own samples
    only (a Keras model in inference; not a stateful layer of a fixed batch).

    ``tape.batch_jacobian`` does the same, but traces a new vectorised (pfor) graph on every
    call, 0.2-0.5 s each. Here each sample is repeated once per output, the tape runs once
    over that batch and the gradient of the sum of the picked entries (row b of sample i
    picks output k) is row k of sample i's Jacobian: eager, no tracing; at most ``rows``
    repeated samples per pass."""
    import tensorflow as tf

    xs = [np.asarray(x, np.float32) for x in xs]
    n = len(xs[0])
    n_out = int(np.prod(f([tf.constant(x[:1]) for x in xs]).shape[1:]))
    per = max(1, rows // n_out)                 # samples per pass
    Js = [np.zeros((n, n_out, int(np.prod(x.shape[1:]))), np.float32) for x in xs]
    pick = np.tile(np.arange(n_out), per)
    for i0 in range(0, n, per):
        m = min(per, n - i0)
        xt = [tf.constant(np.repeat(x[i0:i0 + m], n_out, axis=0)) for x in xs]
        with tf.GradientTape() as tape:
            for t in xt:
                tape.watch(t)
            y = tf.reshape(f(xt), (m * n_out, n_out))
            s = tf.reduce_sum(tf.gather(y, pick[:m * n_out, None], batch_dims=1))
        gs = tape.gradient(s, xt, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        for J, g in zip(Js, gs):
            J[i0:i0 + m] = g.numpy().reshape(m, n_out, -1)
    return Js
