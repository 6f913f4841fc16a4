"""The plant interface shared by data generation, training, closed-loop runs and tests.

Every array argument may carry leading batch dimensions: ``x`` of shape ``(..., n_states)``
and ``u`` of shape ``(..., n_inputs)``; :meth:`f` and :meth:`h` index the last axis only, so
many trajectories integrate at once.
"""

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

    def as_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "low": float(self.low),
                "high": float(self.high)}


@dataclass(frozen=True)
class NetSpec:
    """The net ``nnmpc train`` builds for a plant when no options say otherwise."""

    kind: str                       # "fk", "dyn" or "narx"
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "tanh"
    lags: tuple[int, int] = (2, 2)  # (ny, nu), NARX only
    skip: bool = False              # linear input-to-output path beside the MLP
    samples: int = 6000
    epochs: int = 150


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
    default_net: NetSpec = NetSpec("fk")

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
        """State the plant settles to under constant ``u`` from rest (integrated if not
        overridden)."""
        u = self.clip(u)
        x = np.broadcast_to(self.x0(), u.shape[:-1] + (len(self.states),)).copy()
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

    @property
    def y_low(self) -> np.ndarray:
        return np.array([s.low for s in self.outputs])

    @property
    def y_high(self) -> np.ndarray:
        return np.array([s.high for s in self.outputs])

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
            y = y + rng.normal(0.0, self.noise_std, size=np.shape(y))
        return y

    def forward_kinematics(self, u) -> np.ndarray:
        """Quasi-static map u -> y: the settled output under constant u."""
        u = self.clip(u)
        return self.h(self.steady_state(u), u)

    def simulate(self, u_seq: np.ndarray, x0: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the plant over inputs ``u_seq`` of shape ``(..., T, n_inputs)``.

        Returns states ``x`` of shape ``(..., T + 1, n_states)`` (``x[..., 0, :]`` is the
        initial state; ``x[..., k + 1, :]`` follows input ``u[..., k, :]``) and measurements
        ``y = measure(x[..., k, :])`` of the same length.
        """
        u_seq = self.clip(u_seq)
        batch = u_seq.shape[:-2]
        x = np.broadcast_to(self.x0() if x0 is None else x0, batch + (len(self.states),)).copy()
        xs = [x]
        for k in range(u_seq.shape[-2]):
            x = self.step(x, u_seq[..., k, :])
            xs.append(x)
        xs = np.stack(xs, axis=-2)
        u_ext = np.concatenate([u_seq, u_seq[..., -1:, :]], axis=-2)
        return xs, self.measure(xs, u_ext, rng)

    def describe(self) -> dict:
        """Names, units, limits and sample rate, for dataset and model metadata."""
        return {
            "plant": self.name, "description": self.description,
            "dt_s": self.dt, "sample_rate_hz": 1.0 / self.dt,
            "inputs": [s.as_dict() for s in self.inputs],
            "outputs": [s.as_dict() for s in self.outputs],
            "states": [s.as_dict() for s in self.states],
            "noise_std": list(self.noise_std),
        }
