"""On-board sensing and actuation: the channels of a board and their calibration.

A board file declares its channels (``[[sensor]]`` and ``[[actuator]]`` tables)::

    [[sensor]]
    name = "x"              # the physical signal, as the net and the logs name it
    unit = "mm"
    pin = "A0"              # as the board's framework names the pin
    raw = [0, 4095]         # two ADC readings ...
    units = [-60.0, 60.0]   # ... and the physical values they stand for (linear between)

    [[actuator]]
    name = "T1"
    unit = "N"
    pin = "5"
    raw = [0.0, 1.0]        # PWM duty ...
    units = [0.0, 10.0]     # ... and the physical command it produces

The firmware applies the calibration (``firmware/io/nnmpc_io.c``): readings become units before
the controller sees them, and commands in units become duty, clamped to the raw range. The
emulated board's stand-in rig takes its channels from the plant wired to it
(:func:`plant_channels`): a 16-bit ADC over each output's range, PWM duty over each input's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from nnmpc.compiler.backend.codegen import c_float

from ..errors import NnmpcError

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates"
RIG_ADC_COUNTS = 65535.0   # the stand-in rig's sensors: 16-bit readings


@dataclass(frozen=True)
class Channel:
    name: str
    unit: str
    raw: tuple[float, float]
    units: tuple[float, float]
    pin: str = ""

    def to_units(self, raw) -> np.ndarray:
        """Readings -> physical values, in float32 as the firmware computes them."""
        f = np.float32
        r0, r1, u0, u1 = (f(v) for v in (*self.raw, *self.units))
        return u0 + (np.asarray(raw, f) - r0) * ((u1 - u0) / (r1 - r0))

    def to_raw(self, units) -> np.ndarray:
        """Physical commands -> raw values, clamped to the raw range, in float32."""
        f = np.float32
        r0, r1, u0, u1 = (f(v) for v in (*self.raw, *self.units))
        v = np.asarray(units, f)
        raw = r0 + (v - u0) * ((r1 - r0) / (u1 - u0))
        raw = np.where(np.isnan(v), r0, raw)
        return np.clip(raw, min(r0, r1), max(r0, r1)).astype(f)


def _channel(entry: dict, kind: str, i: int, where: str) -> Channel:
    at = f"{where}: [[{kind}]] #{i + 1}"
    for key in ("name", "raw", "units"):
        if key not in entry:
            raise NnmpcError(f"{at}: missing field '{key}'")
    pair = {}
    for key in ("raw", "units"):
        v = entry[key]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
            raise NnmpcError(f"{at} ({entry['name']}): '{key}' must be two numbers, e.g. [0, 4095]")
        if v[0] == v[1]:
            raise NnmpcError(f"{at} ({entry['name']}): '{key}' needs two different values")
        pair[key] = (float(v[0]), float(v[1]))
    if kind == "actuator" and not all(0.0 <= r <= 1.0 for r in pair["raw"]):
        raise NnmpcError(f"{at} ({entry['name']}): actuator 'raw' is PWM duty, within [0, 1]")
    return Channel(str(entry["name"]), str(entry.get("unit", "")), pair["raw"], pair["units"],
                   str(entry.get("pin", "")))


def parse_channels(data: dict, where: str) -> tuple[tuple[Channel, ...], tuple[Channel, ...]]:
    """The ``[[sensor]]`` and ``[[actuator]]`` tables of a board file."""
    out = []
    for kind in ("sensor", "actuator"):
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            raise NnmpcError(f"{where}: '{kind}' must be an array of tables ([[{kind}]])")
        chans = tuple(_channel(e, kind, i, where) for i, e in enumerate(entries))
        names = [c.name for c in chans]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise NnmpcError(f"{where}: [[{kind}]] name '{sorted(dup)[0]}' appears twice")
        out.append(chans)
    return out[0], out[1]


def plant_channels(plant) -> tuple[tuple[Channel, ...], tuple[Channel, ...]]:
    """The stand-in rig's channels for a simulated plant."""
    sensors = tuple(Channel(s.name, s.unit, (0.0, RIG_ADC_COUNTS), (float(s.low), float(s.high)))
                    for s in plant.outputs)
    actuators = tuple(Channel(s.name, s.unit, (0.0, 1.0), (float(s.low), float(s.high)))
                      for s in plant.inputs)
    return sensors, actuators


def io_header(sensors, actuators, source: str) -> str:
    """``nnmpc_io_config.h``: the channel tables the HAL hands to the core."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)

    def rows(chans):
        return [{"name": c.name, "unit": c.unit, "pin": c.pin,
                 "cal": ", ".join(c_float(v) for v in (*c.raw, *c.units))} for c in chans]

    return env.get_template("io_config_h.j2").render(
        source=source, sensors=rows(sensors), actuators=rows(actuators),
        sensor_pins=", ".join(c.pin for c in sensors if c.pin),
        actuator_pins=", ".join(c.pin for c in actuators if c.pin),
        pins=all(c.pin for c in (*sensors, *actuators)))
