"""The hand-written kernels of nnmpc_ops.h on their own: every activation and its derivative
over a wide range against float64 references, and the scalar functions without libm."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from nnmpc.compiler.backend.codegen import RUNTIME_DIR
from nnmpc.compiler.ir import ACTIVATIONS
from support import HOST_CFLAGS

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "nnmpc_ops.h"
/* argv: function index, alpha, beta; stdin: n floats; stdout: n values then n derivatives */
int main(int argc, char **argv)
{
    static float x[1 << 16], y[1 << 16], d[1 << 16];
    int n = (int)fread(x, sizeof(float), 1 << 16, stdin);
    int f = atoi(argv[1]);
    float alpha = (float)atof(argv[2]), beta = (float)atof(argv[3]);
    (void)argc;
    if (f < 0) {
        int i;
        for (i = 0; i < n; ++i) {
            y[i] = f == -1 ? nnmpc_logf(x[i]) : nnmpc_erff(x[i]);
            d[i] = 0.0f;
        }
    } else if (f == 99) {
        nnmpc_softmax(x, y, n / 4, 4);
        nnmpc_fn(x, d, NULL, n, NNMPC_FN_LINEAR, 0.0f, 0.0f);
    } else {
        nnmpc_fn(x, y, d, n, (nnmpc_fn_t)f, alpha, beta);
    }
    fwrite(y, sizeof(float), (size_t)n, stdout);
    fwrite(d, sizeof(float), (size_t)n, stdout);
    return 0;
}
"""

#: The C enum order of nnmpc_fn_t.
ENUM = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "hard_sigmoid",
        "softplus", "softsign", "silu", "gelu", "gelu_tanh", "exponential"]


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    (d / "h.c").write_text(HARNESS)
    out = d / "h"
    subprocess.run(["cc", *HOST_CFLAGS, f"-I{RUNTIME_DIR}", str(d / "h.c"),
                    str(RUNTIME_DIR / "nnmpc_nn.c"), "-o", str(out)], check=True, capture_output=True)
    return out


def run(exe, f: int, x: np.ndarray, alpha=0.0, beta=0.0):
    r = subprocess.run([str(exe), str(f), repr(alpha), repr(beta)],
                       input=x.astype(np.float32).tobytes(), capture_output=True, check=True).stdout
    v = np.frombuffer(r, np.float32)
    return v[:len(x)].astype(np.float64), v[len(x):].astype(np.float64)


def reference(kind: str, x: np.ndarray, alpha: float, beta: float):
    """float64 value and derivative."""
    erf = np.vectorize(math.erf)
    s = 1 / (1 + np.exp(-x))
    sc, sa = 1.0507009873554805, 1.6732632423543772
    if kind == "linear":
        return x, np.ones_like(x)
    if kind == "relu":
        return np.maximum(x, 0), (x > 0) * 1.0
    if kind == "relu6":
        return np.clip(x, 0, 6), ((x > 0) & (x < 6)) * 1.0
    if kind == "leaky_relu":
        return np.where(x >= 0, x, alpha * x), np.where(x >= 0, 1.0, alpha)
    if kind == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))
    if kind == "selu":
        return sc * np.where(x > 0, x, sa * np.expm1(np.minimum(x, 0))), sc * np.where(x > 0, 1.0, sa * np.exp(np.minimum(x, 0)))
    if kind == "tanh":
        t = np.tanh(x)
        return t, 1 - t * t
    if kind == "sigmoid":
        return s, s * (1 - s)
    if kind == "hard_sigmoid":
        u = alpha * x + beta
        return np.clip(u, 0, 1), ((u > 0) & (u < 1)) * alpha
    if kind == "softplus":
        return np.logaddexp(0, x), s
    if kind == "softsign":
        return x / (1 + np.abs(x)), 1 / (1 + np.abs(x)) ** 2
    if kind == "silu":
        return x * s, s + x * s * (1 - s)
    if kind == "gelu":
        c = 0.5 * (1 + erf(x / math.sqrt(2)))
        return x * c, c + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    if kind == "gelu_tanh":
        k0, k1 = math.sqrt(2 / math.pi), 0.044715
        t = np.tanh(k0 * (x + k1 * x ** 3))
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k0 * (1 + 3 * k1 * x * x)
    if kind == "exponential":
        e = np.exp(x)
        return e, e
    raise KeyError(kind)


def test_enum_lists_every_elementwise_activation():
    h = (RUNTIME_DIR / "nnmpc_ops.h").read_text()
    body = h[h.index("typedef enum {"):h.index("} nnmpc_fn_t;")]
    names = [line.split()[0].rstrip(",").replace("NNMPC_FN_", "").lower()
             for line in body.splitlines()[1:] if line.strip().startswith("NNMPC_FN_")]
    assert names == ENUM
    assert set(ENUM) | {"softmax", "log_softmax"} | set(FX) == set(ACTIVATIONS)


FX = ["abs", "sqrt", "log"]  # nnmpc_fx, in its enum's order

FX_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "nnmpc_ops.h"
int main(int argc, char **argv)
{
    static float x[8192], y[8192], d[8192];
    const int f = argc > 1 ? atoi(argv[1]) : 0;
    const int n = (int)fread(x, sizeof(float), 8192, stdin);
    nnmpc_fx(x, y, d, n, (nnmpc_fx_t)f);
    fwrite(y, sizeof(float), (size_t)n, stdout);
    fwrite(d, sizeof(float), (size_t)n, stdout);
    return 0;
}
"""


@pytest.mark.parametrize("kind", FX)
def test_fx_function_and_derivative_without_libm(tmp_path, kind):
    (tmp_path / "fx.c").write_text(FX_HARNESS)
    exe = tmp_path / "fx"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
                    f"-I{RUNTIME_DIR}", str(tmp_path / "fx.c"), str(RUNTIME_DIR / "nnmpc_nn.c"),
                    "-o", str(exe)], check=True, capture_output=True)
    x = np.concatenate([np.linspace(-30, 30, 6001), np.geomspace(1e-30, 1e30, 1201),
                        [0.0, 1e-38, 3.4e38]]).astype(np.float32)
    if kind != "abs":
        x = x[x > 0]
    out = subprocess.run([str(exe), str(FX.index(kind))], input=x.tobytes(), capture_output=True,
                         check=True).stdout
    y, d = np.frombuffer(out, np.float32).reshape(2, -1).astype(np.float64)
    x = x.astype(np.float64)
    ref = {"abs": (np.abs(x), np.sign(x)), "sqrt": (np.sqrt(x), 0.5 / np.sqrt(x)),
           "log": (np.log(x), 1 / x)}[kind]
    assert np.max(np.abs(y - ref[0]) / (1e-30 + np.abs(ref[0]) + (kind == "log"))) <= 2e-7 * (
        1 if kind != "log" else 10), kind
    assert np.max(np.abs(d - ref[1]) / (np.abs(ref[1]) + 1e-30)) <= 1e-6, kind


@pytest.mark.parametrize("kind", ENUM)
def test_activation_and_derivative_over_a_wide_range(exe, kind):
    x = np.concatenate([np.linspace(-30, 30, 6001), np.linspace(-1e-3, 1e-3, 101),
                        [-87.0, -20.0, -15.0001, -14.9999, 14.9999, 15.0001, 20.0, 80.0]])
    if kind == "exponential":
        x = x[x < 80]
    x = x.astype(np.float32).astype(np.float64)
    alpha, beta = {"leaky_relu": (0.2, 0.0), "elu": (0.7, 0.0),
                   "hard_sigmoid": (1 / 6, 0.5)}.get(kind, (0.0, 0.0))
    y, d = run(exe, ENUM.index(kind), x, alpha, beta)
    y_ref, d_ref = reference(kind, x, np.float32(alpha), np.float32(beta))
    # kinks (relu at 0, clips) are excluded from the derivative check
    smooth = np.ones_like(x, bool)
    for k in (0.0, 6.0, -3.0, 3.0):
        smooth &= np.abs(x - k) > 1e-6
    assert np.max(np.abs(y - y_ref) / (1 + np.abs(y_ref))) < 2e-6, kind
    assert np.max((np.abs(d - d_ref) / (1 + np.abs(d_ref)))[smooth]) < 2e-6, kind


def test_log_and_erf_without_libm(exe):
    x = np.concatenate([np.geomspace(1e-38, 1e38, 3000), np.linspace(0.5, 2, 1001)]).astype(np.float32)
    y, _ = run(exe, -1, x)
    assert np.max(np.abs(y - np.log(x.astype(np.float64))) / (1 + np.abs(np.log(x.astype(np.float64))))) < 1e-6
    z = np.linspace(-6, 6, 4001).astype(np.float32)
    e, _ = run(exe, -2, z)
    assert np.max(np.abs(e - np.vectorize(math.erf)(z.astype(np.float64)))) < 3e-7


def test_softmax_is_stable_for_large_inputs(exe):
    x = np.random.default_rng(0).uniform(-80, 80, 4000).astype(np.float32)
    y, _ = run(exe, 99, x)
    xr = x.reshape(-1, 4).astype(np.float64)
    e = np.exp(xr - xr.max(1, keepdims=True))
    assert np.max(np.abs(y.reshape(-1, 4) - e / e.sum(1, keepdims=True))) < 1e-6


VJP_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "nnmpc_ops.h"
/* argv: rows n_out n_in m; stdin: W, G; stdout: A from nnmpc_dense_vjp, then nnmpc_dense_adjoint */
int main(int argc, char **argv)
{
    static float W[4096], G[4096], A1[4096], A2[4096];
    int rows = atoi(argv[1]), n_out = atoi(argv[2]), n_in = atoi(argv[3]), m = atoi(argv[4]);
    (void)argc;
    if (fread(W, sizeof(float), (size_t)(n_out * n_in), stdin) != (size_t)(n_out * n_in)) return 1;
    if (fread(G, sizeof(float), (size_t)(rows * n_out * m), stdin) != (size_t)(rows * n_out * m)) return 1;
    nnmpc_dense_vjp(W, G, A1, rows, n_out, n_in, m);
    nnmpc_dense_adjoint(W, G, A2, rows, n_out, n_in, m);
    fwrite(A1, sizeof(float), (size_t)(rows * n_in * m), stdout);
    fwrite(A2, sizeof(float), (size_t)(rows * n_in * m), stdout);
    return 0;
}
"""


def test_reference_and_optimised_dense_adjoints_agree(tmp_path):
    """nnmpc_dense_vjp (reference, nnmpc_ops.h) and nnmpc_dense_adjoint (nnmpc_nn.c, used by the
    generated reverse mode) on shapes around their 4 x 4 blocks, with zero rows (relu off)."""
    (tmp_path / "v.c").write_text(VJP_HARNESS)
    exe = tmp_path / "v"
    subprocess.run(["cc", *HOST_CFLAGS, f"-I{RUNTIME_DIR}", str(tmp_path / "v.c"),
                    str(RUNTIME_DIR / "nnmpc_nn.c"), "-o", str(exe)], check=True, capture_output=True)
    rng = np.random.default_rng(2)
    for rows, n_out, n_in, m in [(1, 7, 5, 3), (1, 8, 8, 4), (2, 9, 6, 5), (3, 4, 13, 1), (1, 16, 3, 8)]:
        W = rng.normal(size=(n_out, n_in)).astype(np.float32)
        G = rng.normal(size=(rows, n_out, m)).astype(np.float32)
        G[:, ::3] = 0.0
        r = subprocess.run([str(exe), str(rows), str(n_out), str(n_in), str(m)],
                           input=W.tobytes() + G.tobytes(), capture_output=True, check=True).stdout
        a = np.frombuffer(r, np.float32).reshape(2, rows, n_in, m)
        ref = np.einsum("oi,rom->rim", W.astype(np.float64), G.astype(np.float64))
        assert np.abs(a[0] - ref).max() < 1e-5 and np.abs(a[1] - ref).max() < 1e-5
