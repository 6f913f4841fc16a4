/*
 * Fuzz target for everything that reads bytes from the serial link: the frame decoder, the
 * generated message unpackers and the request handler with its control loop (settings,
 * start, sensor periods running the solver), over a small analytic model.
 *
 * libFuzzer: clang -fsanitize=fuzzer,address,undefined ... (LLVMFuzzerTestOneInput).
 * Without libFuzzer (-DNNMPC_FUZZ_MAIN): a deterministic driver that mutates valid frames
 * (bit flips, truncation, splices, garbage) for argv[1] iterations with seed argv[2]; built
 * with -fsanitize=address,undefined it stops at the first memory or UB error. With a folder
 * as argv[3] it also writes its first 200 inputs there as a libFuzzer seed corpus.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmpc_app.h"

/* Model: 2 outputs from [y0, y1, u] (na = 1, nb = 1, p = 2, m = 1): a saturating oscillator. */
static void predict_jacobian(const float *z, float *y, float *J)
{
    const float t = z[2] / (1.0f + (z[2] < 0 ? -z[2] : z[2]));
    const float dt = 1.0f / ((1.0f + (z[2] < 0 ? -z[2] : z[2])) * (1.0f + (z[2] < 0 ? -z[2] : z[2])));
    y[0] = 0.9f * z[0] + 0.1f * z[1] + 0.2f * t;
    y[1] = -0.1f * z[0] + 0.8f * z[1] + 0.1f * t;
    if (J) {
        J[0] = 0.9f; J[1] = 0.1f; J[2] = 0.2f * dt;
        J[3] = -0.1f; J[4] = 0.8f; J[5] = 0.1f * dt;
    }
}
static void predict(const float *z, float *y) { predict_jacobian(z, y, NULL); }

static const nnmpc_model_t g_model = {3, 2, "fuzzmodel", predict, predict_jacobian};
static nnmpc_control_t g_control;
static nnmpc_app_t g_app;
static uint32_t g_ticks;
static size_t g_out_bytes;
static int g_exited;
static unsigned long g_periods, g_requests, g_rejected;

static void sink(const uint8_t *d, size_t n)
{
    (void)d;
    g_out_bytes += n;
}
static void on_exit_cmd(int code) { (void)code; g_exited = 1; }
static uint32_t clock_fn(void) { return g_ticks += 37u; }

static void reset_app(void)
{
    memset(&g_app, 0, sizeof(g_app));
    g_app.model = &g_model;
    g_app.board = "fuzz";
    g_app.write = sink;
    g_app.exit = on_exit_cmd;
    g_app.clock = clock_fn;
    g_app.clock_hz = 1000000u;
    g_app.control = &g_control;
    if (nnmpc_app_init(&g_app) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i;
    reset_app();
    for (i = 0; i < size; ++i) {
        nnmpc_app_on_byte(&g_app, data[i]);
        if ((i & 15u) == 0) {
            nnmpc_app_poll(&g_app);
        }
    }
    g_periods += g_app.periods;
    g_requests += g_app.requests;
    g_rejected += g_app.rejected;
    /* Invariants: the applied input is finite and within the limits while running. */
    if (g_control.running) {
        int a;
        for (a = 0; a < g_control.config.m; ++a) {
            const float u = g_control.u[a];
            if (!(u >= g_control.mpc_cfg.u_lo[a] && u <= g_control.mpc_cfg.u_hi[a])) {
                fprintf(stderr, "input %d = %g outside [%g, %g]\n", a, (double)u,
                        (double)g_control.mpc_cfg.u_lo[a], (double)g_control.mpc_cfg.u_hi[a]);
                abort();
            }
        }
    }
    return 0;
}

#ifdef NNMPC_FUZZ_MAIN
static uint64_t g_rng;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() % 100000u) / 100000.0f; }

/* A valid frame of a random message type with plausible (or hostile) field values. */
static size_t valid_frame(uint8_t *wire, uint8_t seq)
{
    uint8_t pl[NNMPC_PAYLOAD_MAX];
    size_t n = 0;
    uint8_t type;
    switch (rnd() % 12u) {
    case 0: {
        nnmpc_config_req_t c;
        memset(&c, 0, sizeof(c));
        c.controller = (uint8_t)(rnd() % 4u);
        c.source = (uint8_t)(rnd() % 3u);
        c.p = 2; c.m = 1; c.na = 1; c.nb = 1;
        c.horizon = (uint8_t)(rnd() % 12u);
        c.moves = (uint8_t)(rnd() % 4u);
        c.period_us = rnd() % 3u == 0 ? 0u : rnd() % 5000u;
        c.budget_us = rnd() % 2000u;
        c.max_iter = (uint16_t)(rnd() % 6u);
        c.telemetry_every = (uint16_t)(1u + rnd() % 3u);
        c.fd_eps = rndf(-0.1f, 0.1f);
        if (rnd() % 8u == 0) c.p = (uint8_t)rnd();
        type = NNMPC_MSG_CONFIG;
        n = nnmpc_config_req_pack(&c, pl);
        break;
    }
    case 1: {
        nnmpc_weights_req_t w;
        int i;
        for (i = 0; i < NNMPC_CH; ++i) {
            w.q[i] = rndf(-0.1f, 2.0f); w.r[i] = rndf(0, 0.1f); w.s[i] = rndf(0, 0.1f);
            w.u_nom[i] = rndf(-1, 1);
        }
        w.bias_gain = rndf(-0.2f, 1.2f); w.tol_step = rndf(0, 1e-3f); w.lambda0 = rndf(0, 1);
        w.lag = rndf(-0.1f, 1.1f); w.y_filter = rndf(-0.1f, 1.1f);
        type = NNMPC_MSG_WEIGHTS;
        n = nnmpc_weights_req_pack(&w, pl);
        break;
    }
    case 2: {
        nnmpc_limits_req_t l;
        int i;
        for (i = 0; i < NNMPC_CH; ++i) {
            l.u_lo[i] = rndf(-3, 0); l.u_hi[i] = rndf(-0.5f, 3); l.u_init[i] = rndf(-1, 1);
        }
        type = NNMPC_MSG_LIMITS;
        n = nnmpc_limits_req_pack(&l, pl);
        break;
    }
    case 3: {
        nnmpc_trajectory_req_t t;
        uint16_t i;
        t.total = (uint16_t)(rnd() % 3000u);
        t.offset = (uint16_t)(rnd() % 3000u);
        t.rows_count = (uint16_t)(rnd() % 40u);
        for (i = 0; i < t.rows_count; ++i) t.rows[i] = rndf(-2, 2);
        type = NNMPC_MSG_TRAJECTORY;
        n = nnmpc_trajectory_req_pack(&t, pl);
        break;
    }
    case 4:
    case 5:
    case 6: {
        nnmpc_sensor_req_t s;
        s.k = rnd();
        s.y_count = (uint16_t)(rnd() % 8u == 0 ? rnd() % 5u : 2u);
        s.y[0] = rndf(-5, 5); s.y[1] = rndf(-5, 5);
        if (rnd() % 16u == 0) { uint32_t nan = 0x7fc00000u; memcpy(&s.y[0], &nan, 4); }
        s.y[2] = s.y[3] = 0.0f;
        type = NNMPC_MSG_SENSOR;
        n = nnmpc_sensor_req_pack(&s, pl);
        break;
    }
    case 7: {
        nnmpc_pid_req_t p;
        int i;
        for (i = 0; i < NNMPC_CH; ++i) {
            p.kp[i] = rndf(0, 3); p.ki[i] = rndf(0, 1); p.kd[i] = rndf(0, 1); p.u_bias[i] = 0;
        }
        for (i = 0; i < 16; ++i) p.mix[i] = rndf(-1, 1);
        type = NNMPC_MSG_PID;
        n = nnmpc_pid_req_pack(&p, pl);
        break;
    }
    case 8: {
        nnmpc_plant_req_t p;
        int i;
        p.kind = (uint8_t)(rnd() % 3u); p.substeps = (uint8_t)(rnd() % 5u); p.reserved = 0;
        p.dt = rndf(-0.01f, 0.05f);
        for (i = 0; i < 8; ++i) p.params[i] = rndf(-1, 10);
        type = NNMPC_MSG_PLANT;
        n = nnmpc_plant_req_pack(&p, pl);
        break;
    }
    case 9:
        type = (uint8_t)(rnd() % 2u ? NNMPC_MSG_START : NNMPC_MSG_STOP);
        break;
    case 10: {
        nnmpc_predict_req_t p;
        p.x_count = (uint16_t)(rnd() % 5u);
        p.x[0] = p.x[1] = p.x[2] = p.x[3] = rndf(-3, 3);
        type = (uint8_t)(rnd() % 2u ? NNMPC_MSG_PREDICT : NNMPC_MSG_JACOBIAN);
        n = nnmpc_predict_req_pack(&p, pl);
        break;
    }
    default:
        type = (uint8_t)(rnd() % 2u ? NNMPC_MSG_HELLO : (uint8_t)rnd());
        if (type == NNMPC_MSG_EXIT) type = NNMPC_MSG_STATS;
        n = rnd() % 4u == 0 ? rnd() % 16u : 0u;
        memset(pl, (int)(rnd() & 0xFFu), n);
        break;
    }
    return nnmpc_frame_encode(type, seq, pl, n, wire);
}

int main(int argc, char **argv)
{
    static uint8_t buf[1 << 14], wire[NNMPC_WIRE_MAX];
    const long iters = argc > 1 ? atol(argv[1]) : 1000;
    long it;
    g_rng = argc > 2 ? (uint64_t)atoll(argv[2]) * 2654435761u + 1u : 88172645463325252ull;
    for (it = 0; it < iters; ++it) {
        size_t len = 0;
        int frames = 1 + (int)(rnd() % 24u), f;
        for (f = 0; f < frames; ++f) {
            size_t n = valid_frame(wire, (uint8_t)f), j;
            switch (rnd() % 8u) {
            case 0: /* bit flips */
                for (j = 0; j < 1u + rnd() % 3u; ++j) wire[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8u));
                break;
            case 1: /* truncation */
                n = rnd() % n;
                break;
            case 2: /* garbage burst */
                for (j = 0; j < n; ++j) wire[j] = (uint8_t)rnd();
                break;
            default:
                break;
            }
            if (len + n + 1 > sizeof(buf)) break;
            memcpy(buf + len, wire, n);
            len += n;
            if (rnd() % 6u == 0) buf[len++] = 0;
        }
        LLVMFuzzerTestOneInput(buf, len);
        if (argc > 3 && it < 200) {
            /* Seed corpus for libFuzzer: CRC-valid frame streams it would not find alone. */
            char path[4096];
            FILE *fh;
            snprintf(path, sizeof(path), "%s/seed_%04ld", argv[3], it);
            fh = fopen(path, "wb");
            if (fh) {
                fwrite(buf, 1, len, fh);
                fclose(fh);
            }
        }
    }
    printf("fuzz: %ld inputs, %lu frames accepted, %lu rejected, %lu control periods, "
           "%lu output bytes, ok\n", iters, g_requests, g_rejected, g_periods,
           (unsigned long)g_out_bytes);
    return 0;
}
#endif
