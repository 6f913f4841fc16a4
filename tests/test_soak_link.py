"""The lossy-link soak of docs/MPC.md: the emulated board booted with `nnmpc flash --port P1`,
a corrupting proxy on P2 forwarding to P1, and `nnmpc run --port P2 --plant P --reference
step` through it, 800 periods, ten runs per byte error rate (flips, half as many drops, and
bursts), msd and tendon. Every run must complete, the device and host period counters agree,
and the tracking stays within 5 % (0.1 %) and 10 % (1 %) of the clean run; at 5 % it is
reported. The runs share three boards per plant. `make soak` runs it (about an hour on
two cores)."""

from __future__ import annotations

import json
import subprocess
import sys
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nnmpc.host.link.qemu import _free_port, _port_taken
from proxy import CorruptingProxy

pytestmark = [pytest.mark.qemu, pytest.mark.soak]

RATES = {0.0: 1, 0.001: 10, 0.01: 10, 0.05: 10}
BOUND = {0.001: 0.05, 0.01: 0.10}
BOARDS = 3   # emulated boards per plant, each serving one run at a time


def nnmpc(*args, timeout=3600):
    return subprocess.run([sys.executable, "-m", "nnmpc.host.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def boot(model: Path, out: Path) -> tuple[subprocess.Popen, int]:
    """`nnmpc flash --board qemu-m4f --port socket://...`: a board at a port of its own."""
    port = _free_port()
    board = subprocess.Popen([sys.executable, "-m", "nnmpc.host.cli", "flash", "--board",
                              "qemu-m4f", "--model", model, "--port",
                              f"socket://127.0.0.1:{port}", "-o", out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 300
    while not _port_taken(port):
        assert board.poll() is None and time.monotonic() < end, board.stderr.read()
        time.sleep(0.1)
    return board, port


def run_once(plant: str, port: int, rate: float, seed: int, tmp_path: Path) -> dict:
    with CorruptingProxy(("127.0.0.1", port), rate, seed) as px:
        out = tmp_path / f"{rate}_{seed}.json"
        t0 = time.monotonic()
        r = nnmpc("run", "--port", px.url, "--plant", plant, "--reference", "step",
                  "--duration", "8", "--json", out, "--work", tmp_path / f"run_{rate}_{seed}")
        s = json.loads(out.read_text()) if r.returncode == 0 else None
        return {"rate": rate, "seed": seed, "ok": s is not None, "s": s,
                "wall": time.monotonic() - t0, "damaged": px.flipped + px.dropped + px.bursts,
                "err": r.stderr[-300:] if s is None else ""}


@pytest.mark.parametrize("plant", ["msd", "tendon"])
def test_closed_loop_over_a_corrupting_link(plant, tmp_path, summary):
    r = nnmpc("train", "--plant", plant, "--out", tmp_path / "m", "--epochs", "80")
    assert r.returncode == 0, r.stderr[-2000:]
    model = next((tmp_path / "m").glob("*.keras"))
    boards: list[subprocess.Popen] = []
    free: queue.Queue[int] = queue.Queue()
    try:
        for i in range(BOARDS):
            b, port = boot(model, tmp_path / f"board{i}")
            boards.append(b)
            free.put(port)

        def job(rate_seed):
            port = free.get()
            try:
                return run_once(plant, port, *rate_seed, tmp_path)
            finally:
                free.put(port)

        rows = [job((0.0, 0))]      # the clean run first, alone
        todo = [(rate, seed) for rate, runs in RATES.items() if rate for seed in range(runs)]
        with ThreadPoolExecutor(BOARDS) as pool:
            rows += list(pool.map(job, todo))
    finally:
        for b in boards:
            b.terminate()
            b.wait(timeout=10)
    clean = rows[0]["s"]
    assert clean is not None and clean["lost_frames"] == 0
    lines = [f"{plant}: clean {clean['tracking_rms']:.4g} mm"]
    failures = []
    for rate in RATES:
        if rate == 0.0:
            continue
        rs = [r for r in rows if r["rate"] == rate]
        done = [r for r in rs if r["ok"] and r["s"]["periods"] == 800
                and r["s"]["device_periods"] == 800]        # both sides count 800 periods
        rel = [r["s"]["tracking_rms"] / clean["tracking_rms"] - 1 for r in done]
        lost = [r["s"]["lost_frames"] for r in done]
        rms = sorted(r["s"]["tracking_rms"] for r in done)
        lines.append(f"  {rate:.1%}: {len(done)}/{len(rs)} complete, tracking "
                     f"{min(rel, default=0):+.1%}..{max(rel, default=0):+.1%} of clean "
                     f"(median {rms[len(rms) // 2] if rms else float('nan'):.4g} mm), "
                     f"periods lost {min(lost, default=0)}..{max(lost, default=0)}, "
                     f"brief {min((r['s'].get('brief_periods', 0) for r in done), default=0)}.."
                     f"{max((r['s'].get('brief_periods', 0) for r in done), default=0)}, "
                     f"wall {max(r['wall'] for r in rs):.0f} s max")
        if rate in BOUND:
            if len(done) != len(rs):
                failures.append([r["err"] for r in rs if not r["ok"]])
            if max((abs(v) for v in rel), default=1.0) > BOUND[rate]:
                failures.append(f"{rate:.1%}: tracking beyond {BOUND[rate]:.0%} of clean")
        elif len(done) < 0.9 * len(rs):
            failures.append(f"{rate:.1%}: {len(done)}/{len(rs)} complete (target >= 90 %)")
    summary("\n".join(lines))
    assert not failures, (lines, failures)
