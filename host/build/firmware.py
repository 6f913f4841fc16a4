"""Build firmware images for a board with the Arm cross compiler.

The image is the fixed C runtime from ``firmware/`` (kernels, protocol, application core),
the board's HAL from ``firmware/boards/<hal>/``, and one generated model named ``model``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .boards import Board
from .channels import io_header
from .elfsize import ImageSize, image_size
from ..errors import NnmpcError
from ..toolchain import require

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
CORE_DIRS = ("runtime", "protocol", "solver", "io", "control", "app")
CORE_SOURCES = ("runtime/nnmpc_nn.c", "protocol/nnmpc_proto.c", "protocol/nnmpc_msgs.c",
                "solver/nnmpc_solver.c", "io/nnmpc_io.c", "control/nnmpc_control.c",
                "app/nnmpc_app.c")
#: Warnings the firmware core must compile clean with.
WARNINGS = ("-Wall", "-Wextra", "-Werror", "-Wdouble-promotion")


@dataclass(frozen=True)
class FirmwareImage:
    elf: Path
    board: Board
    size: ImageSize

    def check_budget(self) -> None:
        b = self.board
        if self.size.flash > b.flash_bytes or self.size.ram > b.ram_bytes:
            raise NnmpcError(
                f"{self.elf.name}: {self.size.flash} B flash / {self.size.ram} B RAM exceeds "
                f"{b.name}'s budget of {b.flash_bytes} B / {b.ram_bytes} B")


def link_failure(board: Board, stderr: str, what: str) -> NnmpcError:
    """One line for an image that does not fit its board (the section, the region, the bytes
    over and the budget), else the compiler's own message."""
    over = re.findall(r"region `(\w+)' overflowed by (\d+) bytes", stderr)
    if over:
        sections: dict[str, list[str]] = {}
        for sec, region in re.findall(r"section `([^']+)' will not fit in region `(\w+)'", stderr):
            sections.setdefault(region, []).append(sec)
        budget = {"FLASH": board.flash_bytes, "RAM": board.ram_bytes}
        parts = []
        for region, n in dict(over).items():
            secs = ", ".join(sections.get(region, [])) or "its sections"
            parts.append(f"{region} ({secs}) needs {int(n)} B more than the budget of "
                         f"{budget.get(region, '?')} B")
        return NnmpcError(f"{board.name}: the {what} does not fit: " + "; ".join(parts)
                          + " (a smaller net, or a board with more memory)")
    return NnmpcError(f"{what} build for {board.name} failed:\n{stderr.strip()}")


def cflags(board: Board, opt: str = "-O2") -> list[str]:
    return [*board.build.get("cflags", []), opt, "-std=c99", *WARNINGS,
            "-ffunction-sections", "-fdata-sections", "-g"]


def build_firmware(board: Board, model_dir: Path, out_dir: Path, *, opt: str = "-O2",
                   defines: dict[str, str] | None = None, io=None,
                   io_source: str = "") -> FirmwareImage:
    """Compile and link ``model_dir/model.c`` with the runtime for ``board``; return the image.

    ``io`` = (sensors, actuators) channels (:mod:`.channels`) builds the board's own sensing
    (``NNMPC_LOCAL_SENSORS``, source 2) with their calibration in a generated
    ``nnmpc_io_config.h``."""
    if board.build.get("system") != "gcc":
        raise NnmpcError(f"board '{board.name}' is built through PlatformIO, not directly")
    gcc = require("arm-none-eabi-gcc")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "model.c").is_file():
        raise NnmpcError(f"{model_dir}: no model.c (compile the model with --name model)")
    hal = FIRMWARE_DIR / "boards" / board.build["hal"]
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / "firmware.elf"
    defs = {"NNMPC_BOARD_NAME": f'"{board.name}"', **(defines or {})}
    extra_inc = []
    if io is not None:
        inc = out_dir / "include"
        inc.mkdir(parents=True, exist_ok=True)
        (inc / "nnmpc_io_config.h").write_text(io_header(*io, io_source or board.name))
        defs["NNMPC_LOCAL_SENSORS"] = "1"
        extra_inc.append(f"-I{inc}")
    cmd = [
        gcc, *cflags(board, opt), *extra_inc,
        f"-I{model_dir}", *(f"-I{FIRMWARE_DIR / d}" for d in CORE_DIRS),
        *(f"-D{k}={v}" for k, v in defs.items()),
        str(model_dir / "model.c"), *(str(FIRMWARE_DIR / s) for s in CORE_SOURCES),
        *sorted(str(p) for p in hal.glob("*.c")),
        "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
        "-Wl,--gc-sections", f"-Wl,-Map={out_dir / 'firmware.map'}",
        f"-Wl,--defsym=__flash_bytes={board.flash_bytes}",
        f"-Wl,--defsym=__ram_bytes={board.ram_bytes}",
        "-T", str(hal / board.build["ldscript"]),
        "-o", str(elf),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        elf.unlink(missing_ok=True)
        raise link_failure(board, proc.stderr, "firmware")
    img = FirmwareImage(elf, board, image_size(elf))
    img.check_budget()
    return img


def placeholder_model(n_in: int, n_out: int, out_dir: Path) -> Path:
    """A compiled net of the right sizes that predicts 0 (y = 0 u + 0): the firmware links a
    model, and an excitation experiment (`nnmpc collect`) needs none yet."""
    import numpy as np
    from nnmpc.compiler import compile_model
    from nnmpc.compiler.ir import Graph, Node, Tensor

    tensors = {"u": Tensor("u", (n_in,)), "y": Tensor("y", (n_out,)),
               "W": Tensor("W", (n_out, n_in), data=np.zeros((n_out, n_in), np.float32)),
               "b": Tensor("b", (n_out,), data=np.zeros(n_out, np.float32))}
    g = Graph(name="placeholder", inputs=["u"], outputs=["y"], tensors=tensors,
              nodes=[Node("dense", ["u", "W", "b"], ["y"], {"activation": "linear"}, name="zero")],
              source_file="placeholder")
    g.validate()
    compile_model(g, out_dir, name="model")
    return Path(out_dir)
