"""The emulated board's stand-in rig: a simulated plant behind the board's second UART.

A real rig has sensors on analog pins and actuators on PWM outputs; the emulated board has its
UART1 instead, on a loopback socket of its own, and this simulator at the other end. Every
control period the firmware's HAL asks for the sensors (``RIG_SAMPLE`` k, answered with raw
16-bit readings of the plant's outputs, sensor noise included) and then drives the actuators
(``RIG_DRIVE`` k with PWM duty in [0, 1]); the simulator turns duty into the plant's inputs
through the same calibration the firmware uses, and advances the plant by one sample period.
Plant time is the board's period count, so the emulator's speed does not change the physics.

The simulator knows what no sensor does, the noise-free output: it logs every period (run, k,
t, inputs, measured and true outputs) for scoring a run afterwards (:attr:`RigSimulator.rows`,
or a CSV with ``log_path``).
"""

from __future__ import annotations

import contextlib
import csv
import socket
import threading
from pathlib import Path

import numpy as np

from ..build.channels import Channel, plant_channels
from . import protocol as P
from . import protocol_msgs as M


class RigSimulator:
    """Serve one plant on a listening loopback socket until the board disconnects."""

    def __init__(self, plant, *, seed: int = 0, noise: bool = True, log_path: Path | None = None,
                 u_start=None) -> None:
        self.plant = plant
        self.sensors, self.actuators = plant_channels(plant)
        self.rng = np.random.default_rng(seed) if noise else None
        u0 = 0.5 * (plant.u_low + plant.u_high) if u_start is None else np.asarray(u_start, float)
        self.u = plant.clip(u0)
        self.x = plant.steady_state(self.u[None])[0]
        self.log_path = Path(log_path) if log_path else None
        self.rows: list[dict] = []
        self.run = 0
        self.k_last: int | None = None
        self.samples = 0
        self.drives = 0
        self.bad_frames = 0
        self._pending: tuple[int, np.ndarray, np.ndarray] | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.port = self._sock.getsockname()[1]
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._csv = None
        self.error: Exception | None = None

    @property
    def qemu_serial(self) -> str:
        """The ``-serial`` value that connects the board's UART1 to this simulator."""
        return f"tcp:127.0.0.1:{self.port},nodelay=on"

    # -- the plant behind the pins --------------------------------------------------------
    def _raw_of(self, y: np.ndarray) -> list[float]:
        """Physical outputs -> ADC counts, rounded and saturated as a 16-bit converter does."""
        out = []
        for c, v in zip(self.sensors, y):
            r0, r1 = c.raw
            u0, u1 = c.units
            raw = r0 + (v - u0) * (r1 - r0) / (u1 - u0) if np.isfinite(v) else r0
            out.append(float(np.clip(np.rint(raw), min(r0, r1), max(r0, r1))))
        return out

    def sample(self, k: int) -> list[float]:
        if k == 0 and self.k_last is not None:
            self.run += 1
        self.k_last = k
        self.samples += 1
        y_true = self.plant.h(self.x, self.u)
        y = self.plant.measure(self.x, self.u, self.rng)
        self._pending = (k, y, y_true)
        return self._raw_of(y)

    def drive(self, k: int, duty) -> None:
        self.drives += 1
        u = np.array([float(c.to_units(d)) for c, d in zip(self.actuators, duty)])
        self.u = self.plant.clip(u)
        if self._pending is not None and self._pending[0] == k:
            _, y, y_true = self._pending
            self._log(k, self.u, y, y_true)
        self._pending = None
        self.x = self.plant.step(self.x, self.u)

    def _log(self, k: int, u, y, y_true) -> None:
        row = {"run": self.run, "k": k, "t": round(k * self.plant.dt, 6)}
        row.update({f"u_{s.name}": float(v) for s, v in zip(self.plant.inputs, u)})
        row.update({f"y_{s.name}": float(v) for s, v in zip(self.plant.outputs, y)})
        row.update({f"ytrue_{s.name}": float(v) for s, v in zip(self.plant.outputs, y_true)})
        self.rows.append(row)
        if self.log_path is not None:
            if self._csv is None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(self.log_path, "w", newline="")
                self._csv = (fh, csv.DictWriter(fh, fieldnames=list(row)))
                self._csv[1].writeheader()
            self._csv[1].writerow(row)
            self._csv[0].flush()

    def truth(self, run: int | None = None) -> dict[int, np.ndarray]:
        """{k: noise-free outputs} of one run (default: the last)."""
        run = self.run if run is None else run
        names = [f"ytrue_{s.name}" for s in self.plant.outputs]
        return {r["k"]: np.array([r[n] for n in names]) for r in self.rows if r["run"] == run}

    # -- the wire ---------------------------------------------------------------------------
    def _serve(self) -> None:
        dec = P.Decoder()
        try:
            self._sock.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    conn, _ = self._sock.accept()
                    break
                except TimeoutError:
                    continue
            else:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.2)
            with conn:
                while not self._stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    if not data:
                        return  # the board is gone
                    for f in dec.feed(data):
                        self._on_frame(conn, f)
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e
        finally:
            self.bad_frames = dec.frames_bad + dec.frames_long

    def _on_frame(self, conn, f) -> None:
        if f.type == M.RIG_SAMPLE:
            req = M.RigSampleRequest.unpack(f.payload)
            rep = M.RigSampleReply(raw=self.sample(req.k))
            conn.sendall(P.encode_frame(M.RIG_SAMPLE | M.REPLY, f.seq, rep.pack()))
        elif f.type == M.RIG_DRIVE:
            req = M.RigDriveRequest.unpack(f.payload)
            self.drive(req.k, req.raw[:len(self.actuators)])

    def start(self) -> "RigSimulator":
        self._thread = threading.Thread(target=self._serve, name="nnmpc-rig", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sock.close()
        if self._csv is not None:
            self._csv[0].close()
            self._csv = None

    def __enter__(self) -> "RigSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def channel_table(sensors: tuple[Channel, ...], actuators: tuple[Channel, ...]) -> str:
    """One line per channel, for messages and docs."""
    rows = [f"  sensor   {c.name:<8} [{c.unit}] raw {c.raw[0]:g}..{c.raw[1]:g} -> "
            f"{c.units[0]:g}..{c.units[1]:g}" for c in sensors]
    rows += [f"  actuator {c.name:<8} [{c.unit}] {c.units[0]:g}..{c.units[1]:g} -> "
             f"duty {c.raw[0]:g}..{c.raw[1]:g}" for c in actuators]
    return "\n".join(rows)


def rig_firmware(board, plant, work: Path, model_dir: Path | None = None):
    """The emulated board's image with on-board sensing wired to ``plant``'s channels; a net
    that predicts 0 stands in when no model is given (an experiment needs none)."""
    from ..build.firmware import build_firmware, placeholder_model

    work = Path(work)
    if model_dir is None:
        model_dir = work / "placeholder" / f"{plant.name}"
        if not (model_dir / "model.c").is_file():
            placeholder_model(len(plant.inputs), len(plant.outputs), model_dir)
    return build_firmware(board, model_dir, work / "fw" / f"rig-{plant.name}",
                          io=plant_channels(plant), io_source=f"the stand-in rig of plant "
                                                               f"'{plant.name}'")


@contextlib.contextmanager
def boot_rig(board, plant, work: Path, *, model_dir: Path | None = None, seed: int = 0,
             rig_log: Path | None = None, noise: bool = True):
    """Boot the stand-in rig in this process: ``with boot_rig(...) as (client, rig):``."""
    from .client import DeviceClient
    from .qemu import QemuBoard

    img = rig_firmware(board, plant, work, model_dir)
    with RigSimulator(plant, seed=seed, log_path=rig_log, noise=noise) as rig:
        with QemuBoard(img.elf, board, extra_serial=(rig.qemu_serial,)) as port:
            client = DeviceClient(port, timeout=5.0)
            client.hello()
            yield client, rig


def serve_rig(board, elf: Path, tcp_port: int, plant=None, *, seed: int = 0,
              rig_log: Path | None = None, say=print) -> int:
    """Run the emulated board with its protocol UART listening on ``tcp_port`` (and the stand-in
    rig of ``plant`` behind UART1) until the firmware exits (EXIT) or Ctrl-C; return its exit
    code."""
    from .qemu import QemuBoard

    rig = RigSimulator(plant, seed=seed, log_path=rig_log).start() if plant else None
    qemu = QemuBoard(elf, board, extra_serial=(rig.qemu_serial,) if rig else ())
    try:
        proc = qemu.serve(tcp_port)
        say(f"{board.name}: serving socket://127.0.0.1:{tcp_port} until the firmware exits "
            "(EXIT) or Ctrl-C" + (f"; plant '{plant.name}' wired to its sensors and actuators"
                                   + (f", rig log {rig_log}" if rig_log else "") if plant else
                                   "; lock-step hardware-in-the-loop"))
        code = proc.wait()
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        qemu.stop()
        if rig is not None:
            rig.stop()
            say(f"  rig: {rig.samples} samples, {rig.drives} drives over {rig.run + 1 if rig.k_last is not None else 0} run(s)")
