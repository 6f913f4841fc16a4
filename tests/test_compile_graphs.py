"""Graph shapes beyond a chain: several inputs and outputs, fan-out, an output that is also
read inside the graph, activations on the raw input; and the static memory plan."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nnmpc.compiler import compile_model, load_model
from nnmpc.compiler.backend.emit import lower
from nnmpc.compiler.passes import optimise, place
from support import build_host, rel_err, tape_jacobians
from zoo import _randomise


def _jacobian(model, xs: list[np.ndarray]) -> np.ndarray:
    def f(ts):
        out = model(ts if len(ts) > 1 else ts[0])
        return tf.concat([tf.reshape(o, (ts[0].shape[0], -1))
                          for o in (out if isinstance(out, list) else [out])], 1)
    return np.concatenate(tape_jacobians(f, xs), 2)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_two_inputs_two_outputs_fan_out_and_internal_output(tmp_path, mode):
    import keras

    L = keras.layers
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    h = L.Dense(6, activation="tanh", name="h")(L.Concatenate()([a, b]))
    o1 = L.Dense(2, name="o1")(h)
    # o1 is an output and also read by the next layer
    o2 = L.Dense(3, activation="sigmoid", name="o2")(
        L.Multiply()([h, L.Dense(6, name="g")(L.Concatenate()([a, o1, L.Activation("elu")(b)]))]))
    m = keras.Model([a, b], [o1, o2])
    _randomise(m, 3)
    m.save(tmp_path / "m.keras")
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="mm", jacobian=mode)
    h_txt = (tmp_path / "out" / "mm.h").read_text()
    assert "#define MM_INPUT_SIZE 5" in h_txt and "#define MM_OUTPUT_SIZE 5" in h_txt
    host = build_host(tmp_path / "out", "mm", 5, 5)
    x = np.random.default_rng(0).uniform(-2, 2, (50, 5)).astype(np.float32)
    y, J = host.run(x)
    ya, yb = m.predict([x[:, :3], x[:, 3:]], verbose=0)
    assert rel_err(y, np.concatenate([ya, yb], 1)) <= 1e-5
    assert rel_err(J[:10], _jacobian(m, [x[:10, :3], x[:10, 3:]])) <= 1e-4


def test_activation_applied_to_the_raw_input(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Activation("softsign"),
                          keras.layers.Dense(3), keras.layers.Softmax()])
    _randomise(m, 1)
    m.save(tmp_path / "m.keras")
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="s")
    host = build_host(tmp_path / "out", "s", 4, 3)
    x = np.random.default_rng(1).uniform(-3, 3, (40, 4)).astype(np.float32)
    y, J = host.run(x)
    assert rel_err(y, m.predict(x, verbose=0)) <= 1e-5
    assert rel_err(J, _jacobian(m, [x])) <= 1e-4


def test_memory_plan_reuses_buffers_and_never_overlaps_live_ones():
    iv = {"a": (10, 0, 1), "b": (10, 1, 2), "c": (10, 2, 3), "d": (4, 0, 3)}
    plan = place(iv)
    for p in iv:
        for q in iv:
            if p < q:
                (sp, fp, lp), (sq, fq, lq) = iv[p], iv[q]
                if not (lp < fq or lq < fp):  # live at the same time: disjoint memory
                    op, oq = plan.offsets[p], plan.offsets[q]
                    assert op + sp <= oq or oq + sq <= op, (p, q)
    assert plan.offsets["a"] == plan.offsets["c"]  # a is dead when c is born
    assert plan.size == 24


def test_deep_mlp_arena_is_two_layers_not_all_of_them(tmp_path):
    import keras

    m = keras.Sequential([keras.Input((8,))] + [keras.layers.Dense(64, activation="relu")
                                                  for _ in range(8)] + [keras.layers.Dense(2)])
    m.save(tmp_path / "deep.keras")
    g = optimise(load_model(tmp_path / "deep.keras"))
    from nnmpc.compiler.backend.codegen import GraphLowering, Lowering

    # predict needs two 64-float buffers at a time, not eight
    _, floats = GraphLowering(Lowering("deep"), g, mode="predict").run().plan()
    assert floats == 2 * 64
    # the reverse-mode Jacobian keeps each layer's derivative (8 x 64) for the way back, two
    # adjoints (64 x 2) at a time and the input's (8 x 2), and two values on the way forward
    src = lower(g, "deep", "reverse")
    assert src.arena_bytes <= 4 * (8 * 64 + 2 * 64 * 2 + 8 * 2 + 2 * 64 + 2)
    compile_model(tmp_path / "deep.keras", tmp_path / "out", name="deep", jacobian="reverse")
    h = (tmp_path / "out" / "deep.h").read_text()
    assert f"#define DEEP_ARENA_BYTES {src.arena_bytes}" in h


TIMING_HARNESS = r"""
#include <stdio.h>
#include <time.h>
#include "{name}.h"
static float x[{NAME}_INPUT_SIZE], y[{NAME}_OUTPUT_SIZE], J[{NAME}_OUTPUT_SIZE * {NAME}_INPUT_SIZE];
static double seconds(void) {{ return (double)clock() / CLOCKS_PER_SEC; }}
int main(void)
{{
    double best_p = 1e9, best_j = 1e9, t;
    int rep, i, k;
    volatile float sink = 0.0f;
    for (k = 0; k < {NAME}_INPUT_SIZE; ++k) x[k] = 0.1f * (float)k - 0.3f;
    for (rep = 0; rep < 5; ++rep) {{
        t = seconds();
        for (i = 0; i < {N}; ++i) {{ x[0] += 1e-7f; {name}_predict(x, y); sink += y[0]; }}
        t = seconds() - t; if (t < best_p) best_p = t;
        t = seconds();
        for (i = 0; i < {N}; ++i) {{ x[0] += 1e-7f; {name}_jacobian(x, J); sink += J[0]; }}
        t = seconds() - t; if (t < best_j) best_j = t;
    }}
    printf("%g %g\n", best_p / {N}, best_j / {N});
    return sink == 12345.0f;
}}
"""


@pytest.mark.parametrize("shape", [("mlp", 16, 4), ("conv", 64, 3)])
def test_jacobian_is_cheaper_than_finite_differences(tmp_path, shape):
    """One exact Jacobian costs less than the INPUT_SIZE + 1 predictions of one-sided
    finite differences (timed with the host compiler, best of five)."""
    import subprocess

    import keras

    from support import HOST_CFLAGS

    kind, n_in, n_out = shape
    L = keras.layers
    if kind == "mlp":
        m = keras.Sequential([keras.Input((n_in,)), L.Dense(64, activation="tanh"),
                              L.Dense(64, activation="tanh"), L.Dense(n_out)])
    else:
        m = keras.Sequential([keras.Input((n_in // 2, 2)), L.Conv1D(8, 3, activation="relu"),
                              L.Conv1D(8, 3, activation="tanh"), L.GlobalAveragePooling1D(),
                              L.Dense(n_out)])
    _randomise(m, 2)
    m.save(tmp_path / "m.keras")
    compile_model(tmp_path / "m.keras", tmp_path / "out", name="t")
    src = tmp_path / "h.c"
    src.write_text(TIMING_HARNESS.format(name="t", NAME="T", N=2000))
    exe = tmp_path / "h"
    subprocess.run(["cc", *HOST_CFLAGS, f"-I{tmp_path / 'out'}", str(src),
                    *map(str, sorted((tmp_path / "out").glob("*.c"))), "-o", str(exe)],
                   check=True, capture_output=True)
    t_pred, t_jac = map(float, subprocess.run([str(exe)], capture_output=True, text=True,
                                              check=True).stdout.split())
    assert t_jac < (n_in + 1) * t_pred, (t_pred, t_jac)


def test_unrolled_recurrent_weights_are_stored_once(tmp_path):
    """The window length changes the code, not the flash taken by weights."""
    import re

    import keras

    sizes = {}
    for T in (4, 16):
        m = keras.Sequential([keras.Input((T, 3)), keras.layers.LSTM(6), keras.layers.Dense(2)])
        _randomise(m, 9)
        m.save(tmp_path / f"l{T}.keras")
        compile_model(tmp_path / f"l{T}.keras", tmp_path / f"o{T}", name="l")
        c = (tmp_path / f"o{T}" / "l.c").read_text()
        arrays = re.findall(r"static const float l_\w+\[(\d+)\]", c)
        sizes[T] = (len(arrays), sum(map(int, arrays)))
    assert sizes[4] == sizes[16]


def test_output_is_byte_identical_across_processes(tmp_path):
    """Two processes with different hash seeds write the same bytes (no set or dict order,
    address or time leaks into the files)."""
    import os
    import subprocess
    import sys

    from zoo import onnx_nchw_cnn

    onnx_nchw_cnn(tmp_path / "cnn.onnx")
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}"
        subprocess.run([sys.executable, "-m", "nnmpc.host.cli", "compile", str(tmp_path / "cnn.onnx"),
                        "-o", str(out)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        outs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert outs[0] == outs[1] and len(outs[0]) == 6


def test_auto_jacobian_mode_counts_the_scalar_adjoint_loop_of_few_outputs(tmp_path):
    """The msd NARX shape (6 inputs, 2 outputs, 32x32 tanh) compiles forward under `auto`: its
    reverse mode runs the adjoint kernel's scalar loop and measured 18.3k cycles against 10.6k
    (docs/BENCH.md); net B of the bench (6 -> 3 x 64 relu -> 4) keeps reverse mode."""
    import keras

    from nnmpc.compiler.backend.codegen import jacobian_mode

    L = keras.layers
    nets = {"msd": keras.Sequential([keras.Input((6,)), L.Dense(32, activation="tanh"),
                                     L.Dense(32, activation="tanh"), L.Dense(2)]),
            "B": keras.Sequential([keras.Input((6,)), *[L.Dense(64, activation="relu")
                                                       for _ in range(3)], L.Dense(4)])}
    modes = {}
    for k, m in nets.items():
        m.save(tmp_path / f"{k}.keras")
        modes[k] = jacobian_mode(load_model(tmp_path / f"{k}.keras"))
    assert modes == {"msd": "forward", "B": "reverse"}
