"""Host side of the nnmpc serial framing (mirror of firmware/protocol/nnmpc_proto.c).

Wire format: b"\\x00" + COBS(type | seq | payload | crc16_le) + b"\\x00", CRC-16/CCITT-FALSE
over type, seq and payload; the leading delimiter ends any noise before the frame. See
docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import protocol_msgs as M
# Message types and error codes come from the schema (firmware/protocol/schema.toml).
from .protocol_msgs import (CONFIG, ERROR, ERROR_NAMES, EXIT, HELLO, JACOBIAN, LIMITS,  # noqa: F401
                            PAYLOAD_MAX, PID, PLANT, PREDICT, REFERENCE, REPLY, SEGMENT, SENSOR, START,
                            SENSOR_BRIEF, STATS, STOP, TELEMETRY, TELEMETRY_BRIEF,
                            TRAJECTORY, WEIGHTS)

PROTO_VERSION = M.VERSION


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """Decode one COBS block (no delimiter); None if it is not valid COBS."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        i += 1
        if code == 0 or i + code - 1 > n:
            return None
        block = data[i:i + code - 1]
        if 0 in block:
            return None
        out += block
        i += code - 1
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > PAYLOAD_MAX:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {PAYLOAD_MAX}")
    raw = bytes([msg_type & 0xFF, seq & 0xFF]) + payload
    crc = crc16(raw)
    return b"\x00" + cobs_encode(raw + bytes([crc & 0xFF, crc >> 8])) + b"\x00"


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass
class Decoder:
    """Streaming decoder; counts frames dropped for bad COBS/CRC or excessive length."""

    frames_ok: int = 0
    frames_bad: int = 0
    frames_long: int = 0
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        for byte in data:
            if byte != 0:
                self._buf.append(byte)
                continue
            block, self._buf = bytes(self._buf), bytearray()
            if not block:
                continue
            if len(block) > PAYLOAD_MAX + 8:
                self.frames_long += 1
                continue
            raw = cobs_decode(block)
            if raw is None or len(raw) < 4 or crc16(raw[:-2]) != raw[-2] | (raw[-1] << 8):
                self.frames_bad += 1
                continue
            self.frames_ok += 1
            frames.append(Frame(raw[0], raw[1], raw[2:-2]))
        return frames
