"""Board descriptions: one declarative TOML file per board in ``boards/``.

A board file names the MCU (core, FPU, float ABI, clock, flash/RAM budget and where flash and RAM
start), the serial link (a UART or USB CDC, with the USB VID:PID pairs the host looks for), the
control-loop timer, how firmware is built (``[build] system = "gcc"`` for the emulated board,
``"platformio"`` for real boards) and the PlatformIO platform/board/framework, and the
board's sensor and actuator channels with their calibration (``[[sensor]]``, ``[[actuator]]``:
:mod:`.channels`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NnmpcError
from .channels import parse_channels

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"

#: Serial link kinds: a UART (on real boards often bridged to USB by a debug probe), the USB
#: CDC-ACM device of the MCU itself, or the emulated CMSDK UART of the QEMU board.
SERIAL_KINDS = ("uart", "usb-cdc", "cmsdk-uart")
FLOAT_ABIS = ("soft", "softfp", "hard")
BUILD_SYSTEMS = ("gcc", "platformio")


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
    platformio: dict[str, Any] = field(default_factory=dict)
    mcu: str = ""
    flash_origin: int = 0x00000000
    ram_origin: int = 0x20000000
    sensors: tuple = ()        # Channel, from [[sensor]] (.channels)
    actuators: tuple = ()      # Channel, from [[actuator]]
    local_sensors: bool = False  # [build] local_sensors: the loop samples the board's sensors

    @property
    def emulated(self) -> bool:
        return self.run.get("kind") == "qemu"

    @property
    def serial_kind(self) -> str:
        return self.serial.get("kind", "uart")

    @property
    def baud(self) -> int:
        return int(self.serial.get("baud", 115200))

    @property
    def usb_ids(self) -> list[tuple[int, int]]:
        """USB (VID, PID) pairs of the port the board's serial link appears as on the host."""
        return [_parse_usb_id(s, self.name) for s in self.serial.get("usb", [])]

    @property
    def machine_flags(self) -> list[str]:
        """-mcpu/-mthumb/-mfpu/-mfloat-abi for arm-none-eabi-gcc."""
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu:
            flags.append(f"-mfpu={self.fpu}")
        flags.append(f"-mfloat-abi={self.float_abi}")
        return flags

    @property
    def pio_env(self) -> str:
        """Name of the board's environment in a generated platformio.ini."""
        return self.name


def _parse_usb_id(text: str, where: str) -> tuple[int, int]:
    try:
        vid, pid = (int(p, 16) for p in str(text).split(":"))
    except ValueError:
        raise NnmpcError(f"{where}: [serial] usb entry '{text}' is not VID:PID in hex "
                         f"(e.g. \"0483:374B\")") from None
    if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
        raise NnmpcError(f"{where}: [serial] usb entry '{text}' is out of range")
    return vid, pid


def _require(table: dict, key: str, where: str):
    if key not in table:
        raise NnmpcError(f"{where}: missing field '{key}'")
    return table[key]


def _validate(b: Board, where: str) -> None:
    if b.float_abi not in FLOAT_ABIS:
        raise NnmpcError(f"{where}: [mcu] float_abi '{b.float_abi}' is not one of "
                         f"{', '.join(FLOAT_ABIS)}")
    if b.fpu is None and b.float_abi == "hard":
        raise NnmpcError(f"{where}: [mcu] float_abi = \"hard\" needs an fpu")
    for key in ("clock_hz", "flash_bytes", "ram_bytes"):
        if getattr(b, key) <= 0:
            raise NnmpcError(f"{where}: [mcu] {key} must be positive")
    if b.serial_kind not in SERIAL_KINDS:
        raise NnmpcError(f"{where}: [serial] kind '{b.serial_kind}' is not one of "
                         f"{', '.join(SERIAL_KINDS)}")
    if b.serial_kind == "usb-cdc" and not b.usb_ids:
        raise NnmpcError(f"{where}: [serial] kind = \"usb-cdc\" needs usb = [\"VID:PID\", ...]")
    b.usb_ids  # noqa: B018 - parse and validate every entry
    system = b.build.get("system")
    if system not in BUILD_SYSTEMS:
        raise NnmpcError(f"{where}: [build] system '{system}' is not one of "
                         f"{', '.join(BUILD_SYSTEMS)}")
    if system == "platformio" or b.platformio:
        for key in ("platform", "board"):
            _require(b.platformio, key, f"{where} [platformio]")
    # The compiler flags must say the same as [mcu]: a board file that claims an FPU but
    # builds soft-float (or the reverse) would make the size and no-FPU checks lie.
    flags = b.build.get("cflags", [])
    for flag in b.machine_flags:
        if flag != "-mthumb" and flag not in flags:
            raise NnmpcError(f"{where}: [build] cflags lacks '{flag}' that [mcu] implies")
    if b.fpu is None and any(f.startswith("-mfpu=") for f in flags):
        raise NnmpcError(f"{where}: [build] cflags name an FPU but [mcu] has none")


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
    sensors, actuators = parse_channels(data, str(p))
    fpu = mcu.get("fpu") or None
    float_abi = mcu.get("float_abi", "hard" if fpu else "soft")
    build = dict(data.get("build", {}))
    core = _require(mcu, "core", f"{p} [mcu]")
    if "cflags" not in build:
        build["cflags"] = [f"-mcpu={core}", "-mthumb",
                           *([f"-mfpu={fpu}"] if fpu else []), f"-mfloat-abi={float_abi}"]
    board = Board(
        name=_require(data, "name", str(p)),
        description=data.get("description", ""),
        core=core,
        fpu=fpu,
        float_abi=float_abi,
        clock_hz=int(_require(mcu, "clock_hz", f"{p} [mcu]")),
        flash_bytes=int(_require(mcu, "flash_bytes", f"{p} [mcu]")),
        ram_bytes=int(_require(mcu, "ram_bytes", f"{p} [mcu]")),
        build=build,
        run=data.get("run", {}),
        serial=data.get("serial", {}),
        timer=data.get("timer", {}),
        path=p,
        platformio=data.get("platformio", {}),
        mcu=mcu.get("part", ""),
        flash_origin=int(mcu.get("flash_origin", 0x00000000)),
        ram_origin=int(mcu.get("ram_origin", 0x20000000)),
        sensors=sensors,
        actuators=actuators,
        local_sensors=bool(build.get("local_sensors", False)),
    )
    _validate(board, str(p))
    return board


def list_boards() -> list[str]:
    """The names of the board files in ``boards/``."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def format_board_table(boards: list[Board]) -> str:
    """One line per board: core, FPU, clock, budget, serial, PlatformIO target."""
    rows = []
    for b in boards:
        pio = b.platformio
        target = f"{pio.get('platform', '-')}/{pio.get('board', '-')}" if pio else "-"
        rows.append(
            f"{b.name:<20} {b.core:<13} {(b.fpu or 'no FPU'):<12} {b.clock_hz / 1e6:>4.0f} MHz"
            f"  flash {b.flash_bytes // 1024:>5} KB  RAM {b.ram_bytes // 1024:>4} KB"
            f"  {b.serial_kind:<10} {target}")
    return "\n".join(rows)
