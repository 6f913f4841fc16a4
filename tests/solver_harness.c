/* Test driver for firmware/solver: analytic "nets" with exact Jacobians and a line-based
 * command interpreter on stdin (see tests/test_solver.py). Built with the host cc. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmpc_solver.h"

static uint32_t g_clock;
static int g_model;
static float g_nan_above = 1e30f;
static uint32_t g_jac_cost = 100u;  /* ticks of a predict_jacobian call ("jaccost") */
static long g_spike_in, g_spike;    /* the g_spike_in-th plain call from now adds g_spike */

/* Every net call advances the fake clock by 100 ticks (a Jacobian call by g_jac_cost): the
 * budget tests count work. "spike K T" makes the K-th plain call from now take T ticks more
 * (T < 0: the clock goes back by -T, as a clock that misses a reload does). */
static uint32_t fake_clock(void *ctx)
{
    (void)ctx;
    return g_clock;
}

/* Model 0 "quad": y = [u0 + 0.5 sin(u1), u1^3/3 + 0.2 u0]; nz = 2 (quasi-static). */
/* Model 1 "arx":  y+ = 1.5 y - 0.6 y- + 0.2 u + 0.1 u-;      nz = 4 (na = nb = 2). */
/* Model 2 "nl":   y+ = 0.8 y + 0.5 tanh(u) + 0.1 u-;         nz = 3 (na = 1, nb = 2). */
/* Model 3 "tank": 2 outputs, 2 inputs, na = nb = 1: coupled tanh dynamics; nz = 4. */
static void net(const float *z, float *y, float *J)
{
    g_clock += J ? g_jac_cost : 100u;
    if (!J && g_spike_in > 0 && --g_spike_in == 0) {
        g_clock += (uint32_t)g_spike;
    }
    switch (g_model) {
    case 0:
        y[0] = z[0] + 0.5f * sinf(z[1]);
        y[1] = z[1] * z[1] * z[1] / 3.0f + 0.2f * z[0];
        if (J) {
            J[0] = 1.0f; J[1] = 0.5f * cosf(z[1]);
            J[2] = 0.2f; J[3] = z[1] * z[1];
        }
        if (z[0] > g_nan_above || z[1] > g_nan_above) {
            y[0] = NAN;
        }
        break;
    case 1:
        y[0] = 1.5f * z[0] - 0.6f * z[1] + 0.2f * z[2] + 0.1f * z[3];
        if (J) {
            J[0] = 1.5f; J[1] = -0.6f; J[2] = 0.2f; J[3] = 0.1f;
        }
        break;
    case 2: {
        const float t = tanhf(z[1]);
        y[0] = 0.8f * z[0] + 0.5f * t + 0.1f * z[2];
        if (J) {
            J[0] = 0.8f; J[1] = 0.5f * (1.0f - t * t); J[2] = 0.1f;
        }
        break;
    }
    default: {
        /* z = [y0, y1, u0, u1] */
        const float a = tanhf(z[2] - 0.3f * z[3]), b = tanhf(z[3]);
        y[0] = 0.7f * z[0] + 0.1f * z[1] + 0.4f * a;
        y[1] = 0.2f * z[0] + 0.6f * z[1] + 0.3f * b + 0.1f * z[2];
        if (J) {
            J[0] = 0.7f; J[1] = 0.1f; J[2] = 0.4f * (1 - a * a); J[3] = -0.12f * (1 - a * a);
            J[4] = 0.2f; J[5] = 0.6f; J[6] = 0.1f; J[7] = 0.3f * (1 - b * b);
        }
        break;
    }
    }
}

static void predict(const float *z, float *y) { net(z, y, NULL); }
static void predict_jacobian(const float *z, float *y, float *J) { net(z, y, J); }

static int read_floats(char *rest, float *out, int max)
{
    int n = 0;
    char *tok = strtok(rest, " \t\n");
    while (tok && n < max) {
        out[n++] = strtof(tok, NULL);
        tok = strtok(NULL, " \t\n");
    }
    return n;
}

static void print_result(const nnmpc_mpc_t *s, int st)
{
    int i;
    printf("status %d iter %d evals %d ticks %u cost %.9g u", st, s->iterations, s->evaluations,
           (unsigned)s->ticks, (double)s->cost);
    for (i = 0; i < s->cfg.m; ++i) {
        printf(" %.9g", (double)s->u_out[i]);
    }
    printf(" U");
    for (i = 0; i < s->cfg.m * s->cfg.moves; ++i) {
        printf(" %.9g", (double)s->U[i]);
    }
    printf("\n");
    fflush(stdout);
}

static nnmpc_mpc_t g_s;

int main(void)
{
    static const int nz[4][3] = {{2, 2, 0}, {4, 1, 2}, {3, 1, 1}, {4, 2, 1}}; /* nz, p, na */
    nnmpc_mpc_config_t cfg;
    nnmpc_net_t n;
    char line[2048];
    float v[64];
    int k;
    nnmpc_mpc_defaults(&cfg, 1, 1);
    n.predict = predict;
    n.predict_jacobian = predict_jacobian;
    while (fgets(line, sizeof(line), stdin)) {
        char cmd[32];
        char *rest;
        if (sscanf(line, "%31s", cmd) != 1) {
            continue;
        }
        rest = line + strlen(cmd);
        k = read_floats(rest, v, 64);
        if (!strcmp(cmd, "model")) {
            g_model = (int)v[0];
            n.n_in = nz[g_model][0];
            n.n_out = nz[g_model][1];
        } else if (!strcmp(cmd, "dims")) {
            cfg.p = (uint8_t)v[0]; cfg.m = (uint8_t)v[1]; cfg.na = (uint8_t)v[2];
            cfg.nb = (uint8_t)v[3]; cfg.horizon = (uint8_t)v[4]; cfg.moves = (uint8_t)v[5];
        } else if (!strcmp(cmd, "q")) {
            memcpy(cfg.q, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "r")) {
            memcpy(cfg.r, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "s")) {
            memcpy(cfg.s, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "unom")) {
            memcpy(cfg.u_nom, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "lo")) {
            memcpy(cfg.u_lo, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "hi")) {
            memcpy(cfg.u_hi, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "bias")) {
            cfg.bias_gain = v[0];
        } else if (!strcmp(cmd, "lag")) {
            cfg.lag = v[0];
        } else if (!strcmp(cmd, "yfilter")) {
            cfg.y_filter = v[0];
        } else if (!strcmp(cmd, "iter")) {
            cfg.max_iter = (uint16_t)v[0];
            cfg.tol_step = v[1];
            cfg.tol_cost = v[2];
        } else if (!strcmp(cmd, "budget")) {
            cfg.budget_ticks = (uint32_t)v[0];
            cfg.clock = fake_clock;
        } else if (!strcmp(cmd, "ylo")) {
            memcpy(cfg.y_lo, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "yhi")) {
            memcpy(cfg.y_hi, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "jaccost")) {
            g_jac_cost = (uint32_t)v[0];
        } else if (!strcmp(cmd, "spike")) {
            g_spike_in = (long)v[0];
            g_spike = (long)v[1];
        } else if (!strcmp(cmd, "tpred")) {
            printf("tpred %u %d\n", (unsigned)g_s.t_pred, g_s.t_stale);
        } else if (!strcmp(cmd, "dist")) {
            printf("dist");
            for (k = 0; k < g_s.cfg.p; ++k) {
                printf(" %.9g", (double)g_s.d[k]);
            }
            printf("\n");
        } else if (!strcmp(cmd, "nanabove")) {
            g_nan_above = v[0];
        } else if (!strcmp(cmd, "init")) {
            printf("init %d\n", nnmpc_mpc_init(&g_s, &n, &cfg));
        } else if (!strcmp(cmd, "reset")) {
            nnmpc_mpc_reset(&g_s, v, v + g_s.cfg.p);
        } else if (!strcmp(cmd, "ref")) {
            nnmpc_mpc_set_ref(&g_s, (int)v[0], v + 1);
        } else if (!strcmp(cmd, "warm")) {
            memcpy(g_s.U, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "solve")) {
            print_result(&g_s, nnmpc_mpc_solve(&g_s));
        } else if (!strcmp(cmd, "step")) {
            print_result(&g_s, nnmpc_mpc_step(&g_s, v));
        } else if (!strcmp(cmd, "fdstep")) {
            print_result(&g_s, nnmpc_mpc_step_fd(&g_s, v + 1, v[0]));
        } else if (!strcmp(cmd, "cost")) {
            printf("cost %.9g\n", (double)nnmpc_mpc_cost(&g_s, v));
        }
        fflush(stdout);
    }
    return 0;
}
