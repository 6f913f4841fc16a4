"""Minimal progress display for long steps: a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress("training", total=200) as p: p.update(k, "loss 0.01")``."""

    def __init__(self, label: str, total: int, stream=None, width: int = 28,
                 enabled: bool = True) -> None:
        self.label, self.total, self.width = label, max(1, total), width
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self._last_pct = -1

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        frac = min(1.0, done / self.total)
        if self.tty:
            fill = int(frac * self.width)
            bar = "#" * fill + "." * (self.width - fill)
            self.stream.write(f"\r  {self.label:<14} [{bar}] {done:>5}/{self.total} {note:<30}")
            self.stream.flush()
        else:
            pct = int(frac * 4) * 25  # a line at 0/25/50/75/100 % in logs
            if pct != self._last_pct:
                self._last_pct = pct
                self.stream.write(f"  {self.label}: {pct}% {note}\n")

    def __enter__(self) -> "Progress":
        self.update(0)
        return self

    def __exit__(self, *exc) -> None:
        if self.tty and self.enabled:
            self.stream.write(f"  ({time.monotonic() - self.t0:.1f} s)\n")
            self.stream.flush()


def step(n: int, total: int, text: str) -> None:
    print(f"[{n}/{total}] {text}", flush=True)
