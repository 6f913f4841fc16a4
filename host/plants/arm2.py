"""A 2-link planar arm whose joints follow commanded angles through servo lag."""

from __future__ import annotations

import numpy as np

from .base import NetSpec, Plant, Signal


class TwoLinkArm(Plant):
    name = "arm2"
    description = "2-link planar arm: joint angle commands in, end-effector position out"
    inputs = (Signal("q1_cmd", "rad", -1.5, 1.5), Signal("q2_cmd", "rad", 0.1, 2.4))
    outputs = (Signal("x", "mm", -350.0, 350.0), Signal("y", "mm", -350.0, 350.0))
    states = (Signal("q1", "rad", -np.pi, np.pi), Signal("q2", "rad", -np.pi, np.pi))
    dt = 0.01
    noise_std = (0.2, 0.2)
    default_net = NetSpec("fk", hidden=(32, 32), samples=3000, epochs=300)

    def __init__(self, l1: float = 200.0, l2: float = 150.0, tau: float = 0.05) -> None:
        self.l1, self.l2, self.tau = l1, l2, tau  # link lengths (mm), servo time constant (s)

    def f(self, x, u):
        return (u - x) / self.tau

    def h(self, x, u):
        q1, q2 = x[..., 0], x[..., 1]
        return np.stack([
            self.l1 * np.cos(q1) + self.l2 * np.cos(q1 + q2),
            self.l1 * np.sin(q1) + self.l2 * np.sin(q1 + q2),
        ], axis=-1)

    def steady_state(self, u):
        return self.clip(u)

    def x0(self):
        return self.clip(np.zeros(2))
