/*
 * nnmpc device application core: answers host requests over the framed serial link and runs
 * the fixed-rate control loop.
 *
 * Board-independent: the board's main (HAL side) fills an nnmpc_app_t with the model, a
 * byte writer, a tick clock and storage for the controller, then feeds received bytes to
 * nnmpc_app_on_byte() and calls nnmpc_app_poll() from its main loop. Messages and their
 * fields: firmware/protocol/schema.toml (generated into nnmpc_msgs.h); docs/PROTOCOL.md.
 */
#ifndef NNMPC_APP_H
#define NNMPC_APP_H

#include <stddef.h>
#include <stdint.h>

#include "nnmpc_control.h"
#include "nnmpc_msgs.h"
#include "nnmpc_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The compiled model, as the application sees it. */
typedef struct {
    int n_in;
    int n_out;
    const char *hash;
    void (*predict)(const float *input, float *output);
    void (*predict_jacobian)(const float *input, float *output, float *jacobian);
} nnmpc_model_t;

/* Bytes kept for resending: a reply up to this size (acks, errors, short answers; a longer one
 * is an idempotent query and is computed again), and one TELEMETRY frame. */
#define NNMPC_REPLY_CACHE 40
#define NNMPC_TELEMETRY_CACHE (NNMPC_MSGS_CHANNELS * 12 + 40)

typedef struct nnmpc_app nnmpc_app_t;

struct nnmpc_app {
    /* Set by the board before nnmpc_app_init(). */
    const nnmpc_model_t *model;
    const char *board;
    void (*write)(const uint8_t *data, size_t n);   /* blocking serial write */
    void (*exit)(int code);                        /* may be NULL */
    uint32_t (*clock)(void);                       /* free-running tick counter, may be NULL */
    uint32_t clock_hz;
    nnmpc_control_t *control;                      /* storage for the control loop */
    const nnmpc_io_t *io;                          /* on-board sensors and actuators (source 2),
                                                      NULL: none */
    /* Private. */
    nnmpc_decoder_t decoder;
    nnmpc_frame_t frame;
    uint8_t wire[NNMPC_WIRE_MAX];
    uint8_t out[NNMPC_PAYLOAD_MAX];
    union {
        nnmpc_predict_req_t predict;
        nnmpc_jacobian_rep_t jacobian;
        nnmpc_config_req_t config;
        nnmpc_weights_req_t weights;
        nnmpc_limits_req_t limits;
        nnmpc_pid_req_t pid;
        nnmpc_reference_req_t reference;
        nnmpc_trajectory_req_t trajectory;
        nnmpc_sensor_req_t sensor;
        nnmpc_telemetry_brief_evt_t brief;
        nnmpc_plant_req_t plant;
        nnmpc_excite_req_t excite;
        nnmpc_safety_req_t safety;
#if NNMPC_ESTIMATOR
        nnmpc_estimator_req_t estimator;
#endif
        nnmpc_hello_rep_t hello;
        nnmpc_stats_rep_t stats;
        nnmpc_segment_req_t segment;
    } msg;
    nnmpc_telemetry_evt_t telemetry;
    /* Resend safety: the last request's (type, seq, CRC) and its short reply, and the last
     * period's TELEMETRY frame, sent again for a repeated request or SENSOR frame. */
    uint8_t last_type, last_seq;
    uint16_t last_crc;
    uint8_t reply_wire[NNMPC_REPLY_CACHE];
    uint16_t reply_len;       /* 0: nothing cached (the reply was long, or none yet) */
    uint8_t telemetry_wire[NNMPC_TELEMETRY_CACHE];
    uint16_t telemetry_len;
    int answering;            /* a request is being answered: cache what is sent */
    uint32_t since_sensor;    /* fixed-rate periods since the last valid SENSOR frame */
    uint8_t brief;            /* lock-step: answer with TELEMETRY_BRIEF (SENSOR_BRIEF came) */
    float y_latest[NNMPC_CH];
    nnmpc_frame_t whole;      /* a request arriving in SEGMENT pieces */
    uint8_t seg_next, seg_count;
    uint32_t period_ticks;
    uint32_t next_due;
    uint32_t requests, rejected, periods, overruns, max_work, lost, safe_holds;
};

/** Reset counters, the decoder and the controller. Returns 0, or -1 if a field is missing. */
int nnmpc_app_init(nnmpc_app_t *app);

/** Feed one received byte; answers complete requests through app->write. */
void nnmpc_app_on_byte(nnmpc_app_t *app, uint8_t byte);

/** Run the control period if one is due (fixed-rate mode); call it from the main loop. */
void nnmpc_app_poll(nnmpc_app_t *app);
/** 1 when nothing is due before the next received byte (loop stopped, or lock-step): the board
 *  may sleep until its UART or timer interrupt. */
int nnmpc_app_idle(const nnmpc_app_t *app);

/** Send one frame of the given type through app->write. */
void nnmpc_app_send(nnmpc_app_t *app, uint8_t type, uint8_t seq, const void *payload, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_APP_H */
