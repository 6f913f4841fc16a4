"""MCAP logs (written with foxglove-sdk, read with mcap): JSON-encoded channels with a JSON
schema, one per signal group (:data:`~.logtable.CHANNELS`), one message per period on each,
log time = ``t``; a metadata record ``nnmpc`` holds the metadata JSON, the column order and
the units."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import NnmpcError, ToolMissing
from .logtable import CHANNELS, INTEGER_COLUMNS, MCAP_METADATA, LogTable, channel_of


# -- MCAP ---------------------------------------------------------------------------------------
def _foxglove():
    try:
        import foxglove  # noqa: PLC0415
    except ImportError:
        raise ToolMissing("MCAP logs need foxglove-sdk and mcap: pip install -r requirements.txt"
                          " (or run `make setup`)") from None
    return foxglove


def _schema(title: str, fields: list[str], units: dict[str, str]) -> dict:
    props = {}
    for f, col in fields:
        p = {"type": "integer" if col in INTEGER_COLUMNS else "number"}
        if units.get(col):
            p["description"] = units[col]
        props[f] = p
    return {"title": title, "type": "object", "properties": props,
            "required": [f for f, _ in fields]}


class McapLogWriter:
    """Write a log to MCAP row by row (streaming): one JSON channel per signal group.

    ``columns`` excludes ``t``; ``write(t, values)`` logs one period at log time ``t``
    seconds (must be >= 0 and increase). Non-finite values are written as ``null``.
    """

    def __init__(self, path: str | Path, columns: list[str], meta: dict | None = None,
                 units: dict[str, str] | None = None) -> None:
        fg = _foxglove()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        self.columns = [c for c in columns if c != "t"]
        units = dict(units or (meta or {}).get("units") or {})
        self._ctx = fg.Context()
        self._writer = fg.open_mcap(self._tmp, allow_overwrite=True, context=self._ctx)
        groups: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        self._route: list[tuple[str, str]] = []
        for c in self.columns:
            topic, title, fld = channel_of(c)
            groups.setdefault(topic, (title, []))[1].append((fld, c))
            self._route.append((topic, fld))
        self._channels = {
            topic: fg.Channel(topic, schema=_schema(title, fields, units), context=self._ctx,
                              metadata={"columns": json.dumps([c for _, c in fields])})
            for topic, (title, fields) in groups.items()}
        self._writer.write_metadata(MCAP_METADATA, {
            "format": "nnmpc log 1", "columns": json.dumps(["t", *self.columns]),
            "meta": json.dumps(meta or {}, sort_keys=True), "units": json.dumps(units)})
        self._last = -1
        self.rows = 0

    def write(self, t: float, values) -> None:
        ns = int(round(float(t) * 1e9))
        if not math.isfinite(t) or ns < 0:
            raise NnmpcError(f"{self.path}: t = {t} s cannot be an MCAP log time (needs t >= 0)")
        if ns <= self._last:
            raise NnmpcError(f"{self.path}: t = {t} s does not come after the previous row")
        self._last = ns
        msgs: dict[str, dict] = {topic: {} for topic in self._channels}
        for (topic, fld), c, v in zip(self._route, self.columns, values):
            v = float(v)
            msgs[topic][fld] = (None if not math.isfinite(v) else
                                int(round(v)) if c in INTEGER_COLUMNS else v)
        for topic, msg in msgs.items():
            self._channels[topic].log(msg, log_time=ns)
        self.rows += 1

    def close(self) -> Path:
        for ch in self._channels.values():
            ch.close()
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "McapLogWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_mcap_table(table: LogTable, path: str | Path) -> Path:
    """Write a table of numbers as MCAP (:class:`McapLogWriter`); all or nothing."""
    t = table.t
    cols = [c for c in table.names if c != "t"]
    data = [np.asarray(table.cells[c], dtype=np.float64) for c in cols]
    units = {c: table.unit(c) for c in cols if table.unit(c)}
    with McapLogWriter(path, cols, table.meta, units) as w:
        for i in range(len(t)):
            w.write(t[i], [d[i] for d in data])
    return Path(path)


def read_mcap_table(path: str | Path) -> LogTable:
    """Read an MCAP log written by :class:`McapLogWriter` (or any file with JSON channels of
    flat numeric objects: columns are then named ``<prefix><field>`` by topic)."""
    path = Path(path)
    try:
        from mcap.reader import make_reader  # noqa: PLC0415
    except ImportError:
        raise ToolMissing("MCAP logs need mcap: pip install -r requirements.txt") from None
    prefix = {topic: (p or "") for p, topic, _ in CHANNELS}
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise NnmpcError(f"{path}: no such file") from None
    rows: dict[int, dict[str, float]] = {}
    order: list[str] = []
    meta, units = {}, {}
    with fh:
        try:
            reader = make_reader(fh)
            for rec in reader.iter_metadata():
                if rec.name == MCAP_METADATA:
                    order = json.loads(rec.metadata.get("columns", "[]"))
                    meta = json.loads(rec.metadata.get("meta", "{}"))
                    units = json.loads(rec.metadata.get("units", "{}"))
            for _schema_rec, channel, message in reader.iter_messages(log_time_order=True):
                if channel.message_encoding != "json":
                    continue
                try:
                    msg = json.loads(message.data)
                except ValueError:
                    raise NnmpcError(f"{path}: a message on {channel.topic} is not JSON"
                                     ) from None
                if not isinstance(msg, dict):
                    continue
                pre = prefix.get(channel.topic, channel.topic.strip("/").replace("/", "_") + "_")
                row = rows.setdefault(message.log_time, {})
                for k, v in msg.items():
                    col = pre + k
                    if col not in order:
                        order.append(col)
                    row[col] = float(v) if isinstance(v, (int, float)) else math.nan
        except NnmpcError:
            raise
        except Exception as e:  # noqa: BLE001 - the mcap reader's own errors
            raise NnmpcError(f"{path}: not a readable MCAP file ({type(e).__name__}: {e})"
                             ) from None
    times = sorted(rows)
    names = ["t"] + [c for c in order if c != "t"]
    cells = {"t": np.array(times, dtype=np.float64) / 1e9}
    for c in names[1:]:
        cells[c] = np.array([rows[ts].get(c, math.nan) for ts in times], dtype=np.float64)
    if units:
        meta = dict(meta)
        meta["units"] = {**units, **(meta.get("units") or {})}
    return LogTable(path, names, cells, np.arange(1, len(times) + 1), meta, row_word="message")
