"""Find the external programs nnmpc drives, with one clear message when one is missing."""

from __future__ import annotations

import shutil

from .errors import ToolMissing

_APT = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"

#: What to tell a user for each tool: the package that brings it.
HINTS = {
    "arm-none-eabi-gcc": f"apt-get install -y --no-install-recommends {_APT}  (or run `make setup`)",
    "arm-none-eabi-size": f"apt-get install -y --no-install-recommends {_APT}  (or run `make setup`)",
    "qemu-system-arm": f"apt-get install -y --no-install-recommends {_APT}  (or run `make setup`)",
    "cc": "apt-get install -y gcc",
    "pio": "pip install platformio  (or run `make setup`)",
}


def require(tool: str) -> str:
    """Return the absolute path of ``tool`` or raise :class:`ToolMissing` saying how to get it."""
    path = shutil.which(tool)
    if path is None:
        hint = HINTS.get(tool, "install it and make sure it is on PATH")
        raise ToolMissing(f"'{tool}' was not found on PATH. Install it with: {hint}")
    return path
