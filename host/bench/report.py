"""The benchmark's reports: docs/BENCH.md (markdown) and bench/results.json."""

from __future__ import annotations

import json
from pathlib import Path

from .netbench import TARGET_INT8, TARGETS


def _k(v: float) -> str:
    return f"{v / 1000:.1f}k"


IMPL_NOTES = {
    "nnmpc": "`nnmpc compile` output as generated (Jacobian mode `auto`)",
    "nnmpc-fwd": "the same net compiled with `jacobian=\"forward\"` (the tangent kernels)",
    "nnmpc-int8": "TFLite full-integer export compiled by nnmpc (predict only)",
    "naive": "naive C loops, same weights and flags (the baseline)",
}


def markdown(res: dict) -> str:
    L = ["# nnmpc benchmark: Cortex-M4F", "",
         f"Generated {res['date']} by `{res['command']}` (machine-readable: `bench/results.json`).",
         "", "Cycle figures are **estimates**: instructions counted one by one in an emulated "
         "Cortex-M4 and costed with the table below (no wait states, no bus contention). "
         "Flash and RAM of a model are its image minus the same image with empty functions "
         "(so they include the runtime kernels and any library code the model pulls in).", "",
         f"- Target: {res['target']}; compiler: {res['compiler']}",
         f"- Flags: `{' '.join(res['cflags'])}`",
         f"- Counter: {res['counter']}",
         f"- Weights: {res['weights']}",
         f"- Inputs: {res['inputs']}",
         f"- Cost table: {res['cost_table']}", "",
         "Implementations: " + "; ".join(f"**{k}**: {v}" for k, v in IMPL_NOTES.items()) + ".", ""]
    L += ["## Results", "",
          "| net | impl | predict instr | predict cycles (est.) | jacobian instr | jacobian cycles (est.) "
          "| flash (predict) | flash (predict + jacobian) | static RAM | stack predict / jacobian "
          "| max error y / J |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, n in res["nets"].items():
        for impl, e in n["impl"].items():
            j = e.get("jacobian")
            err = f"{e['max_rel_err_y_vs_tf']:.1e}"
            if "max_rel_err_J_vs_tf" in e:
                err += f" / {e['max_rel_err_J_vs_tf']:.1e}"
            if "max_abs_err_y_vs_tflite" in e:
                err += f" (vs TFLite int8: {e['max_abs_err_y_vs_tflite']:.1e})"
            L.append(f"| {key} | {impl} | {e['predict']['instructions']:.0f} | "
                     f"{e['predict']['cycles_est']:.0f} | "
                     f"{'%.0f' % j['instructions'] if j else '-'} | "
                     f"{'%.0f' % j['cycles_est'] if j else '-'} | {e['flash_predict']} B | "
                     f"{str(e['flash_predict_jacobian']) + ' B' if 'flash_predict_jacobian' in e else '-'} | "
                     f"{e['ram_static']} B | {e['predict']['stack_bytes']} / "
                     f"{j['stack_bytes'] if j else '-'} B | {err} |")
    L += ["", "Errors: max |c - tf| / (1 + |tf|) over the inputs against TensorFlow float32 "
          "(Jacobian by GradientTape); the int8 build also against the TFLite interpreter running "
          "the same .tflite. Counts are means over the inputs (max in the JSON); B's Jacobian "
          "depends on how many relu units are active.", "",
          "## Against the naive C loops (same run)", "",
          "| net | predict cycles | predict instr | jacobian cycles (auto / forward) | "
          "flash (predict) | nnmpc jacobian / predict |", "|---|---:|---:|---:|---:|---:|"]
    for key, n in res["nets"].items():
        r = n["ratio_to_naive"]
        jac = f"{r['jacobian_cycles_est']:.2f}x"
        if "nnmpc-fwd" in n["impl"]:
            jac += f" / {n['impl']['nnmpc-fwd']['jacobian']['cycles_est'] / n['impl']['naive']['jacobian']['cycles_est']:.2f}x"
        jop = f"{n['jacobian_over_predict']:.2f}"
        if "nnmpc-fwd" in n["impl"]:
            f = n["impl"]["nnmpc-fwd"]
            jop += f" (forward: {f['jacobian']['cycles_est'] / f['predict']['cycles_est']:.2f})"
        L.append(f"| {key} | {r['predict_cycles_est']:.2f}x | {r['predict_instructions']:.2f}x | "
                 f"{jac} | {r['flash_predict']:.2f}x | {jop} |")
        if "int8_predict_cycles_est" in r:
            L.append(f"| {key} int8 | {r['int8_predict_cycles_est']:.2f}x | | | "
                     f"{r['int8_flash_predict']:.2f}x | |")
    L += ["", "## Targets", "", "| net | target | measured | met |", "|---|---|---:|:---:|"]
    for key, n in res["nets"].items():
        e = n["impl"]["nnmpc"]
        if key in TARGETS:
            c = e["predict"]["cycles_est"]
            L.append(f"| {key} | predict <= {TARGETS[key]:,} cycles (est.) | {c:,.0f} | "
                     f"{'yes' if c <= TARGETS[key] else 'no'} |")
        L.append(f"| {key} | flash (predict) <= 4 B/param + 2 KB = {n['flash_budget']} B "
                 f"({n['params']} params) | {e['flash_predict']} B | "
                 f"{'yes' if e['flash_predict'] <= n['flash_budget'] else 'no'} |")
        jp = [("as generated, mode auto", n["jacobian_over_predict"])]
        for impl, label in (("nnmpc-fwd", "forward mode, for comparison"),):
            if impl in n["impl"]:
                f = n["impl"][impl]
                jp.append((label, f["jacobian"]["cycles_est"] / f["predict"]["cycles_est"]))
        for mode, v in jp:
            L.append(f"| {key} | jacobian <= 3x predict ({mode}) | {v:.2f}x | "
                     f"{'yes' if v <= 3 else 'no'} |")
        q = n["impl"].get("nnmpc-int8")
        if q and key in TARGET_INT8:
            c = q["predict"]["cycles_est"]
            L.append(f"| {key} int8 | predict <= {TARGET_INT8[key]:,} cycles (est.) | {c:,.0f} | "
                     f"{'yes' if c <= TARGET_INT8[key] else 'no'} |")
    L += ["", "## Nets", ""]
    for key, n in res["nets"].items():
        L.append(f"- **{key}**: {n['net']}, {n['params']} float32 parameters, seed {n['seed']}; "
                 f"the compiler's Jacobian mode for it: {n['jacobian_mode']}")
    L += ["", "## Notes", "",
          "- Reproduce with `nnmpc bench` (or `make bench`); it rebuilds everything under "
          "`build/bench` and rewrites this file and `bench/results.json`. `nnmpc bench A` runs "
          "one net; `--inputs`, `--seed` change the inputs.",
          '- The float kernels (`firmware/runtime/nnmpc_nn.c`) compute dense layers eight '
          "output rows at a time: eight inputs are loaded once for eight rows, each row's "
          'weights with one multiple load, products and sums with separate one-cycle VMUL/VADD '
          "(a fused VMLA costs three); relu is applied on the sums' bit patterns before the "
          'store. tanh and sigmoid share one loop, two elements per pass: expm1 by range '
          'reduction and a degree-6 polynomial, then one division; error a few float ulps. The '
          'forward-mode tangent keeps 12 sums (four rows by three columns) in registers; a '
          'layer with no zero derivative (tanh, linear) runs every row and input row with the '
          'kernel scaling and storing its four rows, any other skips output rows whose '
          'derivative is 0 and input rows that are all zero, so relu nets cost about '
          'active-outputs x active-inputs multiply-adds (docs/MPC.md, Results: what this made '
          'cheaper in the msd MPC).',
          "- The reverse-mode Jacobian runs `nnmpc_dense_adjoint_scaled` where a dense layer "
          "reads another dense layer's activation: W^T G for the rows of G a relu left non-zero, "
          "four gathered active inputs by four adjoint columns in registers, each scaled by the "
          "previous layer's derivative as it is stored (inputs a relu switched off are zero "
          "without any work), so a relu layer costs about active-outputs x active-inputs x "
          "OUTPUT_SIZE multiply-adds. The compiler picks the mode by an estimated cost "
          "(`jacobian_cost` in `compiler/backend/codegen.py`).",
          "- The int8 build runs `nnmpc_q8.h`: the input zero point is folded into the bias at "
          "compile time (b - zp sum_j W[i][j], exact in integers), four output rows at a time, "
          "each word of four weights widened by two SXTB16 and accumulated by two SMLAD "
          "against the input word widened the same way; requantisation in TFLite's "
          "single-rounding form shifting only the product's high word. Other targets compile "
          "the same arithmetic in plain C; outputs equal the TFLite reference interpreter's.",
          "- Jacobian counts of relu nets depend on the input (active units): the JSON has the "
          "mean and the max over the inputs; predict counts of A and B do not depend on it.",
          "- Peer figures quoted in the issue were measured with the same cost table; the naive "
          "column here is the same kind of baseline, rebuilt and counted in this run.", ""]
    L += LOOP_SECTION
    return "\n".join(L)


#: The closed-loop bench (``nnmpc bench --loop``), described at the end of docs/BENCH.md.
LOOP_SECTION = [
    "## The closed-loop bench (`nnmpc bench --loop`)", "",
    "Tracking and cost per period of the on-device controllers from one run: "
    "[bench/mpc_results.md](../bench/mpc_results.md) (rows in `bench/mpc_results.json`, the "
    "run's settings in `bench/mpc_results.meta.json`).", "",
    "```",
    "nnmpc bench --loop                                   # every row, 3 seeds; rewrites bench/mpc_results.*",
    "nnmpc bench --loop --plant msd --controller nr,pid   # some rows (printed; --json FILE to keep them)",
    "nnmpc bench --loop --plant msd --controller pid-ff   # the PID with feed-forward only",
    "nnmpc bench --loop --estimator                       # also nr with the Kalman filter on every NARX image",
    "nnmpc bench --loop --rate-hz 2000 --seeds 0 --periods 200 --json /tmp/q.json",
    "nnmpc bench --loop --compare-solver REV              # nr's cycles, solver of REV vs the working tree",
    "```", "",
    "- **What runs where.** The plant is simulated on the host; the controller is the emulated "
    "board's firmware image in the instruction counter (`host/bench/loopcount.py` on "
    "`host/bench/cortexm.py`), fed one SENSOR frame per period byte by byte, answering with "
    "one TELEMETRY frame; everything it executes is counted and costed with the table above. "
    "No hardware and no QEMU timing is involved.",
    "- **Budget.** Every row except `nr-nobudget` runs with the solver's time budget of its "
    "stated rate: the period minus 75 us for the frames (925 us at 1 kHz, 425 us at 2 kHz), on "
    "a SysTick clock the counter advances from the estimated cycles at 168 MHz. The plant and "
    "the nets keep their 10 ms period: the rate is the one the controller's work fits.",
    "- **Seeds.** Each row is the median of three training seeds (seed s trains the net and "
    "seeds the sensor noise), spread = max - min; worst period and 'stopped' are the worst "
    "over the seeds.",
    '- **Jacobian mode.** The bench compiles every net with `--jacobian forward`. The '
    "compiler's `auto` takes reverse mode for nets with fewer outputs than inputs (the "
    "msd, tendon and HASEL NARX nets), but the runtime's reverse kernel "
    '`nnmpc_dense_adjoint` runs a scalar loop for fewer than four adjoint columns (about '
    '19 cycles per multiply-add): a Jacobian of the msd net costs 18.3k cycles in reverse '
    'mode and 10.6k forward, of the tendon NARX net 26.3k and 15.4k, of the HASEL net '
    "(one output) 40.4k and 40.0k. In reverse mode the msd's 8-step Jacobian rollout "
    'alone takes 146k cycles and no line-search trial fits the 1 kHz budget (stopped in '
    'every period). The cost model (`jacobian_cost`) therefore counts a reverse-mode '
    'dense layer with fewer than four adjoint columns at `SCALAR_ADJOINT_COST` = 4.5 '
    'times its multiply-adds (the ratio measured on the msd net), so `auto` now picks '
    'forward mode for these nets and `nnmpc run` builds the image the bench measures; net '
    'B (four outputs) keeps reverse mode.',
    '- **PIDs.** `pid`, `pid-preview` (given r[k + P]) and `pid-ff` (with a feed-forward '
    'from the reference L periods further ahead: kff times the static inverse through the '
    "mixing matrix, kdff on the reference's step; docs/MPC.md) all run on the device and "
    'are tuned on a tuning reference that is neither scored reference; "nr against the '
    'best PID" and the 0.6x targets take the best of the three.',
    "- **Estimator.** The msd's nr also runs with the on-device extended Kalman filter "
    '(the image built with `NNMPC_ESTIMATOR`, the ESTIMATOR message sent): rows with '
    '`"estimator": true`, marked "+ EKF" in the report; `--estimator` adds them for every '
    'NARX image.',
    "- **Checks.** `tests/test_loopbench.py` re-runs a short form of a committed row (the "
    "first 150 periods of seed 0) against the committed JSON (RMS within 2 %, worst period "
    "within 3 %) and checks that the markdown is the one the JSON generates.", ""]


def write_results(res: dict, json_path: Path, md_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(res, indent=2) + "\n")
    md_path.write_text(markdown(res))
