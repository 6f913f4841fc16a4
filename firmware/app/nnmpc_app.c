/* nnmpc device application core. See nnmpc_app.h. */
#include "nnmpc_app.h"

#include <string.h>

#ifndef NNMPC_FIRMWARE_VERSION
#define NNMPC_FIRMWARE_VERSION "0.1.0"
#endif

static size_t required_scratch(const nnmpc_model_t *m)
{
    return (size_t)(m->n_in + m->n_out + m->n_out * m->n_in);
}

int nnmpc_app_init(nnmpc_app_t *app)
{
    nnmpc_decoder_init(&app->decoder);
    app->requests = 0;
    return app->scratch_floats >= required_scratch(app->model) ? 0 : -1;
}

void nnmpc_app_send(nnmpc_app_t *app, uint8_t type, uint8_t seq, const void *payload, size_t len)
{
    const size_t n = nnmpc_frame_encode(type, seq, (const uint8_t *)payload, len, app->wire);
    if (n) {
        app->write(app->wire, n);
    }
}

static void send_error(nnmpc_app_t *app, uint8_t seq, uint8_t code, uint8_t type)
{
    const uint8_t p[2] = {code, type};
    nnmpc_app_send(app, NNMPC_MSG_ERROR, seq, p, sizeof(p));
}

static size_t put_str(uint8_t *out, const char *s)
{
    size_t n = strlen(s);
    if (n > 63) {
        n = 63;
    }
    out[0] = (uint8_t)n;
    memcpy(out + 1, s, n);
    return n + 1;
}

static void on_hello(nnmpc_app_t *app, uint8_t seq)
{
    uint8_t p[4 + 3 * 64];
    size_t n = 0;
    p[n++] = NNMPC_PROTO_VERSION;
    p[n++] = (uint8_t)app->model->n_in;
    p[n++] = (uint8_t)app->model->n_out;
    p[n++] = 0; /* reserved */
    n += put_str(p + n, app->model->hash);
    n += put_str(p + n, app->board);
    n += put_str(p + n, NNMPC_FIRMWARE_VERSION);
    nnmpc_app_send(app, NNMPC_MSG_HELLO | NNMPC_MSG_REPLY, seq, p, n);
}

static void on_model(nnmpc_app_t *app, const nnmpc_frame_t *f)
{
    const nnmpc_model_t *m = app->model;
    const size_t in_bytes = (size_t)m->n_in * sizeof(float);
    float *x = app->scratch;
    float *y = x + m->n_in;
    float *J = y + m->n_out;
    size_t out_floats = (size_t)m->n_out;
    if (f->len != in_bytes) {
        send_error(app, f->seq, NNMPC_ERR_BAD_LENGTH, f->type);
        return;
    }
    memcpy(x, f->payload, in_bytes);
    if (f->type == NNMPC_MSG_PREDICT) {
        m->predict(x, y);
    } else {
        out_floats += (size_t)m->n_out * (size_t)m->n_in;
        if (out_floats * sizeof(float) > NNMPC_PAYLOAD_MAX) {
            send_error(app, f->seq, NNMPC_ERR_TOO_LARGE, f->type);
            return;
        }
        m->predict_jacobian(x, y, J);
    }
    nnmpc_app_send(app, (uint8_t)(f->type | NNMPC_MSG_REPLY), f->seq, y, out_floats * sizeof(float));
}

void nnmpc_app_on_byte(nnmpc_app_t *app, uint8_t byte)
{
    const nnmpc_frame_t *f = &app->frame;
    if (!nnmpc_decoder_push(&app->decoder, byte, &app->frame)) {
        return;
    }
    app->requests++;
    switch (f->type) {
    case NNMPC_MSG_HELLO:
        on_hello(app, f->seq);
        break;
    case NNMPC_MSG_PREDICT:
    case NNMPC_MSG_JACOBIAN:
        on_model(app, f);
        break;
    case NNMPC_MSG_STATS: {
        uint32_t s[4];
        s[0] = app->decoder.frames_ok;
        s[1] = app->decoder.frames_bad;
        s[2] = app->decoder.frames_long;
        s[3] = app->requests;
        nnmpc_app_send(app, NNMPC_MSG_STATS | NNMPC_MSG_REPLY, f->seq, s, sizeof(s));
        break;
    }
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
