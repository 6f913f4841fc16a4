"""The framing (COBS + CRC-16 + sequence), Python side and C side, against each other."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from nnmpc.host.link import protocol as P
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


# -- messages generated from the schema --------------------------------------------------------
from nnmpc.host.link import protocol_msgs as M  # noqa: E402
from nnmpc.host.link import protogen  # noqa: E402


def test_generated_message_code_is_up_to_date():
    """firmware/protocol/nnmpc_msgs.[ch], host/link/protocol_msgs.py and the message section of
    docs/PROTOCOL.md match the schema (so the document cannot drift from the wire)."""
    for path, text in protogen.render().items():
        assert path.read_text() == text, f"{path} is stale: run python -m nnmpc.host.link.protogen"


def test_schema_is_validated(tmp_path):
    bad = protogen.SCHEMA.read_text().replace(
        '{ name = "rows", type = "f32[]" },', '{ name = "rows", type = "f32[]" },\n'
        '    { name = "after", type = "u8" },')
    (tmp_path / "s.toml").write_text(bad)
    with pytest.raises(protogen.SchemaError, match="fixed fields first"):
        protogen.load_schema(tmp_path / "s.toml")


def _message_harness(parts) -> str:
    """C program: for each record (type, role, len, payload) on stdin, unpack with the generated
    C code and pack again; print the packed bytes in hex, or 'reject'."""
    cases = []
    for i, p in enumerate(parts):
        cases.append(f"""    case {i}: {{ static {p.c_name}_t m; memset(&m, 0xA5, sizeof m);
        if ({p.c_name}_unpack(&m, in, (size_t)len) != 0) {{ puts("reject"); break; }}
        n = {p.c_name}_pack(&m, out); hex(out, n); break; }}""")
    return r"""
#include <stdio.h>
#include <string.h>
#include "nnmpc_msgs.h"
static void hex(const uint8_t *b, size_t n) { size_t i; for (i = 0; i < n; ++i) printf("%02x", b[i]); printf("\n"); }
int main(void) {
    static uint8_t in[4096], out[NNMPC_MSGS_PAYLOAD_MAX];
    int idx, len, c;
    while (scanf("%d %d", &idx, &len) == 2) {
        size_t n; int i;
        for (i = 0; i < len; ++i) { if (scanf("%2x", &c) != 1) return 2; in[i] = (uint8_t)c; }
        switch (idx) {
""" + "\n".join(cases) + r"""
        default: return 3;
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_messages(tmp_path_factory):
    parts = [p for p in protogen.load_schema()["parts"] if p.fields]
    d = tmp_path_factory.mktemp("msgs")
    (d / "m.c").write_text(_message_harness(parts))
    exe = d / "m"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{FW / 'protocol'}", str(d / "m.c"), str(FW / "protocol" / "nnmpc_msgs.c"),
                    "-o", str(exe)], check=True)
    return parts, exe


def _random_message(part, rng):
    cls = getattr(M, part.py_name)
    kw = {}
    for f in part.fields:
        if f.kind == "scalar":
            kw[f.name] = float(np.float32(rng.normal() * 100)) if f.base == "f32" else \
                int(rng.integers(0, 1 << (8 * {"u8": 1, "u16": 2, "u32": 4}[f.base])))
        elif f.kind == "array" or (f.kind == "tail" and f.base != "f32"):
            n = f.count if f.kind == "array" else int(rng.integers(0, f.count + 1))
            kw[f.name] = [float(v) for v in rng.normal(size=n).astype(np.float32)] \
                if f.base == "f32" else \
                [int(v) for v in rng.integers(0, 1 << (8 * {"u8": 1, "u16": 2, "u32": 4}[f.base]), n)]
        elif f.kind == "str":
            kw[f.name] = "".join(chr(c) for c in rng.integers(32, 127, int(rng.integers(0, 64))))
        else:
            kw[f.name] = [float(v) for v in rng.normal(size=int(rng.integers(0, f.count + 1)))
                          .astype(np.float32)]
    return cls(**kw)


def test_messages_round_trip_python_c_python(c_messages, rng):
    parts, exe = c_messages
    lines, expect = [], []
    for i, part in enumerate(parts):
        for _ in range(5):
            msg = _random_message(part, rng)
            b = msg.pack()
            assert type(msg).unpack(b) == msg
            lines.append(f"{i} {len(b)} {b.hex()}")
            expect.append(b.hex())
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == expect


def test_messages_with_a_wrong_length_are_rejected_on_both_sides(c_messages, rng):
    parts, exe = c_messages
    lines, expect = [], []
    for i, part in enumerate(parts):
        b = _random_message(part, rng).pack()
        bad = [b[:-1]] if b else []
        if part.tail is not None and part.tail.size == 1:   # a byte tail may end anywhere
            bad = [b[:part.fixed_size - 1]] if part.fixed_size and not part.has_str else []
        if part.tail is None and not part.strings:
            bad.append(b + b"\x00")
        if part.tail is not None and part.tail.size > 1:
            bad.append(b + b"\x01")            # a partial tail element
        for x in bad:
            with pytest.raises(ValueError):
                getattr(M, part.py_name).unpack(x)
            lines.append(f"{i} {len(x)} {x.hex()}")
            expect.append("reject")
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == expect


def test_every_single_bit_flip_and_truncation_of_a_command_is_dropped(c_decoder):
    """A CONFIG frame with any one bit flipped, or cut anywhere, never decodes as a frame."""
    good = P.encode_frame(M.CONFIG, 7, M.ConfigRequest(controller=1, p=2, m=1, nb=1, horizon=5,
                                                       moves=2, max_iter=4, telemetry_every=1,
                                                       fd_eps=1e-3).pack())
    stream = bytearray()
    n = 0
    for i in range(len(good) - 1):           # the delimiter itself is not payload
        for bit in range(8):
            f = bytearray(good)
            f[i] ^= 1 << bit
            stream += f + b"\x00"            # make sure each test frame ends on its own
            n += 1
    for cut in range(1, len(good) - 1):
        stream += good[:cut] + b"\x00"
    r = subprocess.run([str(c_decoder)], input=bytes(stream), capture_output=True, check=True)
    lines = r.stdout.decode().splitlines()
    # Only frames that are still valid may come out: a flip that turns a byte into 0x00 splits
    # the frame into pieces, which fail COBS/CRC too. Nothing decodes as a CONFIG frame.
    assert lines[-1].startswith("ok=0 "), lines[-3:]


def test_fuzz_target_runs_clean_under_sanitizers(tmp_path):
    """tests/fuzz/fuzz_app.c: decoder + message unpackers + request handler + control loop on
    mutated frame streams, built with ASan/UBSan (deterministic driver; libFuzzer if clang)."""
    exe = tmp_path / "fuzz"
    inc = [f"-I{FW / d}" for d in ("protocol", "solver", "io", "control", "app")]
    src = [str(REPO / "tests" / "fuzz" / "fuzz_app.c"),
           *(str(FW / s) for s in ("protocol/nnmpc_proto.c", "protocol/nnmpc_msgs.c",
                                   "solver/nnmpc_solver.c", "io/nnmpc_io.c", "control/nnmpc_control.c",
                                   "app/nnmpc_app.c"))]
    subprocess.run(["cc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-DNNMPC_FUZZ_MAIN", *inc, *src, "-lm", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe), "150000", "7"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    counts = r.stdout.split()
    # The driver reached every layer: frames accepted and rejected, control periods run.
    assert int(counts[3]) > 10_000 and int(counts[6]) > 1_000 and int(counts[8]) > 1_000


def test_protocol_doc_lists_every_message_and_error():
    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    schema = protogen.load_schema()
    for m in schema["messages"]:
        assert f"`{m['name'].upper()}` 0x{m['id']:02X}" in doc, m["name"]
    for e in schema["errors"]:
        assert f"| {e['code']} | {e['name']} |" in doc, e["name"]


def test_libfuzzer_target_runs_briefly(tmp_path):
    """The same target under libFuzzer (clang, coverage-guided), seeded with CRC-valid frame
    streams from the deterministic driver, for a few seconds."""
    import shutil

    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not installed (apt-get install clang libclang-rt-dev)")
    inc = [f"-I{FW / d}" for d in ("protocol", "solver", "io", "control", "app")]
    src = [str(REPO / "tests" / "fuzz" / "fuzz_app.c"),
           *(str(FW / s) for s in ("protocol/nnmpc_proto.c", "protocol/nnmpc_msgs.c",
                                   "solver/nnmpc_solver.c", "io/nnmpc_io.c", "control/nnmpc_control.c",
                                   "app/nnmpc_app.c"))]
    exe = tmp_path / "libfuzz"
    r = subprocess.run([clang, "-std=c99", "-O1", "-g", "-fsanitize=fuzzer,address,undefined",
                        "-fno-sanitize-recover=all", *inc, *src, "-lm", "-o", str(exe)],
                       capture_output=True, text=True)
    if r.returncode != 0 and "libclang_rt" in r.stderr:
        pytest.skip("clang's libFuzzer runtime is missing (apt-get install libclang-rt-dev)")
    assert r.returncode == 0, r.stderr
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    seeds.mkdir()
    corpus.mkdir()
    driver = tmp_path / "driver"
    subprocess.run(["cc", "-std=c99", "-O1", "-DNNMPC_FUZZ_MAIN", *inc, *src, "-lm", "-o",
                    str(driver)], check=True)
    subprocess.run([str(driver), "200", "3", str(seeds)], check=True, capture_output=True)
    # libFuzzer's RSS limit reads the peak RSS, which Linux carries across fork and exec from
    # this (large, by now) test process: limit each allocation instead.
    r = subprocess.run([str(exe), "-max_total_time=5", "-seed=1", "-rss_limit_mb=0",
                        "-malloc_limit_mb=1024",
                        str(corpus), str(seeds)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done" in r.stderr
