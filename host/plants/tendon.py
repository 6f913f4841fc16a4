"""A tendon-driven soft continuum segment with constant-curvature kinematics.

Three tendons run at radius ``r`` from the backbone, 120 degrees apart. Their tensions bend
the segment (the bending moment is ``r * sum(T_i * e_i)`` with ``e_i`` the tendon's direction
in the base plane; curvature = moment / EI) and compress it axially. The segment's curvature
vector and length follow their quasi-static values through a first-order lag. The sensed
output is the tip position in mm, from the constant-curvature arc:

    theta = |kappa| L,  tip = L^2 kappa / 2 * sinc^2(theta / 2)  (in the base plane),
    z = L sinc(theta)         with sinc(a) = sin(a) / a

which is the usual ``(1 - cos theta) / |kappa|``, ``sin theta / |kappa|`` written without the
0/0 at zero curvature.
"""

from __future__ import annotations

import numpy as np

from .base import NetSpec, Plant, Signal


class TendonSegment(Plant):
    name = "tendon"
    description = ("tendon-driven soft continuum segment: 3 tendon tensions in, "
                   "tip position out (constant curvature)")
    inputs = tuple(Signal(f"T{i + 1}", "N", 0.0, 10.0) for i in range(3))
    outputs = (Signal("x", "mm", -80.0, 80.0), Signal("y", "mm", -80.0, 80.0),
               Signal("z", "mm", 0.0, 100.0))
    states = (Signal("kappa_x", "1/m", -25.0, 25.0), Signal("kappa_y", "1/m", -25.0, 25.0),
              Signal("L", "mm", 80.0, 100.0))
    dt = 0.01
    noise_std = (0.2, 0.2, 0.2)
    default_net = NetSpec("fk", hidden=(32, 32), samples=3000, epochs=300)

    def __init__(self, length_mm: float = 100.0, radius_mm: float = 8.0,
                 ei_nmm2: float = 4000.0, k_axial_n_per_mm: float = 3.0, tau: float = 0.1) -> None:
        self.L0, self.r, self.EI, self.k_ax, self.tau = (length_mm, radius_mm, ei_nmm2,
                                                         k_axial_n_per_mm, tau)
        ang = 2.0 * np.pi * np.arange(3) / 3.0
        self.dirs = np.stack([np.cos(ang), np.sin(ang)], axis=-1)  # (3, 2) tendon directions

    # -- quasi-static configuration ---------------------------------------------------------
    def config(self, u) -> np.ndarray:
        """(kappa_x [1/m], kappa_y [1/m], L [mm]) the tensions hold the segment at."""
        u = self.clip(u)
        moment = self.r * (u @ self.dirs)                  # N mm, (..., 2)
        kappa = 1000.0 * moment / self.EI                  # 1/mm -> 1/m
        length = self.L0 - u.sum(axis=-1) / self.k_ax      # mm
        return np.concatenate([kappa, length[..., None]], axis=-1)

    def steady_state(self, u):
        return self.config(u)

    def x0(self):
        return np.array([0.0, 0.0, self.L0])

    def f(self, x, u):
        return (self.config(u) - x) / self.tau

    def h(self, x, u):
        return self.tip(x)

    @staticmethod
    def tip(x) -> np.ndarray:
        """Tip position (mm) of a constant-curvature arc from its (kappa_x, kappa_y, L)."""
        x = np.asarray(x, dtype=float)
        kx, ky, L = x[..., 0] / 1000.0, x[..., 1] / 1000.0, x[..., 2]  # 1/mm
        theta = np.hypot(kx, ky) * L
        s2 = np.sinc(theta / (2.0 * np.pi)) ** 2
        return np.stack([0.5 * L * L * kx * s2, 0.5 * L * L * ky * s2,
                         L * np.sinc(theta / np.pi)], axis=-1)

    def tendon_length_change(self, x) -> np.ndarray:
        """How much each tendon has been pulled in (mm) at configuration ``x``: the arc of a
        tendon at radius r on the bend's inner side is shorter by r * theta * cos(angle)."""
        x = np.asarray(x, dtype=float)
        kappa = x[..., :2] / 1000.0
        return (self.L0 - x[..., 2])[..., None] + self.r * x[..., 2:3] * (kappa @ self.dirs.T)
