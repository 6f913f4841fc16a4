/* nnmpc Newton MPC solver. See nnmpc_solver.h for the problem it solves. */
#include "nnmpc_solver.h"

#include <math.h>
#include <string.h>

#define ARMIJO 1e-4f
#define LAMBDA_MIN 1e-7f
#define LAMBDA_MAX 1e7f
#define BACKTRACKS 4 /* trials per iteration (alpha = 1 .. 1/8); the time budget may stop earlier */

static int finite(float v)
{
    return v == v && v < INFINITY && v > -INFINITY;
}

/* Square root of a positive number; the FPU instruction on Cortex-M4F (no libm needed). */
static float sqrt_pos(float x)
{
#if defined(__ARM_FP) && (__ARM_FP & 4)
    float r;
    __asm("vsqrt.f32 %0, %1" : "=t"(r) : "t"(x));
    return r;
#else
    return sqrtf(x);
#endif
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* A net without output lags and one input lag: y = f(u), optionally through the output lag. */
static int static_net(const nnmpc_mpc_config_t *c)
{
    return c->na == 0 && c->nb == 1;
}

int nnmpc_mpc_measurement_ok(const nnmpc_mpc_config_t *cfg, const float *y)
{
    int a;
    for (a = 0; a < cfg->p && a < NNMPC_MAX_Y; ++a) {
        const float lo = cfg->y_lo[a], hi = cfg->y_hi[a];
        const int ranged = lo < hi; /* false for an unset (0, 0) or a NaN range */
        if (!finite(y[a]) || (ranged ? !(y[a] >= lo && y[a] <= hi)
                                     : !(y[a] >= -NNMPC_Y_LIMIT && y[a] <= NNMPC_Y_LIMIT))) {
            return 0;
        }
    }
    return 1;
}

void nnmpc_mpc_defaults(nnmpc_mpc_config_t *cfg, int p, int m)
{
    int i;
    memset(cfg, 0, sizeof(*cfg));
    cfg->p = (uint8_t)p;
    cfg->m = (uint8_t)m;
    cfg->na = 0;
    cfg->nb = 1;
    cfg->horizon = 1;
    cfg->moves = 1;
    for (i = 0; i < NNMPC_MAX_Y; ++i) {
        cfg->q[i] = 1.0f;
    }
    for (i = 0; i < NNMPC_MAX_U; ++i) {
        cfg->r[i] = 0.0f;
        cfg->s[i] = 0.0f;
        cfg->u_lo[i] = -1e30f;
        cfg->u_hi[i] = 1e30f;
    }
    cfg->max_iter = 10;
    cfg->tol_step = 1e-5f;
    cfg->tol_cost = 1e-4f;
    cfg->lambda0 = 1e-3f;
}

static int config_ok(const nnmpc_net_t *net, const nnmpc_mpc_config_t *c)
{
    int a;
    if (c->p < 1 || c->p > NNMPC_MAX_Y || c->m < 1 || c->m > NNMPC_MAX_U) {
        return 0;
    }
    if (c->na > NNMPC_MAX_LAG || c->nb < 1 || c->nb > NNMPC_MAX_LAG) {
        return 0;
    }
    if (c->horizon < 1 || c->horizon > NNMPC_MAX_N || c->moves < 1 || c->moves > c->horizon) {
        return 0;
    }
    if (net->n_out != c->p || net->n_in != c->na * c->p + c->nb * c->m) {
        return 0;
    }
    if (!net->predict || !net->predict_jacobian || c->max_iter < 1) {
        return 0;
    }
    if (!(c->lag >= 0.0f && c->lag < 1.0f) || (c->lag != 0.0f && !static_net(c)) ||
        !(c->y_filter >= 0.0f && c->y_filter < 1.0f)) {
        return 0;
    }
    if (c->estimator) {
        if (!NNMPC_ESTIMATOR || c->na == 0) {
            return 0; /* not built in, or no output lags to estimate */
        }
        for (a = 0; a < c->p; ++a) {
            if (!(c->kf_q[a] >= 0.0f && c->kf_q[a] < 1e30f) ||
                !(c->kf_qd[a] >= 0.0f && c->kf_qd[a] < 1e30f) ||
                !(c->kf_r[a] > 0.0f && c->kf_r[a] < 1e30f)) {
                return 0;
            }
        }
    }
    for (a = 0; a < c->m; ++a) {
        if (!(c->u_lo[a] <= c->u_hi[a]) || !(c->r[a] >= 0.0f) || !(c->s[a] >= 0.0f)) {
            return 0;
        }
    }
    for (a = 0; a < c->p; ++a) {
        if (!(c->q[a] >= 0.0f)) {
            return 0;
        }
    }
    return 1;
}

int nnmpc_mpc_init(nnmpc_mpc_t *s, const nnmpc_net_t *net, const nnmpc_mpc_config_t *cfg)
{
    static const float zeros[NNMPC_MAX_U > NNMPC_MAX_Y ? NNMPC_MAX_U : NNMPC_MAX_Y];
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->net = *net;
    if (!config_ok(net, cfg)) {
        s->status = NNMPC_SOLVE_BAD_CONFIG;
        return -1;
    }
    nnmpc_mpc_reset(s, zeros, zeros);
    return 0;
}

void nnmpc_mpc_reset(nnmpc_mpc_t *s, const float *y0, const float *u0)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    int l, a, i;
    for (l = 0; l < NNMPC_MAX_LAG; ++l) {
        for (a = 0; a < c->p; ++a) {
            s->yh[l][a] = y0[a];
        }
        for (a = 0; a < c->m; ++a) {
            s->uh[l][a] = clampf(u0[a], c->u_lo[a], c->u_hi[a]);
        }
    }
    for (i = 0; i < c->moves; ++i) {
        for (a = 0; a < c->m; ++a) {
            s->U[i * c->m + a] = s->uh[0][a];
        }
    }
    for (a = 0; a < c->m; ++a) {
        s->u_out[a] = s->uh[0][a];
    }
    for (i = 0; i < NNMPC_MAX_N; ++i) {
        for (a = 0; a < c->p; ++a) {
            s->ref[i][a] = y0[a];
        }
    }
    memset(s->d, 0, sizeof(s->d));
    for (a = 0; a < c->p; ++a) {
        s->xm[a] = y0[a];
        s->f0[a] = y0[a];
    }
    s->have_pred = 0;
    s->lambda = c->lambda0;
#if NNMPC_ESTIMATOR
    s->kf_ready = 0;
#endif
}

void nnmpc_mpc_set_ref(nnmpc_mpc_t *s, int j, const float *ref)
{
    int a;
    if (j < 1 || j > NNMPC_MAX_N) {
        return;
    }
    for (a = 0; a < s->cfg.p; ++a) {
        s->ref[j - 1][a] = ref[a];
    }
}

/* Short copy and clear loops stay loops: a memcpy/memset call for two or three floats costs
 * several times the loop (GCC turns such loops into library calls at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#define NNMPC_INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NNMPC_INLINE_LOOPS
#endif

/* Net input for the step that predicts y[k+j+1] (j = 0..N-1). */
NNMPC_INLINE_LOOPS static void build_z(nnmpc_mpc_t *s, int j, const float *U)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int p = c->p, m = c->m, last = c->moves - 1;
    float *z = s->z;
    int l, a;
    for (l = 0; l < c->na; ++l) {
        const int t = j - l;
        const float *src = t >= 1 ? s->yhat[t - 1] : s->yh[-t];
        for (a = 0; a < p; ++a) {
            *z++ = src[a];
        }
    }
    for (l = 0; l < c->nb; ++l) {
        const int t = j - l;
        const float *src = t >= 0 ? U + (t < last ? t : last) * m : s->uh[-t - 1];
        for (a = 0; a < m; ++a) {
            *z++ = src[a];
        }
    }
}

/* Decision variables that step j (0-based, predicting y[k+j+1]) depends on: the moves
 * 0 .. min(j, Nc - 1), i.e. the first m * (min(j, Nc - 1) + 1) entries of U. The later
 * columns of S[j] are zero (causality); the rollout and the Hessian skip them. */
static int live_columns(const nnmpc_mpc_config_t *c, int j)
{
    return c->m * ((j < c->moves ? j : c->moves - 1) + 1);
}

/* Cost of the moves (delta u and regularisation). */
static float move_cost(const nnmpc_mpc_t *s, const float *U)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int m = c->m;
    float cost = 0.0f;
    int i, a;
    for (i = 0; i < c->moves; ++i) {
        for (a = 0; a < m; ++a) {
            const float u = U[i * m + a];
            const float du = u - (i ? U[(i - 1) * m + a] : s->uh[0][a]);
            const float dn = u - c->u_nom[a];
            cost += c->r[a] * du * du + c->s[a] * dn * dn;
        }
    }
    return cost;
}

/* Rollout of a static net y = f(u) (na = 0, nb = 1) through the first-order output lag:
 *     yhat[j] = lag * yhat[j-1] + (1 - lag) * (f(U_i) + d),   yhat[-1] = xm + d,
 * i = min(j, Nc - 1). The net is called once per move (Jn then holds that move's Jacobian,
 * which the held tail keeps using); S[j] = lag * S[j-1] + (1 - lag) J_i E_i. */
static float rollout_static(nnmpc_mpc_t *s, const float *U, int jac, float limit, int *complete)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int p = c->p, m = c->m, n = m * c->moves;
    const float lag = c->lag, w = 1.0f - lag;
    float fq[NNMPC_MAX_Y];
    float cost = 0.0f;
    int j, a, b, i;
    for (j = 0; j < c->horizon; ++j) {
        if (j < c->moves) {
            build_z(s, j, U);
            if (jac) {
                s->net.predict_jacobian(s->z, fq, s->Jn);
            } else {
                s->net.predict(s->z, fq);
            }
            s->evaluations++;
            if (j == 0) {
                memcpy(s->f0, fq, sizeof(float) * (size_t)p);
            }
        }
        i = j < c->moves ? j : c->moves - 1;
        for (a = 0; a < p; ++a) {
            const float prev = j ? s->yhat[j - 1][a] : s->xm[a] + s->d[a];
            const float e = (s->yhat[j][a] = lag * prev + w * (fq[a] + s->d[a])) - s->ref[j][a];
            cost += c->q[a] * e * e;
            if (jac) {
                float *row = s->S[j][a];
                const int prev = j ? live_columns(c, j - 1) : 0; /* S[j-1] is zero past it */
                for (b = 0; b < prev; ++b) {
                    row[b] = lag * s->S[j - 1][a][b];
                }
                for (; b < n; ++b) {
                    row[b] = 0.0f;
                }
                for (b = 0; b < m; ++b) {
                    row[i * m + b] += w * s->Jn[a * m + b];
                }
            }
        }
        if (cost > limit && j >= c->moves - 1) {
            *complete = 0; /* the rest only adds to it (past the last net call: the net is
                            * still called once per move) */
            return cost;
        }
    }
    return cost + move_cost(s, U);
}

/* Roll the net over the horizon from U; with jac, also the sensitivities S. Returns the cost.
 * A plain rollout stops as soon as the cost so far exceeds `limit` (every term is >= 0, so
 * the full cost would too: a trial that cannot be accepted is seen early) and then clears
 * *complete; yhat is then only partly written. */
NNMPC_INLINE_LOOPS static float rollout_to(nnmpc_mpc_t *s, const float *U, int jac, float limit,
                                       int *complete)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int p = c->p, m = c->m, nz = s->net.n_in, n = m * c->moves;
    float cost = 0.0f;
    int j, l, a, b, i, t;
    if (static_net(c)) {
        return rollout_static(s, U, jac, limit, complete);
    }
    for (j = 0; j < c->horizon; ++j) {
        build_z(s, j, U);
        if (jac) {
            s->net.predict_jacobian(s->z, s->yhat[j], s->Jn);
            /* S[j] = sum_l Jy_l S[j-l-1] (predicted lags) + sum_l Ju_l E_(moved index). */
            for (a = 0; a < p; ++a) {
                float *row = s->S[j][a];
                for (i = 0; i < n; ++i) {
                    row[i] = 0.0f;
                }
                for (l = 0; l < c->na; ++l) {
                    t = j - l;
                    if (t < 1) {
                        break;
                    }
                    {
                        const int live = live_columns(c, t - 1); /* S[t-1] is zero past it */
                        for (b = 0; b < p; ++b) {
                            const float w = s->Jn[a * nz + l * p + b];
                            const float *src = s->S[t - 1][b];
                            for (i = 0; i < live; ++i) {
                                row[i] += w * src[i];
                            }
                        }
                    }
                }
                for (l = 0; l < c->nb; ++l) {
                    t = j - l;
                    if (t < 0) {
                        break;
                    }
                    i = t < c->moves ? t : c->moves - 1;
                    for (b = 0; b < m; ++b) {
                        row[i * m + b] += s->Jn[a * nz + c->na * p + l * m + b];
                    }
                }
            }
        } else {
            s->net.predict(s->z, s->yhat[j]);
        }
        s->evaluations++;
        for (a = 0; a < p; ++a) {
            /* The disturbance estimate shifts every prediction, and the shifted values are
             * what later steps see as their output lags: at a steady state with y = r the
             * corrected model agrees with the plant, so tracking is offset-free. */
            s->yhat[j][a] += s->d[a];
        }
        for (a = 0; a < p; ++a) {
            const float e = s->yhat[j][a] - s->ref[j][a];
            cost += c->q[a] * e * e;
        }
        if (cost > limit) {
            *complete = 0;
            return cost;
        }
    }
    return cost + move_cost(s, U);
}

static float rollout(nnmpc_mpc_t *s, const float *U, int jac)
{
    int complete = 1;
    return rollout_to(s, U, jac, INFINITY, &complete);
}

float nnmpc_mpc_cost(nnmpc_mpc_t *s, const float *U)
{
    return rollout(s, U, 0);
}

/* Gauss-Newton Hessian H = S'QS + D'RD + diag(s) and gradient g (cost = sum of squares,
 * so the true gradient is 2g). Uses S and yhat of the last rollout with jac at U. */
static void assemble(nnmpc_mpc_t *s, const float *U)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int p = c->p, m = c->m, n = m * c->moves;
    float *H = s->H, *g = s->g;
    int j, a, i, k;
    memset(H, 0, sizeof(float) * (size_t)(n * n));
    memset(g, 0, sizeof(float) * (size_t)n);
    for (j = 0; j < c->horizon; ++j) {
        const int live = live_columns(c, j); /* S[j] is zero past it */
        for (a = 0; a < p; ++a) {
            const float *row = s->S[j][a];
            const float q = c->q[a];
            const float e = s->yhat[j][a] - s->ref[j][a];
            if (q == 0.0f) {
                continue;
            }
            for (i = 0; i < live; ++i) {
                const float qs = q * row[i];
                float *Hi = &H[i * n];
                if (qs == 0.0f) {
                    continue;
                }
                g[i] += qs * e;
                for (k = i; k < live; ++k) {
                    Hi[k] += qs * row[k];
                }
            }
        }
    }
    for (i = 0; i < c->moves; ++i) {
        for (a = 0; a < m; ++a) {
            const int v = i * m + a;
            const float du = U[v] - (i ? U[v - m] : s->uh[0][a]);
            g[v] += c->r[a] * du + c->s[a] * (U[v] - c->u_nom[a]);
            H[v * n + v] += c->r[a] + c->s[a];
            if (i) {
                g[v - m] -= c->r[a] * du;
                H[(v - m) * n + (v - m)] += c->r[a];
                H[(v - m) * n + v] -= c->r[a];
            }
        }
    }
    for (i = 0; i < n; ++i) {
        for (k = 0; k < i; ++k) {
            H[i * n + k] = H[k * n + i];
        }
    }
}

/* In-place Cholesky of the n x n SPD matrix A (lower triangle); then solve A x = b. */
static int cholesky_solve(float *A, int n, const float *b, float *x)
{
    int i, j, k;
    for (j = 0; j < n; ++j) {
        float d = A[j * n + j];
        for (k = 0; k < j; ++k) {
            d -= A[j * n + k] * A[j * n + k];
        }
        if (!(d > 0.0f) || !finite(d)) {
            return -1;
        }
        d = sqrt_pos(d);
        A[j * n + j] = d;
        for (i = j + 1; i < n; ++i) {
            float v = A[i * n + j];
            for (k = 0; k < j; ++k) {
                v -= A[i * n + k] * A[j * n + k];
            }
            A[i * n + j] = v / d;
        }
    }
    for (i = 0; i < n; ++i) {
        float v = b[i];
        for (k = 0; k < i; ++k) {
            v -= A[i * n + k] * x[k];
        }
        x[i] = v / A[i * n + i];
    }
    for (i = n - 1; i >= 0; --i) {
        float v = x[i];
        for (k = i + 1; k < n; ++k) {
            v -= A[k * n + i] * x[k];
        }
        x[i] = v / A[i * n + i];
    }
    return 0;
}

static uint32_t now(const nnmpc_mpc_t *s)
{
    return s->cfg.clock ? s->cfg.clock(s->cfg.clock_ctx) : 0u;
}

/* Keep y1 (the one-step prediction of the accepted U) for the disturbance estimate. */
static void keep_prediction(nnmpc_mpc_t *s)
{
    int a;
    for (a = 0; a < s->cfg.p; ++a) {
        /* the net's own one-step prediction */
        s->y_pred[a] = static_net(&s->cfg) ? s->f0[a] : s->yhat[0][a] - s->d[a];
    }
}

static void hold_safe(nnmpc_mpc_t *s)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    int i, a;
    for (a = 0; a < c->m; ++a) {
        float u = s->uh[0][a];
        if (!finite(u)) {
            u = clampf(c->u_nom[a], c->u_lo[a], c->u_hi[a]);
        }
        s->u_out[a] = u;
        for (i = 0; i < c->moves; ++i) {
            s->U[i * c->m + a] = u;
        }
    }
    s->have_pred = 0;
}

/* 1 if a clock difference is plausible: a clock that went back reads as ~2^32 ticks. */
static int sane_ticks(uint32_t t)
{
    return t <= 0x7fffffffu;
}

/* 1 if work of a + b more ticks still fits the budget of the solve that started at t0. A
 * clock that went back since t0 leaves no time (the solve stops, the next one is normal). */
static int fits(const nnmpc_mpc_t *s, uint32_t t0, uint32_t a, uint32_t b)
{
    const uint32_t used = now(s) - t0, budget = s->cfg.budget_ticks;
    return sane_ticks(used) && used <= budget && a <= budget - used &&
           b <= budget - used - a;
}

/* Keep a plain rollout's measured time t for later solves: a longer one at once, a shorter
 * one slowly (the estimate stays on the safe side). A timing of a clock that went back is
 * ignored; one longer than cap (the Jacobian rollout measured in this solve, which makes the
 * same net calls and more) is taken as cap, so one long interruption cannot latch the
 * estimate above the budget. Returns the estimate (est if t was ignored). */
static uint32_t note_rollout_time(nnmpc_mpc_t *s, uint32_t t, uint32_t est, uint32_t cap)
{
    if (!sane_ticks(t)) {
        return est;
    }
    if (t > cap) {
        t = cap;
    }
    if (t >= s->t_pred || s->t_stale) {
        /* (after a solve without a trial the estimate was a guess that decayed: the first
         * measurement replaces it) */
        s->t_pred = t;
    } else {
        s->t_pred -= (s->t_pred - t) / 8u;
    }
    return s->t_pred;
}

/* The expected time of a plain (trial) rollout for the budget, after the Jacobian rollout of
 * this solve took t_jac. Before a trial has been measured: from one timed net call (calls x
 * its time + half a call). After a solve that the estimate kept from trying any trial (so it
 * was not re-measured): the estimate halves per solve, but not below calls x one timed net
 * call, until a trial runs and measures it again. Never more than t_jac (a plain rollout
 * makes the same net calls without the tangents). */
static uint32_t trial_time(nnmpc_mpc_t *s, uint32_t t_jac)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int jac_ok = sane_ticks(t_jac);
    uint32_t est = s->t_pred;
    if (est == 0u || s->t_stale) {
        /* A forward-mode Jacobian costs several plain calls, so half a Jacobian rollout would
         * keep a trial that fits from ever running. */
        const uint32_t calls = (uint32_t)(static_net(c) ? c->moves : c->horizon);
        uint32_t t1 = s->t_call, e;
        if (t1 == 0u || !sane_ticks(t1)) {
            /* One net call, timed once and kept: timing it again in every stale solve cost a
             * net call of the budget each time, which could keep the trial from fitting for
             * good (a Jacobian that takes most of the budget). */
            float probe[NNMPC_MAX_Y];
            const uint32_t ts = now(s);
            s->net.predict(s->z, probe);
            s->evaluations++;
            t1 = now(s) - ts;
            s->t_call = sane_ticks(t1) ? t1 : 0u;
        }
        e = sane_ticks(t1) && t1 < 0x7fffffffu / (calls + 1u) ? calls * t1 : 0u;
        if (est == 0u) {
            est = e + t1 / 2u; /* not stored: only a measured trial sets t_pred */
            if (e == 0u || (jac_ok && est > t_jac)) {
                est = t_jac / 2u;
            }
        } else if (est > e) {
            est = est / 2u > e ? est / 2u : e;
            est = est ? est : 1u;
            s->t_pred = est;
        }
    }
    if (jac_ok && est > t_jac) {
        est = t_jac;
        if (s->t_pred > t_jac) {
            s->t_pred = t_jac;
        }
    }
    return est;
}

/* Trial point Ut = P(U + alpha d) on the box; returns gd = -(gradient/2)'(Ut - U), which
 * is > 0 for a descent direction, and the largest move; *clipped is set if the box cut d. */
static float trial_point(nnmpc_mpc_t *s, const float *d, float alpha, float *moved, int *clipped)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int m = c->m, n = m * c->moves;
    float gd = 0.0f, mv = 0.0f;
    int i;
    for (i = 0; i < n; ++i) {
        const int a = i % m;
        const float want = s->U[i] + alpha * d[i];
        const float v = clampf(want, c->u_lo[a], c->u_hi[a]);
        const float dv = v - s->U[i];
        s->Ut[i] = v;
        gd += s->gn[i] * dv;
        mv = fabsf(dv) > mv ? fabsf(dv) : mv;
        if (v != want) {
            *clipped = 1;
        }
    }
    *moved = mv;
    return gd;
}

/* The Newton step kept in the box: where U + step leaves it, pin those entries on their
 * bounds and solve the damped Gauss-Newton model again for the others, until the step stays
 * in the box (at most n passes). The clipped step would keep the free entries as they were,
 * so the model's value at the result is no higher. H holds the Cholesky factor in its lower
 * triangle; its upper triangle and diag (the diagonal) are the model's matrix. (A principal
 * minor of a positive definite matrix is one: should a factorisation fail all the same, the
 * step is left as it was, the clipped one.) Returns 1 if an entry was pinned. */
static int box_step(nnmpc_mpc_t *s, const float *diag)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int m = c->m, n = m * c->moves;
    float b[NNMPC_MAX_DEC];
    unsigned char pin[NNMPC_MAX_DEC] = {0};
    int pass, i, j, any = 0;
    for (pass = 0; pass < n; ++pass) {
        int more = 0;
        for (i = 0; i < n; ++i) {
            const float lo = c->u_lo[i % m], hi = c->u_hi[i % m], v = s->U[i] + s->step[i];
            if (!pin[i] && (v > hi || v < lo)) {
                pin[i] = 1;
                more = 1;
                s->step[i] = (v > hi ? hi : lo) - s->U[i];
            }
        }
        if (!more) {
            break;
        }
        any = 1;
        for (i = 0; i < n; ++i) {
            float v = s->g[i];
            for (j = 0; j < n; ++j) {
                const float hij = i < j ? s->H[i * n + j] : s->H[j * n + i];
                if (j < i) { /* the lower triangle again, without the pinned rows/columns */
                    s->H[i * n + j] = pin[i] || pin[j] ? 0.0f : hij;
                }
                if (pin[j] && j != i) {
                    v -= hij * s->step[j];
                }
            }
            s->H[i * n + i] = pin[i] ? 1.0f : diag[i];
            b[i] = pin[i] ? s->step[i] : v;
        }
        if (cholesky_solve(s->H, n, b, s->step) != 0) {
            break;
        }
    }
    return any;
}

nnmpc_solve_status_t nnmpc_mpc_solve(nnmpc_mpc_t *s)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int m = c->m, n = m * c->moves;
    const uint32_t t0 = now(s);
#if NNMPC_ESTIMATOR
    /* the period's filter counts against the budget */
    const uint32_t tb = t0 - (sane_ticks(s->t_pre) ? s->t_pre : 0u);
#else
    const uint32_t tb = t0;
#endif
    const int timed = c->budget_ticks && c->clock;
    uint32_t t_jac, t_pred = 0u;
    float cost, diag[NNMPC_MAX_DEC];
    int i, it = 0, out_of_time = 0, measured = 0;
    nnmpc_solve_status_t st = NNMPC_SOLVE_ITER_CAP;

    s->evaluations = 0;
#if NNMPC_ESTIMATOR
    s->t_pre = 0u;
#endif
    if (!config_ok(&s->net, c)) {
        s->status = NNMPC_SOLVE_BAD_CONFIG;
        return NNMPC_SOLVE_BAD_CONFIG;
    }
    for (i = 0; i < n; ++i) {
        const int a = i % m;
        s->U[i] = finite(s->U[i]) ? clampf(s->U[i], c->u_lo[a], c->u_hi[a]) : s->uh[0][a];
    }
    if (!(s->lambda >= LAMBDA_MIN) || !(s->lambda <= LAMBDA_MAX)) {
        s->lambda = c->lambda0 > LAMBDA_MIN ? c->lambda0 : LAMBDA_MIN;
    }
    cost = rollout(s, s->U, 1);
    /* Time estimates for the budget: a Jacobian rollout as measured in this solve, a plain
     * rollout from earlier solves (see trial_time). */
    t_jac = now(s) - t0;
    if (timed) {
        t_pred = trial_time(s, t_jac);
    }
    if (!finite(cost)) {
        hold_safe(s);
        s->cost = cost;
        s->iterations = 0;
        s->status = NNMPC_SOLVE_NONFINITE;
        s->ticks = now(s) - t0;
        return NNMPC_SOLVE_NONFINITE;
    }
    keep_prediction(s);
    while (it < c->max_iter) {
        float max_step = 0.0f, pg_max = 0.0f, gd = 0.0f, trial = cost;
        float alpha = 1.0f, alpha_n, moved = 0.0f;
        int accepted = 0, bt, clipped = 0, pinned, by_gradient = 0, newton_tried = 0, complete = 1;
        ++it;
        assemble(s, s->U);
        for (i = 0; i < n; ++i) {
            const int a = i % m;
            const float v = s->g[i];
            const float dii = s->H[i * n + i];
            /* The gradient, and the projected-gradient fallback: the gradient scaled by the
             * Hessian's diagonal (a descent direction on the box unless U is stationary). */
            s->gn[i] = -v;
            s->pg[i] = -v / (dii > 1e-6f ? dii : 1e-6f);
            /* Freeze the variables that sit on a bound and are pushed outwards. */
            if ((s->U[i] <= c->u_lo[a] && v > 0.0f) || (s->U[i] >= c->u_hi[a] && v < 0.0f)) {
                int k;
                for (k = 0; k < n; ++k) {
                    s->H[i * n + k] = 0.0f;
                    s->H[k * n + i] = 0.0f;
                }
                s->H[i * n + i] = 1.0f;
                s->g[i] = 0.0f;
            } else {
                s->H[i * n + i] = dii + s->lambda * (dii > 1e-6f ? dii : 1e-6f);
                s->g[i] = -v;
            }
        }
        for (i = 0; i < n; ++i) {
            diag[i] = s->H[i * n + i];
        }
        if (cholesky_solve(s->H, n, s->g, s->step) != 0) {
            /* Not positive definite at this damping: damp more (S and yhat still hold). */
            s->lambda = s->lambda * 10.0f < LAMBDA_MAX ? s->lambda * 10.0f : LAMBDA_MAX;
            continue;
        }
        for (i = 0; i < n; ++i) {
            const int a = i % m;
            const float v = fabsf(s->step[i]);
            const float pgi = fabsf(clampf(s->U[i] + s->pg[i], c->u_lo[a], c->u_hi[a]) - s->U[i]);
            max_step = v > max_step ? v : max_step;
            pg_max = pgi > pg_max ? pgi : pg_max;
        }
        if (!finite(max_step)) {
            st = NNMPC_SOLVE_NONFINITE;
            break;
        }
        if (max_step < c->tol_step) {
            /* The projected Newton step is below tolerance: every variable is stationary or
             * held on a bound by its gradient (the step solves H step = -g on the rest). */
            st = NNMPC_SOLVE_CONVERGED;
            break;
        }
        pinned = box_step(s, diag);
        /* Backtracking on the Newton step in the box. Where the box cuts it into a direction
         * that is not descent, a shorter step is tried (no rollout needed to see it). */
        for (bt = 0; bt < BACKTRACKS; ++bt, alpha *= 0.5f) {
            uint32_t ts;
            clipped = pinned;
            gd = trial_point(s, s->step, alpha, &moved, &clipped);
            if (!(gd > 0.0f)) {
                continue;
            }
            if (timed && !fits(s, tb, 0u, t_pred)) {
                out_of_time = 1; /* no time for this trial: keep U */
                break;
            }
            ts = now(s);
            complete = 1;
            trial = rollout_to(s, s->Ut, 0, cost - ARMIJO * 2.0f * gd, &complete);
            if (complete) { /* only a whole rollout measures one */
                t_pred = note_rollout_time(s, now(s) - ts, t_pred, t_jac);
                measured = 1;
            }
            newton_tried = 1;
            accepted = finite(trial) && trial <= cost - ARMIJO * 2.0f * gd;
            if (accepted) {
                break; /* alpha is the accepted step length */
            }
        }
        alpha_n = alpha;
        if (!accepted && !out_of_time && pg_max > 0.0f) {
            /* Fallback: a projected-gradient step, backtracked the same way. */
            for (bt = 0, alpha = 1.0f; bt < BACKTRACKS; ++bt, alpha *= 0.5f) {
                uint32_t ts;
                clipped = 1;
                gd = trial_point(s, s->pg, alpha, &moved, &clipped);
                if (!(gd > 0.0f)) {
                    break;
                }
                if (timed && !fits(s, tb, 0u, t_pred)) {
                    out_of_time = 1;
                    break;
                }
                ts = now(s);
                complete = 1;
                trial = rollout_to(s, s->Ut, 0, cost - ARMIJO * 2.0f * gd, &complete);
                if (complete) {
                    t_pred = note_rollout_time(s, now(s) - ts, t_pred, t_jac);
                    measured = 1;
                }
                accepted = finite(trial) && trial <= cost - ARMIJO * 2.0f * gd;
                if (accepted) {
                    by_gradient = 1;
                    break;
                }
            }
        }
        if (out_of_time && !accepted) {
            if (newton_tried) {
                /* A trial was rejected and there is no time for a shorter one: damp more, so
                 * that the next solve (the warm start is the same plan) does not try the same
                 * step again. Without it a plan the budget allowed one trial of was stuck for
                 * hundreds of periods (msd step, no preview: 203 of 800 periods). */
                s->lambda = s->lambda * 10.0f < LAMBDA_MAX ? s->lambda * 10.0f : LAMBDA_MAX;
            }
            st = NNMPC_SOLVE_BUDGET;
            break;
        }
        if (!accepted) {
            s->lambda = s->lambda * 10.0f < LAMBDA_MAX ? s->lambda * 10.0f : LAMBDA_MAX;
            /* Nothing decreased the cost: converged only if the shortest Newton step tried
             * was below the tolerance, or (no Newton trial was a descent direction) if the
             * projected gradient is. */
            if (newton_tried ? alpha_n * max_step < c->tol_step : pg_max < c->tol_step) {
                st = NNMPC_SOLVE_CONVERGED;
                break;
            }
            if (timed && !fits(s, tb, 0u, t_pred)) {
                st = NNMPC_SOLVE_BUDGET;
                break;
            }
            cost = rollout(s, s->U, 0); /* yhat at U again; S is unchanged */
        } else {
            memcpy(s->U, s->Ut, sizeof(float) * (size_t)n);
            keep_prediction(s);
            {
                /* A small decrease only means convergence after an undamped full Newton step
                 * that the box did not cut; after heavy damping it only means the steps were
                 * short, after a cut or a gradient step that the direction was poor. */
                const int gn_step = !by_gradient && !clipped && alpha == 1.0f &&
                                    s->lambda <= 10.0f * c->lambda0;
                const int done = !by_gradient && !clipped &&
                                 (moved < c->tol_step ||
                                  (gn_step && cost - trial <= c->tol_cost * cost));
                if (!by_gradient) {
                    s->lambda = s->lambda * 0.3f > LAMBDA_MIN ? s->lambda * 0.3f : LAMBDA_MIN;
                } else if (newton_tried) {
                    s->lambda = s->lambda * 10.0f < LAMBDA_MAX ? s->lambda * 10.0f : LAMBDA_MAX;
                }
                cost = trial;
                if (done) {
                    st = NNMPC_SOLVE_CONVERGED;
                    break;
                }
            }
            if (it < c->max_iter) {
                /* Another iteration needs a Jacobian rollout and at least one trial. */
                if (timed && !fits(s, tb, t_jac, t_pred)) {
                    st = NNMPC_SOLVE_BUDGET;
                    break;
                }
                cost = rollout(s, s->U, 1);
            }
        }
    }
    for (i = 0; i < m; ++i) {
        s->u_out[i] = s->U[i];
    }
    if (timed) {
        if (measured) {
            s->t_stale = 0;
        } else if (st == NNMPC_SOLVE_BUDGET && s->t_pred) {
            s->t_stale = 1;
        }
    }
    s->cost = cost;
    s->iterations = (uint16_t)it;
    s->status = (uint8_t)st;
    s->ticks = now(s) - t0;
    if (st == NNMPC_SOLVE_NONFINITE) {
        hold_safe(s);
    }
    return st;
}

/* The disturbance estimate learns from y[k] against the model's prediction of it. */
static void learn_d(nnmpc_mpc_t *s, const float *y_meas)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    int a;
    if (s->have_pred && c->bias_gain > 0.0f) {
        for (a = 0; a < c->p; ++a) {
            const float model = static_net(c) ? s->xm[a] : s->y_pred[a];
            s->d[a] += c->bias_gain * (y_meas[a] - model - s->d[a]);
            if (!finite(s->d[a])) {
                s->d[a] = 0.0f; /* a model output that overflowed: start the estimate again */
            }
        }
    }
}

static void shift_lags(nnmpc_mpc_t *s)
{
    int l;
    for (l = NNMPC_MAX_LAG - 1; l > 0; --l) {
        memcpy(s->yh[l], s->yh[l - 1], sizeof(s->yh[0]));
    }
}

#if NNMPC_ESTIMATOR
/* The extended Kalman filter on x = [yh[0] .. yh[na-1], d] (n = na p lags, then the p
 * disturbance estimates, a random walk): x[k] = [f(lags[k-1], u) + d, lags[k-1] shifted, d],
 * y[k] = x_top + noise. The transition's Jacobian F: the net's exact Jacobian w.r.t. its
 * output lags (in Jn) and the identity on d on top (p rows), the shift of the older lags, the
 * identity on d below. B = F A (tr = 0) or F A' (tr = 1), both nx x nx, with that structure:
 * p n multiply-adds per column instead of nx^2. */
static void kf_left(const nnmpc_mpc_t *s, const float *A, int tr, float *B)
{
    const int p = s->cfg.p, n = s->cfg.na * p, nx = n + p, ni = s->net.n_in;
    const int rs = tr ? 1 : nx, cs = tr ? nx : 1; /* A(r, c) = A[r * rs + c * cs] */
    int i, j, l;
    for (i = 0; i < nx; ++i) {
        const int src = i < p ? n + i : i < n ? i - p : i;
        for (j = 0; j < nx; ++j) {
            float v = A[src * rs + j * cs];
            if (i < p) {
                for (l = 0; l < n; ++l) {
                    v += s->Jn[i * ni + l] * A[l * rs + j * cs];
                }
            }
            B[i * nx + j] = v;
        }
    }
}

static float *kf_x(nnmpc_mpc_t *s, int i)
{
    const int p = s->cfg.p, n = s->cfg.na * p;
    return i < n ? &s->yh[i / p][i % p] : &s->d[i - n];
}

static float kf_sum(nnmpc_mpc_t *s)
{
    const int nx = (s->cfg.na + 1) * s->cfg.p;
    float v = 0.0f;
    int i;
    for (i = 0; i < nx; ++i) {
        v += *kf_x(s, i) + s->P[i * nx + i];
    }
    return v;
}

/* Prediction: y_pred = f(z) from the lags of k-1 and the applied inputs (the net with its
 * Jacobian), the lags shift with y_pred + d on top; P <- F P F' + diag(q, 0, qd). */
static void kf_predict(nnmpc_mpc_t *s)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    const int p = c->p, n = c->na * p, nx = n + p;
    float *P = s->P, *T = s->T;
    int i, j;
    for (i = 0, j = 0; j < n; ++j) {
        s->z[i++] = *kf_x(s, j);
    }
    for (j = 0; j < c->nb * c->m; ++j) {
        s->z[i++] = s->uh[j / c->m][j % c->m];
    }
    s->net.predict_jacobian(s->z, s->y_pred, s->Jn);
    kf_left(s, P, 0, T); /* T = F P, then P = F T' + Q (= F P F' + Q, P symmetric) */
    kf_left(s, T, 1, P);
    for (i = 0; i < p; ++i) {
        P[i * nx + i] += c->kf_q[i];
        P[(n + i) * nx + n + i] += c->kf_qd[i];
    }
    shift_lags(s);
    for (i = 0; i < p; ++i) {
        s->yh[0][i] = s->y_pred[i] + s->d[i];
    }
}

/* Update with the measurement y, one channel after the other (R is diagonal): the gain
 * K = P h / (h' P h + r), x += K (y_a - x_a), P -= K h' P. 0 if the result is not finite. */
static int kf_update(nnmpc_mpc_t *s, const float *y)
{
    const int p = s->cfg.p, nx = (s->cfg.na + 1) * p;
    float *P = s->P, *T = s->T;
    int a, i, j;
    for (a = 0; a < p; ++a) {
        const float e = y[a] - s->yh[0][a], sa = P[a * nx + a] + s->cfg.kf_r[a];
        for (i = 0; i < nx; ++i) {
            T[i] = P[i * nx + a] / sa;
            T[nx + i] = P[a * nx + i];
        }
        for (i = 0; i < nx; ++i) {
            *kf_x(s, i) += T[i] * e;
            for (j = 0; j < nx; ++j) {
                P[i * nx + j] -= T[i] * T[nx + j];
            }
        }
    }
    return finite(kf_sum(s));
}

/* A good measurement with the filter on: predict and update (d is the filter's own, learnt
 * from the same innovation with the joint gain: bias_gain is not used). The first measurement
 * (or one after the filter went non-finite) starts it: every lag is the measurement, d = 0,
 * P = diag(r) per lag and for d. */
static void kf_measure(nnmpc_mpc_t *s, const float *y_meas)
{
    const int p = s->cfg.p, nx = (s->cfg.na + 1) * p;
    int i;
    if (s->kf_ready) {
        kf_predict(s);
        if (kf_update(s, y_meas)) {
            return;
        }
    }
    memset(s->P, 0, sizeof(s->P));
    memset(s->d, 0, sizeof(s->d));
    for (i = 0; i < NNMPC_MAX_LAG * p; ++i) {
        s->yh[i / p][i % p] = y_meas[i % p];
    }
    for (i = 0; i < nx; ++i) {
        s->P[i * nx + i] = s->cfg.kf_r[i % p];
    }
    s->kf_ready = 1;
}
#endif

/* Take y[k] into the history and update the disturbance estimate; 0 (and nothing changed) if
 * y is not a plausible measurement (nnmpc_mpc_measurement_ok). */
static int take_measurement(nnmpc_mpc_t *s, const float *y_meas)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    float y_lag[NNMPC_MAX_Y];
    int a;
    if (!nnmpc_mpc_measurement_ok(c, y_meas)) {
        return 0;
    }
#if NNMPC_ESTIMATOR
    if (c->estimator) {
        kf_measure(s, y_meas);
        return 1;
    }
#endif
    if (static_net(c)) {
        /* The lag model follows the net's output for the applied input (lag 0: xm = y_pred);
         * without a prediction it restarts from the measurement. */
        for (a = 0; a < c->p; ++a) {
            s->xm[a] = s->have_pred ? c->lag * s->xm[a] + (1.0f - c->lag) * s->y_pred[a]
                                    : y_meas[a] - s->d[a];
        }
    }
    for (a = 0; a < c->p; ++a) {
        /* The output lag a dynamic net sees: the measurement, or with y_filter a blend with
         * the corrected one-step prediction (less sensor noise in the rollout's start). */
        y_lag[a] = y_meas[a];
        if (s->have_pred && c->na > 0) {
            y_lag[a] += c->y_filter * (s->y_pred[a] + s->d[a] - y_meas[a]);
        }
    }
    learn_d(s, y_meas);
    shift_lags(s);
    memcpy(s->yh[0], y_lag, sizeof(float) * c->p);
    return 1;
}

static void push_input(nnmpc_mpc_t *s)
{
    int l;
    for (l = NNMPC_MAX_LAG - 1; l > 0; --l) {
        memcpy(s->uh[l], s->uh[l - 1], sizeof(s->uh[0]));
    }
    memcpy(s->uh[0], s->u_out, sizeof(float) * s->cfg.m);
}

/* The previous plan shifted by one period (the warm start). */
static void shift_plan(nnmpc_mpc_t *s)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    int i;
    for (i = 0; i + 1 < c->moves; ++i) {
        memcpy(&s->U[i * c->m], &s->U[(i + 1) * c->m], sizeof(float) * c->m);
    }
}

/* A refused measurement (see nnmpc_mpc_step): the period passes without a solve. The last
 * applied input is held; the output history advances with the model's corrected one-step
 * prediction (a dynamic net; else the last value), so the lags stay aligned with the inputs;
 * the disturbance estimate is not touched. Without a prediction the next good measurement
 * restarts the lag model and does not update d: one period later everything is as usual. */
static nnmpc_solve_status_t refuse_measurement(nnmpc_mpc_t *s)
{
    const nnmpc_mpc_config_t *c = &s->cfg;
    float y_fill[NNMPC_MAX_Y];
    int a;
#if NNMPC_ESTIMATOR
    if (c->estimator && s->kf_ready) {
        /* the filter's prediction step only (its covariance grows by Q) */
        kf_predict(s);
        s->kf_ready = (uint8_t)finite(kf_sum(s));
    } else
#endif
    {
        for (a = 0; a < c->p; ++a) {
            const float yp = s->y_pred[a] + s->d[a];
            y_fill[a] = s->have_pred && c->na > 0 && finite(yp) ? yp : s->yh[0][a];
        }
        shift_lags(s);
        memcpy(s->yh[0], y_fill, sizeof(float) * c->p);
    }
    for (a = 0; a < c->m; ++a) {
        const float u = s->uh[0][a];
        s->u_out[a] = finite(u) ? u : clampf(c->u_nom[a], c->u_lo[a], c->u_hi[a]);
    }
    shift_plan(s);
    s->have_pred = 0;
    s->iterations = 0;
    s->evaluations = 0;
    s->ticks = 0;
    s->status = NNMPC_SOLVE_BAD_MEASUREMENT;
    push_input(s);
    return NNMPC_SOLVE_BAD_MEASUREMENT;
}

nnmpc_solve_status_t nnmpc_mpc_step(nnmpc_mpc_t *s, const float *y_meas)
{
    nnmpc_solve_status_t st;
#if NNMPC_ESTIMATOR
    const uint32_t t0 = s->cfg.estimator ? now(s) : 0u;
#endif
    if (!take_measurement(s, y_meas)) {
        return refuse_measurement(s);
    }
#if NNMPC_ESTIMATOR
    s->t_pre = s->cfg.estimator ? now(s) - t0 : 0u;
#endif
    shift_plan(s);
    st = nnmpc_mpc_solve(s);
    s->have_pred = st != NNMPC_SOLVE_NONFINITE && st != NNMPC_SOLVE_BAD_CONFIG;
    if (st == NNMPC_SOLVE_NONFINITE) {
        /* The rollout from this state is not finite: do not keep a disturbance estimate that
         * may be the cause (the next solve starts from d = 0 and the measurement). */
        memset(s->d, 0, sizeof(s->d));
#if NNMPC_ESTIMATOR
        s->kf_ready = 0; /* and the filter restarts from the next measurement */
#endif
    }
    push_input(s);
    return st;
}

nnmpc_solve_status_t nnmpc_mpc_step_fd(nnmpc_mpc_t *s, const float *y_meas, float fd_eps)
{
    nnmpc_mpc_config_t *c = &s->cfg;
    const int p = c->p, m = c->m, N = c->horizon, moves = c->moves;
    const uint32_t t0 = now(s);
    float u0[NNMPC_MAX_U] = {0}, Up[NNMPC_MAX_U] = {0}, g = 0.0f, h = 0.0f, cost;
    float ybase[NNMPC_MAX_N][NNMPC_MAX_Y];
    int a, b, j, k;
    nnmpc_solve_status_t st = NNMPC_SOLVE_ITER_CAP;

    s->evaluations = 0;
    if (!take_measurement(s, y_meas)) {
        return refuse_measurement(s);
    }
    c->moves = 1; /* one held move */
    for (a = 0; a < m; ++a) {
        u0[a] = s->uh[0][a];
        Up[a] = u0[a];
    }
    cost = rollout(s, u0, 0);
    memcpy(ybase, s->yhat, sizeof(ybase));
    for (a = 0; a < m; ++a) {
        /* Central differences of the whole rollout: 2 rollouts per input. */
        Up[a] = u0[a] + fd_eps;
        rollout(s, Up, 0);
        for (j = 0; j < N; ++j) {
            for (k = 0; k < p; ++k) {
                s->S[j][k][a] = s->yhat[j][k];
            }
        }
        Up[a] = u0[a] - fd_eps;
        rollout(s, Up, 0);
        Up[a] = u0[a];
        for (j = 0; j < N; ++j) {
            for (k = 0; k < p; ++k) {
                s->S[j][k][a] = (s->S[j][k][a] - s->yhat[j][k]) / (2.0f * fd_eps);
            }
        }
    }
    /* One Newton step per input with a single scalar curvature (trace of the GN Hessian). */
    for (a = 0; a < m; ++a) {
        float ga = c->s[a] * (u0[a] - c->u_nom[a]);
        for (j = 0; j < N; ++j) {
            for (k = 0; k < p; ++k) {
                const float e = ybase[j][k] - s->ref[j][k];
                ga += c->q[k] * s->S[j][k][a] * e;
                h += c->q[k] * s->S[j][k][a] * s->S[j][k][a];
            }
        }
        h += c->r[a] + c->s[a];
        s->step[a] = ga;
    }
    for (a = 0; a < m; ++a) {
        g += s->step[a] * s->step[a];
    }
    c->moves = (uint8_t)moves;
    if (!finite(cost) || !finite(g) || !finite(h)) {
        hold_safe(s);
        memset(s->d, 0, sizeof(s->d)); /* as in nnmpc_mpc_step */
        st = NNMPC_SOLVE_NONFINITE;
    } else {
        for (a = 0; a < m; ++a) {
            const float u = h > 0.0f ? u0[a] - s->step[a] / h : u0[a];
            s->u_out[a] = clampf(u, c->u_lo[a], c->u_hi[a]);
            for (b = 0; b < moves; ++b) {
                s->U[b * m + a] = s->u_out[a];
            }
        }
        /* The one-step prediction of the applied input, for the disturbance estimate. */
        c->moves = 1;
        rollout(s, s->u_out, 0);
        c->moves = (uint8_t)moves;
        keep_prediction(s);
    }
    s->have_pred = st != NNMPC_SOLVE_NONFINITE;
    s->cost = cost;
    s->iterations = 1;
    s->status = (uint8_t)st;
    s->ticks = now(s) - t0;
    push_input(s);
    return st;
}
