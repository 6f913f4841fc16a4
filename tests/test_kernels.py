"""The C runtime kernels (firmware/runtime/nnmpc_nn.c) against numpy in float64.

Every test runs on the host (the portable C loops, built with the host cc and called through
ctypes) and on an emulated Cortex-M4F: the Thumb-2/VFP assembly paths built with
arm-none-eabi-gcc -O2 and -Os, and the C loops as an -O0 build compiles them, all called in the
instruction-level emulator the benchmark uses."""

from __future__ import annotations

import ctypes
import struct
import subprocess

import numpy as np
import pytest

from support import HOST_CFLAGS, REPO, have

RUNTIME = REPO / "firmware" / "runtime"
ACTS = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3}
F32 = np.float32


def ref_act(z: np.ndarray, act: str) -> np.ndarray:
    z = z.astype(np.float64)
    return {"linear": lambda v: v, "relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh,
            "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[act](z)


# ---- the two back-ends --------------------------------------------------------------------

class HostKernels:
    name = "host"

    def __init__(self, so):
        self.lib = lib = ctypes.CDLL(str(so))
        P = ctypes.c_void_p
        I = ctypes.c_int
        lib.nnmpc_dense.argtypes = [P, P, P, P, I, I, I]
        for a in ACTS:
            getattr(lib, f"nnmpc_dense_{a}").argtypes = [P, P, P, P, I, I]
        lib.nnmpc_activate.argtypes = [P, P, I, I]
        lib.nnmpc_act_deriv.argtypes = [P, P, I, I]
        lib.nnmpc_dense_tangent.argtypes = [P, P, P, P, I, I, I]
        lib.nnmpc_scale_rows.argtypes = [P, P, P, I, I]
        lib.nnmpc_dense_adjoint.argtypes = [P, P, P, I, I, I, I]
        lib.nnmpc_dense_adjoint_scaled.argtypes = [P, P, P, I, I, I, P]
        for f in ("nnmpc_tanhf", "nnmpc_sigmoidf", "nnmpc_expf"):
            getattr(lib, f).argtypes = [ctypes.c_float]
            getattr(lib, f).restype = ctypes.c_float

    @staticmethod
    def _p(a):
        return None if a is None else a.ctypes.data_as(ctypes.c_void_p)

    def dense(self, W, b, x, act, y=None):
        n_out, n_in = W.shape
        y = np.full(n_out + 1, 7.0, F32) if y is None else y
        self.lib.nnmpc_dense(self._p(W), self._p(b), self._p(x), self._p(y), n_out, n_in, ACTS[act])
        return y

    def dense_act(self, W, b, x, act):
        n_out, n_in = W.shape
        y = np.full(n_out + 1, 7.0, F32)
        getattr(self.lib, f"nnmpc_dense_{act}")(self._p(W), self._p(b), self._p(x), self._p(y),
                                                n_out, n_in)
        return y

    def activate(self, x, act, inplace=False):
        y = np.full(len(x) + 1, 7.0, F32)
        if inplace:
            y[:-1] = x
            x = y
        self.lib.nnmpc_activate(self._p(x), self._p(y), len(x) - inplace, ACTS[act])
        return y

    def act_deriv(self, y, act):
        d = np.full(len(y) + 1, 7.0, F32)
        self.lib.nnmpc_act_deriv(self._p(y), self._p(d), len(y), ACTS[act])
        return d

    def dense_tangent(self, W, d, T_in, k):
        n_out, n_in = W.shape
        T = np.full(n_out * k + 1, 7.0, F32)
        self.lib.nnmpc_dense_tangent(self._p(W), self._p(d), self._p(T_in), self._p(T), n_out, n_in, k)
        return T

    def scale_rows(self, T_in, d, k, inplace=False):
        out = np.full(T_in.size + 1, 7.0, F32)
        src = out if inplace else T_in
        if inplace:
            out[:-1] = T_in.ravel()
        self.lib.nnmpc_scale_rows(self._p(src), self._p(d), self._p(out), len(d), k)
        return out

    def dense_adjoint(self, W, G, rows, m):
        n_out, n_in = W.shape
        A = np.full(rows * n_in * m + 1, 7.0, F32)
        self.lib.nnmpc_dense_adjoint(self._p(W), self._p(G), self._p(A), rows, n_out, n_in, m)
        return A

    def q8_dense_z(self, x, W, bz, mult, shift, out_zp):
        n_out, n_in = W.shape
        y = np.full(n_out + 1, 77, np.int8)
        f = self.lib.q8_dense_z
        f.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 2 + [ctypes.c_void_p] * 2 + [ctypes.c_int32]
        f(*(self._p(a) for a in (x, W, bz, y)), n_out, n_in, self._p(mult), self._p(shift), out_zp)
        return y

    def dense_adjoint_scaled(self, W, G, m, d_in):
        n_out, n_in = W.shape
        A = np.full(n_in * m + 1, 7.0, F32)
        self.lib.nnmpc_dense_adjoint_scaled(self._p(W), self._p(G), self._p(A), n_out, n_in, m,
                                            self._p(d_in))
        return A


class ArmKernels:
    """Arrays are copied into the emulator's RAM; results read back (one slot past the end
    is kept as a sentinel, like the host's)."""
    name = "arm"

    def __init__(self, elf):
        from nnmpc.host.bench.cortexm import RAM_BASE, CortexM4Counter
        self.c = CortexM4Counter(elf)
        self.base = RAM_BASE + 0x10000
        self.cycles: dict[str, int] = {}

    def _alloc(self, arrays):
        addrs, at = [], self.base
        for a in arrays:
            if a is None:
                addrs.append(0)
                continue
            data = np.ascontiguousarray(a, F32).tobytes()
            self.c.write(at, data)
            addrs.append(at)
            at += (len(data) + 15) & ~15
        return addrs, at

    def _out(self, at, n):
        self.c.write(at, np.full(n + 1, 7.0, F32).tobytes())
        return at

    def _read(self, at, n):
        return np.frombuffer(self.c.read(at, 4 * (n + 1)), F32).copy()

    def dense(self, W, b, x, act):
        n_out, n_in = W.shape
        (w, bb, xx), at = self._alloc([W, b, x])
        y = self._out(at, n_out)
        self.c.call("nnmpc_dense", (w, bb, xx, y, n_out, n_in, ACTS[act]))
        return self._read(y, n_out)

    def dense_act(self, W, b, x, act):
        n_out, n_in = W.shape
        (w, bb, xx), at = self._alloc([W, b, x])
        y = self._out(at, n_out)
        self.c.call(f"nnmpc_dense_{act}", (w, bb, xx, y, n_out, n_in))
        return self._read(y, n_out)

    def activate(self, x, act, inplace=False):
        (xx,), at = self._alloc([x])
        y = xx if inplace else self._out(at, len(x))
        if inplace:
            self.c.write(xx + 4 * len(x), struct.pack("<f", 7.0))
        self.c.call("nnmpc_activate", (xx, y, len(x), ACTS[act]))
        return self._read(y, len(x))

    def act_deriv(self, y, act):
        (yy,), at = self._alloc([y])
        d = self._out(at, len(y))
        self.c.call("nnmpc_act_deriv", (yy, d, len(y), ACTS[act]))
        return self._read(d, len(y))

    def dense_tangent(self, W, d, T_in, k):
        n_out, n_in = W.shape
        (w, dd, t), at = self._alloc([W, d, T_in])
        T = self._out(at, n_out * k)
        self.c.call("nnmpc_dense_tangent", (w, dd, t, T, n_out, n_in, k))
        return self._read(T, n_out * k)

    def scale_rows(self, T_in, d, k, inplace=False):
        (t, dd), at = self._alloc([T_in, d])
        if inplace:
            self.c.write(t + 4 * T_in.size, struct.pack("<f", 7.0))
            out = t
        else:
            out = self._out(at, T_in.size)
        self.c.call("nnmpc_scale_rows", (t, dd, out, len(d), k))
        return self._read(out, T_in.size)

    def dense_adjoint(self, W, G, rows, m):
        n_out, n_in = W.shape
        (w, g), at = self._alloc([W, G])
        A = self._out(at, rows * n_in * m)
        self.c.call("nnmpc_dense_adjoint", (w, g, A, rows, n_out, n_in, m))
        return self._read(A, rows * n_in * m)

    def q8_dense_z(self, x, W, bz, mult, shift, out_zp):
        n_out, n_in = W.shape
        addrs, at = [], self.base
        for a in (x, W, bz, mult, shift, np.full(n_out + 1, 77, np.int8)):
            data = np.ascontiguousarray(a).tobytes()
            self.c.write(at, data)
            addrs.append(at)
            at += (len(data) + 15) & ~15
        xx, w, b, mu, sh, y = addrs
        self.c.call("q8_dense_z", (xx, w, b, y, n_out, n_in, mu, sh, out_zp & 0xFFFFFFFF))
        return np.frombuffer(self.c.read(y, n_out + 1), np.int8).copy()

    def dense_adjoint_scaled(self, W, G, m, d_in):
        n_out, n_in = W.shape
        (w, g, dd), at = self._alloc([W, G, d_in])
        A = self._out(at, n_in * m)
        self.c.call("nnmpc_dense_adjoint_scaled", (w, g, A, n_out, n_in, m, dd))
        return self._read(A, n_in * m)


Q8_WRAPPER = r"""
/* The int8 dense kernel (header-only) behind a plain entry point. */
#include "nnmpc_q8.h"
void q8_dense_z(const int8_t *x, const int8_t *W, const int32_t *bz, int8_t *y, int n_out,
                int n_in, const int32_t *mult, const int32_t *shift, int32_t out_zp);
void q8_dense_z(const int8_t *x, const int8_t *W, const int32_t *bz, int8_t *y, int n_out,
                int n_in, const int32_t *mult, const int32_t *shift, int32_t out_zp)
{
    const nnmpc_q_params_t q = {0, out_zp, -128, 127, mult, shift, 0};
    nnmpc_q_dense_z(x, W, bz, y, 1, n_out, n_in, &q);
}
"""

KERNEL_HARNESS = r"""
/* Keeps every kernel in the image; the emulator calls them directly. */
#include <stdint.h>
#include "nnmpc_nn.h"
void q8_dense_z(const int8_t *x, const int8_t *W, const int32_t *bz, int8_t *y, int n_out,
                int n_in, const int32_t *mult, const int32_t *shift, int32_t out_zp);
void kern_predict(const float *input, float *output);
void kern_jacobian(const float *input, float *jacobian);
void (*volatile kern_keep[])(void) = {
    (void (*)(void))nnmpc_dense, (void (*)(void))nnmpc_activate,
    (void (*)(void))nnmpc_act_deriv, (void (*)(void))nnmpc_dense_tangent,
    (void (*)(void))nnmpc_scale_rows, (void (*)(void))nnmpc_tanhf,
    (void (*)(void))nnmpc_sigmoidf, (void (*)(void))nnmpc_expf,
    (void (*)(void))nnmpc_dense_adjoint, (void (*)(void))nnmpc_dense_adjoint_scaled,
    (void (*)(void))nnmpc_dense_linear, (void (*)(void))nnmpc_dense_relu,
    (void (*)(void))nnmpc_dense_tanh, (void (*)(void))nnmpc_dense_sigmoid,
    (void (*)(void))q8_dense_z,
};
void kern_predict(const float *input, float *output) { output[0] = input[0]; (void)kern_keep[0]; }
void kern_jacobian(const float *input, float *jacobian) { jacobian[0] = input[0]; }
"""


@pytest.fixture(scope="module", params=["host", "arm", "arm-Os", "arm-O0"])
def K(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"kern_{request.param}")
    if request.param == "host":
        if not have("cc"):
            pytest.skip("needs cc")
        so = d / "libnn.so"
        (d / "q8.c").write_text(Q8_WRAPPER)
        subprocess.run(["cc", *HOST_CFLAGS, "-shared", "-fPIC", f"-I{RUNTIME}",
                        str(RUNTIME / "nnmpc_nn.c"), str(d / "q8.c"), "-o", str(so)],
                       check=True, capture_output=True, text=True)
        return HostKernels(so)
    if not have("arm-none-eabi-gcc"):
        pytest.skip("needs arm-none-eabi-gcc")
    from nnmpc.host.bench.netbench import BENCH_DIR, _link
    from nnmpc.host.build.boards import load_board
    from nnmpc.host.build.firmware import cflags
    (d / "kern.c").write_text(KERNEL_HARNESS)
    (d / "q8.c").write_text(Q8_WRAPPER)
    opt = {"arm": "-O2", "arm-Os": "-Os", "arm-O0": "-O0"}[request.param]  # -O0: the C loops
    elf = _link("arm-none-eabi-gcc", cflags(load_board("qemu-m4f"), opt),
                [BENCH_DIR / "bench_main.c", d / "kern.c", d / "q8.c", RUNTIME / "nnmpc_nn.c"],
                [RUNTIME],
                {"BENCH_PREFIX": "kern", "BENCH_IN": "1", "BENCH_OUT": "1", "BENCH_JACOBIAN": "1"},
                d / "kern.elf")
    return ArmKernels(elf)


# ---- elementary functions -----------------------------------------------------------------

def sweep():
    x = np.linspace(-20, 20, 100_001).astype(F32)
    special = np.array([0.0, 1e-30, -1e-30, 1e-8, 1e-4, 0.17, 0.3466, 0.35, 0.5, 1.0, 8.9, 9.0,
                        9.1, 43.5, 86.9, 87.0, 87.1, 88.0], F32)
    return np.concatenate([x, special, -special])


def test_tanh_accuracy(K):
    x = sweep()
    y = K.activate(x, "tanh")[:-1].astype(np.float64)
    t = np.tanh(x.astype(np.float64))
    assert np.abs(y - t).max() <= 2e-7
    nz = np.abs(t) > 1e-37
    assert (np.abs(y - t)[nz] / np.abs(t[nz])).max() <= 4e-7       # a few ulps, also near 0
    assert np.all(np.abs(y) <= 1.0)
    assert np.array_equal(np.sign(y), np.sign(t))                    # odd, no sign flips


def test_sigmoid_accuracy(K):
    x = sweep()
    y = K.activate(x, "sigmoid")[:-1].astype(np.float64)
    s = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.abs(y - s).max() <= 1.2e-7
    keep = x >= -80
    assert (np.abs(y - s)[keep] / s[keep]).max() <= 4e-7
    assert np.all((y >= 0) & (y <= 1))


def test_activation_edge_cases(K):
    x = np.array([np.inf, -np.inf, 1e30, -1e30, np.nan, -0.0], F32)
    t = K.activate(x, "tanh")
    assert list(t[:4]) == [1.0, -1.0, 1.0, -1.0] and np.isnan(t[4]) and t[5] == 0.0
    s = K.activate(x, "sigmoid")
    assert s[0] == 1.0 and s[2] == 1.0 and 0 <= s[1] < 1e-37 and 0 <= s[3] < 1e-37
    assert np.isnan(s[4]) and s[5] == 0.5
    r = K.activate(x, "relu")
    assert list(r[:4]) == [np.inf, 0.0, 1e30, 0.0] and r[5] == 0.0
    assert t[-1] == s[-1] == r[-1] == 7.0                           # nothing written past n


@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 33])
@pytest.mark.parametrize("act", sorted(ACTS))
def test_activate_sizes_in_and_out_of_place(K, rng, n, act):
    x = rng.uniform(-4, 4, n).astype(F32)
    ref = ref_act(x, act)
    for inplace in (False, True):
        y = K.activate(x.copy(), act, inplace=inplace)
        assert np.allclose(y[:n], ref, rtol=4e-7, atol=2e-7)
        assert y[n] == 7.0


def test_scalar_functions_on_host(tmp_path):
    """The scalar entry points take float arguments in FPU registers: called on the host only."""
    if not have("cc"):
        pytest.skip("needs cc")
    so = tmp_path / "libnn.so"
    subprocess.run(["cc", *HOST_CFLAGS, "-shared", "-fPIC", str(RUNTIME / "nnmpc_nn.c"),
                    "-o", str(so)], check=True, capture_output=True, text=True)
    lib = HostKernels(so).lib
    xs = np.linspace(-87, 88, 20001).astype(F32)
    e = np.array([lib.nnmpc_expf(float(v)) for v in xs])
    ref = np.exp(xs.astype(np.float64))
    assert (np.abs(e - ref) / ref).max() <= 3e-7
    assert lib.nnmpc_expf(100.0) == np.float32(3.40282347e38) and lib.nnmpc_expf(-100.0) == 0.0
    for v in (-5.0, -0.3, 1e-20, 0.7, 12.0):
        assert abs(lib.nnmpc_tanhf(v) - np.tanh(v)) <= 2e-7 * max(1.0, abs(np.tanh(v)))
        assert abs(lib.nnmpc_sigmoidf(v) - 1 / (1 + np.exp(-v))) <= 1.2e-7


# ---- dense, derivative, tangent -----------------------------------------------------------

SHAPES = [(1, 1), (3, 1), (1, 3), (2, 5), (8, 8), (9, 7), (16, 6), (13, 17), (3, 32), (32, 3),
          (8, 64), (64, 64), (4, 64), (24, 11)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("act", sorted(ACTS))
def test_dense_matches_numpy(K, rng, shape, act):
    n_out, n_in = shape
    W = rng.normal(0, 1 / np.sqrt(n_in), shape).astype(F32)
    b = rng.normal(0, 0.3, n_out).astype(F32)
    x = rng.uniform(-3, 3, n_in).astype(F32)
    y = K.dense(W, b, x, act)
    z = W.astype(np.float64) @ x + b
    scale = np.abs(W.astype(np.float64)) @ np.abs(x) + np.abs(b)     # bound on rounding
    assert np.all(np.abs(y[:n_out] - ref_act(z, act)) <= 1e-6 * (1 + scale))
    assert y[n_out] == 7.0


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("act", sorted(ACTS))
def test_dense_per_activation_equals_dense(K, rng, shape, act):
    """nnmpc_dense_<act> (what generated code calls) gives nnmpc_dense's bits."""
    n_out, n_in = shape
    W = rng.normal(0, 1 / np.sqrt(n_in), shape).astype(F32)
    b = rng.normal(0, 0.3, n_out).astype(F32)
    x = rng.uniform(-3, 3, n_in).astype(F32)
    assert np.array_equal(K.dense_act(W, b, x, act), K.dense(W, b, x, act))


def test_dense_empty_sizes(K):
    b = np.array([0.5, -2.0], F32)
    y = K.dense(np.zeros((2, 0), F32), b, np.zeros(0, F32), "relu")   # n_in = 0: act(b)
    assert list(y) == [0.5, 0.0, 7.0]
    y = K.dense(np.zeros((0, 3), F32), np.zeros(0, F32), np.ones(3, F32), "tanh")
    assert list(y) == [7.0]                                             # n_out = 0: untouched


@pytest.mark.parametrize("act", sorted(ACTS))
def test_act_deriv(K, rng, act):
    z = rng.uniform(-4, 4, 37).astype(F32)
    y = ref_act(z, act).astype(F32)
    d = K.act_deriv(y, act)
    yy = y.astype(np.float64)
    ref = {"linear": np.ones_like(yy), "relu": (yy > 0).astype(float), "tanh": 1 - yy * yy,
           "sigmoid": yy * (1 - yy)}[act]
    assert np.allclose(d[:-1], ref, rtol=1e-6, atol=1e-7) and d[-1] == 7.0


def tangent_case(rng, n_out, n_in, k, dead_out=0.0, dead_in=0.0, identity=False):
    W = rng.normal(0, 0.5, (n_out, n_in)).astype(F32)
    d = rng.uniform(0.1, 1.0, n_out).astype(F32)
    d[rng.random(n_out) < dead_out] = 0.0
    T_in = None if identity else rng.normal(0, 1, (n_in, k)).astype(F32)
    if T_in is not None:
        T_in[rng.random(n_in) < dead_in] = 0.0
        if n_in > 2:
            T_in[1] = -0.0                    # a negative-zero row counts as zero
    return W, d, T_in


@pytest.mark.parametrize("n_out, n_in, k", [
    (1, 1, 1), (4, 4, 2), (4, 4, 3), (5, 7, 3), (8, 3, 4), (32, 32, 3), (9, 64, 6), (64, 64, 6),
    (7, 13, 5), (3, 32, 7), (6, 5, 8), (4, 64, 6)])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("with_d", [True, False])
def test_dense_tangent_matches_numpy(K, rng, n_out, n_in, k, sparse, with_d):
    W, d, T_in = tangent_case(rng, n_out, n_in, k, *((0.5, 0.5) if sparse else (0, 0)))
    dd = d if with_d else None
    T = K.dense_tangent(W, dd, T_in, k)
    ref = (W.astype(np.float64) @ T_in) * (d[:, None] if with_d else 1.0)
    scale = np.abs(W.astype(np.float64)) @ np.abs(T_in) + 1
    assert np.all(np.abs(T[:-1].reshape(n_out, k) - ref) <= 1e-6 * scale)
    assert T[-1] == 7.0


def test_dense_tangent_all_inputs_dead_and_identity(K, rng):
    W, d, T_in = tangent_case(rng, 9, 6, 4)
    T_in[:] = 0.0
    assert np.all(K.dense_tangent(W, d, T_in, 4)[:-1] == 0.0)
    W, d, _ = tangent_case(rng, 10, 5, 5, dead_out=0.4)
    T = K.dense_tangent(W, d, None, 5)                                  # T_in = identity
    assert np.allclose(T[:-1].reshape(10, 5), W * d[:, None], rtol=1e-7, atol=0)
    assert T[-1] == 7.0


@pytest.mark.parametrize("n_out, k", [(16, 3), (5, 6), (1, 9), (7, 3)])
def test_dense_tangent_identity_without_dead_rows(K, rng, n_out, k):
    """T_in = identity and no zero in d (the first layer of a tanh net): diag(d) . W, bit for
    bit (the assembly's row loop for k a multiple of 3)."""
    W, d, _ = tangent_case(rng, n_out, k, k, identity=True)
    T = K.dense_tangent(W, d, None, k)
    assert np.array_equal(T[:-1].reshape(n_out, k), W * d[:, None]) and T[-1] == 7.0


@pytest.mark.parametrize("n_out", [1, 2, 3, 5, 6])
def test_dense_tangent_short_last_group_is_exact(K, rng, n_out):
    """A layer of fewer than four (or not a multiple of four) rows, every row live: the
    repeated last row of a short group is stored once more with the same values."""
    W, d, T_in = tangent_case(rng, n_out, 16, 3)
    for dd in (d, None):
        T = K.dense_tangent(W, dd, T_in, 3)
        ref = (W.astype(np.float64) @ T_in) * (d[:, None] if dd is not None else 1.0)
        assert np.allclose(T[:-1].reshape(n_out, 3), ref, rtol=1e-5, atol=1e-6)
        assert T[-1] == 7.0


def test_dense_tangent_wide_layer_fallback(K, rng):
    """Layers wider than the kernels' row lists take the plain loops (on every target)."""
    W, d, T_in = tangent_case(rng, 5, 300, 3, dead_out=0.3, dead_in=0.3)
    T = K.dense_tangent(W, d, T_in, 3)
    ref = (W.astype(np.float64) @ T_in) * d[:, None]
    assert np.allclose(T[:-1].reshape(5, 3), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inplace", [False, True])
def test_scale_rows(K, rng, inplace):
    T_in = rng.normal(0, 1, (7, 3)).astype(F32)
    d = rng.uniform(-1, 1, 7).astype(F32)
    d[[1, 4]] = 1.0                                   # copies (nothing to do in place)
    d[[2, 5]] = 0.0
    T_in[5, 1] = np.inf                               # 0 * inf stays NaN
    out = K.scale_rows(T_in, d, 3, inplace=inplace)
    with np.errstate(invalid="ignore"):
        ref = T_in * d[:, None]
    assert np.array_equal(out[:-1].reshape(7, 3), ref, equal_nan=True)
    assert out[-1] == 7.0


@pytest.mark.parametrize("n_out, n_in, m, rows", [
    (1, 1, 1, 1), (4, 4, 4, 1), (5, 3, 4, 1), (3, 5, 2, 2), (6, 6, 4, 1), (64, 64, 4, 1),
    (64, 6, 4, 1), (4, 64, 4, 1), (7, 9, 5, 2), (9, 13, 8, 1), (16, 16, 3, 1)])
@pytest.mark.parametrize("sparse", [False, True])
def test_dense_adjoint_matches_numpy(K, rng, n_out, n_in, m, rows, sparse):
    W = rng.normal(0, 0.5, (n_out, n_in)).astype(F32)
    G = rng.normal(0, 1, (rows, n_out, m)).astype(F32)
    if sparse:
        G[:, rng.random(n_out) < 0.5] = 0.0
        G[:, 0] = -0.0
    A = K.dense_adjoint(W, G, rows, m)
    ref = np.einsum("ij,ril->rjl", W.astype(np.float64), G.astype(np.float64))
    scale = np.einsum("ij,ril->rjl", np.abs(W.astype(np.float64)), np.abs(G)) + 1
    assert np.all(np.abs(A[:-1].reshape(rows, n_in, m) - ref) <= 1e-6 * scale)
    assert A[-1] == 7.0


def test_dense_adjoint_all_rows_zero(K, rng):
    W = rng.normal(0, 0.5, (8, 6)).astype(F32)
    A = K.dense_adjoint(W, np.zeros((1, 8, 4), F32), 1, 4)
    assert np.all(A[:-1] == 0.0) and A[-1] == 7.0


@pytest.mark.parametrize("n_out, n_in, m", [
    (1, 1, 1), (4, 4, 4), (5, 3, 4), (6, 6, 4), (64, 64, 4), (64, 6, 4), (4, 64, 4), (7, 9, 5),
    (9, 13, 8), (16, 16, 3), (80, 16, 4), (3, 300, 4)])
@pytest.mark.parametrize("sparse", [False, True])
def test_dense_adjoint_scaled_matches_numpy(K, rng, n_out, n_in, m, sparse):
    """diag(d_in) W^T G: inputs with d_in == 0 and zero rows of G skipped (80 active rows: more
    than the gathered path lists; 300 inputs: wider than its lists)."""
    W = rng.normal(0, 0.5, (n_out, n_in)).astype(F32)
    G = rng.normal(0, 1, (n_out, m)).astype(F32)
    d_in = rng.uniform(0.1, 1.5, n_in).astype(F32)
    if sparse:
        G[rng.random(n_out) < 0.5] = 0.0
        G[0] = -0.0
        d_in[rng.random(n_in) < 0.5] = 0.0
        d_in[[1 % n_in, (n_in - 1)]] = 1.0
    A = K.dense_adjoint_scaled(W, G, m, d_in)
    W64, G64 = W.astype(np.float64), G.astype(np.float64)
    ref = (W64.T @ G64) * d_in[:, None]
    scale = (np.abs(W64).T @ np.abs(G64)) * np.abs(d_in[:, None]) + 1
    assert np.all(np.abs(A[:-1].reshape(n_in, m) - ref) <= 1e-6 * scale)
    assert np.all(A[:-1].reshape(n_in, m)[d_in == 0] == 0.0)
    assert A[-1] == 7.0


@pytest.mark.parametrize("n_in", [1, 3, 4, 5, 6, 8, 12, 13, 16, 20, 64])
@pytest.mark.parametrize("n_out", [1, 3, 4, 5, 9])
def test_q8_dense_matches_integer_arithmetic(K, rng, n_out, n_in):
    """nnmpc_q_dense_z (the DSP path on the Cortex-M4 builds, plain C on the host and at -O0):
    sum_j W x + bz requantised once to nearest, + zero point, clamped, exactly."""
    x = rng.integers(-128, 128, n_in).astype(np.int8)
    W = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    bz = rng.integers(-20000, 20000, n_out).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, n_out).astype(np.int32)
    shift = rng.integers(-12, 2, n_out).astype(np.int32)
    shift[0] = 0                                      # total = 31: the low-word rounding
    out_zp = -5
    y = K.q8_dense_z(x, W, bz, mult, shift, out_zp)
    ref = []
    for i in range(n_out):
        acc = int(bz[i]) + sum(int(a) * int(b) for a, b in zip(W[i], x))
        total = 31 - int(shift[i])
        v = ((acc * int(mult[i]) + (1 << (total - 1))) >> total) + out_zp
        ref.append(min(127, max(-128, v)))
    assert list(y[:n_out]) == ref and y[n_out] == 77
