"""Stream telemetry from any board to CSV (and/or MCAP), with a live terminal view.

Listens passively: it decodes every frame on the port, writes each TELEMETRY frame as a CSV
row and counts what was lost (gaps in the period index k) and what arrived corrupt (COBS or
CRC failures, malformed telemetry). Works with any pyserial URL: ``/dev/ttyACM0``,
``socket://127.0.0.1:PORT`` (an emulated board), ``rfc2217://...``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NnmpcError
from ..learn.logs import McapLogWriter
from ..link import protocol as P
from ..link import protocol_msgs as M

STATUS = {0: "ok", 1: "cap", 2: "budget", 3: "nonfinite", 4: "badcfg", 5: "badmeas",
          6: "linklost"}


@dataclass
class MonitorStats:
    frames: int = 0          # telemetry rows written
    lost: int = 0            # periods missing between consecutive telemetry frames
    corrupt: int = 0         # frames dropped by the decoder or malformed telemetry
    other: int = 0           # valid frames that are not telemetry (replies, errors)
    overruns: int = 0
    seconds: float = 0.0
    restarts: int = 0        # k went back (the loop was restarted): t carries on
    bytes: int = 0           # bytes received
    warnings: list = field(default_factory=list)


@dataclass
class Columns:
    """Names and units of the telemetry values, and the period: from ``--plant`` (names,
    units, its sample period) or generic (outputs and inputs numbered 0, 1, ...)."""

    outputs: list[str] | None = None
    inputs: list[str] | None = None
    output_units: list[str] | None = None
    input_units: list[str] | None = None
    period_s: float | None = None
    plant: str = ""

    @classmethod
    def for_plant(cls, plant, period_s: float | None = None) -> "Columns":
        return cls([s.name for s in plant.outputs], [s.name for s in plant.inputs],
                   [s.unit for s in plant.outputs], [s.unit for s in plant.inputs],
                   period_s or plant.dt, plant.name)

    def header(self, p: int, m: int, clock_hz: int) -> tuple[list[str], dict]:
        """CSV header for ``p`` outputs and ``m`` inputs, and the units by column."""
        outs = self.outputs if self.outputs and len(self.outputs) == p else \
            [str(i) for i in range(p)]
        ins = self.inputs if self.inputs and len(self.inputs) == m else \
            [str(j) for j in range(m)]
        cols = ["t", "k", *(f"ref_{n}" for n in outs), *(f"y_{n}" for n in outs),
                *(f"u_{n}" for n in ins), "iterations", "status", "residual",
                "work_us" if clock_hz else "work", "overrun"]
        units = {"t": "s" if self.period_s else "periods"}
        if clock_hz:
            units["work_us"] = "us"
        if outs is self.outputs and self.output_units:
            for n, un in zip(outs, self.output_units):
                units[f"ref_{n}"] = units[f"y_{n}"] = un
        if ins is self.inputs and self.input_units:
            units.update({f"u_{n}": un for n, un in zip(ins, self.input_units)})
        return cols, units

    def matches(self, p: int, m: int) -> bool:
        return (self.outputs is None or len(self.outputs) == p) and \
            (self.inputs is None or len(self.inputs) == m)


def _silence(port_name: str, seconds: float, st: MonitorStats, dec) -> str:
    bad = st.corrupt + dec.frames_bad + dec.frames_long
    where = f" on {port_name}" if port_name else ""
    if st.bytes == 0:
        return (f"no telemetry in {seconds:g} s{where}: nothing received at all: is the board "
                "running and the loop started (`nnmpc run --port`)?")
    return (f"no telemetry in {seconds:g} s{where}: is the loop started (`nnmpc run --port`)? "
            f"frames seen: {st.other} valid, {bad} corrupt"
            + (" (wrong baud rate?)" if bad and not st.other else ""))


def monitor(port, out: Path | None, *, max_frames: int | None = None,
            duration: float | None = None, clock_hz: int = 0, stream=None,
            refresh_s: float = 0.2, columns: Columns | None = None,
            mcap: Path | None = None, idle_warn_s: float = 5.0, port_name: str = "",
            warn=None) -> MonitorStats:
    """Read ``port`` until ``max_frames`` telemetry frames or ``duration`` seconds (or Ctrl-C);
    write rows to the CSV ``out`` and/or the MCAP file ``mcap``; show a one-line live view on
    ``stream`` (None: quiet). Columns: ``t`` (k x period, from ``columns.period_s``; counted
    in periods when the period is unknown), ``k``, ``ref_<out>``, ``y_<out>``, ``u_<in>``,
    ``iterations, status, residual``, ``work_us`` (``work`` in ticks without ``clock_hz``),
    ``overrun``. With a plant or a period the CSV starts with a ``# {json}`` metadata line.
    When no telemetry arrives for ``idle_warn_s`` seconds, a line on ``warn`` (default:
    ``stream``) says so and what was seen instead."""
    cols = columns or Columns()
    warn = warn if warn is not None else stream
    dec = P.Decoder()
    st = MonitorStats()
    t0 = last_draw = last_tel = time.monotonic()
    warned = False
    k_prev = None
    k_offset = 0
    fh = open(out, "w", newline="") if out else None
    writer = None
    mcap_writer = None
    names = None

    def say(line: str) -> None:
        st.warnings.append(line)
        if warn is not None:
            warn.write(("\n" if stream is warn and st.frames else "") + line + "\n")
            warn.flush()

    try:
        while True:
            now = time.monotonic()
            if (max_frames is not None and st.frames >= max_frames) or \
                    (duration is not None and now - t0 >= duration):
                break
            if idle_warn_s and not warned and now - last_tel >= idle_warn_s:
                say(_silence(port_name, idle_warn_s, st, dec))
                warned = True
            data = port.read(max(1, port.in_waiting))
            st.bytes += len(data)
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
                if k_prev is not None and t.k <= k_prev:
                    st.restarts += 1
                    k_offset += k_prev + 1 - t.k
                k_prev = t.k
                last_tel, warned = time.monotonic(), False
                st.frames += 1
                st.overruns += t.flags & 1
                if names is None:
                    if not cols.matches(t.p, t.m):
                        say(f"telemetry has {t.p} outputs and {t.m} inputs, the plant "
                            f"{cols.plant} {len(cols.outputs or ())} and "
                            f"{len(cols.inputs or ())}: generic column names")
                    names, units = cols.header(t.p, t.m, clock_hz)
                    meta = {"kind": "run", "source": "nnmpc monitor", "units": units,
                            "clock_hz": clock_hz}
                    if cols.plant:
                        meta["plant"] = cols.plant
                    if cols.period_s:
                        meta["dt"] = cols.period_s
                    if fh is not None:
                        if cols.plant or cols.period_s:
                            fh.write("# " + json.dumps(meta, sort_keys=True) + "\n")
                        writer = csv.writer(fh)
                        writer.writerow(names)
                    if mcap is not None:
                        mcap_writer = McapLogWriter(mcap, names[1:], meta, units)
                kk = t.k + k_offset
                tt = kk * cols.period_s if cols.period_s else float(kk)
                work = 1e6 * t.work / clock_hz if clock_hz else t.work
                if writer is not None:
                    writer.writerow([f"{tt:.6f}", t.k, *(f"{v:.6g}" for v in t.values),
                                     t.iterations, t.status, f"{t.residual:.6g}",
                                     f"{work:.1f}" if clock_hz else work, t.flags & 1])
                if mcap_writer is not None:
                    mcap_writer.write(tt, [t.k, *t.values, t.iterations, t.status,
                                           t.residual, work, t.flags & 1])
                if stream is not None and time.monotonic() - last_draw >= refresh_s:
                    last_draw = time.monotonic()
                    w = (f"{1e6 * t.work / clock_hz:7.1f} us" if clock_hz else f"{t.work} ticks")
                    y = " ".join(f"{v:8.3f}" for v in t.values[t.p:2 * t.p])
                    u = " ".join(f"{v:7.3f}" for v in t.values[2 * t.p:])
                    stream.write(f"\rk {t.k:7d} y [{y}] u [{u}] it {t.iterations:2d} "
                                 f"{STATUS.get(t.status, t.status):>9} work {w} | "
                                 f"rows {st.frames} lost {st.lost} corrupt "
                                 f"{st.corrupt + dec.frames_bad + dec.frames_long}   ")
                    stream.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if fh is not None:
            fh.close()
        if mcap_writer is not None:
            mcap_writer.close()
        st.corrupt += dec.frames_bad + dec.frames_long
        st.seconds = time.monotonic() - t0
        if stream is not None:
            stream.write("\n")
    if st.frames == 0 and not st.warnings:
        say(_silence(port_name, round(st.seconds, 1), st, dec))
    return st


def open_port(url: str, baud: int = 115200, timeout: float = 0.1):
    import serial

    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError) as e:
        raise NnmpcError(f"cannot open {url}: {e}") from None


def main_monitor(url: str, out: Path | None, baud: int, duration: float | None,
                 frames: int | None, clock_hz: int, *, plant: str | None = None,
                 period_ms: float | None = None, mcap: Path | None = None,
                 idle_warn_s: float = 5.0) -> MonitorStats:
    """``nnmpc monitor``: names, units and period from ``plant`` (see :class:`Columns`),
    ``period_ms`` overriding the period."""
    if period_ms is not None and not period_ms > 0:
        raise NnmpcError(f"--period-ms {period_ms}: must be positive")
    if mcap is not None and Path(mcap).suffix.lower() != ".mcap":
        raise NnmpcError(f"--log {mcap}: the monitor's --log is an MCAP file (name it .mcap; "
                         "--out writes CSV)")
    period = period_ms / 1e3 if period_ms else None
    if plant is not None:
        from ..plants import get_plant

        cols = Columns.for_plant(get_plant(plant), period)
    else:
        cols = Columns(period_s=period)
    port = open_port(url, baud)
    try:
        return monitor(port, out, max_frames=frames, duration=duration, clock_hz=clock_hz,
                       stream=sys.stderr, columns=cols, mcap=mcap, idle_warn_s=idle_warn_s,
                       port_name=url)
    finally:
        port.close()
