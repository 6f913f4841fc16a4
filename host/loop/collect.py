"""`nnmpc collect`: an excitation experiment on a board, logged as a timestamped CSV.

The board drives its actuators open loop (controller 3, ``EXCITE``) with steps, a chirp, a
multisine or a PRBS inside the input limits, at the control rate, and samples its sensors every
period (source 2); each period's TELEMETRY frame becomes one CSV row::

    t,u_<input>...,y_<output>...

in physical units (the board applies its calibration), with a ``# {json}`` metadata line
(signal names, units, the period, the excitation). Rows are written as they arrive, so Ctrl-C
leaves a valid file of the periods done so far.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NnmpcError
from ..link import protocol_msgs as M
from ..link.client import DeviceClient
from ..progress import Progress
from .controller import CH

SIGNALS = {"steps": 0, "chirp": 1, "multisine": 2, "prbs": 3}


@dataclass
class Signal:
    name: str
    unit: str
    low: float
    high: float


@dataclass
class Excitation:
    """What the board plays: ``signal`` inside [u_lo, u_hi] (default: the inputs' limits)."""

    signal: str = "multisine"
    duration_s: float = 60.0
    amplitude: float = 0.8        # fraction of the half range
    f_lo: float = 0.05            # Hz (chirp, multisine)
    f_hi: float = 2.0
    hold_s: float = 0.5           # steps, prbs: time per level
    seed: int = 0

    def check(self, dt: float) -> None:
        if self.signal not in SIGNALS:
            raise NnmpcError(f"--signal {self.signal}: one of {', '.join(SIGNALS)}")
        if not self.duration_s > 0:
            raise NnmpcError(f"--duration {self.duration_s}: must be positive")
        if not 0 < self.amplitude <= 1:
            raise NnmpcError(f"--amplitude {self.amplitude}: must be in (0, 1]")
        if not 0 <= self.f_lo <= self.f_hi:
            raise NnmpcError(f"--f-lo {self.f_lo} / --f-hi {self.f_hi}: need 0 <= f_lo <= f_hi")
        if self.f_hi > 0.5 / dt:
            raise NnmpcError(f"--f-hi {self.f_hi}: above the Nyquist frequency "
                             f"{0.5 / dt:g} Hz of the {dt * 1e3:g} ms period")
        if not self.hold_s >= dt:
            raise NnmpcError(f"--hold {self.hold_s}: at least one period ({dt:g} s)")


@dataclass
class CollectResult:
    path: Path
    periods: int
    lost: int
    seconds: float
    interrupted: bool = False
    meta: dict = field(default_factory=dict)


def _pad(v, n=CH) -> list[float]:
    v = [float(x) for x in v][:n]
    return v + [0.0] * (n - len(v))


def collect(client: DeviceClient, inputs: list[Signal], outputs: list[Signal], dt: float,
            ex: Excitation, out: Path, *, u_lo=None, u_hi=None, timeout: float = 5.0,
            show: bool = True, extra_meta: dict | None = None) -> CollectResult:
    """Configure the board for ``ex``, run it, log every period to ``out``; STOP at the end or
    on Ctrl-C (the file then holds the periods done)."""
    ex.check(dt)
    p, m = len(outputs), len(inputs)
    hello = client.hello_info or client.hello()
    if hello.sensors < p or hello.actuators < m:
        raise NnmpcError(f"board '{hello.board}' samples {hello.sensors} sensors and drives "
                         f"{hello.actuators} actuators; this experiment needs {p} and {m} "
                         "(build it with on-board sensing: nnmpc build --local-sensors)")
    lo = np.array([s.low for s in inputs] if u_lo is None else u_lo, float)
    hi = np.array([s.high for s in inputs] if u_hi is None else u_hi, float)
    if np.any(lo >= hi):
        raise NnmpcError("input limits: every low must be below its high")
    periods = int(round(ex.duration_s / dt))
    period_us = int(round(dt * 1e6))
    client.configure(M.ConfigRequest(controller=3, source=2, p=p, m=m, na=0, nb=1, horizon=1,
                                     moves=1, period_us=period_us, budget_us=0, max_iter=1,
                                     telemetry_every=1, fd_eps=1e-3))
    client.configure(M.LimitsRequest(u_lo=_pad(lo), u_hi=_pad(hi), u_init=_pad(0.5 * (lo + hi))))
    hold = max(1, int(round(ex.hold_s / dt)))
    client.configure(M.ExciteRequest(kind=SIGNALS[ex.signal], reserved=0, hold=min(hold, 65535),
                                     seed=ex.seed & 0xFFFFFFFF, periods=periods, f_lo=ex.f_lo,
                                     f_hi=ex.f_hi, amplitude=ex.amplitude))
    meta = {"kind": "collect", "board": hello.board, "dt": dt, "periods": periods,
            "excitation": asdict(ex), "u_lo": lo.tolist(), "u_hi": hi.tolist(),
            "units": {**{f"u_{s.name}": s.unit for s in inputs},
                      **{f"y_{s.name}": s.unit for s in outputs}}, **(extra_meta or {})}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lost = done = 0
    k_next = 0
    interrupted = False
    t0 = time.monotonic()
    with open(out, "w", newline="") as fh:
        fh.write("# " + json.dumps(meta) + "\n")
        w = csv.writer(fh)
        w.writerow(["t", *(f"u_{s.name}" for s in inputs), *(f"y_{s.name}" for s in outputs)])
        client.start()
        try:
            with Progress("periods", periods, enabled=show) as bar:
                for tel, lost in client.stream(periods, timeout, "the board (is it sampling "
                                                                 "its sensors?)"):
                    k_next = tel.k + 1
                    w.writerow([f"{tel.k * dt:.6f}", *(f"{v:.7g}" for v in tel.u[:m]),
                                *(f"{v:.7g}" for v in tel.y[:p])])
                    done += 1
                    if done % 50 == 0:
                        fh.flush()
                        bar.update(k_next, f"lost {lost}")
                bar.update(k_next, f"lost {lost}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            fh.flush()
            try:
                client.stop()
            except NnmpcError:
                pass
    return CollectResult(out, done, lost, time.monotonic() - t0, interrupted, meta)
