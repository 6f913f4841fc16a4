/*
 * nnmpc serial framing: COBS-framed packets with a CRC-16 and a sequence number.
 *
 * On the wire each frame is 0x00, COBS(type | seq | payload... | crc_lo | crc_hi), 0x00: the
 * leading delimiter ends any noise before the frame, so a burst of garbage without a zero byte
 * costs only itself, never the frame after it.
 * The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over type, seq and payload.
 * The decoder never trusts a frame that fails COBS or CRC: it counts it and drops it.
 * See docs/PROTOCOL.md. No malloc; all buffers are fixed by NNMPC_PAYLOAD_MAX.
 */
#ifndef NNMPC_PROTO_H
#define NNMPC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NNMPC_PROTO_VERSION 5

#ifndef NNMPC_PAYLOAD_MAX
#define NNMPC_PAYLOAD_MAX 512
#endif
#if NNMPC_PAYLOAD_MAX < 64 || NNMPC_PAYLOAD_MAX > 4096
#error "NNMPC_PAYLOAD_MAX must be within [64, 4096]"
#endif

/** Raw (decoded) frame bytes: type + seq + payload + 2 CRC bytes. */
#define NNMPC_RAW_MAX (NNMPC_PAYLOAD_MAX + 4)
/** Encoded frame bytes: COBS overhead (1 per 254 + 1) + the two 0x00 delimiters. */
#define NNMPC_WIRE_MAX (NNMPC_RAW_MAX + NNMPC_RAW_MAX / 254 + 3)

/** One decoded frame. */
typedef struct {
    uint8_t type;
    uint8_t seq;
    uint16_t len;
    uint8_t payload[NNMPC_PAYLOAD_MAX];
} nnmpc_frame_t;

/** Streaming decoder: feed it bytes as they arrive. */
typedef struct {
    uint8_t buf[NNMPC_WIRE_MAX];
    size_t len;
    int overflow;          /* current frame is too long: drop it at the next delimiter */
    uint32_t frames_ok;
    uint32_t frames_bad;   /* COBS or CRC failure, or shorter than a header */
    uint32_t frames_long;  /* longer than NNMPC_PAYLOAD_MAX */
} nnmpc_decoder_t;

/** CRC-16/CCITT-FALSE of n bytes, continuing from crc (start with 0xFFFF). */
uint16_t nnmpc_crc16(uint16_t crc, const uint8_t *data, size_t n);

/** COBS-encode n bytes into out (room for n + n/254 + 1); returns bytes written. No delimiter. */
size_t nnmpc_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);

/** COBS-decode n bytes (no delimiter) into out; returns the decoded length or -1 if invalid. */
long nnmpc_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_max);

/** Reset a decoder (counters included). */
void nnmpc_decoder_init(nnmpc_decoder_t *d);

/** Push one byte; returns 1 and fills *frame when a valid frame has just ended, else 0. */
int nnmpc_decoder_push(nnmpc_decoder_t *d, uint8_t byte, nnmpc_frame_t *frame);

/**
 * Build the wire bytes of a frame (0x00, COBS, 0x00) into wire (NNMPC_WIRE_MAX bytes).
 * Returns the number of bytes, or 0 if len exceeds NNMPC_PAYLOAD_MAX.
 */
size_t nnmpc_frame_encode(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len,
                          uint8_t *wire);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_PROTO_H */
