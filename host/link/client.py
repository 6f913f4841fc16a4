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


class NoReply(NnmpcError):
    """A request was resent until its time ran out and never answered."""


class LinkLost(NnmpcError):
    """The serial link went away (the board was reset or unplugged, or the emulator exited)."""

    def __init__(self, port: str, cause: Exception) -> None:
        why = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(f"lost the link to the board at {port}: {why}")


class DeviceClient:
    """Request/response over the framed link. Each request waits for the matching sequence."""

    #: Resend a request (same sequence number: the device answers a repeat without applying it
    #: twice) when no reply came within this many seconds; give up after ``timeout``. Once
    #: replies have been timed, the wait is a few round trips (never below MIN_WAIT_S), and a
    #: damaged frame arriving (the reply, hit on the link) triggers the resend at once.
    RETRY_AFTER_S = 0.1
    MIN_WAIT_S = 0.02
    LINK_BYTES_PER_S = 4000.0
    #: While damaged frames keep arriving (a board is there, the link is noisy) a request
    #: keeps trying this many times its ``timeout``; silence ends it at ``timeout``.
    NOISY_FACTOR = 8
    #: Once the link has damaged a frame, requests with a longer payload go in SEGMENT
    #: pieces of this many bytes: a short frame gets through a noisy link far more often.
    SEGMENT_BYTES = 16

    def __init__(self, port: serial.SerialBase, timeout: float = 5.0,
                 retry_after: float | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.retry_after = self.RETRY_AFTER_S if retry_after is None else retry_after
        self.resends = 0          # requests and SENSOR frames sent again
        self.bytes_in = 0
        self.naks = 0             # the device's word that a frame reached it damaged
        self.segmented = 0        # requests sent in SEGMENT pieces
        self.rtt: float | None = None   # smoothed round trip of first-try replies (s)
        self.last_step_tries = 0  # SENSOR frames the last lock-step period took
        self.decoder = P.Decoder()
        self.seq = 0
        self.hello_info: Hello | None = None
        self.p = 0
        self.m = 0
        self._telemetry: deque[M.Telemetry] = deque()
        self._brief: deque[tuple[int, M.TelemetryBrief]] = deque()   # (seq = k mod 256, frame)
        #: Lock-step periods as SENSOR_BRIEF / TELEMETRY_BRIEF: None = once the link has
        #: damaged a frame (a 32-byte round trip instead of 64 for the msd gets through a
        #: noisy link many times as often), True / False = always / never.
        self.brief: bool | None = None
        self.brief_periods = 0    # lock-step periods answered by TELEMETRY_BRIEF
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
        self.bytes_in += len(data)
        for f in self.decoder.feed(data):
            if f.type == P.ERROR and f.seq == 0 and f.payload == bytes([M.ERR_BAD_FRAME, 0]):
                self.naks += 1
                continue
            if f.type == P.TELEMETRY:
                try:
                    self._telemetry.append(M.Telemetry.unpack(f.payload))
                except ValueError:
                    self.decoder.frames_bad += 1
                continue
            if f.type == P.TELEMETRY_BRIEF:
                try:
                    self._brief.append((f.seq, M.TelemetryBrief.unpack(f.payload)))
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

    def _damaged(self) -> int:
        """Frames damaged on the link so far, either way."""
        return self.decoder.frames_bad + self.decoder.frames_long + self.naks

    def _wait(self, frame_len: int) -> float:
        """How long to wait for a reply before sending again: the frame's own time on a slow
        link plus a few measured round trips (``retry_after`` until one is measured)."""
        wait = self.retry_after if self.rtt is None else \
            min(self.retry_after, max(self.MIN_WAIT_S, 3 * self.rtt))
        return wait + frame_len / self.LINK_BYTES_PER_S

    def _timed(self, t_sent: float, first_try: bool) -> None:
        if first_try:  # only unambiguous samples (not a reply to an earlier copy)
            t = time.monotonic() - t_sent
            self.rtt = t if self.rtt is None else 0.8 * self.rtt + 0.2 * t

    def _restore_timeout(self, old) -> None:
        try:
            self.port.timeout = old
        except (serial.SerialException, OSError):
            pass  # the port is gone; the read already said so

    def _port_name(self) -> str:
        return str(getattr(self.port, "portstr", None) or getattr(self.port, "port", "") or "the port")

    def request(self, msg_type: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send a request and return its reply's payload, resending it (same sequence number)
        until ``timeout``: a reply or request lost on the link costs a resend, never the run.
        On a link that has damaged frames, a long request goes in SEGMENT pieces."""
        n = self.SEGMENT_BYTES
        if len(payload) <= n or not self._damaged():
            return self._exchange(msg_type, payload, msg_type, timeout)
        pieces = [payload[i:i + n] for i in range(0, len(payload), n)]
        self.segmented += 1
        for i, piece in enumerate(pieces):
            msg = M.SegmentRequest(carried=msg_type, index=i, count=len(pieces), reserved=0,
                                   bytes=list(piece))
            last = i == len(pieces) - 1
            reply = self._exchange(M.SEGMENT, msg.pack(), msg_type, timeout,
                                   expect=msg_type if last else M.SEGMENT)
        return reply

    def _exchange(self, msg_type: int, payload: bytes, what: int, timeout: float | None,
                  expect: int | None = None) -> bytes:
        """One request frame and its reply (type ``expect | REPLY``); ``what`` is the request
        that an ERROR reply refuses."""
        expect = msg_type if expect is None else expect
        self.seq = (self.seq + 1) & 0xFF
        seq = self.seq
        frame = P.encode_frame(msg_type, seq, payload)
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        damaged0 = self._damaged()
        tries = 0
        while True:
            self._write(frame)
            t_sent = time.monotonic()
            tries += 1
            damaged = self._damaged()
            deadline = t_sent + self._wait(len(frame))
            # Resend at once when a damaged frame arrives, but not faster than the frame
            # itself crosses the link: resends must not pile up in a slow UART.
            earliest = t_sent + len(frame) / self.LINK_BYTES_PER_S
            while time.monotonic() < deadline:
                for f in self._pump(deadline):
                    if f.type == P.ERROR and len(f.payload) == 2 and f.seq != seq:
                        self.errors.append((f.payload[0], f.payload[1]))
                        continue
                    if f.seq != seq:
                        continue
                    if f.type == P.ERROR:
                        raise DeviceError(what, f.payload[0] if f.payload else 0)
                    if f.type != (expect | P.REPLY):
                        continue  # a damaged-and-passed or stale frame: not our answer
                    self._timed(t_sent, tries == 1)
                    return f.payload
                if self._damaged() > damaged and time.monotonic() >= earliest:
                    break
            now = time.monotonic()
            noisy = self._damaged() > damaged0
            if now >= start + timeout * (self.NOISY_FACTOR if noisy else 1):
                name = M.NAMES.get(what, f"0x{what:02x}")
                if noisy:
                    raise NoReply(f"no intact reply to {name} in {now - start:.0f} s over a "
                                  f"noisy link ({tries} tries, {self._damaged() - damaged0} "
                                  f"damaged frames) at {self._port_name()}: check the cable, "
                                  "baud rate and grounding")
                raise NoReply(f"no reply to {name} within {timeout:g} s "
                                 f"({self.resends} resends so far): is the board running at "
                                 f"{self._port_name()}?")
            self.resends += 1

    # -- model queries --------------------------------------------------------------------
    def hello(self, timeout: float | None = None) -> Hello:
        """Identify the device; ``timeout`` for a first contact that may wait (a board that
        is still letting go of its previous host)."""
        try:
            r = M.HelloReply.unpack(self.request(P.HELLO, timeout=timeout))
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
                                           "rejected", "periods", "overruns", "max_work", "k",
                                           "lost", "safe_holds")}

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
        # Frames as large as fit; after a chunk that needed a resend (a noisy link), smaller
        # ones, so that a chunk gets through intact often enough.
        per = max(1, M.TrajectoryRequest.TAIL_MAX // p)
        off = 0
        # Room for the whole upload to cross a slow link many times over, resends included:
        # at 1 % byte errors a chunk gets through intact one time in a few.
        most = per
        clean = 0
        start = time.monotonic()
        budget = self.timeout + 40 * 4 * T * p / self.LINK_BYTES_PER_S
        damaged0 = self._damaged()

        def end() -> float:  # a noisy link (damaged frames seen) gets NOISY_FACTOR times longer
            return start + budget * (self.NOISY_FACTOR if self._damaged() > damaged0 else 1)

        while off < T:
            chunk = rows[off:off + per]
            msg = M.TrajectoryRequest(total=T, offset=off, rows=[float(v) for v in chunk.ravel()])
            before = self.resends
            try:  # a chunk that does not get through in a second goes again, in halves
                self.request(msg.TYPE, msg.pack(),
                             timeout=min(max(0.1, end() - time.monotonic()), 1.0 + per * p / 500))
            except NoReply:
                if time.monotonic() >= end():
                    raise
                per = max(1, per // 2)
                continue
            off += len(chunk)
            if self.resends > before:
                per, clean = max(1, per // 2), 0
            else:  # a clean run of chunks: larger ones again
                clean += 1
                if clean >= 4:
                    per, clean = min(most, per * 2), 0

    def start(self) -> None:
        self._telemetry.clear()
        self.request(P.START)

    def stop(self) -> None:
        self.request(P.STOP)

    def send_sensor(self, k: int, y) -> None:
        y = [float(v) for v in np.asarray(y, dtype=np.float32).ravel()]
        self.send(P.SENSOR, M.SensorRequest(k=k & 0xFFFFFFFF, y=y).pack())

    def step(self, k: int, y, timeout: float | None = None,
             tries: int | None = None) -> Telemetry | None:
        """One lock-step period: SENSOR k, then its TELEMETRY. A lost frame either way is
        resent (the device runs period k once and answers a repeat with the same
        TELEMETRY); stale TELEMETRY of earlier periods is dropped. On a noisy link (see
        :attr:`brief`) the period goes as SENSOR_BRIEF and comes back as TELEMETRY_BRIEF:
        status, iterations and u only (``work`` 0, ``residual`` and ``ref`` NaN, ``y`` the
        measurement sent). After ``tries`` SENSOR frames without an answer the period is
        lost: None (the caller holds its input; the device skips it when period k + 1
        arrives). Without ``tries``, raises after ``timeout``."""
        y = np.asarray(y, dtype=np.float32).ravel()
        frame_payload = M.SensorRequest(k=k & 0xFFFFFFFF, y=[float(v) for v in y]).pack()
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        frame_len = len(frame_payload) + 8
        n_sent = 0
        while True:
            brief = self._damaged() > 0 if self.brief is None else self.brief
            self.send(P.SENSOR_BRIEF if brief else P.SENSOR, frame_payload)
            t_sent = time.monotonic()
            n_sent += 1
            damaged = self._damaged()
            deadline = min(end, t_sent + self._wait(frame_len))
            earliest = t_sent + frame_len / self.LINK_BYTES_PER_S
            while True:
                tel = self._step_answer(k, y, max(0.0, deadline - time.monotonic()),
                                        damaged if time.monotonic() >= earliest else None)
                if tel is None:
                    break
                if tel.k == k:
                    self._timed(t_sent, n_sent == 1)
                    self.last_step_tries = n_sent
                    return tel
            if tries and n_sent >= tries:
                self.last_step_tries = n_sent
                return None
            if time.monotonic() >= end:
                raise NnmpcError(f"no telemetry for period {k} after {n_sent} SENSOR frames "
                                 f"({self.timeout if timeout is None else timeout} s)")
            self.resends += 1

    def _step_answer(self, k: int, y: np.ndarray, timeout: float,
                     until_damaged: int | None) -> Telemetry | None:
        """The next TELEMETRY or TELEMETRY_BRIEF frame of a lock-step period (brief ones
        whose seq is not k mod 256 are stale: dropped), or None as :meth:`telemetry`."""
        deadline = time.monotonic() + timeout
        while True:
            while self._brief:
                seq, b = self._brief.popleft()
                if seq == k & 0xFF:
                    if len(b.u) != self.m and self.m:
                        raise NnmpcError(f"brief telemetry k={k}: {len(b.u)} inputs, not {self.m}")
                    self.brief_periods += 1
                    nan = np.full(len(y), np.nan)
                    return Telemetry(k, 0, float("nan"), b.iterations, b.status, -1, False,
                                     nan, y.astype(np.float64), np.asarray(b.u, np.float64))
            if self._telemetry:
                return self.decode_telemetry(self._telemetry.popleft())
            if not self._await(lambda: self._brief or self._telemetry, deadline, until_damaged):
                return None

    def _await(self, ready, deadline: float, until_damaged: int | None) -> bool:
        """Read frames until ``ready()`` (True), the deadline or, with ``until_damaged``, more
        damaged frames than that (False). Unsolicited ERROR frames are kept in ``errors``."""
        while not ready():
            if time.monotonic() >= deadline:
                return False
            if until_damaged is not None and self._damaged() > until_damaged:
                return False
            for f in self._pump(deadline):
                if f.type == P.ERROR and len(f.payload) == 2:
                    self.errors.append((f.payload[0], f.payload[1]))
        return True

    def telemetry(self, timeout: float | None = None,
                  until_damaged: int | None = None) -> Telemetry | None:
        """The next telemetry frame (waiting up to timeout), or None; with ``until_damaged``,
        None also as soon as more damaged frames than that have arrived."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self._await(lambda: self._telemetry, deadline, until_damaged):
            return None
        return self.decode_telemetry(self._telemetry.popleft())

    def stream(self, periods: int, timeout: float, what: str = "the board"):
        """Telemetry of a fixed-rate run, period by period until ``periods``: yields
        ``(telemetry, lost)`` with ``lost`` the periods missed so far (gaps in k); stale or
        repeated frames are skipped. Raises when nothing arrives for ``timeout`` s."""
        lost = k_next = 0
        while k_next < periods:
            tel = self.telemetry(timeout)
            if tel is None:
                raise NnmpcError(f"no telemetry from {what} for {timeout} s after period "
                                 f"{k_next}")
            if tel.k < k_next:
                continue
            lost += tel.k - k_next
            k_next = tel.k + 1
            if tel.k < periods:
                yield tel, lost

    @staticmethod
    def decode_telemetry(t: M.Telemetry) -> Telemetry:
        v = np.asarray(t.values, dtype=np.float64)
        p, m = t.p, t.m
        if len(v) != 2 * p + m:
            raise NnmpcError(f"telemetry k={t.k}: {len(v)} values for p={p}, m={m}")
        return Telemetry(t.k, t.work, t.residual, t.iterations, t.status, t.controller,
                         bool(t.flags & 1), v[:p], v[p:2 * p], v[2 * p:])
