/* nnmpc serial framing: COBS + CRC-16. See nnmpc_proto.h. */
#include "nnmpc_proto.h"

#include <string.h>

uint16_t nnmpc_crc16(uint16_t crc, const uint8_t *data, size_t n)
{
    size_t i;
    int b;
    for (i = 0; i < n; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (b = 0; b < 8; ++b) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t nnmpc_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t read = 0, write = 1, code_at = 0;
    uint8_t code = 1;
    while (read < n) {
        if (in[read] == 0) {
            out[code_at] = code;
            code_at = write++;
            code = 1;
        } else {
            out[write++] = in[read];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = write++;
                code = 1;
            }
        }
        ++read;
    }
    out[code_at] = code;
    return write;
}

long nnmpc_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_max)
{
    size_t read = 0, write = 0;
    while (read < n) {
        const uint8_t code = in[read++];
        uint8_t i;
        if (code == 0) {
            return -1;
        }
        for (i = 1; i < code; ++i) {
            if (read >= n || in[read] == 0 || write >= out_max) {
                return -1;
            }
            out[write++] = in[read++];
        }
        if (code != 0xFF && read < n) {
            if (write >= out_max) {
                return -1;
            }
            out[write++] = 0;
        }
    }
    return (long)write;
}

void nnmpc_decoder_init(nnmpc_decoder_t *d)
{
    memset(d, 0, sizeof(*d));
}

int nnmpc_decoder_push(nnmpc_decoder_t *d, uint8_t byte, nnmpc_frame_t *frame)
{
    uint8_t raw[NNMPC_RAW_MAX];
    long n;
    uint16_t crc;
    if (byte != 0) {
        if (d->len < sizeof(d->buf)) {
            d->buf[d->len++] = byte;
        } else {
            d->overflow = 1;
        }
        return 0;
    }
    /* Delimiter: decide on the bytes gathered so far, then start afresh. */
    if (d->overflow) {
        d->frames_long++;
        d->len = 0;
        d->overflow = 0;
        return 0;
    }
    if (d->len == 0) {
        return 0; /* idle delimiters are allowed */
    }
    n = nnmpc_cobs_decode(d->buf, d->len, raw, sizeof(raw));
    d->len = 0;
    if (n < 4) {
        d->frames_bad++;
        return 0;
    }
    crc = nnmpc_crc16(0xFFFFu, raw, (size_t)n - 2);
    if ((uint8_t)(crc & 0xFFu) != raw[n - 2] || (uint8_t)(crc >> 8) != raw[n - 1]) {
        d->frames_bad++;
        return 0;
    }
    if ((size_t)n - 4 > NNMPC_PAYLOAD_MAX) {
        d->frames_long++;
        return 0;
    }
    frame->type = raw[0];
    frame->seq = raw[1];
    frame->len = (uint16_t)(n - 4);
    memcpy(frame->payload, raw + 2, frame->len);
    d->frames_ok++;
    return 1;
}

size_t nnmpc_frame_encode(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len,
                          uint8_t *wire)
{
    uint8_t raw[NNMPC_RAW_MAX];
    uint16_t crc;
    size_t n;
    if (len > NNMPC_PAYLOAD_MAX) {
        return 0;
    }
    raw[0] = type;
    raw[1] = seq;
    if (len) {
        memcpy(raw + 2, payload, len);
    }
    crc = nnmpc_crc16(0xFFFFu, raw, len + 2);
    raw[len + 2] = (uint8_t)(crc & 0xFFu);
    raw[len + 3] = (uint8_t)(crc >> 8);
    wire[0] = 0;
    n = 1 + nnmpc_cobs_encode(raw, len + 4, wire + 1);
    wire[n++] = 0;
    return n;
}
