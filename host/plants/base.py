"""The plant interface shared by data generation, training, closed-loop runs and tests."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Signal:
    """A named physical quantity with its unit and its allowed (or expected) range."""

    name: str
    unit: str
    low: float
    high: float


class Plant(ABC):
    """A continuous-time system ``dx/dt = f(x, u)``, ``y = h(x, u)`` in physical units.

    Subclasses set the class attributes and implement :meth:`f` and :meth:`h`. Inputs are
    clipped to their limits before they reach the dynamics (the actuator saturates).
    """

    name: str = ""
    description: str = ""
    inputs: tuple[Signal, ...] = ()
    outputs: tuple[Signal, ...] = ()
    states: tuple[Signal, ...] = ()
    dt: float = 0.01             # default sample period, s
    substeps: int = 4            # RK4 steps per sample period
    noise_std: tuple[float, ...] = ()  # sensor noise per output, in output units

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def f(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """State derivative."""

    @abstractmethod
    def h(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Noise-free output."""

    def x0(self) -> np.ndarray:
        """Initial (rest) state."""
        return np.zeros(len(self.states))

    def steady_state(self, u: np.ndarray) -> np.ndarray:
        """State the plant settles to under constant ``u`` (integrated if not overridden)."""
        x = self.x0()
        for _ in range(2000):
            x = self.step(x, u)
        return x

    # -- shared ---------------------------------------------------------------------------
    @property
    def u_low(self) -> np.ndarray:
        return np.array([s.low for s in self.inputs])

    @property
    def u_high(self) -> np.ndarray:
        return np.array([s.high for s in self.inputs])

    def clip(self, u) -> np.ndarray:
        return np.clip(np.asarray(u, dtype=float), self.u_low, self.u_high)

    def step(self, x: np.ndarray, u, dt: float | None = None) -> np.ndarray:
        """Advance one sample period with fourth-order Runge-Kutta (input held constant)."""
        u = self.clip(u)
        h = (dt or self.dt) / self.substeps
        for _ in range(self.substeps):
            k1 = self.f(x, u)
            k2 = self.f(x + 0.5 * h * k1, u)
            k3 = self.f(x + 0.5 * h * k2, u)
            k4 = self.f(x + h * k3, u)
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    def measure(self, x: np.ndarray, u, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sensor reading: the output plus Gaussian noise (none if ``rng`` is None)."""
        y = self.h(x, self.clip(u))
        if rng is not None and self.noise_std:
            y = y + rng.normal(0.0, self.noise_std)
        return y

    def forward_kinematics(self, u) -> np.ndarray:
        """Quasi-static map u -> y: the settled output under constant u."""
        u = self.clip(u)
        return self.h(self.steady_state(u), u)
