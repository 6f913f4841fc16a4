/*
 * nnmpc int8 kernels: full-integer inference with TensorFlow Lite's exact arithmetic.
 *
 * Activations are int8 with an affine quantisation real = scale * (q - zero_point); weights
 * int8 (symmetric, per output channel), biases int32. An accumulator is brought back to int8 by
 * a fixed-point multiplier (int32 significand q + power-of-two shift): x * q * 2^(shift - 31),
 * rounded either once to nearest (TFLite's single-rounding form, nnmpc_q_mul) or twice
 * (gemmlowp's SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT: nnmpc_q_mul2). The
 * compiler picks, per op, what the TFLite interpreter's reference kernels do: its
 * fully-connected kernel rounds once; its convolutions, products and additions twice. Results
 * are bit-exact with that interpreter.
 *
 * Header-only (static inline), like nnmpc_ops.h. Plain C99, no malloc, no float inside the
 * integer kernels.
 */
#ifndef NNMPC_Q8_H
#define NNMPC_Q8_H

#include <stdint.h>

#include "nnmpc_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NNMPC_Q8_VERSION 1

/** Quantisation of a conv/dense: offsets, output range, and a multiplier per channel. */
typedef struct {
    int32_t in_zp, out_zp;
    int32_t act_min, act_max;
    const int32_t *mult;  /* per output channel */
    const int32_t *shift; /* per output channel: > 0 left, < 0 right */
    int32_t double_rounding; /* 1: nnmpc_q_mul2, 0: nnmpc_q_mul */
} nnmpc_q_params_t;

/** Quantisation of an int8 addition (TFLite's scheme, left_shift = 20). */
typedef struct {
    int32_t a_offset, b_offset, out_zp;
    int32_t a_mult, b_mult, out_mult;
    int32_t a_shift, b_shift, out_shift;
    int32_t left_shift;
    int32_t act_min, act_max;
    int32_t double_rounding;
} nnmpc_q_add_t;

/** (a * b * 2) >> 32 with rounding to nearest and saturation (gemmlowp's definition). */
static inline int32_t nnmpc_q_srdhm(int32_t a, int32_t b)
{
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/** x / 2^e rounded to nearest, ties away from zero. */
static inline int32_t nnmpc_q_rdbpot(int32_t x, int e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/** x * mult * 2^(shift - 31) rounded once (TFLite MultiplyByQuantizedMultiplier, single rounding). */
static inline int32_t nnmpc_q_mul(int32_t x, int32_t mult, int32_t shift)
{
    const int total = 31 - (int)shift; /* in [1, 62] since shift is in [-31, 30] */
    const int64_t prod = (int64_t)x * (int64_t)mult;
    if (total > 32) {
        /* the rounding term is a multiple of 2^32: add it to the high word, shift only that
         * (|prod| < 2^62, so the high word plus 2^(total - 33) stays in range) */
        return ((int32_t)(prod >> 32) + ((int32_t)1 << (total - 33))) >> (total - 32);
    }
    return (int32_t)((prod + ((int64_t)1 << (total - 1))) >> total);
}

/** The same with gemmlowp's two roundings (TFLite MultiplyByQuantizedMultiplier, double rounding). */
static inline int32_t nnmpc_q_mul2(int32_t x, int32_t mult, int32_t shift)
{
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    return nnmpc_q_rdbpot(nnmpc_q_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int8_t nnmpc_q_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/** y[rows x n_out] = requantise(W[n_out x n_in] . (x - in_zp) + b), per output channel. */
static inline void nnmpc_q_dense(const int8_t *x, const int8_t *W, const int32_t *b, int8_t *y,
                                 int rows, int n_out, int n_in, const nnmpc_q_params_t *q)
{
    int r, i, j;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (long)r * n_in;
        for (i = 0; i < n_out; ++i) {
            const int8_t *w = W + (long)i * n_in;
            int32_t acc = 0;
            for (j = 0; j < n_in; ++j) {
                acc += (int32_t)w[j] * ((int32_t)xr[j] - q->in_zp);
            }
            if (b) {
                acc += b[i];
            }
            acc = (q->double_rounding ? nnmpc_q_mul2(acc, q->mult[i], q->shift[i])
                                      : nnmpc_q_mul(acc, q->mult[i], q->shift[i])) + q->out_zp;
            y[(long)r * n_out + i] = nnmpc_q_clamp(acc, q->act_min, q->act_max);
        }
    }
}

/*
 * Cortex-M4/M7/M33 with the DSP extension: SXTB16 widens bytes 0 and 2 (or, rotated by 8, bytes
 * 1 and 3) of a word into two int16 lanes, SMLAD adds both lanes' products to an accumulator.
 * Widening the weight word and the input word the same way pairs w0 x0 + w2 x2 and w1 x1 +
 * w3 x3, so one 32-bit load of four weights feeds two SMLADs. Elsewhere: plain C.
 */
#if defined(__GNUC__) && defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && defined(__OPTIMIZE__)
#define NNMPC_Q8_DSP 1
#else
#define NNMPC_Q8_DSP 0
#endif

#if NNMPC_Q8_DSP
static inline uint32_t nnmpc_q_sxtb16(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(v));
    return r;
}

static inline uint32_t nnmpc_q_sxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t nnmpc_q_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* Four int8 as one word (unaligned loads are allowed on these cores). */
static inline uint32_t nnmpc_q_load4(const int8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
#endif

/* acc[r] + sum_j w_r[j] x[j] for four rows r (no zero point: it is folded into the bias); kept
 * out of line so that its loop has all the core registers to itself. */
#if NNMPC_Q8_DSP
static __attribute__((noinline, unused)) void nnmpc_q_dot_4rows(const int8_t *x, const int8_t *w, int n_in, int32_t *acc)
#else
static inline void nnmpc_q_dot_4rows(const int8_t *x, const int8_t *w, int n_in, int32_t *acc)
#endif
{
    const int8_t *w0 = w, *w1 = w + n_in, *w2 = w + 2 * n_in, *w3 = w + 3 * n_in;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int j = 0;
#if NNMPC_Q8_DSP
    if (n_in >= 4) {
        /* rows 0 and 1 through w0 (+ n_in), rows 2 and 3 through w2: 13 core registers */
        const int8_t *xp = x, *p0 = w0, *p2 = w2;
        uint32_t n4 = (uint32_t)n_in >> 2, xe, xo, wl, wh;
        __asm__(
            /* an odd count of four-input steps: one step first, then two per loop pass */
            "tst %[n4], #1\n\t"
            "beq 1f\n\t"
            "ldr %[xe], [%[xp]], #4\n\t"
            "ldr %[wl], [%[p0], %[o1]]\n\t"
            "sxtb16 %[xo], %[xe], ror #8\n\t"
            "sxtb16 %[xe], %[xe]\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a1], %[wl], %[xe], %[a1]\n\t"
            "smlad %[a1], %[wh], %[xo], %[a1]\n\t"
            "ldr %[wl], [%[p0]], #4\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a0], %[wl], %[xe], %[a0]\n\t"
            "smlad %[a0], %[wh], %[xo], %[a0]\n\t"
            "ldr %[wl], [%[p2], %[o1]]\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a3], %[wl], %[xe], %[a3]\n\t"
            "smlad %[a3], %[wh], %[xo], %[a3]\n\t"
            "ldr %[wl], [%[p2]], #4\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a2], %[wl], %[xe], %[a2]\n\t"
            "smlad %[a2], %[wh], %[xo], %[a2]\n\t"
            "1:\n\t"
            "lsrs %[n4], %[n4], #1\n\t"
            "beq 3f\n"
            "2:\n\t"
            "ldr %[xe], [%[xp]], #4\n\t"
            "ldr %[wl], [%[p0], %[o1]]\n\t"
            "sxtb16 %[xo], %[xe], ror #8\n\t"
            "sxtb16 %[xe], %[xe]\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a1], %[wl], %[xe], %[a1]\n\t"
            "smlad %[a1], %[wh], %[xo], %[a1]\n\t"
            "ldr %[wl], [%[p0]], #4\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a0], %[wl], %[xe], %[a0]\n\t"
            "smlad %[a0], %[wh], %[xo], %[a0]\n\t"
            "ldr %[wl], [%[p2], %[o1]]\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a3], %[wl], %[xe], %[a3]\n\t"
            "smlad %[a3], %[wh], %[xo], %[a3]\n\t"
            "ldr %[wl], [%[p2]], #4\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a2], %[wl], %[xe], %[a2]\n\t"
            "smlad %[a2], %[wh], %[xo], %[a2]\n\t"
            "ldr %[xe], [%[xp]], #4\n\t"
            "ldr %[wl], [%[p0], %[o1]]\n\t"
            "sxtb16 %[xo], %[xe], ror #8\n\t"
            "sxtb16 %[xe], %[xe]\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a1], %[wl], %[xe], %[a1]\n\t"
            "smlad %[a1], %[wh], %[xo], %[a1]\n\t"
            "ldr %[wl], [%[p0]], #4\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a0], %[wl], %[xe], %[a0]\n\t"
            "smlad %[a0], %[wh], %[xo], %[a0]\n\t"
            "ldr %[wl], [%[p2], %[o1]]\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a3], %[wl], %[xe], %[a3]\n\t"
            "smlad %[a3], %[wh], %[xo], %[a3]\n\t"
            "ldr %[wl], [%[p2]], #4\n\t"
            "sxtb16 %[wh], %[wl], ror #8\n\t"
            "sxtb16 %[wl], %[wl]\n\t"
            "smlad %[a2], %[wl], %[xe], %[a2]\n\t"
            "smlad %[a2], %[wh], %[xo], %[a2]\n\t"
            "subs %[n4], %[n4], #1\n\t"
            "bne 2b\n"
            "3:\n\t"
            : [xp] "+r"(xp), [p0] "+r"(p0), [p2] "+r"(p2), [n4] "+r"(n4), [a0] "+r"(a0),
              [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xe] "=&r"(xe), [xo] "=&r"(xo),
              [wl] "=&r"(wl), [wh] "=&r"(wh)
            : [o1] "r"(n_in), "m"(*(const int8_t(*)[])x), "m"(*(const int8_t(*)[])w)
            : "cc");
        j = n_in & ~3;
    }
#endif
    for (; j < n_in; ++j) {
        const int32_t xj = x[j];
        a0 += (int32_t)w0[j] * xj;
        a1 += (int32_t)w1[j] * xj;
        a2 += (int32_t)w2[j] * xj;
        a3 += (int32_t)w3[j] * xj;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* acc + sum_j w[j] x[j] for one row. */
static inline int32_t nnmpc_q_dot_1row(const int8_t *x, const int8_t *w, int n_in, int32_t acc)
{
    int j = 0;
#if NNMPC_Q8_DSP
    for (; j + 4 <= n_in; j += 4) {
        const uint32_t xv = nnmpc_q_load4(x + j), wv = nnmpc_q_load4(w + j);
        acc = nnmpc_q_smlad(nnmpc_q_sxtb16(wv), nnmpc_q_sxtb16(xv), acc);
        acc = nnmpc_q_smlad(nnmpc_q_sxtb16_ror8(wv), nnmpc_q_sxtb16_ror8(xv), acc);
    }
#endif
    for (; j < n_in; ++j) {
        acc += (int32_t)w[j] * (int32_t)x[j];
    }
    return acc;
}

/*
 * nnmpc_q_dense with the input zero point folded into the bias at compile time:
 * bz[i] = b[i] - in_zp * sum_j W[i][j], so the accumulator sum_j W x + bz equals TFLite's
 * sum_j W (x - in_zp) + b exactly (integer arithmetic). Four output rows at a time.
 */
static inline void nnmpc_q_dense_z(const int8_t *x, const int8_t *W, const int32_t *bz, int8_t *y,
                                   int rows, int n_out, int n_in, const nnmpc_q_params_t *q)
{
    const int32_t *mult = q->mult, *shift = q->shift;
    const int32_t out_zp = q->out_zp, lo = q->act_min, hi = q->act_max;
    const int dr = q->double_rounding != 0;
    int r, i, k;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (long)r * n_in;
        int8_t *yr = y + (long)r * n_out;
        for (i = 0; i < n_out;) {
            int32_t acc[4];
            const int n = n_out - i >= 4 ? 4 : 1;
            if (n == 4) {
                acc[0] = bz[i];
                acc[1] = bz[i + 1];
                acc[2] = bz[i + 2];
                acc[3] = bz[i + 3];
                nnmpc_q_dot_4rows(xr, W + (long)i * n_in, n_in, acc);
            } else {
                acc[0] = nnmpc_q_dot_1row(xr, W + (long)i * n_in, n_in, bz[i]);
            }
            for (k = 0; k < n; ++k, ++i) {
                const int32_t v = (dr ? nnmpc_q_mul2(acc[k], mult[i], shift[i])
                                      : nnmpc_q_mul(acc[k], mult[i], shift[i])) + out_zp;
                yr[i] = nnmpc_q_clamp(v, lo, hi);
            }
        }
    }
}

/** Integer convolution (groups as in nnmpc_conv2d; padding contributes real zeros). */
static inline void nnmpc_q_conv(const int8_t *x, const int8_t *W, const int32_t *b, int8_t *y,
                                const nnmpc_window_t *p, const nnmpc_q_params_t *q)
{
    const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    int oy, ox, o, ky, kx, c;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (o = 0; o < p->out_c; ++o) {
                const int g = o / cout_g;
                const int8_t *w = W + (long)o * p->k_h * p->k_w * cin_g;
                int32_t acc = 0;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h + ky * p->dil_h - p->pad_top;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w + kx * p->dil_w - p->pad_left;
                        const int8_t *xi, *wk;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        xi = x + (long)(iy * p->in_w + ix) * p->in_c + (long)g * cin_g;
                        wk = w + (long)(ky * p->k_w + kx) * cin_g;
                        for (c = 0; c < cin_g; ++c) {
                            acc += (int32_t)wk[c] * ((int32_t)xi[c] - q->in_zp);
                        }
                    }
                }
                if (b) {
                    acc += b[o];
                }
                acc = (q->double_rounding ? nnmpc_q_mul2(acc, q->mult[o], q->shift[o])
                                          : nnmpc_q_mul(acc, q->mult[o], q->shift[o])) + q->out_zp;
                y[(long)(oy * p->out_w + ox) * p->out_c + o] =
                    nnmpc_q_clamp(acc, q->act_min, q->act_max);
            }
        }
    }
}

/** Integer max (kind 0) or average (kind 1, rounded half away from zero) pooling. */
static inline void nnmpc_q_pool(const int8_t *x, int8_t *y, const nnmpc_window_t *p, int kind,
                                int32_t act_min, int32_t act_max)
{
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                int32_t acc = kind == 0 ? -128 : 0;
                int32_t count = 0;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h + ky - p->pad_top;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w + kx - p->pad_left;
                        int32_t v;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        v = x[(long)(iy * p->in_w + ix) * p->in_c + c];
                        if (kind == 0) {
                            acc = v > acc ? v : acc;
                        } else {
                            acc += v;
                        }
                        ++count;
                    }
                }
                if (kind != 0 && count > 0) {
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                }
                y[(long)(oy * p->out_w + ox) * p->in_c + c] = nnmpc_q_clamp(acc, act_min, act_max);
            }
        }
    }
}

/** y[i] = a[i] + b[i % nb] in TFLite's int8 addition arithmetic. */
static inline void nnmpc_q_add(const int8_t *a, const int8_t *b, int8_t *y, int n, int nb,
                               const nnmpc_q_add_t *q)
{
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t xa = (int32_t)((uint32_t)(a[i] + q->a_offset) << q->left_shift);
        const int32_t xb = (int32_t)((uint32_t)(b[i % nb] + q->b_offset) << q->left_shift);
        int32_t out;
        if (q->double_rounding) {
            out = nnmpc_q_mul2(nnmpc_q_mul2(xa, q->a_mult, q->a_shift) +
                               nnmpc_q_mul2(xb, q->b_mult, q->b_shift), q->out_mult, q->out_shift);
        } else {
            out = nnmpc_q_mul(nnmpc_q_mul(xa, q->a_mult, q->a_shift) +
                              nnmpc_q_mul(xb, q->b_mult, q->b_shift), q->out_mult, q->out_shift);
        }
        y[i] = nnmpc_q_clamp(out + q->out_zp, q->act_min, q->act_max);
    }
}

/** Quantisation of an int8 element-wise product. */
typedef struct {
    int32_t a_offset, b_offset, out_zp;
    int32_t mult, shift;
    int32_t act_min, act_max;
    int32_t double_rounding;
} nnmpc_q_mul_t;

/** y[i] = a[i] * b[i % nb] in TFLite's int8 arithmetic. */
static inline void nnmpc_q_mul_elem(const int8_t *a, const int8_t *b, int8_t *y, int n, int nb,
                                    const nnmpc_q_mul_t *q)
{
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t prod = (a[i] + q->a_offset) * (b[i % nb] + q->b_offset);
        const int32_t out = (q->double_rounding ? nnmpc_q_mul2(prod, q->mult, q->shift)
                                                : nnmpc_q_mul(prod, q->mult, q->shift)) + q->out_zp;
        y[i] = nnmpc_q_clamp(out, q->act_min, q->act_max);
    }
}

/** Copy `outer` blocks of `len` int8 values between strided buffers (concatenation). */
static inline void nnmpc_q_copy_blocks(const int8_t *src, int8_t *dst, int outer, int len,
                                       int src_stride, int dst_stride)
{
    int o;
    for (o = 0; o < outer; ++o) {
        memcpy(dst + (long)o * dst_stride, src + (long)o * src_stride, (size_t)len);
    }
}

/** y[i] = table[x[i] + 128]: an element-wise function tabulated by the compiler. */
static inline void nnmpc_q_lut(const int8_t *x, int8_t *y, int n, const int8_t *table)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = table[(int)x[i] + 128];
    }
}

/** y = transpose(x) of int8 values (the shape and permutation as for nnmpc_transpose). */
static inline void nnmpc_q_transpose(const int8_t *x, int8_t *y, const nnmpc_transpose_t *p)
{
    int stride[4], os[4], i0, i1, i2, i3;
    long o = 0;
    stride[3] = 1;
    stride[2] = p->shape[3];
    stride[1] = p->shape[3] * p->shape[2];
    stride[0] = stride[1] * p->shape[1];
    for (i0 = 0; i0 < 4; ++i0) {
        os[i0] = p->shape[p->perm[i0]];
    }
    for (i0 = 0; i0 < os[0]; ++i0) {
        for (i1 = 0; i1 < os[1]; ++i1) {
            for (i2 = 0; i2 < os[2]; ++i2) {
                const long base = (long)i0 * stride[p->perm[0]] + (long)i1 * stride[p->perm[1]] +
                                  (long)i2 * stride[p->perm[2]];
                for (i3 = 0; i3 < os[3]; ++i3) {
                    y[o++] = x[base + (long)i3 * stride[p->perm[3]]];
                }
            }
        }
    }
}

/** Constant padding of up to 4 axes (leading axes padded with 1, before = after = 0). */
typedef struct {
    int shape[4];  /* input shape */
    int before[4]; /* values added before each axis */
    int after[4];  /* and after it */
    int32_t value; /* the int8 pad value (TFLite: the zero point, or PADV2's constant) */
} nnmpc_q_pad_t;

/** y = x surrounded by p->value: the output is (shape + before + after) on every axis. */
static inline void nnmpc_q_pad(const int8_t *x, int8_t *y, const nnmpc_q_pad_t *p)
{
    int os[4], k, i0, i1, i2;
    long n = 1;
    for (k = 0; k < 4; ++k) {
        os[k] = p->shape[k] + p->before[k] + p->after[k];
        n *= os[k];
    }
    memset(y, (int)(int8_t)p->value, (size_t)n);
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const long src = (((long)i0 * p->shape[1] + i1) * p->shape[2] + i2) * p->shape[3];
                const long dst = ((((long)i0 + p->before[0]) * os[1] + i1 + p->before[1]) * os[2] +
                                  i2 + p->before[2]) * os[3] + p->before[3];
                memcpy(y + dst, x + src, (size_t)p->shape[3]);
            }
        }
    }
}

/*
 * int8 softmax: TFLite's reference integer kernel (reference_ops::Softmax on int8, output scale
 * 1/256 and zero point -128), gemmlowp's fixed-point arithmetic step for step. Per row of
 * `depth` values: d = x - max(row); where d >= diff_min, d is rescaled to Q5.26 by
 * (mult, left_shift) (TFLite's MultiplyByQuantizedMultiplierGreaterThanOne), exp(d) is taken in
 * Q0.31, and the exps (rescaled to Q12.19) are summed; the output is exp(d) times the reciprocal
 * of the sum, rounded to 8 bits, minus 128. Values below diff_min give -128.
 */
typedef struct {
    int32_t mult;       /* input scale x beta x 2^26 as a fixed-point multiplier ... */
    int32_t left_shift; /* ... and its (non-negative) shift */
    int32_t diff_min;   /* -CalculateInputRadius(5, left_shift) */
} nnmpc_q_softmax_t;

static inline int32_t nnmpc_q_wadd(int32_t a, int32_t b) /* gemmlowp's wrapping + */
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t nnmpc_q_wsub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/** x * 2^e with saturation (gemmlowp SaturatingRoundingMultiplyByPOT, e > 0). */
static inline int32_t nnmpc_q_sat_shl(int32_t x, int e)
{
    const int32_t threshold = (int32_t)(((int32_t)1 << (31 - e)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/** exp(a) for a in [-1/4, 0), Q0.31 in and out (gemmlowp: Taylor series around -1/8). */
static inline int32_t nnmpc_q_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t one_third = 715827883;          /* 1/3 */
    const int32_t x = nnmpc_q_wadd(a, (int32_t)1 << 28); /* a + 1/8 */
    const int32_t x2 = nnmpc_q_srdhm(x, x), x3 = nnmpc_q_srdhm(x2, x), x4 = nnmpc_q_srdhm(x2, x2);
    const int32_t x4_over_4 = nnmpc_q_rdbpot(x4, 2);
    const int32_t poly = nnmpc_q_rdbpot(
        nnmpc_q_wadd(nnmpc_q_srdhm(nnmpc_q_wadd(x4_over_4, x3), one_third), x2), 1);
    return nnmpc_q_wadd(constant_term, nnmpc_q_srdhm(constant_term, nnmpc_q_wadd(x, poly)));
}

/** exp(a) for a <= 0: a in Q5.26, the result in Q0.31 (gemmlowp exp_on_negative_values). */
static inline int32_t nnmpc_q_exp_neg(int32_t a)
{
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535,
                                     720401, 242}; /* exp(-2^k), k = -2 .. 4, in Q0.31 */
    const int32_t quarter = (int32_t)1 << 24;
    const int32_t a_mod_quarter_minus_quarter = nnmpc_q_wsub(a & (quarter - 1), quarter);
    const int32_t remainder = nnmpc_q_wsub(a_mod_quarter_minus_quarter, a);
    int32_t result = nnmpc_q_exp_quarter(nnmpc_q_sat_shl(a_mod_quarter_minus_quarter, 5));
    int k;
    for (k = 0; k < 7; ++k) {
        if (remainder & ((int32_t)1 << (24 + k))) {
            result = nnmpc_q_srdhm(result, mults[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/** 1 / (1 + a) for a in [0, 1), Q0.31 in, Q0.31 out (gemmlowp: Newton-Raphson, 3 steps). */
static inline int32_t nnmpc_q_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* Q0.31 */
    int32_t x = nnmpc_q_wadd(1515870810, nnmpc_q_srdhm(half_denominator, -1010580540)); /* Q2.29 */
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = nnmpc_q_wsub((int32_t)1 << 29, nnmpc_q_srdhm(half_denominator, x));
        x = nnmpc_q_wadd(x, nnmpc_q_sat_shl(nnmpc_q_srdhm(x, one_minus), 2));
    }
    return nnmpc_q_sat_shl(x, 1);
}

static inline int nnmpc_q_clz(uint32_t x)
{
    int n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

/** y = softmax(x) over the last axis: `outer` rows of `depth` values. */
static inline void nnmpc_q_softmax(const int8_t *x, int8_t *y, int outer, int depth,
                                   const nnmpc_q_softmax_t *q)
{
    int r, c;
    for (r = 0; r < outer; ++r) {
        const int8_t *xr = x + (long)r * depth;
        int8_t *yr = y + (long)r * depth;
        int32_t max_in_row = -128, sum = 0, scale;
        int headroom, bits_over_unit;
        for (c = 0; c < depth; ++c) {
            max_in_row = xr[c] > max_in_row ? xr[c] : max_in_row;
        }
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)xr[c] - max_in_row;
            if (diff >= q->diff_min) {
                const int32_t e = nnmpc_q_exp_neg(
                    nnmpc_q_srdhm((int32_t)((uint32_t)diff << q->left_shift), q->mult));
                sum = nnmpc_q_wadd(sum, nnmpc_q_rdbpot(e, 12)); /* Q0.31 to Q12.19 */
            }
        }
        /* the reciprocal of the sum (TFLite GetReciprocal, 12 integer bits) */
        headroom = nnmpc_q_clz((uint32_t)sum);
        bits_over_unit = 12 - headroom;
        scale = nnmpc_q_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)xr[c] - max_in_row;
            if (diff >= q->diff_min) {
                const int32_t e = nnmpc_q_exp_neg(
                    nnmpc_q_srdhm((int32_t)((uint32_t)diff << q->left_shift), q->mult));
                const int32_t v = nnmpc_q_rdbpot(nnmpc_q_srdhm(scale, e), bits_over_unit + 23) - 128;
                yr[c] = nnmpc_q_clamp(v, -128, 127);
            } else {
                yr[c] = -128;
            }
        }
    }
}

/** y = clamp(round(x / scale) + zp) with rounding half away from zero. */
static inline void nnmpc_q_quantize(const float *x, int8_t *y, int n, float scale, int32_t zp)
{
    int i;
    for (i = 0; i < n; ++i) {
        float v = x[i] / scale, t;
        if (v > 1.0e6f) {
            v = 1.0e6f;
        } else if (v < -1.0e6f) {
            v = -1.0e6f;
        }
        t = (float)(int32_t)v; /* truncated toward zero, exact below 2^23 */
        if (v - t >= 0.5f) {
            t += 1.0f;
        } else if (t - v >= 0.5f) {
            t -= 1.0f;
        }
        y[i] = nnmpc_q_clamp((int32_t)t + zp, -128, 127);
    }
}

/** y = scale * (x - zp). */
static inline void nnmpc_q_dequantize(const int8_t *x, float *y, int n, float scale, int32_t zp)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = scale * (float)((int32_t)x[i] - zp);
    }
}

/** Copy n int8 values (a reshape between caller-owned buffers). */
static inline void nnmpc_q_copy(const int8_t *x, int8_t *y, int n)
{
    memcpy(y, x, (size_t)n);
}

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_Q8_H */
