"""nnmpc protocol messages, generated from firmware/protocol/schema.toml by host/link/protogen.py
(generator 1, schema 587dfbb45e50572d). Do not edit: change the schema
and run ``python -m nnmpc.host.link.protogen``.

Each message part with fields is a dataclass with ``pack() -> bytes`` and
``unpack(bytes)`` (raises ValueError on a wrong length or string).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

VERSION = 5
SCHEMA_HASH = "587dfbb45e50572d"
PAYLOAD_MAX = 512
CHANNELS = 4
STR_MAX = 63
REPLY = 0x80

# Message types.
HELLO = 0x01  # Identify the device: protocol version, model sizes and hash, board, firmware, limits.
PREDICT = 0x02  # Run the model once: inputs in, outputs back.
JACOBIAN = 0x03  # Outputs and the exact Jacobian (row-major n_out x n_in) of the model at x.
STATS = 0x04  # Link and loop counters.
CONFIG = 0x10  # Controller, plant source, problem sizes, loop rate and solver limits (loop stopped).
WEIGHTS = 0x11  # Cost weights: output error q, move r, input regularisation s towards u_nom.
LIMITS = 0x12  # Input box limits and the input applied at start (and held on faults).
PID = 0x13  # PID per output with an optional feed-forward from the reference; u = u_bias + mix (m x p, row-major) times the PID outputs v, v_i = kp e + I + ki e - kd (y[k] - y[k-1]) + kff (r[k+lead] - y_bias) + kdff (r[k+lead+1] - r[k+lead]), e = r[k] - y[k].
REFERENCE = 0x14  # Constant reference (p values); clears an uploaded trajectory (loop stopped).
TRAJECTORY = 0x15  # Upload reference rows (p floats each) at row `offset` of a trajectory of `total` rows.
START = 0x16  # Reset the controller state and start the loop.
STOP = 0x17  # Stop the loop; the last input is held.
SENSOR = 0x18  # Measurement y[k] (p floats) for hardware-in-the-loop; the TELEMETRY frame answers. In lock-step period k runs once: a repeat of the last period gets its TELEMETRY again (a resend is safe), a k beyond the next period skips the periods between (lost on the link, counted), an older k is refused.
SENSOR_BRIEF = 0x1D  # SENSOR for a noisy link: the same payload and the same once-per-period rule, answered by the short TELEMETRY_BRIEF frame (lock-step only). The host switches to it once the link has damaged a frame: for the msd the round trip is 32 bytes instead of 64, and gets through a noisy link far more often.
PLANT = 0x19  # On-device plant (source 1): kind 1 = mass-spring-damper m x'' + c x' + k x = gain F.
EXCITE = 0x1A  # Open-loop excitation for controller 3: u = middle + amplitude * half range * signal, inside LIMITS.
SAFETY = 0x1B  # Safe state and plausibility: hold u_safe after link_timeout periods without a SENSOR frame (fixed rate, host sensors); refuse measurements outside [y_lo, y_hi] (a channel with y_lo >= y_hi: |y| <= 1e6).
ESTIMATOR = 0x1C  # Extended Kalman filter on the dynamic net's output lags (firmware built with NNMPC_ESTIMATOR; else unknown_type): the rollouts start from the filtered lags instead of the measurement. Off until enabled; START resets it.
RIG_SAMPLE = 0x30  # Board to stand-in rig (the emulated board's second UART): read the sensors for period k; the reply holds raw readings.
RIG_DRIVE = 0x31  # Board to stand-in rig: drive the actuators (raw duty) for period k; no reply.
TELEMETRY = 0x20  # Sent by the device every telemetry_every periods, unrequested; seq = k mod 256.
TELEMETRY_BRIEF = 0x21  # The answer to SENSOR_BRIEF: the period's status, iterations and input only; seq = k mod 256 (the host knows k). A repeat of the period is answered with the frame already sent, brief or not.
SEGMENT = 0x0E  # One piece of a longer request, for a noisy link where long frames rarely arrive intact. Pieces 0..count-1 of one request go in order, each acknowledged by an empty SEGMENT reply; the last piece is answered by the carried request's own reply (or ERROR), with the last piece's sequence number. A repeat of a piece is answered again, not applied again; piece 0 starts over.
EXIT = 0x0F  # Acknowledge, then end the program (emulated boards exit the emulator).
ERROR = 0x7F  # The device refused a frame: error code and the refused message type.
NAMES = { 0x01: "hello", 0x02: "predict", 0x03: "jacobian", 0x04: "stats", 0x10: "config", 0x11: "weights", 0x12: "limits", 0x13: "pid", 0x14: "reference", 0x15: "trajectory", 0x16: "start", 0x17: "stop", 0x18: "sensor", 0x1D: "sensor_brief", 0x19: "plant", 0x1A: "excite", 0x1B: "safety", 0x1C: "estimator", 0x30: "rig_sample", 0x31: "rig_drive", 0x20: "telemetry", 0x21: "telemetry_brief", 0x0E: "segment", 0x0F: "exit", 0x7F: "error", }

# Error codes carried by ERROR frames.
ERR_UNKNOWN_TYPE = 1
ERR_BAD_LENGTH = 2
ERR_TOO_LARGE = 3
ERR_BAD_VALUE = 4
ERR_BUSY = 5
ERR_NOT_RUNNING = 6
ERR_OUT_OF_ORDER = 7
ERR_BAD_FRAME = 8
ERR_BAD_SEGMENT = 9
ERROR_NAMES = {
    1: "no such message type",
    2: "payload length does not match the message",
    3: "the reply would not fit in a frame",
    4: "a field is out of range (sizes, limits, weights, controller); nothing was applied",
    5: "not allowed while the control loop runs (stop it first)",
    6: "sensor data while the loop is stopped or not fed by the host",
    7: "a lock-step SENSOR frame for a period before the last one",
    8: "a frame arrived damaged (COBS, CRC or length): sent at once with seq 0 and type 0, so that the host resends without waiting for its timeout",
    9: "a SEGMENT out of order or beyond the payload size",
}


def _array(values, n: int) -> list:
    values = list(values)
    if len(values) > n:
        raise ValueError(f"{len(values)} values for an array of {n}")
    return values + [0] * (n - len(values))


def _put_str(s: str) -> bytes:
    b = s.encode()[:STR_MAX]
    return bytes([len(b)]) + b


def _get_str(b: bytes, at: int) -> tuple[str, int]:
    if at >= len(b) or b[at] > STR_MAX or at + 1 + b[at] > len(b):
        raise ValueError("bad string")
    return b[at + 1:at + 1 + b[at]].decode(errors="replace"), at + 1 + b[at]


@dataclass
class HelloReply:
    """hello reply: Identify the device: protocol version, model sizes and hash, board, firmware, limits."""

    TYPE: ClassVar[int] = 0x81
    FORMAT: ClassVar[str] = "<BBBBBBHIBB"
    FIXED_SIZE: ClassVar[int] = 14
    proto_version: int = 0
    n_in: int = 0
    n_out: int = 0
    channels: int = 0
    max_horizon: int = 0
    max_lag: int = 0
    traj_max: int = 0
    clock_hz: int = 0  # rate of the work counter in TELEMETRY
    sensors: int = 0  # on-board sensor channels (source 2), 0 = none
    actuators: int = 0  # on-board actuator channels (source 2)
    model_hash: str = ""
    board: str = ""
    firmware: str = ""

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.proto_version, self.n_in, self.n_out, self.channels, self.max_horizon, self.max_lag, self.traj_max, self.clock_hz, self.sensors, self.actuators)
        out += _put_str(self.model_hash)
        out += _put_str(self.board)
        out += _put_str(self.firmware)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "HelloReply":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"HelloReply: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        model_hash, at = _get_str(b, at)
        board, at = _get_str(b, at)
        firmware, at = _get_str(b, at)
        if at != len(b):
            raise ValueError(f"HelloReply: {len(b) - at} trailing bytes")
        return cls(proto_version=v[0], n_in=v[1], n_out=v[2], channels=v[3], max_horizon=v[4], max_lag=v[5], traj_max=v[6], clock_hz=v[7], sensors=v[8], actuators=v[9], model_hash=model_hash, board=board, firmware=firmware)


@dataclass
class PredictRequest:
    """predict request: Run the model once: inputs in, outputs back."""

    TYPE: ClassVar[int] = 0x02
    FORMAT: ClassVar[str] = "<"
    FIXED_SIZE: ClassVar[int] = 0
    TAIL_MAX: ClassVar[int] = 128
    x: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT)
        if len(self.x) > self.TAIL_MAX:
            raise ValueError(f"x: {len(self.x)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.x)}f", *self.x)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "PredictRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"PredictRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"PredictRequest: bad x length {len(b) - at}")
        x = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(x=x)


@dataclass
class PredictReply:
    """predict reply: Run the model once: inputs in, outputs back."""

    TYPE: ClassVar[int] = 0x82
    FORMAT: ClassVar[str] = "<"
    FIXED_SIZE: ClassVar[int] = 0
    TAIL_MAX: ClassVar[int] = 128
    y: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT)
        if len(self.y) > self.TAIL_MAX:
            raise ValueError(f"y: {len(self.y)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.y)}f", *self.y)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "PredictReply":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"PredictReply: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"PredictReply: bad y length {len(b) - at}")
        y = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(y=y)


@dataclass
class JacobianRequest:
    """jacobian request: Outputs and the exact Jacobian (row-major n_out x n_in) of the model at x."""

    TYPE: ClassVar[int] = 0x03
    FORMAT: ClassVar[str] = "<"
    FIXED_SIZE: ClassVar[int] = 0
    TAIL_MAX: ClassVar[int] = 128
    x: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT)
        if len(self.x) > self.TAIL_MAX:
            raise ValueError(f"x: {len(self.x)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.x)}f", *self.x)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "JacobianRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"JacobianRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"JacobianRequest: bad x length {len(b) - at}")
        x = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(x=x)


@dataclass
class JacobianReply:
    """jacobian reply: Outputs and the exact Jacobian (row-major n_out x n_in) of the model at x."""

    TYPE: ClassVar[int] = 0x83
    FORMAT: ClassVar[str] = "<"
    FIXED_SIZE: ClassVar[int] = 0
    TAIL_MAX: ClassVar[int] = 128
    y_jacobian: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT)
        if len(self.y_jacobian) > self.TAIL_MAX:
            raise ValueError(f"y_jacobian: {len(self.y_jacobian)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.y_jacobian)}f", *self.y_jacobian)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "JacobianReply":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"JacobianReply: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"JacobianReply: bad y_jacobian length {len(b) - at}")
        y_jacobian = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(y_jacobian=y_jacobian)


@dataclass
class StatsReply:
    """stats reply: Link and loop counters."""

    TYPE: ClassVar[int] = 0x84
    FORMAT: ClassVar[str] = "<IIIIIIIIIII"
    FIXED_SIZE: ClassVar[int] = 44
    frames_ok: int = 0
    frames_bad: int = 0  # COBS or CRC failures, runts
    frames_long: int = 0
    requests: int = 0
    rejected: int = 0  # frames answered with ERROR
    periods: int = 0
    overruns: int = 0  # periods whose work exceeded the period
    max_work: int = 0  # largest work of one period, clock ticks
    k: int = 0  # the next period index (periods since START, lost ones included)
    lost: int = 0  # lock-step periods skipped: their SENSOR frame never arrived
    safe_holds: int = 0  # fixed-rate periods that held u_safe (link lost)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.frames_ok, self.frames_bad, self.frames_long, self.requests, self.rejected, self.periods, self.overruns, self.max_work, self.k, self.lost, self.safe_holds)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "StatsReply":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"StatsReply: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(frames_ok=v[0], frames_bad=v[1], frames_long=v[2], requests=v[3], rejected=v[4], periods=v[5], overruns=v[6], max_work=v[7], k=v[8], lost=v[9], safe_holds=v[10])


@dataclass
class ConfigRequest:
    """config request: Controller, plant source, problem sizes, loop rate and solver limits (loop stopped)."""

    TYPE: ClassVar[int] = 0x10
    FORMAT: ClassVar[str] = "<BBBBBBBBIIHHf"
    FIXED_SIZE: ClassVar[int] = 24
    controller: int = 0  # 0 nr (Newton MPC), 1 pid, 2 fd (finite differences), 3 excite (open loop, EXCITE)
    source: int = 0  # 0 measurements from SENSOR frames, 1 on-device plant, 2 on-board sensors and actuators
    p: int = 0  # outputs
    m: int = 0  # inputs
    na: int = 0  # output lags in the net input
    nb: int = 0  # input lags in the net input
    horizon: int = 0
    moves: int = 0
    period_us: int = 0  # 0: one period per SENSOR frame (lock-step)
    budget_us: int = 0  # solver time budget per period, 0 = none
    max_iter: int = 0
    telemetry_every: int = 0  # send every n-th period (>= 1)
    fd_eps: float = 0.0  # fd controller: central-difference step

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.controller, self.source, self.p, self.m, self.na, self.nb, self.horizon, self.moves, self.period_us, self.budget_us, self.max_iter, self.telemetry_every, self.fd_eps)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "ConfigRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"ConfigRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(controller=v[0], source=v[1], p=v[2], m=v[3], na=v[4], nb=v[5], horizon=v[6], moves=v[7], period_us=v[8], budget_us=v[9], max_iter=v[10], telemetry_every=v[11], fd_eps=v[12])


@dataclass
class WeightsRequest:
    """weights request: Cost weights: output error q, move r, input regularisation s towards u_nom."""

    TYPE: ClassVar[int] = 0x11
    FORMAT: ClassVar[str] = "<4f4f4f4ffffff"
    FIXED_SIZE: ClassVar[int] = 84
    q: list = field(default_factory=lambda: [0] * 4)
    r: list = field(default_factory=lambda: [0] * 4)
    s: list = field(default_factory=lambda: [0] * 4)
    u_nom: list = field(default_factory=lambda: [0] * 4)
    bias_gain: float = 0.0  # output-disturbance filter gain in [0, 1]
    tol_step: float = 0.0
    lambda0: float = 0.0
    lag: float = 0.0  # quasi-static nets: first-order output lag pole per period in [0, 1), 0 = none
    y_filter: float = 0.0  # dynamic nets: weight in [0, 1) of the model's prediction in the output lags, 0 = measured output

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, *_array(self.q, 4), *_array(self.r, 4), *_array(self.s, 4), *_array(self.u_nom, 4), self.bias_gain, self.tol_step, self.lambda0, self.lag, self.y_filter)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "WeightsRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"WeightsRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(q=list(v[0:4]), r=list(v[4:8]), s=list(v[8:12]), u_nom=list(v[12:16]), bias_gain=v[16], tol_step=v[17], lambda0=v[18], lag=v[19], y_filter=v[20])


@dataclass
class LimitsRequest:
    """limits request: Input box limits and the input applied at start (and held on faults)."""

    TYPE: ClassVar[int] = 0x12
    FORMAT: ClassVar[str] = "<4f4f4f"
    FIXED_SIZE: ClassVar[int] = 48
    u_lo: list = field(default_factory=lambda: [0] * 4)
    u_hi: list = field(default_factory=lambda: [0] * 4)
    u_init: list = field(default_factory=lambda: [0] * 4)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, *_array(self.u_lo, 4), *_array(self.u_hi, 4), *_array(self.u_init, 4))
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "LimitsRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"LimitsRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(u_lo=list(v[0:4]), u_hi=list(v[4:8]), u_init=list(v[8:12]))


@dataclass
class PidRequest:
    """pid request: PID per output with an optional feed-forward from the reference; u = u_bias + mix (m x p, row-major) times the PID outputs v, v_i = kp e + I + ki e - kd (y[k] - y[k-1]) + kff (r[k+lead] - y_bias) + kdff (r[k+lead+1] - r[k+lead]), e = r[k] - y[k]."""

    TYPE: ClassVar[int] = 0x13
    FORMAT: ClassVar[str] = "<4f4f4f4f16f4f4f4fHH"
    FIXED_SIZE: ClassVar[int] = 180
    kp: list = field(default_factory=lambda: [0] * 4)
    ki: list = field(default_factory=lambda: [0] * 4)
    kd: list = field(default_factory=lambda: [0] * 4)
    u_bias: list = field(default_factory=lambda: [0] * 4)
    mix: list = field(default_factory=lambda: [0] * 16)
    kff: list = field(default_factory=lambda: [0] * 4)  # feed-forward gain on r[k+lead] - y_bias per output (0: none; 1: the static inverse through mix)
    kdff: list = field(default_factory=lambda: [0] * 4)  # feed-forward gain on r[k+lead+1] - r[k+lead] per output (0: none)
    y_bias: list = field(default_factory=lambda: [0] * 4)  # the output at u_bias: where the feed-forward is 0
    lead: int = 0  # periods ahead the feed-forward reads the reference (a trajectory's last row held)
    reserved: int = 0

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, *_array(self.kp, 4), *_array(self.ki, 4), *_array(self.kd, 4), *_array(self.u_bias, 4), *_array(self.mix, 16), *_array(self.kff, 4), *_array(self.kdff, 4), *_array(self.y_bias, 4), self.lead, self.reserved)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "PidRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"PidRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(kp=list(v[0:4]), ki=list(v[4:8]), kd=list(v[8:12]), u_bias=list(v[12:16]), mix=list(v[16:32]), kff=list(v[32:36]), kdff=list(v[36:40]), y_bias=list(v[40:44]), lead=v[44], reserved=v[45])


@dataclass
class ReferenceRequest:
    """reference request: Constant reference (p values); clears an uploaded trajectory (loop stopped)."""

    TYPE: ClassVar[int] = 0x14
    FORMAT: ClassVar[str] = "<4f"
    FIXED_SIZE: ClassVar[int] = 16
    ref: list = field(default_factory=lambda: [0] * 4)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, *_array(self.ref, 4))
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "ReferenceRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"ReferenceRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(ref=list(v[0:4]))


@dataclass
class TrajectoryRequest:
    """trajectory request: Upload reference rows (p floats each) at row `offset` of a trajectory of `total` rows."""

    TYPE: ClassVar[int] = 0x15
    FORMAT: ClassVar[str] = "<HH"
    FIXED_SIZE: ClassVar[int] = 4
    TAIL_MAX: ClassVar[int] = 127
    total: int = 0
    offset: int = 0
    rows: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.total, self.offset)
        if len(self.rows) > self.TAIL_MAX:
            raise ValueError(f"rows: {len(self.rows)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.rows)}f", *self.rows)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "TrajectoryRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"TrajectoryRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"TrajectoryRequest: bad rows length {len(b) - at}")
        rows = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(total=v[0], offset=v[1], rows=rows)


@dataclass
class SensorRequest:
    """sensor request: Measurement y[k] (p floats) for hardware-in-the-loop; the TELEMETRY frame answers. In lock-step period k runs once: a repeat of the last period gets its TELEMETRY again (a resend is safe), a k beyond the next period skips the periods between (lost on the link, counted), an older k is refused."""

    TYPE: ClassVar[int] = 0x18
    FORMAT: ClassVar[str] = "<I"
    FIXED_SIZE: ClassVar[int] = 4
    TAIL_MAX: ClassVar[int] = 127
    k: int = 0
    y: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.k)
        if len(self.y) > self.TAIL_MAX:
            raise ValueError(f"y: {len(self.y)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.y)}f", *self.y)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "SensorRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"SensorRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"SensorRequest: bad y length {len(b) - at}")
        y = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(k=v[0], y=y)


@dataclass
class SensorBriefRequest:
    """sensor_brief request: SENSOR for a noisy link: the same payload and the same once-per-period rule, answered by the short TELEMETRY_BRIEF frame (lock-step only). The host switches to it once the link has damaged a frame: for the msd the round trip is 32 bytes instead of 64, and gets through a noisy link far more often."""

    TYPE: ClassVar[int] = 0x1D
    FORMAT: ClassVar[str] = "<I"
    FIXED_SIZE: ClassVar[int] = 4
    TAIL_MAX: ClassVar[int] = 127
    k: int = 0
    y: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.k)
        if len(self.y) > self.TAIL_MAX:
            raise ValueError(f"y: {len(self.y)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.y)}f", *self.y)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "SensorBriefRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"SensorBriefRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"SensorBriefRequest: bad y length {len(b) - at}")
        y = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(k=v[0], y=y)


@dataclass
class PlantRequest:
    """plant request: On-device plant (source 1): kind 1 = mass-spring-damper m x'' + c x' + k x = gain F."""

    TYPE: ClassVar[int] = 0x19
    FORMAT: ClassVar[str] = "<BBHf8f"
    FIXED_SIZE: ClassVar[int] = 40
    kind: int = 0
    substeps: int = 0
    reserved: int = 0
    dt: float = 0.0
    params: list = field(default_factory=lambda: [0] * 8)  # msd: mass, stiffness, damping, gain

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.kind, self.substeps, self.reserved, self.dt, *_array(self.params, 8))
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "PlantRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"PlantRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(kind=v[0], substeps=v[1], reserved=v[2], dt=v[3], params=list(v[4:12]))


@dataclass
class ExciteRequest:
    """excite request: Open-loop excitation for controller 3: u = middle + amplitude * half range * signal, inside LIMITS."""

    TYPE: ClassVar[int] = 0x1A
    FORMAT: ClassVar[str] = "<BBHIIfff"
    FIXED_SIZE: ClassVar[int] = 24
    kind: int = 0  # 0 steps, 1 chirp, 2 multisine, 3 prbs
    reserved: int = 0
    hold: int = 0  # steps, prbs: periods per level (>= 1)
    seed: int = 0
    periods: int = 0  # chirp: sweep length in periods (>= 1)
    f_lo: float = 0.0  # chirp, multisine: lowest frequency, Hz
    f_hi: float = 0.0  # chirp, multisine: highest frequency, Hz
    amplitude: float = 0.0  # fraction of the half range, in (0, 1]

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.kind, self.reserved, self.hold, self.seed, self.periods, self.f_lo, self.f_hi, self.amplitude)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "ExciteRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"ExciteRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(kind=v[0], reserved=v[1], hold=v[2], seed=v[3], periods=v[4], f_lo=v[5], f_hi=v[6], amplitude=v[7])


@dataclass
class SafetyRequest:
    """safety request: Safe state and plausibility: hold u_safe after link_timeout periods without a SENSOR frame (fixed rate, host sensors); refuse measurements outside [y_lo, y_hi] (a channel with y_lo >= y_hi: |y| <= 1e6)."""

    TYPE: ClassVar[int] = 0x1B
    FORMAT: ClassVar[str] = "<HH4f4f4f"
    FIXED_SIZE: ClassVar[int] = 52
    link_timeout: int = 0  # periods without a valid SENSOR frame before u_safe is held, 0 = never
    reserved: int = 0
    u_safe: list = field(default_factory=lambda: [0] * 4)  # the input held on link loss (inside LIMITS)
    y_lo: list = field(default_factory=lambda: [0] * 4)
    y_hi: list = field(default_factory=lambda: [0] * 4)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.link_timeout, self.reserved, *_array(self.u_safe, 4), *_array(self.y_lo, 4), *_array(self.y_hi, 4))
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "SafetyRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"SafetyRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(link_timeout=v[0], reserved=v[1], u_safe=list(v[2:6]), y_lo=list(v[6:10]), y_hi=list(v[10:14]))


@dataclass
class EstimatorRequest:
    """estimator request: Extended Kalman filter on the dynamic net's output lags (firmware built with NNMPC_ESTIMATOR; else unknown_type): the rollouts start from the filtered lags instead of the measurement. Off until enabled; START resets it."""

    TYPE: ClassVar[int] = 0x1C
    FORMAT: ClassVar[str] = "<BBH4f4f4f"
    FIXED_SIZE: ClassVar[int] = 52
    enable: int = 0  # 0 off (the measured lags, y_filter), 1 on (needs na >= 1)
    reserved: int = 0
    reserved2: int = 0
    q: list = field(default_factory=lambda: [0] * 4)  # process noise variance per output and period, >= 0
    r: list = field(default_factory=lambda: [0] * 4)  # measurement noise variance per output, > 0 on the p outputs
    qd: list = field(default_factory=lambda: [0] * 4)  # process noise variance of the disturbance estimate d (a random walk in the filter's state; bias_gain is not used), >= 0

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.enable, self.reserved, self.reserved2, *_array(self.q, 4), *_array(self.r, 4), *_array(self.qd, 4))
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "EstimatorRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"EstimatorRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(enable=v[0], reserved=v[1], reserved2=v[2], q=list(v[3:7]), r=list(v[7:11]), qd=list(v[11:15]))


@dataclass
class RigSampleRequest:
    """rig_sample request: Board to stand-in rig (the emulated board's second UART): read the sensors for period k; the reply holds raw readings."""

    TYPE: ClassVar[int] = 0x30
    FORMAT: ClassVar[str] = "<I"
    FIXED_SIZE: ClassVar[int] = 4
    k: int = 0

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.k)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "RigSampleRequest":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"RigSampleRequest: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(k=v[0])


@dataclass
class RigSampleReply:
    """rig_sample reply: Board to stand-in rig (the emulated board's second UART): read the sensors for period k; the reply holds raw readings."""

    TYPE: ClassVar[int] = 0xB0
    FORMAT: ClassVar[str] = "<"
    FIXED_SIZE: ClassVar[int] = 0
    TAIL_MAX: ClassVar[int] = 128
    raw: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT)
        if len(self.raw) > self.TAIL_MAX:
            raise ValueError(f"raw: {len(self.raw)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.raw)}f", *self.raw)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "RigSampleReply":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"RigSampleReply: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"RigSampleReply: bad raw length {len(b) - at}")
        raw = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(raw=raw)


@dataclass
class RigDriveRequest:
    """rig_drive request: Board to stand-in rig: drive the actuators (raw duty) for period k; no reply."""

    TYPE: ClassVar[int] = 0x31
    FORMAT: ClassVar[str] = "<I"
    FIXED_SIZE: ClassVar[int] = 4
    TAIL_MAX: ClassVar[int] = 127
    k: int = 0
    raw: list = field(default_factory=list)

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.k)
        if len(self.raw) > self.TAIL_MAX:
            raise ValueError(f"raw: {len(self.raw)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.raw)}f", *self.raw)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "RigDriveRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"RigDriveRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"RigDriveRequest: bad raw length {len(b) - at}")
        raw = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(k=v[0], raw=raw)


@dataclass
class Telemetry:
    """telemetry event: Sent by the device every telemetry_every periods, unrequested; seq = k mod 256."""

    TYPE: ClassVar[int] = 0x20
    FORMAT: ClassVar[str] = "<IIfBBBBBB"
    FIXED_SIZE: ClassVar[int] = 18
    TAIL_MAX: ClassVar[int] = 123
    k: int = 0
    work: int = 0  # clock ticks from sample to actuation
    residual: float = 0.0  # solver cost at the returned input
    iterations: int = 0
    status: int = 0  # 0 converged, 1 iteration cap, 2 time budget, 3 non-finite, 4 bad config, 5 bad measurement (u held), 6 link lost (u_safe held)
    controller: int = 0
    flags: int = 0  # bit0: the period overran
    p: int = 0
    m: int = 0
    values: list = field(default_factory=list)  # ref[p], y[p], u[m]

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.k, self.work, self.residual, self.iterations, self.status, self.controller, self.flags, self.p, self.m)
        if len(self.values) > self.TAIL_MAX:
            raise ValueError(f"values: {len(self.values)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.values)}f", *self.values)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "Telemetry":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"Telemetry: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"Telemetry: bad values length {len(b) - at}")
        values = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(k=v[0], work=v[1], residual=v[2], iterations=v[3], status=v[4], controller=v[5], flags=v[6], p=v[7], m=v[8], values=values)


@dataclass
class TelemetryBrief:
    """telemetry_brief event: The answer to SENSOR_BRIEF: the period's status, iterations and input only; seq = k mod 256 (the host knows k). A repeat of the period is answered with the frame already sent, brief or not."""

    TYPE: ClassVar[int] = 0x21
    FORMAT: ClassVar[str] = "<BB"
    FIXED_SIZE: ClassVar[int] = 2
    TAIL_MAX: ClassVar[int] = 127
    status: int = 0  # as in TELEMETRY
    iterations: int = 0
    u: list = field(default_factory=list)  # u[m]

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.status, self.iterations)
        if len(self.u) > self.TAIL_MAX:
            raise ValueError(f"u: {len(self.u)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.u)}f", *self.u)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "TelemetryBrief":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"TelemetryBrief: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 4 or (len(b) - at) // 4 > cls.TAIL_MAX:
            raise ValueError(f"TelemetryBrief: bad u length {len(b) - at}")
        u = list(struct.unpack_from(f"<{(len(b) - at) // 4}f", b, at))
        return cls(status=v[0], iterations=v[1], u=u)


@dataclass
class SegmentRequest:
    """segment request: One piece of a longer request, for a noisy link where long frames rarely arrive intact. Pieces 0..count-1 of one request go in order, each acknowledged by an empty SEGMENT reply; the last piece is answered by the carried request's own reply (or ERROR), with the last piece's sequence number. A repeat of a piece is answered again, not applied again; piece 0 starts over."""

    TYPE: ClassVar[int] = 0x0E
    FORMAT: ClassVar[str] = "<BBBB"
    FIXED_SIZE: ClassVar[int] = 4
    TAIL_MAX: ClassVar[int] = 508
    carried: int = 0  # message type of the request carried
    index: int = 0
    count: int = 0
    reserved: int = 0
    bytes: list = field(default_factory=list)  # this piece of the carried request's payload

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.carried, self.index, self.count, self.reserved)
        if len(self.bytes) > self.TAIL_MAX:
            raise ValueError(f"bytes: {len(self.bytes)} values, at most {self.TAIL_MAX}")
        out += struct.pack(f"<{len(self.bytes)}B", *self.bytes)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "SegmentRequest":
        if len(b) < cls.FIXED_SIZE:
            raise ValueError(f"SegmentRequest: {len(b)} bytes, at least {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        if (len(b) - at) % 1 or (len(b) - at) // 1 > cls.TAIL_MAX:
            raise ValueError(f"SegmentRequest: bad bytes length {len(b) - at}")
        bytes = list(struct.unpack_from(f"<{(len(b) - at) // 1}B", b, at))
        return cls(carried=v[0], index=v[1], count=v[2], reserved=v[3], bytes=bytes)


@dataclass
class Error:
    """error event: The device refused a frame: error code and the refused message type."""

    TYPE: ClassVar[int] = 0x7F
    FORMAT: ClassVar[str] = "<BB"
    FIXED_SIZE: ClassVar[int] = 2
    code: int = 0
    type: int = 0

    def pack(self) -> bytes:
        out = struct.pack(self.FORMAT, self.code, self.type)
        return out

    @classmethod
    def unpack(cls, b: bytes) -> "Error":
        if len(b) != cls.FIXED_SIZE:
            raise ValueError(f"Error: {len(b)} bytes, expected {cls.FIXED_SIZE}")
        v = struct.unpack_from(cls.FORMAT, b, 0)
        at = cls.FIXED_SIZE
        return cls(code=v[0], type=v[1])
