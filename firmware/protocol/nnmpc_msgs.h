/*
 * nnmpc protocol messages, generated from firmware/protocol/schema.toml by
 * host/link/protogen.py (generator 1, schema 587dfbb45e50572d). Do not edit:
 * change the schema and run `python -m nnmpc.host.link.protogen`.
 *
 * Each message part (request, reply, event) with fields has a struct and
 * pack/unpack functions. Pack writes at most NNMPC_MSGS_PAYLOAD_MAX bytes and returns the
 * count; unpack returns 0, or -1 (and applies nothing) when the length or a string is wrong.
 */
#ifndef NNMPC_MSGS_H
#define NNMPC_MSGS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NNMPC_MSGS_VERSION 5
#define NNMPC_MSGS_SCHEMA_HASH "587dfbb45e50572d"
#define NNMPC_MSGS_PAYLOAD_MAX 512
#define NNMPC_MSGS_CHANNELS 4
#define NNMPC_MSGS_STR_MAX 63
#define NNMPC_MSG_REPLY 0x80

#if defined(NNMPC_PAYLOAD_MAX) && NNMPC_PAYLOAD_MAX != NNMPC_MSGS_PAYLOAD_MAX
#error "nnmpc_msgs.h was generated for another NNMPC_PAYLOAD_MAX: regenerate it"
#endif

/* Message types. */
#define NNMPC_MSG_HELLO 0x01 /* Identify the device: protocol version, model sizes and hash, board, firmware, limits. */
#define NNMPC_MSG_PREDICT 0x02 /* Run the model once: inputs in, outputs back. */
#define NNMPC_MSG_JACOBIAN 0x03 /* Outputs and the exact Jacobian (row-major n_out x n_in) of the model at x. */
#define NNMPC_MSG_STATS 0x04 /* Link and loop counters. */
#define NNMPC_MSG_CONFIG 0x10 /* Controller, plant source, problem sizes, loop rate and solver limits (loop stopped). */
#define NNMPC_MSG_WEIGHTS 0x11 /* Cost weights: output error q, move r, input regularisation s towards u_nom. */
#define NNMPC_MSG_LIMITS 0x12 /* Input box limits and the input applied at start (and held on faults). */
#define NNMPC_MSG_PID 0x13 /* PID per output with an optional feed-forward from the reference; u = u_bias + mix (m x p, row-major) times the PID outputs v, v_i = kp e + I + ki e - kd (y[k] - y[k-1]) + kff (r[k+lead] - y_bias) + kdff (r[k+lead+1] - r[k+lead]), e = r[k] - y[k]. */
#define NNMPC_MSG_REFERENCE 0x14 /* Constant reference (p values); clears an uploaded trajectory (loop stopped). */
#define NNMPC_MSG_TRAJECTORY 0x15 /* Upload reference rows (p floats each) at row `offset` of a trajectory of `total` rows. */
#define NNMPC_MSG_START 0x16 /* Reset the controller state and start the loop. */
#define NNMPC_MSG_STOP 0x17 /* Stop the loop; the last input is held. */
#define NNMPC_MSG_SENSOR 0x18 /* Measurement y[k] (p floats) for hardware-in-the-loop; the TELEMETRY frame answers. In lock-step period k runs once: a repeat of the last period gets its TELEMETRY again (a resend is safe), a k beyond the next period skips the periods between (lost on the link, counted), an older k is refused. */
#define NNMPC_MSG_SENSOR_BRIEF 0x1D /* SENSOR for a noisy link: the same payload and the same once-per-period rule, answered by the short TELEMETRY_BRIEF frame (lock-step only). The host switches to it once the link has damaged a frame: for the msd the round trip is 32 bytes instead of 64, and gets through a noisy link far more often. */
#define NNMPC_MSG_PLANT 0x19 /* On-device plant (source 1): kind 1 = mass-spring-damper m x'' + c x' + k x = gain F. */
#define NNMPC_MSG_EXCITE 0x1A /* Open-loop excitation for controller 3: u = middle + amplitude * half range * signal, inside LIMITS. */
#define NNMPC_MSG_SAFETY 0x1B /* Safe state and plausibility: hold u_safe after link_timeout periods without a SENSOR frame (fixed rate, host sensors); refuse measurements outside [y_lo, y_hi] (a channel with y_lo >= y_hi: |y| <= 1e6). */
#define NNMPC_MSG_ESTIMATOR 0x1C /* Extended Kalman filter on the dynamic net's output lags (firmware built with NNMPC_ESTIMATOR; else unknown_type): the rollouts start from the filtered lags instead of the measurement. Off until enabled; START resets it. */
#define NNMPC_MSG_RIG_SAMPLE 0x30 /* Board to stand-in rig (the emulated board's second UART): read the sensors for period k; the reply holds raw readings. */
#define NNMPC_MSG_RIG_DRIVE 0x31 /* Board to stand-in rig: drive the actuators (raw duty) for period k; no reply. */
#define NNMPC_MSG_TELEMETRY 0x20 /* Sent by the device every telemetry_every periods, unrequested; seq = k mod 256. */
#define NNMPC_MSG_TELEMETRY_BRIEF 0x21 /* The answer to SENSOR_BRIEF: the period's status, iterations and input only; seq = k mod 256 (the host knows k). A repeat of the period is answered with the frame already sent, brief or not. */
#define NNMPC_MSG_SEGMENT 0x0E /* One piece of a longer request, for a noisy link where long frames rarely arrive intact. Pieces 0..count-1 of one request go in order, each acknowledged by an empty SEGMENT reply; the last piece is answered by the carried request's own reply (or ERROR), with the last piece's sequence number. A repeat of a piece is answered again, not applied again; piece 0 starts over. */
#define NNMPC_MSG_EXIT 0x0F /* Acknowledge, then end the program (emulated boards exit the emulator). */
#define NNMPC_MSG_ERROR 0x7F /* The device refused a frame: error code and the refused message type. */

/* Error codes carried by NNMPC_MSG_ERROR. */
#define NNMPC_ERR_UNKNOWN_TYPE 1 /* no such message type */
#define NNMPC_ERR_BAD_LENGTH 2 /* payload length does not match the message */
#define NNMPC_ERR_TOO_LARGE 3 /* the reply would not fit in a frame */
#define NNMPC_ERR_BAD_VALUE 4 /* a field is out of range (sizes, limits, weights, controller); nothing was applied */
#define NNMPC_ERR_BUSY 5 /* not allowed while the control loop runs (stop it first) */
#define NNMPC_ERR_NOT_RUNNING 6 /* sensor data while the loop is stopped or not fed by the host */
#define NNMPC_ERR_OUT_OF_ORDER 7 /* a lock-step SENSOR frame for a period before the last one */
#define NNMPC_ERR_BAD_FRAME 8 /* a frame arrived damaged (COBS, CRC or length): sent at once with seq 0 and type 0, so that the host resends without waiting for its timeout */
#define NNMPC_ERR_BAD_SEGMENT 9 /* a SEGMENT out of order or beyond the payload size */

/* hello reply: type 0x81, 14 fixed bytes. */
typedef struct {
    uint8_t proto_version;
    uint8_t n_in;
    uint8_t n_out;
    uint8_t channels;
    uint8_t max_horizon;
    uint8_t max_lag;
    uint16_t traj_max;
    uint32_t clock_hz; /* rate of the work counter in TELEMETRY */
    uint8_t sensors; /* on-board sensor channels (source 2), 0 = none */
    uint8_t actuators; /* on-board actuator channels (source 2) */
    char model_hash[NNMPC_MSGS_STR_MAX + 1];
    char board[NNMPC_MSGS_STR_MAX + 1];
    char firmware[NNMPC_MSGS_STR_MAX + 1];
} nnmpc_hello_rep_t;
size_t nnmpc_hello_rep_pack(const nnmpc_hello_rep_t *m, uint8_t *out);
int nnmpc_hello_rep_unpack(nnmpc_hello_rep_t *m, const uint8_t *in, size_t len);

/* predict request: type 0x02, 0 fixed bytes + x[] (at most 128). */
typedef struct {
    float x[128];
    uint16_t x_count;
} nnmpc_predict_req_t;
size_t nnmpc_predict_req_pack(const nnmpc_predict_req_t *m, uint8_t *out);
int nnmpc_predict_req_unpack(nnmpc_predict_req_t *m, const uint8_t *in, size_t len);

/* predict reply: type 0x82, 0 fixed bytes + y[] (at most 128). */
typedef struct {
    float y[128];
    uint16_t y_count;
} nnmpc_predict_rep_t;
size_t nnmpc_predict_rep_pack(const nnmpc_predict_rep_t *m, uint8_t *out);
int nnmpc_predict_rep_unpack(nnmpc_predict_rep_t *m, const uint8_t *in, size_t len);

/* jacobian request: type 0x03, 0 fixed bytes + x[] (at most 128). */
typedef struct {
    float x[128];
    uint16_t x_count;
} nnmpc_jacobian_req_t;
size_t nnmpc_jacobian_req_pack(const nnmpc_jacobian_req_t *m, uint8_t *out);
int nnmpc_jacobian_req_unpack(nnmpc_jacobian_req_t *m, const uint8_t *in, size_t len);

/* jacobian reply: type 0x83, 0 fixed bytes + y_jacobian[] (at most 128). */
typedef struct {
    float y_jacobian[128];
    uint16_t y_jacobian_count;
} nnmpc_jacobian_rep_t;
size_t nnmpc_jacobian_rep_pack(const nnmpc_jacobian_rep_t *m, uint8_t *out);
int nnmpc_jacobian_rep_unpack(nnmpc_jacobian_rep_t *m, const uint8_t *in, size_t len);

/* stats reply: type 0x84, 44 fixed bytes. */
typedef struct {
    uint32_t frames_ok;
    uint32_t frames_bad; /* COBS or CRC failures, runts */
    uint32_t frames_long;
    uint32_t requests;
    uint32_t rejected; /* frames answered with ERROR */
    uint32_t periods;
    uint32_t overruns; /* periods whose work exceeded the period */
    uint32_t max_work; /* largest work of one period, clock ticks */
    uint32_t k; /* the next period index (periods since START, lost ones included) */
    uint32_t lost; /* lock-step periods skipped: their SENSOR frame never arrived */
    uint32_t safe_holds; /* fixed-rate periods that held u_safe (link lost) */
} nnmpc_stats_rep_t;
size_t nnmpc_stats_rep_pack(const nnmpc_stats_rep_t *m, uint8_t *out);
int nnmpc_stats_rep_unpack(nnmpc_stats_rep_t *m, const uint8_t *in, size_t len);

/* config request: type 0x10, 24 fixed bytes. */
typedef struct {
    uint8_t controller; /* 0 nr (Newton MPC), 1 pid, 2 fd (finite differences), 3 excite (open loop, EXCITE) */
    uint8_t source; /* 0 measurements from SENSOR frames, 1 on-device plant, 2 on-board sensors and actuators */
    uint8_t p; /* outputs */
    uint8_t m; /* inputs */
    uint8_t na; /* output lags in the net input */
    uint8_t nb; /* input lags in the net input */
    uint8_t horizon;
    uint8_t moves;
    uint32_t period_us; /* 0: one period per SENSOR frame (lock-step) */
    uint32_t budget_us; /* solver time budget per period, 0 = none */
    uint16_t max_iter;
    uint16_t telemetry_every; /* send every n-th period (>= 1) */
    float fd_eps; /* fd controller: central-difference step */
} nnmpc_config_req_t;
size_t nnmpc_config_req_pack(const nnmpc_config_req_t *m, uint8_t *out);
int nnmpc_config_req_unpack(nnmpc_config_req_t *m, const uint8_t *in, size_t len);

/* weights request: type 0x11, 84 fixed bytes. */
typedef struct {
    float q[4];
    float r[4];
    float s[4];
    float u_nom[4];
    float bias_gain; /* output-disturbance filter gain in [0, 1] */
    float tol_step;
    float lambda0;
    float lag; /* quasi-static nets: first-order output lag pole per period in [0, 1), 0 = none */
    float y_filter; /* dynamic nets: weight in [0, 1) of the model's prediction in the output lags, 0 = measured output */
} nnmpc_weights_req_t;
size_t nnmpc_weights_req_pack(const nnmpc_weights_req_t *m, uint8_t *out);
int nnmpc_weights_req_unpack(nnmpc_weights_req_t *m, const uint8_t *in, size_t len);

/* limits request: type 0x12, 48 fixed bytes. */
typedef struct {
    float u_lo[4];
    float u_hi[4];
    float u_init[4];
} nnmpc_limits_req_t;
size_t nnmpc_limits_req_pack(const nnmpc_limits_req_t *m, uint8_t *out);
int nnmpc_limits_req_unpack(nnmpc_limits_req_t *m, const uint8_t *in, size_t len);

/* pid request: type 0x13, 180 fixed bytes. */
typedef struct {
    float kp[4];
    float ki[4];
    float kd[4];
    float u_bias[4];
    float mix[16];
    float kff[4]; /* feed-forward gain on r[k+lead] - y_bias per output (0: none; 1: the static inverse through mix) */
    float kdff[4]; /* feed-forward gain on r[k+lead+1] - r[k+lead] per output (0: none) */
    float y_bias[4]; /* the output at u_bias: where the feed-forward is 0 */
    uint16_t lead; /* periods ahead the feed-forward reads the reference (a trajectory's last row held) */
    uint16_t reserved;
} nnmpc_pid_req_t;
size_t nnmpc_pid_req_pack(const nnmpc_pid_req_t *m, uint8_t *out);
int nnmpc_pid_req_unpack(nnmpc_pid_req_t *m, const uint8_t *in, size_t len);

/* reference request: type 0x14, 16 fixed bytes. */
typedef struct {
    float ref[4];
} nnmpc_reference_req_t;
size_t nnmpc_reference_req_pack(const nnmpc_reference_req_t *m, uint8_t *out);
int nnmpc_reference_req_unpack(nnmpc_reference_req_t *m, const uint8_t *in, size_t len);

/* trajectory request: type 0x15, 4 fixed bytes + rows[] (at most 127). */
typedef struct {
    uint16_t total;
    uint16_t offset;
    float rows[127];
    uint16_t rows_count;
} nnmpc_trajectory_req_t;
size_t nnmpc_trajectory_req_pack(const nnmpc_trajectory_req_t *m, uint8_t *out);
int nnmpc_trajectory_req_unpack(nnmpc_trajectory_req_t *m, const uint8_t *in, size_t len);

/* sensor request: type 0x18, 4 fixed bytes + y[] (at most 127). */
typedef struct {
    uint32_t k;
    float y[127];
    uint16_t y_count;
} nnmpc_sensor_req_t;
size_t nnmpc_sensor_req_pack(const nnmpc_sensor_req_t *m, uint8_t *out);
int nnmpc_sensor_req_unpack(nnmpc_sensor_req_t *m, const uint8_t *in, size_t len);

/* sensor_brief request: type 0x1D, 4 fixed bytes + y[] (at most 127). */
typedef struct {
    uint32_t k;
    float y[127];
    uint16_t y_count;
} nnmpc_sensor_brief_req_t;
size_t nnmpc_sensor_brief_req_pack(const nnmpc_sensor_brief_req_t *m, uint8_t *out);
int nnmpc_sensor_brief_req_unpack(nnmpc_sensor_brief_req_t *m, const uint8_t *in, size_t len);

/* plant request: type 0x19, 40 fixed bytes. */
typedef struct {
    uint8_t kind;
    uint8_t substeps;
    uint16_t reserved;
    float dt;
    float params[8]; /* msd: mass, stiffness, damping, gain */
} nnmpc_plant_req_t;
size_t nnmpc_plant_req_pack(const nnmpc_plant_req_t *m, uint8_t *out);
int nnmpc_plant_req_unpack(nnmpc_plant_req_t *m, const uint8_t *in, size_t len);

/* excite request: type 0x1A, 24 fixed bytes. */
typedef struct {
    uint8_t kind; /* 0 steps, 1 chirp, 2 multisine, 3 prbs */
    uint8_t reserved;
    uint16_t hold; /* steps, prbs: periods per level (>= 1) */
    uint32_t seed;
    uint32_t periods; /* chirp: sweep length in periods (>= 1) */
    float f_lo; /* chirp, multisine: lowest frequency, Hz */
    float f_hi; /* chirp, multisine: highest frequency, Hz */
    float amplitude; /* fraction of the half range, in (0, 1] */
} nnmpc_excite_req_t;
size_t nnmpc_excite_req_pack(const nnmpc_excite_req_t *m, uint8_t *out);
int nnmpc_excite_req_unpack(nnmpc_excite_req_t *m, const uint8_t *in, size_t len);

/* safety request: type 0x1B, 52 fixed bytes. */
typedef struct {
    uint16_t link_timeout; /* periods without a valid SENSOR frame before u_safe is held, 0 = never */
    uint16_t reserved;
    float u_safe[4]; /* the input held on link loss (inside LIMITS) */
    float y_lo[4];
    float y_hi[4];
} nnmpc_safety_req_t;
size_t nnmpc_safety_req_pack(const nnmpc_safety_req_t *m, uint8_t *out);
int nnmpc_safety_req_unpack(nnmpc_safety_req_t *m, const uint8_t *in, size_t len);

/* estimator request: type 0x1C, 52 fixed bytes. */
typedef struct {
    uint8_t enable; /* 0 off (the measured lags, y_filter), 1 on (needs na >= 1) */
    uint8_t reserved;
    uint16_t reserved2;
    float q[4]; /* process noise variance per output and period, >= 0 */
    float r[4]; /* measurement noise variance per output, > 0 on the p outputs */
    float qd[4]; /* process noise variance of the disturbance estimate d (a random walk in the filter's state; bias_gain is not used), >= 0 */
} nnmpc_estimator_req_t;
size_t nnmpc_estimator_req_pack(const nnmpc_estimator_req_t *m, uint8_t *out);
int nnmpc_estimator_req_unpack(nnmpc_estimator_req_t *m, const uint8_t *in, size_t len);

/* rig_sample request: type 0x30, 4 fixed bytes. */
typedef struct {
    uint32_t k;
} nnmpc_rig_sample_req_t;
size_t nnmpc_rig_sample_req_pack(const nnmpc_rig_sample_req_t *m, uint8_t *out);
int nnmpc_rig_sample_req_unpack(nnmpc_rig_sample_req_t *m, const uint8_t *in, size_t len);

/* rig_sample reply: type 0xB0, 0 fixed bytes + raw[] (at most 128). */
typedef struct {
    float raw[128];
    uint16_t raw_count;
} nnmpc_rig_sample_rep_t;
size_t nnmpc_rig_sample_rep_pack(const nnmpc_rig_sample_rep_t *m, uint8_t *out);
int nnmpc_rig_sample_rep_unpack(nnmpc_rig_sample_rep_t *m, const uint8_t *in, size_t len);

/* rig_drive request: type 0x31, 4 fixed bytes + raw[] (at most 127). */
typedef struct {
    uint32_t k;
    float raw[127];
    uint16_t raw_count;
} nnmpc_rig_drive_req_t;
size_t nnmpc_rig_drive_req_pack(const nnmpc_rig_drive_req_t *m, uint8_t *out);
int nnmpc_rig_drive_req_unpack(nnmpc_rig_drive_req_t *m, const uint8_t *in, size_t len);

/* telemetry event: type 0x20, 18 fixed bytes + values[] (at most 123). */
typedef struct {
    uint32_t k;
    uint32_t work; /* clock ticks from sample to actuation */
    float residual; /* solver cost at the returned input */
    uint8_t iterations;
    uint8_t status; /* 0 converged, 1 iteration cap, 2 time budget, 3 non-finite, 4 bad config, 5 bad measurement (u held), 6 link lost (u_safe held) */
    uint8_t controller;
    uint8_t flags; /* bit0: the period overran */
    uint8_t p;
    uint8_t m;
    float values[123]; /* ref[p], y[p], u[m] */
    uint16_t values_count;
} nnmpc_telemetry_evt_t;
size_t nnmpc_telemetry_evt_pack(const nnmpc_telemetry_evt_t *m, uint8_t *out);
int nnmpc_telemetry_evt_unpack(nnmpc_telemetry_evt_t *m, const uint8_t *in, size_t len);

/* telemetry_brief event: type 0x21, 2 fixed bytes + u[] (at most 127). */
typedef struct {
    uint8_t status; /* as in TELEMETRY */
    uint8_t iterations;
    float u[127]; /* u[m] */
    uint16_t u_count;
} nnmpc_telemetry_brief_evt_t;
size_t nnmpc_telemetry_brief_evt_pack(const nnmpc_telemetry_brief_evt_t *m, uint8_t *out);
int nnmpc_telemetry_brief_evt_unpack(nnmpc_telemetry_brief_evt_t *m, const uint8_t *in, size_t len);

/* segment request: type 0x0E, 4 fixed bytes + bytes[] (at most 508). */
typedef struct {
    uint8_t carried; /* message type of the request carried */
    uint8_t index;
    uint8_t count;
    uint8_t reserved;
    uint8_t bytes[508]; /* this piece of the carried request's payload */
    uint16_t bytes_count;
} nnmpc_segment_req_t;
size_t nnmpc_segment_req_pack(const nnmpc_segment_req_t *m, uint8_t *out);
int nnmpc_segment_req_unpack(nnmpc_segment_req_t *m, const uint8_t *in, size_t len);

/* error event: type 0x7F, 2 fixed bytes. */
typedef struct {
    uint8_t code;
    uint8_t type;
} nnmpc_error_evt_t;
size_t nnmpc_error_evt_pack(const nnmpc_error_evt_t *m, uint8_t *out);
int nnmpc_error_evt_unpack(nnmpc_error_evt_t *m, const uint8_t *in, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_MSGS_H */
