"""PlatformIO for real: the emulated board's generated project built with `pio run` offline
through the local platform, run in QEMU and compared with Keras; `pio run -t upload` for it;
real boards failing fast offline; the exported Arduino/PlatformIO library."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from nnmpc.compiler import compile_model
from nnmpc.host.build import pio
from nnmpc.host.build.boards import load_board
from nnmpc.host.link.client import DeviceClient
from nnmpc.host.errors import NnmpcError
from nnmpc.host.link.qemu import QemuBoard, _free_port
from support import REPO, have, keras_mlp, rel_err

pytestmark = [
    pytest.mark.skipif(not (have("arm-none-eabi-gcc") and have("qemu-system-arm")),
                       reason="needs arm-none-eabi-gcc and qemu-system-arm"),
    pytest.mark.skipif(importlib.util.find_spec("platformio") is None,
                       reason="needs PlatformIO (pip install platformio)"),
]

N_IN, N_OUT = 3, 2


def nnmpc_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "nnmpc.host.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("pio_model")
    k = keras_mlp(d / "m.keras", N_IN, [(24, "tanh"), (16, "sigmoid"), (N_OUT, "linear")], seed=11)
    compile_model(d / "m.keras", d / "model", name="model")
    return k, d / "model"


@pytest.fixture(scope="module")
def built(model, tmp_path_factory):
    """`nnmpc build --board qemu-m4f` with HOME moved, so any state PlatformIO kept outside the
    project would show up there."""
    root = tmp_path_factory.mktemp("pio_build")
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PLATFORMIO_CORE_DIR"}
    env["HOME"] = str(home)
    t0 = time.monotonic()
    r = nnmpc_cli("build", "--board", "qemu-m4f", "--model", model[1], "-o", root / "proj", env=env)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "proj", home, r.stdout, elapsed


def test_pio_build_of_emulated_board_is_real_and_local(built):
    proj, home, out, elapsed = built
    elf = proj / ".pio" / "build" / "qemu-m4f" / "firmware.elf"
    assert elf.is_file() and (elf.with_suffix(".bin")).is_file()
    ini = (proj / "platformio.ini").read_text()
    assert "core_dir = .pio-core" in ini
    assert f"platform = symlink://{REPO / 'firmware' / 'platformio'}" in ini
    assert "board = qemu_m4f" in ini
    manifest = json.loads((proj / "lib" / "nnmpc" / "library.json").read_text())
    assert manifest["name"] == "nnmpc" and manifest["frameworks"] == "*"
    for f in ("model.c", "model.h", "nnmpc_nn.c", "nnmpc_proto.c", "nnmpc_app.c"):
        assert (proj / "lib" / "nnmpc" / "src" / f).is_file()
    assert {p.name for p in (proj / "src").iterdir()} >= {"hal_mps2.c", "startup.c",
                                                          "mps2_an386.ld"}
    # PlatformIO's state stayed in the project: tool-scons from the SCons Python package,
    # the local platform as a link; nothing in the (moved) home folder.
    core = proj / ".pio-core"
    assert json.loads((core / "packages" / "tool-scons" / ".piopm").read_text())["name"] \
        == "tool-scons"
    assert list((core / "platforms").glob("*.pio-link"))
    assert not any(home.iterdir()), sorted(home.rglob("*"))
    assert "firmware: " in out and "flash " in out
    print(f"nnmpc build --board qemu-m4f: {elapsed:.1f} s")


def test_pio_built_firmware_runs_in_qemu_and_matches_keras(built, model):
    proj, _, _, _ = built
    keras_model, _ = model
    board = load_board("qemu-m4f")
    x = np.random.default_rng(2).uniform(-2, 2, size=(100, N_IN)).astype(np.float32)
    y_k = keras_model.predict(x, verbose=0)
    q = QemuBoard(proj / ".pio" / "build" / "qemu-m4f" / "firmware.elf", board)
    with q as port:
        c = DeviceClient(port)
        h = c.hello()
        assert (h.n_in, h.n_out, h.board) == (N_IN, N_OUT, "qemu-m4f")
        y_dev = np.array([c.predict(xi) for xi in x])
        y_j, J = c.predict_jacobian(x[0])
        c.exit()
        assert q.wait_exit() == 0
    assert rel_err(y_dev, y_k) <= 1e-5
    assert np.array_equal(y_j, y_dev[0]) and J.shape == (N_OUT, N_IN)


def test_pio_upload_boots_emulated_board(built):
    """`pio run -t upload` for the emulated board boots QEMU with UART0 on a TCP port."""
    proj, _, _, _ = built
    project = pio.open_project(load_board("qemu-m4f"), proj)
    url = f"socket://127.0.0.1:{_free_port()}"
    result: dict = {}

    def upload():
        try:
            result["out"] = pio.upload(project, url, capture=True)
        except NnmpcError as e:
            result["err"] = str(e)

    t = threading.Thread(target=upload)
    t.start()
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline and t.is_alive():
        try:
            port = serial.serial_for_url(url, timeout=5)
        except serial.SerialException:
            time.sleep(0.05)
    assert port is not None, result
    try:
        c = DeviceClient(port)
        assert c.hello().board == "qemu-m4f"
        c.exit()
    finally:
        port.close()
    t.join(30)
    assert not t.is_alive() and "err" not in result, result
    assert "Booting" in result["out"] and "[SUCCESS]" in result["out"]


def test_pio_build_uses_the_board_files_budget(model, tmp_path):
    """The budget in boards/*.toml is what PlatformIO links and checks against."""
    import dataclasses

    small = dataclasses.replace(load_board("qemu-m4f"), ram_bytes=16 * 1024)
    project = pio.generate_project(small, model[1], tmp_path / "proj", core_dir=tmp_path / "core")
    ini = (project.dir / "platformio.ini").read_text()
    assert "board_upload.maximum_ram_size = 16384" in ini
    assert "board_upload.maximum_size = 1048576" in ini
    with pytest.raises(NnmpcError, match="region `RAM' overflowed"):
        pio.run_pio(project)


# ---- real boards offline -----------------------------------------------------------------

@pytest.fixture(scope="module")
def offline():
    if pio.registry_reachable():
        pytest.skip("the PlatformIO registry is reachable: the offline path cannot be shown here")


def test_registry_probe_is_bounded_in_time():
    """A registry that accepts the connection and then never answers (a loopback socket that
    is never served) counts as unreachable after the timeout, not after PlatformIO's minutes."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/"
        t0 = time.monotonic()
        assert pio.registry_reachable(url, timeout=1.0) is False
        assert time.monotonic() - t0 < 2.0


def test_registry_probe_sees_an_answering_server():
    """Any HTTP answer, 404 included, means reachable."""
    import http.server

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the stdlib's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        assert pio.registry_reachable(f"http://127.0.0.1:{srv.server_port}/v3/packages", 2.0)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("board", ["nucleo_f446re", "teensy41"])
def test_real_board_build_fails_fast_offline(offline, model, tmp_path, board):
    t0 = time.monotonic()
    r = nnmpc_cli("build", "--board", board, "--model", model[1], "-o", tmp_path / "proj",
                  "--pio-core", tmp_path / "core", timeout=60)
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1
    assert err.startswith(f"nnmpc: error: cannot build for {board}: PlatformIO platform")
    assert "PlatformIO registry is unreachable" in err
    assert "nnmpc export-lib" in err and "internet access" in err
    # The project was generated for later; the core check is one flag away and offline.
    assert "PlatformIO project:" in r.stdout
    assert (tmp_path / "proj" / "platformio.ini").is_file()
    r = nnmpc_cli("build", "--board", board, "--model", model[1], "-o", tmp_path / "proj",
                  "--core-only")
    assert r.returncode == 0 and f"{board} " in r.stdout and "flash" in r.stdout
    assert not (tmp_path / "core" / "platforms").exists()
    print(f"{board}: offline failure after {elapsed:.2f} s")


def test_real_board_flash_fails_fast_offline(offline, model, tmp_path):
    board = load_board("adafruit_feather_m4")
    project = pio.generate_project(board, model[1], tmp_path / "proj", core_dir=tmp_path / "core")
    t0 = time.monotonic()
    with pytest.raises(NnmpcError, match="cannot flash for adafruit_feather_m4: .*unreachable"):
        pio.upload(project, "/dev/ttyACM0", capture=True)
    assert time.monotonic() - t0 < 10


def test_generated_arduino_project(model, tmp_path):
    board = load_board("teensy41")
    project = pio.generate_project(board, model[1], tmp_path / "proj", core_dir=tmp_path / "core",
                                   period_us=2000)
    ini = (project.dir / "platformio.ini").read_text()
    for line in ("platform = teensy", "board = teensy41", "framework = arduino",
                 "upload_protocol = teensy-cli", f"core_dir = {tmp_path / 'core'}",
                 "-DNNMPC_BOARD_NAME='\"teensy41\"'", "-DNNMPC_TIMER_INTERVALTIMER=1",
                 "-DNNMPC_PERIOD_US=2000u"):
        assert line in ini, line
    assert "-Werror" not in ini  # vendor cores are not ours to hold to -Werror
    assert (project.dir / "src" / "main.cpp").is_file()
    lib = project.dir / "lib" / "nnmpc" / "src"
    assert (lib / "nnmpc_arduino.cpp").is_file() and (lib / "model.c").is_file()
    assert json.loads((lib.parent / "library.json").read_text())["frameworks"] == "arduino"


def test_a_foreign_project_is_not_overwritten(model, tmp_path):
    mine = tmp_path / "mine"
    (mine / "src").mkdir(parents=True)
    (mine / "src" / "main.cpp").write_text("// my sketch\n")
    (mine / "platformio.ini").write_text("[env:x]\nboard = pico\n")
    with pytest.raises(NnmpcError, match="nnmpc did not generate"):
        pio.generate_project(load_board("pico"), model[1], mine, core_dir=tmp_path / "core")
    assert (mine / "src" / "main.cpp").read_text() == "// my sketch\n"
    # A project nnmpc generated is regenerated in place.
    p = pio.generate_project(load_board("pico"), model[1], tmp_path / "gen", core_dir=tmp_path / "c")
    (p.dir / "src" / "stale.c").write_text("")
    pio.generate_project(load_board("pico"), model[1], p.dir, core_dir=tmp_path / "c")
    assert not (p.dir / "src" / "stale.c").exists()


@pytest.mark.parametrize("name", ["nucleo_f446re", "teensy41", "adafruit_feather_m4",
                                  "nrf52840_dk", "pico"])
def test_platformio_reads_generated_ini_as_meant(model, tmp_path, name):
    """PlatformIO's own parser (offline: `pio project config`) reads the generated project's
    settings back as the board file has them."""
    board = load_board(name)
    project = pio.generate_project(board, model[1], tmp_path / "proj", core_dir=tmp_path / "core")
    r = subprocess.run([*pio.pio_command(), "project", "config", "-d", str(project.dir),
                        "--json-output"], env=pio.pio_env(project), capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    sections = {sec: dict(opts) for sec, opts in json.loads(r.stdout)}
    env = sections[f"env:{name}"]
    assert sections["platformio"]["core_dir"] == str(tmp_path / "core")
    assert (env["platform"], env["board"], env["framework"]) == (
        board.platformio["platform"], board.platformio["board"], ["arduino"])
    assert int(env["board_upload.maximum_size"]) == board.flash_bytes
    assert int(env["board_upload.maximum_ram_size"]) == board.ram_bytes
    assert env["monitor_speed"] == board.baud
    assert f"-DNNMPC_BOARD_NAME='\"{name}\"'" in env["build_flags"]
    assert f"-DNNMPC_SERIAL={board.serial['instance']}" in env["build_flags"]


# ---- export-lib ---------------------------------------------------------------------------

def test_export_lib(model, tmp_path):
    out = tmp_path / "libs" / "nnmpc"
    r = nnmpc_cli("export-lib", "--model", model[1], "-o", out, "--board", "pico")
    assert r.returncode == 0, r.stderr
    props = (out / "library.properties").read_text()
    assert "name=nnmpc\n" in props and "includes=nnmpc.h\n" in props
    assert "architectures=*\n" in props
    manifest = json.loads((out / "library.json").read_text())
    assert manifest["name"] == "nnmpc" and manifest["frameworks"] == "arduino"
    sketch = out / "examples" / "nnmpc_device" / "nnmpc_device.ino"
    assert "nnmpc_begin();" in sketch.read_text() and "nnmpc_poll();" in sketch.read_text()
    config = (out / "src" / "nnmpc_config.h").read_text()
    assert '#define NNMPC_BOARD_NAME "pico"' in config and "NNMPC_SERIAL Serial" in config
    # The library's C is self-contained: every source compiles for the board from src/ alone.
    board = load_board("pico")
    for c in sorted((out / "src").glob("*.c")):
        subprocess.run(["arm-none-eabi-gcc", *board.build["cflags"], "-std=c99", "-O2", "-Wall",
                        "-Wextra", "-Werror", "-Wdouble-promotion", "-c", str(c),
                        "-o", str(tmp_path / (c.stem + ".o"))], check=True, cwd=out / "src")
    # The example sketch and the HAL compile as C++ with the library's config.
    if have("arm-none-eabi-g++"):
        for src in (sketch, out / "src" / "nnmpc_arduino.cpp"):
            subprocess.run(["arm-none-eabi-g++", *board.build["cflags"], "-x", "c++", "-O2",
                            "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti",
                            f"-I{out / 'src'}", f"-I{REPO / 'tests' / 'arduino_api'}",
                            "-c", str(src), "-o", str(tmp_path / "sketch.o")], check=True)
    # Exporting again replaces the library; a folder that is not one is left alone.
    assert nnmpc_cli("export-lib", "--model", model[1], "-o", out).returncode == 0
    assert not (out / "src" / "nnmpc_config.h").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    r = nnmpc_cli("export-lib", "--model", model[1], "-o", other)
    assert r.returncode == 2 and "is not an nnmpc library" in r.stderr
    assert (other / "keep.txt").read_text() == "x"


def test_missing_model_is_one_clear_line(tmp_path):
    r = nnmpc_cli("build", "--board", "qemu-m4f", "--model", tmp_path / "nope.keras",
                  "-o", tmp_path / "p")
    assert r.returncode == 2 and "no such model file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs arm-none-eabi-g++")
def test_multi_pin_board_with_on_board_sensing_builds(model, tmp_path):
    """nucleo_f446re's three sensor pins and three PWM pins: the generated project compiles
    (its sources with the build_flags PlatformIO reads back, against the Arduino API
    declarations), the pins and calibration live in nnmpc_io_config.h, and no flag carries a
    list that PlatformIO would split at a space."""
    board = load_board("nucleo_f446re")
    project = pio.generate_project(board, model[1], tmp_path / "proj", core_dir=tmp_path / "core",
                                   local_sensors=True)
    r = subprocess.run([*pio.pio_command(), "project", "config", "-d", str(project.dir),
                        "--json-output"], env=pio.pio_env(project), capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    flags = dict(json.loads(r.stdout))["env:nucleo_f446re"]
    flags = dict(flags)["build_flags"]
    assert "-DNNMPC_LOCAL_SENSORS=1" in flags and "-DNNMPC_ADC_BITS=12" in flags
    assert all(not f.endswith(",") for f in flags), flags
    lib = project.dir / "lib" / "nnmpc" / "src"
    header = (lib / "nnmpc_io_config.h").read_text()
    assert "#define NNMPC_IO_SENSOR_PINS A0, A1, A2" in header
    assert "#define NNMPC_IO_ACTUATOR_PINS D3, D5, D6" in header
    defs = [f.replace("'", "") for f in flags if f.startswith("-D")]
    common = [*board.build["cflags"], "-O2", "-Wall", "-Wextra", "-Werror", *defs,
              f"-I{lib}", f"-I{REPO / 'tests' / 'arduino_api'}"]
    for src in sorted(lib.glob("*.c")):
        subprocess.run(["arm-none-eabi-gcc", *common, "-std=c99", "-c", str(src),
                        "-o", str(tmp_path / f"{src.stem}.o")], check=True)
    for src in [*sorted(lib.glob("*.cpp")), project.dir / "src" / "main.cpp"]:
        subprocess.run(["arm-none-eabi-g++", *common, "-std=gnu++17", "-fno-exceptions",
                        "-fno-rtti", "-c", str(src), "-o", str(tmp_path / f"{src.stem}.opp")],
                       check=True)


def test_on_board_sensing_without_channels_is_one_clear_line(model, tmp_path):
    with pytest.raises(NnmpcError, match=r"teensy41: on-board sensing needs \[\[sensor\]\]"):
        pio.generate_project(load_board("teensy41"), model[1], tmp_path / "p",
                             core_dir=tmp_path / "core", local_sensors=True)


def test_rebuild_keeps_the_user_section_of_platformio_ini(model, tmp_path):
    board = load_board("nucleo_f446re")
    p = pio.generate_project(board, model[1], tmp_path / "proj", core_dir=tmp_path / "core")
    ini = p.dir / "platformio.ini"
    mine = "[env:nucleo_f446re]\nmonitor_filters = time\nupload_port = /dev/ttyACM3\n"
    ini.write_text(ini.read_text() + mine)
    pio.generate_project(board, model[1], p.dir, core_dir=tmp_path / "core", period_us=2000)
    text = ini.read_text()
    assert text.endswith(pio.INI_USER + "\n\n" + mine) or text.endswith(pio.INI_USER + "\n" + mine)
    assert "-DNNMPC_PERIOD_US=2000u" in text       # the generated part was regenerated
    assert text.count(pio.INI_USER) == 1
