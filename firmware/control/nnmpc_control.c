/* nnmpc control loop core. See nnmpc_control.h. */
#include "nnmpc_control.h"

#include <string.h>

/* The set-up handlers (configuration messages, start): run once per set-up, not in the
 * period's work, so compiled for size where the compiler knows how (GCC's cold). This keeps
 * the small-model image of the emulated board below 32 KiB. (Marking the solver's set-up
 * functions cold as well made GCC compile its solve for size too: 2-4 % more cycles.) */
#if defined(__GNUC__)
#define NNMPC_COLD __attribute__((cold))
#else
#define NNMPC_COLD
#endif

static int finite(float v)
{
    return v == v && v < 3.0e38f && v > -3.0e38f;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static uint32_t solver_clock(void *ctx)
{
    const nnmpc_control_t *c = (const nnmpc_control_t *)ctx;
    return c->clock ? c->clock() : 0u;
}

NNMPC_COLD
void nnmpc_control_init(nnmpc_control_t *c, const nnmpc_net_t *net, uint32_t (*clock)(void),
                        uint32_t clock_hz)
{
    int i;
    memset(c, 0, sizeof(*c));
    c->net = *net;
    c->clock = clock;
    c->clock_hz = clock_hz;
    nnmpc_mpc_defaults(&c->mpc_cfg, net->n_out, net->n_in);
    c->config.controller = NNMPC_CTRL_NR;
    c->config.source = NNMPC_SOURCE_HOST;
    c->config.p = (uint8_t)net->n_out;
    c->config.m = (uint8_t)net->n_in;
    c->config.na = 0;
    c->config.nb = 1;
    c->config.horizon = 1;
    c->config.moves = 1;
    c->config.max_iter = 10;
    c->config.telemetry_every = 1;
    c->config.fd_eps = 1e-3f;
    for (i = 0; i < NNMPC_CH; ++i) {
        c->pid.mix[i * NNMPC_CH + i] = 1.0f;
    }
}

static int all_finite(const float *v, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        if (!finite(v[i])) {
            return 0;
        }
    }
    return 1;
}

/* floor(us * clock_hz / 10^6) in 32-bit arithmetic only (no 64-bit division routine in the
 * image): clock_hz = q 10^6 + r, us = u1 2^12 + u0; every partial product stays below 2^32
 * for us <= NNMPC_MAX_TIME_US. Sets *ok = 0 when the result exceeds 2^31 - 1. */
uint32_t nnmpc_us_to_ticks(uint32_t us, uint32_t clock_hz, int *ok)
{
    const uint32_t M = 1000000u;
    const uint32_t q = clock_hz / M, r = clock_hz % M;
    const uint32_t u1 = us >> 12, u0 = us & 0xFFFu;
    const uint32_t a = u1 * r;                 /* < 2^12 * 10^6 */
    const uint32_t t1 = (a % M) << 12, t2 = u0 * r;
    uint32_t frac, ticks;
    if (us > NNMPC_MAX_TIME_US) {
        *ok = 0;
        return 0u;
    }
    frac = (a / M) * 4096u + t1 / M + t2 / M + ((t1 % M + t2 % M) >= M ? 1u : 0u);
    if (q && us > (0x7fffffffu - frac) / q) {
        *ok = 0;
        return 0u;
    }
    ticks = us * q + frac;
    if (ticks > 0x7fffffffu) {
        *ok = 0;
        return 0u;
    }
    return ticks;
}

/* Microseconds to ticks of the board's clock; 0 if the count does not fit in the signed
 * 32-bit tick arithmetic of the schedule and the budget (see NNMPC_MAX_TIME_US). */
static uint32_t us_to_ticks(uint32_t us, uint32_t clock_hz, int *ok)
{
    const uint32_t ticks = nnmpc_us_to_ticks(us, clock_hz, ok);
    return us && *ok && ticks == 0u ? 1u : ticks; /* a time is never rounded down to none */
}

NNMPC_COLD
int nnmpc_control_config(nnmpc_control_t *c, const nnmpc_config_req_t *m)
{
    int ok = 1;
    uint32_t budget_ticks;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    if (m->controller > NNMPC_CTRL_EXCITE || m->source > NNMPC_SOURCE_BOARD) {
        return NNMPC_ERR_BAD_VALUE;
    }
    if (m->p < 1 || m->p > NNMPC_MAX_Y || m->m < 1 || m->m > NNMPC_MAX_U ||
        m->na > NNMPC_MAX_LAG || m->nb < 1 || m->nb > NNMPC_MAX_LAG || m->horizon < 1 ||
        m->horizon > NNMPC_MAX_N || m->moves < 1 || m->moves > m->horizon ||
        m->max_iter < 1 || m->telemetry_every < 1 || !(m->fd_eps > 0.0f) || !finite(m->fd_eps)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    if (c->net.n_out != m->p || c->net.n_in != m->na * m->p + m->nb * m->m) {
        return NNMPC_ERR_BAD_VALUE;
    }
    /* period_us and budget_us: at most NNMPC_MAX_TIME_US (10 s) and at most 2^31 - 1 ticks
     * of the board's clock, else bad_value (a count that wrapped ran the loop back to back, or
     * made a budget of 171,798,692 us 4 ticks at 25 MHz). */
    (void)us_to_ticks(m->period_us, c->clock_hz, &ok);
    budget_ticks = us_to_ticks(m->budget_us, c->clock_hz, &ok);
    if (!ok) {
        return NNMPC_ERR_BAD_VALUE;
    }
    c->config = *m;
    c->mpc_cfg.p = m->p;
    c->mpc_cfg.m = m->m;
    c->mpc_cfg.na = m->na;
    c->mpc_cfg.nb = m->nb;
    c->mpc_cfg.horizon = m->horizon;
    c->mpc_cfg.moves = m->moves;
    c->mpc_cfg.max_iter = m->max_iter;
    c->mpc_cfg.budget_ticks = budget_ticks;
    c->mpc_cfg.clock = solver_clock;
    c->mpc_cfg.clock_ctx = c;
    return 0;
}

NNMPC_COLD
int nnmpc_control_weights(nnmpc_control_t *c, const nnmpc_weights_req_t *m)
{
    int i;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    for (i = 0; i < NNMPC_CH; ++i) {
        if (!(m->q[i] >= 0.0f) || !(m->r[i] >= 0.0f) || !(m->s[i] >= 0.0f) ||
            !finite(m->q[i]) || !finite(m->r[i]) || !finite(m->s[i]) || !finite(m->u_nom[i])) {
            return NNMPC_ERR_BAD_VALUE;
        }
    }
    if (!(m->bias_gain >= 0.0f && m->bias_gain <= 1.0f) || !(m->tol_step >= 0.0f) ||
        !finite(m->tol_step) || !(m->lambda0 >= 0.0f) || !finite(m->lambda0) ||
        !(m->lag >= 0.0f && m->lag < 1.0f) || !(m->y_filter >= 0.0f && m->y_filter < 1.0f)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    for (i = 0; i < NNMPC_MAX_Y; ++i) {
        c->mpc_cfg.q[i] = m->q[i];
    }
    for (i = 0; i < NNMPC_MAX_U; ++i) {
        c->mpc_cfg.r[i] = m->r[i];
        c->mpc_cfg.s[i] = m->s[i];
        c->mpc_cfg.u_nom[i] = m->u_nom[i];
    }
    c->mpc_cfg.bias_gain = m->bias_gain;
    c->mpc_cfg.tol_step = m->tol_step;
    c->mpc_cfg.lambda0 = m->lambda0;
    c->mpc_cfg.lag = m->lag;
    c->mpc_cfg.y_filter = m->y_filter;
    return 0;
}

NNMPC_COLD
int nnmpc_control_limits(nnmpc_control_t *c, const nnmpc_limits_req_t *m)
{
    int i;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    for (i = 0; i < NNMPC_CH; ++i) {
        if (!finite(m->u_lo[i]) || !finite(m->u_hi[i]) || !(m->u_lo[i] <= m->u_hi[i]) ||
            !(m->u_init[i] >= m->u_lo[i] && m->u_init[i] <= m->u_hi[i])) {
            return NNMPC_ERR_BAD_VALUE;
        }
    }
    for (i = 0; i < NNMPC_MAX_U; ++i) {
        c->mpc_cfg.u_lo[i] = m->u_lo[i];
        c->mpc_cfg.u_hi[i] = m->u_hi[i];
    }
    memcpy(c->u_init, m->u_init, sizeof(c->u_init));
    return 0;
}

NNMPC_COLD
int nnmpc_control_set_pid(nnmpc_control_t *c, const nnmpc_pid_req_t *m)
{
    const float *const per_ch[] = {m->kp, m->ki, m->kd, m->u_bias, m->kff, m->kdff, m->y_bias};
    unsigned i;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    for (i = 0; i < sizeof(per_ch) / sizeof(per_ch[0]); ++i) {
        if (!all_finite(per_ch[i], NNMPC_CH)) {
            return NNMPC_ERR_BAD_VALUE;
        }
    }
    if (!all_finite(m->mix, 16)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    c->pid = *m;
    return 0;
}

int nnmpc_control_reference(nnmpc_control_t *c, const nnmpc_reference_req_t *m)
{
    if (c->running) {
        return NNMPC_ERR_BUSY; /* it would drop the uploaded trajectory under the loop */
    }
    if (!all_finite(m->ref, NNMPC_CH)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    memcpy(c->ref, m->ref, sizeof(c->ref));
    c->traj_rows = 0;
    return 0;
}

int nnmpc_control_trajectory(nnmpc_control_t *c, const nnmpc_trajectory_req_t *m)
{
    const int p = c->config.p;
    const int rows = m->rows_count / p;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    if (m->rows_count % p != 0 || m->total < 1 || (uint32_t)m->total * (uint32_t)p > NNMPC_TRAJ_FLOATS ||
        (uint32_t)m->offset + (uint32_t)rows > m->total || !all_finite(m->rows, m->rows_count)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    memcpy(&c->traj[m->offset * p], m->rows, sizeof(float) * m->rows_count);
    c->traj_rows = m->total;
    return 0;
}

NNMPC_COLD
int nnmpc_control_set_plant(nnmpc_control_t *c, const nnmpc_plant_req_t *m)
{
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    if (m->kind > NNMPC_PLANT_MSD || m->substeps < 1 || !(m->dt > 0.0f) || !finite(m->dt) ||
        !all_finite(m->params, 8) || (m->kind == NNMPC_PLANT_MSD && !(m->params[0] > 0.0f))) {
        return NNMPC_ERR_BAD_VALUE;
    }
    c->plant = *m;
    return 0;
}

void nnmpc_control_plant_output(const nnmpc_control_t *c, float *y)
{
    int i;
    for (i = 0; i < c->config.p; ++i) {
        y[i] = c->px[i];
    }
}

/* Mass-spring-damper m x'' + c x' + k x = gain F; state (x, v); RK4 with substeps. */
static void msd_deriv(const float *prm, float F, const float *x, float *dx)
{
    dx[0] = x[1];
    dx[1] = (prm[3] * F - prm[1] * x[0] - prm[2] * x[1]) / prm[0];
}

static void plant_advance(nnmpc_control_t *c)
{
    const float *prm = c->plant.params;
    const float h = c->plant.dt / (float)c->plant.substeps;
    const float F = c->u[0];
    int s, i;
    if (c->plant.kind != NNMPC_PLANT_MSD) {
        return;
    }
    for (s = 0; s < c->plant.substeps; ++s) {
        float k1[2], k2[2], k3[2], k4[2], t[2];
        msd_deriv(prm, F, c->px, k1);
        for (i = 0; i < 2; ++i) t[i] = c->px[i] + 0.5f * h * k1[i];
        msd_deriv(prm, F, t, k2);
        for (i = 0; i < 2; ++i) t[i] = c->px[i] + 0.5f * h * k2[i];
        msd_deriv(prm, F, t, k3);
        for (i = 0; i < 2; ++i) t[i] = c->px[i] + h * k3[i];
        msd_deriv(prm, F, t, k4);
        for (i = 0; i < 2; ++i) {
            c->px[i] += (h / 6.0f) * (k1[i] + 2.0f * k2[i] + 2.0f * k3[i] + k4[i]);
        }
    }
}

NNMPC_COLD
int nnmpc_control_excite(nnmpc_control_t *c, const nnmpc_excite_req_t *m)
{
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    if (m->kind >= NNMPC_EXCITE_KINDS || !(m->amplitude > 0.0f && m->amplitude <= 1.0f) ||
        !finite(m->f_lo) || !finite(m->f_hi) || m->f_lo < 0.0f || m->f_hi < m->f_lo ||
        (m->kind == NNMPC_EXCITE_CHIRP && m->periods == 0u)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    c->excite.kind = m->kind;
    c->excite.hold = m->hold ? m->hold : 1u;
    c->excite.seed = m->seed;
    c->excite.periods = m->periods;
    c->excite.f_lo = m->f_lo;
    c->excite.f_hi = m->f_hi;
    c->excite_amp = m->amplitude;
    return 0;
}

static const float *ref_at(const nnmpc_control_t *c, uint32_t k);

NNMPC_COLD
int nnmpc_control_safety(nnmpc_control_t *c, const nnmpc_safety_req_t *m)
{
    int i;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    for (i = 0; i < NNMPC_CH; ++i) {
        if (!finite(m->u_safe[i]) || !finite(m->y_lo[i]) || !finite(m->y_hi[i])) {
            return NNMPC_ERR_BAD_VALUE;
        }
        if (i < NNMPC_MAX_U && (m->u_safe[i] < c->mpc_cfg.u_lo[i] || m->u_safe[i] > c->mpc_cfg.u_hi[i])) {
            return NNMPC_ERR_BAD_VALUE; /* send LIMITS first; the safe input is inside them */
        }
    }
    memcpy(c->u_safe, m->u_safe, sizeof(c->u_safe));
    c->link_timeout = m->link_timeout;
    for (i = 0; i < NNMPC_MAX_Y; ++i) {
        c->mpc_cfg.y_lo[i] = m->y_lo[i];
        c->mpc_cfg.y_hi[i] = m->y_hi[i];
    }
    return 0;
}

#if NNMPC_ESTIMATOR
NNMPC_COLD
int nnmpc_control_estimator(nnmpc_control_t *c, const nnmpc_estimator_req_t *m)
{
    int i;
    if (c->running) {
        return NNMPC_ERR_BUSY;
    }
    if (m->enable > 1) {
        return NNMPC_ERR_BAD_VALUE;
    }
    for (i = 0; i < NNMPC_CH; ++i) {
        if (!(m->q[i] >= 0.0f) || !finite(m->q[i]) || !(m->r[i] >= 0.0f) || !finite(m->r[i]) ||
            !(m->qd[i] >= 0.0f) || !finite(m->qd[i]) ||
            (m->enable && i < c->config.p && !(m->r[i] > 0.0f))) {
            return NNMPC_ERR_BAD_VALUE;
        }
    }
    if (m->enable && c->config.na == 0) {
        return NNMPC_ERR_BAD_VALUE; /* a quasi-static net has no output lags to estimate */
    }
    c->mpc_cfg.estimator = m->enable;
    for (i = 0; i < NNMPC_MAX_Y; ++i) {
        c->mpc_cfg.kf_q[i] = m->q[i];
        c->mpc_cfg.kf_r[i] = m->r[i];
        c->mpc_cfg.kf_qd[i] = m->qd[i];
    }
    return 0;
}
#endif

/* The telemetry's values: ref[p], y[p], u[m] of this period. */
static void telemetry_values(const nnmpc_control_t *c, const float *r, const float *y,
                             nnmpc_telemetry_evt_t *t)
{
    const int p = c->config.p, m = c->config.m;
    int i, n = 0;
    for (i = 0; i < p; ++i) {
        t->values[n++] = r[i];
    }
    for (i = 0; i < p; ++i) {
        t->values[n++] = y[i];
    }
    for (i = 0; i < m; ++i) {
        t->values[n++] = c->u[i];
    }
    t->values_count = (uint16_t)n;
    t->p = (uint8_t)p;
    t->m = (uint8_t)m;
}

void nnmpc_control_hold_safe(nnmpc_control_t *c, const float *y, nnmpc_telemetry_evt_t *t)
{
    const int m = c->config.m;
    const float *r = ref_at(c, c->k);
    int i;
    for (i = 0; i < m; ++i) { /* inside the limits as they are now (LIMITS may follow SAFETY) */
        c->u[i] = clampf(c->u_safe[i], c->mpc_cfg.u_lo[i], c->mpc_cfg.u_hi[i]);
    }
    t->k = c->k;
    t->controller = c->config.controller;
    t->flags = 0;
    t->status = NNMPC_STATUS_LINK_LOST;
    t->iterations = 0;
    t->residual = 0.0f;
    t->work = 0u;
    telemetry_values(c, r, y, t);
    c->k++;
}

/* Controller 3: u = middle + amplitude * half range * excitation, per input. */
static void excite_period(nnmpc_control_t *c)
{
    int a;
    c->excite.dt = c->config.period_us ? 1e-6f * (float)c->config.period_us : 0.01f;
    for (a = 0; a < c->config.m; ++a) {
        const float lo = c->mpc_cfg.u_lo[a], hi = c->mpc_cfg.u_hi[a];
        c->u[a] = 0.5f * (lo + hi) +
                  c->excite_amp * 0.5f * (hi - lo) * nnmpc_excite_value(&c->excite, c->k, a);
    }
}

NNMPC_COLD
int nnmpc_control_start(nnmpc_control_t *c)
{
    const int p = c->config.p, m = c->config.m;
    int i;
    if (c->config.source == NNMPC_SOURCE_DEVICE &&
        (c->plant.kind != NNMPC_PLANT_MSD || p != 2 || m != 1)) {
        return NNMPC_ERR_BAD_VALUE;
    }
    memset(c->px, 0, sizeof(c->px));
    if (c->config.source == NNMPC_SOURCE_DEVICE) {
        /* Start at rest under u_init. */
        c->px[0] = c->plant.params[3] * c->u_init[0] / (c->plant.params[1] > 0.0f ? c->plant.params[1] : 1.0f);
    }
    if (nnmpc_mpc_init(&c->mpc, &c->net, &c->mpc_cfg) != 0) {
        return NNMPC_ERR_BAD_VALUE;
    }
    {
        float y0[NNMPC_CH] = {0};
        if (c->config.source == NNMPC_SOURCE_DEVICE) {
            nnmpc_control_plant_output(c, y0);
        }
        nnmpc_mpc_reset(&c->mpc, y0, c->u_init);
        memcpy(c->y_prev, y0, sizeof(c->y_prev));
    }
    for (i = 0; i < NNMPC_CH; ++i) {
        c->u[i] = i < m ? c->u_init[i] : 0.0f;
        c->integ[i] = 0.0f;
    }
    c->pid_primed = 0;
    c->k = 0;
    c->running = 1;
    return 0;
}

void nnmpc_control_stop(nnmpc_control_t *c)
{
    c->running = 0;
}

static const float *ref_at(const nnmpc_control_t *c, uint32_t k)
{
    if (c->traj_rows == 0) {
        return c->ref;
    }
    if (k >= c->traj_rows) {
        k = (uint32_t)c->traj_rows - 1u;
    }
    return &c->traj[k * c->config.p];
}

/* PID per output, discrete gains, derivative on the measurement, mixed to the inputs;
 * the integrators only move while no input they drive is saturated. Feed-forward (an output
 * with kff or kdff non-zero): v += kff (r[k+lead] - y_bias) + kdff (r[k+lead+1] - r[k+lead])
 * from the trajectory buffer (its last row held); kff = 1 is the static inverse through mix
 * around (u_bias, y_bias). Both zero: the PID without it, the same operations. A measurement that the
 * solver's plausibility check refuses (non-finite, or outside [y_lo, y_hi] / |y| <=
 * NNMPC_Y_LIMIT) holds u and leaves the integrators and the derivative's memory alone: the
 * next good measurement carries on from the last good one. Returns the status. */
static uint8_t pid_period(nnmpc_control_t *c, const float *y, const float *r)
{
    const int p = c->config.p, m = c->config.m;
    const nnmpc_pid_req_t *g = &c->pid;
    /* The feed-forward's rows: r[k + lead] and the next one (the same at the last row). */
    const float *rl = ref_at(c, c->k + g->lead);
    const float *rl1 = c->traj_rows && c->k + g->lead + 1u < c->traj_rows ? rl + p : rl;
    float v[NNMPC_CH], u[NNMPC_CH];
    int i, a, sat = 0;
    if (!nnmpc_mpc_measurement_ok(&c->mpc_cfg, y)) {
        return NNMPC_SOLVE_BAD_MEASUREMENT;
    }
    if (!c->pid_primed) {
        /* No derivative kick: the first measurement is its own predecessor. */
        for (i = 0; i < p; ++i) {
            c->y_prev[i] = y[i];
        }
    }
    for (i = 0; i < p; ++i) {
        const float e = r[i] - y[i];
        v[i] = g->kp[i] * e + c->integ[i] + g->ki[i] * e - g->kd[i] * (y[i] - c->y_prev[i]);
        if (g->kff[i] != 0.0f || g->kdff[i] != 0.0f) {
            v[i] += g->kff[i] * (rl[i] - g->y_bias[i]) + g->kdff[i] * (rl1[i] - rl[i]);
        }
    }
    for (a = 0; a < m; ++a) {
        float s = g->u_bias[a];
        for (i = 0; i < p; ++i) {
            s += g->mix[a * NNMPC_CH + i] * v[i];
        }
        u[a] = clampf(s, c->mpc_cfg.u_lo[a], c->mpc_cfg.u_hi[a]);
        sat |= u[a] != s;
    }
    for (i = 0; i < p; ++i) {
        if (!sat) {
            c->integ[i] += g->ki[i] * (r[i] - y[i]);
        }
        c->y_prev[i] = y[i];
    }
    for (a = 0; a < m; ++a) {
        c->u[a] = finite(u[a]) ? u[a] : c->u[a];
    }
    c->pid_primed = 1;
    return NNMPC_SOLVE_CONVERGED;
}

void nnmpc_control_period(nnmpc_control_t *c, const float *y, nnmpc_telemetry_evt_t *t)
{
    const int p = c->config.p, m = c->config.m;
    const uint32_t t0 = c->clock ? c->clock() : 0u;
    const float *r = ref_at(c, c->k);
    int j, i;

    t->k = c->k;
    t->controller = c->config.controller;
    t->flags = 0;
    if (c->config.controller == NNMPC_CTRL_EXCITE) {
        excite_period(c);
        t->status = NNMPC_SOLVE_CONVERGED;
        t->iterations = 0;
        t->residual = 0.0f;
    } else if (c->config.controller == NNMPC_CTRL_PID) {
        t->status = pid_period(c, y, r);
        t->iterations = 0;
        t->residual = 0.0f;
        for (i = 0; i < p && t->status == NNMPC_SOLVE_CONVERGED; ++i) {
            const float e = r[i] - y[i];
            t->residual += c->mpc_cfg.q[i] * e * e;
        }
    } else {
        for (j = 1; j <= c->config.horizon; ++j) {
            nnmpc_mpc_set_ref(&c->mpc, j, ref_at(c, c->k + (uint32_t)j));
        }
        if (c->config.controller == NNMPC_CTRL_FD) {
            nnmpc_mpc_step_fd(&c->mpc, y, c->config.fd_eps);
        } else {
            nnmpc_mpc_step(&c->mpc, y);
        }
        for (i = 0; i < m; ++i) {
            c->u[i] = c->mpc.u_out[i];
        }
        t->iterations = (uint8_t)(c->mpc.iterations > 255 ? 255 : c->mpc.iterations);
        t->status = c->mpc.status;
        t->residual = c->mpc.cost;
    }
    t->work = (c->clock ? c->clock() : 0u) - t0;
    telemetry_values(c, r, y, t);
    if (c->config.source == NNMPC_SOURCE_DEVICE) {
        plant_advance(c);
    }
    c->k++;
}
