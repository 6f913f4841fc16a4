"""Board descriptions: one declarative TOML file per board in ``boards/``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NnmpcError

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    fpu: str | None
    float_abi: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    build: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    serial: dict[str, Any] = field(default_factory=dict)
    timer: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def emulated(self) -> bool:
        return self.run.get("kind") == "qemu"


def _require(table: dict, key: str, where: str):
    if key not in table:
        raise NnmpcError(f"{where}: missing field '{key}'")
    return table[key]


def load_board(name_or_path: str | Path) -> Board:
    """Load a board by name (``qemu-m4f``) or by path to its TOML file."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = BOARDS_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        raise NnmpcError(
            f"unknown board '{name_or_path}' (known: {', '.join(list_boards()) or 'none'})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise NnmpcError(f"{p}: not valid TOML: {e}") from None
    mcu = _require(data, "mcu", str(p))
    return Board(
        name=_require(data, "name", str(p)),
        description=data.get("description", ""),
        core=_require(mcu, "core", f"{p} [mcu]"),
        fpu=mcu.get("fpu"),
        float_abi=mcu.get("float_abi", "soft"),
        clock_hz=int(_require(mcu, "clock_hz", f"{p} [mcu]")),
        flash_bytes=int(_require(mcu, "flash_bytes", f"{p} [mcu]")),
        ram_bytes=int(_require(mcu, "ram_bytes", f"{p} [mcu]")),
        build=data.get("build", {}),
        run=data.get("run", {}),
        serial=data.get("serial", {}),
        timer=data.get("timer", {}),
        path=p,
    )


def list_boards() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))
