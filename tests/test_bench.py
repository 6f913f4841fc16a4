"""The benchmark's instruments: the Cortex-M4 instruction counter and cycle estimate, checked on
hand-written assembly whose counts are known, and the flash/RAM measurement of bench images.
No timing assertions: every number here is an exact count."""

from __future__ import annotations

import struct
import subprocess

import numpy as np
import pytest

from support import have

pytestmark = pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")

ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]

ASM = r"""
    .syntax unified
    .thumb
    .text

    .global f_loop
    .type f_loop, %function
    .thumb_func
@ r0 = n >= 1: 3 + 3n instructions
f_loop:
    movs r1, #0
1:  adds r1, r1, #1
    subs r0, r0, #1
    bne 1b
    mov r0, r1
    bx lr
    .size f_loop, .-f_loop

    .global f_it
    .type f_it, %function
    .thumb_func
@ an IT block: both instructions issue whichever condition holds
f_it:
    cmp r0, #0
    ite eq
    moveq r0, #1
    movne r0, #2
    bx lr
    .size f_it, .-f_it

    .global f_costs
    .type f_costs, %function
    .thumb_func
@ r0 -> 16 bytes of RAM; one instruction of each class of the cost table
f_costs:
    ldr r1, [r0]            @ 2  single load
    ldr r2, [r0, #4]        @ 1  pipelined after a load
    vldr s0, [r0, #8]       @ 1  pipelined
    add r1, r1, r2          @ 1
    str r1, [r0]            @ 2  after an ALU instruction
    vmul.f32 s1, s0, s0     @ 1
    vmla.f32 s1, s0, s0     @ 3
    vdiv.f32 s2, s1, s0     @ 14
    push {r4, r5, lr}       @ 4  1 + 3 words
    ldrd r4, r5, [r0]       @ 3
    vpush {s16-s19}         @ 5
    vpop {s16-s19}          @ 5
    mla r1, r2, r2, r1      @ 2
    mul r1, r2, r1          @ 1
    sdiv r1, r1, r2         @ 7
    vldmia r0, {s4-s7}      @ 5
    vsqrt.f32 s3, s2        @ 14
    pop {r4, r5, pc}        @ 4 + 2 (taken)
    .size f_costs, .-f_costs

    .global f_branches
    .type f_branches, %function
    .thumb_func
@ a not-taken and a taken conditional branch, a call and its return
f_branches:
    push {lr}               @ 2
    cmp r0, #0              @ 1
    beq 1f                  @ 1 (r0 != 0: not taken)
    cmp r0, #5              @ 1
    bne 1f                  @ 1 + 2 (r0 != 5: taken)
    nop
1:  bl f_leaf               @ 1 + 2
    pop {pc}                @ 2 + 2
    .size f_branches, .-f_branches

    .global f_leaf
    .type f_leaf, %function
    .thumb_func
f_leaf:
    bx lr                   @ 1 + 2
    .size f_leaf, .-f_leaf

    .global f_stack
    .type f_stack, %function
    .thumb_func
@ stack arguments: returns arg4 + arg5
f_stack:
    ldr r0, [sp]
    ldr r1, [sp, #4]
    add r0, r0, r1
    bx lr
    .size f_stack, .-f_stack
"""


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    from nnmpc.host.bench.cortexm import CortexM4Counter

    d = tmp_path_factory.mktemp("asm")
    (d / "t.S").write_text(ASM)
    elf = d / "t.elf"
    subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, "-nostdlib", "-Wl,-Ttext=0", "-Wl,-e,f_loop",
                    str(d / "t.S"), "-o", str(elf)], check=True, capture_output=True)
    return CortexM4Counter(elf, histogram=True, profile=True)


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_loop_instructions_and_cycles(counter, n):
    r = counter.call("f_loop", (n,))
    assert r.instructions == 3 + 3 * n
    # movs, then n x (adds, subs, bne) with n-1 taken branches, mov, bx taken
    assert r.cycles == 1 + 3 * n + 2 * (n - 1) + 1 + 3
    assert r.taken_branches == n
    assert r.histogram["adds"] == n


@pytest.mark.parametrize("arg", [0, 7])
def test_it_block_counts_both_instructions(counter, arg):
    r = counter.call("f_it", (arg,))
    assert r.instructions == 5
    assert r.cycles == 1 + 1 + 1 + 1 + 3


def test_cost_table_on_a_known_sequence(counter):
    from nnmpc.host.bench.cortexm import RAM_BASE
    buf = RAM_BASE + 0x100
    counter.write(buf, struct.pack("<IIff", 1, 2, 3.0, 0.0))
    r = counter.call("f_costs", (buf,))
    assert r.instructions == 18
    assert r.cycles == 2 + 1 + 1 + 1 + 2 + 1 + 3 + 14 + 4 + 3 + 5 + 5 + 2 + 1 + 7 + 5 + 14 + 6
    assert r.stack_bytes == 12 + 16
    assert r.profile == {"f_costs": r.cycles}


@pytest.mark.parametrize("arg, cycles", [(1, 2 + 1 + 1 + 1 + 3 + 3 + 3 + 4), (5, None)])
def test_taken_and_not_taken_branches(counter, arg, cycles):
    r = counter.call("f_branches", (arg,))
    if arg == 5:
        # bne falls through to the nop: 1 more instruction, 2 fewer cycles, 1 fewer taken branch
        ref = counter.call("f_branches", (1,))
        assert r.instructions == ref.instructions + 1
        assert r.cycles == ref.cycles - 2 + 1
        assert r.taken_branches == ref.taken_branches - 1
    else:
        assert r.instructions == 8
        assert r.cycles == cycles
        assert r.taken_branches == 4      # bne, bl, bx lr, pop {pc}
        assert set(r.profile) == {"f_branches", "f_leaf"}


def test_stack_arguments(counter):
    from unicorn.arm_const import UC_ARM_REG_R0
    counter.call("f_stack", (0, 0, 0, 0, 40, 2))
    assert counter._uc.reg_read(UC_ARM_REG_R0) == 42


@pytest.mark.parametrize("mnemonic, ops, cost, single", [
    ("vmla.f32", "s1, s0, s0", 3, False),
    ("vfma.f32", "s1, s0, s0", 3, False),
    ("vmul.f32", "s1, s0, s0", 1, False),
    ("vldr", "s0, [r0]", 2, True),
    ("ldr.w", "r1, [r0, #4]", 2, True),
    ("ldrb", "r1, [r0], #1", 2, True),
    ("vldmia", "r0!, {s0, s1, s2, s3, s4, s5, s6, s7}", 9, False),
    ("vldmia", "r0!, {s0-s7}", 9, False),
    ("vpush", "{d8, d9, d10, d11}", 9, False),
    ("pop.w", "{r4, r5, r6, r7, r8, r9, sl, fp, pc}", 10, False),
    ("ldrd", "r0, r1, [r2]", 3, False),
    ("sdiv", "r0, r0, r1", 7, False),
    ("mla", "r0, r1, r2, r3", 2, False),
    ("smlal", "r0, r1, r2, r3", 1, False),
    ("vdiv.f32", "s0, s1, s2", 14, False),
    ("vmovgt.f32", "s0, s16", 1, False),
    ("bne", "#0x10", 1, False),
    ("tbb", "[pc, r0]", 2, False),
])
def test_classify(mnemonic, ops, cost, single):
    from nnmpc.host.bench.cortexm import classify
    c, kind, _ = classify(mnemonic, ops)
    assert c == cost
    assert (kind == "ls") == single


def test_flash_is_image_minus_empty_image(tmp_path):
    """A 'model' of one 1000-float table and a small function: the flash delta is their size."""
    from nnmpc.host.bench.netbench import build_images, size_delta
    from nnmpc.host.build.elfsize import symbol_sizes

    n = 1000
    vals = ", ".join(f"{i}.5f" for i in range(n))
    src = tmp_path / "m.c"
    src.write_text(
        f"static const float tbl[{n}] = {{{vals}}};\n"
        "static float ram[10];\n"
        "void m_predict(const float *x, float *y);\n"
        "void m_jacobian(const float *x, float *j);\n"
        "void m_predict(const float *x, float *y) { int i = (int)x[0];"
        f" ram[i % 10] = tbl[i % {n}]; y[0] = ram[0]; }}\n"
        "void m_jacobian(const float *x, float *j) { j[0] = x[0]; }\n")
    from nnmpc.host.build.boards import load_board
    from nnmpc.host.build.firmware import cflags
    flags = cflags(load_board("qemu-m4f"))
    imgs = build_images("m", "m", [src], [], 1, 1, tmp_path / "elf", flags)
    delta = size_delta(imgs.predict, imgs.empty_predict)
    syms, empty = symbol_sizes(imgs.predict), symbol_sizes(imgs.empty_predict)
    assert syms["tbl"] == 4 * n
    assert "m_jacobian" not in syms          # collected away: main does not call it
    # the table + the code of m_predict beyond the empty one, up to alignment padding
    grown = 4 * n + syms["m_predict"] - empty["m_predict"]
    assert abs(delta["flash"] - grown) <= 8
    assert delta["ram_static"] == 40
    full, fs, fe = size_delta(imgs.full, imgs.empty), symbol_sizes(imgs.full), symbol_sizes(imgs.empty)
    grown += fs["m_jacobian"] - fe["m_jacobian"]
    assert abs(full["flash"] - grown) <= 8


def test_naive_baseline_runs_and_matches_numpy(tmp_path, rng):
    """The naive C-loop generator, built and run in the emulator, against numpy (float64)."""
    from nnmpc.host.bench.netbench import NetSpec, build_images, naive_c, run_calls
    from nnmpc.host.build.boards import load_board
    from nnmpc.host.build.firmware import cflags

    spec = NetSpec("t", 3, ((5, "tanh"), (4, "relu"), (2, "linear")))
    ws = []
    n = spec.n_in
    for units, _ in spec.layers:
        ws += [rng.normal(0, 0.5, (n, units)).astype(np.float32),
               rng.normal(0, 0.1, units).astype(np.float32)]
        n = units
    src = tmp_path / "naive.c"
    src.write_text(naive_c(spec, ws))
    imgs = build_images("naive", "naive", [src], [], 3, 2, tmp_path / "elf",
                        cflags(load_board("qemu-m4f")))
    xs = rng.uniform(-2, 2, (3, 3)).astype(np.float32)
    run = run_calls(imgs.full, "naive", xs, 2)

    def f(x):
        h = x.astype(np.float64)
        for i, (_, act) in enumerate(spec.layers):
            h = h @ ws[2 * i] + ws[2 * i + 1]
            h = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "linear": lambda v: v}[act](h)
        return h

    assert np.allclose(run["y"], f(xs), atol=1e-5)
    eps = 1e-4
    J = np.stack([(f(xs + eps * e) - f(xs - eps * e)) / (2 * eps) for e in np.eye(3)], axis=-1)
    assert np.allclose(run["J"], J, atol=1e-3)
    s = run["summary"]
    assert s["predict"]["instructions"] > 0 and s["jacobian"]["cycles_est"] > s["predict"]["cycles_est"]


def test_bench_is_a_cli_command():
    from nnmpc.host.cli import build_parser
    args = build_parser().parse_args(["bench", "A", "--inputs", "3", "--no-write"])
    assert args.nets == ["A"] and args.inputs == 3 and args.no_write
