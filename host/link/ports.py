"""Find a board's serial port by the USB VID:PID pairs its board file lists.

``find_port(board)`` looks through ``serial.tools.list_ports.comports()`` (or a list given by the
caller) for the board's USB IDs: the MCU's own USB CDC device (Teensy, Feather M4, Pico) or the
debug probe's virtual COM port that carries the MCU's UART (ST-LINK on a Nucleo, J-Link OB on the
nRF52840 DK). ``nnmpc monitor --port auto`` and ``nnmpc flash --port auto`` use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..build.boards import Board, list_boards, load_board
from ..errors import NnmpcError

AUTO = "auto"


def _fmt_id(vid: int | None, pid: int | None) -> str:
    return "no USB ID" if vid is None else f"{vid:04X}:{pid or 0:04X}"


def _describe(p: Any) -> str:
    extra = " ".join(x for x in (p.description if p.description != "n/a" else "",
                                  f"SN {p.serial_number}" if p.serial_number else "") if x)
    return f"{p.device} ({_fmt_id(p.vid, p.pid)}{', ' + extra if extra else ''})"


def comports() -> list[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def _candidate_boards(board: Board | str | None) -> list[Board]:
    if board is None:
        return [b for b in (load_board(n) for n in list_boards()) if b.usb_ids]
    b = load_board(board) if isinstance(board, str) else board
    if not b.usb_ids:
        raise NnmpcError(f"{b.name} lists no USB IDs ([serial] usb in its board file), so its "
                         f"port cannot be found automatically; pass --port PORT")
    return [b]


def matching_ports(board: Board | str | None = None,
                   ports: Iterable[Any] | None = None) -> list[tuple[Any, Board]]:
    """Every port whose USB VID:PID is listed by ``board`` (or by any board when None), in the
    order of the board's list (application before bootloader IDs), then by device name."""
    boards = _candidate_boards(board)
    ports = comports() if ports is None else list(ports)
    found = []
    for p in ports:
        if p.vid is None:
            continue
        for b in boards:
            ids = b.usb_ids
            if (p.vid, p.pid) in ids:
                found.append((ids.index((p.vid, p.pid)), p.device, p, b))
                break
    found.sort(key=lambda t: (t[0], t[1]))
    return [(p, b) for _, _, p, b in found]


def find_port(board: Board | str | None = None, ports: Iterable[Any] | None = None) -> str:
    """The device path of ``board``'s serial port (any known board when None).

    Several interfaces of one physical device (the same USB serial number, e.g. a probe with
    two virtual COM ports) resolve to the first; two different devices are ambiguous and raise
    an error listing them, as does finding none.
    """
    ports = comports() if ports is None else list(ports)
    boards = _candidate_boards(board)
    hits = matching_ports(board, ports)
    what = boards[0].name if board is not None else "any known board"
    if not hits:
        wanted = ", ".join(sorted({_fmt_id(*i) for b in boards for i in b.usb_ids}))
        seen = ", ".join(_describe(p) for p in ports) or "none"
        raise NnmpcError(
            f"no serial port found for {what} (USB {wanted}); ports present: {seen}. "
            "Plug the board in (a data cable, not a charge-only one), check that your user may "
            "open it (Linux: the dialout group or the vendor's udev rules), or pass --port PORT")
    devices = {(p.vid, p.serial_number or p.device) for p, _ in hits}
    if len(devices) > 1:
        listed = ", ".join(f"{_describe(p)} [{b.name}]" for p, b in hits)
        raise NnmpcError(f"several boards match {what}: {listed}; pass --port PORT to choose")
    return hits[0][0].device


def resolve_port(port: str | None, board: Board | str | None = None,
                 ports: Iterable[Any] | None = None) -> str | None:
    """``port`` unchanged, or the board's port when it is ``auto``."""
    if port is not None and port.strip().lower() == AUTO:
        return find_port(board, ports)
    return port
