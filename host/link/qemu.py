"""Run firmware on the emulated board: QEMU with UART0 on a loopback TCP socket.

``with QemuBoard(elf) as port:`` starts QEMU, connects pyserial to ``socket://127.0.0.1:PORT``
and always stops QEMU on exit, also on errors and Ctrl-C.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import serial

from ..build.boards import Board
from ..errors import NnmpcError
from ..toolchain import require


def _die_with_parent() -> None:
    """In the child before exec: have Linux send SIGTERM to QEMU if the host process dies
    (killed, crashed), so no emulator outlives the run that started it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _port_taken(port: int) -> bool:
    """Whether something listens on the loopback port (found without connecting to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuBoard:
    """A running emulated board. ``port`` is the open pyserial port to its UART0."""

    def __init__(self, elf: str | Path, board: Board, *, timeout: float = 5.0,
                 icount: int | None = None, extra_serial: tuple[str, ...] = ()) -> None:
        self.elf = Path(elf)
        self.board = board
        self.timeout = timeout
        self.icount = icount
        self.extra_serial = tuple(extra_serial)   # UART1, UART2, ...: QEMU -serial values
        self.proc: subprocess.Popen | None = None
        self.port: serial.SerialBase | None = None
        self.url = ""

    def command(self, tcp_port: int) -> list[str]:
        cmd = [
            require("qemu-system-arm"), "-M", self.board.run["machine"],
            "-nographic", "-monitor", "none",
            "-serial", f"tcp:127.0.0.1:{tcp_port},server=on,wait=on,nodelay=on",
            *(a for s in self.extra_serial for a in ("-serial", s)),
            "-semihosting-config", "enable=on,target=native",
            "-kernel", str(self.elf),
        ]
        if self.icount is not None:
            cmd += ["-icount", f"shift={self.icount}"]
        return cmd

    def start(self) -> serial.SerialBase:
        if not self.elf.is_file():
            raise NnmpcError(f"{self.elf}: firmware image not found")
        for _attempt in range(3):  # a port taken between probe and bind: pick another
            tcp_port = _free_port()
            self.proc = subprocess.Popen(
                self.command(tcp_port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
            self.url = f"socket://127.0.0.1:{tcp_port}"
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    self.port = serial.serial_for_url(self.url, timeout=self.timeout)
                    return self.port
                except serial.SerialException:
                    time.sleep(0.02)
            err = self._stop()
            if "Address already in use" not in err:
                raise NnmpcError(f"QEMU did not start: {err.strip() or 'no answer on ' + self.url}")
        raise NnmpcError("QEMU could not bind a loopback port after 3 attempts")

    def _stop(self) -> str:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:  # noqa: BLE001 - closing a dead socket is fine
                pass
            self.port = None
        err = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            for f in (self.proc.stdout, self.proc.stderr):
                if f:
                    f.close()
            self.proc = None
        return err

    def serve(self, tcp_port: int) -> subprocess.Popen:
        """Start QEMU with UART0 listening on ``tcp_port`` for a client of someone else's (a
        board at a port, as a real one is); the caller waits for it to exit."""
        if not self.elf.is_file():
            raise NnmpcError(f"{self.elf}: firmware image not found")
        self.url = f"socket://127.0.0.1:{tcp_port}"
        self.proc = subprocess.Popen(
            self.command(tcp_port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = time.monotonic() + self.timeout
        while not _port_taken(tcp_port):  # listening: a client of anyone's may connect now
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self._stop()
                raise NnmpcError(f"QEMU did not start on {self.url}: "
                                 f"{err.strip() or 'it did not listen'}")
            time.sleep(0.01)
        return self.proc

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        """Wait for the firmware to end QEMU (semihosting exit); return its exit code."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> serial.SerialBase:
        return self.start()

    def __exit__(self, *exc) -> None:
        self._stop()
