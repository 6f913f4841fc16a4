"""Render the protocol message code for both sides from ``firmware/protocol/schema.toml``.

``python -m nnmpc.host.link.protogen`` writes ``firmware/protocol/nnmpc_msgs.[ch]``,
``host/link/protocol_msgs.py`` and the message section of ``docs/PROTOCOL.md`` through
``templates/protocol_*.j2``; ``--check`` only compares.
The layout (offsets, sizes, counts) is computed here; the templates only print it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "firmware" / "protocol" / "schema.toml"
TEMPLATES = ROOT / "templates"
OUTPUTS = {
    "protocol_h.j2": ROOT / "firmware" / "protocol" / "nnmpc_msgs.h",
    "protocol_c.j2": ROOT / "firmware" / "protocol" / "nnmpc_msgs.c",
    "protocol_py.j2": ROOT / "host" / "link" / "protocol_msgs.py",
}
#: Sections of hand-written documents that are generated: template -> (file, first, last line).
SECTIONS = {
    "protocol_md.j2": (ROOT / "docs" / "PROTOCOL.md",
                       "<!-- messages: generated from firmware/protocol/schema.toml by "
                       "host/link/protogen.py; do not edit -->",
                       "<!-- end of generated messages -->"),
}
GENERATOR_VERSION = 1

SCALARS = {  # type -> (C type, bytes, struct code)
    "u8": ("uint8_t", 1, "B"), "u16": ("uint16_t", 2, "H"), "u32": ("uint32_t", 4, "I"),
    "f32": ("float", 4, "f"),
}
STR_MAX = 63


class SchemaError(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    name: str
    kind: str        # "scalar", "array", "str", "tail"
    base: str        # u8/u16/u32/f32 (str: u8)
    count: int       # array length; tail: the most that fit; scalar/str: 1
    offset: int      # byte offset of a fixed field (strings and the tail follow the fixed part)
    doc: str
    pos: int = 0     # index of a fixed field's first value in struct.unpack's tuple

    @property
    def ctype(self) -> str:
        return SCALARS[self.base][0]

    @property
    def size(self) -> int:
        return SCALARS[self.base][1] * (self.count if self.kind == "array" else 1)

    @property
    def code(self) -> str:
        return SCALARS[self.base][2]


@dataclass(frozen=True)
class Part:
    message: str     # "config"
    role: str        # "req", "rep", "evt"
    type_id: int     # on the wire
    fields: list[Field]
    fixed_size: int
    has_str: bool
    tail: Field | None

    @property
    def c_name(self) -> str:
        return f"nnmpc_{self.message}_{self.role}"

    @property
    def py_name(self) -> str:
        role = {"req": "Request", "rep": "Reply", "evt": ""}[self.role]
        return "".join(w.capitalize() for w in self.message.split("_")) + role

    @property
    def fixed(self) -> list[Field]:
        return [f for f in self.fields if f.kind in ("scalar", "array")]

    @property
    def strings(self) -> list[Field]:
        return [f for f in self.fields if f.kind == "str"]

    @property
    def struct_format(self) -> str:
        return "<" + "".join((str(f.count) if f.kind == "array" else "") + f.code
                             for f in self.fixed)


def _parse_field(spec: dict, channels: int, payload_max: int, where: str) -> tuple[str, str, int]:
    name, typ = spec.get("name"), spec.get("type")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise SchemaError(f"{where}: bad field name {name!r}")
    if typ in SCALARS:
        return "scalar", typ, 1
    if typ == "str":
        return "str", "u8", 1
    m = re.fullmatch(r"(u8|u16|u32|f32)\[(ch|\d*)\]", str(typ))
    if not m:
        raise SchemaError(f"{where}.{name}: unknown type {typ!r}")
    base, n = m.groups()
    if n == "":
        return "tail", base, 0
    count = channels if n == "ch" else int(n)
    if not 1 <= count <= payload_max // SCALARS[base][1]:
        raise SchemaError(f"{where}.{name}: bad array length {count}")
    return "array", base, count


def load_schema(path: Path = SCHEMA) -> dict:
    """Parse and validate the schema; return the template context."""
    data = tomllib.loads(path.read_text())
    version, payload_max, channels = data["version"], data["payload_max"], data["channels"]
    reply_flag = data["reply_flag"]
    parts: list[Part] = []
    messages = []
    ids: set[int] = set()
    for msg in data["message"]:
        name, mid = msg["name"], msg["id"]
        if not 0 < mid < reply_flag or mid in ids:
            raise SchemaError(f"message {name}: id {mid:#x} is taken or out of range")
        ids.add(mid)
        mparts = {}
        for role, key in (("req", "request"), ("rep", "reply"), ("evt", "event")):
            if key not in msg:
                continue
            fields, offset, stage, pos = [], 0, 0, 0
            for spec in msg[key]:
                kind, base, count = _parse_field(spec, channels, payload_max, f"{name}.{key}")
                order = {"scalar": 0, "array": 0, "str": 1, "tail": 2}[kind]
                if order < stage or (kind == "tail" and stage == 2):
                    raise SchemaError(f"{name}.{key}: fixed fields first, then strings, "
                                      "then at most one tail")
                stage = order
                fields.append(Field(spec["name"], kind, base, count, offset, spec.get("doc", ""),
                                    pos))
                if kind in ("scalar", "array"):
                    offset += fields[-1].size
                    pos += count
            n_str = sum(f.kind == "str" for f in fields)
            room = payload_max - offset - n_str * (STR_MAX + 1)
            if room < 0:
                raise SchemaError(f"{name}.{key}: {offset} fixed bytes exceed the payload")
            tail = None
            if fields and fields[-1].kind == "tail":
                f = fields[-1]
                tail = Field(f.name, "tail", f.base, room // SCALARS[f.base][1], offset, f.doc)
                fields[-1] = tail
            type_id = mid | reply_flag if role == "rep" else mid
            part = Part(name, role, type_id, fields, offset, n_str > 0, tail)
            parts.append(part)
            mparts[role] = part
        messages.append({"name": name, "id": mid, "doc": msg.get("doc", ""), "parts": mparts})
    errors = [{"name": e["name"], "code": e["code"], "doc": e.get("doc", "")}
              for e in data["error"]]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"version": version, "payload_max": payload_max, "channels": channels,
            "reply_flag": reply_flag, "messages": messages, "parts": parts, "errors": errors,
            "str_max": STR_MAX, "schema_hash": digest, "generator_version": GENERATOR_VERSION}


def render(schema_path: Path = SCHEMA) -> dict[Path, str]:
    ctx = load_schema(schema_path)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    out = {path: env.get_template(t).render(**ctx) for t, path in OUTPUTS.items()}
    for t, (path, first, last) in SECTIONS.items():
        if not path.is_file():  # an installed package has no docs/
            continue
        doc = path.read_text()
        if first not in doc or last not in doc:
            raise SchemaError(f"{path}: lacks the markers of its generated section ({first})")
        head, rest = doc.split(first, 1)
        tail = rest.split(last, 1)[1]
        out[path] = f"{head}{first}\n{env.get_template(t).render(**ctx)}{last}{tail}"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nnmpc.host.link.protogen", description=__doc__)
    ap.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = ap.parse_args(argv)
    stale = []
    for path, text in render().items():
        if not path.is_file() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    for p in stale:
        print(("stale: " if args.check else "wrote ") + str(p.relative_to(ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
