"""Closed-loop benchmarks of the on-device controllers: tracking and cycles per period from
one run, with the real-time budget active.

    .venv/bin/python bench/mpc_bench.py [options of `nnmpc bench --loop`]
    .venv/bin/python bench/mpc_bench.py --markdown-only     # mpc_results.md from the JSON

The same as ``nnmpc bench --loop`` (host/bench/loopbench.py; docs/BENCH.md): the firmware
image in the Cortex-M4 instruction counter in a closed loop with the simulated plant, the time
budget of each plant's stated rate active on the cycle-estimated clock, every row the median
of three training seeds. The full run writes ``mpc_results.json`` (the rows),
``mpc_results.meta.json`` and ``mpc_results.md`` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnmpc.host.bench import loopbench as LB  # noqa: E402
from nnmpc.host.bench.loopcount import (BUDGET_US, CLOCK_HZ, UnicornLoop,  # noqa: E402,F401
                                         count_loop)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--markdown-only" in argv:
        rows, meta = LB.read(LB.JSON_PATH)
        LB.MD_PATH.write_text(LB.markdown(rows, meta))
        print(f"wrote {LB.MD_PATH}")
        return 0
    from nnmpc.host.cli import main as cli_main
    return cli_main(["bench", "--loop", *argv])


if __name__ == "__main__":
    sys.exit(main())
