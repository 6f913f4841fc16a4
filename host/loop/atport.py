"""Runs on a board that something else started, reached at a port (``nnmpc run --port``).

Two ways, as on a real rig:

- **on-board sensing** (:func:`run_board_sensors`): the board samples its own sensors and
  drives its actuators at its fixed rate (source 2); the host configures it from a
  :class:`~.controller.ControllerSettings`, uploads the reference, starts the loop and logs the
  telemetry until the reference ends or Ctrl-C (then STOP);
- **hardware-in-the-loop** (:func:`run_hil`): the plant is simulated on the host in lock-step
  over the port, as ``nnmpc run --board qemu-m4f`` does with the board it starts itself.

A run first holds the reference's first point for ``settle_s`` (the rig comes to rest there);
those periods are not scored.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import NnmpcError
from ..link.client import DeviceClient, Hello
from ..plants import Plant
from ..progress import Progress
from .closedloop import run_closed_loop
from .controller import ControllerSettings
from .nets import NetInfo, infer_lags
from .pid import preview_reference
from .runlog import RunLog
from .settings import configure

SETTLE_NOTE = "held at the reference's first point for {s:g} s first (not scored)"


def net_from_hello(plant: Plant, hello: Hello) -> NetInfo:
    """The net the board runs, read off its sizes (the plant tells fk from NARX)."""
    kind, na, nb = infer_lags(plant, hello.n_in, hello.n_out)
    return NetInfo(None, kind, na, nb, hello.n_in, hello.n_out,
                   note=f"model {hello.model_hash} on board {hello.board}")


def run_board_sensors(client: DeviceClient, cs: ControllerSettings, refs: np.ndarray, *,
                      settle_s: float = 1.0, timeout: float = 5.0, show: bool = True,
                      truth=None, name: str = "rig") -> RunLog:
    """Configure ``cs`` on the board (source 2, its fixed rate), run ``refs`` (one row per
    period, p columns) after the settle phase, and return the scored part of the log.
    ``truth(k)`` may give the noise-free outputs of period k (a stand-in rig knows them)."""
    hello = client.hello_info or client.hello()
    cs.check_hello(hello, board_sensors=True)
    dt = cs.dt
    S = int(round(settle_s / dt))
    full = np.vstack([np.repeat(refs[:1], S, axis=0), refs])
    T = len(full)
    configure(client, cs.messages(source="board"))
    client.upload_trajectory(preview_reference(full, cs.preview), dt)   # PID preview: r[k + P]
    p, m = cs.p, cs.m
    keep = []
    lost, k_next = 0, 0
    t0 = time.monotonic()
    interrupted = False
    client.start()
    try:
        with Progress("periods", T, enabled=show) as bar:
            for tel, lost in client.stream(T, timeout, f"board '{hello.board}'"):
                k_next = tel.k + 1
                if tel.k >= S:
                    keep.append(tel)
                if k_next % 50 == 0:
                    bar.update(k_next, f"lost {lost}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            client.stop()
        except NnmpcError:
            pass
    ks = np.array([t.k - S for t in keep], int)
    ys = np.array([t.y[:p] for t in keep]).reshape(-1, p)
    yt = np.array([truth(t.k) if truth else t.y[:p] for t in keep]).reshape(-1, p)
    log = RunLog(name, cs.controller, dt, cs.tracked_index, list(cs.outputs), list(cs.inputs),
                 refs[ks] if len(ks) else refs[:0], ys, yt,
                 np.array([t.u[:m] for t in keep]).reshape(-1, m),
                 np.array([t.iterations for t in keep]), np.array([t.status for t in keep]),
                 np.array([t.residual for t in keep]), np.array([t.work for t in keep]),
                 hello.clock_hz, lost, time.monotonic() - t0,
                 extra={"start": SETTLE_NOTE.format(s=settle_s), "board": hello.board,
                        "model": hello.model_hash, "interrupted": interrupted,
                        "truth": "stand-in rig" if truth else "measured"},
                 output_units=list(cs.output_units), input_units=list(cs.input_units))
    return log


def run_hil(client: DeviceClient, plant: Plant, cs: ControllerSettings, refs: np.ndarray,
            u_init, *, seed: int = 0, noise: bool = True, timeout: float = 5.0) -> RunLog:
    """Lock-step hardware-in-the-loop against a board at a port: ``plant`` on the host."""
    hello = client.hello_info or client.hello()
    cs.check_hello(hello, board_sensors=False)
    u0 = configure(client, cs.messages(source="host", u_init=u_init))
    return run_closed_loop(client, plant, refs, cs.controller, u0, seed=seed, noise=noise,
                           timeout=timeout, preview=cs.preview)
