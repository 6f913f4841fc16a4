"""The Newton MPC solver (firmware/solver) built with the host cc and run on analytic nets
with exact Jacobians (tests/solver_harness.c): convergence, box limits, the rollout chain
rule against a numpy least-squares solution, the time budget and the non-finite guard."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support import HOST_CFLAGS, REPO

SOLVER = REPO / "firmware" / "solver"


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path_factory.mktemp("solver") / "harness"
    subprocess.run([cc, *HOST_CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-g", f"-I{SOLVER}", str(SOLVER / "nnmpc_solver.c"),
                    str(REPO / "tests" / "solver_harness.c"), "-lm", "-o", str(exe)],
                   check=True)
    return exe


def run(exe: Path, script: str) -> list[dict]:
    out = subprocess.run([str(exe)], input=script, capture_output=True, text=True, check=True)
    results = []
    for line in out.stdout.splitlines():
        t = line.split()
        if t[0] == "status":
            ui, Ui = t.index("u"), t.index("U")
            results.append({"status": int(t[1]), "iter": int(t[3]), "evals": int(t[5]),
                            "ticks": int(t[7]), "cost": float(t[9]),
                            "u": np.array(t[ui + 1:Ui], np.float32),
                            "U": np.array(t[Ui + 1:], np.float32)})
        elif t[0] in ("init", "cost"):
            results.append({t[0]: float(t[1])})
    return results


CONVERGED, ITER_CAP, BUDGET, NONFINITE, BAD_CONFIG = range(5)


def quad(u):
    return np.array([u[0] + 0.5 * np.sin(u[1]), u[1] ** 3 / 3 + 0.2 * u[0]])


def test_quasi_static_inversion_converges_to_a_reachable_target(harness):
    # Start in the target's basin (from u = 0, Gauss-Newton can end in the local minimum
    # that the cubic makes at u1 > 0, as any local method can).
    u_true = np.array([0.7, -1.1])
    r = quad(u_true)
    res = run(harness, f"""model 0
dims 2 2 0 1 1 1
iter 30 1e-6 0
lo -3 -3
hi 3 3
init
reset 0 0 0.5 -0.5
ref 1 {r[0]} {r[1]}
solve
""")
    assert res[0]["init"] == 0
    s = res[1]
    assert s["status"] == CONVERGED
    assert 1 <= s["iter"] <= 15
    np.testing.assert_allclose(quad(s["u"]), r, atol=1e-4)
    assert s["cost"] < 1e-8


def test_limits_are_respected_and_the_bound_optimum_is_found(harness):
    # Target far outside the reachable set within the box: the answer sits on the bounds.
    r = np.array([4.0, 2.0])
    res = run(harness, f"""model 0
dims 2 2 0 1 1 1
iter 50 1e-7 0
lo -1 -0.5
hi 1 0.8
init
ref 1 {r[0]} {r[1]}
solve
""")
    s = res[-1]
    assert s["status"] in (CONVERGED, ITER_CAP)
    lo, hi = np.float32([-1, -0.5]), np.float32([1, 0.8])
    assert np.all(s["u"] >= lo) and np.all(s["u"] <= hi)
    # No point of a fine grid in the box does better.
    g0, g1 = np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-0.5, 0.8, 201))
    y = np.stack([g0 + 0.5 * np.sin(g1), g1 ** 3 / 3 + 0.2 * g0])
    best = ((y - r[:, None, None]) ** 2).sum(axis=0).min()
    assert s["cost"] <= best + 1e-4
    np.testing.assert_allclose(s["u"], [1.0, 0.8], atol=1e-5)


def arx_least_squares(y_hist, u_hist, ref, q, r, s_w, N, Nc):
    """Unconstrained MPC on y+ = 1.5y - 0.6y- + 0.2u + 0.1u- by linear least squares."""
    n = Nc

    def rollout(U):
        y, y_prev = y_hist
        u_prev = u_hist
        out = []
        for j in range(N):
            u = U[min(j, Nc - 1)]
            y_next = 1.5 * y - 0.6 * y_prev + 0.2 * u + 0.1 * u_prev
            out.append(y_next)
            y_prev, y, u_prev = y, y_next, u
        return np.array(out)

    base = rollout(np.zeros(n))
    G = np.stack([rollout(np.eye(n)[i]) - base for i in range(n)], axis=1)  # linear in U
    D = np.eye(n) - np.eye(n, k=-1)
    d0 = np.zeros(n)
    d0[0] = u_hist
    A = np.vstack([np.sqrt(q) * G, np.sqrt(r) * D, np.sqrt(s_w) * np.eye(n)])
    b = np.concatenate([np.sqrt(q) * (ref - base), np.sqrt(r) * d0, np.zeros(n)])
    return np.linalg.lstsq(A, b, rcond=None)[0]


@pytest.mark.parametrize("N,Nc", [(1, 1), (5, 2), (10, 4), (10, 10)])
def test_rollout_chain_rule_matches_least_squares_on_a_linear_arx_model(harness, N, Nc):
    ref = np.linspace(0.5, 1.0, N)
    refs = "\n".join(f"ref {j + 1} {ref[j]}" for j in range(N))
    res = run(harness, f"""model 1
dims 1 1 2 2 {N} {Nc}
q 2
r 0.3
s 0.01
iter 20 1e-5 0
init
reset 0.2 0.1
{refs}
solve
""")
    s = res[-1]
    # reset sets every lag to y0 = 0.2 and u0 = 0.1.
    U_ls = arx_least_squares((0.2, 0.2), 0.1, ref, 2.0, 0.3, 0.01, N, Nc)
    assert s["status"] == CONVERGED
    np.testing.assert_allclose(s["U"], U_ls, atol=2e-4)
    # Gauss-Newton is exact on a linear model; the LM damping (1e-3) leaves a small
    # remainder that the second step removes, the third sees a step below tolerance.
    assert s["iter"] <= 3


def test_nonlinear_mpc_solution_is_stationary(harness):
    # y+ = 0.8y + 0.5 tanh(u) + 0.1u-; check the projected gradient vanishes (numerically).
    N, Nc = 8, 3
    ref = np.full(N, 1.2)
    refs = "\n".join(f"ref {j + 1} {ref[j]}" for j in range(N))
    res = run(harness, f"""model 2
dims 1 1 1 2 {N} {Nc}
q 1
r 0.05
iter 50 1e-7 0
lo -2
hi 2
init
reset 0 0
{refs}
solve
""")
    s = res[-1]
    U = s["U"]

    def cost(U):
        y, up, c = 0.0, 0.0, 0.0
        for j in range(N):
            u = U[min(j, Nc - 1)]
            y = 0.8 * y + 0.5 * np.tanh(u) + 0.1 * up
            up = u
            c += (y - ref[j]) ** 2
        du = np.diff(np.concatenate([[0.0], U]))
        return c + 0.05 * (du ** 2).sum()

    g = np.array([(cost(U + 1e-5 * e) - cost(U - 1e-5 * e)) / 2e-5 for e in np.eye(Nc)])
    free = (U > -2 + 1e-6) & (U < 2 - 1e-6)
    assert np.abs(g[free]).max() < 2e-3
    assert abs(cost(U) - s["cost"]) < 1e-4
    assert s["status"] in (CONVERGED, ITER_CAP)


def test_two_input_two_output_mpc_tracks_in_closed_loop(harness):
    # The solver drives the analytic plant itself to the reference (no model mismatch).
    N, Nc = 6, 2
    lines = ["model 3", f"dims 2 2 1 1 {N} {Nc}", "q 1 1", "r 0.01 0.01", "iter 10 1e-6 0",
             "lo -1.5 -1.5", "hi 1.5 1.5", "init", "reset 0 0 0 0"]
    lines += [f"ref {j + 1} 0.5 -0.3" for j in range(N)]
    # Run the full loop inside one harness process, simulating the plant in Python between
    # steps through a pipe.
    proc = subprocess.Popen([str(harness)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().split() == ["init", "0"]
    y = np.zeros(2)
    ys = []
    for _ in range(60):
        proc.stdin.write(f"step {y[0]:.9g} {y[1]:.9g}\n")
        proc.stdin.flush()
        t = proc.stdout.readline().split()
        u = np.array([float(t[11]), float(t[12])])
        assert np.all(np.abs(u) <= 1.5)
        a, b = np.tanh(u[0] - 0.3 * u[1]), np.tanh(u[1])
        y = np.array([0.7 * y[0] + 0.1 * y[1] + 0.4 * a, 0.2 * y[0] + 0.6 * y[1] + 0.3 * b
                      + 0.1 * u[0]])
        ys.append(y)
    proc.stdin.close()
    assert proc.wait() == 0
    np.testing.assert_allclose(ys[-1], [0.5, -0.3], atol=2e-3)


def test_quasi_static_net_through_an_output_lag_is_a_dynamic_model(harness):
    # yhat[j] = a yhat[j-1] + (1-a)(f(U_i) + d) from the lag model's output (y0 after a
    # reset): cost against numpy, one net call per move, and a stationary solution.
    a, N, Nc = 0.8, 6, 2
    y0 = np.array([0.3, -0.2])
    ref = np.array([[0.9, 0.4]] * N)
    refs = "\n".join(f"ref {j + 1} {ref[j, 0]} {ref[j, 1]}" for j in range(N))
    head = f"""model 0
dims 2 2 0 1 {N} {Nc}
q 1 1
r 0.01 0.01
lag {a}
iter 50 1e-7 0
lo -3 -3
hi 3 3
init
reset {y0[0]} {y0[1]} 0.1 0.2
{refs}
"""
    U0 = np.array([0.4, -0.3, 0.6, 0.1])

    def cost(U):
        y, c = y0.copy(), 0.0
        for j in range(N):
            i = min(j, Nc - 1)
            y = a * y + (1 - a) * quad(U[2 * i:2 * i + 2])
            c += ((y - ref[j]) ** 2).sum()
        du = np.diff(np.concatenate([[0.1, 0.2], U]).reshape(-1, 2), axis=0)
        return c + 0.01 * (du ** 2).sum()

    res = run(harness, head + f"cost {' '.join(map(str, U0))}\nsolve\n")
    assert res[0]["init"] == 0
    assert abs(res[1]["cost"] - cost(U0)) < 1e-5
    s = res[2]
    assert s["status"] == CONVERGED
    assert s["evals"] % Nc == 0  # the net is called once per move, not once per step
    U = s["U"].astype(float)
    g = np.array([(cost(U + 1e-5 * e) - cost(U - 1e-5 * e)) / 2e-5 for e in np.eye(2 * Nc)])
    assert np.abs(g).max() < 2e-3
    # Without the lag the same net is the quasi-static model of before: y = f(u).
    res0 = run(harness, head.replace(f"lag {a}", "lag 0") + f"cost {' '.join(map(str, U0))}\n")
    c0 = sum(((quad(U0[2 * min(j, Nc - 1):2 * min(j, Nc - 1) + 2]) - ref[j]) ** 2).sum()
             for j in range(N)) + 0.01 * (np.diff(np.concatenate([[0.1, 0.2], U0]).reshape(-1, 2),
                                                  axis=0) ** 2).sum()
    assert abs(res0[1]["cost"] - c0) < 1e-5


def _ramp_loop(harness, lines, plant_lag, T=80):
    """Closed loop of the harness against y[k+1] = a y + (1 - a) quad(u), reference a ramp;
    returns the tracking errors."""
    proc = subprocess.Popen([str(harness)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().split() == ["init", "0"]
    N = int(lines[1].split()[5])
    ramp = lambda k: np.array([0.02 * k, -0.01 * k])  # noqa: E731
    y, errs = quad(np.array([0.0, 0.0])), []
    for k in range(T):
        for j in range(1, N + 1):
            r = ramp(k + j)
            proc.stdin.write(f"ref {j} {r[0]:.9g} {r[1]:.9g}\n")
        proc.stdin.write(f"step {y[0]:.9g} {y[1]:.9g}\n")
        proc.stdin.flush()
        t = proc.stdout.readline().split()
        u = np.array([float(t[11]), float(t[12])])
        y = plant_lag * y + (1 - plant_lag) * quad(u)
        errs.append(np.abs(y - ramp(k + 1)).max())
    proc.stdin.close()
    assert proc.wait() == 0
    return np.array(errs)


def test_output_lag_removes_the_ramp_lag_of_quasi_static_inversion(harness):
    # A plant with a first-order output lag follows a ramp: plain inversion (N = 1, no lag)
    # trails it by about a/(1-a) periods; with the lag modelled the error vanishes.
    a = 0.8
    base = ["model 0", "dims 2 2 0 1 {N} {Nc}", "q 1 1", "r 1e-4 1e-4", "iter 20 1e-7 0",
            "lo -3 -3", "hi 3 3", "init", "reset 0 0 0 0"]
    plain = _ramp_loop(harness, [ln.format(N=1, Nc=1) for ln in base], a)
    lagged = [ln.format(N=4, Nc=2) for ln in base]
    lagged.insert(2, f"lag {a}")
    with_lag = _ramp_loop(harness, lagged, a)
    assert plain[40:].min() > 0.05          # about 4 periods x 0.02 per period behind
    assert with_lag[40:].max() < 2e-3


def test_time_budget_stops_early_with_its_status(harness):
    # Each net call costs 100 fake ticks; N = 10 -> one Jacobian rollout is 1000 ticks.
    N = 10
    refs = "\n".join(f"ref {j + 1} 1.0" for j in range(N))
    common = f"""model 2
dims 1 1 1 2 {N} 3
r 0.05
iter 50 1e-12 0
lo -2
hi 2
"""
    free = run(harness, common + "init\nreset 0 0\n" + refs + "\nsolve\n")[-1]
    capped = run(harness, common + "budget 2500\ninit\nreset 0 0\n" + refs + "\nsolve\n")[-1]
    assert free["iter"] > capped["iter"]
    assert capped["status"] == BUDGET
    assert 0 < capped["ticks"] <= 2500 + 2000
    assert capped["cost"] < run(harness, common + "init\nreset 0 0\n" + refs +
                                "\ncost 0 0 0\n")[-1]["cost"]


def test_iteration_cap_reports_its_status(harness):
    r = quad(np.array([1.5, -1.4]))
    s = run(harness, f"""model 0
dims 2 2 0 1 1 1
iter 1 1e-9 0
init
ref 1 {r[0]} {r[1]}
solve
""")[-1]
    assert s["status"] == ITER_CAP and s["iter"] == 1


def test_non_finite_net_holds_the_last_safe_input(harness):
    # The net returns NaN wherever an input exceeds 0.5: starting inside, every trial step
    # that leaves the region is rejected; starting outside, the solver holds the last u.
    r = quad(np.array([1.0, 1.0]))
    inside = run(harness, f"""model 0
dims 2 2 0 1 1 1
iter 20 1e-7 0
nanabove 0.5
init
reset 0 0 0.2 0.1
ref 1 {r[0]} {r[1]}
solve
""")[-1]
    assert np.all(np.isfinite(inside["u"])) and np.all(inside["u"] <= np.float32(0.5))
    assert inside["status"] != NONFINITE
    outside = run(harness, f"""model 0
dims 2 2 0 1 1 1
iter 20 1e-7 0
nanabove 0.5
init
reset 0 0 0.9 0.1
ref 1 {r[0]} {r[1]}
solve
""")[-1]
    assert outside["status"] == NONFINITE
    np.testing.assert_array_equal(outside["u"], np.float32([0.9, 0.1]))
    # A non-finite measurement is guarded too.
    meas = run(harness, """model 1
dims 1 1 2 2 3 1
init
reset 0 0.25
step nan
""")[-1]
    assert meas["status"] == NONFINITE and meas["u"][0] == np.float32(0.25)


def test_bad_configuration_is_rejected(harness):
    # The net has 4 inputs; na = nb = 1 gives 2: init refuses, solve reports it.
    res = run(harness, """model 1
dims 1 1 1 1 3 1
init
solve
""")
    assert res[0]["init"] == -1
    assert res[1]["status"] == BAD_CONFIG
    # The output lag is for nets without output lags only, and must be a stable pole.
    for script in ("model 2\ndims 1 1 1 2 3 1\nlag 0.5\ninit\n",
                   "model 0\ndims 2 2 0 1 1 1\nlag 1.0\ninit\n",
                   "model 2\ndims 1 1 1 2 3 1\nyfilter 1.5\ninit\n"):
        assert run(harness, script)[0]["init"] == -1


def test_finite_difference_baseline_takes_one_clipped_newton_step(harness):
    # On the linear ARX model with one held move, one Newton step with central differences
    # is the exact minimiser of the (single-input) quadratic cost, up to clipping.
    N = 5
    refs = "\n".join(f"ref {j + 1} 0.8" for j in range(N))
    res = run(harness, f"""model 1
dims 1 1 2 2 {N} 1
q 1
r 0.1
lo -5
hi 5
init
reset 0 0
{refs}
fdstep 1e-3 0
""")
    s = res[-1]
    U_ls = arx_least_squares((0.0, 0.0), 0.0, np.full(N, 0.8), 1.0, 0.1, 0.0, N, 1)
    assert s["iter"] == 1 and s["evals"] == 4 * N
    np.testing.assert_allclose(s["u"], U_ls[:1], atol=1e-3)
    clipped = run(harness, f"""model 1
dims 1 1 2 2 {N} 1
lo -0.2
hi 0.2
init
reset 0 0
{refs}
fdstep 1e-3 0
""")[-1]
    assert clipped["u"][0] == pytest.approx(0.2)
