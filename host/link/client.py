"""A client for firmware that speaks the nnmpc protocol, over any pyserial port.

Requests wait for the reply with their sequence number; TELEMETRY frames that arrive
meanwhile are queued (:meth:`DeviceClient.telemetry`). Message layouts come from the schema
(``firmware/protocol/schema.toml`` -> :mod:`nnmpc.host.link.protocol_msgs`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import serial

from . import protocol as P
from . import protocol_msgs as M
from ..errors import NnmpcError


@dataclass(frozen=True)
class Hello:
    proto_version: int
    n_in: int
    n_out: int
    model_hash: str
    board: str
    firmware_version: str
    channels: int = 0
    max_horizon: int = 0
    max_lag: int = 0
    traj_max: int = 0
    clock_hz: int = 0
    sensors: int = 0       # on-board channels (source 2)
    actuators: int = 0


@dataclass(frozen=True)
class Telemetry:
    """One control period as the device reports it."""
    k: int
    work: int          # clock ticks (Hello.clock_hz)
    residual: float
    iterations: int
    status: int
    controller: int
    overrun: bool
    ref: np.ndarray
    y: np.ndarray
    u: np.ndarray


class DeviceError(NnmpcError):
    """The device answered a request with an ERROR frame."""

    def __init__(self, msg_type: int, code: int) -> None:
        self.msg_type, self.code = msg_type, code
        name = M.NAMES.get(msg_type, f"0x{msg_type:02x}")
        super().__init__(f"device rejected {name}: {M.ERROR_NAMES.get(code, f'error {code}')}")


class LinkLost(NnmpcError):
    """The serial link went away (the board was reset or unplugged, or the emulator exited)."""

    def __init__(self, port: str, cause: Exception) -> None:
        why = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(f"lost the link to the board at {port}: {why}")


class DeviceClient:
    """Request/response over the framed link. Each request waits for the matching sequence."""

    def __init__(self, port: serial.SerialBase, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self.decoder = P.Decoder()
        self.seq = 0
        self.hello_info: Hello | None = None
        self.p = 0
        self.m = 0
        self._telemetry: deque[M.Telemetry] = deque()
        self.errors: list[tuple[int, int]] = []   # unsolicited ERROR frames (code, type)

    # -- transport ------------------------------------------------------------------------
    def _pump(self, deadline: float):
        """Read what is there (waiting until deadline for at least one byte); yield frames."""
        try:
            n = max(1, self.port.in_waiting)
            old = self.port.timeout
            self.port.timeout = max(0.0, min(old or 1.0, deadline - time.monotonic()))
        except (serial.SerialException, OSError) as e:
            raise LinkLost(self._port_name(), e) from None
        try:
            data = self.port.read(n)
        except (serial.SerialException, OSError) as e:
            raise LinkLost(self._port_name(), e) from None
        finally:
            self._restore_timeout(old)
        for f in self.decoder.feed(data):
            if f.type == P.TELEMETRY:
                try:
                    self._telemetry.append(M.Telemetry.unpack(f.payload))
                except ValueError:
                    self.decoder.frames_bad += 1
                continue
            yield f

    def send(self, msg_type: int, payload: bytes = b"") -> int:
        self.seq = (self.seq + 1) & 0xFF
        self._write(P.encode_frame(msg_type, self.seq, payload))
        return self.seq

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as e:
            raise LinkLost(self._port_name(), e) from None

    def _restore_timeout(self, old) -> None:
        try:
            self.port.timeout = old
        except (serial.SerialException, OSError):
            pass  # the port is gone; the read already said so

    def _port_name(self) -> str:
        return str(getattr(self.port, "portstr", None) or getattr(self.port, "port", "") or "the port")

    def request(self, msg_type: int, payload: bytes = b"") -> bytes:
        seq = self.send(msg_type, payload)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for f in self._pump(deadline):
                if f.type == P.ERROR and len(f.payload) == 2 and f.seq != seq:
                    self.errors.append((f.payload[0], f.payload[1]))
                    continue
                if f.seq != seq:
                    continue
                if f.type == P.ERROR:
                    raise DeviceError(msg_type, f.payload[0] if f.payload else 0)
                if f.type != (msg_type | P.REPLY):
                    raise NnmpcError(f"unexpected reply type 0x{f.type:02x} to 0x{msg_type:02x}")
                return f.payload
        raise NnmpcError(f"no reply to request 0x{msg_type:02x} within {self.timeout} s")

    # -- model queries --------------------------------------------------------------------
    def hello(self) -> Hello:
        try:
            r = M.HelloReply.unpack(self.request(P.HELLO))
        except ValueError as e:
            raise NnmpcError(f"device speaks another protocol (HELLO: {e})") from None
        if r.proto_version != P.PROTO_VERSION:
            raise NnmpcError(f"device speaks protocol v{r.proto_version}, host v{P.PROTO_VERSION}")
        h = Hello(r.proto_version, r.n_in, r.n_out, r.model_hash, r.board, r.firmware,
                  r.channels, r.max_horizon, r.max_lag, r.traj_max, r.clock_hz, r.sensors,
                  r.actuators)
        self.hello_info = h
        return h

    def _sizes(self) -> Hello:
        return self.hello_info or self.hello()

    def predict(self, x) -> np.ndarray:
        h = self._sizes()
        x = np.asarray(x, dtype="<f4").ravel()
        if x.size != h.n_in:
            raise NnmpcError(f"model takes {h.n_in} inputs, got {x.size}")
        return np.frombuffer(self.request(P.PREDICT, x.tobytes()), dtype="<f4").copy()

    def predict_jacobian(self, x) -> tuple[np.ndarray, np.ndarray]:
        h = self._sizes()
        x = np.asarray(x, dtype="<f4").ravel()
        r = np.frombuffer(self.request(P.JACOBIAN, x.tobytes()), dtype="<f4")
        return r[:h.n_out].copy(), r[h.n_out:].reshape(h.n_out, h.n_in).copy()

    def stats(self) -> dict[str, int]:
        r = M.StatsReply.unpack(self.request(P.STATS))
        return {k: getattr(r, k) for k in ("frames_ok", "frames_bad", "frames_long", "requests",
                                           "rejected", "periods", "overruns", "max_work")}

    def exit(self) -> None:
        self.request(P.EXIT)

    # -- control loop ---------------------------------------------------------------------
    def configure(self, msg) -> None:
        """Send one settings message (a generated ``*Request`` dataclass); raise if refused."""
        self.request(msg.TYPE, msg.pack())
        if isinstance(msg, M.ConfigRequest):
            self.p, self.m = msg.p, msg.m

    def upload_trajectory(self, rows: np.ndarray, dt: float | None = None) -> None:
        """Upload reference rows (T x p) in chunks that fit a frame; refuse a trajectory longer
        than the board's buffer (HELLO ``traj_max`` values), naming the limit."""
        rows = np.asarray(rows, dtype=np.float32)
        T, p = rows.shape
        cap = self._sizes().traj_max
        if cap and T * p > cap:
            most = cap // p
            when = f" = {most * dt:.2f} s at {1 / dt:g} Hz" if dt else ""
            raise NnmpcError(f"the reference has {T} rows of {p} outputs ({T * p} values); the "
                             f"board's trajectory buffer holds {cap} values: at most {most} rows"
                             f"{when}. Shorten it (--duration) or build the firmware with a "
                             "larger NNMPC_TRAJ_FLOATS")
        per = max(1, M.TrajectoryRequest.TAIL_MAX // p)
        for off in range(0, T, per):
            chunk = rows[off:off + per]
            self.configure(M.TrajectoryRequest(total=T, offset=off,
                                               rows=[float(v) for v in chunk.ravel()]))

    def start(self) -> None:
        self._telemetry.clear()
        self.request(P.START)

    def stop(self) -> None:
        self.request(P.STOP)

    def send_sensor(self, k: int, y) -> None:
        y = [float(v) for v in np.asarray(y, dtype=np.float32).ravel()]
        self.send(P.SENSOR, M.SensorRequest(k=k & 0xFFFFFFFF, y=y).pack())

    def telemetry(self, timeout: float | None = None) -> Telemetry | None:
        """The next telemetry frame (waiting up to timeout), or None."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._telemetry:
            if time.monotonic() >= deadline:
                return None
            for f in self._pump(deadline):
                if f.type == P.ERROR and len(f.payload) == 2:
                    self.errors.append((f.payload[0], f.payload[1]))
        return self.decode_telemetry(self._telemetry.popleft())

    @staticmethod
    def decode_telemetry(t: M.Telemetry) -> Telemetry:
        v = np.asarray(t.values, dtype=np.float64)
        p, m = t.p, t.m
        if len(v) != 2 * p + m:
            raise NnmpcError(f"telemetry k={t.k}: {len(v)} values for p={p}, m={m}")
        return Telemetry(t.k, t.work, t.residual, t.iterations, t.status, t.controller,
                         bool(t.flags & 1), v[:p], v[p:2 * p], v[2 * p:])
