"""Plants against closed-form answers: MSD free response, constant-curvature poses, limits,
HASEL saturation, lag and hysteresis, sensor noise, and the excitation signals."""

from __future__ import annotations

import numpy as np
import pytest

from nnmpc.host.learn.datasets import EXCITATIONS, _EXCITE, excitation, make_dataset
from nnmpc.host.errors import NnmpcError
from nnmpc.host.plants import PLANTS, get_plant


def run(plant, x0, u, steps):
    xs = [np.asarray(x0, dtype=float)]
    for _ in range(steps):
        xs.append(plant.step(xs[-1], u))
    return np.array(xs)


# -- mass-spring-damper --------------------------------------------------------------------------
@pytest.mark.parametrize("x0,v0", [(50.0, 0.0), (-20.0, 400.0), (0.0, -1500.0)])
def test_msd_free_response_matches_analytic_damped_solution(x0, v0):
    p = get_plant("msd")
    assert p.zeta == pytest.approx(0.2) and p.omega_n == pytest.approx(10.0)
    n = 500  # 5 s: many periods (T = 0.64 s) and decay to exp(-10)
    xs = run(p, [x0, v0], [0.0], n)
    t = np.arange(n + 1) * p.dt
    # Independent closed form: x = A exp(-zeta wn t) cos(wd t - phi)
    wd = 10.0 * np.sqrt(1 - 0.04)
    A = np.hypot(x0, (v0 + 2.0 * x0) / wd)
    phi = np.arctan2((v0 + 2.0 * x0) / wd, x0)
    pos = A * np.exp(-2.0 * t) * np.cos(wd * t - phi)
    scale = max(abs(x0), abs(v0) / 10.0)
    assert np.abs(xs[:, 0] - pos).max() < 1e-6 * scale
    assert np.abs(xs - p.free_response(x0, v0, t)).max(axis=0)[1] < 1e-5 * 10 * scale
    # The energy only ever decreases (damped) and the response really is oscillatory.
    energy = 0.5 * p.k * (xs[:, 0] / 1000) ** 2 + 0.5 * p.m * (xs[:, 1] / 1000) ** 2
    assert np.all(np.diff(energy) <= 1e-15)
    assert np.sum(np.diff(np.sign(xs[:, 0])) != 0) >= 10


def test_msd_forced_steady_state_is_f_over_k():
    p = get_plant("msd")
    xs = run(p, p.x0(), [4.0], 1000)  # 10 s: transient down to exp(-20)
    assert xs[-1, 0] == pytest.approx(40.0, abs=1e-6)   # 4 N / 100 N/m = 40 mm
    assert xs[-1, 1] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(p.forward_kinematics(np.array([4.0])), [40.0, 0.0])


# -- tendon segment ------------------------------------------------------------------------------
def theta_tension(p, theta):
    """Tension on one tendon that bends the segment by ``theta``:
    r T / EI * (L0 - T / k) = theta."""
    a, b, c = -p.r / (p.EI * p.k_ax), p.r * p.L0 / p.EI, -theta
    return (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)


@pytest.mark.parametrize("tendon", [0, 1, 2])
@pytest.mark.parametrize("theta", [np.pi / 6, np.pi / 2, 1.9])
def test_tendon_single_tendon_poses_are_circular_arcs(tendon, theta):
    p = get_plant("tendon")
    T = theta_tension(p, theta)
    assert 0 < T <= 10.0
    u = np.zeros(3)
    u[tendon] = T
    tip = p.forward_kinematics(u)
    L = p.L0 - T / p.k_ax
    R = L / theta  # radius of the arc
    phi = 2 * np.pi * tendon / 3  # the segment bends toward the pulled tendon
    expect = [R * (1 - np.cos(theta)) * np.cos(phi), R * (1 - np.cos(theta)) * np.sin(phi),
              R * np.sin(theta)]
    np.testing.assert_allclose(tip, expect, atol=1e-9)
    # The tip stays on the arc's circle, and the pulled tendon is shortened by r * theta
    # plus the axial compression; the other two pay out r * theta / 2 each.
    dl = p.tendon_length_change(p.steady_state(u))
    comp = p.L0 - L
    assert dl[tendon] == pytest.approx(p.r * theta + comp, rel=1e-12)
    others = [i for i in range(3) if i != tendon]
    np.testing.assert_allclose(dl[others], -p.r * theta / 2 + comp, rtol=1e-12)


def test_tendon_special_poses():
    p = get_plant("tendon")
    np.testing.assert_allclose(p.forward_kinematics(np.zeros(3)), [0, 0, 100.0], atol=1e-12)
    # Equal tensions: no bending, only axial compression (3 * 6 N / 3 N/mm = 6 mm).
    np.testing.assert_allclose(p.forward_kinematics(np.full(3, 6.0)), [0, 0, 94.0], atol=1e-9)
    # Theta = pi: the tip is back at the base plane, 2R away from the axis.
    T = theta_tension(p, np.pi)
    if T <= 10.0:
        L = p.L0 - T / p.k_ax
        np.testing.assert_allclose(p.forward_kinematics(np.array([T, 0, 0])),
                                   [2 * L / np.pi, 0, 0], atol=1e-9)
    # Tiny curvature: the arc formula has no 0/0.
    tip = p.forward_kinematics(np.array([1e-9, 0, 0]))
    assert np.all(np.isfinite(tip)) and tip[2] == pytest.approx(100.0, abs=1e-6)


def test_tendon_arc_formula_matches_textbook_form_on_random_configs(rng):
    p = get_plant("tendon")
    u = rng.uniform(0, 10, size=(500, 3))
    x = p.steady_state(u)
    k = np.hypot(x[:, 0], x[:, 1]) / 1000.0
    phi = np.arctan2(x[:, 1], x[:, 0])
    L = x[:, 2]
    ok = k > 1e-4
    expect = np.stack([(1 - np.cos(k * L)) / k * np.cos(phi), (1 - np.cos(k * L)) / k * np.sin(phi),
                       np.sin(k * L) / k], axis=-1)
    np.testing.assert_allclose(p.tip(x)[ok], expect[ok], atol=1e-9)


def test_tendon_lag_is_first_order_and_rk4_accurate():
    p = get_plant("tendon")
    u = np.array([7.0, 2.0, 0.0])
    target = p.steady_state(u)
    xs = run(p, p.x0(), u, 60)
    t = np.arange(61) * p.dt
    expect = target + (p.x0() - target) * np.exp(-t / p.tau)[:, None]
    assert np.abs(xs - expect).max() < 1e-7


# -- HASEL ---------------------------------------------------------------------------------------
def test_hasel_static_curve_saturates():
    p = get_plant("hasel")
    V = np.linspace(0, 8, 81)[:, None]
    d = p.forward_kinematics(V)[:, 0]
    assert np.all(np.diff(d) >= 0) and d[0] == 0.0 and d[-1] < p.d_max
    assert d[-1] > 0.8 * p.d_max
    slope = np.diff(d)
    assert slope[-5:].mean() < 0.5 * slope.max()  # the curve flattens out at high voltage
    # Steady state from rest is what integrating a step gives.
    np.testing.assert_allclose(run(p, p.x0(), [5.0], 2000)[-1], p.steady_state(np.array([5.0])),
                               atol=1e-5)


def test_hasel_lags_a_voltage_step():
    p = get_plant("hasel")
    xs = run(p, p.x0(), [6.0], 200)
    d, final = xs[:, 2], p.steady_state(np.array([6.0]))[2]
    # Electrical + mechanical first-order lags in series: 63 % takes longer than tau_m,
    # but the step has settled within 1 % after 2 s.
    t63 = np.argmax(d >= (1 - np.exp(-1)) * final) * p.dt
    assert p.tau_m < t63 < 2.5 * (p.tau_m + p.tau_e)
    assert d[1] < 0.02 * final
    assert abs(d[-1] - final) < 0.01 * final


def test_hasel_loading_and_unloading_paths_differ():
    p = get_plant("hasel")
    n = 1600  # a slow 16 s triangle 0 -> 8 -> 0 kV, so the lags do not matter
    V = np.concatenate([np.linspace(0, 8, n // 2), np.linspace(8, 0, n // 2)])[:, None]
    xs, _ = p.simulate(V)
    d = xs[1:, 2]
    up = np.interp(4.0, V[: n // 2, 0], d[: n // 2])
    down = np.interp(4.0, V[n // 2:, 0][::-1], d[n // 2:][::-1])
    assert down - up > 0.5  # mm, at the same voltage
    # The same triangle played twice as slowly gives the same loop: hysteresis, not lag.
    V2 = np.repeat(V, 2, axis=0)
    d2 = p.simulate(V2)[0][1:, 2]
    up2 = np.interp(4.0, V2[:n, 0], d2[:n])
    assert up2 == pytest.approx(up, abs=0.05)


# -- shared interface ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PLANTS))
def test_inputs_are_clipped_to_actuator_limits(name, rng):
    p = get_plant(name)
    x = p.steady_state(0.5 * (p.u_low + p.u_high))
    above, below = p.u_high + 5.0, p.u_low - 5.0
    np.testing.assert_array_equal(p.step(x, above), p.step(x, p.u_high))
    np.testing.assert_array_equal(p.step(x, below), p.step(x, p.u_low))
    np.testing.assert_array_equal(p.forward_kinematics(above), p.forward_kinematics(p.u_high))


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_outputs_stay_in_declared_ranges_and_batches_match(name, rng):
    p = get_plant(name)
    u = rng.uniform(p.u_low, p.u_high, size=(400, len(p.inputs)))
    y = p.forward_kinematics(u)
    assert np.all(y >= p.y_low) and np.all(y <= p.y_high)
    single = np.array([p.forward_kinematics(ui) for ui in u[:20]])
    np.testing.assert_allclose(single, y[:20], rtol=1e-12, atol=1e-12)
    xb = p.step(p.steady_state(u[:5]), u[5:10])
    np.testing.assert_allclose(xb[3], p.step(p.steady_state(u[3]), u[8]), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_sensor_noise_has_the_stated_standard_deviation(name):
    p = get_plant(name)
    x = np.broadcast_to(p.steady_state(p.u_high), (20000, len(p.states)))
    u = np.broadcast_to(p.u_high, (20000, len(p.inputs)))
    clean = p.measure(x, u)
    noisy = p.measure(x, u, np.random.default_rng(0))
    assert np.all(clean == clean[0])
    np.testing.assert_allclose((noisy - clean).std(axis=0), p.noise_std, rtol=0.05)
    assert np.abs((noisy - clean).mean(axis=0)).max() < 0.05 * max(p.noise_std)


@pytest.mark.parametrize("name", sorted(PLANTS))
@pytest.mark.parametrize("kind", EXCITATIONS)
def test_excitation_spans_the_limits_without_leaving_them(name, kind, rng):
    p = get_plant(name)
    u = _EXCITE[kind](p, 3000, rng)
    assert u.shape == (3000, len(p.inputs))
    assert np.all(u >= p.u_low - 1e-12) and np.all(u <= p.u_high + 1e-12)
    span = (u.max(0) - u.min(0)) / (p.u_high - p.u_low)
    assert np.all(span > 0.8), span
    mixed = excitation(p, 900, rng)
    assert mixed.shape == (900, len(p.inputs)) and np.all(mixed <= p.u_high)


def test_unknown_plant_is_a_one_line_error():
    with pytest.raises(NnmpcError, match="unknown plant 'nope'.*tendon"):
        get_plant("nope")


def test_simulated_data_respects_limits_for_every_plant():
    for name in PLANTS:
        p = get_plant(name)
        ds = make_dataset(p, "dyn", 600, seed=1)
        nu = len(p.inputs)
        lo, hi = p.u_low.astype(np.float32), p.u_high.astype(np.float32)  # data are float32
        for x in (ds.x_train, ds.x_val):
            assert np.all(x[:, -nu:] >= lo) and np.all(x[:, -nu:] <= hi)
