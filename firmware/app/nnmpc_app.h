/*
 * nnmpc device application core: answers host requests over the framed serial link.
 *
 * Board-independent: the board's main (HAL side) fills an nnmpc_app_t with the model and a
 * byte-writer, then feeds received bytes to nnmpc_app_on_byte(). See docs/PROTOCOL.md.
 */
#ifndef NNMPC_APP_H
#define NNMPC_APP_H

#include <stddef.h>
#include <stdint.h>

#include "nnmpc_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Message types. Requests from the host; the device answers with type | 0x80. */
enum {
    NNMPC_MSG_HELLO = 0x01,     /* -> proto ver, sizes, model hash, board, firmware version */
    NNMPC_MSG_PREDICT = 0x02,   /* f32[n_in] -> f32[n_out] */
    NNMPC_MSG_JACOBIAN = 0x03,  /* f32[n_in] -> f32[n_out] + f32[n_out * n_in] */
    NNMPC_MSG_STATS = 0x04,     /* -> u32 frames_ok, frames_bad, frames_long, requests */
    NNMPC_MSG_EXIT = 0x0F,      /* -> empty reply, then the board's exit hook */
    NNMPC_MSG_REPLY = 0x80,
    NNMPC_MSG_ERROR = 0x7F      /* u8 error code, u8 request type */
};

/** Error codes carried by NNMPC_MSG_ERROR. */
enum {
    NNMPC_ERR_UNKNOWN_TYPE = 1,
    NNMPC_ERR_BAD_LENGTH = 2,
    NNMPC_ERR_TOO_LARGE = 3
};

/** The compiled model, as the application sees it. */
typedef struct {
    int n_in;
    int n_out;
    const char *hash;
    void (*predict)(const float *input, float *output);
    void (*predict_jacobian)(const float *input, float *output, float *jacobian);
} nnmpc_model_t;

typedef struct nnmpc_app nnmpc_app_t;

struct nnmpc_app {
    /* Set by the board before nnmpc_app_init(). */
    const nnmpc_model_t *model;
    const char *board;
    void (*write)(const uint8_t *data, size_t n);   /* blocking serial write */
    void (*exit)(int code);                        /* may be NULL */
    float *scratch;          /* at least n_in + n_out + n_out * n_in floats */
    size_t scratch_floats;
    /* Private. */
    nnmpc_decoder_t decoder;
    nnmpc_frame_t frame;
    uint8_t wire[NNMPC_WIRE_MAX];
    uint32_t requests;
};

/** Reset counters and the decoder. Returns 0, or -1 if the scratch buffer is too small. */
int nnmpc_app_init(nnmpc_app_t *app);

/** Feed one received byte; answers complete requests through app->write. */
void nnmpc_app_on_byte(nnmpc_app_t *app, uint8_t byte);

/** Send one frame of the given type through app->write. */
void nnmpc_app_send(nnmpc_app_t *app, uint8_t type, uint8_t seq, const void *payload, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_APP_H */
