"""Stream telemetry from any board to CSV, with a live terminal view.

Listens passively: it decodes every frame on the port, writes each TELEMETRY frame as a CSV
row and counts what was lost (gaps in the period index k) and what arrived corrupt (COBS or
CRC failures, malformed telemetry). Works with any pyserial URL: ``/dev/ttyACM0``,
``socket://127.0.0.1:PORT`` (an emulated board), ``rfc2217://...``.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..link import protocol as P
from ..link import protocol_msgs as M
from ..errors import NnmpcError

STATUS = {0: "ok", 1: "cap", 2: "budget", 3: "nonfinite", 4: "badcfg"}


@dataclass
class MonitorStats:
    frames: int = 0          # telemetry rows written
    lost: int = 0            # periods missing between consecutive telemetry frames
    corrupt: int = 0         # frames dropped by the decoder or malformed telemetry
    other: int = 0           # valid frames that are not telemetry (replies, errors)
    overruns: int = 0
    seconds: float = 0.0


def monitor(port, out: Path | None, *, max_frames: int | None = None,
            duration: float | None = None, clock_hz: int = 0, stream=None,
            refresh_s: float = 0.2) -> MonitorStats:
    """Read ``port`` until ``max_frames`` telemetry frames or ``duration`` seconds (or Ctrl-C);
    write CSV rows to ``out``; show a one-line live view on ``stream`` (None: quiet)."""
    dec = P.Decoder()
    st = MonitorStats()
    t0 = last_draw = time.monotonic()
    k_prev = None
    fh = open(out, "w", newline="") if out else None
    writer = None
    try:
        while True:
            now = time.monotonic()
            if (max_frames is not None and st.frames >= max_frames) or \
                    (duration is not None and now - t0 >= duration):
                break
            data = port.read(max(1, port.in_waiting))
            for f in dec.feed(data):
                if f.type != P.TELEMETRY:
                    st.other += 1
                    continue
                try:
                    t = M.Telemetry.unpack(f.payload)
                    if len(t.values) != 2 * t.p + t.m:
                        raise ValueError("sizes")
                except ValueError:
                    st.corrupt += 1
                    continue
                if k_prev is not None and t.k > k_prev + 1:
                    st.lost += t.k - k_prev - 1
                k_prev = t.k
                st.frames += 1
                st.overruns += t.flags & 1
                if fh is not None:
                    if writer is None:
                        writer = csv.writer(fh)
                        writer.writerow(["k", *(f"ref_{i}" for i in range(t.p)),
                                         *(f"y_{i}" for i in range(t.p)),
                                         *(f"u_{i}" for i in range(t.m)), "iterations",
                                         "status", "residual", "work", "overrun"])
                    writer.writerow([t.k, *(f"{v:.6g}" for v in t.values), t.iterations,
                                     t.status, f"{t.residual:.6g}", t.work, t.flags & 1])
                if stream is not None and time.monotonic() - last_draw >= refresh_s:
                    last_draw = time.monotonic()
                    work = (f"{1e6 * t.work / clock_hz:7.1f} us" if clock_hz else f"{t.work} ticks")
                    y = " ".join(f"{v:8.3f}" for v in t.values[t.p:2 * t.p])
                    u = " ".join(f"{v:7.3f}" for v in t.values[2 * t.p:])
                    stream.write(f"\rk {t.k:7d} y [{y}] u [{u}] it {t.iterations:2d} "
                                 f"{STATUS.get(t.status, t.status):>9} work {work} | "
                                 f"rows {st.frames} lost {st.lost} corrupt "
                                 f"{st.corrupt + dec.frames_bad + dec.frames_long}   ")
                    stream.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if fh is not None:
            fh.close()
        st.corrupt += dec.frames_bad + dec.frames_long
        st.seconds = time.monotonic() - t0
        if stream is not None:
            stream.write("\n")
    return st


def open_port(url: str, baud: int = 115200, timeout: float = 0.1):
    import serial

    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError) as e:
        raise NnmpcError(f"cannot open {url}: {e}") from None


def main_monitor(url: str, out: Path | None, baud: int, duration: float | None,
                 frames: int | None, clock_hz: int) -> MonitorStats:
    port = open_port(url, baud)
    try:
        return monitor(port, out, max_frames=frames, duration=duration, clock_hz=clock_hz,
                       stream=sys.stderr)
    finally:
        port.close()
