/* Test driver for firmware/control (with the solver it calls): a one-output, one-input static
 * "net" y = 2 u and a line-based command interpreter on stdin (see tests/test_control.py).
 * Built with the host cc. Commands:
 *   init HZ                    nnmpc_control_init with a clock of HZ ticks per second
 *   config CTRL PERIOD BUDGET  CONFIG (controller 0 nr / 1 pid / 2 fd, period_us, budget_us):
 *                              prints "config RC BUDGET_TICKS PERIOD_US_KEPT BUDGET_US_KEPT"
 *   pid KP KI KD BIAS [KFF KDFF YBIAS LEAD]  PID gains (mix = 1), feed-forward (default 0)
 *   limits LO HI INIT          input box and start input
 *   ylim LO HI                 the solver's plausible measurement range (both 0: default)
 *   ref R                      constant reference
 *   start                      prints "start RC"
 *   period Y                   one period: prints "tel STATUS U INTEG RESIDUAL"
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmpc_control.h"

static void predict_jacobian(const float *z, float *y, float *J)
{
    y[0] = 2.0f * z[0];
    if (J) {
        J[0] = 2.0f;
    }
}
static void predict(const float *z, float *y) { predict_jacobian(z, y, NULL); }

static uint32_t g_ticks;
static uint32_t clock_fn(void) { return g_ticks += 10u; }

static nnmpc_control_t g_c;

int main(void)
{
    nnmpc_net_t net;
    char line[512];
    net.n_in = 1;
    net.n_out = 1;
    net.predict = predict;
    net.predict_jacobian = predict_jacobian;
    while (fgets(line, sizeof(line), stdin)) {
        char cmd[32];
        double v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int n = sscanf(line, "%31s %lf %lf %lf %lf %lf %lf %lf %lf", cmd, &v[0], &v[1], &v[2],
                       &v[3], &v[4], &v[5], &v[6], &v[7]);
        if (n < 1) {
            continue;
        }
        if (!strcmp(cmd, "init")) {
            nnmpc_control_init(&g_c, &net, clock_fn, (uint32_t)v[0]);
        } else if (!strcmp(cmd, "config")) {
            nnmpc_config_req_t m;
            int rc;
            memset(&m, 0, sizeof(m));
            m.controller = (uint8_t)v[0];
            m.source = 0;
            m.p = 1;
            m.m = 1;
            m.na = 0;
            m.nb = 1;
            m.horizon = 1;
            m.moves = 1;
            m.period_us = (uint32_t)v[1]; /* 0 .. 2^32 - 1: exact in a double */
            m.budget_us = (uint32_t)v[2];
            m.max_iter = 10;
            m.telemetry_every = 1;
            m.fd_eps = 1e-3f;
            rc = nnmpc_control_config(&g_c, &m);
            printf("config %d %u %u %u\n", rc, (unsigned)g_c.mpc_cfg.budget_ticks,
                   (unsigned)g_c.config.period_us, (unsigned)g_c.config.budget_us);
        } else if (!strcmp(cmd, "pid")) {
            nnmpc_pid_req_t m;
            memset(&m, 0, sizeof(m));
            m.kp[0] = (float)v[0];
            m.ki[0] = (float)v[1];
            m.kd[0] = (float)v[2];
            m.u_bias[0] = (float)v[3];
            m.mix[0] = 1.0f;
            m.kff[0] = (float)v[4];
            m.kdff[0] = (float)v[5];
            m.y_bias[0] = (float)v[6];
            m.lead = (uint16_t)v[7];
            printf("pid %d\n", nnmpc_control_set_pid(&g_c, &m));
        } else if (!strcmp(cmd, "limits")) {
            nnmpc_limits_req_t m;
            memset(&m, 0, sizeof(m));
            m.u_lo[0] = (float)v[0];
            m.u_hi[0] = (float)v[1];
            m.u_init[0] = (float)v[2];
            printf("limits %d\n", nnmpc_control_limits(&g_c, &m));
        } else if (!strcmp(cmd, "ylim")) {
            g_c.mpc_cfg.y_lo[0] = (float)v[0];
            g_c.mpc_cfg.y_hi[0] = (float)v[1];
        } else if (!strcmp(cmd, "ref")) {
            nnmpc_reference_req_t m;
            memset(&m, 0, sizeof(m));
            m.ref[0] = (float)v[0];
            printf("ref %d\n", nnmpc_control_reference(&g_c, &m));
        } else if (!strcmp(cmd, "traj")) {
            /* traj T: the reference 0.5 sin(0.1 k) for k < T, uploaded before the start */
            static nnmpc_trajectory_req_t m;
            int k;
            memset(&m, 0, sizeof(m));
            m.total = (uint16_t)v[0];
            m.rows_count = m.total;
            for (k = 0; k < m.total; ++k) {
                m.rows[k] = (float)(0.5 * sin(0.1 * k));
            }
            printf("traj %d\n", nnmpc_control_trajectory(&g_c, &m));
        } else if (!strcmp(cmd, "start")) {
            printf("start %d\n", nnmpc_control_start(&g_c));
        } else if (!strcmp(cmd, "period")) {
            static nnmpc_telemetry_evt_t t;
            float y = strtof(line + strlen("period"), NULL);
            nnmpc_control_period(&g_c, &y, &t);
            printf("tel %d %.9g %.9g %.9g\n", t.status, (double)g_c.u[0], (double)g_c.integ[0],
                   (double)t.residual);
        }
        fflush(stdout);
    }
    return 0;
}
