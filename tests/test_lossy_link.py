"""The loop over a link that damages bytes: a corrupting loopback proxy between the host and
the emulated board's UART (tests/proxy.py), the board served at a port as a real one is
(``QemuBoard.serve``), and lock-step hardware-in-the-loop runs through it.

Every frame opens and closes with 0x00, a lost request or SENSOR frame is resent with its
sequence number or period, and the device runs each period once (a repeat gets the cached
TELEMETRY again). So a run over a lossy link gives the very inputs of the clean run: bit for
bit while no period is given up, and the device and host agree on the period count."""

from __future__ import annotations

import time

import numpy as np
import pytest
import serial

from nnmpc.host.build.boards import load_board
from nnmpc.host.build.firmware import build_firmware
from nnmpc.host.link.client import DeviceClient, DeviceError
from nnmpc.host.link.qemu import QemuBoard, _free_port
from nnmpc.host.loop import prepare_model, reference, start_input
from nnmpc.host.loop.atport import run_hil
from nnmpc.host.loop.settings import controller_settings
from nnmpc.host.loop.setups import default_u_init
from nnmpc.host.plants import get_plant
from proxy import CorruptingProxy

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A briefly trained MSD net in firmware, served at a loopback port until the module ends."""
    from nnmpc.host.learn.datasets import make_dataset
    from nnmpc.host.learn.train import train_mlp

    plant = get_plant("msd")
    d = tmp_path_factory.mktemp("lossy")
    ds = make_dataset(plant, "narx", 3000, seed=0, lags=(1, 1))
    res = train_mlp(ds.x_train, ds.y_train, ds.x_val, ds.y_val, hidden=(16, 16), epochs=40,
                    seed=0, patience=10)
    res.model.save(d / "m.keras")
    net = prepare_model(plant, str(d / "m.keras"), d)
    board = load_board("qemu-m4f")
    img = build_firmware(board, net.model_dir, d / "fw")
    qemu = QemuBoard(img.elf, board)
    port = _free_port()
    qemu.serve(port)
    yield plant, net, port
    qemu.stop()


def run_through(served, rate: float, seed: int, T: int = 150, brief: bool | None = None):
    plant, net, port = served
    refs = reference(plant, "step", T * plant.dt)
    cs = controller_settings(plant, net, "nr")
    u0 = start_input(plant, refs[0], default_u_init(plant, net.kind), cs.tracked_index)
    with CorruptingProxy(("127.0.0.1", port), rate, seed) as px:
        link = serial.serial_for_url(px.url, timeout=0.05)
        try:
            c = DeviceClient(link, timeout=20.0, retry_after=0.05)
            c.brief = brief
            c.hello()
            log = run_hil(c, plant, cs, refs, u0, seed=0)
            stats = c.stats()
        finally:
            link.close()
    return log, stats, px


@pytest.fixture(scope="module")
def clean(served):
    log, stats, _ = run_through(served, 0.0, 0)
    assert log.lost == 0 and stats["frames_bad"] == 0
    return log


@pytest.mark.parametrize("rate,seed", [(0.001, 1), (0.01, 2),
                                       pytest.param(0.01, 3, marks=pytest.mark.soak)])
def test_lossy_link_runs_complete_with_the_clean_runs_inputs(served, clean, rate, seed):
    log, stats, px = run_through(served, rate, seed)
    assert px.flipped + px.dropped + px.bursts > 0          # the link really was damaged
    assert stats["k"] == len(clean.u) == len(log.u)        # device and host agree on k
    if log.lost == 0:
        # No damaged frame applied, no period run twice: the same inputs to the bit.
        np.testing.assert_array_equal(log.u, clean.u)
        assert stats["periods"] == len(clean.u) and stats["lost"] == 0
    else:  # a period given up: its input was held, and the counts say so on both sides
        assert stats["lost"] <= log.lost and abs(log.rms() / clean.rms() - 1) < 0.10
    assert log.extra["resends"] >= 0


def test_brief_periods_give_the_clean_runs_inputs_bit_for_bit(served, clean):
    """SENSOR_BRIEF / TELEMETRY_BRIEF (what a noisy link switches to) on a clean link: every
    period answered brief, the same inputs as the full TELEMETRY run to the bit, and a
    repeated SENSOR_BRIEF gets the frame already sent, not a second period."""
    from nnmpc.host.link import protocol as P
    from nnmpc.host.link import protocol_msgs as M

    log, stats, _ = run_through(served, 0.0, 0, brief=True)
    assert log.extra["brief"] == len(clean.u) == stats["k"] == stats["periods"]
    np.testing.assert_array_equal(log.u, clean.u)
    np.testing.assert_array_equal(log.iterations, clean.iterations)
    assert np.all(np.isnan(log.residual)) and not np.any(log.work)

    plant, net, port = served
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.5)
    try:
        c = DeviceClient(link, timeout=3.0)
        c.brief = True
        for msg in controller_settings(plant, net, "nr").messages(source="host"):
            c.configure(msg)
        c.upload_trajectory(np.zeros((10, 2)))
        c.start()
        t0 = c.step(0, [0.0, 0.0])
        t1 = c.step(1, [0.0, 0.0])
        wire = P.encode_frame(P.SENSOR_BRIEF, 7, M.SensorRequest(k=1, y=[0.0, 0.0]).pack())
        link.write(wire)                                      # period 1 again
        got = None
        end = time.monotonic() + 2.0
        while got is None and time.monotonic() < end:
            list(c._pump(end))
            if c._brief:
                got = c._brief.popleft()
        assert got is not None and got[0] == 1 and np.array_equal(got[1].u, t1.u)
        assert t0.k == 0 and t1.k == 1 and len(t1.u) == 1 and t1.controller == -1
        assert c.stats()["periods"] == 2 and c.stats()["k"] == 2
        c.stop()
    finally:
        link.close()


def test_garbage_before_a_frame_does_not_destroy_it(served, clean):
    """A burst without a zero byte right before a frame: the frame's own leading 0x00 ends the
    burst, so the frame is read (before the leading delimiter, it was lost with the burst)."""
    from nnmpc.host.link import protocol as P

    _, _, port = served
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=1.0)
    try:
        c = DeviceClient(link, timeout=2.0, retry_after=2.0)   # no resend: one try only
        before = c.stats()["frames_bad"]
        c.seq = (c.seq + 1) & 0xFF
        link.write(bytes(range(1, 40)) + P.encode_frame(P.HELLO, c.seq))
        deadline = time.monotonic() + 2.0
        got = None
        while got is None and time.monotonic() < deadline:
            for f in c._pump(deadline):
                if f.type == P.HELLO | P.REPLY and f.seq == c.seq:
                    got = f
        assert got is not None
        assert c.stats()["frames_bad"] == before + 1            # the burst alone was dropped
    finally:
        link.close()


def test_a_damaged_frame_gets_a_nak_at_once(served):
    """A frame that reaches the device damaged is answered at once with ERROR bad_frame (seq 0,
    type 0): the host resends without waiting for its timeout, and counts it."""
    from nnmpc.host.link import protocol as P
    from nnmpc.host.link import protocol_msgs as M

    _, _, port = served
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=1.0)
    try:
        c = DeviceClient(link, timeout=2.0)
        c.hello()
        good = P.encode_frame(P.STATS, 7)
        link.write(good[:5] + bytes([good[5] ^ 0x10]) + good[6:])     # one bit flipped
        t0 = time.monotonic()
        while c.naks == 0 and time.monotonic() < t0 + 2.0:
            list(c._pump(t0 + 2.0))
        assert c.naks == 1 and time.monotonic() - t0 < 0.5
        assert c.stats()["frames_bad"] >= 1 and M.ERR_BAD_FRAME == 8
    finally:
        link.close()


def test_long_requests_go_in_segments_over_a_noisy_link(served):
    """At 5 % byte errors a 90-byte frame arrives intact about one time in 3000. Once the link
    has damaged a frame, the client sends long requests (WEIGHTS, PREDICT of a wide input) in
    16-byte SEGMENT pieces, each acknowledged; the device applies the reassembled request
    once, and its answer equals the clean link's."""
    from nnmpc.host.link import protocol_msgs as M

    plant, net, port = served
    cs = controller_settings(plant, net, "nr")
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.05)
    try:
        c = DeviceClient(link, timeout=5.0)
        h = c.hello()
        x = np.linspace(-0.5, 0.5, h.n_in)
        y_clean = c.predict(x)
    finally:
        link.close()
    with CorruptingProxy(("127.0.0.1", port), 0.05, 4) as px:
        link = serial.serial_for_url(px.url, timeout=0.05)
        try:
            c = DeviceClient(link, timeout=5.0)
            c.hello()
            for msg in cs.messages(source="host"):
                c.configure(msg)
            y = c.predict(x)
        finally:
            link.close()
    assert px.flipped + px.dropped + px.bursts > 0
    assert c.segmented >= 2                     # WEIGHTS (84 bytes) at least, in pieces
    assert c.naks + c.decoder.frames_bad > 0
    np.testing.assert_array_equal(y, y_clean)   # the reassembled PREDICT: the same bits
    assert any(len(m.pack()) > c.SEGMENT_BYTES for m in cs.messages(source="host")
               if isinstance(m, M.WeightsRequest))


def test_segments_out_of_order_are_refused_and_piece_zero_starts_over(served):
    from nnmpc.host.link import protocol as P
    from nnmpc.host.link import protocol_msgs as M

    _, _, port = served
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.5)
    try:
        c = DeviceClient(link, timeout=2.0)
        h = c.hello()
        x = np.linspace(-0.5, 0.5, h.n_in).astype("<f4").tobytes()
        y_clean = c.predict(np.frombuffer(x, "<f4"))

        def piece(i, count, data, carried=P.PREDICT):
            return M.SegmentRequest(carried=carried, index=i, count=count, reserved=0,
                                    bytes=list(data)).pack()

        half = len(x) // 2
        assert c.request(P.SEGMENT, piece(0, 2, x[:half])) == b""          # acknowledged
        with pytest.raises(DeviceError, match="bad_segment|out of order"):
            c.request(P.SEGMENT, piece(3, 4, x[half:]))                # a gap
        with pytest.raises(DeviceError):
            c.request(P.SEGMENT, piece(1, 2, x[half:]))    # after the refusal: start over
        with pytest.raises(DeviceError):
            c.request(P.SEGMENT, piece(0, 1, b"", carried=P.SEGMENT))      # nested: refused
        c.request(P.SEGMENT, piece(0, 2, x[:half]))
        # the last piece is answered by the carried request's own reply
        y = np.frombuffer(c._exchange(P.SEGMENT, piece(1, 2, x[half:]), P.PREDICT, None,
                                      expect=P.PREDICT), "<f4")
        np.testing.assert_array_equal(y, y_clean)
    finally:
        link.close()


def test_a_repeated_request_is_answered_not_applied_twice(served):
    """START resent with its sequence number (its ack was lost) gets the ack again instead of
    'busy'; a repeated SENSOR frame gets the same TELEMETRY and runs no second period."""
    from nnmpc.host.link import protocol as P
    from nnmpc.host.link import protocol_msgs as M

    plant, net, port = served
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.5)
    try:
        c = DeviceClient(link, timeout=3.0)
        cs = controller_settings(plant, net, "nr")
        for msg in cs.messages(source="host"):
            c.configure(msg)
        c.upload_trajectory(np.zeros((10, 2)))
        seq = c.send(P.START)
        link.write(P.encode_frame(P.START, seq))              # the same START again
        acks = []
        end = time.monotonic() + 2.0
        while len(acks) < 2 and time.monotonic() < end:
            acks += [f for f in c._pump(end) if f.seq == seq]
        assert [f.type for f in acks] == [P.START | P.REPLY] * 2
        t1 = c.step(0, [0.0, 0.0])
        c.send_sensor(0, [0.0, 0.0])                          # period 0 again
        t2 = c.telemetry(2.0)
        assert t2 is not None and t2.k == 0 and np.array_equal(t2.u, t1.u)
        assert c.stats()["periods"] == 1 and c.stats()["k"] == 1
        c.stop()
        c.start()
        with pytest.raises(DeviceError, match="not allowed while the control loop runs"):
            c.configure(M.ReferenceRequest(ref=[1.0, 0, 0, 0]))   # REFERENCE while running
        c.stop()
        c.configure(M.ReferenceRequest(ref=[1.0, 0, 0, 0]))       # stopped: taken
    finally:
        link.close()


def test_link_loss_holds_the_safe_input_and_recovers(served):
    """Fixed rate with host sensors: when SENSOR frames stop for link_timeout periods the
    device holds u_safe and reports status 6 every period; when they come back, it controls
    again."""
    plant, net, port = served
    link = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.05)
    try:
        c = DeviceClient(link, timeout=3.0)
        cs = controller_settings(plant, net, "nr")
        cs.link_timeout, cs.u_safe = 5, [0.25]
        for msg in cs.messages(source="host", lockstep=False):    # 100 Hz on the board's clock
            c.configure(msg)
        c.upload_trajectory(np.full((300, 2), [10.0, 0.0]))
        c.start()
        tel = []

        def listen(periods, feed):
            """Until ``periods`` more TELEMETRY frames arrived (or 10 s): the board's clock."""
            n, end = len(tel) + periods, time.monotonic() + 10.0
            while len(tel) < n and time.monotonic() < end:
                if feed:
                    c.send_sensor(0, [5.0, 0.0])
                t = c.telemetry(0.01)
                while t is not None:
                    tel.append((feed, t))
                    t = c.telemetry(0.0)

        listen(30, True)
        listen(30, False)         # the link goes quiet
        listen(30, True)
        c.stop()
        stats = c.stats()
    finally:
        link.close()
    quiet = [t for feed, t in tel if not feed]
    held = [t for t in quiet if t.status == 6]
    first = next(i for i, t in enumerate(quiet) if t.status == 6)
    assert 3 <= first <= 8                                  # noticed after link_timeout = 5
    assert all(t.status == 6 for t in quiet[first:])        # and held from then on
    assert all(t.u[0] == np.float32(0.25) for t in held)
    fed_after = [t for feed, t in tel[len(tel) - 15:] if feed]
    assert fed_after and all(t.status != 6 for t in fed_after[-5:])
    assert stats["safe_holds"] == len(held) + sum(t.status == 6 for f, t in tel if f)
