"""The framing (COBS + CRC-16 + sequence), Python side and C side, against each other."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from nnmpc.host import protocol as P
from support import REPO

FW = REPO / "firmware"


def test_crc16_check_value():
    # CRC-16/CCITT-FALSE check value from the CRC catalogue.
    assert P.crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 508, 600])
def test_cobs_round_trip_and_no_zero_bytes(rng, n):
    data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
    data = data[: n // 2] + b"\x00" * (n - n // 2) if n > 4 else data
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert P.cobs_decode(enc) == data


def test_decoder_drops_corruption_and_resyncs(rng):
    frames = [P.encode_frame(P.PREDICT, i, bytes(rng.integers(0, 256, 12, dtype=np.uint8)))
              for i in range(50)]
    stream = bytearray()
    bad = 0
    for i, f in enumerate(frames):
        f = bytearray(f)
        if i % 5 == 1:
            f[rng.integers(0, len(f) - 1)] ^= 1 << int(rng.integers(0, 8))
            bad += 1
        stream += f
        if i % 7 == 3:
            stream += b"noise\xff\x00"
    d = P.Decoder()
    got = []
    for k in range(0, len(stream), 13):
        got += d.feed(bytes(stream[k:k + 13]))
    assert [g.seq for g in got] == [i for i in range(50) if i % 5 != 1]
    assert d.frames_bad == bad + len([i for i in range(50) if i % 7 == 3])


C_HARNESS = r"""
#include <stdio.h>
#include "nnmpc_proto.h"
/* Decode stdin with the C decoder; print "type seq len" per frame, then the counters. */
int main(void) {
    static nnmpc_decoder_t d; static nnmpc_frame_t f; int c;
    nnmpc_decoder_init(&d);
    while ((c = getchar()) != EOF)
        if (nnmpc_decoder_push(&d, (uint8_t)c, &f)) {
            unsigned i, sum = 0;
            for (i = 0; i < f.len; ++i) sum += f.payload[i];
            printf("%u %u %u %u\n", f.type, f.seq, f.len, sum);
        }
    printf("ok=%u bad=%u long=%u\n", (unsigned)d.frames_ok, (unsigned)d.frames_bad,
           (unsigned)d.frames_long);
    /* And encode one frame for the Python decoder. */
    { static uint8_t w[NNMPC_WIRE_MAX]; uint8_t p[300]; size_t n, i;
      for (i = 0; i < sizeof p; ++i) p[i] = (uint8_t)(i * 7);
      n = nnmpc_frame_encode(0x42, 9, p, sizeof p, w);
      fwrite(w, 1, n, stderr); }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_decoder(tmp_path_factory):
    d = tmp_path_factory.mktemp("proto")
    (d / "h.c").write_text(C_HARNESS)
    exe = d / "h"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    f"-I{FW / 'protocol'}", str(d / "h.c"), str(FW / "protocol" / "nnmpc_proto.c"),
                    "-o", str(exe)], check=True)
    return exe


def test_c_decoder_agrees_with_python(c_decoder, rng):
    frames, expect = bytearray(), []
    for i in range(40):
        payload = bytes(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8))
        f = bytearray(P.encode_frame(i % 7 + 1, i, payload))
        if i % 6 == 5:
            f[int(rng.integers(0, len(f) - 1))] ^= 0x04
        else:
            expect.append(f"{i % 7 + 1} {i} {len(payload)} {sum(payload)}")
        frames += f
    frames += b"\x05" * 2000 + b"\x00"  # over-long
    r = subprocess.run([str(c_decoder)], input=bytes(frames), capture_output=True, check=True)
    lines = r.stdout.decode().splitlines()
    assert lines[:-1] == expect
    assert lines[-1] == f"ok={len(expect)} bad={40 - len(expect)} long=1"
    (f,) = P.Decoder().feed(r.stderr)
    assert (f.type, f.seq, f.payload) == (0x42, 9, bytes((i * 7) & 0xFF for i in range(300)))


def test_c_decoder_survives_random_bytes(c_decoder, rng):
    """Random junk, under ASan/UBSan: no crash, and no frame passes the CRC by accident here."""
    junk = bytes(rng.integers(0, 256, 200_000, dtype=np.uint8))
    r = subprocess.run([str(c_decoder)], input=junk, capture_output=True, check=True)
    assert r.stdout.decode().splitlines()[-1].startswith("ok=0 ")
