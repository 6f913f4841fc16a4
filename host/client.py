"""A client for firmware that speaks the nnmpc protocol, over any pyserial port."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np
import serial

from . import protocol as P
from .errors import NnmpcError


@dataclass(frozen=True)
class Hello:
    proto_version: int
    n_in: int
    n_out: int
    model_hash: str
    board: str
    firmware_version: str


def _strings(buf: bytes, count: int) -> list[str]:
    out, i = [], 0
    for _ in range(count):
        n = buf[i]
        out.append(buf[i + 1:i + 1 + n].decode(errors="replace"))
        i += 1 + n
    return out


class DeviceClient:
    """Request/response over the framed link. Each request waits for the matching sequence."""

    def __init__(self, port: serial.SerialBase, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self.decoder = P.Decoder()
        self.seq = 0
        self.hello_info: Hello | None = None

    def request(self, msg_type: int, payload: bytes = b"") -> bytes:
        self.seq = (self.seq + 1) & 0xFF
        self.port.write(P.encode_frame(msg_type, self.seq, payload))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self.port.read(max(1, self.port.in_waiting))
            for f in self.decoder.feed(data):
                if f.seq != self.seq:
                    continue
                if f.type == P.ERROR:
                    code = f.payload[0] if f.payload else 0
                    raise NnmpcError(f"device rejected request 0x{msg_type:02x}: "
                                     f"{P.ERROR_NAMES.get(code, f'error {code}')}")
                if f.type != (msg_type | P.REPLY):
                    raise NnmpcError(f"unexpected reply type 0x{f.type:02x} to 0x{msg_type:02x}")
                return f.payload
        raise NnmpcError(f"no reply to request 0x{msg_type:02x} within {self.timeout} s")

    def hello(self) -> Hello:
        p = self.request(P.HELLO)
        h = Hello(p[0], p[1], p[2], *_strings(p[4:], 3))
        if h.proto_version != P.PROTO_VERSION:
            raise NnmpcError(f"device speaks protocol v{h.proto_version}, host v{P.PROTO_VERSION}")
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
        ok, bad, long_, req = struct.unpack("<4I", self.request(P.STATS))
        return {"frames_ok": ok, "frames_bad": bad, "frames_long": long_, "requests": req}

    def exit(self) -> None:
        self.request(P.EXIT)
