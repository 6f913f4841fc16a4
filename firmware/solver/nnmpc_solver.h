/*
 * nnmpc Newton MPC solver: damped Gauss-Newton / Levenberg-Marquardt over a compiled net.
 *
 * Plain C99, fixed memory (sizes below), no malloc, no board header. The same file runs in
 * the host tests and on the device.
 *
 * Model. A net with exact Jacobian (`predict_jacobian`) predicts the next output from lags:
 *     y[k+1] = f(z),  z = [y[k], y[k-1], .. y[k-na+1],  u[k], u[k-1], .. u[k-nb+1]]
 * (p outputs, m inputs; z has na*p + nb*m entries; J is row-major p x nz).
 *   - quasi-static inversion (mode a): na = 0, nb = 1, N = Nc = 1: y = f(u), solve f(u) = r.
 *     (N and Nc may be larger with na = 0: the held input sees the same f.)
 *     With a first-order output lag (pole `lag` per period) the quasi-static net becomes a
 *     dynamic model: yhat[j+1] = lag*yhat[j] + (1-lag)*(f(u[k+j]) + d), from the lag
 *     model's current output; horizon N and moves Nc then apply as in mode (b) and cost Nc
 *     net calls per rollout (the input, hence f, only changes with the moves).
 *   - receding-horizon MPC (mode b): na >= 0, nb >= 1, horizon N <= NNMPC_MAX_N steps,
 *     Nc <= N free moves (u is held at u[Nc-1] after them).
 * Cost over the decision vector U = [u[k] .. u[k+Nc-1]] (m*Nc entries):
 *     sum_j sum_c q_c (yhat[k+j]_c - r[k+j]_c)^2                 j = 1..N
 *   + sum_i sum_a r_a (u[k+i]_a - u[k+i-1]_a)^2                  i = 0..Nc-1
 *   + sum_i sum_a s_a (u[k+i]_a - u_nom_a)^2                     (optional regularisation)
 * yhat = f(z) + d: d is an output-disturbance estimate (the filtered one-step prediction
 * error, gain `bias_gain`); the corrected outputs are also the output lags of later steps,
 * which makes tracking offset-free at steady state.
 * Rollout sensitivities dyhat/dU follow from the per-step Jacobians by the chain rule; the
 * Gauss-Newton Hessian is the full (m*Nc)^2 matrix. Box limits: projected steps with the
 * active bounds frozen. Globalisation: Levenberg-Marquardt damping + backtracking.
 */
#ifndef NNMPC_SOLVER_H
#define NNMPC_SOLVER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NNMPC_MAX_Y
#define NNMPC_MAX_Y 3 /* outputs p */
#endif
#ifndef NNMPC_MAX_U
#define NNMPC_MAX_U 3 /* inputs m */
#endif
#ifndef NNMPC_MAX_LAG
#define NNMPC_MAX_LAG 4 /* na, nb */
#endif
#ifndef NNMPC_MAX_N
#define NNMPC_MAX_N 10 /* prediction horizon */
#endif
#if NNMPC_MAX_Y < 1 || NNMPC_MAX_Y > 8 || NNMPC_MAX_U < 1 || NNMPC_MAX_U > 8
#error "NNMPC_MAX_Y and NNMPC_MAX_U must be within [1, 8]"
#endif
#if NNMPC_MAX_N < 1 || NNMPC_MAX_N > 20 || NNMPC_MAX_LAG < 1 || NNMPC_MAX_LAG > 8
#error "NNMPC_MAX_N must be within [1, 20] and NNMPC_MAX_LAG within [1, 8]"
#endif
#ifndef NNMPC_Y_LIMIT
#define NNMPC_Y_LIMIT 1e6f /* plausible |y| of a measurement without a range of its own */
#endif
#define NNMPC_MAX_Z (NNMPC_MAX_LAG * (NNMPC_MAX_Y + NNMPC_MAX_U))
#ifndef NNMPC_ESTIMATOR
#define NNMPC_ESTIMATOR 0 /* 1: build the extended Kalman filter (cfg.estimator) */
#endif
#define NNMPC_MAX_X ((NNMPC_MAX_LAG + 1) * NNMPC_MAX_Y) /* the filter's state: na p lags, d */
#define NNMPC_MAX_DEC (NNMPC_MAX_U * NNMPC_MAX_N)

/** Outcome of one solve. */
typedef enum {
    NNMPC_SOLVE_CONVERGED = 0,  /* step or gradient below tolerance */
    NNMPC_SOLVE_ITER_CAP = 1,   /* max_iter iterations done */
    NNMPC_SOLVE_BUDGET = 2,     /* the next iteration would not fit the time budget */
    NNMPC_SOLVE_NONFINITE = 3,  /* the net gave NaN/Inf: the last safe u is held */
    NNMPC_SOLVE_BAD_CONFIG = 4, /* sizes out of range or model mismatch: last safe u held */
    NNMPC_SOLVE_BAD_MEASUREMENT = 5 /* y[k] non-finite or outside [y_lo, y_hi]: refused, the
                                     * last applied u held, nothing learnt from it */
} nnmpc_solve_status_t;

/** The net the solver calls (a compiled model's functions). */
typedef struct {
    int n_in;
    int n_out;
    void (*predict)(const float *input, float *output);
    void (*predict_jacobian)(const float *input, float *output, float *jacobian);
} nnmpc_net_t;

/** Problem and solver settings. Fill every field; nnmpc_mpc_defaults() gives a start. */
typedef struct {
    uint8_t p, m;           /* outputs, inputs */
    uint8_t na, nb;         /* output and input lags in the net input (na may be 0) */
    uint8_t horizon;        /* N */
    uint8_t moves;          /* Nc, 1..N */
    float q[NNMPC_MAX_Y];   /* output error weights */
    float r[NNMPC_MAX_U];   /* move (delta u) weights */
    float s[NNMPC_MAX_U];   /* input regularisation weights (towards u_nom) */
    float u_nom[NNMPC_MAX_U];
    float u_lo[NNMPC_MAX_U], u_hi[NNMPC_MAX_U];
    float y_lo[NNMPC_MAX_Y], y_hi[NNMPC_MAX_Y]; /* plausible measurement range per output; a
                             * channel with y_lo >= y_hi (e.g. both 0, the default) accepts
                             * |y| <= NNMPC_Y_LIMIT. Anything else, or NaN/Inf, is refused. */
    float bias_gain;        /* 0: no disturbance estimate; 1: d = last one-step error */
    float lag;              /* na = 0 only: pole in [0, 1) of a first-order output lag per
                             * period around the quasi-static net (0: none, y = f(u) + d) */
    float y_filter;         /* na > 0: the output lags are y + y_filter * (yp - y), yp the
                             * corrected one-step prediction (0: the measurement as is) */
    uint8_t estimator;      /* na > 0, built with NNMPC_ESTIMATOR: the output lags are the
                             * extended Kalman filter's estimate (y_filter is not used) */
    float kf_q[NNMPC_MAX_Y]; /* estimator: process noise variance of each output per period */
    float kf_r[NNMPC_MAX_Y]; /* estimator: measurement noise variance of each output (> 0) */
    float kf_qd[NNMPC_MAX_Y]; /* estimator: process noise variance of d (a random walk) per
                             * period; the filter estimates d itself (bias_gain is not used) */
    uint16_t max_iter;
    float tol_step;         /* stop when max |step| < tol_step (input units) */
    float tol_cost;         /* ... or the relative cost decrease < tol_cost */
    float lambda0;          /* initial LM damping (relative to the Hessian diagonal) */
    uint32_t budget_ticks;  /* 0: no time budget */
    uint32_t (*clock)(void *ctx); /* monotonic tick counter for the budget; may be NULL */
    void *clock_ctx;
} nnmpc_mpc_config_t;

/** Solver state and workspace: fixed size, keep one per controller (about 9 KB). */
typedef struct {
    nnmpc_mpc_config_t cfg;
    nnmpc_net_t net;
    /* Measured history: yh[l] = y[k-l] (l < na), uh[l] = u[k-1-l] (l < nb). */
    float yh[NNMPC_MAX_LAG][NNMPC_MAX_Y];
    float uh[NNMPC_MAX_LAG][NNMPC_MAX_U];
    float ref[NNMPC_MAX_N][NNMPC_MAX_Y];   /* r[k+1 .. k+N] */
    float d[NNMPC_MAX_Y];                  /* output disturbance estimate */
    float y_pred[NNMPC_MAX_Y];             /* the net's one-step prediction (without d) */
    float xm[NNMPC_MAX_Y];                 /* na = 0: the lag model's output (without d) */
    float f0[NNMPC_MAX_Y];                 /* na = 0: the net's output for the first move */
    int have_pred;
    /* Decision vector (warm-started by shifting) and workspace. */
    float U[NNMPC_MAX_DEC];
    float Ut[NNMPC_MAX_DEC];
    float step[NNMPC_MAX_DEC];
    float g[NNMPC_MAX_DEC];
    float H[NNMPC_MAX_DEC * NNMPC_MAX_DEC];
    float S[NNMPC_MAX_N][NNMPC_MAX_Y][NNMPC_MAX_DEC]; /* dyhat[k+j+1]/dU */
    float yhat[NNMPC_MAX_N][NNMPC_MAX_Y];
    float z[NNMPC_MAX_Z];
    float Jn[NNMPC_MAX_Y * NNMPC_MAX_Z];
    float gn[NNMPC_MAX_DEC];   /* -gradient/2 before the bounds freeze anything */
    float pg[NNMPC_MAX_DEC];   /* diagonally scaled gradient direction (projected-gradient step) */
    float lambda;
    uint32_t t_pred;       /* clock ticks of a plain rollout as last measured (0: not yet) */
    uint8_t t_stale;       /* the last solve was stopped by the budget without a trial, so
                            * t_pred was not re-measured: the next solve lets it decay */
    uint32_t t_call;       /* clock ticks of one plain net call, timed once (0: not yet) */
#if NNMPC_ESTIMATOR
    /* Extended Kalman filter on x = [yh[0] .. yh[na-1], d] (na p + p entries). */
    float P[NNMPC_MAX_X * NNMPC_MAX_X]; /* its covariance, n x n */
    float T[NNMPC_MAX_X * NNMPC_MAX_X]; /* workspace */
    uint8_t kf_ready;      /* 0: the next good measurement starts the filter */
    uint32_t t_pre;        /* clock ticks of this period's filter (the budget includes them) */
#endif
    /* Results of the last solve. */
    float u_out[NNMPC_MAX_U];
    float cost;
    uint16_t iterations;
    uint16_t evaluations;  /* net calls */
    uint8_t status;
    uint32_t ticks;        /* clock ticks spent (0 without a clock) */
} nnmpc_mpc_t;

/** 1 if every one of the p values of y is finite and within its plausible range (y_lo, y_hi,
 *  or |y| <= NNMPC_Y_LIMIT for a channel without a range); 0 otherwise. */
int nnmpc_mpc_measurement_ok(const nnmpc_mpc_config_t *cfg, const float *y);

/** Sensible defaults for p outputs and m inputs (quasi-static, unit weights, no limits). */
void nnmpc_mpc_defaults(nnmpc_mpc_config_t *cfg, int p, int m);

/** Check the settings against the net and reset the state. Returns 0 or -1 (bad config). */
int nnmpc_mpc_init(nnmpc_mpc_t *s, const nnmpc_net_t *net, const nnmpc_mpc_config_t *cfg);

/** Reset history to y0 (p) and u0 (m), clear the warm start and the disturbance estimate. */
void nnmpc_mpc_reset(nnmpc_mpc_t *s, const float *y0, const float *u0);

/** Set the reference for step j (1..N) ahead; ref (p values). */
void nnmpc_mpc_set_ref(nnmpc_mpc_t *s, int j, const float *ref);

/**
 * One control period: take the measurement y[k] (p values), solve, return the status;
 * the input to apply is s->u_out (m values), always within the limits and finite.
 * The history is advanced with y[k] and u_out. A measurement that nnmpc_mpc_measurement_ok()
 * refuses holds the last applied input and returns NNMPC_SOLVE_BAD_MEASUREMENT without a
 * solve; it does not reach the disturbance estimate, and the output history advances with
 * the model's corrected prediction instead. The next good measurement is used as usual.
 */
nnmpc_solve_status_t nnmpc_mpc_step(nnmpc_mpc_t *s, const float *y_meas);

/** The cost of decision vector U for the current history and references (no side effects
 *  on the warm start). Returns a non-finite value if the net does. For tests and baselines. */
float nnmpc_mpc_cost(nnmpc_mpc_t *s, const float *U);

/** Solve from the current state without advancing the history (for tests). */
nnmpc_solve_status_t nnmpc_mpc_solve(nnmpc_mpc_t *s);

/** Finite-difference baseline (the reference implementation's scheme): one Newton step on
 *  the same cost with a single held move (Nc = 1), central-difference sensitivities, a
 *  scalar Hessian and clipping. Same measurement/history handling as nnmpc_mpc_step(). */
nnmpc_solve_status_t nnmpc_mpc_step_fd(nnmpc_mpc_t *s, const float *y_meas, float fd_eps);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_SOLVER_H */
