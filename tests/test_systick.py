"""The mps2 board's SysTick tick clock (firmware/boards/mps2/systick_clock.h), built with the
host cc and fed register samples from a simulated SysTick: it must never go back, whether the
interrupt that counts the milliseconds is late (Cortex-M: it pends on reaching 0 and runs some
cycles later) or the reload itself is (QEMU: VAL reads 0 until its timer callback reloads and
pends at once)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from support import HOST_CFLAGS, REPO

R = 25_000  # ticks per millisecond at 25 MHz


@pytest.fixture(scope="module")
def ticks_of(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path_factory.mktemp("systick") / "harness"
    subprocess.run([cc, *HOST_CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{REPO / 'firmware' / 'boards' / 'mps2'}",
                    str(REPO / "tests" / "systick_harness.c"), "-o", str(exe)], check=True)

    def run(samples: list[tuple[int, int, int, int]]) -> np.ndarray:
        text = "".join(f"{ms} {b} {p} {a} {R}\n" for ms, b, p, a in samples)
        out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
        return np.array([int(v) for v in out.stdout.split()], dtype=np.int64)

    return run


class SysTick:
    """Register values over time t (in counter ticks). reload_delay = 0: a Cortex-M (VAL goes
    R-1 .. 0, pends on reaching 0, reloads on the next tick); > 0: QEMU-like (after the
    period VAL reads 0 until a timer callback up to reload_delay ticks later reloads and pends
    together). The handler counts ms `latency` ticks after the exception pends."""

    def __init__(self, rng, latency: int, reload_delay: int, periods: int) -> None:
        self.pend_at, self.reload_at = [], []   # per period
        t = 0
        for _ in range(periods):
            end = t + R - 1                       # VAL reaches 0
            if reload_delay:
                cb = end + 1 + int(rng.integers(0, reload_delay))
                self.pend_at.append(cb)
                self.reload_at.append(cb)
            else:
                self.pend_at.append(end)
                self.reload_at.append(end + 1)
            t = self.reload_at[-1]
        self.start = [0] + self.reload_at[:-1]
        self.isr_at = [p + int(rng.integers(1, latency + 1)) for p in self.pend_at]
        self.reload_at = np.array(self.reload_at)
        self.pend_at, self.isr_at = np.array(self.pend_at), np.array(self.isr_at)

    def ms(self, t):
        return int((self.isr_at <= t).sum())

    def pending(self, t):
        return int(((self.pend_at <= t) & (self.isr_at > t)).any())

    def val(self, t):
        k = int((self.reload_at <= t).sum())      # the period t is in
        return max(R - 1 - (t - self.start[k]), 0)


def read_clock(st: SysTick, t: int, rng):
    """The board's read sequence (ms, VAL, ICSR, VAL, ms again; retry if ms changed), one or
    two counter ticks per register read. Returns the samples and the time it ended."""
    while True:
        ms = st.ms(t); t += int(rng.integers(1, 3))
        before = st.val(t); t += int(rng.integers(1, 3))
        pend = st.pending(t); t += int(rng.integers(1, 3))
        after = st.val(t); t += int(rng.integers(1, 3))
        if st.ms(t) == ms:
            return (ms, before, pend, after), t
        t += 1


def reads_around_reloads(st: SysTick, rng, n_per_reload=12):
    """Read the clock often, one read after the other, most reads close to the reloads
    where the races are. Returns the samples and the times the reads started."""
    starts = []
    for k in range(len(st.reload_at) - 2):
        base = int(st.reload_at[k])
        starts += [int(v) for v in base + rng.integers(-60, 60, n_per_reload)]
        starts.append(base + R // 2)
    samples, times, end = [], [], 0
    for t in sorted(starts):
        t = max(t, end)
        s, end = read_clock(st, t, rng)
        samples.append(s)
        times.append(t)
    return samples, np.array(times)


@pytest.mark.parametrize("latency,reload_delay", [(12, 0), (200, 0), (12, 40), (300, 300)])
def test_systick_clock_never_goes_back(ticks_of, latency, reload_delay):
    rng = np.random.default_rng(latency + 7 * reload_delay)
    st = SysTick(rng, latency, reload_delay, periods=60)
    samples, times = reads_around_reloads(st, rng)
    ticks = ticks_of(samples)
    steps = np.diff(ticks)
    assert steps.min() >= 0, f"clock went back by {-steps.min()} ticks"
    # The clock follows time: from one read to the next it advances by the time between them
    # (within the few ticks of a read and its retry, plus the delay QEMU stretches a period
    # by).
    dt = np.diff(times)
    assert np.abs(steps - dt).max() <= 20 + reload_delay
    if reload_delay == 0:
        # On the Cortex-M timing the clock is the time itself (to the few ticks of a read and
        # its retry).
        assert np.abs(ticks - times).max() <= 20
    # The old read, ms * R + (R-1 - VAL) without the pending bit, jumps back ~1 ms here.
    old = np.array([ms * R + (R - 1 - b) for ms, b, _, _ in samples], dtype=np.int64)
    assert np.diff(old).min() < -R // 2
