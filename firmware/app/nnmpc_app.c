/* nnmpc device application core. See nnmpc_app.h. */
#include "nnmpc_app.h"

#include <string.h>

#ifndef NNMPC_FIRMWARE_VERSION
#define NNMPC_FIRMWARE_VERSION "0.2.0"
#endif

#if NNMPC_PROTO_VERSION != NNMPC_MSGS_VERSION
#error "framing (nnmpc_proto.h) and messages (nnmpc_msgs.h) disagree on the protocol version"
#endif

static nnmpc_net_t net_of(const nnmpc_model_t *m)
{
    nnmpc_net_t n;
    n.n_in = m->n_in;
    n.n_out = m->n_out;
    n.predict = m->predict;
    n.predict_jacobian = m->predict_jacobian;
    return n;
}

int nnmpc_app_init(nnmpc_app_t *app)
{
    nnmpc_net_t net;
    nnmpc_decoder_init(&app->decoder);
    app->requests = app->rejected = app->periods = app->overruns = app->max_work = 0;
    app->lost = app->safe_holds = 0;
    app->period_ticks = 0;
    app->last_type = app->last_seq = 0;
    app->last_crc = 0;
    app->reply_len = app->telemetry_len = 0;
    app->answering = 0;
    app->since_sensor = 0;
    app->brief = 0;
    app->seg_next = app->seg_count = 0;
    app->whole.len = 0;
    memset(app->y_latest, 0, sizeof(app->y_latest));
    if (!app->model || !app->write || !app->control || !app->board) {
        return -1;
    }
    net = net_of(app->model);
    nnmpc_control_init(app->control, &net, app->clock, app->clock_hz);
    return 0;
}

void nnmpc_app_send(nnmpc_app_t *app, uint8_t type, uint8_t seq, const void *payload, size_t len)
{
    const size_t n = nnmpc_frame_encode(type, seq, (const uint8_t *)payload, len, app->wire);
    if (!n) {
        return;
    }
    if (type == NNMPC_MSG_TELEMETRY || type == NNMPC_MSG_TELEMETRY_BRIEF) {
        app->telemetry_len = (uint16_t)(n <= sizeof(app->telemetry_wire) ? n : 0u);
        if (app->telemetry_len) {
            memcpy(app->telemetry_wire, app->wire, n);
        }
    } else if (app->answering) {
        app->reply_len = (uint16_t)(n <= sizeof(app->reply_wire) ? n : 0u);
        if (app->reply_len) {
            memcpy(app->reply_wire, app->wire, n);
        }
    }
    app->write(app->wire, n);
}

static void send_error(nnmpc_app_t *app, uint8_t seq, uint8_t code, uint8_t type)
{
    const uint8_t p[2] = {code, type};
    app->rejected++;
    nnmpc_app_send(app, NNMPC_MSG_ERROR, seq, p, sizeof(p));
}

static void ack(nnmpc_app_t *app, const nnmpc_frame_t *f, int err)
{
    if (err) {
        send_error(app, f->seq, (uint8_t)err, f->type);
    } else {
        nnmpc_app_send(app, (uint8_t)(f->type | NNMPC_MSG_REPLY), f->seq, NULL, 0);
    }
}

static void copy_str(char *dst, const char *src)
{
    size_t n = 0;
    while (n < NNMPC_MSGS_STR_MAX && src[n]) {
        dst[n] = src[n];
        ++n;
    }
    dst[n] = '\0';
}

static void on_hello(nnmpc_app_t *app, uint8_t seq)
{
    nnmpc_hello_rep_t *h = &app->msg.hello;
    h->proto_version = NNMPC_MSGS_VERSION;
    h->n_in = (uint8_t)app->model->n_in;
    h->n_out = (uint8_t)app->model->n_out;
    h->channels = NNMPC_CH;
    h->max_horizon = NNMPC_MAX_N;
    h->max_lag = NNMPC_MAX_LAG;
    h->traj_max = NNMPC_TRAJ_FLOATS;
    h->clock_hz = app->clock_hz;
    h->sensors = (uint8_t)(app->io ? app->io->n_sensors : 0);
    h->actuators = (uint8_t)(app->io ? app->io->n_actuators : 0);
    copy_str(h->model_hash, app->model->hash);
    copy_str(h->board, app->board);
    copy_str(h->firmware, NNMPC_FIRMWARE_VERSION);
    nnmpc_app_send(app, NNMPC_MSG_HELLO | NNMPC_MSG_REPLY, seq, app->out,
                   nnmpc_hello_rep_pack(h, app->out));
}

static void on_model(nnmpc_app_t *app, const nnmpc_frame_t *f)
{
    const nnmpc_model_t *m = app->model;
    float x[sizeof(app->msg.predict.x) / sizeof(float)];
    nnmpc_jacobian_rep_t *r = &app->msg.jacobian; /* shares storage with the request */
    size_t n_out = (size_t)m->n_out;
    if (nnmpc_predict_req_unpack(&app->msg.predict, f->payload, f->len) != 0 ||
        app->msg.predict.x_count != m->n_in) {
        send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
        return;
    }
    memcpy(x, app->msg.predict.x, sizeof(float) * (size_t)m->n_in);
    if (f->type == NNMPC_MSG_PREDICT) {
        m->predict(x, r->y_jacobian);
    } else {
        n_out += (size_t)m->n_out * (size_t)m->n_in;
        if (n_out > sizeof(r->y_jacobian) / sizeof(float)) {
            send_error(app, f->seq, NNMPC_ERR_TOO_LARGE, f->type);
            return;
        }
        m->predict_jacobian(x, r->y_jacobian, r->y_jacobian + m->n_out);
    }
    r->y_jacobian_count = (uint16_t)n_out;
    nnmpc_app_send(app, (uint8_t)(f->type | NNMPC_MSG_REPLY), f->seq, app->out,
                   nnmpc_jacobian_rep_pack(r, app->out));
}

static void send_telemetry(nnmpc_app_t *app)
{
    const nnmpc_telemetry_evt_t *t = &app->telemetry;
    app->periods++;
    if (app->brief) {
        /* SENSOR_BRIEF: status, iterations and u only (the host knows k from seq) */
        nnmpc_telemetry_brief_evt_t *b = &app->msg.brief;
        b->status = t->status;
        b->iterations = t->iterations;
        b->u_count = t->m;
        memcpy(b->u, t->values + 2u * t->p, sizeof(float) * t->m);
        nnmpc_app_send(app, NNMPC_MSG_TELEMETRY_BRIEF, (uint8_t)t->k, app->out,
                       nnmpc_telemetry_brief_evt_pack(b, app->out));
    } else if (t->k % app->control->config.telemetry_every == 0) {
        nnmpc_app_send(app, NNMPC_MSG_TELEMETRY, (uint8_t)t->k, app->out,
                       nnmpc_telemetry_evt_pack(t, app->out));
    }
}

static void run_period(nnmpc_app_t *app, const float *y)
{
    nnmpc_control_t *c = app->control;
    nnmpc_telemetry_evt_t *t = &app->telemetry;
    nnmpc_control_period(c, y, t);
    if (t->work > app->max_work) {
        app->max_work = t->work;
    }
    if (app->period_ticks && t->work > app->period_ticks) {
        t->flags |= 1u;
        app->overruns++;
    }
    send_telemetry(app);
}

int nnmpc_app_idle(const nnmpc_app_t *app)
{
    return !app->control->running || app->period_ticks == 0u;
}

void nnmpc_app_poll(nnmpc_app_t *app)
{
    nnmpc_control_t *c = app->control;
    uint32_t now;
    if (!c->running || app->period_ticks == 0 || !app->clock) {
        return;
    }
    now = app->clock();
    if ((int32_t)(now - app->next_due) < 0) {
        return;
    }
    app->next_due += app->period_ticks;
    if ((int32_t)(now - app->next_due) >= 0) {
        /* A whole period was missed: count it and restart the schedule from now. */
        app->overruns++;
        app->next_due = now + app->period_ticks;
    }
    if (c->config.source == NNMPC_SOURCE_HOST && c->link_timeout &&
        app->since_sensor >= c->link_timeout) {
        /* The host's measurements stopped: hold the safe input and say so every period
         * until SENSOR frames return. */
        nnmpc_control_hold_safe(c, app->y_latest, &app->telemetry);
        app->safe_holds++;
        send_telemetry(app);
        return;
    }
    if (c->config.source == NNMPC_SOURCE_HOST) {
        app->since_sensor++;
    }
    if (c->config.source == NNMPC_SOURCE_DEVICE) {
        nnmpc_control_plant_output(c, app->y_latest);
    } else if (c->config.source == NNMPC_SOURCE_BOARD) {
        /* Sample, solve, actuate; a failed read gives NaN, so the period holds u. */
        nnmpc_io_sense(app->io, c->k, app->y_latest, c->config.p);
    }
    run_period(app, app->y_latest);
    if (c->config.source == NNMPC_SOURCE_BOARD) {
        nnmpc_io_actuate(app->io, c->k - 1u, c->u, c->config.m);
    }
}

static void on_start(nnmpc_app_t *app, const nnmpc_frame_t *f)
{
    nnmpc_control_t *c = app->control;
    int err;
    if (f->len != 0) {
        send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
        return;
    }
    if (c->running) {
        send_error(app, f->seq, NNMPC_ERR_BUSY, f->type);
        return;
    }
    if (c->config.source == NNMPC_SOURCE_BOARD &&
        (!app->io || c->config.period_us == 0 || c->config.p > app->io->n_sensors ||
         c->config.m > app->io->n_actuators)) {
        /* On-board sensing needs the board's channels and a fixed rate. */
        send_error(app, f->seq, NNMPC_ERR_BAD_VALUE, f->type);
        return;
    }
    err = nnmpc_control_start(c);
    if (!err && c->config.period_us && !app->clock) {
        nnmpc_control_stop(c);
        err = NNMPC_ERR_BAD_VALUE; /* a fixed rate needs the board's clock */
    }
    if (!err) {
        /* nnmpc_control_config() refused a period_us above NNMPC_MAX_TIME_US or 2^31 - 1 ticks
         * (the schedule below compares ticks as signed 32-bit differences); checked again
         * here in case the clock rate differs from the one the control loop was given. */
        int ok = 1;
        const uint32_t ticks = nnmpc_us_to_ticks(c->config.period_us, app->clock_hz, &ok);
        if (!ok) {
            nnmpc_control_stop(c);
            ack(app, f, NNMPC_ERR_BAD_VALUE);
            return;
        }
        app->period_ticks = ticks;
        if (c->config.period_us && app->period_ticks == 0) {
            app->period_ticks = 1;
        }
        app->next_due = app->clock ? app->clock() : 0u;
        nnmpc_control_plant_output(c, app->y_latest);
        if (c->config.source == NNMPC_SOURCE_HOST) {
            memset(app->y_latest, 0, sizeof(app->y_latest));
        }
        app->periods = app->overruns = app->max_work = 0;
        app->lost = app->safe_holds = 0;
        app->since_sensor = 0u;
        app->telemetry_len = 0u;
        app->brief = 0u;
    }
    ack(app, f, err);
    /* Free-running on-device loop (no period): the periods follow from nnmpc_app_poll with
     * period_ticks = 1, i.e. back to back. */
    if (!err && c->config.source == NNMPC_SOURCE_DEVICE && app->period_ticks == 0) {
        app->period_ticks = app->clock ? 1u : 0u;
    }
}

static void on_sensor(nnmpc_app_t *app, const nnmpc_frame_t *f)
{
    nnmpc_control_t *c = app->control;
    nnmpc_sensor_req_t *s = &app->msg.sensor;
    if (nnmpc_sensor_req_unpack(s, f->payload, f->len) != 0 || s->y_count != c->config.p) {
        send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
        return;
    }
    if (!c->running || c->config.source != NNMPC_SOURCE_HOST) {
        send_error(app, f->seq, NNMPC_ERR_NOT_RUNNING, f->type);
        return;
    }
    if (app->period_ticks == 0) {
        /* Lock-step: the sensor frame is the clock, and each period runs exactly once. A
         * resend of the last period's frame gets that period's TELEMETRY again (in the form
         * first sent: the host takes either). */
        if (s->k - c->k < 0x80000000u) { /* s->k >= c->k, modulo 2^32 */
            app->brief = f->type == NNMPC_MSG_SENSOR_BRIEF;
            /* Periods between the last one and k never had their SENSOR frame: the host gave
             * up on them (their input was held there). Skip them so both sides agree on k. */
            app->lost += s->k - c->k;
            c->k = s->k;
            memcpy(app->y_latest, s->y, sizeof(float) * s->y_count);
            run_period(app, app->y_latest);
        } else if (s->k == c->k - 1u && app->telemetry_len) {
            app->write(app->telemetry_wire, app->telemetry_len);
        } else {
            send_error(app, f->seq, NNMPC_ERR_OUT_OF_ORDER, f->type);
        }
        return;
    }
    memcpy(app->y_latest, s->y, sizeof(float) * s->y_count);
    app->since_sensor = 0u; /* fixed rate: the latest measurement, and the link is alive */
}

/* Unpack a settings message and apply it; any failure leaves the settings unchanged. */
#define SETTING(unpack, apply, field)                                                     \
    do {                                                                                  \
        if (unpack(&app->msg.field, f->payload, f->len) != 0) {                           \
            send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);                       \
        } else {                                                                          \
            ack(app, f, apply(app->control, &app->msg.field));                            \
        }                                                                                 \
    } while (0)

static void handle(nnmpc_app_t *app, const nnmpc_frame_t *f);

/* A request in pieces (SEGMENT): collected in order into app->whole, then handled as if it
 * had arrived in one frame, with the last piece's sequence number. */
static void on_segment(nnmpc_app_t *app, const nnmpc_frame_t *f)
{
    nnmpc_segment_req_t *s = &app->msg.segment;
    nnmpc_frame_t *whole = &app->whole;
    if (nnmpc_segment_req_unpack(s, f->payload, f->len) != 0 || s->count == 0 ||
        s->index >= s->count || s->carried == NNMPC_MSG_SEGMENT ||
        s->carried == NNMPC_MSG_SENSOR || s->carried == NNMPC_MSG_SENSOR_BRIEF) {
        send_error(app, f->seq, NNMPC_ERR_BAD_SEGMENT, f->type);
        return;
    }
    if (s->index == 0) {
        app->seg_next = 0;
        app->seg_count = s->count;
        whole->type = s->carried;
        whole->len = 0;
    }
    if (s->index + 1u == app->seg_next && s->count == app->seg_count &&
        s->carried == whole->type) {
        /* the piece just taken, again (its answer was lost and not kept): answer again */
        if (app->seg_next < app->seg_count) {
            ack(app, f, 0);
        } else {
            whole->seq = f->seq;
            handle(app, whole);
        }
        return;
    }
    if (s->index != app->seg_next || s->count != app->seg_count || s->carried != whole->type ||
        (size_t)whole->len + s->bytes_count > NNMPC_PAYLOAD_MAX) {
        app->seg_next = app->seg_count = 0;
        send_error(app, f->seq, NNMPC_ERR_BAD_SEGMENT, f->type);
        return;
    }
    memcpy(whole->payload + whole->len, s->bytes, s->bytes_count);
    whole->len = (uint16_t)(whole->len + s->bytes_count);
    app->seg_next++;
    if (app->seg_next < app->seg_count) {
        ack(app, f, 0);
        return;
    }
    whole->seq = f->seq;
    handle(app, whole);
}

void nnmpc_app_on_byte(nnmpc_app_t *app, uint8_t byte)
{
    const nnmpc_frame_t *f = &app->frame;
    const uint32_t damaged = app->decoder.frames_bad + app->decoder.frames_long;
    if (!nnmpc_decoder_push(&app->decoder, byte, &app->frame)) {
        if (app->decoder.frames_bad + app->decoder.frames_long != damaged) {
            /* Say so at once (seq 0, type 0): the host resends now, not at its timeout. */
            const uint8_t nak[2] = {NNMPC_ERR_BAD_FRAME, 0};
            nnmpc_app_send(app, NNMPC_MSG_ERROR, 0, nak, sizeof(nak));
        }
        return;
    }
    app->requests++;
    if (f->type != NNMPC_MSG_SENSOR && f->type != NNMPC_MSG_SENSOR_BRIEF) {
        /* A request repeated with its sequence number (the host resends after a lost reply)
         * is answered again, not applied again: the cached reply, or, for a long reply (an
         * idempotent query), the same request computed again. */
        const uint16_t crc = nnmpc_crc16(nnmpc_crc16(0xFFFFu, &f->type, 1), f->payload, f->len);
        if (f->type == app->last_type && f->seq == app->last_seq && crc == app->last_crc &&
            app->reply_len) {
            app->write(app->reply_wire, app->reply_len);
            return;
        }
        app->last_type = f->type;
        app->last_seq = f->seq;
        app->last_crc = crc;
        app->reply_len = 0;
    }
    app->answering = 1;
    handle(app, f);
    app->answering = 0;
}

static void handle(nnmpc_app_t *app, const nnmpc_frame_t *f)
{
    switch (f->type) {
    case NNMPC_MSG_HELLO:
        if (f->len) {
            send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
        } else {
            on_hello(app, f->seq);
        }
        break;
    case NNMPC_MSG_PREDICT:
    case NNMPC_MSG_JACOBIAN:
        on_model(app, f);
        break;
    case NNMPC_MSG_STATS: {
        nnmpc_stats_rep_t *s = &app->msg.stats;
        if (f->len) {
            send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
            break;
        }
        s->frames_ok = app->decoder.frames_ok;
        s->frames_bad = app->decoder.frames_bad;
        s->frames_long = app->decoder.frames_long;
        s->requests = app->requests;
        s->rejected = app->rejected;
        s->periods = app->periods;
        s->overruns = app->overruns;
        s->max_work = app->max_work;
        s->k = app->control->k;
        s->lost = app->lost;
        s->safe_holds = app->safe_holds;
        nnmpc_app_send(app, NNMPC_MSG_STATS | NNMPC_MSG_REPLY, f->seq, app->out,
                       nnmpc_stats_rep_pack(s, app->out));
        break;
    }
    case NNMPC_MSG_CONFIG:
        SETTING(nnmpc_config_req_unpack, nnmpc_control_config, config);
        break;
    case NNMPC_MSG_WEIGHTS:
        SETTING(nnmpc_weights_req_unpack, nnmpc_control_weights, weights);
        break;
    case NNMPC_MSG_LIMITS:
        SETTING(nnmpc_limits_req_unpack, nnmpc_control_limits, limits);
        break;
    case NNMPC_MSG_PID:
        SETTING(nnmpc_pid_req_unpack, nnmpc_control_set_pid, pid);
        break;
    case NNMPC_MSG_REFERENCE:
        SETTING(nnmpc_reference_req_unpack, nnmpc_control_reference, reference);
        break;
    case NNMPC_MSG_TRAJECTORY:
        SETTING(nnmpc_trajectory_req_unpack, nnmpc_control_trajectory, trajectory);
        break;
    case NNMPC_MSG_PLANT:
        SETTING(nnmpc_plant_req_unpack, nnmpc_control_set_plant, plant);
        break;
    case NNMPC_MSG_EXCITE:
        SETTING(nnmpc_excite_req_unpack, nnmpc_control_excite, excite);
        break;
    case NNMPC_MSG_SAFETY:
        SETTING(nnmpc_safety_req_unpack, nnmpc_control_safety, safety);
        break;
#if NNMPC_ESTIMATOR
    case NNMPC_MSG_ESTIMATOR:
        SETTING(nnmpc_estimator_req_unpack, nnmpc_control_estimator, estimator);
        break;
#endif
    case NNMPC_MSG_START:
        on_start(app, f);
        break;
    case NNMPC_MSG_STOP:
        if (f->len) {
            send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
        } else {
            nnmpc_control_stop(app->control);
            ack(app, f, 0);
        }
        break;
    case NNMPC_MSG_SENSOR:
    case NNMPC_MSG_SENSOR_BRIEF: /* same payload */
        on_sensor(app, f);
        break;
    case NNMPC_MSG_SEGMENT:
        on_segment(app, f);
        break;
    case NNMPC_MSG_EXIT:
        nnmpc_app_send(app, NNMPC_MSG_EXIT | NNMPC_MSG_REPLY, f->seq, NULL, 0);
        if (app->exit) {
            app->exit(0);
        }
        break;
    default:
        send_error(app, f->seq, NNMPC_ERR_UNKNOWN_TYPE, f->type);
        break;
    }
}
