"""A mass-spring-damper driven by a force: the classic second-order benchmark."""

from __future__ import annotations

import numpy as np

from .base import NetSpec, Plant, Signal


class MassSpringDamper(Plant):
    """``m x'' + c x' + k x = F``; position in mm, velocity in mm/s, force in N."""

    name = "msd"
    description = "mass-spring-damper: force in, position and velocity out"
    inputs = (Signal("F", "N", -10.0, 10.0),)
    outputs = (Signal("x", "mm", -250.0, 250.0), Signal("v", "mm/s", -2500.0, 2500.0))
    states = (Signal("x", "mm", -250.0, 250.0), Signal("v", "mm/s", -2500.0, 2500.0))
    dt = 0.01
    substeps = 4
    noise_std = (0.1, 5.0)
    default_net = NetSpec("narx", hidden=(32, 32), lags=(2, 2), skip=True, samples=6000,
                          epochs=150)

    def __init__(self, m: float = 1.0, k: float = 100.0, c: float = 4.0) -> None:
        self.m, self.k, self.c = m, k, c  # kg, N/m, N s/m

    @property
    def omega_n(self) -> float:
        """Undamped natural frequency, rad/s."""
        return float(np.sqrt(self.k / self.m))

    @property
    def zeta(self) -> float:
        """Damping ratio."""
        return float(self.c / (2.0 * np.sqrt(self.k * self.m)))

    def f(self, x, u):
        pos, vel = x[..., 0], x[..., 1]
        # The ratios k/m and c/m are unit-free per second; the force enters as m/s^2 -> mm/s^2.
        acc = 1000.0 * u[..., 0] / self.m - (self.k / self.m) * pos - (self.c / self.m) * vel
        return np.stack([vel, acc], axis=-1)

    def h(self, x, u):
        return np.asarray(x, dtype=float).copy()

    def steady_state(self, u):
        u = self.clip(u)
        return np.stack([1000.0 * u[..., 0] / self.k, np.zeros(u.shape[:-1])], axis=-1)

    def free_response(self, x0_mm: float, v0_mm_s: float, t: np.ndarray) -> np.ndarray:
        """Closed-form unforced response (underdamped), positions and velocities, shape (T, 2)."""
        wn, z = self.omega_n, self.zeta
        if not z < 1.0:
            raise ValueError("free_response is written for an underdamped system")
        wd = wn * np.sqrt(1.0 - z * z)
        a, b = x0_mm, (v0_mm_s + z * wn * x0_mm) / wd
        e = np.exp(-z * wn * t)
        pos = e * (a * np.cos(wd * t) + b * np.sin(wd * t))
        c, s = np.cos(wd * t), np.sin(wd * t)
        vel = e * ((-z * wn * a + wd * b) * c + (-z * wn * b - wd * a) * s)
        return np.stack([pos, vel], axis=-1)
