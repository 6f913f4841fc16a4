"""Board files, the per-board core size and FPU check, the Arduino HAL compile, port discovery."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from nnmpc.compiler import compile_model
from nnmpc.host.build.boards import list_boards, load_board
from nnmpc.host.errors import NnmpcError
from nnmpc.host.build.exportlib import ARDUINO_DIR, board_defines, core_files
from nnmpc.host.build.channels import Channel, io_header
from nnmpc.host.build.firmware import CORE_DIRS, FIRMWARE_DIR
from nnmpc.host.link.ports import find_port, matching_ports, resolve_port
from nnmpc.host.build.sizecheck import build_core, linker_script
from support import REPO, have, keras_mlp

needs_gcc = pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")

#: The boards the hardware issue asks for: core, FPU, clock, PlatformIO platform/board.
EXPECTED = {
    "nucleo_f446re": ("cortex-m4", "fpv4-sp-d16", 180e6, "ststm32", "nucleo_f446re", "uart"),
    "teensy41": ("cortex-m7", "fpv5-d16", 600e6, "teensy", "teensy41", "usb-cdc"),
    "adafruit_feather_m4": ("cortex-m4", "fpv4-sp-d16", 120e6, "atmelsam",
                            "adafruit_feather_m4", "usb-cdc"),
    "nrf52840_dk": ("cortex-m4", "fpv4-sp-d16", 64e6, "nordicnrf52", "nrf52840_dk", "uart"),
    "pico": ("cortex-m0plus", None, 133e6, "raspberrypi", "pico", "usb-cdc"),
    "qemu-m4f": ("cortex-m4", "fpv4-sp-d16", 168e6, "firmware/platformio", "qemu_m4f",
                 "cmsdk-uart"),
}


# ---- board files -------------------------------------------------------------------------

def test_every_required_board_has_a_file():
    assert set(EXPECTED) <= set(list_boards())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_board_file_fields(name):
    core, fpu, clock, platform, pio_board, serial_kind = EXPECTED[name]
    b = load_board(name)
    assert (b.core, b.fpu, b.clock_hz) == (core, fpu, clock)
    assert (b.platformio["platform"], b.platformio["board"]) == (platform, pio_board)
    assert b.serial_kind == serial_kind
    assert b.float_abi == ("hard" if fpu else "soft")
    assert 64 * 1024 <= b.ram_bytes <= b.flash_bytes
    if not b.emulated:
        assert b.platformio["framework"] == "arduino"
        assert b.build["system"] == "platformio" and b.build["hal"] == "arduino"
        assert b.usb_ids, "a real board needs USB IDs for --port auto"
        assert b.timer["kind"] in ("micros", "intervaltimer", "hardwaretimer")


def test_emulated_board_keeps_its_direct_build():
    b = load_board("qemu-m4f")
    assert b.emulated and b.build["system"] == "gcc" and b.run["machine"] == "mps2-an386"
    assert b.build["cflags"] == ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                                 "-mfloat-abi=hard"]


GOOD = """
name = "x"
[mcu]
core = "cortex-m4"
fpu = "fpv4-sp-d16"
clock_hz = 1_000_000
flash_bytes = 65536
ram_bytes = 16384
[serial]
kind = "usb-cdc"
usb = ["1234:abcd"]
[build]
system = "platformio"
hal = "arduino"
[platformio]
platform = "p"
board = "b"
"""


def _board_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.toml"
    p.write_text(text)
    return p


def test_minimal_board_file_derives_flags(tmp_path):
    b = load_board(_board_file(tmp_path, GOOD))
    assert b.usb_ids == [(0x1234, 0xABCD)]
    assert b.build["cflags"] == ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                                 "-mfloat-abi=hard"]


@pytest.mark.parametrize("edit, message", [
    (('kind = "usb-cdc"', 'kind = "spi"'), "kind 'spi' is not one of"),
    (('usb = ["1234:abcd"]', 'usb = []'), "needs usb"),
    (('usb = ["1234:abcd"]', 'usb = ["12345"]'), "not VID:PID"),
    (('fpu = "fpv4-sp-d16"', 'float_abi = "hard"'), "needs an fpu"),
    (('system = "platformio"', 'system = "make"'), "system 'make'"),
    (('board = "b"', ''), "missing field 'board'"),
    (('hal = "arduino"', 'hal = "arduino"\ncflags = ["-mcpu=cortex-m4", "-mfloat-abi=soft"]'),
     "lacks '-mfpu=fpv4-sp-d16'"),
    (('ram_bytes = 16384', 'ram_bytes = 0'), "ram_bytes must be positive"),
])
def test_bad_board_files_are_rejected(tmp_path, edit, message):
    with pytest.raises(NnmpcError, match=message):
        load_board(_board_file(tmp_path, GOOD.replace(*edit)))


# ---- the core, cross-compiled for every board within its budget --------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("boards_model")
    keras_mlp(d / "m.keras", 3, [(32, "tanh"), (32, "tanh"), (3, "linear")], seed=3)
    compile_model(d / "m.keras", d / "model", name="model")
    return d / "model"


@pytest.fixture(scope="module")
def cores(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cores")
    return {n: build_core(load_board(n), model_dir, out) for n in sorted(EXPECTED)}


def _readelf_attrs(elf: Path) -> str:
    return subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True,
                          text=True, check=True).stdout


def _symbols(elf: Path) -> str:
    return subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                          check=True).stdout


@needs_gcc
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_core_fits_board_budget(cores, name):
    r = cores[name]
    b = r.board
    assert r.fits
    assert 0 < r.size.flash <= b.flash_bytes and 0 < r.size.ram <= b.ram_bytes
    # The generic link places the image at the board's own addresses.
    syms = _symbols(r.elf)
    reset = next(int(line.split()[0], 16) for line in syms.splitlines()
                 if line.endswith(" Reset_Handler"))
    assert b.flash_origin <= reset < b.flash_origin + b.flash_bytes
    print(r.line())


@needs_gcc
def test_pico_core_has_no_fpu_code(cores):
    r = cores["pico"]
    attrs = _readelf_attrs(r.elf)
    assert "Tag_CPU_arch: v6S-M" in attrs
    assert r.fp_arch is None and not r.vfp_args and r.fpu_instructions == 0
    assert "Tag_FP_arch" not in attrs and "VFP registers" not in attrs
    # Float maths goes through the soft-float library instead.
    assert "__aeabi_fmul" in _symbols(r.elf) and "__aeabi_fadd" in _symbols(r.elf)


@needs_gcc
@pytest.mark.parametrize("name", ["nucleo_f446re", "adafruit_feather_m4", "nrf52840_dk",
                                  "qemu-m4f"])
def test_m4f_cores_use_single_precision_fpu(cores, name):
    r = cores[name]
    attrs = _readelf_attrs(r.elf)
    assert "Tag_CPU_arch: v7E-M" in attrs
    assert r.fp_arch == "VFPv4-D16" and r.vfp_args and r.fpu_instructions > 50
    assert "__aeabi_fmul" not in _symbols(r.elf)


@needs_gcc
def test_teensy_core_uses_fpv5(cores):
    r = cores["teensy41"]
    assert "Tag_CPU_arch: v7E-M" in _readelf_attrs(r.elf)
    assert r.fp_arch.startswith("FPv5") and r.vfp_args and r.fpu_instructions > 50


@needs_gcc
def test_core_over_budget_is_an_error(model_dir, tmp_path):
    p = tmp_path / "tiny.toml"
    text = (REPO / "boards" / "pico.toml").read_text()
    p.write_text(text.replace("flash_bytes = 2_097_152", "flash_bytes = 2_048"))
    with pytest.raises(NnmpcError, match=r"pico: the core does not fit: FLASH \(\.text[^)]*\) needs \d+ B more than the budget of 2048 B"):
        build_core(load_board(p), model_dir, tmp_path / "out")


def test_generated_linker_script_sets_origin_and_budget():
    text = linker_script(load_board("nucleo_f446re"))
    assert "FLASH (rx)  : ORIGIN = 0x08000000, LENGTH = 524288" in text
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 131072" in text
    assert text.count("MEMORY") == 1 and "__flash_bytes" not in text


# ---- the Arduino-framework HAL -----------------------------------------------------------

@needs_gcc
@pytest.mark.skipif(not have("arm-none-eabi-g++"), reason="needs arm-none-eabi-g++")
@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n != "qemu-m4f"))
def test_arduino_hal_compiles_for_board(model_dir, tmp_path, name):
    """The Arduino glue compiles as C++ for the board's CPU, with its serial/timer settings,
    against the Arduino API declarations it uses, and calls the C core with C linkage."""
    b = load_board(name)
    defs = [f"-D{k}={v}" for k, v in board_defines(b, 5000).items()]
    inc = [f"-I{model_dir}", f"-I{REPO / 'tests' / 'arduino_api'}", f"-I{ARDUINO_DIR}",
           *(f"-I{FIRMWARE_DIR / d}" for d in CORE_DIRS)]
    for src in ("nnmpc_arduino.cpp", "main.cpp"):
        obj = tmp_path / f"{src}.o"
        subprocess.run(["arm-none-eabi-g++", *b.build["cflags"], "-O2", "-std=gnu++17",
                        "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti", *defs, *inc,
                        "-c", str(ARDUINO_DIR / src), "-o", str(obj)], check=True)
        syms = _symbols(obj)
        if src == "nnmpc_arduino.cpp":
            # C linkage for the core's entry points (unmangled names).
            for sym in ("nnmpc_app_init", "nnmpc_app_on_byte", "model_predict"):
                assert f" U {sym}\n" in syms
            assert "IntervalTimer" in syms if b.timer["kind"] == "intervaltimer" \
                else "IntervalTimer" not in syms
            assert "HardwareTimer" in syms if b.timer["kind"] == "hardwaretimer" \
                else "HardwareTimer" not in syms


def test_library_core_is_the_firmware_core():
    names = {f.name for f in core_files()}
    assert {"nnmpc_nn.c", "nnmpc_proto.c", "nnmpc_app.c", "nnmpc_app.h"} <= names


# ---- port discovery ----------------------------------------------------------------------

def port(device, vid=None, pid=None, serial_number=None, description="n/a"):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.serial_number, p.description = vid, pid, serial_number, description
    return p


PORTS = [
    port("/dev/ttyS0"),                                               # legacy UART, no USB
    port("/dev/ttyUSB0", 0x0403, 0x6001, "FT123", "FT232R USB UART"),  # some FTDI cable
    port("/dev/ttyACM0", 0x16C0, 0x0483, "12345670", "USB Serial"),    # Teensy
    port("/dev/ttyACM1", 0x0483, 0x374B, "0670FF48", "STM32 STLink"),  # Nucleo
    port("/dev/ttyACM2", 0x2E8A, 0x000A, "E6605838", "Pico"),          # Pico (mbed core)
]


@pytest.mark.parametrize("board, device", [
    ("teensy41", "/dev/ttyACM0"),
    ("nucleo_f446re", "/dev/ttyACM1"),
    ("pico", "/dev/ttyACM2"),
])
def test_find_port_by_usb_id(board, device):
    assert find_port(board, PORTS) == device
    assert find_port(load_board(board), list(reversed(PORTS))) == device


def test_find_port_none_lists_what_is_there():
    with pytest.raises(NnmpcError, match=r"no serial port found for adafruit_feather_m4 "
                                         r"\(USB 239A:0022, 239A:8022\).*/dev/ttyUSB0 \(0403:6001"):
        find_port("adafruit_feather_m4", PORTS)
    with pytest.raises(NnmpcError, match="ports present: none"):
        find_port("teensy41", [])


def test_find_port_prefers_application_over_bootloader_id():
    ports = [port("/dev/ttyACM0", 0x239A, 0x0022, "B1"), port("/dev/ttyACM5", 0x239A, 0x8022, "B1")]
    assert find_port("adafruit_feather_m4", ports) == "/dev/ttyACM5"


def test_two_boards_of_one_kind_are_ambiguous():
    ports = [port("/dev/ttyACM3", 0x16C0, 0x0483, "111"), port("/dev/ttyACM4", 0x16C0, 0x0483, "222")]
    with pytest.raises(NnmpcError, match="several boards match teensy41.*ttyACM3.*ttyACM4.*--port"):
        find_port("teensy41", ports)


def test_interfaces_of_one_probe_resolve_to_the_first():
    ports = [port("/dev/ttyACM7", 0x1366, 0x1015, "683", "J-Link VCP1"),
             port("/dev/ttyACM6", 0x1366, 0x1015, "683", "J-Link VCP0")]
    assert find_port("nrf52840_dk", ports) == "/dev/ttyACM6"


def test_any_board_when_none_given():
    assert find_port(None, [PORTS[0], PORTS[1], PORTS[3]]) == "/dev/ttyACM1"
    found = {p.device: b.name for p, b in matching_ports(None, PORTS)}
    assert found == {"/dev/ttyACM0": "teensy41", "/dev/ttyACM1": "nucleo_f446re",
                     "/dev/ttyACM2": "pico"}
    with pytest.raises(NnmpcError, match="several boards match any known board"):
        find_port(None, PORTS)


def test_resolve_port_only_resolves_auto():
    assert resolve_port("/dev/ttyUSB3", "teensy41", PORTS) == "/dev/ttyUSB3"
    assert resolve_port(None, "teensy41", PORTS) is None
    assert resolve_port("AUTO", "teensy41", PORTS) == "/dev/ttyACM0"


def test_board_without_usb_ids_needs_an_explicit_port():
    with pytest.raises(NnmpcError, match="lists no USB IDs.*--port"):
        find_port("qemu-m4f", PORTS)


# ---- the Arduino HAL running in QEMU ------------------------------------------------------

#: Three sensors on A0..A2 (10-bit ADC) and three PWM actuators on 5..7, each with its own
#: calibration, as a board file declares them.
ARDUINO_CHANNELS = (
    tuple(Channel(n, "mm", (0.0, 1023.0), (lo, hi), pin)
          for n, lo, hi, pin in (("x", -60.0, 60.0, "A0"), ("y", -40.0, 80.0, "A1"),
                                 ("z", 0.0, 100.0, "A2"))),
    tuple(Channel(n, "N", (0.0, 1.0), (0.0, hi), pin)
          for n, hi, pin in (("T1", 10.0, "5"), ("T2", 8.0, "6"), ("T3", 12.0, "7"))),
)


def _build_arduino_on_mps2(model_dir: Path, out: Path) -> Path:
    """The Arduino HAL and main.cpp, unchanged, over tests/arduino_api/arduino_mps2.cpp (the
    Arduino API on the emulated board) with the C core, the model and the mps2 startup."""
    from nnmpc.host.build.firmware import CORE_SOURCES

    b = load_board("qemu-m4f")
    flags = [*b.build["cflags"], "-O2", "-ffunction-sections", "-fdata-sections"]
    inc = [f"-I{model_dir}", f"-I{ARDUINO_DIR}", f"-I{REPO / 'tests' / 'arduino_api'}",
           *(f"-I{FIRMWARE_DIR / d}" for d in CORE_DIRS)]
    defs = ['-DNNMPC_BOARD_NAME="arduino-on-qemu"', "-DNNMPC_LOCAL_SENSORS=1"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "nnmpc_io_config.h").write_text(io_header(*ARDUINO_CHANNELS, "the test board"))
    inc.append(f"-I{out}")
    objs = []
    for c in [model_dir / "model.c", *(FIRMWARE_DIR / s for s in CORE_SOURCES),
              FIRMWARE_DIR / "boards" / "mps2" / "startup.c"]:
        objs.append(out / f"{c.stem}.o")
        subprocess.run(["arm-none-eabi-gcc", *flags, "-std=c99", "-Wall", "-Wextra", "-Werror",
                        *inc, "-c", str(c), "-o", str(objs[-1])], check=True)
    for cpp in [ARDUINO_DIR / "nnmpc_arduino.cpp", ARDUINO_DIR / "main.cpp",
                REPO / "tests" / "arduino_api" / "arduino_mps2.cpp"]:
        objs.append(out / f"{cpp.stem}.o")
        subprocess.run(["arm-none-eabi-g++", *flags, "-fno-exceptions", "-fno-rtti",
                        "-fno-threadsafe-statics", "-Wall", "-Wextra", "-Werror", *defs, *inc,
                        "-c", str(cpp), "-o", str(objs[-1])], check=True)
    elf = out / "arduino.elf"
    subprocess.run(["arm-none-eabi-gcc", *flags, *map(str, objs), "-nostartfiles",
                    "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
                    f"-Wl,--defsym=__flash_bytes={b.flash_bytes}",
                    f"-Wl,--defsym=__ram_bytes={b.ram_bytes}",
                    "-T", str(FIRMWARE_DIR / "boards" / "mps2" / "mps2_an386.ld"),
                    "-o", str(elf), "-lm"], check=True)
    return elf


@needs_gcc
@pytest.mark.qemu
@pytest.mark.skipif(not (have("arm-none-eabi-g++") and have("qemu-system-arm")),
                    reason="needs arm-none-eabi-g++ and qemu-system-arm")
def test_arduino_hal_runs_in_qemu(model_dir, tmp_path):
    """The Arduino glue answers over Serial, clocks the fixed-rate loop with micros() and feeds
    it from analogRead() (NNMPC_LOCAL_SENSORS)."""
    import keras
    import numpy as np

    from nnmpc.host.link import protocol_msgs as M
    from nnmpc.host.link.client import DeviceClient
    from nnmpc.host.link.qemu import QemuBoard

    elf = _build_arduino_on_mps2(model_dir, tmp_path)
    net = keras.models.load_model(model_dir.parent / "m.keras")
    x = np.random.default_rng(4).uniform(-1, 1, size=(20, 3)).astype(np.float32)
    with QemuBoard(elf, load_board("qemu-m4f")) as port:
        c = DeviceClient(port)
        h = c.hello()
        assert (h.board, h.n_in, h.n_out, h.clock_hz) == ("arduino-on-qemu", 3, 3, 1_000_000)
        y = np.array([c.predict(v) for v in x])
        np.testing.assert_allclose(y, net.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
        assert (h.sensors, h.actuators) == (3, 3)
        c.configure(M.ConfigRequest(controller=0, source=2, p=3, m=3, na=0, nb=1, horizon=1,
                                    moves=1, period_us=20_000, max_iter=5, telemetry_every=1,
                                    fd_eps=1e-3))
        c.start()
        t = [c.telemetry(timeout=5) for _ in range(3)]
        c.stop()
    assert all(ti is not None for ti in t)
    # y is what analogRead gave (pins A0..A2 = 14..16 -> 114..116 of 1023) through each
    # sensor's calibration, in units: the same numbers the Python calibration computes.
    want = np.array([ch.to_units(114 + i) for i, ch in enumerate(ARDUINO_CHANNELS[0])])
    for ti in t:
        np.testing.assert_array_equal(ti.y.astype(np.float32), want)
    assert [ti.k for ti in t] == sorted(ti.k for ti in t)


def test_monitor_port_auto_without_a_board_is_one_clear_line():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "nnmpc.host.cli", "monitor", "--port", "auto",
                        "--board", "teensy41", "--duration", "1"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "16C0:0483" in r.stderr and "pass --port PORT" in r.stderr
