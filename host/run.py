"""Closed-loop runs: a plant on the host (or on the device) and a controller on the board.

Hardware-in-the-loop (``source="host"``): every period the host sends the plant's
measurement y[k] in a SENSOR frame; the device samples it, solves, and answers with a
TELEMETRY frame carrying u[k]; the host applies u[k] to the simulated plant for one period.
In lock-step (the default) the SENSOR frame is the device's clock, so the run does not
depend on how fast the emulator or the host is. ``source="device"`` simulates the plant on
the board itself (mass-spring-damper) at a fixed rate from SysTick; the host only listens.

Controllers (all on the device, same loop): ``nr`` (Newton MPC on the compiled net's exact
Jacobian), ``pid`` (tuned here on the plant), ``fd`` (one finite-difference Newton step per
period, the reference implementation's scheme). See docs/MPC.md.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import protocol_msgs as M
from .errors import NnmpcError
from .plants import Plant, get_plant

CONTROLLERS = {"nr": 0, "pid": 1, "fd": 2}
STATUS_NAMES = {0: "converged", 1: "iteration cap", 2: "time budget", 3: "non-finite",
                4: "bad config"}
CH = M.CHANNELS


@dataclass
class PlantSetup:
    """How a plant is controlled by default: the net, which outputs are tracked, weights."""

    kind: str                         # "fk" (quasi-static) or "narx"
    tracked: tuple[int, ...]          # output indices with a reference
    lags: tuple[int, int] = (0, 1)    # (na, nb) for NARX
    hidden: tuple[int, ...] = (16, 16)
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


SETUPS: dict[str, PlantSetup] = {
    # MSD: 2nd order, lightly damped, both states measured: a one-step dynamics net
    # [x, v, F][k] -> [x, v][k+1] (NARX with one lag), MPC over 8 steps (80 ms), one warm-started
    # Gauss-Newton iteration per period (the tracking does not improve with more here).
    "msd": PlantSetup(kind="narx", tracked=(0,), lags=(1, 1), hidden=(16, 16), samples=8000,
                      epochs=150, horizon=8, moves=3, q=(1.0, 0.0), r=1e-2, s=0.0,
                      bias_gain=0.3, max_iter=1, duration=8.0,
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
    # plan that inverts the lag passes the sensor noise on to the tensions.
    "tendon": {"narx": replace(SETUPS["tendon"], kind="narx", lags=(1, 1), hidden=(16, 16),
                               samples=8000, epochs=150, horizon=4, moves=3, max_iter=1,
                               bias_gain=0.05, y_filter=0.9)},
}


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
    first point), by Gauss-Newton on the plant's quasi-static map from ``u_guess``;
    ``u_guess`` itself if it already does (within 0.01 % of the output range)."""
    tr = list(tracked)
    u = plant.clip(u_guess)
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


# -- references -------------------------------------------------------------------------------
def reference(plant: Plant, kind: str, duration: float | None = None) -> np.ndarray:
    """Reference rows (T x p) for ``step``, ``sine`` or a CSV file (columns named after
    the tracked outputs, or ``ref_<name>``; one row per period). Untracked outputs get 0."""
    st = setup_for(plant)
    p = len(plant.outputs)
    T = int(round((duration or st.duration) / plant.dt))
    t = np.arange(T) * plant.dt
    rows = np.zeros((T, p))
    if kind == "step":
        seg = T // len(st.step_levels)
        for i, lvl in enumerate(st.step_levels):
            rows[i * seg:, list(st.tracked)] = lvl
    elif kind == "sine":
        w = 2 * np.pi * st.sine_hz * t
        for j, ch in enumerate(st.tracked):
            wave = np.sin(w) if (j == 0 or not st.circle) else np.cos(w) - 1.0
            rows[:, ch] = st.sine_offset[j] + st.sine_amp[j] * wave
    else:
        rows = _reference_csv(plant, Path(kind))
    return rows


def _reference_csv(plant: Plant, path: Path) -> np.ndarray:
    if not path.is_file():
        raise NnmpcError(f"--reference {path}: not 'step', 'sine' or a CSV file")
    st = setup_for(plant)
    with open(path, newline="") as fh:
        rd = csv.DictReader(row for row in fh if not row.startswith("#"))
        data = list(rd)
    if not data:
        raise NnmpcError(f"{path}: no rows")
    rows = np.zeros((len(data), len(plant.outputs)))
    for ch in st.tracked:
        name = plant.outputs[ch].name
        col = next((c for c in (f"ref_{name}", name) if c in data[0]), None)
        if col is None:
            raise NnmpcError(f"{path}: needs a column '{name}' or 'ref_{name}' "
                             f"(has {', '.join(data[0])})")
        try:
            rows[:, ch] = [float(r[col]) for r in data]
        except ValueError as e:
            raise NnmpcError(f"{path}: column {col}: {e}") from None
    return rows


# -- models -----------------------------------------------------------------------------------
@dataclass
class NetInfo:
    model_dir: Path       # holds model.c / model.h
    kind: str
    na: int
    nb: int
    n_in: int
    n_out: int
    note: str = ""


def infer_lags(plant: Plant, n_in: int, n_out: int) -> tuple[str, int, int]:
    p, m = len(plant.outputs), len(plant.inputs)
    if n_out != p:
        raise NnmpcError(f"the net has {n_out} outputs; plant '{plant.name}' has {p}")
    if n_in == m:
        return "fk", 0, 1
    for lag in range(1, 9):
        if lag * (p + m) == n_in:
            return "narx", lag, lag
    raise NnmpcError(f"a net with {n_in} inputs is neither a forward-kinematics net ({m} inputs) "
                     f"nor a NARX net [y lags, u lags] for {p} outputs and {m} inputs")


def _model_sizes(model_dir: Path) -> tuple[int, int]:
    import re
    text = (model_dir / "model.h").read_text()
    n_in = int(re.search(r"#define MODEL_INPUT_SIZE (\d+)", text).group(1))
    n_out = int(re.search(r"#define MODEL_OUTPUT_SIZE (\d+)", text).group(1))
    return n_in, n_out


def prepare_model(plant: Plant, model: str | None, work: Path, seed: int = 0,
                  log=print, kind: str | None = None) -> NetInfo:
    """Compile ``model`` (a model file, or a folder with model.c) or train the plant's default
    net (of ``kind``, if given) when it is None. Trained nets are cached under ``work``."""
    from nnmpc.compiler import compile_model

    work.mkdir(parents=True, exist_ok=True)
    if model is None:
        st = setup_for(plant, kind)
        key = f"{plant.name}-{st.kind}-{st.lags[0]}{st.lags[1]}-" \
              f"{'x'.join(map(str, st.hidden))}-{st.samples}-{st.epochs}-{seed}"
        d = work / "nets" / key
        if not (d / "model" / "model.c").is_file():
            log(f"training a default {st.kind} net for '{plant.name}' "
                f"({'x'.join(map(str, st.hidden))} tanh, {st.samples} samples)")
            info = train_default(plant, d, seed, st)
            log(f"  validation RMSE {np.array2string(info, precision=3)}")
        model_dir = d / "model"
    else:
        mp = Path(model)
        if (mp / "model.c").is_file():
            model_dir = mp
        elif mp.is_file():
            model_dir = work / "model"
            compile_model(mp, model_dir, name="model")
        else:
            raise NnmpcError(f"--model {model}: no such model file or compiled folder")
    n_in, n_out = _model_sizes(model_dir)
    kind, na, nb = infer_lags(plant, n_in, n_out)
    return NetInfo(model_dir, kind, na, nb, n_in, n_out)


def train_default(plant: Plant, out: Path, seed: int = 0,
                  st: PlantSetup | None = None) -> np.ndarray:
    """Train the plant's default closed-loop net into ``out/model``; return its val RMSE."""
    from nnmpc.compiler import compile_model

    from .datasets import make_dataset
    from .train import train_mlp

    st = st or setup_for(plant)
    ds = make_dataset(plant, st.kind, st.samples, seed=seed, lags=st.lags if st.kind == "narx"
                      else (2, 2))
    res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=st.hidden,
                    epochs=st.epochs, seed=seed, patience=25)
    out.mkdir(parents=True, exist_ok=True)
    res.model.save(out / "m.keras")
    compile_model(out / "m.keras", out / "model", name="model")
    (out / "train.json").write_text(json.dumps({"val_rmse": res.val_rmse.tolist(),
                                                "epochs": res.epochs}) + "\n")
    return res.val_rmse


# -- PID tuning -------------------------------------------------------------------------------
def pid_mix(plant: Plant, tracked: tuple[int, ...],
            u0=None) -> tuple[np.ndarray, np.ndarray]:
    """Input bias (``u0``: the input the run starts from; default the middle of the range) and
    the m x p mixing matrix: the pseudo-inverse of the quasi-static gain d y_tracked / d u at
    the bias point (central differences on the plant)."""
    p, m = len(plant.outputs), len(plant.inputs)
    u0 = 0.5 * (plant.u_low + plant.u_high) if u0 is None else np.asarray(u0, float)
    G = np.zeros((p, m))
    for a in range(m):
        h = 1e-3 * (plant.u_high[a] - plant.u_low[a])
        e = np.eye(m)[a] * h
        G[:, a] = (plant.forward_kinematics(u0 + e) - plant.forward_kinematics(u0 - e)) / (2 * h)
    mix = np.zeros((m, p))
    mix[:, list(tracked)] = np.linalg.pinv(G[list(tracked)])
    return u0, mix


def simulate_pid(plant: Plant, refs: np.ndarray, gains: np.ndarray, u_bias, mix,
                 tracked, seed: int | None = 1) -> np.ndarray:
    """The firmware's PID law (nnmpc_control.c) on the plant for a batch of gain triples
    (B x 3: kp, ki, kd, same for every tracked output), with the plant's sensor noise (seed
    None: none); returns the tracking RMS (noise-free outputs) per triple."""
    rng = None if seed is None else np.random.default_rng(seed)
    B, T = len(gains), len(refs)
    p = len(plant.outputs)
    kp, ki, kd = (gains[:, i:i + 1] for i in range(3))
    x = np.broadcast_to(plant.steady_state(np.asarray(u_bias)[None]), (B, len(plant.states))).copy()
    integ = np.zeros((B, p))
    y_prev = plant.h(x, np.broadcast_to(u_bias, (B, len(u_bias))))
    sel = np.zeros(p)
    sel[list(tracked)] = 1.0
    err2 = np.zeros(B)
    for k in range(T):
        y = plant.h(x, np.broadcast_to(u_bias, (B, len(u_bias))))
        err2 += (((refs[k] - y) * sel) ** 2).sum(axis=1)
        if rng is not None and plant.noise_std:
            y = y + rng.normal(0.0, plant.noise_std, size=y.shape)
        e = (refs[k] - y) * sel
        v = kp * e + integ + ki * e - kd * (y - y_prev) * sel
        s = u_bias + v @ mix.T
        u = np.clip(s, plant.u_low, plant.u_high)
        sat = np.any(u != s, axis=1, keepdims=True)
        integ = np.where(sat, integ, integ + ki * e)
        y_prev = y
        x = plant.step(x, u)
        x = np.where(np.isfinite(x), x, 1e6)
    return np.sqrt(err2 / (T * len(tracked)))


def tune_pid(plant: Plant, refs: np.ndarray, u0=None) -> dict:
    """Grid search of (kp, ki, kd) on the plant model for the given reference, then a finer
    grid around the best; gains are discrete (per period), as the firmware uses them. The
    plant starts at rest under ``u0`` (the PID's bias; default the middle of the range)."""
    st = setup_for(plant)
    u_bias, mix = pid_mix(plant, st.tracked, u0)
    best = None
    kp_g, ki_g, kd_g = np.geomspace(0.05, 20, 12), np.concatenate([[0], np.geomspace(1e-3, 1, 10)]), \
        np.concatenate([[0], np.geomspace(0.05, 50, 10)])
    for _ in range(2):
        G = np.array(np.meshgrid(kp_g, ki_g, kd_g, indexing="ij")).reshape(3, -1).T
        rms = simulate_pid(plant, refs, G, u_bias, mix, st.tracked)
        rms = np.where(np.isfinite(rms), rms, np.inf)
        i = int(np.argmin(rms))
        best = (G[i], float(rms[i]))
        kp, ki, kd = G[i]
        kp_g = kp * np.geomspace(0.6, 1.6, 7)
        ki_g = np.concatenate([[0], ki * np.geomspace(0.5, 2, 7)]) if ki > 0 else ki_g[:6]
        kd_g = np.concatenate([[0], kd * np.geomspace(0.5, 2, 7)]) if kd > 0 else kd_g[:6]
    (kp, ki, kd), rms = best
    return {"kp": float(kp), "ki": float(ki), "kd": float(kd), "u_bias": u_bias, "mix": mix,
            "model_rms": rms}


# -- device settings --------------------------------------------------------------------------
def default_u_init(plant: Plant, kind: str) -> np.ndarray:
    """The input a run starts from without a reference: mid-range for quasi-static nets,
    0 (clipped) for dynamic ones."""
    u_mid = 0.5 * (plant.u_low + plant.u_high)
    return u_mid if kind == "fk" else plant.clip(np.zeros(len(plant.inputs)))


def _pad(values, n=CH, fill=0.0) -> list[float]:
    v = [float(x) for x in values][:n]
    return v + [fill] * (n - len(v))


def settings(plant: Plant, net: NetInfo, controller: str, *, source: str = "host",
             period_us: int = 0, pid: dict | None = None, budget_us: int = 0,
             horizon: int | None = None, moves: int | None = None,
             max_iter: int | None = None, u_init=None) -> list:
    """The settings messages for one run, in the order the device takes them."""
    st = setup_for(plant, net.kind)
    p, m = len(plant.outputs), len(plant.inputs)
    if controller not in CONTROLLERS:
        raise NnmpcError(f"unknown controller '{controller}' (known: {', '.join(CONTROLLERS)})")
    # A forward-kinematics net alone is inverted one period ahead (N = Nc = 1); with the
    # plant's output lag modelled around it, it predicts over the setup's horizon.
    lag = output_lag(plant) if (net.kind == "fk" and st.lag) else 0.0
    if net.kind == "fk" and not st.lag:
        N = Nc = 1
    else:
        N = horizon or st.horizon
        Nc = min(moves or st.moves, N)
    u_mid = 0.5 * (plant.u_low + plant.u_high)
    if u_init is None:
        u_init = default_u_init(plant, net.kind)
    msgs = [
        M.ConfigRequest(controller=CONTROLLERS[controller], source=0 if source == "host" else 1,
                        p=p, m=m, na=net.na, nb=net.nb, horizon=N, moves=Nc,
                        period_us=period_us, budget_us=budget_us,
                        max_iter=max_iter or st.max_iter, telemetry_every=1,
                        fd_eps=float(1e-3 * np.max(plant.u_high - plant.u_low))),
        M.WeightsRequest(q=_pad(st.q or [1.0] * p), r=_pad([st.r] * m), s=_pad([st.s] * m),
                         u_nom=_pad(u_mid), bias_gain=st.bias_gain, tol_step=1e-4,
                         lambda0=1e-3, lag=lag,
                         y_filter=st.y_filter if net.kind == "narx" else 0.0),
        M.LimitsRequest(u_lo=_pad(plant.u_low), u_hi=_pad(plant.u_high),
                        u_init=_pad(plant.clip(u_init))),
    ]
    if pid is not None:
        mix = np.zeros((CH, CH))
        mix[:m, :p] = pid["mix"]
        tr = list(st.tracked)
        g = lambda v: _pad([v if i in tr else 0.0 for i in range(p)])  # noqa: E731
        msgs.append(M.PidRequest(kp=g(pid["kp"]), ki=g(pid["ki"]), kd=g(pid["kd"]),
                                 u_bias=_pad(pid["u_bias"]), mix=[float(v) for v in mix.ravel()]))
    if source == "device":
        if plant.name != "msd":
            raise NnmpcError(f"the on-device plant is a mass-spring-damper; '{plant.name}' runs "
                             "on the host (--sim host)")
        msgs.append(M.PlantRequest(kind=1, substeps=plant.substeps, dt=plant.dt,
                                   params=_pad([plant.m, plant.k, plant.c, 1000.0], 8)))
    return msgs


# -- the run ----------------------------------------------------------------------------------
@dataclass
class RunLog:
    plant: str
    controller: str
    dt: float
    tracked: tuple[int, ...]
    output_names: list[str]
    input_names: list[str]
    ref: np.ndarray        # T x p
    y: np.ndarray          # T x p, as measured (sent to the device)
    y_true: np.ndarray     # T x p, noise-free
    u: np.ndarray          # T x m
    iterations: np.ndarray
    status: np.ndarray
    residual: np.ndarray
    work: np.ndarray       # clock ticks per period, as the device measured them
    clock_hz: int
    lost: int = 0
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)
    output_units: list[str] = field(default_factory=list)
    input_units: list[str] = field(default_factory=list)

    def unit(self, i: int, inputs: bool = False) -> str:
        units = self.input_units if inputs else self.output_units
        return units[i] if i < len(units) else ""

    @property
    def t(self) -> np.ndarray:
        return np.arange(len(self.u)) * self.dt

    def rms(self, true: bool = True) -> float:
        tr = list(self.tracked)
        y = self.y_true if true else self.y
        return float(np.sqrt(((y[:, tr] - self.ref[:, tr]) ** 2).mean()))

    def path_error(self) -> np.ndarray:
        """Distance (output units) of each true output to the reference path (the polyline
        through the reference points, tracked outputs only)."""
        tr = list(self.tracked)
        pts, path = self.y_true[:, tr], self.ref[:, tr]
        a, b = path[:-1], path[1:]
        ab = b - a
        L2 = np.maximum((ab ** 2).sum(axis=1), 1e-12)
        out = np.empty(len(pts))
        for i, q in enumerate(pts):
            tt = np.clip(((q - a) * ab).sum(axis=1) / L2, 0.0, 1.0)
            d = a + tt[:, None] * ab - q
            out[i] = np.sqrt((d ** 2).sum(axis=1)).min()
        return out


START_NOTE = "plant at rest at the reference's first point, errors over the whole run"


def run_closed_loop(client, plant: Plant, refs: np.ndarray, controller: str,
                    u_init: np.ndarray, *, source: str = "host", seed: int = 0, noise: bool = True,
                    timeout: float = 5.0, on_period=None) -> RunLog:
    """Run the configured device against ``plant`` for len(refs) periods (lock-step HIL), or
    listen to the on-device plant run; return the log."""
    st = setup_for(plant)
    p, m, T = len(plant.outputs), len(plant.inputs), len(refs)
    rng = np.random.default_rng(seed) if noise else None
    hello = client.hello_info or client.hello()
    client.upload_trajectory(refs)
    ys, yt, us, its, sts, res, work = [], [], [], [], [], [], []
    lost = 0
    t0 = time.monotonic()
    client.start()
    try:
        if source == "host":
            u = np.asarray(u_init[:m], float)
            x = plant.steady_state(u[None])[0]
            for k in range(T):
                y_true = plant.h(x, u)
                y = plant.measure(x, u, rng)
                client.send_sensor(k, y)
                tel = client.telemetry(timeout)
                if tel is None:
                    raise NnmpcError(f"no telemetry for period {k} within {timeout} s")
                if tel.k != k:
                    lost += 1
                u = tel.u
                ys.append(y), yt.append(y_true), us.append(u)
                its.append(tel.iterations), sts.append(tel.status)
                res.append(tel.residual), work.append(tel.work)
                x = plant.step(x, u)
                if on_period:
                    on_period(k, tel)
        else:
            k_expected = 0
            while len(us) < T:
                tel = client.telemetry(timeout)
                if tel is None:
                    raise NnmpcError(f"no telemetry within {timeout} s after period {k_expected}")
                lost += max(0, tel.k - k_expected)
                k_expected = tel.k + 1
                ys.append(tel.y), yt.append(tel.y), us.append(tel.u)
                its.append(tel.iterations), sts.append(tel.status)
                res.append(tel.residual), work.append(tel.work)
                if on_period:
                    on_period(tel.k, tel)
    finally:
        client.stop()
    return RunLog(plant.name, controller, plant.dt, st.tracked,
                  [s.name for s in plant.outputs], [s.name for s in plant.inputs],
                  np.asarray(refs[:len(us)], float), np.array(ys), np.array(yt), np.array(us),
                  np.array(its), np.array(sts), np.array(res), np.array(work),
                  hello.clock_hz, lost, time.monotonic() - t0,
                  extra={"start": START_NOTE if source == "host" else "on-device plant"},
                  output_units=[s.unit for s in plant.outputs],
                  input_units=[s.unit for s in plant.inputs])


def configure(client, msgs: list) -> np.ndarray:
    """Send the settings; return the input the device starts from (u_init)."""
    u_init = None
    for msg in msgs:
        client.configure(msg)
        if isinstance(msg, M.LimitsRequest):
            u_init = np.asarray(msg.u_init, float)
    return u_init


# -- outputs ----------------------------------------------------------------------------------
def write_csv(log: RunLog, path: Path) -> Path:
    """Telemetry CSV: t, ref_* (tracked outputs), y_* (all outputs, as measured), u_*, then
    iterations, status, residual, work_us (device clock; emulated boards are not cycle exact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tr = list(log.tracked)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t", *(f"ref_{log.output_names[i]}" for i in tr),
                    *(f"y_{n}" for n in log.output_names), *(f"u_{n}" for n in log.input_names),
                    "iterations", "status", "residual", "work_us"])
        for k in range(len(log.u)):
            w.writerow([f"{log.t[k]:.4f}", *(f"{log.ref[k, i]:.6g}" for i in tr),
                        *(f"{v:.6g}" for v in log.y[k]), *(f"{v:.6g}" for v in log.u[k]),
                        int(log.iterations[k]), int(log.status[k]), f"{log.residual[k]:.6g}",
                        f"{1e6 * log.work[k] / max(1, log.clock_hz):.1f}"])
    return path


def _bracket(unit: str) -> str:
    return f" [{unit}]" if unit else ""


def plot(log: RunLog, path: Path, title: str = "") -> Path:
    """PNG: reference vs output (top), inputs (bottom), axes in the plant's units; for two or
    more tracked outputs also the path (first two tracked outputs, reference vs actual)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = list(log.tracked)
    xy = len(tr) >= 2
    if xy:
        fig = plt.figure(figsize=(13, 6))
        gs = fig.add_gridspec(2, 2, width_ratios=(1.0, 1.5))
        ap = fig.add_subplot(gs[:, 0])
        a1 = fig.add_subplot(gs[0, 1])
        a2 = fig.add_subplot(gs[1, 1], sharex=a1)
    else:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = log.t
    units = {log.unit(i) for i in tr}
    yu = units.pop() if len(units) == 1 else ""
    for i in tr:
        line, = a1.plot(t, log.y_true[:, i], label=f"{log.output_names[i]}")
        a1.plot(t, log.ref[:, i], "--", color=line.get_color(), lw=1,
                label=f"ref {log.output_names[i]}")
    a1.set_ylabel("output" + _bracket(yu))
    a1.legend(loc="upper right", fontsize=8, ncol=2)
    a1.grid(alpha=0.3)
    head = f"{log.plant}: {log.controller}, tracking RMS {log.rms():.3g}{(' ' + yu) if yu else ''}"
    if xy:
        pe = log.path_error()
        head += f", path error RMS {np.sqrt((pe ** 2).mean()):.3g} / max {pe.max():.3g}" \
                f"{(' ' + yu) if yu else ''}"
    a1.set_title(title or head, fontsize=10)
    iu = {log.unit(j, True) for j in range(len(log.input_names))}
    for j, n in enumerate(log.input_names):
        a2.step(t, log.u[:, j], where="post", label=f"u {n}")
    a2.set_ylabel("input" + _bracket(iu.pop() if len(iu) == 1 else ""))
    a2.set_xlabel("t [s]")
    a2.legend(loc="upper right", fontsize=8)
    a2.grid(alpha=0.3)
    if xy:
        i, j = tr[0], tr[1]
        ap.plot(log.ref[:, i], log.ref[:, j], "--", color="0.4", lw=1.2, label="reference")
        ap.plot(log.y_true[:, i], log.y_true[:, j], lw=1.2, label=f"{log.controller}")
        ap.plot(log.y_true[:1, i], log.y_true[:1, j], "o", ms=4, color="C0", label="start")
        ap.set_xlabel(log.output_names[i] + _bracket(log.unit(i)))
        ap.set_ylabel(log.output_names[j] + _bracket(log.unit(j)))
        ap.set_aspect("equal", adjustable="datalim")
        ap.set_title("path", fontsize=10)
        ap.legend(loc="best", fontsize=8)
        ap.grid(alpha=0.3)
    note = log.extra.get("start")
    if note:
        fig.text(0.01, 0.005, f"start: {note}", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary(log: RunLog) -> dict:
    w_us = 1e6 * log.work / max(1, log.clock_hz)
    out = {"plant": log.plant, "controller": log.controller, "periods": int(len(log.u)),
           "tracking_rms": round(log.rms(), 4), "tracking_rms_measured": round(log.rms(False), 4),
           "iterations_mean": round(float(np.mean(log.iterations)), 2),
           "iterations_max": int(np.max(log.iterations)),
           "status_counts": {STATUS_NAMES.get(int(s), str(s)): int(n)
                             for s, n in zip(*np.unique(log.status, return_counts=True))},
           "work_us_median_emulated": round(float(np.median(w_us)), 1),
           "lost_frames": log.lost, "wall_s": round(log.wall_s, 2),
           "units": log.unit(log.tracked[0]) if log.tracked else "",
           "start": log.extra.get("start", "")}
    if len(log.tracked) >= 2:
        pe = log.path_error()
        out["path_error_rms"] = round(float(np.sqrt((pe ** 2).mean())), 4)
        out["path_error_max"] = round(float(pe.max()), 4)
    return out


# -- one complete run on a board ----------------------------------------------------------------
@dataclass
class RunResult:
    log: RunLog
    summary: dict
    csv: Path | None
    png: Path | None
    firmware: object = None


def build_for(plant: Plant, model: str | None, board_name: str, work: Path, seed: int = 0,
              log=print, kind: str | None = None):
    """Prepare the net and the firmware image for ``board_name``; return (NetInfo, image)."""
    from .boards import load_board
    from .firmware import build_firmware

    board = load_board(board_name)
    net = prepare_model(plant, model, work, seed=seed, log=log, kind=kind)
    img = build_firmware(board, net.model_dir, work / "fw" / net.model_dir.parent.name)
    return net, img


def run_on_board(plant_name: str, controller: str, reference_kind: str, *, model: str | None = None,
                 board_name: str = "qemu-m4f", work: Path = Path("build/run"),
                 log_path: Path | None = None, sim: str = "host", seed: int = 0,
                 duration: float | None = None, noise: bool = True, built=None,
                 net_kind: str | None = None, log=print) -> RunResult:
    """Build (or reuse ``built``), start the emulated board, run the loop, write CSV + PNG."""
    from .boards import load_board
    from .client import DeviceClient
    from .qemu import QemuBoard

    plant = get_plant(plant_name)
    board = load_board(board_name)
    if not board.emulated:
        raise NnmpcError(f"board '{board_name}' is not emulated: use `nnmpc monitor` with the "
                         "board's port, or an emulated board")
    net, img = built or build_for(plant, model, board_name, work, seed, log, kind=net_kind)
    refs = reference(plant, reference_kind, duration)
    # Every controller starts with the plant at rest at the reference's first point.
    u0 = start_input(plant, refs[0], default_u_init(plant, net.kind), setup_for(plant).tracked)
    pid = tune_pid(plant, refs, u0) if controller == "pid" else None
    period_us = int(round(plant.dt * 1e6)) if sim == "device" else 0
    msgs = settings(plant, net, controller, source=sim, period_us=period_us, pid=pid, u_init=u0)
    with QemuBoard(img.elf, board) as port:
        client = DeviceClient(port, timeout=10.0)
        client.hello()
        u_init = configure(client, msgs)
        run = run_closed_loop(client, plant, refs, controller, u_init, source=sim, seed=seed,
                              noise=noise)
        run.extra["stats"] = client.stats()
        client.exit()
    if pid is not None:
        run.extra["pid"] = {k: pid[k] for k in ("kp", "ki", "kd", "model_rms")}
    summ = summary(run)
    summ["image_flash"] = img.size.flash
    summ["image_ram"] = img.size.ram
    csv_path = png_path = None
    if log_path is not None:
        csv_path = write_csv(run, Path(log_path))
        png_path = plot(run, Path(log_path).with_suffix(".png"))
    return RunResult(run, summ, csv_path, png_path, img)
