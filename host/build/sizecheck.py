"""Cross-compile the firmware core for any board and check it against the board's budget.

Real boards are built through PlatformIO with their vendor's Arduino core, which needs the
PlatformIO registry. This check needs nothing but ``arm-none-eabi-gcc``: it compiles the same
core (kernels, protocol, application, the generated model) with the board's ``-mcpu``/``-mfpu``/
``-mfloat-abi`` and links it bare-metal with the emulated board's startup and HAL, under a linker
script generated from the board's flash/RAM origin and budget. The vendor core adds its own
start-up, USB stack and drivers on top, so on the real board the image is larger.

It also reports how floats are compiled: the FPU architecture and calling convention recorded in
the ELF attributes, and the number of FPU instructions in the code, so that a board without an
FPU (RP2040) is proven to get none.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .boards import Board
from .elfsize import ImageSize, image_size
from ..errors import NnmpcError
from .firmware import CORE_DIRS, CORE_SOURCES, FIRMWARE_DIR, cflags, link_failure
from ..toolchain import require

#: The bare-metal HAL used for every board's size check (startup, vectors, polled UART).
GENERIC_HAL = "mps2"
GENERIC_LDSCRIPT = "mps2_an386.ld"

_MEMORY_RE = re.compile(r"MEMORY\s*\{.*?\}", re.S)
#: Mnemonics of VFP/FPv5 instructions as objdump prints them.
_VFP_RE = re.compile(r"^\s*[0-9a-f]+:\s+(?:[0-9a-f]{4} ?){1,2}\s+(v[a-z0-9]+)(\.[a-z0-9.]+)?\s",
                     re.M)


@dataclass(frozen=True)
class CoreSize:
    board: Board
    elf: Path
    size: ImageSize
    fp_arch: str | None        # Tag_FP_arch from the ELF attributes, None without FPU code
    vfp_args: bool             # floats passed in FPU registers (hard-float ABI)
    fpu_instructions: int      # VFP/FPv5 instructions in the linked code

    @property
    def fits(self) -> bool:
        return self.size.flash <= self.board.flash_bytes and self.size.ram <= self.board.ram_bytes

    def line(self) -> str:
        b, s = self.board, self.size
        fp = f"{self.fp_arch}, {'hard' if self.vfp_args else 'soft'}-float ABI" if self.fp_arch \
            else "no FPU instructions, soft-float"
        return (f"{b.name:<20} flash {s.flash:>7} B of {b.flash_bytes:>8} B "
                f"({100 * s.flash / b.flash_bytes:5.2f} %)   RAM {s.ram:>6} B of "
                f"{b.ram_bytes:>7} B ({100 * s.ram / b.ram_bytes:5.2f} %)   {fp}")


def linker_script(board: Board) -> str:
    """The generic HAL's linker script with MEMORY set from the board's origins and budget."""
    text = (FIRMWARE_DIR / "boards" / GENERIC_HAL / GENERIC_LDSCRIPT).read_text()
    memory = (
        "MEMORY\n{\n"
        f"    FLASH (rx)  : ORIGIN = 0x{board.flash_origin:08X}, LENGTH = {board.flash_bytes}\n"
        f"    RAM   (rwx) : ORIGIN = 0x{board.ram_origin:08X}, LENGTH = {board.ram_bytes}\n"
        "}"
    )
    text, n = _MEMORY_RE.subn(memory, text, count=1)
    if n != 1:
        raise NnmpcError(f"{GENERIC_LDSCRIPT}: no MEMORY block to set {board.name}'s budget in")
    return f"/* Generated for {board.name}: {board.description} */\n" + text


def float_report(elf: Path) -> tuple[str | None, bool, int]:
    """(Tag_FP_arch or None, hard-float ABI?, count of FPU instructions) of an ELF image."""
    attrs = subprocess.run([require("arm-none-eabi-readelf"), "-A", str(elf)],
                           capture_output=True, text=True, check=True).stdout
    m = re.search(r"Tag_FP_arch:\s*(.+)", attrs)
    vfp_args = bool(re.search(r"Tag_ABI_VFP_args:\s*VFP registers", attrs))
    dis = subprocess.run([require("arm-none-eabi-objdump"), "-d", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    return (m.group(1).strip() if m else None), vfp_args, len(_VFP_RE.findall(dis))


def build_core(board: Board, model_dir: Path, out_dir: Path, *, opt: str = "-O2",
               extra_sources: list[Path] | None = None,
               include_dirs: list[Path] | None = None) -> CoreSize:
    """Cross-compile and link the firmware core for ``board``; raise if it exceeds the budget."""
    gcc = require("arm-none-eabi-gcc")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "model.c").is_file():
        raise NnmpcError(f"{model_dir}: no model.c (compile the model with --name model)")
    hal = FIRMWARE_DIR / "boards" / GENERIC_HAL
    out_dir.mkdir(parents=True, exist_ok=True)
    ld = out_dir / f"{board.name}.ld"
    ld.write_text(linker_script(board))
    elf = out_dir / f"{board.name}.elf"
    cmd = [
        gcc, *cflags(board, opt),
        f"-I{model_dir}", *(f"-I{FIRMWARE_DIR / d}" for d in CORE_DIRS),
        *(f"-I{d}" for d in include_dirs or []),
        f'-DNNMPC_BOARD_NAME="{board.name}"',
        str(model_dir / "model.c"), *(str(FIRMWARE_DIR / s) for s in CORE_SOURCES),
        *(str(s) for s in extra_sources or []),
        *sorted(str(p) for p in hal.glob("*.c")),
        "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
        "-Wl,--gc-sections", f"-Wl,-Map={out_dir / (board.name + '.map')}",
        "-T", str(ld), "-o", str(elf), "-lm",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        elf.unlink(missing_ok=True)
        raise link_failure(board, proc.stderr, "core")
    fp_arch, vfp_args, n_fpu = float_report(elf)
    result = CoreSize(board, elf, image_size(elf), fp_arch, vfp_args, n_fpu)
    if not result.fits:
        raise NnmpcError(f"{board.name}: the core needs {result.size.flash} B flash / "
                         f"{result.size.ram} B RAM, over the budget of {board.flash_bytes} B / "
                         f"{board.ram_bytes} B")
    if board.fpu is None and (fp_arch or n_fpu):
        raise NnmpcError(f"{board.name} has no FPU but its core image uses one "
                         f"({fp_arch or 'FPU'}, {n_fpu} instructions)")
    return result
