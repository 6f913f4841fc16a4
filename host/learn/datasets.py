"""Training data from the simulated plants: excitation signals, features, splits, files.

Three kinds of data set, one per kind of net:

* ``fk``   quasi-static forward kinematics, ``u -> y``: inputs drawn uniformly within the
  actuator limits, outputs the settled, noisy sensor reading;
* ``dyn``  one-step state surrogate, ``[x[k], u[k]] -> x[k+1]`` (true states);
* ``narx`` ``[y[k], ..., y[k-ny+1], u[k], ..., u[k-nu+1]] -> y[k+1]`` (noisy measurements).

Time-series kinds are cut from trajectories driven by random steps, chirps and multisines
that stay within the actuator limits. Train and validation data come from different
trajectories, so no validation sample has a neighbour in the training set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..plants import Plant

KINDS = ("fk", "dyn", "narx")
EXCITATIONS = ("steps", "chirp", "multisine")


# -- excitation ---------------------------------------------------------------------------------
def random_steps(plant: Plant, n: int, rng: np.random.Generator,
                 hold_s: tuple[float, float] = (0.05, 1.0)) -> np.ndarray:
    """Piecewise-constant levels, uniform within the limits, held for random durations."""
    lo, hi = plant.u_low, plant.u_high
    u = np.empty((n, len(lo)))
    for j in range(len(lo)):
        k = 0
        while k < n:
            hold = max(1, int(rng.uniform(*hold_s) / plant.dt))
            u[k:k + hold, j] = rng.uniform(lo[j], hi[j])
            k += hold
    return u


def chirp(plant: Plant, n: int, rng: np.random.Generator,
          f_hz: tuple[float, float] = (0.05, 5.0)) -> np.ndarray:
    """Logarithmic sine sweep over the full range of each input, with random phase and sweep
    direction per input so the inputs are not collinear."""
    lo, hi = plant.u_low, plant.u_high
    t = np.arange(n) * plant.dt
    T = max(t[-1], plant.dt)
    f0, f1 = f_hz[0], min(f_hz[1], 0.4 / plant.dt)
    u = np.empty((n, len(lo)))
    for j in range(len(lo)):
        a, b = (f0, f1) if rng.random() < 0.5 else (f1, f0)
        k = np.log(b / a) / T
        phase = 2 * np.pi * a * (np.exp(k * t) - 1.0) / k + rng.uniform(0, 2 * np.pi)
        u[:, j] = 0.5 * (lo[j] + hi[j]) + 0.5 * (hi[j] - lo[j]) * np.sin(phase)
    return u


def multisine(plant: Plant, n: int, rng: np.random.Generator, n_tones: int = 12,
              f_hz: tuple[float, float] = (0.05, 5.0)) -> np.ndarray:
    """A sum of log-spaced sines with random phases, scaled to span each input's range."""
    lo, hi = plant.u_low, plant.u_high
    t = np.arange(n) * plant.dt
    freqs = np.geomspace(f_hz[0], min(f_hz[1], 0.4 / plant.dt), n_tones)
    u = np.empty((n, len(lo)))
    for j in range(len(lo)):
        phases = rng.uniform(0, 2 * np.pi, n_tones)
        s = np.sin(2 * np.pi * freqs[None, :] * t[:, None] + phases).sum(axis=1)
        s = (s - s.min()) / max(s.max() - s.min(), 1e-12)
        u[:, j] = lo[j] + (hi[j] - lo[j]) * s
    return u


_EXCITE = {"steps": random_steps, "chirp": chirp, "multisine": multisine}


def excitation(plant: Plant, n: int, rng: np.random.Generator,
               kinds: tuple[str, ...] = EXCITATIONS) -> np.ndarray:
    """``n`` input samples: one segment of each excitation kind, in random order."""
    order = rng.permutation(len(kinds))
    edges = np.linspace(0, n, len(kinds) + 1).astype(int)
    parts = [_EXCITE[kinds[i]](plant, edges[j + 1] - edges[j], rng) for j, i in enumerate(order)]
    return plant.clip(np.concatenate(parts, axis=0))


# -- features -----------------------------------------------------------------------------------
def narx_features(y: np.ndarray, u: np.ndarray, ny: int, nu: int) -> np.ndarray:
    """Regressors ``[y[k], ..., y[k-ny+1], u[k], ..., u[k-nu+1]]`` for every ``k`` that has
    the whole history, ``k = max(ny, nu) - 1, ..., T - 1``; arrays ``(..., T, n)``."""
    lag = max(ny, nu)
    T = y.shape[-2]
    cols = [y[..., lag - 1 - i:T - i, :] for i in range(ny)]
    cols += [u[..., lag - 1 - i:T - i, :] for i in range(nu)]
    return np.concatenate(cols, axis=-1)


def narx_sequences(y: np.ndarray, u: np.ndarray, window: int) -> np.ndarray:
    """GRU inputs: for every ``k >= window - 1`` the window ``[y[t], u[t]]``,
    ``t = k - window + 1 ... k`` (oldest first); shape
    ``(..., T - window + 1, window, ny + nu)``."""
    z = np.concatenate([y, u], axis=-1)
    T = z.shape[-2]
    return np.stack([z[..., i:T - window + 1 + i, :] for i in range(window)], axis=-2)


def narx_names(plant: Plant, ny: int, nu: int) -> list[tuple[str, str]]:
    """(name, unit) of each NARX regressor, in order."""
    out = []
    for lag, sigs in ((ny, plant.outputs), (nu, plant.inputs)):
        for i in range(lag):
            suffix = "[k]" if i == 0 else f"[k-{i}]"
            out += [(s.name + suffix, s.unit) for s in sigs]
    return out


# -- data sets ----------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Features and targets for one kind of net, split into train and validation sets.

    For GRU data ``x_*`` has shape ``(N, window, features)``, otherwise ``(N, features)``.
    """

    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    input_names: list[tuple[str, str]]    # (name, unit) per feature
    output_names: list[tuple[str, str]]
    meta: dict = field(default_factory=dict)
    # time series the features were cut from (time-series kinds): (n_traj, T, n) each
    traj_u: np.ndarray | None = None
    traj_x: np.ndarray | None = None
    traj_y: np.ndarray | None = None
    traj_val: np.ndarray | None = None  # bool per trajectory

    def metadata(self) -> dict:
        m = dict(self.meta)
        m.update(kind=self.kind, n_train=int(len(self.x_train)), n_val=int(len(self.x_val)),
                 features=[{"name": n, "unit": u} for n, u in self.input_names],
                 targets=[{"name": n, "unit": u} for n, u in self.output_names])
        return m

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (arrays + metadata JSON) or ``.csv`` (one row per sample, a ``split``
        column, metadata as a leading ``#`` comment line)."""
        path = Path(path)
        meta = json.dumps(self.metadata())
        tmp = path.with_name(path.name + ".part")
        if path.suffix == ".npz":
            arrays = dict(x_train=self.x_train, y_train=self.y_train, x_val=self.x_val,
                          y_val=self.y_val, meta=np.array(meta))
            for k in ("traj_u", "traj_x", "traj_y", "traj_val"):
                if getattr(self, k) is not None:
                    arrays[k] = getattr(self, k)
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        elif path.suffix == ".csv":
            if self.x_train.ndim != 2:
                raise NnmpcError("CSV holds flat features only; save GRU windows as .npz")
            header = ["split"] + [n for n, _ in self.input_names] + [
                "target:" + n for n, _ in self.output_names]
            with open(tmp, "w") as fh:
                fh.write("# " + meta + "\n" + ",".join(header) + "\n")
                for split, x, y in (("train", self.x_train, self.y_train),
                                    ("val", self.x_val, self.y_val)):
                    for xi, yi in zip(x, y):
                        fh.write(split + "," + ",".join(f"{v:.9g}" for v in (*xi, *yi)) + "\n")
        else:
            raise NnmpcError(f"cannot save a data set as '{path.suffix}' (use .npz or .csv)")
        tmp.replace(path)
        return path


def load_dataset(path: str | Path) -> Dataset:
    """Read a data set written by :meth:`Dataset.save`."""
    path = Path(path)
    if not path.exists():
        raise NnmpcError(f"{path}: no such data set")
    if path.suffix == ".npz":
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        extra = {k: z[k] for k in ("traj_u", "traj_x", "traj_y", "traj_val") if k in z}
        xs = (z["x_train"], z["y_train"], z["x_val"], z["y_val"])
    elif path.suffix == ".csv":
        with open(path) as fh:
            meta = json.loads(fh.readline()[2:])
            fh.readline()
            rows = [line.rstrip("\n").split(",") for line in fh]
        nf = len(meta["features"])
        split = np.array([r[0] for r in rows])
        data = np.array([[float(v) for v in r[1:]] for r in rows])
        tr, va = split == "train", split == "val"
        xs = (data[tr, :nf], data[tr, nf:], data[va, :nf], data[va, nf:])
        extra = {}
    else:
        raise NnmpcError(f"{path}: not a data set (.npz or .csv)")
    names = [(f["name"], f["unit"]) for f in meta["features"]]
    targets = [(f["name"], f["unit"]) for f in meta["targets"]]
    return Dataset(meta["kind"], *xs, names, targets, meta, **extra)


def make_dataset(plant: Plant, kind: str, samples: int, seed: int = 0,
                 lags: tuple[int, int] = (2, 2), gru_window: int | None = None,
                 val_fraction: float = 0.2, n_traj: int = 10) -> Dataset:
    """Simulate ``plant`` and build the ``kind`` data set with about ``samples`` samples."""
    if kind not in KINDS:
        raise NnmpcError(f"unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if samples < 50:
        raise NnmpcError(f"--samples {samples} is too few (at least 50)")
    rng = np.random.default_rng(seed)
    meta = plant.describe()
    meta["seed"] = seed

    if kind == "fk":
        u = rng.uniform(plant.u_low, plant.u_high, size=(samples, len(plant.inputs)))
        y = plant.measure(plant.steady_state(u), u, rng)
        n_val = max(1, int(round(samples * val_fraction)))
        f32 = lambda a: a.astype(np.float32)  # noqa: E731
        return Dataset(kind, f32(u[n_val:]), f32(y[n_val:]), f32(u[:n_val]), f32(y[:n_val]),
                       [(s.name, s.unit) for s in plant.inputs],
                       [(s.name, s.unit) for s in plant.outputs], meta)

    ny, nu = lags
    if kind == "narx" and (ny < 1 or nu < 1):
        raise NnmpcError(f"--lags {ny},{nu}: both lags must be at least 1")
    n_val_traj = max(1, int(round(n_traj * val_fraction)))
    if n_traj - n_val_traj < 1:
        raise NnmpcError("too few trajectories for a train/validation split")
    T = max(samples // n_traj, 20)
    if kind == "narx" and max(ny, nu, gru_window or 0) > T // 2:
        raise NnmpcError(f"lags {ny},{nu} are too long for {samples} samples "
                         f"({n_traj} trajectories of {T}); use more --samples")
    u = np.stack([excitation(plant, T, rng) for _ in range(n_traj)])
    xs, ys = plant.simulate(u, rng=rng)
    is_val = np.zeros(n_traj, dtype=bool)
    is_val[-n_val_traj:] = True

    if kind == "dyn":
        feats = np.concatenate([xs[:, :-1], u], axis=-1)
        targ = xs[:, 1:]
        names = [(s.name + "[k]", s.unit) for s in plant.states] + \
                [(s.name + "[k]", s.unit) for s in plant.inputs]
        tnames = [(s.name + "[k+1]", s.unit) for s in plant.states]
    else:  # narx: y[k+1] from y[k..] and u[k..]; y[k] = measure(x[k])
        meta["lags"] = {"ny": ny, "nu": nu}
        lag = max(ny, nu)
        y_hist, y_next = ys[:, :-1], ys[:, 1:]
        if gru_window:
            feats = narx_sequences(y_hist, u, gru_window)
            targ = y_next[:, gru_window - 1:]
            names = [(s.name, s.unit) for s in plant.outputs] + \
                    [(s.name, s.unit) for s in plant.inputs]
            meta["gru_window"] = gru_window
        else:
            feats = narx_features(y_hist, u, ny, nu)
            targ = y_next[:, lag - 1:]
            names = narx_names(plant, ny, nu)
        tnames = [(s.name + "[k+1]", s.unit) for s in plant.outputs]

    def flat(a, sel):
        a = a[sel]
        return a.reshape((-1,) + a.shape[2:]).astype(np.float32)

    return Dataset(kind, flat(feats, ~is_val), flat(targ, ~is_val), flat(feats, is_val),
                   flat(targ, is_val), names, tnames, meta,
                   traj_u=u.astype(np.float32), traj_x=xs.astype(np.float32),
                   traj_y=ys.astype(np.float32), traj_val=is_val)


def split_segments(T: int, n_segments: int = 10, val_every: int = 5) -> tuple[np.ndarray, int]:
    """Cut ``T`` rows into ``n_segments`` contiguous segments of equal length ``L = T //
    n_segments`` (the last ``T % n_segments`` rows are dropped); segment ``i`` is validation
    data when ``i % val_every == val_every - 1`` (with the defaults: segments 5 and 10, 20 %).
    Returns (is_val per segment, L)."""
    L = T // n_segments
    is_val = (np.arange(n_segments) % val_every) == val_every - 1
    return is_val, L


def series_dataset(kind: str, u: np.ndarray, y: np.ndarray,
                   input_names: list[tuple[str, str]], output_names: list[tuple[str, str]],
                   lags: tuple[int, int] = (2, 2), gru_window: int | None = None,
                   meta: dict | None = None, n_segments: int = 10, val_every: int = 5,
                   source: str = "the log") -> Dataset:
    """The ``kind`` data set from one measured time series ``u`` (T, m), ``y`` (T, p) (row k:
    ``y[k]`` measured at the start of period k, ``u[k]`` applied during it).

    The series is cut into contiguous segments (:func:`split_segments`) that play the part
    of :func:`make_dataset`'s trajectories: features never straddle a segment boundary, so no
    NARX window mixes training and validation rows. ``fk`` pairs ``u[k]`` with ``y[k]``;
    ``dyn`` needs the plant's states and is refused (use ``narx``)."""
    if kind not in KINDS:
        raise NnmpcError(f"unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if kind == "dyn":
        raise NnmpcError("--kind dyn needs the plant's states, which a log does not have: use "
                         "--kind narx (y[k+1] from lagged y and u; --lags 1,1 is the one-step "
                         "form)")
    u = np.asarray(u, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    T = len(u)
    meta = dict(meta or {})
    ny, nu = lags
    if kind == "narx" and (ny < 1 or nu < 1):
        raise NnmpcError(f"--lags {ny},{nu}: both lags must be at least 1")
    lag = (gru_window or max(ny, nu)) if kind == "narx" else 0
    # fk: at least 2 rows per segment; narx: every segment needs 2 windows at least
    need_per_seg = max(2, lag + 2)
    if T < n_segments * need_per_seg:
        what = (f"lags {ny},{nu}" + (f" (GRU window {gru_window})" if gru_window else "")
                if kind == "narx" else "an fk net")
        raise NnmpcError(f"{source}: {T} rows are too few for {what}: the validation split cuts "
                         f"the log into {n_segments} contiguous segments of at least "
                         f"{need_per_seg} rows, so it needs at least {n_segments * need_per_seg}")
    is_val, L = split_segments(T, n_segments, val_every)
    us = u[:n_segments * L].reshape(n_segments, L, -1)
    ys = y[:n_segments * L].reshape(n_segments, L, -1)
    meta["split"] = {"segments": n_segments, "segment_rows": int(L),
                     "validation_segments": [int(i) for i in np.flatnonzero(is_val)],
                     "dropped_rows": int(T - n_segments * L)}
    f32 = lambda a: a.astype(np.float32)  # noqa: E731

    if kind == "fk":
        xs, ts = us, ys
        names, tnames = list(input_names), list(output_names)
        traj = {}
    else:
        meta["lags"] = {"ny": ny, "nu": nu}
        y_hist, y_next, uu = ys[:, :-1], ys[:, 1:], us[:, :-1]
        if gru_window:
            xs = narx_sequences(y_hist, uu, gru_window)
            ts = y_next[:, gru_window - 1:]
            names = list(output_names) + list(input_names)
            meta["gru_window"] = gru_window
        else:
            xs = narx_features(y_hist, uu, ny, nu)
            ts = y_next[:, max(ny, nu) - 1:]
            names = []
            for lg, sigs in ((ny, output_names), (nu, input_names)):
                for i in range(lg):
                    suffix = "[k]" if i == 0 else f"[k-{i}]"
                    names += [(n + suffix, un) for n, un in sigs]
        tnames = [(n + "[k+1]", un) for n, un in output_names]
        traj = dict(traj_u=f32(uu), traj_y=f32(ys), traj_val=is_val)

    def flat(a, sel):
        a = a[sel]
        return a.reshape((-1,) + a.shape[2:]).astype(np.float32)

    return Dataset(kind, flat(xs, ~is_val), flat(ts, ~is_val), flat(xs, is_val),
                   flat(ts, is_val), names, tnames, meta, **traj)


def lag_filter(u: np.ndarray, tau: float, dt: float) -> np.ndarray:
    """``u`` (T, m) through a first-order lag of time constant ``tau`` s, per sample period
    ``dt`` (exact for inputs held over each period), starting at rest at ``u[0]``."""
    u = np.asarray(u, dtype=np.float64)
    if tau <= 0:
        return u.copy()
    a = np.exp(-dt / tau)
    out = np.empty_like(u)
    out[0] = u[0]
    for k in range(1, len(u)):
        out[k] = a * out[k - 1] + (1.0 - a) * u[k - 1]
    return out


def identify_input_lag(u: np.ndarray, y: np.ndarray, dt: float,
                       taus: np.ndarray | None = None) -> tuple[float, float]:
    """The actuator lag under a measured time series: the time constant whose lagged inputs
    explain ``y`` best by a quadratic least-squares fit (a smooth forward map), over a grid of
    0 to 1 s. Returns (tau, fit RMS). A plant whose actuators (or configuration) follow the
    command through a first-order lag has y[k] = f(u lagged), so an fk net trained on the
    lagged inputs learns the quasi-static map itself."""
    taus = np.concatenate([[0.0], np.geomspace(dt, 1.0, 40)]) if taus is None else taus
    y = np.asarray(y, dtype=np.float64)
    best = (0.0, np.inf)
    for tau in taus:
        ub = lag_filter(u, tau, dt)
        m = ub.shape[1]
        quad = [ub[:, i] * ub[:, j] for i in range(m) for j in range(i, m)]
        A = np.column_stack([np.ones(len(ub)), ub, *quad])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        rms = float(np.sqrt(((A @ coef - y) ** 2).mean()))
        if rms < best[1]:
            best = (float(tau), rms)
    return best
