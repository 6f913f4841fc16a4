"""A HASEL-like electrohydraulic actuator: voltage in, displacement out.

Three states, all continuous so RK4 integrates them accurately:

* ``p`` (kV): the voltage the electrodes see, behind the driver's first-order lag ``tau_e``;
* ``z`` (kV): a Bouc-Wen hysteresis state driven by ``dp/dt``. With ``beta = gamma =
  1 / (2 z_max)`` and ``n = 1`` it rises to ``+z_max`` while ``p`` increases and falls to
  ``-z_max`` while it decreases: a smoothed play (backlash) of half-width ``z_max``;
* ``d`` (mm): the displacement, following the saturating static curve
  ``d_max * (1 - exp(-(max(p - z, 0) / v0)^2))`` through a mechanical lag ``tau_m``.

So the static curve saturates, the response lags, and loading and unloading paths differ.
"""

from __future__ import annotations

import numpy as np

from .base import NetSpec, Plant, Signal


class HaselActuator(Plant):
    name = "hasel"
    description = ("HASEL-like electrohydraulic actuator: voltage in, displacement out "
                   "(saturating, lagged, hysteretic)")
    inputs = (Signal("V", "kV", 0.0, 8.0),)
    outputs = (Signal("d", "mm", 0.0, 5.0),)
    states = (Signal("p", "kV", 0.0, 8.0), Signal("z", "kV", -0.5, 0.5),
              Signal("d", "mm", 0.0, 5.0))
    dt = 0.01
    substeps = 4
    noise_std = (0.01,)
    default_net = NetSpec("narx", hidden=(32, 32), lags=(3, 3), skip=True, samples=6000,
                          epochs=150)

    def __init__(self, d_max_mm: float = 5.0, v0_kv: float = 5.0, z_max_kv: float = 0.5,
                 tau_e: float = 0.02, tau_m: float = 0.08) -> None:
        self.d_max, self.v0, self.z_max, self.tau_e, self.tau_m = (d_max_mm, v0_kv, z_max_kv,
                                                                    tau_e, tau_m)

    def static_curve(self, drive_kv) -> np.ndarray:
        v = np.maximum(np.asarray(drive_kv, dtype=float), 0.0)
        return self.d_max * (1.0 - np.exp(-(v / self.v0) ** 2))

    def f(self, x, u):
        p, z, d = x[..., 0], x[..., 1], x[..., 2]
        pdot = (u[..., 0] - p) / self.tau_e
        beta = gamma = 0.5 / self.z_max
        zdot = pdot - beta * np.abs(pdot) * z - gamma * pdot * np.abs(z)
        ddot = (self.static_curve(p - z) - d) / self.tau_m
        return np.stack([pdot, zdot, ddot], axis=-1)

    def h(self, x, u):
        return np.asarray(x, dtype=float)[..., 2:3].copy()

    def steady_state(self, u):
        """Settled state after a step from rest to ``u``: p = V and, along the rising branch,
        dz/dp = 1 - z / z_max, so z = z_max (1 - exp(-V / z_max))."""
        u = self.clip(u)
        p = u[..., 0]
        z = self.z_max * (1.0 - np.exp(-p / self.z_max))
        return np.stack([p, z, self.static_curve(p - z)], axis=-1)
