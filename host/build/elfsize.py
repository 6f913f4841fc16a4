"""Flash and RAM use of a firmware image, read from its ELF sections."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile


@dataclass(frozen=True)
class ImageSize:
    text: int    # code and read-only data (flash)
    data: int    # initialised RAM data (stored in flash, copied to RAM)
    bss: int     # zeroed RAM
    stack: int   # reserved stack

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss + self.stack


def image_size(elf_path: str | Path) -> ImageSize:
    text = data = bss = stack = 0
    with open(elf_path, "rb") as fh:
        elf = ELFFile(fh)
        for sec in elf.iter_sections():
            if not sec["sh_flags"] & SH_FLAGS.SHF_ALLOC or sec["sh_size"] == 0:
                continue
            size = sec["sh_size"]
            if sec.name == ".stack":
                stack += size
            elif sec["sh_type"] == "SHT_NOBITS":
                bss += size
            elif sec["sh_flags"] & SH_FLAGS.SHF_WRITE:
                data += size
            else:
                text += size
    return ImageSize(text, data, bss, stack)


def symbol_sizes(elf_path: str | Path, prefix: str = "") -> dict[str, int]:
    """Sizes of the function and object symbols whose names start with ``prefix``."""
    out: dict[str, int] = {}
    with open(elf_path, "rb") as fh:
        elf = ELFFile(fh)
        symtab = elf.get_section_by_name(".symtab")
        for sym in symtab.iter_symbols():
            if sym.name.startswith(prefix) and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT"):
                out[sym.name] = sym["st_size"]
    return out
