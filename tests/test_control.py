"""The control loop core (firmware/control) built with the host cc under ASan/UBSan and driven
by tests/control_harness.c: the PID's guard against bad measurements and the range checks of
CONFIG's time fields."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support import HOST_CFLAGS, REPO

FW = REPO / "firmware"
CONVERGED, BAD_MEASUREMENT = 0, 5
ERR_BAD_VALUE = 4


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path_factory.mktemp("control") / "harness"
    dirs = [d for d in ("protocol", "solver", "control", "io") if (FW / d).is_dir()]
    srcs = [FW / s for s in ("control/nnmpc_control.c", "solver/nnmpc_solver.c",
                             "io/nnmpc_io.c") if (FW / s).is_file()]
    subprocess.run([cc, *HOST_CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-g", *(f"-I{FW / d}" for d in dirs), str(REPO / "tests" / "control_harness.c"),
                    *map(str, srcs), "-lm", "-o", str(exe)], check=True)
    return exe


def run(exe: Path, script: str) -> list[list[str]]:
    out = subprocess.run([str(exe)], input=script, capture_output=True, text=True, check=True)
    return [line.split() for line in out.stdout.splitlines()]


def pid_loop(exe: Path, bad_at: int | None = None, bad: str = "1e20", ylim: str = "",
             T: int = 60):
    """PID on the plant y+ = 0.8 y + 0.4 u, reference a slow sine; the measurement at period
    bad_at is replaced by `bad`. Returns statuses, inputs and integrator states per period."""
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stdout
    # The slow sine is uploaded as a trajectory before the start (a REFERENCE while the loop
    # runs is refused: test_reference_while_running_is_refused).
    setup = ["init 1000000", "config 1 0 0", "pid 0.8 0.15 0.1 0", "limits -1 1 0", f"traj {T}"]
    if ylim:
        setup.append(f"ylim {ylim}")
    setup.append("start")
    proc.stdin.write("\n".join(setup) + "\n")
    proc.stdin.flush()
    replies = [proc.stdout.readline().split() for _ in range(5)]
    assert all(r[1] == "0" for r in replies), replies
    y, st, us, integ = 0.0, [], [], []
    for k in range(T):
        proc.stdin.write(f"period {bad if k == bad_at else f'{y:.9g}'}\n")
        proc.stdin.flush()
        t = proc.stdout.readline().split()
        assert t[0] == "tel"
        st.append(int(t[1]))
        us.append(float(t[2]))
        integ.append(float(t[3]))
        y = 0.8 * y + 0.4 * us[-1]
    proc.stdin.close()
    assert proc.wait() == 0
    return np.array(st), np.array(us), np.array(integ)


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan", "1e20", "-1e20", "2e6"])
def test_pid_holds_its_input_on_a_bad_measurement_and_recovers(harness, bad):
    st0, u0, i0 = pid_loop(harness)
    assert np.all(st0 == CONVERGED)
    assert np.ptp(u0) > 0.3  # the reference keeps the loop moving
    k = 20
    st, u, integ = pid_loop(harness, bad_at=k, bad=bad)
    # The bad period: its own status, u held exactly, the integrator untouched.
    assert st[k] == BAD_MEASUREMENT
    assert u[k] == u[k - 1]
    assert integ[k] == integ[k - 1]
    # Before it, the same run; after it, good measurements are used again at once ...
    np.testing.assert_array_equal(u[:k], u0[:k])
    assert np.all(st[k + 1:] == CONVERGED)
    assert u[k + 1] != u[k]
    # ... and within 20 periods the loop is back on the clean run's trajectory.
    assert np.abs(u[k + 20:] - u0[k + 20:]).max() < 1e-3
    assert np.abs(integ[k + 20:] - i0[k + 20:]).max() < 1e-3


def test_pid_refuses_a_measurement_outside_its_configured_range(harness):
    # With a plausible range [-2, 2], 3.0 is refused; the clean run never leaves the range, so
    # setting it changes nothing else.
    _, u0, _ = pid_loop(harness)
    _, u1, _ = pid_loop(harness, ylim="-2 2")
    np.testing.assert_array_equal(u1, u0)
    st, u, _ = pid_loop(harness, bad_at=10, bad="3.0", ylim="-2 2")
    assert st[10] == BAD_MEASUREMENT and u[10] == u[9]
    # Without the range, 3.0 is an ordinary measurement.
    st, u, _ = pid_loop(harness, bad_at=10, bad="3.0")
    assert st[10] == CONVERGED and u[10] != u[9]


def test_config_time_fields_are_range_checked(harness):
    res = run(harness, """init 25000000
config 1 10000 900
config 1 4294967295 900
config 1 0 171798692
config 1 10000001 0
config 1 0 10000001
config 1 10000000 10000000
init 1000000000
config 1 10000000 0
config 1 2147483 2147483
init 1000
config 1 0 1
""")
    # 25 MHz: 900 us is 22,500 ticks.
    assert res[0] == ["config", "0", "22500", "10000", "900"]
    # -1 as u32 (which ran the loop back to back), a budget whose tick count wrapped to 4 at
    # 25 MHz, and anything above 10 s: refused with bad_value, the settings unchanged.
    for r in res[1:5]:
        assert r == ["config", str(ERR_BAD_VALUE), "22500", "10000", "900"], r
    assert res[5] == ["config", "0", "250000000", "10000000", "10000000"]
    # At 1 GHz, 10 s is more than 2^31 ticks; 2.147483 s is not.
    assert res[6][:2] == ["config", str(ERR_BAD_VALUE)]
    assert res[7] == ["config", "0", "2147483000", "2147483", "2147483"]
    # A slow clock does not round a budget down to "no budget".
    assert res[8] == ["config", "0", "1", "0", "1"]


def test_reference_while_running_is_refused(harness):
    """REFERENCE while the loop runs would drop the uploaded trajectory under it: busy (5),
    as docs/PROTOCOL.md says; stopped, it is taken."""
    out = run(harness, "init 1000000\nconfig 1 0 0\npid 0.8 0.15 0.1 0\nlimits -1 1 0\n"
                       "traj 10\nstart\nref 0.3\n")
    assert out[-2] == ["start", "0"] and out[-1] == ["ref", "5"]
    out = run(harness, "init 1000000\nconfig 1 0 0\nlimits -1 1 0\nref 0.3\n")
    assert out[-1] == ["ref", "0"]


def test_microseconds_to_ticks_without_64_bit_division_is_exact(tmp_path):
    """CONFIG's period and budget become clock ticks in 32-bit arithmetic (the image carries
    no 64-bit division routine): equal to floor(us * clock_hz / 10^6) computed in 64 bits on
    edge values and two million random pairs, and refused exactly when it does not fit."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path / "ticks"
    subprocess.run([cc, *HOST_CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    *(f"-I{FW / d}" for d in ("protocol", "solver", "control", "io")),
                    str(REPO / "tests" / "ticks_harness.c"),
                    *(str(FW / s) for s in ("control/nnmpc_control.c", "solver/nnmpc_solver.c",
                                            "io/nnmpc_io.c", "protocol/nnmpc_msgs.c")),
                    "-lm", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "0 of 2000099 differ", r.stdout


# -- the PID with feed-forward: the firmware's law against the host's simulate_pid ----------
class _FirstOrder:
    """y+ = 0.8 y + 0.4 u, one output, one input in [-u_max, u_max], no noise: the plant of
    pid_loop, in the interface simulate_pid takes."""

    outputs, inputs, states = ("y",), ("u",), ("y",)
    noise_std = ()

    def __init__(self, u_max: float = 1.0):
        self.u_low, self.u_high = np.array([-u_max]), np.array([u_max])

    def steady_state(self, u):
        return 2.0 * np.asarray(u, float)

    def forward_kinematics(self, u):
        return 2.0 * np.asarray(u, float)

    def h(self, x, u):
        return np.asarray(x, float)

    def step(self, x, u):
        return 0.8 * x + 0.4 * u


def _device_run(exe: Path, pid: str, u_init: float, T: int, traj: bool = True,
                u_max: float = 1.0):
    """The host build of the control core in closed loop with _FirstOrder from rest under
    u_init; the reference: the harness's trajectory 0.5 sin(0.1 k) (traj) or a constant 0.7.
    Inputs in [-u_max, u_max]. Returns the inputs the device applied and its integrator, per
    period."""
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin and proc.stdout
    setup = ["init 1000000", "config 1 0 0", f"pid {pid}",
             f"limits {-u_max:.9g} {u_max:.9g} {u_init:.9g}",
             f"traj {T}" if traj else "ref 0.7", "start"]
    proc.stdin.write("\n".join(setup) + "\n")
    proc.stdin.flush()
    replies = [proc.stdout.readline().split() for _ in range(5)]
    assert all(r[1] == "0" for r in replies), replies
    y = float(np.float32(2.0 * np.float32(u_init)))
    us, integ = [], []
    for _ in range(T):
        proc.stdin.write(f"period {y:.9g}\n")
        proc.stdin.flush()
        t = proc.stdout.readline().split()
        us.append(float(np.float32(t[2])))      # 9 digits: the device's float32 exactly
        integ.append(float(np.float32(t[3])))
        y = float(np.float32(0.8 * y + 0.4 * us[-1]))
    proc.stdin.close()
    assert proc.wait() == 0
    return np.array(us), np.array(integ)


def test_pid_feedforward_on_the_device_is_simulate_pid(harness):
    """The firmware's PID with feed-forward (kff on r[k+lead] - y_bias, kdff on the
    reference's step ahead) and the host's simulate_pid, which tunes it, give the same inputs
    (float32 on the device, float64 on the host), saturation and anti-windup included."""
    from nnmpc.host.loop.pid import simulate_pid

    T, u_bias, lead = 80, 0.1, 3
    kp, ki, kd, kff, kdff, u_max = 1.5, 0.2, 0.3, 0.9, 6.0, 0.25
    y_bias = 2.0 * u_bias
    u_dev, _ = _device_run(harness, f"{kp} {ki} {kd} {u_bias} {kff} {kdff} {y_bias} {lead}",
                           u_bias, T, u_max=u_max)
    assert np.sum(np.abs(u_dev) == u_max) >= 3   # the input saturates: the anti-windup acts
    refs = np.asarray(np.float32(0.5 * np.sin(0.1 * np.arange(T))), float)[:, None]
    plant = _FirstOrder(u_max)
    _, u_host = simulate_pid(plant, refs, np.array([[kp, ki, kd, kff, kdff]]), np.array([u_bias]),
                             np.eye(1), (0,), seed=None, lead=lead, history=True)
    np.testing.assert_allclose(u_dev, u_host[0, :, 0], atol=2e-5)
    # Each term counts: without the feed-forward, or with another lead, the inputs differ.
    _, u_nff = simulate_pid(plant, refs, np.array([[kp, ki, kd]]), np.array([u_bias]),
                            np.eye(1), (0,), seed=None, history=True)
    _, u_l2 = simulate_pid(plant, refs, np.array([[kp, ki, kd, kff, kdff]]), np.array([u_bias]),
                           np.eye(1), (0,), seed=None, lead=2, history=True)
    assert np.abs(u_dev - u_nff[0, :, 0]).max() > 0.05
    assert np.abs(u_dev - u_l2[0, :, 0]).max() > 0.01


def test_zero_feedforward_is_the_old_pid_law_bit_for_bit(harness):
    """kff = kdff = 0 (whatever y_bias and lead say) is the PID without feed-forward: on the
    device, the old law computed step by step in float32 gives the very same inputs and
    integrator; on the host, simulate_pid with five gains (the last two 0) is the three-gain
    simulation to the last bit."""
    from nnmpc.host.loop.pid import simulate_pid

    f = np.float32
    T, u_bias = 60, 0.1
    kp, ki, kd = f(2.5), f(0.15), f(0.4)
    u0, i0 = _device_run(harness, f"{kp} {ki} {kd} {u_bias}", u_bias, T, traj=False)
    u1, i1 = _device_run(harness, f"{kp} {ki} {kd} {u_bias} 0 0 0.37 5", u_bias, T, traj=False)
    np.testing.assert_array_equal(u1, u0)
    np.testing.assert_array_equal(i1, i0)
    # The old law (nnmpc_control.c before the feed-forward), float32, operation by operation.
    r, ub = f(0.7), f(u_bias)
    y = f(f(2.0) * ub)
    y_prev, integ, us, integs = y, f(0.0), [], []
    for _ in range(T):
        e = f(r - y)
        v = f(f(f(f(kp * e) + integ) + f(ki * e)) - f(kd * f(y - y_prev)))
        s = f(ub + f(f(1.0) * v))
        u = f(min(max(s, f(-1.0)), f(1.0)))
        if u == s:
            integ = f(integ + f(ki * f(r - y)))
        y_prev = y
        us.append(float(u))
        integs.append(float(integ))
        y = f(0.8 * float(y) + 0.4 * float(u))
    assert np.sum(np.abs(us) == 1.0) >= 1
    np.testing.assert_array_equal(u0, us)
    np.testing.assert_array_equal(i0, integs)
    # The host simulation: five gains with kff = kdff = 0 are the three-gain law exactly.
    plant = _FirstOrder()
    refs = np.asarray(np.float32(0.5 * np.sin(0.1 * np.arange(T))), float)[:, None]
    g3 = np.array([[2.5, 0.15, 0.4], [0.8, 0.0, 0.1]])
    a = simulate_pid(plant, refs, g3, np.array([u_bias]), np.eye(1), (0,), seed=None,
                     history=True)
    b = simulate_pid(plant, refs, np.hstack([g3, np.zeros((2, 2))]), np.array([u_bias]),
                     np.eye(1), (0,), seed=None, lead=4, y_bias=np.array([0.37]), history=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
