/* Host harness for the solver's extended Kalman filter (built with -DNNMPC_ESTIMATOR=1):
 * a linear "net" y[k+1] = W z read from stdin, commands one per line (tests/test_estimator.py).
 *   dims p m na nb N Nc | W w.. | kf q[p] r[p] qd[p] | bias g | weights q[p] r[m] | lo u[m] | hi u[m]
 *   iter n | estimator 0/1 | init | reset y[p] u[m] | ref y[p] | step y[p]
 * step prints: "st S u .. x .. P .. d .." (x: the lag vector the rollout starts from). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmpc_solver.h"

static float g_W[NNMPC_MAX_Y * NNMPC_MAX_Z];
static int g_p, g_nz;

static void net(const float *z, float *y, float *J)
{
    int i, j;
    for (i = 0; i < g_p; ++i) {
        float v = 0.0f;
        for (j = 0; j < g_nz; ++j) {
            v += g_W[i * g_nz + j] * z[j];
            if (J) {
                J[i * g_nz + j] = g_W[i * g_nz + j];
            }
        }
        y[i] = v;
    }
}

static void predict(const float *z, float *y) { net(z, y, NULL); }
static void predict_jacobian(const float *z, float *y, float *J) { net(z, y, J); }

int main(void)
{
    static nnmpc_mpc_t s;
    static nnmpc_mpc_config_t c;
    nnmpc_net_t n = {0, 0, predict, predict_jacobian};
    char line[4096];
    nnmpc_mpc_defaults(&c, 1, 1);
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32];
        float v[256];
        int k = 0, off = 0, used, i;
        if (sscanf(line, "%31s%n", cmd, &off) != 1) {
            continue;
        }
        while (k < 256 && sscanf(line + off, "%f%n", &v[k], &used) == 1) {
            off += used;
            ++k;
        }
        if (!strcmp(cmd, "dims")) {
            c.p = (uint8_t)v[0]; c.m = (uint8_t)v[1]; c.na = (uint8_t)v[2]; c.nb = (uint8_t)v[3];
            c.horizon = (uint8_t)v[4]; c.moves = (uint8_t)v[5];
            g_p = c.p;
            g_nz = c.na * c.p + c.nb * c.m;
            n.n_in = g_nz;
            n.n_out = g_p;
        } else if (!strcmp(cmd, "W")) {
            memcpy(g_W, v, sizeof(float) * (size_t)k);
        } else if (!strcmp(cmd, "kf")) {
            for (i = 0; i < c.p; ++i) {
                c.kf_q[i] = v[i];
                c.kf_r[i] = v[c.p + i];
                c.kf_qd[i] = v[2 * c.p + i];
            }
        } else if (!strcmp(cmd, "estimator")) {
            c.estimator = (uint8_t)v[0];
        } else if (!strcmp(cmd, "bias")) {
            c.bias_gain = v[0];
        } else if (!strcmp(cmd, "weights")) {
            for (i = 0; i < c.p; ++i) c.q[i] = v[i];
            for (i = 0; i < c.m; ++i) c.r[i] = v[c.p + i];
        } else if (!strcmp(cmd, "lo")) {
            for (i = 0; i < c.m; ++i) c.u_lo[i] = v[i];
        } else if (!strcmp(cmd, "hi")) {
            for (i = 0; i < c.m; ++i) c.u_hi[i] = v[i];
        } else if (!strcmp(cmd, "iter")) {
            c.max_iter = (uint16_t)v[0];
        } else if (!strcmp(cmd, "init")) {
            printf("init %d\n", nnmpc_mpc_init(&s, &n, &c));
        } else if (!strcmp(cmd, "reset")) {
            nnmpc_mpc_reset(&s, v, v + c.p);
        } else if (!strcmp(cmd, "refj")) {
            nnmpc_mpc_set_ref(&s, (int)v[0], v + 1);
        } else if (!strcmp(cmd, "ref")) {
            for (i = 1; i <= c.horizon; ++i) nnmpc_mpc_set_ref(&s, i, v);
        } else if (!strcmp(cmd, "step")) {
            const int st = nnmpc_mpc_step(&s, v), nx = c.na * c.p;
            printf("st %d u", st);
            for (i = 0; i < c.m; ++i) printf(" %.9g", (double)s.u_out[i]);
            printf(" x");
            for (i = 0; i < nx; ++i) printf(" %.9g", (double)s.yh[i / c.p][i % c.p]);
            printf(" P");
            for (i = 0; i < (nx + c.p) * (nx + c.p); ++i) printf(" %.9g", (double)s.P[i]);
            printf(" d");
            for (i = 0; i < c.p; ++i) printf(" %.9g", (double)s.d[i]);
            printf("\n");
            fflush(stdout);
        }
        fflush(stdout);
    }
    return 0;
}
