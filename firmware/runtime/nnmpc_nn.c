/* nnmpc neural-network kernels. See nnmpc_nn.h for the contract of each function. */
#include "nnmpc_nn.h"

#include <stdint.h>
#include <string.h>

/*
 * Speed notes (Cortex-M4F, the main target): the FPU runs VMUL and VADD in one cycle each but
 * a fused VMLA/VFMA in three, a multiple load (VLDM) of n words takes 1 + n cycles, and a
 * taken branch costs 2 more. So the hot loops keep products and sums in separate one-cycle
 * instructions, load weights eight at a time, reuse each loaded input across eight output
 * rows and keep every constant and sum in a register. They are written in GCC inline assembly
 * for Thumb-2 with a single-precision FPU (NN_ASM_VFP below); every other target compiles the
 * plain C loops beside them (same functions, sums in another order), which the host tests build.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define NN_INLINE static inline __attribute__((always_inline))
#else
#define NN_INLINE static inline
#endif

typedef union {
    float f;
    uint32_t u;
} nn_bits;

/* ---- Fast elementary functions (inlined into the loops) ----------------------------- */

/*
 * expm1 on |r| <= ln2/2 (slightly more): r + r^2 P(r), P a degree-4 minimax fit of
 * (expm1(r) - r) / r^2; relative error 1.4e-8 before rounding.
 */
NN_INLINE float nn_expm1_reduced(float r)
{
    float p = 1.38825167e-03f;
    p = p * r;
    p = p + 8.36654752e-03f;
    p = p * r;
    p = p + 4.16672006e-02f;
    p = p * r;
    p = p + 1.66665435e-01f;
    p = p * r;
    p = p + 4.99999970e-01f;
    {
        const float r2 = r * r;
        const float t = r2 * p;
        return t + r;
    }
}

/*
 * Split z = k ln2 + r with k = round(z / ln2) (by the 1.5 * 2^23 rounding trick), return r
 * and s = 2^k. Needs |k| <= 126, i.e. |z| <= 87.
 */
NN_INLINE float nn_reduce(float z, float *s)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    nn_bits t, p;
    float kf, r, kl;
    t.f = z * 1.44269502f;
    t.f = t.f + magic;
    kf = t.f - magic;
    /* ln2 in two parts (Cody-Waite): k * ln2_hi is exact for |k| < 2^11 */
    kl = kf * 0.693145752f;
    r = z - kl;
    kl = kf * 1.42860677e-06f;
    r = r - kl;
    /* The low mantissa bits of t hold k (two's complement); shift them into the exponent. */
    p.u = (t.u << 23) + 0x3f800000u;
    *s = p.f;
    return r;
}

/*
 * tanh(x) = e / (e + 2) with e = expm1(2x), e = s q + (s - 1) exact for the reduced
 * argument: one division, a few ulps everywhere (relative near 0 too), odd by construction.
 * |2x| is clamped to 18 where tanh rounds to +-1; NaN propagates.
 */
NN_INLINE float nn_tanh(float x)
{
    float z = x + x, s, q, e;
    z = z > 18.0f ? 18.0f : z;
    z = z < -18.0f ? -18.0f : z;
    q = nn_expm1_reduced(nn_reduce(z, &s));
    e = s * q;
    e = e + (s - 1.0f);
    return e / (e + 2.0f);
}

/* sigmoid(x) = N / (1 + E), E = exp(-|x|) (|x| clamped to 87), N = 1 for x >= 0, E else. */
NN_INLINE float nn_sigmoid(float x)
{
    float a = x < 0.0f ? -x : x, s, q, E;
    a = a > 87.0f ? 87.0f : a;
    q = nn_expm1_reduced(nn_reduce(-a, &s));
    E = s * q;
    E = E + s;
    return (x < 0.0f ? E : 1.0f) / (1.0f + E);
}

/* ---- Dense layer ------------------------------------------------------------------- */

/* The assembly needs up to 14 core registers at once, which an unoptimised (-O0) build cannot
 * give it; such builds take the C loops. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__thumb2__) && defined(__ARM_FP) && \
    ((__ARM_FP) & 4) && defined(__OPTIMIZE__) && !defined(NNMPC_NN_PORTABLE)
#define NN_ASM_VFP 1 /* Thumb-2 with a single-precision FPU (Cortex-M4F/M7/M33) */
#else
#define NN_ASM_VFP 0
#endif

#define NN_ROW8(w, a)                                                                          \
    "vldmia %[" w "]!, {s8-s15}\n\t"                                                           \
    "vmul.f32 s8, s8, s0\n\t"                                                                  \
    "vmul.f32 s9, s9, s1\n\t"                                                                  \
    "vmul.f32 s10, s10, s2\n\t"                                                                \
    "vmul.f32 s11, s11, s3\n\t"                                                                \
    "vmul.f32 s12, s12, s4\n\t"                                                                \
    "vmul.f32 s13, s13, s5\n\t"                                                                \
    "vmul.f32 s14, s14, s6\n\t"                                                                \
    "vmul.f32 s15, s15, s7\n\t"                                                                \
    "vadd.f32 " a ", " a ", s8\n\t"                                                            \
    "vadd.f32 " a ", " a ", s9\n\t"                                                            \
    "vadd.f32 " a ", " a ", s10\n\t"                                                           \
    "vadd.f32 " a ", " a ", s11\n\t"                                                           \
    "vadd.f32 " a ", " a ", s12\n\t"                                                           \
    "vadd.f32 " a ", " a ", s13\n\t"                                                           \
    "vadd.f32 " a ", " a ", s14\n\t"                                                           \
    "vadd.f32 " a ", " a ", s15\n\t"

/* Two and one columns of a row: a += w[0] x[0] (+ w[1] x[1]), x in s0-s1. */
#define NN_ROW2(w, a)                                                                          \
    "vldmia %[" w "]!, {s8-s9}\n\t"                                                            \
    "vmul.f32 s8, s8, s0\n\t"                                                                  \
    "vmul.f32 s9, s9, s1\n\t"                                                                  \
    "vadd.f32 " a ", " a ", s8\n\t"                                                            \
    "vadd.f32 " a ", " a ", s9\n\t"
#define NN_ROW1(w, a)                                                                          \
    "vldmia %[" w "]!, {s8}\n\t"                                                               \
    "vmul.f32 s8, s8, s0\n\t"                                                                  \
    "vadd.f32 " a ", " a ", s8\n\t"

/* Clear the negative values (sign bit set) of two registers on their bit patterns. */
#define NN_BIC2(lo, hi)                                                                        \
    "vmov %[n], %[m], " lo ", " hi "\n\t"                                                      \
    "bic %[n], %[n], %[n], asr #31\n\t"                                                        \
    "bic %[m], %[m], %[m], asr #31\n\t"                                                        \
    "vmov " lo ", " hi ", %[n], %[m]\n\t"

/*
 * Dense rows in blocks of eight: y[r] = act(b[r] + W[r, :] . x) for r < 8 * nblk (row stride
 * n_in), act = relu if relu != 0 else identity. Each step loads eight inputs once for the eight
 * rows and eight weights of a row with one multiple load, then multiplies and adds with
 * separate one-cycle instructions; the eight sums stay in s16-s23.
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void dense_blocks8(const float *W, const float *b, const float *x, float *y, int n_in,
                          int nblk, int relu)
{
#if NN_ASM_VFP
    /* Loop state the asm reads from memory, to leave it the 13 registers it needs. */
    struct {
        const float *b;
        const float *x;
        int n_in;
        int stride_bytes;
        float *y_end;
        int relu;
    } ctx;
    const float *w0 = W, *w1 = w0 + n_in, *w2 = w1 + n_in, *w3 = w2 + n_in;
    const float *w4 = w3 + n_in, *w5 = w4 + n_in, *w6 = w5 + n_in, *w7 = w6 + n_in;
    const float *xp = x;
    uintptr_t n, m;
    ctx.b = b;
    ctx.x = x;
    ctx.n_in = n_in;
    ctx.stride_bytes = n_in * 4;
    ctx.y_end = y + 8L * nblk;
    ctx.relu = relu;
    __asm__ volatile(
        "0:\n\t"
        "ldr %[n], [%[c], #0]\n\t"
        "vldmia %[n]!, {s16-s23}\n\t"      /* biases */
        "str %[n], [%[c], #0]\n\t"
        "ldr %[x], [%[c], #4]\n\t"
        "ldr %[n], [%[c], #8]\n\t"
        "and %[m], %[n], #7\n\t"
        "lsrs %[n], %[n], #3\n\t"
        "beq 2f\n"
        "1:\n\t"
        "vldmia %[x]!, {s0-s7}\n\t"
        NN_ROW8("w0", "s16") NN_ROW8("w1", "s17") NN_ROW8("w2", "s18") NN_ROW8("w3", "s19")
        NN_ROW8("w4", "s20") NN_ROW8("w5", "s21") NN_ROW8("w6", "s22") NN_ROW8("w7", "s23")
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n"
        "2:\n\t"
        /* the n_in % 8 last inputs: two at a time, then the odd one */
        "lsrs %[n], %[m], #1\n\t"
        "beq 6f\n"
        "7:\n\t"
        "vldmia %[x]!, {s0-s1}\n\t"
        NN_ROW2("w0", "s16") NN_ROW2("w1", "s17") NN_ROW2("w2", "s18") NN_ROW2("w3", "s19")
        NN_ROW2("w4", "s20") NN_ROW2("w5", "s21") NN_ROW2("w6", "s22") NN_ROW2("w7", "s23")
        "subs %[n], %[n], #1\n\t"
        "bne 7b\n"
        "6:\n\t"
        "lsls %[m], %[m], #31\n\t"
        "beq 4f\n\t"
        "vldmia %[x]!, {s0}\n\t"
        NN_ROW1("w0", "s16") NN_ROW1("w1", "s17") NN_ROW1("w2", "s18") NN_ROW1("w3", "s19")
        NN_ROW1("w4", "s20") NN_ROW1("w5", "s21") NN_ROW1("w6", "s22") NN_ROW1("w7", "s23")
        "4:\n\t"
        "ldr %[n], [%[c], #20]\n\t"        /* relu */
        "cbz %[n], 5f\n\t"
        NN_BIC2("s16", "s17") NN_BIC2("s18", "s19") NN_BIC2("s20", "s21") NN_BIC2("s22", "s23")
        "5:\n\t"
        "vstmia %[y]!, {s16-s23}\n\t"
        /* next block: its row 0 starts where row 7 ended */
        "mov %[w0], %[w7]\n\t"
        "add %[w1], %[w0], %[s]\n\t"
        "add %[w2], %[w1], %[s]\n\t"
        "add %[w3], %[w2], %[s]\n\t"
        "add %[w4], %[w3], %[s]\n\t"
        "add %[w5], %[w4], %[s]\n\t"
        "add %[w6], %[w5], %[s]\n\t"
        "add %[w7], %[w6], %[s]\n\t"
        "ldr %[m], [%[c], #16]\n\t"      /* end of y */
        "cmp %[y], %[m]\n\t"
        "bne 0b\n\t"
        : [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3),
          [w4] "+r"(w4), [w5] "+r"(w5), [w6] "+r"(w6), [w7] "+r"(w7),
          [x] "+r"(xp), [n] "=&l"(n), [m] "=&l"(m), [y] "+r"(y)
        : [c] "r"(&ctx), [s] "r"(n_in * 4)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12",
          "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "cc",
          "memory");
#else
    for (; nblk > 0; --nblk) {
        int r, j;
        for (r = 0; r < 8; ++r) {
            const float *wr = W + (long)r * n_in;
            float acc = b[r];
            for (j = 0; j < n_in; ++j) {
                const float m = wr[j] * x[j];
                acc += m;
            }
            y[r] = (relu && acc < 0.0f) ? 0.0f : acc;
        }
        W += 8L * n_in;
        b += 8;
        y += 8;
    }
#endif
}

/* Two output rows: y0 = b0 + w0 . x, y1 = b1 + w1 . x (w1 may equal w0). */
static void dense_rows2(const float *w0, const float *w1, float *y0, float *y1, float b0,
                        float b1, const float *x, int n_in)
{
#if NN_ASM_VFP
    int n8 = n_in >> 3, m = n_in & 7;
    __asm__ volatile(
        "cmp %[n], #0\n\t"
        "beq 2f\n"
        "1:\n\t"
        "vldmia %[x]!, {s0-s7}\n\t"
        NN_ROW8("w0", "%[a0]") NN_ROW8("w1", "%[a1]")
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n"
        "2:\n\t"
        "cbz %[m], 4f\n"
        "3:\n\t"
        "vldmia %[x]!, {s0}\n\t"
        NN_ROW1("w0", "%[a0]") NN_ROW1("w1", "%[a1]")
        "subs %[m], %[m], #1\n\t"
        "bne 3b\n"
        "4:\n\t"
        : [a0] "+t"(b0), [a1] "+t"(b1), [w0] "+r"(w0), [w1] "+r"(w1), [x] "+r"(x),
          [n] "+l"(n8), [m] "+l"(m)
        :
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12",
          "s13", "s14", "s15", "cc", "memory");
#else
    int j;
    for (j = 0; j < n_in; ++j) {
        const float m0 = w0[j] * x[j], m1 = w1[j] * x[j];
        b0 += m0;
        b1 += m1;
    }
#endif
    *y0 = b0;
    *y1 = b1;
}

/* The rows of a dense layer, relu applied by the blocks of eight (not by the last rows). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int dense_core(const float *W, const float *b, const float *x, float *y, int n_out,
                             int n_in, int relu)
{
    const int nblk = n_out >> 3;
    int i;
    if (nblk > 0) {
        dense_blocks8(W, b, x, y, n_in, nblk, relu);
    }
    for (i = 8 * nblk; i < n_out; i += 2) {
        /* an odd last row is computed twice */
        const int i1 = i + 1 < n_out ? i + 1 : i;
        dense_rows2(W + (long)i * n_in, W + (long)i1 * n_in, y + i, y + i1, b[i], b[i1], x,
                    n_in);
    }
    return 8 * nblk;
}

/* max(v, 0) on the bit patterns: clear every value whose sign bit is set (in place). */
static void relu_rows(float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        nn_bits v;
        v.f = y[i];
        v.u &= (v.u >> 31) - 1u;
        y[i] = v.f;
    }
}

static void exp_act_rows(float *y, int n, nnmpc_act_t act);

void nnmpc_dense(const float *W, const float *b, const float *x, float *y,
                 int n_out, int n_in, nnmpc_act_t act)
{
    const int relu = act == NNMPC_ACT_RELU;
    const int done = dense_core(W, b, x, y, n_out, n_in, relu);
    if (relu) {
        relu_rows(y + done, n_out - done); /* the blocks applied relu themselves */
    } else if (act != NNMPC_ACT_LINEAR) {
        exp_act_rows(y, n_out, act);
    }
}

void nnmpc_dense_linear(const float *W, const float *b, const float *x, float *y, int n_out,
                        int n_in)
{
    (void)dense_core(W, b, x, y, n_out, n_in, 0);
}

void nnmpc_dense_relu(const float *W, const float *b, const float *x, float *y, int n_out,
                      int n_in)
{
    const int done = dense_core(W, b, x, y, n_out, n_in, 1);
    relu_rows(y + done, n_out - done);
}

/* tanh and sigmoid layers call the linear one (one copy of the inlined rows in a net with
 * both, as most have: a call costs a few cycles, the copy 130 bytes). */
void nnmpc_dense_tanh(const float *W, const float *b, const float *x, float *y, int n_out,
                      int n_in)
{
    nnmpc_dense_linear(W, b, x, y, n_out, n_in);
    exp_act_rows(y, n_out, NNMPC_ACT_TANH);
}

void nnmpc_dense_sigmoid(const float *W, const float *b, const float *x, float *y, int n_out,
                         int n_in)
{
    nnmpc_dense_linear(W, b, x, y, n_out, n_in);
    exp_act_rows(y, n_out, NNMPC_ACT_SIGMOID);
}

#if NN_ASM_VFP
/*
 * The tanh and sigmoid loop for n > 0 elements, two elements per pass (even registers one
 * element, odd ones the other; an odd n runs its first element alone, duplicated), every
 * constant in a register:
 *   e = expm1(z), z = c[0] * x clamped to [-87, 87] (NaN passes), y = (c[1] e + c[2]) / (e + 2);
 * tanh: c = {2, 1, 0} (tanh x = e / (e + 2) with e = expm1(2x));
 * sigmoid: c = {-1, 0, 1} (1 / (1 + exp(-x)) = 1 / (expm1(-x) + 2)).
 * expm1 as in nn_expm1_reduced() / nn_reduce(): z = k ln2 + r, e = 2^k q + (2^k - 1).
 * The table k holds the clamp, 1/ln2, the rounding constant, ln2_hi, P, 1, 2 and ln2_lo.
 */
static void exp_act_loop(const float *x, float *y, int n, const float *c)
{
    static const float k[13] = {
        87.0f, -87.0f, 1.44269502f, 12582912.0f, 0.693145752f,
        1.38825167e-03f, 8.36654752e-03f, 4.16672006e-02f, 1.66665435e-01f, 4.99999970e-01f,
        1.0f, 2.0f, 1.42860677e-06f,
    };
    uint32_t one;
    __asm__ volatile(
        "vldmia %[k], {s16-s28}\n\t"
        "vldmia %[c], {s29-s31}\n\t"
        "ands %[one], %[n], #1\n\t"      /* one: this pass has a single element */
        "beq 1f\n\t"
        "vldmia %[x]!, {s0}\n\t"
        "vmov.f32 s1, s0\n\t"
        "b 2f\n"
        "1:\n\t"
        "vldmia %[x]!, {s0-s1}\n"
        "2:\n\t"
        "vmul.f32 s0, s0, s29\n\t"    /* z, clamped to [-87, 87] (NaN passes) */
        "vmul.f32 s1, s1, s29\n\t"
        "vcmp.f32 s0, s16\n\t"
        "vmrs APSR_nzcv, fpscr\n\t"
        "it gt\n\t"
        "vmovgt.f32 s0, s16\n\t"
        "vcmp.f32 s0, s17\n\t"
        "vmrs APSR_nzcv, fpscr\n\t"
        "it mi\n\t"
        "vmovmi.f32 s0, s17\n\t"
        "vcmp.f32 s1, s16\n\t"
        "vmrs APSR_nzcv, fpscr\n\t"
        "it gt\n\t"
        "vmovgt.f32 s1, s16\n\t"
        "vcmp.f32 s1, s17\n\t"
        "vmrs APSR_nzcv, fpscr\n\t"
        "it mi\n\t"
        "vmovmi.f32 s1, s17\n\t"
        "vmul.f32 s2, s0, s18\n\t"    /* t = z / ln2 + 1.5 * 2^23: k in the low bits */
        "vmul.f32 s3, s1, s18\n\t"
        "vadd.f32 s2, s2, s19\n\t"
        "vadd.f32 s3, s3, s19\n\t"
        "vsub.f32 s4, s2, s19\n\t"    /* k */
        "vsub.f32 s5, s3, s19\n\t"
        "vmul.f32 s6, s4, s20\n\t"
        "vmul.f32 s7, s5, s20\n\t"
        "vsub.f32 s0, s0, s6\n\t"
        "vsub.f32 s1, s1, s7\n\t"
        "vmul.f32 s6, s4, s28\n\t"
        "vmul.f32 s7, s5, s28\n\t"
        "vsub.f32 s0, s0, s6\n\t"     /* r = z - k ln2_hi - k ln2_lo */
        "vsub.f32 s1, s1, s7\n\t"
        "vmov r2, r3, s2, s3\n\t"
        "lsls r2, r2, #23\n\t"
        "lsls r3, r3, #23\n\t"
        "add r2, r2, #0x3f800000\n\t"
        "add r3, r3, #0x3f800000\n\t"
        "vmov s8, s9, r2, r3\n\t"     /* s = 2^k */
        "vmul.f32 s10, s0, s21\n\t"   /* P(r) */
        "vmul.f32 s11, s1, s21\n\t"
        "vadd.f32 s10, s10, s22\n\t"
        "vadd.f32 s11, s11, s22\n\t"
        "vmul.f32 s10, s10, s0\n\t"
        "vmul.f32 s11, s11, s1\n\t"
        "vadd.f32 s10, s10, s23\n\t"
        "vadd.f32 s11, s11, s23\n\t"
        "vmul.f32 s10, s10, s0\n\t"
        "vmul.f32 s11, s11, s1\n\t"
        "vadd.f32 s10, s10, s24\n\t"
        "vadd.f32 s11, s11, s24\n\t"
        "vmul.f32 s10, s10, s0\n\t"
        "vmul.f32 s11, s11, s1\n\t"
        "vadd.f32 s10, s10, s25\n\t"
        "vadd.f32 s11, s11, s25\n\t"
        "vmul.f32 s6, s0, s0\n\t"
        "vmul.f32 s7, s1, s1\n\t"
        "vmul.f32 s10, s10, s6\n\t"
        "vmul.f32 s11, s11, s7\n\t"
        "vadd.f32 s10, s10, s0\n\t"   /* q = expm1(r) */
        "vadd.f32 s11, s11, s1\n\t"
        "vmul.f32 s10, s10, s8\n\t"
        "vmul.f32 s11, s11, s9\n\t"
        "vsub.f32 s6, s8, s26\n\t"
        "vsub.f32 s7, s9, s26\n\t"
        "vadd.f32 s10, s10, s6\n\t"   /* e = s q + (s - 1) = expm1(z) */
        "vadd.f32 s11, s11, s7\n\t"
        "vadd.f32 s6, s10, s27\n\t"   /* e + 2 */
        "vadd.f32 s7, s11, s27\n\t"
        "vmul.f32 s10, s10, s30\n\t"
        "vmul.f32 s11, s11, s30\n\t"
        "vadd.f32 s10, s10, s31\n\t"
        "vadd.f32 s11, s11, s31\n\t"
        "vdiv.f32 s10, s10, s6\n\t"
        "vdiv.f32 s11, s11, s7\n\t"
        "cbnz %[one], 3f\n\t"
        "vstmia %[y]!, {s10-s11}\n\t"
        "subs %[n], %[n], #2\n\t"
        "bne 1b\n\t"
        "b 4f\n"
        "3:\n\t"
        "vstmia %[y]!, {s10}\n\t"
        "movs %[one], #0\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n"
        "4:\n\t"
        : [x] "+r"(x), [y] "+r"(y), [n] "+r"(n), [one] "=&l"(one)
        : [k] "r"(k), [c] "r"(c)
        : "r2", "r3", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
          "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27",
          "s28", "s29", "s30", "s31", "cc", "memory");
}

static const float nn_tanh_c[3] = {2.0f, 1.0f, 0.0f};
static const float nn_sigmoid_c[3] = {-1.0f, 0.0f, 1.0f};
#endif

/* tanh or sigmoid of y[n] in place. */
static void exp_act_rows(float *y, int n, nnmpc_act_t act)
{
#if NN_ASM_VFP
    if (n > 0) {
        exp_act_loop(y, y, n, act == NNMPC_ACT_TANH ? nn_tanh_c : nn_sigmoid_c);
    }
#else
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = act == NNMPC_ACT_TANH ? nn_tanh(y[i]) : nn_sigmoid(y[i]);
    }
#endif
}

void nnmpc_activate(const float *x, float *y, int n, nnmpc_act_t act)
{
    int i;
    switch (act) {
    case NNMPC_ACT_RELU:
        /* max(v, 0) on the bit patterns: clear every value whose sign bit is set. */
        for (i = 0; i < n; ++i) {
            nn_bits v;
            v.f = x[i];
            v.u &= (v.u >> 31) - 1u;
            y[i] = v.f;
        }
        break;
    case NNMPC_ACT_TANH:
    case NNMPC_ACT_SIGMOID:
#if NN_ASM_VFP
        if (n > 0) {
            exp_act_loop(x, y, n, act == NNMPC_ACT_TANH ? nn_tanh_c : nn_sigmoid_c);
        }
#else
        for (i = 0; i < n; ++i) {
            y[i] = act == NNMPC_ACT_TANH ? nn_tanh(x[i]) : nn_sigmoid(x[i]);
        }
#endif
        break;
    case NNMPC_ACT_LINEAR:
    default:
        if (y != x) {
            memcpy(y, x, (size_t)n * sizeof(float));
        }
        break;
    }
}

void nnmpc_act_deriv(const float *y, float *d, int n, nnmpc_act_t act)
{
    int i;
    switch (act) {
    case NNMPC_ACT_RELU: {
        /* 1 where y > 0, on the bit patterns: a positive sign-clear non-zero value (a NaN
         * output of relu counts as positive). */
        i = 0;
#if NN_ASM_VFP
        if (n >= 4) {
            /* four at a time: y as int32 > 0 ? bits of 1.0f : 0 */
            const uint32_t one = 0x3f800000u;
            const float *yp = y;
            float *dp = d;
            int q = n >> 2;
            __asm__ volatile(
                "1:\n\t"
                "ldmia %[y]!, {r4-r7}\n\t"
                "cmp r4, #0\n\t"
                "ite gt\n\t"
                "movgt r4, %[one]\n\t"
                "movle r4, #0\n\t"
                "cmp r5, #0\n\t"
                "ite gt\n\t"
                "movgt r5, %[one]\n\t"
                "movle r5, #0\n\t"
                "cmp r6, #0\n\t"
                "ite gt\n\t"
                "movgt r6, %[one]\n\t"
                "movle r6, #0\n\t"
                "cmp r7, #0\n\t"
                "ite gt\n\t"
                "movgt r7, %[one]\n\t"
                "movle r7, #0\n\t"
                "stmia %[d]!, {r4-r7}\n\t"
                "subs %[q], %[q], #1\n\t"
                "bne 1b\n\t"
                : [y] "+r"(yp), [d] "+r"(dp), [q] "+r"(q)
                : [one] "r"(one)
                : "r4", "r5", "r6", "r7", "cc", "memory");
            i = n & ~3;
        }
#endif
        for (; i < n; ++i) {
            nn_bits v;
            v.f = y[i];
            v.u = (int32_t)v.u > 0 ? 0x3f800000u : 0u;
            d[i] = v.f;
        }
        break;
    }
    case NNMPC_ACT_TANH:
        i = 0;
#if NN_ASM_VFP
        if (n >= 4) {
            /* four at a time: the same products and differences, loads and stores in blocks */
            const float *yp = y;
            float *dp = d;
            int q = n >> 2;
            __asm__ volatile(
                "vmov.f32 s8, #1.0\n"
                "1:\n\t"
                "vldmia %[y]!, {s0-s3}\n\t"
                "vmul.f32 s0, s0, s0\n\t"
                "vmul.f32 s1, s1, s1\n\t"
                "vmul.f32 s2, s2, s2\n\t"
                "vmul.f32 s3, s3, s3\n\t"
                "vsub.f32 s0, s8, s0\n\t"
                "vsub.f32 s1, s8, s1\n\t"
                "vsub.f32 s2, s8, s2\n\t"
                "vsub.f32 s3, s8, s3\n\t"
                "vstmia %[d]!, {s0-s3}\n\t"
                "subs %[q], %[q], #1\n\t"
                "bne 1b\n\t"
                : [y] "+r"(yp), [d] "+r"(dp), [q] "+r"(q)
                :
                : "s0", "s1", "s2", "s3", "s8", "cc", "memory");
            i = n & ~3;
        }
#endif
        for (; i < n; ++i) {
            const float v = y[i];
            d[i] = 1.0f - v * v;
        }
        break;
    case NNMPC_ACT_SIGMOID:
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            d[i] = v * (1.0f - v);
        }
        break;
    case NNMPC_ACT_LINEAR:
    default:
        for (i = 0; i < n; ++i) {
            d[i] = 1.0f;
        }
        break;
    }
}

/*
 * Tangent of a dense layer, T_out = diag(d) . W . T_in, with two kinds of sparsity a relu net
 * has: an output row whose d is 0 is zero, and an input row of T_in that is all zeros (a unit
 * the previous relu switched off) is skipped. The remaining work runs in groups of four output
 * rows by three tangent columns, twelve sums in registers.
 */

/* Whether the n floats at t are all +-0 (on their bit patterns, so NaN counts as non-zero). */
#if NN_ASM_VFP
static int all_zero(const float *t, int n)
{
    uint32_t acc = 0, a, b;
    int m = n >> 1;
    __asm__ volatile(
        "cbz %[m], 2f\n"
        "1:\n\t"
        "ldrd %[a], %[b], [%[t]], #8\n\t"
        "orr %[acc], %[acc], %[a]\n\t"
        "orr %[acc], %[acc], %[b]\n\t"
        "subs %[m], %[m], #1\n\t"
        "bne 1b\n"
        "2:\n\t"
        : [acc] "+r"(acc), [a] "=&r"(a), [b] "=&r"(b), [t] "+r"(t), [m] "+l"(m)
        :
        : "cc", "memory");
    if (n & 1) {
        nn_bits v;
        v.f = *t;
        acc |= v.u;
    }
    return (acc << 1) == 0;
}
#else
static int all_zero(const float *t, int n)
{
    uint32_t acc = 0;
    int c = 0;
    for (; c + 2 <= n; c += 2) {
        nn_bits a, b;
        a.f = t[c];
        b.f = t[c + 1];
        acc |= (a.u | b.u) << 1;
    }
    if (c < n) {
        nn_bits a;
        a.f = t[c];
        acc |= a.u << 1;
    }
    return acc == 0;
}
#endif

/* o[0..n) = v (a +-0 or a product, so the compiler keeps a plain loop), n >= 1. */
static void fill_row(float *o, float v, int n)
{
    int c = 0;
    for (; c + 2 <= n; c += 2) {
        o[c] = v;
        o[c + 1] = v;
    }
    if (c < n) {
        o[c] = v;
    }
}

#define NN_TAN_MAX 256 /* larger layers take the plain loops */

#if NN_ASM_VFP
/*
 * acc[3 r + c] = sum over the n entries j of list: w_r[j] * T[j * kbytes / 4 + c], for the four
 * rows w0..w3 and c < 3 (T already offset to the first column of the group).
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void tangent_4x3(const float *w0, const float *w1, const float *w2, const float *w3,
                        const float *T, int kbytes, const uint8_t *list, int n, float *acc)
{
    uint32_t j, a0, a1;
    __asm__ volatile(
        "movs %[a0], #0\n\t"
        "vmov s16, s17, %[a0], %[a0]\n\t"
        "vmov s18, s19, %[a0], %[a0]\n\t"
        "vmov s20, s21, %[a0], %[a0]\n\t"
        "vmov s22, s23, %[a0], %[a0]\n\t"
        "vmov s24, s25, %[a0], %[a0]\n\t"
        "vmov s26, s27, %[a0], %[a0]\n"
        "1:\n\t"
        "ldrb %[j], [%[l]], #1\n\t"
        "ldr %[a0], [%[w0], %[j], lsl #2]\n\t"
        "ldr %[a1], [%[w1], %[j], lsl #2]\n\t"
        "vmov s0, s1, %[a0], %[a1]\n\t"
        "ldr %[a0], [%[w2], %[j], lsl #2]\n\t"
        "ldr %[a1], [%[w3], %[j], lsl #2]\n\t"
        "mla %[j], %[j], %[kb], %[T]\n\t"
        "vmov s2, s3, %[a0], %[a1]\n\t"
        "vldr s4, [%[j]]\n\t"
        "vldr s5, [%[j], #4]\n\t"
        "vldr s6, [%[j], #8]\n\t"
        "vmul.f32 s8, s0, s4\n\t"
        "vmul.f32 s9, s0, s5\n\t"
        "vmul.f32 s10, s0, s6\n\t"
        "vmul.f32 s11, s1, s4\n\t"
        "vmul.f32 s12, s1, s5\n\t"
        "vmul.f32 s13, s1, s6\n\t"
        "vadd.f32 s16, s16, s8\n\t"
        "vadd.f32 s17, s17, s9\n\t"
        "vadd.f32 s18, s18, s10\n\t"
        "vadd.f32 s19, s19, s11\n\t"
        "vadd.f32 s20, s20, s12\n\t"
        "vadd.f32 s21, s21, s13\n\t"
        "vmul.f32 s8, s2, s4\n\t"
        "vmul.f32 s9, s2, s5\n\t"
        "vmul.f32 s10, s2, s6\n\t"
        "vmul.f32 s11, s3, s4\n\t"
        "vmul.f32 s12, s3, s5\n\t"
        "vmul.f32 s13, s3, s6\n\t"
        "vadd.f32 s22, s22, s8\n\t"
        "vadd.f32 s23, s23, s9\n\t"
        "vadd.f32 s24, s24, s10\n\t"
        "vadd.f32 s25, s25, s11\n\t"
        "vadd.f32 s26, s26, s12\n\t"
        "vadd.f32 s27, s27, s13\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[acc], {s16-s27}\n\t"
        : [l] "+r"(list), [n] "+r"(n), [j] "=&r"(j), [a0] "=&l"(a0), [a1] "=&r"(a1)
        : [w0] "r"(w0), [w1] "r"(w1), [w2] "r"(w2), [w3] "r"(w3), [T] "r"(T), [kb] "r"(kbytes),
          [acc] "r"(acc)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s8", "s9", "s10", "s11", "s12", "s13",
          "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27",
          "cc", "memory");
}

/* A group of four output rows: weight rows w[r]; o[r] (three columns) = s[r] * row r's sums. */
typedef struct {
    float *o[4];
    float s[4];
    const float *w[4];
} nn_tan_io;

/*
 * acc[3 r + c] = sum over every input row j < n: w_r[j] * T[j * kbytes / 4 + c] for the four
 * rows w_r = io->w[r] and c < 3 (T already offset to the first column of the group), two input rows
 * per step with the weights of each row loaded in pairs; then io->o[r][c] = io->s[r] *
 * acc[3 r + c] (rows may repeat: they get the same values).
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void tangent_4x3_out(const float *T, int kbytes, int n, const nn_tan_io *io)
{
    const float *w0, *w1, *w2, *w3;
    uint32_t z, half = (uint32_t)n >> 1;
    __asm__ volatile(
        "ldr %[w0], [%[io], #32]\n\t"
        "ldr %[w1], [%[io], #36]\n\t"
        "ldr %[w2], [%[io], #40]\n\t"
        "ldr %[w3], [%[io], #44]\n\t"
        "movs %[z], #0\n\t"
        "vmov s16, s17, %[z], %[z]\n\t"
        "vmov s18, s19, %[z], %[z]\n\t"
        "vmov s20, s21, %[z], %[z]\n\t"
        "vmov s22, s23, %[z], %[z]\n\t"
        "vmov s24, s25, %[z], %[z]\n\t"
        "vmov s26, s27, %[z], %[z]\n\t"
        "cmp %[h], #0\n\t"
        "beq 2f\n"
        "1:\n\t"
        "vldmia %[w0]!, {s0-s1}\n\t"
        "vldmia %[w1]!, {s2-s3}\n\t"
        "vldmia %[w2]!, {s4-s5}\n\t"
        "vldmia %[w3]!, {s6-s7}\n\t"
        "vldmia %[T], {s8-s10}\n\t"
        "add %[T], %[T], %[kb]\n\t"
        "vldmia %[T], {s11-s13}\n\t"
        "add %[T], %[T], %[kb]\n\t"
        "vmul.f32 s14, s0, s8\n\t"
        "vadd.f32 s16, s16, s14\n\t"
        "vmul.f32 s15, s0, s9\n\t"
        "vadd.f32 s17, s17, s15\n\t"
        "vmul.f32 s14, s0, s10\n\t"
        "vadd.f32 s18, s18, s14\n\t"
        "vmul.f32 s15, s2, s8\n\t"
        "vadd.f32 s19, s19, s15\n\t"
        "vmul.f32 s14, s2, s9\n\t"
        "vadd.f32 s20, s20, s14\n\t"
        "vmul.f32 s15, s2, s10\n\t"
        "vadd.f32 s21, s21, s15\n\t"
        "vmul.f32 s14, s4, s8\n\t"
        "vadd.f32 s22, s22, s14\n\t"
        "vmul.f32 s15, s4, s9\n\t"
        "vadd.f32 s23, s23, s15\n\t"
        "vmul.f32 s14, s4, s10\n\t"
        "vadd.f32 s24, s24, s14\n\t"
        "vmul.f32 s15, s6, s8\n\t"
        "vadd.f32 s25, s25, s15\n\t"
        "vmul.f32 s14, s6, s9\n\t"
        "vadd.f32 s26, s26, s14\n\t"
        "vmul.f32 s15, s6, s10\n\t"
        "vadd.f32 s27, s27, s15\n\t"
        "vmul.f32 s14, s1, s11\n\t"
        "vadd.f32 s16, s16, s14\n\t"
        "vmul.f32 s15, s1, s12\n\t"
        "vadd.f32 s17, s17, s15\n\t"
        "vmul.f32 s14, s1, s13\n\t"
        "vadd.f32 s18, s18, s14\n\t"
        "vmul.f32 s15, s3, s11\n\t"
        "vadd.f32 s19, s19, s15\n\t"
        "vmul.f32 s14, s3, s12\n\t"
        "vadd.f32 s20, s20, s14\n\t"
        "vmul.f32 s15, s3, s13\n\t"
        "vadd.f32 s21, s21, s15\n\t"
        "vmul.f32 s14, s5, s11\n\t"
        "vadd.f32 s22, s22, s14\n\t"
        "vmul.f32 s15, s5, s12\n\t"
        "vadd.f32 s23, s23, s15\n\t"
        "vmul.f32 s14, s5, s13\n\t"
        "vadd.f32 s24, s24, s14\n\t"
        "vmul.f32 s15, s7, s11\n\t"
        "vadd.f32 s25, s25, s15\n\t"
        "vmul.f32 s14, s7, s12\n\t"
        "vadd.f32 s26, s26, s14\n\t"
        "vmul.f32 s15, s7, s13\n\t"
        "vadd.f32 s27, s27, s15\n\t"
        "subs %[h], %[h], #1\n\t"
        "bne 1b\n"
        "2:\n\t"
        "lsls %[z], %[n], #31\n\t"
        "beq 3f\n\t"
        "vldmia %[w0]!, {s0}\n\t"
        "vldmia %[w1]!, {s2}\n\t"
        "vldmia %[w2]!, {s4}\n\t"
        "vldmia %[w3]!, {s6}\n\t"
        "vldmia %[T], {s8-s10}\n\t"
        "vmul.f32 s14, s0, s8\n\t"
        "vadd.f32 s16, s16, s14\n\t"
        "vmul.f32 s15, s0, s9\n\t"
        "vadd.f32 s17, s17, s15\n\t"
        "vmul.f32 s14, s0, s10\n\t"
        "vadd.f32 s18, s18, s14\n\t"
        "vmul.f32 s15, s2, s8\n\t"
        "vadd.f32 s19, s19, s15\n\t"
        "vmul.f32 s14, s2, s9\n\t"
        "vadd.f32 s20, s20, s14\n\t"
        "vmul.f32 s15, s2, s10\n\t"
        "vadd.f32 s21, s21, s15\n\t"
        "vmul.f32 s14, s4, s8\n\t"
        "vadd.f32 s22, s22, s14\n\t"
        "vmul.f32 s15, s4, s9\n\t"
        "vadd.f32 s23, s23, s15\n\t"
        "vmul.f32 s14, s4, s10\n\t"
        "vadd.f32 s24, s24, s14\n\t"
        "vmul.f32 s15, s6, s8\n\t"
        "vadd.f32 s25, s25, s15\n\t"
        "vmul.f32 s14, s6, s9\n\t"
        "vadd.f32 s26, s26, s14\n\t"
        "vmul.f32 s15, s6, s10\n\t"
        "vadd.f32 s27, s27, s15\n\t"
        "3:\n\t"
        "add %[z], %[io], #16\n\t"
        "vldmia %[z], {s0-s3}\n\t"
        "vmul.f32 s16, s16, s0\n\t"
        "vmul.f32 s17, s17, s0\n\t"
        "vmul.f32 s18, s18, s0\n\t"
        "vmul.f32 s19, s19, s1\n\t"
        "vmul.f32 s20, s20, s1\n\t"
        "vmul.f32 s21, s21, s1\n\t"
        "vmul.f32 s22, s22, s2\n\t"
        "vmul.f32 s23, s23, s2\n\t"
        "vmul.f32 s24, s24, s2\n\t"
        "vmul.f32 s25, s25, s3\n\t"
        "vmul.f32 s26, s26, s3\n\t"
        "vmul.f32 s27, s27, s3\n\t"
        "ldr %[z], [%[io], #0]\n\t"
        "vstmia %[z], {s16-s18}\n\t"
        "ldr %[z], [%[io], #4]\n\t"
        "vstmia %[z], {s19-s21}\n\t"
        "ldr %[z], [%[io], #8]\n\t"
        "vstmia %[z], {s22-s24}\n\t"
        "ldr %[z], [%[io], #12]\n\t"
        "vstmia %[z], {s25-s27}\n\t"
        : [w0] "=&r"(w0), [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3), [T] "+r"(T),
          [h] "+r"(half), [z] "=&l"(z)
        : [kb] "r"(kbytes), [io] "r"(io), [n] "r"(n)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",
          "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25",
          "s26", "s27", "cc", "memory");
}

/* 1 if one of the n floats at d is +-0 (on the bit patterns: clz(bits << 1) is 32 for +-0). */
static int any_zero(const float *d, int n)
{
    uint32_t acc = 0, a;
    int q = n >> 2;
    if (q > 0) {
        __asm__ volatile(
            "1:\n\t"
            "ldmia %[d]!, {r4-r7}\n\t"
            "lsls r4, r4, #1\n\t"
            "clz r4, r4\n\t"
            "lsls r5, r5, #1\n\t"
            "clz r5, r5\n\t"
            "orr %[acc], %[acc], r4\n\t"
            "lsls r6, r6, #1\n\t"
            "clz r6, r6\n\t"
            "orr %[acc], %[acc], r5\n\t"
            "lsls r7, r7, #1\n\t"
            "clz r7, r7\n\t"
            "orr %[acc], %[acc], r6\n\t"
            "orr %[acc], %[acc], r7\n\t"
            "subs %[q], %[q], #1\n\t"
            "bne 1b\n\t"
            : [d] "+r"(d), [q] "+r"(q), [acc] "+r"(acc)
            :
            : "r4", "r5", "r6", "r7", "cc", "memory");
    }
    for (n &= 3; n > 0; --n, ++d) {
        nn_bits u;
        u.f = *d;
        __asm__("clz %0, %1" : "=r"(a) : "r"(u.u << 1));
        acc |= a;
    }
    return (acc & 32u) != 0;
}

/*
 * T_out[n x k] = diag(d) . W (the tangent of a dense layer on its input), k a multiple of 3,
 * n >= 1, no zero in d: row by row, three columns at a time.
 */
static void scale_rows3(const float *W, const float *d, float *T_out, int n, int k)
{
    const int m = k / 3;
    int c;
    __asm__ volatile(
        "1:\n\t"
        "vldmia %[d]!, {s0}\n\t"
        "mov %[c], %[m]\n"
        "2:\n\t"
        "vldmia %[w]!, {s1-s3}\n\t"
        "vmul.f32 s1, s0, s1\n\t"
        "vmul.f32 s2, s0, s2\n\t"
        "vmul.f32 s3, s0, s3\n\t"
        "vstmia %[o]!, {s1-s3}\n\t"
        "subs %[c], %[c], #1\n\t"
        "bne 2b\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        : [w] "+r"(W), [d] "+r"(d), [o] "+r"(T_out), [n] "+r"(n), [c] "=&r"(c)
        : [m] "r"(m)
        : "s0", "s1", "s2", "s3", "cc", "memory");
}

#else
static void tangent_4x3(const float *w0, const float *w1, const float *w2, const float *w3,
                        const float *T, int kbytes, const uint8_t *list, int n, float *acc)
{
    const float *w[4];
    int r, c, e;
    w[0] = w0;
    w[1] = w1;
    w[2] = w2;
    w[3] = w3;
    for (e = 0; e < 12; ++e) {
        acc[e] = 0.0f;
    }
    for (e = 0; e < n; ++e) {
        const int j = list[e];
        const float *t = T + (long)j * (kbytes / 4);
        for (r = 0; r < 4; ++r) {
            for (c = 0; c < 3; ++c) {
                const float m = w[r][j] * t[c];
                acc[3 * r + c] += m;
            }
        }
    }
}
#endif

#if NN_ASM_VFP
/*
 * nnmpc_dense_tangent when no output row is switched off (d NULL or no zero in d; a tanh or
 * linear layer), k >= 3: every output row and every input row, four consecutive rows at a
 * time (a short last group repeats its last row), no lists to build. An all-zero input row
 * adds +-0 here where the sparse path skips it: only a zero's sign can differ.
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void dense_tangent_all(const float *W, const float *d, const float *T_in, float *T_out,
                              int n_out, int n_in, int k)
{
    nn_tan_io io;
    int i, r, c0;
    for (i = 0; i < n_out; i += 4) {
        for (r = 0; r < 4; ++r) {
            const int ir = i + r < n_out ? i + r : n_out - 1;
            io.w[r] = W + (long)ir * n_in;
            io.o[r] = T_out + (long)ir * k;
            io.s[r] = d ? d[ir] : 1.0f;
        }
        for (c0 = 0;;) {
            tangent_4x3_out(T_in + c0, 4 * k, n_in, &io);
            if (c0 + 3 >= k) {
                break;
            }
            r = c0 + 3 > k - 3 ? k - 3 - c0 : 3; /* the last columns overlap the previous */
            c0 += r;
            io.o[0] += r;
            io.o[1] += r;
            io.o[2] += r;
            io.o[3] += r;
        }
    }
}
#endif

/* The general loops: any size, d and T_in as in nnmpc_dense_tangent. */
static void dense_tangent_loops(const float *W, const float *d, const float *T_in, float *T_out,
                                int n_out, int n_in, int k)
{
    int i, j, c;
    for (i = 0; i < n_out; ++i) {
        const float *w = W + (long)i * n_in;
        float *t = T_out + (long)i * k;
        const float s = d ? d[i] : 1.0f;
        for (c = 0; c < k; ++c) {
            t[c] = 0.0f;
        }
        if (s == 0.0f) {
            continue;
        }
        for (j = 0; j < n_in; ++j) {
            const float wj = w[j];
            const float *tin = T_in + (long)j * k;
            for (c = 0; c < k; ++c) {
                const float m = wj * tin[c];
                t[c] += m;
            }
        }
        for (c = 0; c < k; ++c) {
            t[c] *= s;
        }
    }
}

void nnmpc_dense_tangent(const float *W, const float *d, const float *T_in, float *T_out,
                         int n_out, int n_in, int k)
{
    uint8_t cols[NN_TAN_MAX], rows[NN_TAN_MAX];
    float acc[12];
    const float *t;
    float *o;
    int i, j, c, n_cols = 0, n_rows = 0, g;
    if (T_in == NULL) {
        /* identity input tangent: T_out = diag(d) . W (k == n_in) */
#if NN_ASM_VFP
        if (d && n_out > 0 && k > 0 && k % 3 == 0 && !any_zero(d, n_out)) {
            scale_rows3(W, d, T_out, n_out, k);
            return;
        }
#endif
        for (i = 0, o = T_out, t = W; i < n_out; ++i, o += k, t += n_in) {
            const float s = d ? d[i] : 1.0f;
            if (s == 0.0f) {
                fill_row(o, 0.0f * s, k);
                continue;
            }
            for (c = 0; c + 2 <= k; c += 2) {
                const float a = t[c], b = t[c + 1];
                o[c] = s * a;
                o[c + 1] = s * b;
            }
            if (c < k) {
                o[c] = s * t[c];
            }
        }
        return;
    }
    if (k < 3 || n_in > NN_TAN_MAX || n_out > NN_TAN_MAX) {
        dense_tangent_loops(W, d, T_in, T_out, n_out, n_in, k);
        return;
    }
#if NN_ASM_VFP
    if (d == NULL || !any_zero(d, n_out)) {
        dense_tangent_all(W, d, T_in, T_out, n_out, n_in, k);
        return;
    }
#endif
    {
        for (j = 0, t = T_in; j < n_in; ++j, t += k) {
            nn_bits v;
            v.f = t[0];
            if ((v.u << 1) != 0 || !all_zero(t, k)) {
                cols[n_cols++] = (uint8_t)j;
            }
        }
        for (i = 0, o = T_out; i < n_out; ++i, o += k) {
            const float s = d ? d[i] : 1.0f;
            if (s != 0.0f && n_cols > 0) {
                rows[n_rows++] = (uint8_t)i;
            } else {
                fill_row(o, 0.0f * s, k);
            }
        }
    }
    for (g = 0; g < n_rows; g += 4) {
        /* four active rows; a short last group repeats its last row */
        int rr[4], r, c0 = 0;
#if NN_ASM_VFP
        nn_tan_io io;
#endif
        for (r = 0; r < 4; ++r) {
            rr[r] = rows[g + r < n_rows ? g + r : n_rows - 1];
        }
        for (;;) {
            const float *w0 = W + (long)rr[0] * n_in, *w1 = W + (long)rr[1] * n_in;
            const float *w2 = W + (long)rr[2] * n_in, *w3 = W + (long)rr[3] * n_in;
            if (c0 > k - 3) {
                c0 = k - 3; /* the last group of columns overlaps the previous one */
            }
#if NN_ASM_VFP
            if (n_cols == n_in) {
                /* every input row: the kernel scales and stores the four rows itself */
                for (r = 0; r < 4; ++r) {
                    io.o[r] = T_out + (long)rr[r] * k + c0;
                    io.s[r] = d ? d[rr[r]] : 1.0f;
                }
                io.w[0] = w0;
                io.w[1] = w1;
                io.w[2] = w2;
                io.w[3] = w3;
                tangent_4x3_out(T_in + c0, 4 * k, n_in, &io);
            } else
#endif
            {
                tangent_4x3(w0, w1, w2, w3, T_in + c0, 4 * k, cols, n_cols, acc);
                for (r = 0; r < 4; ++r) {
                    const float s = d ? d[rr[r]] : 1.0f;
                    o = T_out + (long)rr[r] * k + c0;
                    o[0] = s * acc[3 * r];
                    o[1] = s * acc[3 * r + 1];
                    o[2] = s * acc[3 * r + 2];
                }
            }
            if (c0 + 3 >= k) {
                break;
            }
            c0 += 3;
        }
    }
}

/*
 * Adjoint (vector-Jacobian product) of a dense layer, the reverse-mode step:
 * A_x[r] = W^T . G[r] for r < rows, G[r] [n_out x m], A_x[r] [n_in x m]. Rows of G that are all
 * zero (units a relu switched off, once scaled by their derivative) are skipped; the rest runs
 * in blocks of four inputs by four columns, sixteen sums in registers.
 */
#if NN_ASM_VFP
/*
 * out[jj * ostride + c] = sum over the n entries i of list: Wc[i * wstride + jj] *
 * Gc[i * gstride + c] for jj, c < 4 (strides in bytes).
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void adjoint_4x4(const float *Wc, int wstride, const float *Gc, int gstride,
                        const uint8_t *list, int n, float *out, int ostride)
{
    uint32_t i, wp, gp;
    __asm__ volatile(
        "movs %[i], #0\n\t"
        "vmov s16, s17, %[i], %[i]\n\t"
        "vmov s18, s19, %[i], %[i]\n\t"
        "vmov s20, s21, %[i], %[i]\n\t"
        "vmov s22, s23, %[i], %[i]\n\t"
        "vmov s24, s25, %[i], %[i]\n\t"
        "vmov s26, s27, %[i], %[i]\n\t"
        "vmov s28, s29, %[i], %[i]\n\t"
        "vmov s30, s31, %[i], %[i]\n"
        "1:\n\t"
        "ldrb %[i], [%[l]], #1\n\t"
        "mla %[wp], %[i], %[ws], %[W]\n\t"
        "mla %[gp], %[i], %[gs], %[G]\n\t"
        "vldmia %[wp], {s0-s3}\n\t"
        "vldmia %[gp], {s4-s7}\n\t"
        "vmul.f32 s8, s0, s4\n\t"
        "vadd.f32 s16, s16, s8\n\t"
        "vmul.f32 s9, s0, s5\n\t"
        "vadd.f32 s17, s17, s9\n\t"
        "vmul.f32 s10, s0, s6\n\t"
        "vadd.f32 s18, s18, s10\n\t"
        "vmul.f32 s11, s0, s7\n\t"
        "vadd.f32 s19, s19, s11\n\t"
        "vmul.f32 s12, s1, s4\n\t"
        "vadd.f32 s20, s20, s12\n\t"
        "vmul.f32 s13, s1, s5\n\t"
        "vadd.f32 s21, s21, s13\n\t"
        "vmul.f32 s14, s1, s6\n\t"
        "vadd.f32 s22, s22, s14\n\t"
        "vmul.f32 s15, s1, s7\n\t"
        "vadd.f32 s23, s23, s15\n\t"
        "vmul.f32 s8, s2, s4\n\t"
        "vadd.f32 s24, s24, s8\n\t"
        "vmul.f32 s9, s2, s5\n\t"
        "vadd.f32 s25, s25, s9\n\t"
        "vmul.f32 s10, s2, s6\n\t"
        "vadd.f32 s26, s26, s10\n\t"
        "vmul.f32 s11, s2, s7\n\t"
        "vadd.f32 s27, s27, s11\n\t"
        "vmul.f32 s12, s3, s4\n\t"
        "vadd.f32 s28, s28, s12\n\t"
        "vmul.f32 s13, s3, s5\n\t"
        "vadd.f32 s29, s29, s13\n\t"
        "vmul.f32 s14, s3, s6\n\t"
        "vadd.f32 s30, s30, s14\n\t"
        "vmul.f32 s15, s3, s7\n\t"
        "vadd.f32 s31, s31, s15\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[o], {s16-s19}\n\t"
        "add %[o], %[o], %[os]\n\t"
        "vstmia %[o], {s20-s23}\n\t"
        "add %[o], %[o], %[os]\n\t"
        "vstmia %[o], {s24-s27}\n\t"
        "add %[o], %[o], %[os]\n\t"
        "vstmia %[o], {s28-s31}\n\t"
        : [l] "+r"(list), [n] "+r"(n), [i] "=&l"(i), [wp] "=&r"(wp), [gp] "=&r"(gp),
          [o] "+r"(out)
        : [W] "r"(Wc), [ws] "r"(wstride), [G] "r"(Gc), [gs] "r"(gstride), [os] "r"(ostride)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",
          "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25",
          "s26", "s27", "s28", "s29", "s30", "s31", "cc", "memory");
}
#endif

void nnmpc_dense_adjoint(const float *W, const float *G, float *A_x, int rows, int n_out,
                         int n_in, int m)
{
    uint8_t list[NN_TAN_MAX];
    int r, i, j, c;
    for (r = 0; r < rows; ++r) {
        const float *g = G + (long)r * n_out * m;
        float *a = A_x + (long)r * n_in * m;
        int n_act = 0;
#if NN_ASM_VFP
        if (m >= 4 && n_in >= 4 && n_out <= NN_TAN_MAX) {
            int j0, c0;
            for (i = 0; i < n_out; ++i) {
                if (!all_zero(g + (long)i * m, m)) {
                    list[n_act++] = (uint8_t)i;
                }
            }
            if (n_act == 0) {
                fill_row(a, 0.0f, n_in * m);
                continue;
            }
            for (j0 = 0;; j0 += 4) {
                if (j0 > n_in - 4) {
                    j0 = n_in - 4; /* the last block of inputs overlaps the previous one */
                }
                for (c0 = 0;; c0 += 4) {
                    if (c0 > m - 4) {
                        c0 = m - 4;
                    }
                    adjoint_4x4(W + j0, 4 * n_in, g + c0, 4 * m, list, n_act,
                                a + (long)j0 * m + c0, 4 * m);
                    if (c0 + 4 >= m) {
                        break;
                    }
                }
                if (j0 + 4 >= n_in) {
                    break;
                }
            }
            continue;
        }
#endif
        (void)list;
        (void)n_act;
        for (j = 0; j < n_in * m; ++j) {
            a[j] = 0.0f;
        }
        for (i = 0; i < n_out; ++i) {
            const float *w = W + (long)i * n_in;
            const float *gi = g + (long)i * m;
            if (all_zero(gi, m)) {
                continue;
            }
            for (j = 0; j < n_in; ++j) {
                const float wj = w[j];
                float *aj = a + (long)j * m;
                for (c = 0; c < m; ++c) {
                    const float p = wj * gi[c];
                    aj[c] += p;
                }
            }
        }
    }
}

#if NN_ASM_VFP
/*
 * acc[4 r + c] = sum over k < n: cr[r][w_k / 4] * G[g_k / 4 + c] for r, c < 4, where
 * off[k] = g_k << 16 | w_k (byte offsets of row k of W and of G): four gathered input columns
 * (cr[r] = W + column) by four adjoint columns.
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void adjoint_4x4g(const float *const *cr, const uint32_t *off, const float *G, int n,
                         float *acc)
{
    uint32_t o, g, a0, a1;
    const float *c0 = cr[0], *c1 = cr[1], *c2 = cr[2], *c3 = cr[3];
    __asm__ volatile(
        "movs %[a0], #0\n\t"
        "vmov s16, s17, %[a0], %[a0]\n\t"
        "vmov s18, s19, %[a0], %[a0]\n\t"
        "vmov s20, s21, %[a0], %[a0]\n\t"
        "vmov s22, s23, %[a0], %[a0]\n\t"
        "vmov s24, s25, %[a0], %[a0]\n\t"
        "vmov s26, s27, %[a0], %[a0]\n\t"
        "vmov s28, s29, %[a0], %[a0]\n\t"
        "vmov s30, s31, %[a0], %[a0]\n"
        "1:\n\t"
        "ldr %[o], [%[off]], #4\n\t"
        "lsrs %[g], %[o], #16\n\t"
        "uxth %[o], %[o]\n\t"
        "add %[g], %[g], %[G]\n\t"
        "ldr %[a0], [%[c0], %[o]]\n\t"
        "ldr %[a1], [%[c1], %[o]]\n\t"
        "vmov s0, s1, %[a0], %[a1]\n\t"
        "ldr %[a0], [%[c2], %[o]]\n\t"
        "ldr %[a1], [%[c3], %[o]]\n\t"
        "vmov s2, s3, %[a0], %[a1]\n\t"
        "vldmia %[g], {s4-s7}\n\t"
        "vmul.f32 s8, s0, s4\n\t"
        "vadd.f32 s16, s16, s8\n\t"
        "vmul.f32 s9, s0, s5\n\t"
        "vadd.f32 s17, s17, s9\n\t"
        "vmul.f32 s10, s0, s6\n\t"
        "vadd.f32 s18, s18, s10\n\t"
        "vmul.f32 s11, s0, s7\n\t"
        "vadd.f32 s19, s19, s11\n\t"
        "vmul.f32 s12, s1, s4\n\t"
        "vadd.f32 s20, s20, s12\n\t"
        "vmul.f32 s13, s1, s5\n\t"
        "vadd.f32 s21, s21, s13\n\t"
        "vmul.f32 s14, s1, s6\n\t"
        "vadd.f32 s22, s22, s14\n\t"
        "vmul.f32 s15, s1, s7\n\t"
        "vadd.f32 s23, s23, s15\n\t"
        "vmul.f32 s8, s2, s4\n\t"
        "vadd.f32 s24, s24, s8\n\t"
        "vmul.f32 s9, s2, s5\n\t"
        "vadd.f32 s25, s25, s9\n\t"
        "vmul.f32 s10, s2, s6\n\t"
        "vadd.f32 s26, s26, s10\n\t"
        "vmul.f32 s11, s2, s7\n\t"
        "vadd.f32 s27, s27, s11\n\t"
        "vmul.f32 s12, s3, s4\n\t"
        "vadd.f32 s28, s28, s12\n\t"
        "vmul.f32 s13, s3, s5\n\t"
        "vadd.f32 s29, s29, s13\n\t"
        "vmul.f32 s14, s3, s6\n\t"
        "vadd.f32 s30, s30, s14\n\t"
        "vmul.f32 s15, s3, s7\n\t"
        "vadd.f32 s31, s31, s15\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[acc], {s16-s31}\n\t"
        : [off] "+r"(off), [n] "+r"(n), [o] "=&r"(o), [g] "=&r"(g), [a0] "=&r"(a0),
          [a1] "=&r"(a1)
        : [c0] "r"(c0), [c1] "r"(c1), [c2] "r"(c2), [c3] "r"(c3), [G] "r"(G), [acc] "r"(acc)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",
          "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25",
          "s26", "s27", "s28", "s29", "s30", "s31", "cc", "memory");
}
#endif

#define NN_ADJ_ROWS 64 /* active rows of G listed on the stack (256 B) by the gathered path */

void nnmpc_dense_adjoint_scaled(const float *W, const float *G, float *A_x, int n_out, int n_in,
                                int m, const float *d_in)
{
    int j, c;
#if NN_ASM_VFP
    if (m >= 4 && n_in >= 4 && (long)n_out * n_in <= 16384 && (long)n_out * m <= 16384 &&
        n_in <= NN_TAN_MAX) {
        uint32_t off[NN_ADJ_ROWS];
        uint8_t cols[NN_TAN_MAX];
        float acc[16];
        int i, n_act = 0, n_cols = 0, g, c0;
        for (i = 0; i < n_out && n_act <= NN_ADJ_ROWS; ++i) {
            if (!all_zero(G + (long)i * m, m)) {
                if (n_act < NN_ADJ_ROWS) {
                    off[n_act] = (uint32_t)(i * m * 4) << 16 | (uint32_t)(i * n_in * 4);
                }
                ++n_act;
            }
        }
        if (n_act <= NN_ADJ_ROWS) {
            for (j = 0; j < n_in; ++j) {
                if (d_in[j] != 0.0f && n_act > 0) {
                    cols[n_cols++] = (uint8_t)j;
                } else {
                    fill_row(A_x + (long)j * m, 0.0f, m);
                }
            }
            for (c0 = 0; n_cols > 0;) {
                if (c0 > m - 4) {
                    c0 = m - 4; /* the last block of columns overlaps the previous one */
                }
                for (g = 0; g < n_cols; g += 4) {
                    /* four active inputs; a short last group repeats its last one */
                    const float *cr[4];
                    int jj[4], r;
                    for (r = 0; r < 4; ++r) {
                        jj[r] = cols[g + r < n_cols ? g + r : n_cols - 1];
                        cr[r] = W + jj[r];
                    }
                    adjoint_4x4g(cr, off, G + c0, n_act, acc);
                    for (r = 0; r < 4; ++r) {
                        const float s = d_in[jj[r]];
                        float *a = A_x + (long)jj[r] * m + c0;
                        a[0] = s * acc[4 * r];
                        a[1] = s * acc[4 * r + 1];
                        a[2] = s * acc[4 * r + 2];
                        a[3] = s * acc[4 * r + 3];
                    }
                }
                if (c0 + 4 >= m) {
                    break;
                }
                c0 += 4;
            }
            return;
        }
    }
#endif
    nnmpc_dense_adjoint(W, G, A_x, 1, n_out, n_in, m);
    for (j = 0; j < n_in; ++j) {
        for (c = 0; c < m; ++c) {
            A_x[(long)j * m + c] *= d_in[j];
        }
    }
}

void nnmpc_scale_rows(const float *T_in, const float *d, float *T_out, int n, int k)
{
    int i, c;
    for (i = 0; i < n; ++i, T_in += k, T_out += k) {
        const float s = d[i];
        if (s == 1.0f) {
            /* a relu's active unit (or any unit slope): a copy, nothing to do in place */
            if (T_out != T_in) {
                for (c = 0; c < k; ++c) {
                    T_out[c] = T_in[c];
                }
            }
            continue;
        }
        for (c = 0; c < k; ++c) {
            T_out[c] = s * T_in[c];
        }
    }
}

/* ---- Elementary functions without libm ------------------------------------------------ */

static float scale_pow2(float x, int k)
{
    /* x * 2^k for k in [-126, 127], by building the float 2^k from its bits. */
    union { float f; uint32_t u; } p;
    p.u = (uint32_t)(k + 127) << 23;
    return x * p.f;
}

float nnmpc_expf(float x)
{
    /* exp(x) = 2^k exp(r), x = k ln2 + r, |r| <= ln2/2; exp(r) by its Taylor series to r^7
     * (truncation error < 6e-9 relative), ln2 split in two for an exact reduction. */
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.42860676533018704e-06f;
    const float inv_ln2 = 1.44269504088896341f;
    float kf, r, p;
    int k;
    if (x > 88.7f) {
        return 3.40282347e+38f;
    }
    if (x < -87.3f) {
        return 0.0f;
    }
    kf = x * inv_ln2;
    k = (int)(kf + (kf >= 0.0f ? 0.5f : -0.5f));
    kf = (float)k;
    r = (x - kf * ln2_hi) - kf * ln2_lo;
    p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666672e-01f + r * (4.16666679e-02f +
        r * (8.33333377e-03f + r * (1.38888892e-03f + r * 1.98412701e-04f))))));
    if (k > 127) {
        return scale_pow2(scale_pow2(p, 127), k - 127);
    }
    if (k < -126) {
        return scale_pow2(scale_pow2(p, -126), k + 126);
    }
    return scale_pow2(p, k);
}

float nnmpc_tanhf(float x)
{
#if NN_ASM_VFP
    float y;
    exp_act_loop(&x, &y, 1, nn_tanh_c);
    return y;
#else
    return nn_tanh(x);
#endif
}

float nnmpc_sigmoidf(float x)
{
#if NN_ASM_VFP
    float y;
    exp_act_loop(&x, &y, 1, nn_sigmoid_c);
    return y;
#else
    return nn_sigmoid(x);
#endif
}
