"""A loopback TCP proxy that damages the bytes it forwards: bit flips, drops and injected
bursts of garbage, in both directions, from a seeded generator. It stands between the host and
the emulated board's UART in the lossy-link tests, as a noisy cable would."""

from __future__ import annotations

import socket
import threading

import numpy as np


class CorruptingProxy:
    """Listen on a free loopback port and forward to ``target`` (host, port).

    ``rate`` is the byte error rate: each byte is flipped (one random bit) with probability
    ``rate``, dropped with ``rate / 2``, and followed by a burst of 1-12 random bytes with
    ``rate / 4`` (bursts contain a zero byte only by chance, like line noise)."""

    def __init__(self, target: tuple[str, int], rate: float, seed: int = 0) -> None:
        self.target, self.rate = target, rate
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.flipped = self.dropped = self.bursts = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def damage(self, data: bytes) -> bytes:
        if self.rate <= 0:
            return data
        out = bytearray()
        with self.lock:
            u = self.rng.random((len(data), 3))
            for i, b in enumerate(data):
                if u[i, 0] < self.rate / 2:
                    self.dropped += 1
                    continue
                if u[i, 1] < self.rate:
                    b ^= 1 << int(self.rng.integers(8))
                    self.flipped += 1
                out.append(b)
                if u[i, 2] < self.rate / 4:
                    self.bursts += 1
                    out += self.rng.integers(0, 256, int(self.rng.integers(1, 13)),
                                             dtype=np.uint8).tobytes()
        return bytes(out)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = src.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(self.damage(data))
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=1)

    def __enter__(self) -> "CorruptingProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
