"""Compiled models cross-built for Cortex-M4F, run in QEMU and queried over serial."""

from __future__ import annotations

import numpy as np
import pytest

from nnmpc.compiler import compile_model
from nnmpc.host.link import protocol as P
from nnmpc.host.build.boards import load_board
from nnmpc.host.link.client import DeviceClient
from nnmpc.host.build.firmware import build_firmware
from nnmpc.host.link.qemu import QemuBoard
from support import keras_mlp, rel_err

pytestmark = pytest.mark.qemu

MODELS = {
    "tanh": (3, [(32, "tanh"), (32, "tanh"), (3, "linear")]),
    "relu_sigmoid": (6, [(24, "relu"), (16, "sigmoid"), (4, "linear")]),
}


@pytest.fixture(scope="module")
def board():
    return load_board("qemu-m4f")


@pytest.fixture(scope="module", params=sorted(MODELS))
def firmware(request, tmp_path_factory, board):
    n_in, layers = MODELS[request.param]
    d = tmp_path_factory.mktemp(request.param)
    model = keras_mlp(d / "m.keras", n_in, layers, seed=7)
    compile_model(d / "m.keras", d / "model", name="model")
    img = build_firmware(board, d / "model", d / "fw")
    return model, img, n_in, layers[-1][0]


def test_answers_over_serial_match_keras(firmware, board):
    model, img, n_in, n_out = firmware
    x = np.random.default_rng(5).uniform(-2, 2, size=(150, n_in)).astype(np.float32)
    y_k = model.predict(x, verbose=0)
    q = QemuBoard(img.elf, board)
    with q as port:
        c = DeviceClient(port)
        h = c.hello()
        assert (h.n_in, h.n_out, h.board) == (n_in, n_out, "qemu-m4f")
        y_dev = np.array([c.predict(xi) for xi in x])
        y_j, J = c.predict_jacobian(x[0])
        c.exit()
        assert q.wait_exit() == 0
    assert rel_err(y_dev, y_k) <= 1e-5
    assert np.array_equal(y_j, y_dev[0])
    assert J.shape == (n_out, n_in) and np.all(np.isfinite(J))


def test_image_fits_budget_and_is_small(firmware, board):
    _, img, _, _ = firmware
    assert img.size.flash < 32 * 1024
    assert img.size.ram <= board.ram_bytes


def test_corrupt_frames_are_dropped_and_counted(firmware, board):
    _, img, n_in, _ = firmware
    with QemuBoard(img.elf, board) as port:
        c = DeviceClient(port)
        c.hello()
        good = P.encode_frame(P.PREDICT, 200, np.zeros(n_in, "<f4").tobytes())
        flipped = bytearray(good)
        flipped[3] ^= 0x10                      # bit flip: CRC fails
        port.write(bytes(flipped))
        port.write(good[: len(good) // 2] + b"\x00")  # truncated frame
        port.write(b"\x13\x37garbage\xff\x00")       # garbage between frames
        port.write(b"\x01" * 700 + b"\x00")          # longer than any frame
        y = c.predict(np.ones(n_in))                # still answers, with the right seq
        assert y.shape[0] > 0
        s = c.stats()
        # HELLO, PREDICT and STATS got through (and any resend the client made while the
        # slow emulated UART was still taking in the garbage); 3 bad frames and 1 over-long
        # one were dropped.
        assert s["frames_bad"] == 3
        assert s["frames_long"] == 1
        assert 3 <= s["frames_ok"] <= 3 + c.resends
        c.exit()


def test_wrong_length_request_is_rejected_not_applied(firmware, board):
    _, img, n_in, _ = firmware
    with QemuBoard(img.elf, board) as port:
        c = DeviceClient(port)
        c.hello()
        with pytest.raises(Exception, match="payload length does not match"):
            c.request(P.PREDICT, b"\x00" * (4 * n_in + 1))
        c.exit()


def test_qemu_is_stopped_on_error(firmware, board):
    _, img, _, _ = firmware
    q = QemuBoard(img.elf, board)
    with pytest.raises(RuntimeError):
        with q:
            proc = q.proc
            raise RuntimeError("boom")
    assert proc.poll() is not None


def test_qemu_dies_with_its_parent(firmware, board, tmp_path):
    """A host process killed hard (no cleanup code runs) leaves no emulator behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    _, img, _, _ = firmware
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from nnmpc.host.build.boards import load_board\n"
        "from nnmpc.host.link.qemu import QemuBoard\n"
        f"q = QemuBoard({str(img.elf)!r}, load_board('qemu-m4f'))\n"
        "q.start(); print(q.proc.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    qemu_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(qemu_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(qemu_pid, signal.SIGKILL)
        raise AssertionError("QEMU outlived its parent")
