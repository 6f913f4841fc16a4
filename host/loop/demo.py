"""`nnmpc demo`: the whole path once, for real.

Train a forward-kinematics MLP for the 2-link arm, compile it to C, build Cortex-M4F firmware,
run it in QEMU, query it over serial and compare every answer with TensorFlow; then close the
loop: the firmware's Newton MPC inverts the same net to make the simulated arm trace a circle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnmpc.compiler import compile_model

from ..build.boards import load_board
from ..link.client import DeviceClient
from ..build.firmware import build_firmware
from ..plants import get_plant
from ..progress import Progress, step
from ..link.qemu import QemuBoard
from ..learn.train import train_mlp


@dataclass
class DemoResult:
    max_abs_err: float
    max_rel_err: float
    jac_max_err: float
    val_rmse_mm: np.ndarray
    flash: int
    ram: int
    rtt_ms_median: float
    rtt_ms_p95: float
    queries: int
    loop: dict | None = None       # closed-loop summary (Newton MPC), if run
    loop_pid: dict | None = None   # the same reference under the PID baseline
    loop_plot: Path | None = None


def fk_dataset(plant, n: int, rng: np.random.Generator):
    u = rng.uniform(plant.u_low, plant.u_high, size=(n, len(plant.inputs)))
    y = np.array([plant.measure(plant.steady_state(ui), ui, rng) for ui in u])
    return u.astype(np.float32), y.astype(np.float32)


def run_demo(out: Path, board_name: str = "qemu-m4f", samples: int = 4000, queries: int = 1000,
             epochs: int = 150, seed: int = 0, closed_loop: bool = True) -> DemoResult:
    out.mkdir(parents=True, exist_ok=True)
    board = load_board(board_name)
    plant = get_plant("arm2")
    rng = np.random.default_rng(seed)
    total = 6 if closed_loop else 5

    step(1, total, f"simulating {plant.description} ({samples} samples)")
    u, y = fk_dataset(plant, samples, rng)
    n_val = samples // 5
    u_tr, y_tr, u_val, y_val = u[n_val:], y[n_val:], u[:n_val], y[:n_val]

    step(2, total, "training forward-kinematics MLP 2 -> 32 tanh -> 32 tanh -> 2 (Keras)")
    with Progress("epochs", epochs) as bar:
        res = train_mlp(u_tr, y_tr, u_val, y_val, hidden=(32, 32), activation="tanh",
                        epochs=epochs, seed=seed, name="arm2_fk",
                        on_epoch=lambda e, loss, vl: bar.update(e + 1, f"val loss {vl:.2e}"))
    model_path = out / "arm2_fk.keras"
    res.model.save(model_path)
    print(f"      validation RMSE {', '.join(f'{v:.2f}' for v in res.val_rmse)} mm "
          f"after {res.epochs} epochs -> {model_path}")

    step(3, total, "compiling to C99")
    files = compile_model(model_path, out / "model", name="model")
    print(f"      wrote {', '.join(p.name for p in files)} in {out / 'model'}")

    step(4, total, f"building firmware for {board.name} ({board.core}, arm-none-eabi-gcc -O2)")
    img = build_firmware(board, out / "model", out / "firmware")
    print(f"      {img.elf}")

    x_q = u_val[:queries]  # validation inputs the net was not trained on
    step(5, total, f"running on {board.description}; {len(x_q)} queries over serial")
    y_tf = res.model.predict(x_q, verbose=0)
    keras_jac = _keras_jacobian(res.model, x_q[:20])
    rtts, y_dev = [], []
    with QemuBoard(img.elf, board) as port:
        client = DeviceClient(port)
        hello = client.hello()
        print(f"      HELLO: board {hello.board}, firmware {hello.firmware_version}, "
              f"model {hello.model_hash}, {hello.n_in} in / {hello.n_out} out")
        with Progress("queries", len(x_q)) as bar:
            for i, xi in enumerate(x_q):
                t0 = time.perf_counter()
                y_dev.append(client.predict(xi))
                rtts.append(time.perf_counter() - t0)
                if i % 50 == 49 or i == len(x_q) - 1:
                    bar.update(i + 1)
        jac_dev = np.array([client.predict_jacobian(xi)[1] for xi in x_q[:20]])
        client.exit()
    y_dev = np.array(y_dev)
    err = np.abs(y_dev - y_tf)
    rtt = np.array(rtts) * 1e3
    loop = loop_pid = loop_plot = None
    if closed_loop:
        from ..loop import run_on_board

        step(6, total, "closing the loop: Newton MPC on the device inverts the net to trace a "
                       "circle with the simulated arm (hardware-in-the-loop over serial)")
        quiet = lambda *a, **k: None  # noqa: E731
        runs = {}
        for ctrl in ("nr", "pid"):
            r = run_on_board("arm2", ctrl, "sine", model=str(out / "model"), board_name=board_name,
                             work=out / "run", log_path=out / f"arm2_{ctrl}.csv", seed=seed,
                             log=quiet)
            runs[ctrl] = r
            print(f"      {ctrl:>3}: path error RMS {r.summary['path_error_rms']:.3f} mm, max "
                  f"{r.summary['path_error_max']:.3f} mm over {r.summary['periods']} periods")
        loop, loop_pid, loop_plot = runs["nr"].summary, runs["pid"].summary, runs["nr"].png
    return DemoResult(
        max_abs_err=float(err.max()),
        # Float32 rounding scales with the magnitude of the terms summed, not with |y| (raw-unit
        # outputs near zero come from cancelling terms of hundreds of mm), so the error is
        # judged against each output channel's range.
        max_rel_err=float((err / (1.0 + np.abs(y_tf).max(axis=0))).max()),
        jac_max_err=float((np.abs(jac_dev - keras_jac) / (1.0 + np.abs(keras_jac))).max()),
        val_rmse_mm=res.val_rmse, flash=img.size.flash, ram=img.size.ram,
        rtt_ms_median=float(np.median(rtt)), rtt_ms_p95=float(np.percentile(rtt, 95)),
        queries=len(x_q), loop=loop, loop_pid=loop_pid, loop_plot=loop_plot,
    )


def _keras_jacobian(model, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt)
    return tape.batch_jacobian(y, xt).numpy()


def print_summary(r: DemoResult, board_name: str = "qemu-m4f") -> None:
    board = load_board(board_name)
    ok = r.max_rel_err <= 1e-5
    print()
    print("Result (firmware in QEMU vs TensorFlow)")
    print(f"  outputs compared     {r.queries} x 2")
    print(f"  max abs error        {r.max_abs_err:.3g} mm = {r.max_rel_err:.2g} of the output range"
          f" (tolerance 1e-5) -> {'AGREE' if ok else 'DISAGREE'}")
    print(f"  Jacobian vs GradientTape  max err {r.jac_max_err:.3g} (relative to 1+|J|)")
    print(f"  model validation RMSE {', '.join(f'{v:.2f}' for v in r.val_rmse_mm)} mm")
    print(f"  flash                {r.flash:>7} B of {board.flash_bytes} B "
          f"({100 * r.flash / board.flash_bytes:.2f} %)")
    print(f"  RAM                  {r.ram:>7} B of {board.ram_bytes} B "
          f"({100 * r.ram / board.ram_bytes:.2f} %, 8 KB of it stack)")
    print(f"  serial round trip    {r.rtt_ms_median:.2f} ms median, {r.rtt_ms_p95:.2f} ms p95")
    if r.loop is not None:
        st = ", ".join(f"{k} {v}" for k, v in r.loop["status_counts"].items())
        print("Closed loop (Newton MPC on the device, arm simulated on the host, 100 Hz)")
        print(f"  path error           {r.loop['path_error_rms']:.3f} mm RMS, "
              f"{r.loop['path_error_max']:.3f} mm max  (PID on the same circle: "
              f"{r.loop_pid['path_error_rms']:.3f} mm RMS)")
        print(f"  solver               {r.loop['iterations_mean']} iterations mean, "
              f"{r.loop['iterations_max']} max; {st}; {r.loop['lost_frames']} frames lost")
        print(f"  plot                 {r.loop_plot}")
