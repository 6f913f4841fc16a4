"""How each plant is controlled by default: the net kind, tracked outputs, weights, horizon
and references (one :class:`PlantSetup` per plant), and the plant facts a run starts from."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import NnmpcError
from ..plants import Plant


@dataclass
class PlantSetup:
    """How a plant is controlled by default: the net, which outputs are tracked, weights."""

    kind: str                         # "fk" (quasi-static) or "narx"
    tracked: tuple[int, ...]          # output indices with a reference
    lags: tuple[int, int] = (0, 1)    # (na, nb) for NARX
    hidden: tuple[int, ...] = (16, 16)
    skip: bool = False                # a linear path from input to output beside the MLP
                                      # (y = W x + MLP(x)): dynamics that are mostly linear
    samples: int = 6000
    epochs: int = 80
    horizon: int = 1
    moves: int = 1
    q: tuple[float, ...] = ()
    r: float = 0.0                    # move weight (same for every input)
    s: float = 0.0                    # regularisation towards the middle of the input range
    bias_gain: float = 0.0
    max_iter: int = 8
    duration: float = 8.0             # s
    step_levels: tuple[tuple[float, ...], ...] = ()   # rows of tracked values
    sine_amp: tuple[float, ...] = ()
    sine_offset: tuple[float, ...] = ()
    sine_hz: float = 0.25
    circle: bool = False              # sine: the tracked pair moves on a circle
    lag: bool = False                 # fk nets: model the plant's output lag (identified from
                                      # a step response) around the quasi-static net
    y_filter: float = 0.0             # narx nets: weight of the model's prediction in the
                                      # output lags (0: the measurement as is)
    model_std: tuple[float, ...] = () # narx nets, estimator: the net's one-step error per
                                      # output (std, per period) that its process noise Q
                                      # stands for (docs/MPC.md, 'State estimation')
    dist_std: tuple[float, ...] = ()  # estimator: the step per period of the disturbance
                                      # estimate d's random walk (std; 0.1 x model_std unset)


SETUPS: dict[str, PlantSetup] = {
    # MSD: 2nd order, lightly damped, both states measured: a one-step dynamics net
    # [x, v, F][k] -> [x, v][k+1] (NARX with one lag), MPC over 8 steps (80 ms), one warm-started
    # Gauss-Newton iteration per period (the tracking does not improve with more here). The
    # linear skip path carries the (linear) dynamics and the MLP what it misses: the noise-free
    # one-step error is 0.0034 mm, 0.047 mm/s against 0.28 mm, 2.1 mm/s without it (seed 0).
    # The estimator's Q stands for about three times that error.
    "msd": PlantSetup(kind="narx", tracked=(0,), lags=(1, 1), hidden=(16, 16), skip=True,
                      samples=8000, epochs=150, horizon=8, moves=3, q=(1.0, 0.0), r=1e-2,
                      s=0.0, bias_gain=0.3, max_iter=1, duration=8.0, model_std=(0.01, 0.1),
                      step_levels=((0.0,), (40.0,), (-30.0,), (20.0,)),
                      sine_amp=(30.0,), sine_offset=(0.0,), sine_hz=0.5),
    # Tendon segment: inversion of the forward-kinematics net (the paper's use) through the
    # segment's identified output lag (0.1 s), over 3 periods with one held move.
    "tendon": PlantSetup(kind="fk", tracked=(0, 1), hidden=(32, 32), samples=4000, epochs=200,
                         lag=True, horizon=3, moves=1,
                         q=(1.0, 1.0, 0.0), r=1e-3, s=1e-3, bias_gain=0.2, max_iter=8,
                         duration=10.0,
                         step_levels=((0.0, 0.0), (25.0, 10.0), (-15.0, 20.0), (5.0, -25.0)),
                         sine_amp=(25.0, 25.0), sine_offset=(0.0, 0.0), sine_hz=0.1,
                         circle=True),
    # HASEL actuator (the paper's second rig): saturating, lagged (driver 20 ms, mechanics
    # 80 ms) and hysteretic, one voltage in, one displacement out. A NARX net with three lags
    # carries the lags and the hysteresis' memory; MPC over 8 periods with 3 moves, one
    # warm-started Gauss-Newton iteration per period.
    # Without the linear skip path: with it (0.037 mm on the sine against 0.076 mm, seeds
    # 0-2) the step transients take two or three trials per period, and 53 of 800 periods of
    # seed 1 were stopped by the 250 Hz budget.
    "hasel": PlantSetup(kind="narx", tracked=(0,), lags=(3, 3), hidden=(32, 32), samples=8000,
                        epochs=150, horizon=8, moves=3, q=(1.0,), r=3e-3, s=0.0,
                        bias_gain=0.3, max_iter=1, duration=8.0, y_filter=0.5,
                        step_levels=((1.0,), (3.5,), (2.0,), (4.0,)),
                        sine_amp=(1.5,), sine_offset=(2.5,), sine_hz=0.25),
    # 2-link arm: the same through the servo lag (50 ms), 2 periods, one held move (one net
    # Jacobian per iteration: fits the 1 kHz budget).
    "arm2": PlantSetup(kind="fk", tracked=(0, 1), hidden=(32, 32), samples=3000, epochs=150,
                       lag=True, horizon=2, moves=1,
                       q=(1.0, 1.0), r=1e-4, s=0.0, bias_gain=0.2, max_iter=8, duration=6.0,
                       step_levels=((250.0, 100.0), (150.0, 200.0), (200.0, -50.0)),
                       sine_amp=(40.0, 40.0), sine_offset=(200.0, 100.0), sine_hz=0.2,
                       circle=True),
}


#: Other nets a plant can be controlled with (``nnmpc run --net``).
VARIANTS: dict[str, dict[str, PlantSetup]] = {
    # Tendon segment through a dynamic net: the MPC sees the segment's lag and overdrives the
    # tensions on steps; N = 4, Nc = 3, one Gauss-Newton iteration per period. Every step of
    # the horizon costs a Jacobian of the net: with N = 5 the Jacobian rollout plus one trial
    # did not fit the 0.9 ms budget at 168 MHz and no step was ever taken. The net's output lag
    # is mostly the model's corrected prediction (y_filter): from the raw measurement the
    # plan that inverts the lag passes the sensor noise on to the tensions. The linear skip
    # path: steps 1.03 against 1.20 mm, circle 0.079 against 0.110 mm (seeds 0-2).
    "tendon": {"narx": replace(SETUPS["tendon"], kind="narx", lags=(1, 1), hidden=(16, 16),
                               skip=True,
                               samples=8000, epochs=150, horizon=4, moves=3, max_iter=1,
                               bias_gain=0.05, y_filter=0.9)},
}


def estimator_noise(plant: Plant) -> tuple[list[float], list[float], list[float]]:
    """The estimator's (Q, R, Qd) per output, variances: R from the plant's sensor noise, Q
    from its setup's ``model_std`` (the net's one-step error; the sensor noise where unset),
    Qd (d's random walk) from ``dist_std`` (default 0.1 x the std of Q)."""
    p = len(plant.outputs)
    noise = np.asarray(plant.noise_std, float) if plant.noise_std else np.zeros(p)
    r = [float(max(v, 1e-6) ** 2) for v in noise]
    st = setup_for(plant, "narx")
    q = [float(v) ** 2 for v in st.model_std] if st.model_std else list(r)
    qd = [float(v) ** 2 for v in st.dist_std] if st.dist_std else [0.01 * v for v in q]
    return q, r, qd


def output_lag(plant: Plant, u0=None) -> float:
    """The plant's output lag as a first-order pole per period, identified from a small
    noise-free step response at ``u0`` (default: the middle of the input range): the time
    the output takes to cover 63 % of the step is the time constant."""
    u0 = 0.5 * (plant.u_low + plant.u_high) if u0 is None else np.asarray(u0, float)
    u1 = plant.clip(u0 + 0.05 * (plant.u_high - plant.u_low))
    x = plant.steady_state(u0[None])[0]
    y0, y1 = plant.h(x, u0), plant.forward_kinematics(u1)
    span = np.linalg.norm(y1 - y0)
    ys = []
    for _ in range(int(5.0 / plant.dt)):
        x = plant.step(x, u1)
        ys.append(np.dot(plant.h(x, u1) - y0, y1 - y0) / max(span ** 2, 1e-12))
        if ys[-1] >= 1 - np.exp(-1.0):
            break
    # linear interpolation of the crossing between the last two samples
    k, prev = len(ys), (ys[-2] if len(ys) > 1 else 0.0)
    frac = (1 - np.exp(-1.0) - prev) / max(ys[-1] - prev, 1e-12)
    tau = (k - 1 + frac) * plant.dt
    return float(np.exp(-plant.dt / tau))


def start_input(plant: Plant, ref0: np.ndarray, u_guess, tracked) -> np.ndarray:
    """An input whose steady state puts the tracked outputs at ``ref0`` (the reference's
    first point), by Gauss-Newton on the plant's quasi-static map from ``u_guess``, and from
    the middle of the input range where that start is flat (a saturating actuator at rest has
    no gain); ``u_guess`` itself if it already does (within 0.01 % of the output range)."""
    tr = list(tracked)
    best = None
    for start in (u_guess, 0.5 * (plant.u_low + plant.u_high)):
        u = _settle_input(plant, ref0, plant.clip(start), tr)
        err = np.abs(plant.forward_kinematics(u)[tr] - ref0[tr]).max()
        if best is None or err < best[0] - 1e-9:
            best = (err, u)
        if err <= 1e-4 * (plant.y_high[tr] - plant.y_low[tr]).max():
            break
    return best[1]


def _settle_input(plant: Plant, ref0: np.ndarray, u: np.ndarray, tr: list[int]) -> np.ndarray:
    scale = plant.y_high[tr] - plant.y_low[tr]
    m = len(u)
    for _ in range(30):
        e = plant.forward_kinematics(u)[tr] - ref0[tr]
        if np.all(np.abs(e) <= 1e-4 * scale):
            break
        J = np.zeros((len(tr), m))
        for a in range(m):
            h = 1e-4 * (plant.u_high[a] - plant.u_low[a])
            d = np.eye(m)[a] * h
            J[:, a] = (plant.forward_kinematics(u + d)[tr] - plant.forward_kinematics(u - d)[tr]) \
                / (2 * h)
        du = np.linalg.lstsq(J, -e, rcond=None)[0]
        u = plant.clip(u + du)
    return u


def setup_for(plant: Plant, kind: str | None = None) -> PlantSetup:
    """The plant's closed-loop setup for nets of ``kind`` ("fk" or "narx"; None: default)."""
    if plant.name not in SETUPS:
        raise NnmpcError(f"no closed-loop setup for plant '{plant.name}' "
                         f"(have: {', '.join(sorted(SETUPS))})")
    base = SETUPS[plant.name]
    if kind is None or kind == base.kind:
        return base
    if kind in VARIANTS.get(plant.name, {}):
        return VARIANTS[plant.name][kind]
    if kind not in ("fk", "narx"):
        raise NnmpcError(f"unknown net kind '{kind}' (fk or narx)")
    return replace(base, kind=kind)


def default_u_init(plant: Plant, kind: str) -> np.ndarray:
    """The input a run starts from without a reference: mid-range for quasi-static nets,
    0 (clipped) for dynamic ones."""
    u_mid = 0.5 * (plant.u_low + plant.u_high)
    return u_mid if kind == "fk" else plant.clip(np.zeros(len(plant.inputs)))
