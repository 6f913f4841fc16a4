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
