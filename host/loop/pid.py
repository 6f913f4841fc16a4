"""The PID baseline: the firmware's PID law simulated on the plant, and its gains tuned
by a grid search on the plant model."""

from __future__ import annotations

import numpy as np

from ..plants import Plant
from .setups import setup_for


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
                 tracked, seed: int | None = 1, preview: int = 0) -> np.ndarray:
    """The firmware's PID law (nnmpc_control.c) on the plant for a batch of gain triples
    (B x 3: kp, ki, kd, same for every tracked output), with the plant's sensor noise (seed
    None: none); returns the tracking RMS (noise-free outputs) per triple. ``preview`` = L:
    the PID is given the reference L periods ahead (r[k + L], the last point held) and is
    scored on r[k]."""
    rng = None if seed is None else np.random.default_rng(seed)
    B, T = len(gains), len(refs)
    seen = preview_reference(refs, preview)
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
        e = (seen[k] - y) * sel
        v = kp * e + integ + ki * e - kd * (y - y_prev) * sel
        s = u_bias + v @ mix.T
        u = np.clip(s, plant.u_low, plant.u_high)
        sat = np.any(u != s, axis=1, keepdims=True)
        integ = np.where(sat, integ, integ + ki * e)
        y_prev = y
        x = plant.step(x, u)
        x = np.where(np.isfinite(x), x, 1e6)
    return np.sqrt(err2 / (T * len(tracked)))


def preview_reference(refs: np.ndarray, preview: int) -> np.ndarray:
    """The reference a PID with ``preview`` periods of preview is given: r[k + preview], the
    last point held (what is uploaded to the device in place of r)."""
    refs = np.asarray(refs, float)
    if preview <= 0:
        return refs
    idx = np.minimum(np.arange(len(refs)) + int(preview), len(refs) - 1)
    return refs[idx]


def tuning_reference(plant: Plant) -> np.ndarray:
    """A reference for tuning the PID that is neither of the plant's scored references (its
    ``step`` and ``sine``): first half, steps to the midpoints of consecutive step levels
    taken in reverse order; second half, the sine (or circle) at 0.6 x the frequency and 0.7 x
    the amplitude. Same length as the setup's references."""
    st = setup_for(plant)
    T = int(round(st.duration / plant.dt))
    p = len(plant.outputs)
    tr = list(st.tracked)
    rows = np.zeros((T, p))
    lv = np.asarray(st.step_levels[::-1], float)
    mids = 0.5 * (lv[:-1] + lv[1:]) if len(lv) > 1 else lv
    half = T // 2
    seg = max(1, half // len(mids))
    for i, lvl in enumerate(mids):
        rows[i * seg:half, tr] = lvl
    t = np.arange(T - half) * plant.dt
    w = 2 * np.pi * 0.6 * st.sine_hz * t
    for j, ch in enumerate(tr):
        wave = np.sin(w) if (j == 0 or not st.circle) else np.cos(w) - 1.0
        rows[half:, ch] = st.sine_offset[j] + 0.7 * st.sine_amp[j] * wave
    return rows


#: The first grid of the search (per-period gains): kp, and ki, kd with 0 added. An axis whose
#: best value is at an end of its range is extended past it (MAX_EXTENSIONS times at most).
KP_GRID = np.geomspace(0.01, 100.0, 13)
KI_GRID = np.geomspace(1e-4, 10.0, 11)
KD_GRID = np.geomspace(0.01, 100.0, 9)
MAX_EXTENSIONS = 6


def _axis(values, zero: bool) -> np.ndarray:
    v = np.asarray(sorted(set(float(x) for x in values if x > 0)))
    return np.concatenate([[0.0], v]) if zero else v


def _grid_best(plant, refs, axes, u_bias, mix, tracked, seed, preview):
    G = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T
    rms = simulate_pid(plant, refs, G, u_bias, mix, tracked, seed, preview)
    rms = np.where(np.isfinite(rms), rms, np.inf)
    i = int(np.argmin(rms))
    return G[i], float(rms[i])


def _edges(axes, best) -> list[str]:
    """Axes whose best value is at an end of the range searched (0 is a natural end of ki and
    kd: no integral or derivative action)."""
    out = []
    for name, ax, v in zip(("kp", "ki", "kd"), axes, best):
        nz = ax[ax > 0]
        if v > 0 and (v >= nz.max() or (v <= nz.min() and name == "kp")):
            out.append(name)
    return out


def _search(plant, refs, u_bias, mix, tracked, seed, preview) -> dict:
    axes = [KP_GRID.copy(), _axis(KI_GRID, True), _axis(KD_GRID, True)]
    for ext in range(MAX_EXTENSIONS + 1):
        best, rms = _grid_best(plant, refs, axes, u_bias, mix, tracked, seed, preview)
        edge = _edges(axes, best)
        if not edge or ext == MAX_EXTENSIONS:
            break
        for i, name in enumerate(("kp", "ki", "kd")):
            if name in edge:
                nz = axes[i][axes[i] > 0]
                step = nz[1] / nz[0]
                more = (nz.max() * step ** np.arange(1, 4) if best[i] >= nz.max()
                        else nz.min() / step ** np.arange(1, 4))
                axes[i] = _axis(np.concatenate([nz, more]), i > 0)
    seen = [list(a) for a in axes]     # every value searched, per gain
    extensions = ext
    # Finer grids around the best, recentred while the best sits on their edge.
    loc = axes
    for span in (2.0, 2.0, 1.4, 1.4, 1.2, 1.2):
        loc = []
        for i, v in enumerate(best):
            if v > 0:
                loc.append(_axis(v * np.geomspace(1 / span, span, 7), i > 0))
            else:
                nz = axes[i][axes[i] > 0]
                loc.append(_axis(nz[:2], True))
        b, r = _grid_best(plant, refs, loc, u_bias, mix, tracked, seed, preview)
        for i in range(3):
            seen[i] += list(loc[i])
        if r < rms:
            best, rms = b, r
    # At an edge: the best is the largest (or, for kp, the smallest) value searched at all.
    span = [np.asarray(v) for v in seen]
    on_edge = _edges([np.unique(v) for v in span], best)
    coarse = {"kp": [float(span[0][span[0] > 0].min()), float(span[0].max())],
              "ki": [0.0, float(span[1].max())], "kd": [0.0, float(span[2].max())],
              "points": int(np.prod([len(a) for a in axes])), "extensions": extensions}
    return {"kp": float(best[0]), "ki": float(best[1]), "kd": float(best[2]),
            "preview": int(preview), "model_rms": rms, "grid": coarse, "on_edge": on_edge}


def tune_pid(plant: Plant, refs: np.ndarray, u0=None, *, previews=(0,), seed: int = 1,
             u_run=None) -> dict:
    """Grid search of (kp, ki, kd) on the plant model for the reference ``refs`` (and of the
    preview, over ``previews`` periods), then finer grids around the best; gains are discrete
    (per period), as the firmware uses them. The first grid spans kp 0.01-100, ki 0 and
    1e-4-10, kd 0 and 0.01-100, and an axis whose best value is at an end is extended past
    it; ``on_edge`` names the gains still at an end after that (none, normally). The plant
    starts at rest under ``u0`` (the PID's bias while tuning; default the middle of the
    range); ``u_run``, if given, is the bias (and the mixing point) of the run the gains are
    for."""
    st = setup_for(plant)
    u_bias, mix = pid_mix(plant, st.tracked, u0)
    best = None
    for L in previews:
        r = _search(plant, refs, u_bias, mix, st.tracked, seed, L)
        if best is None or r["model_rms"] < best["model_rms"]:
            best = r
    if u_run is not None:
        u_bias, mix = pid_mix(plant, st.tracked, u_run)
    best.update(u_bias=u_bias, mix=mix)
    return best
