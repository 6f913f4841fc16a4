/*
 * nnmpc control loop core: one period = sample -> solve -> actuate -> telemetry.
 *
 * Board-independent and fixed-size. Holds the controller settings received over the link
 * (generated message structs, nnmpc_msgs.h), the reference (constant or an uploaded
 * trajectory), three controllers on one interface:
 *   nr  - the Newton MPC solver (nnmpc_solver.h) on the compiled net's exact Jacobian;
 *   pid - PID per output with discrete gains, mixed to the inputs, conditional integration,
 *         optionally a feed-forward from the reference `lead` periods ahead;
 *   fd  - the reference implementation's scheme: one Newton step per period from central
 *         finite differences, a scalar Hessian and clipping;
 * and an on-device plant (a mass-spring-damper) for runs without the host in the loop.
 */
#ifndef NNMPC_CONTROL_H
#define NNMPC_CONTROL_H

#include <stdint.h>

#include "nnmpc_io.h"
#include "nnmpc_msgs.h"
#include "nnmpc_solver.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NNMPC_TRAJ_FLOATS
#define NNMPC_TRAJ_FLOATS 4096 /* trajectory storage: rows * p floats */
#endif
#if NNMPC_TRAJ_FLOATS < 16 || NNMPC_TRAJ_FLOATS > 65535
#error "NNMPC_TRAJ_FLOATS must be within [16, 65535]"
#endif
#ifndef NNMPC_MAX_TIME_US
#define NNMPC_MAX_TIME_US 10000000u /* CONFIG period_us and budget_us: at most 10 s */
#endif
#define NNMPC_CH NNMPC_MSGS_CHANNELS
#if NNMPC_MAX_Y > NNMPC_CH || NNMPC_MAX_U > NNMPC_CH
#error "the solver sizes exceed the protocol's channel count"
#endif

enum { NNMPC_CTRL_NR = 0, NNMPC_CTRL_PID = 1, NNMPC_CTRL_FD = 2, NNMPC_CTRL_EXCITE = 3 };
/* Where y comes from: SENSOR frames, the on-device plant, or the board's own sensors (the
 * application samples them through nnmpc_io_t and drives the actuators with u). */
enum { NNMPC_SOURCE_HOST = 0, NNMPC_SOURCE_DEVICE = 1, NNMPC_SOURCE_BOARD = 2 };
enum { NNMPC_PLANT_NONE = 0, NNMPC_PLANT_MSD = 1 };

typedef struct {
    /* Settings (CONFIG, WEIGHTS, LIMITS, PID, PLANT). */
    nnmpc_config_req_t config;
    nnmpc_mpc_config_t mpc_cfg;
    float u_init[NNMPC_CH];
    nnmpc_pid_req_t pid;
    nnmpc_plant_req_t plant;
    nnmpc_excite_t excite;     /* controller 3: open-loop excitation (EXCITE) */
    float u_safe[NNMPC_CH];    /* held on link loss (SAFETY) */
    uint16_t link_timeout;     /* periods without SENSOR before u_safe, 0 = never */
    float excite_amp;
    /* Reference: constant, or trajectory rows of p floats. */
    float ref[NNMPC_CH];
    float traj[NNMPC_TRAJ_FLOATS];
    uint16_t traj_rows;
    /* State. */
    nnmpc_net_t net;
    nnmpc_mpc_t mpc;
    uint32_t (*clock)(void);   /* work/budget clock (board), may be NULL */
    uint32_t clock_hz;
    int running;
    uint32_t k;                /* period index since START */
    float u[NNMPC_CH];         /* applied input */
    float y_prev[NNMPC_CH];
    float integ[NNMPC_CH];
    int pid_primed;            /* the PID has had a good measurement since START */
    float px[2 * NNMPC_CH];    /* on-device plant state */
} nnmpc_control_t;

/** floor(us * clock_hz / 10^6) without 64-bit arithmetic; *ok = 0 (and 0 returned) when
 * us > NNMPC_MAX_TIME_US or the result exceeds 2^31 - 1. */
uint32_t nnmpc_us_to_ticks(uint32_t us, uint32_t clock_hz, int *ok);

/** Defaults: nr, host-fed lock-step, quasi-static sizes from the net (p = n_out, m = n_in). */
void nnmpc_control_init(nnmpc_control_t *c, const nnmpc_net_t *net, uint32_t (*clock)(void),
                        uint32_t clock_hz);

/* Settings; each returns 0 or an NNMPC_ERR_* code (and then changes nothing). CONFIG's
 * period_us and budget_us must be <= NNMPC_MAX_TIME_US and <= 2^31 - 1 clock ticks. */
int nnmpc_control_config(nnmpc_control_t *c, const nnmpc_config_req_t *m);
int nnmpc_control_weights(nnmpc_control_t *c, const nnmpc_weights_req_t *m);
int nnmpc_control_limits(nnmpc_control_t *c, const nnmpc_limits_req_t *m);
int nnmpc_control_set_pid(nnmpc_control_t *c, const nnmpc_pid_req_t *m);
int nnmpc_control_reference(nnmpc_control_t *c, const nnmpc_reference_req_t *m);
int nnmpc_control_trajectory(nnmpc_control_t *c, const nnmpc_trajectory_req_t *m);
int nnmpc_control_set_plant(nnmpc_control_t *c, const nnmpc_plant_req_t *m);
int nnmpc_control_excite(nnmpc_control_t *c, const nnmpc_excite_req_t *m);
int nnmpc_control_safety(nnmpc_control_t *c, const nnmpc_safety_req_t *m);
#if NNMPC_ESTIMATOR
/* ESTIMATOR: the extended Kalman filter on the dynamic net's output lags (nnmpc_solver.h). */
int nnmpc_control_estimator(nnmpc_control_t *c, const nnmpc_estimator_req_t *m);
#endif

/* Telemetry status of a period that held u_safe because the link went quiet. */
#define NNMPC_STATUS_LINK_LOST 6

/** One period without a solve: hold u_safe, fill the telemetry (status 6) and count it. */
void nnmpc_control_hold_safe(nnmpc_control_t *c, const float *y, nnmpc_telemetry_evt_t *t);

/** Reset the controller and start; 0 or NNMPC_ERR_BAD_VALUE (sizes do not fit the net). */
int nnmpc_control_start(nnmpc_control_t *c);
void nnmpc_control_stop(nnmpc_control_t *c);

/** The on-device plant's current output (p values). */
void nnmpc_control_plant_output(const nnmpc_control_t *c, float *y);

/**
 * One period with measurement y (p values): solve, set c->u, advance the on-device plant if
 * it is the source, and fill the telemetry event (work = clock ticks of this call).
 */
void nnmpc_control_period(nnmpc_control_t *c, const float *y, nnmpc_telemetry_evt_t *t);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_CONTROL_H */
