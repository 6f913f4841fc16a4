"""Host faults end in one clear line and a non-zero exit, never a traceback, and leave nothing
half-written: each case is named after the fault it guards against."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import REPO  # noqa: F401


def nnmpc(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "nnmpc.host.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("nnmpc: error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory):
    import keras
    d = tmp_path_factory.mktemp("faults")
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                          keras.layers.Dense(3)])
    m.save(d / "m.keras")
    return d / "m.keras"


def test_compile_to_a_file_is_refused_before_the_compile(small_keras, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = nnmpc("compile", small_keras, "-o", f)
    assert "exists and is not a folder" in error_line(r)
    assert f.read_text() == "x"


def test_generated_files_have_ordinary_permissions(small_keras, tmp_path):
    r = nnmpc("compile", small_keras, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    umask = os.umask(0)
    os.umask(umask)
    for f in (tmp_path / "out").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_truncated_model_files_say_so(small_keras, tmp_path):
    from nnmpc.compiler import CompileError, load_model

    data = small_keras.read_bytes()
    bad = tmp_path / "cut.keras"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CompileError, match="corrupt or truncated"):
        load_model(bad)
    import tensorflow as tf
    import keras
    m = keras.models.load_model(small_keras)
    tfl = tf.lite.TFLiteConverter.from_keras_model(m).convert()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tfl[: len(tfl) // 3])
    with pytest.raises(CompileError) as e:
        load_model(cut)
    msg = str(e.value)
    assert "truncated" in msg and "(error)" not in msg and "File not found" not in msg


@pytest.mark.qemu
def test_model_too_big_for_the_board_names_the_section_and_leaves_nothing(tmp_path):
    """3 -> 600 -> 600 -> 3 is ~1.45 MB of float weights: over qemu-m4f's 1 MB of flash."""
    import keras
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(600, activation="tanh"),
                          keras.layers.Dense(600, activation="tanh"), keras.layers.Dense(3)])
    m.save(tmp_path / "big.keras")
    work = tmp_path / "work"
    r = nnmpc("run", "--plant", "tendon", "--model", tmp_path / "big.keras", "--work", work)
    line = error_line(r)
    assert "qemu-m4f: the firmware does not fit: FLASH (" in line
    assert "more than the budget of 1048576 B" in line and "overflowed" not in line
    assert not (work / "model").exists() and not (work / "fw").exists()


@pytest.mark.qemu
def test_losing_the_board_mid_run_is_one_line(small_keras, tmp_path):
    """The emulator killed while the host waits: LinkLost or no reply, never a traceback."""
    from nnmpc.host.build.boards import load_board
    from nnmpc.host.build.firmware import build_firmware
    from nnmpc.host.errors import NnmpcError
    from nnmpc.host.link.client import DeviceClient
    from nnmpc.host.link.qemu import QemuBoard
    from nnmpc.host.loop import prepare_model
    from nnmpc.host.plants import get_plant

    net = prepare_model(get_plant("tendon"), str(small_keras), tmp_path)
    img = build_firmware(load_board("qemu-m4f"), net.model_dir, tmp_path / "fw")
    q = QemuBoard(img.elf, load_board("qemu-m4f"))
    port = q.start()
    c = DeviceClient(port, timeout=2.0)
    c.hello()
    q.proc.kill()
    q.proc.wait()
    with pytest.raises(NnmpcError) as e:
        for _ in range(50):
            c.predict(np.zeros(3))
    assert "lost the link to the board" in str(e.value) or "no reply" in str(e.value)
    q.stop()
