/*
 * nnmpc layer kernels beyond dense: convolution, pooling, element-wise and binary ops,
 * activations with their derivatives, softmax, block copies and transposes.
 *
 * Header-only (static inline) so that a generated NAME.c that includes it is self-contained:
 * any build that compiles NAME.c (the host `cc -c` of every file in DIR, or a firmware build that compiles
 * only the model file) gets exactly the kernels that model uses; unused ones cost nothing.
 *
 * Plain C99, no malloc, no global state, no libm. Tensors are float32, row-major,
 * channels-last (H, W, C). Many kernels take a lane count `k`: every "element" is then a
 * contiguous vector of k floats. With k = 1 a kernel computes values; with k = INPUT_SIZE it
 * pushes a forward-mode tangent (one row of the Jacobian per element) through a linear op.
 */
#ifndef NNMPC_OPS_H
#define NNMPC_OPS_H

#include <stddef.h>
#include <string.h>

#include "nnmpc_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of these kernels; generated files check it with #error. */
#define NNMPC_OPS_VERSION 1

/** Element-wise functions (the compiler's IR activation names). */
typedef enum {
    NNMPC_FN_LINEAR = 0,
    NNMPC_FN_RELU,
    NNMPC_FN_RELU6,
    NNMPC_FN_LEAKY_RELU,   /* alpha: negative slope */
    NNMPC_FN_ELU,          /* alpha */
    NNMPC_FN_SELU,
    NNMPC_FN_TANH,
    NNMPC_FN_SIGMOID,
    NNMPC_FN_HARD_SIGMOID, /* clamp(alpha x + beta, 0, 1) */
    NNMPC_FN_SOFTPLUS,
    NNMPC_FN_SOFTSIGN,
    NNMPC_FN_SILU,
    NNMPC_FN_GELU,         /* exact, with erf */
    NNMPC_FN_GELU_TANH,    /* tanh approximation */
    NNMPC_FN_EXPONENTIAL
} nnmpc_fn_t;

/** Binary element-wise ops. */
typedef enum { NNMPC_BIN_ADD = 0, NNMPC_BIN_SUB = 1, NNMPC_BIN_MUL = 2 } nnmpc_bin_t;

/** Geometry of a 2-D convolution or pooling window (1-D ops use in_h = out_h = k_h = 1). */
typedef struct {
    int in_h, in_w, in_c;
    int out_h, out_w, out_c;
    int k_h, k_w;
    int stride_h, stride_w;
    int dil_h, dil_w;
    int pad_top, pad_left;
    int groups; /* conv only: in_c and out_c split into this many groups (depthwise: in_c) */
} nnmpc_window_t;

/** A transpose of up to 4 axes: out axis i is in axis perm[i]. */
typedef struct {
    int shape[4]; /* input shape, leading axes padded with 1 */
    int perm[4];
} nnmpc_transpose_t;

/* ---- Scalar functions without libm ------------------------------------------------- */

/** Natural logarithm for x > 0, to about 2 ulps (log(0) gives a large negative number). */
static inline float nnmpc_logf(float x)
{
    union { float f; unsigned int u; } v;
    int e;
    float m, s, z;
    if (x <= 0.0f) {
        return -1.0e30f;
    }
    v.f = x;
    e = (int)((v.u >> 23) & 0xffu) - 127;
    if (e == -127) { /* subnormal: scale up by 2^23 */
        v.f = x * 8388608.0f;
        e = (int)((v.u >> 23) & 0xffu) - 127 - 23;
    }
    v.u = (v.u & 0x007fffffu) | 0x3f800000u; /* mantissa in [1, 2) */
    m = v.f;
    if (m > 1.41421356f) {
        m *= 0.5f;
        e += 1;
    }
    /* log(m) = 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.172 */
    s = (m - 1.0f) / (m + 1.0f);
    z = s * s;
    return (float)e * 0.693147182f +
           2.0f * s * (1.0f + z * (0.333333343f + z * (0.2f + z * (0.142857149f +
           z * (0.111111112f + z * 0.0909090936f)))));
}

/** Error function, absolute error below 2e-7 (Numerical Recipes erfc, Chebyshev fit). */
static inline float nnmpc_erff(float x)
{
    const float a = x < 0.0f ? -x : x;
    const float t = 1.0f / (1.0f + 0.5f * a);
    const float r = t * nnmpc_expf(-a * a - 1.26551223f + t * (1.00002368f + t * (0.37409196f +
                    t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f +
                    t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f)))))))));
    const float e = 1.0f - r;
    return x < 0.0f ? -e : e;
}

/** y[n] = f(x[n]); if d is not NULL also d[n] = f'(x[n]). y may equal x. */
static inline void nnmpc_fn(const float *x, float *y, float *d, int n, nnmpc_fn_t f,
                            float alpha, float beta)
{
    int i;
    for (i = 0; i < n; ++i) {
        const float z = x[i];
        float v, g;
        switch (f) {
        case NNMPC_FN_RELU:
            v = z > 0.0f ? z : 0.0f;
            g = z > 0.0f ? 1.0f : 0.0f;
            break;
        case NNMPC_FN_RELU6:
            v = z > 0.0f ? (z < 6.0f ? z : 6.0f) : 0.0f;
            g = (z > 0.0f && z < 6.0f) ? 1.0f : 0.0f;
            break;
        case NNMPC_FN_LEAKY_RELU:
            v = z >= 0.0f ? z : alpha * z;
            g = z >= 0.0f ? 1.0f : alpha;
            break;
        case NNMPC_FN_ELU:
            if (z > 0.0f) {
                v = z;
                g = 1.0f;
            } else {
                const float e = nnmpc_expf(z);
                v = alpha * (e - 1.0f);
                g = alpha * e;
            }
            break;
        case NNMPC_FN_SELU: {
            const float sa = 1.67326324f, sc = 1.05070099f;
            if (z > 0.0f) {
                v = sc * z;
                g = sc;
            } else {
                const float e = nnmpc_expf(z);
                v = sc * sa * (e - 1.0f);
                g = sc * sa * e;
            }
            break;
        }
        case NNMPC_FN_TANH:
            v = nnmpc_tanhf(z);
            g = 1.0f - v * v;
            break;
        case NNMPC_FN_SIGMOID:
            v = nnmpc_sigmoidf(z);
            g = v * (1.0f - v);
            break;
        case NNMPC_FN_HARD_SIGMOID: {
            const float u = alpha * z + beta;
            v = u <= 0.0f ? 0.0f : (u >= 1.0f ? 1.0f : u);
            g = (u > 0.0f && u < 1.0f) ? alpha : 0.0f;
            break;
        }
        case NNMPC_FN_SOFTPLUS:
            if (z > 15.0f) {
                v = z + nnmpc_expf(-z);
            } else if (z < -15.0f) {
                v = nnmpc_expf(z);
            } else {
                v = nnmpc_logf(1.0f + nnmpc_expf(z));
            }
            g = nnmpc_sigmoidf(z);
            break;
        case NNMPC_FN_SOFTSIGN: {
            const float q = 1.0f / (1.0f + (z < 0.0f ? -z : z));
            v = z * q;
            g = q * q;
            break;
        }
        case NNMPC_FN_SILU: {
            const float s = nnmpc_sigmoidf(z);
            v = z * s;
            g = s + z * s * (1.0f - s);
            break;
        }
        case NNMPC_FN_GELU: {
            const float c = 0.5f * (1.0f + nnmpc_erff(z * 0.707106781f));
            v = z * c;
            g = c + z * 0.398942280f * nnmpc_expf(-0.5f * z * z);
            break;
        }
        case NNMPC_FN_GELU_TANH: {
            const float k0 = 0.797884561f, k1 = 0.044715f;
            const float t = nnmpc_tanhf(k0 * (z + k1 * z * z * z));
            v = 0.5f * z * (1.0f + t);
            g = 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * k0 * (1.0f + 3.0f * k1 * z * z);
            break;
        }
        case NNMPC_FN_EXPONENTIAL:
            v = nnmpc_expf(z);
            g = v;
            break;
        case NNMPC_FN_LINEAR:
        default:
            v = z;
            g = 1.0f;
            break;
        }
        y[i] = v;
        if (d) {
            d[i] = g;
        }
    }
}

/* ---- Dense on rows, softmax ---------------------------------------------------------- */

/** y[rows x n_out] = x[rows x n_in] . W^T + b (linear; b may be NULL for no bias). */
static inline void nnmpc_dense_rows(const float *W, const float *b, const float *x, float *y,
                                    int rows, int n_out, int n_in)
{
    int r, i, j;
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (long)r * n_in;
        float *yr = y + (long)r * n_out;
        for (i = 0; i < n_out; ++i) {
            const float *w = W + (long)i * n_in;
            float acc = b ? b[i] : 0.0f;
            for (j = 0; j < n_in; ++j) {
                acc += w[j] * xr[j];
            }
            yr[i] = acc;
        }
    }
}

/**
 * Tangent of a dense layer applied to each of `rows` rows, with activation derivative d
 * (rows x n_out, NULL for linear): T_out[r] = diag(d[r]) . W . T_in[r], T_in[r] n_in x k.
 */
static inline void nnmpc_dense_rows_tangent(const float *W, const float *d, const float *T_in,
                                            float *T_out, int rows, int n_out, int n_in, int k)
{
    int r;
    for (r = 0; r < rows; ++r) {
        nnmpc_dense_tangent(W, d ? d + (long)r * n_out : NULL, T_in + (long)r * n_in * k,
                            T_out + (long)r * n_out * k, n_out, n_in, k);
    }
}

/** Softmax over the last axis: x, y are rows x n; y may equal x. */
static inline void nnmpc_softmax(const float *x, float *y, int rows, int n)
{
    int r, i;
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (long)r * n;
        float *yr = y + (long)r * n;
        float m = xr[0], s = 0.0f, inv;
        for (i = 1; i < n; ++i) {
            m = xr[i] > m ? xr[i] : m;
        }
        for (i = 0; i < n; ++i) {
            yr[i] = nnmpc_expf(xr[i] - m);
            s += yr[i];
        }
        inv = 1.0f / s;
        for (i = 0; i < n; ++i) {
            yr[i] *= inv;
        }
    }
}

/** Softmax tangent from its output s (rows x n): T_out[i] = s_i (T_in[i] - sum_j s_j T_in[j]). */
static inline void nnmpc_softmax_tangent(const float *s, const float *T_in, float *T_out,
                                         int rows, int n, int k)
{
    int r, i, c;
    for (r = 0; r < rows; ++r) {
        const float *sr = s + (long)r * n;
        const float *ti = T_in + (long)r * n * k;
        float *to = T_out + (long)r * n * k;
        for (c = 0; c < k; ++c) {
            float dot = 0.0f;
            for (i = 0; i < n; ++i) {
                dot += sr[i] * ti[(long)i * k + c];
            }
            for (i = 0; i < n; ++i) {
                to[(long)i * k + c] = sr[i] * (ti[(long)i * k + c] - dot);
            }
        }
    }
}

/* ---- Convolution and pooling (channels-last, k lanes per element) -------------------- */

/**
 * y[out_h, out_w, out_c, k] = conv(x[in_h, in_w, in_c, k], W[out_c, k_h, k_w, in_c/groups])
 * + b (b may be NULL). Zero padding outside the input.
 */
static inline void nnmpc_conv2d(const float *W, const float *b, const float *x, float *y,
                                const nnmpc_window_t *p, int k)
{
    const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    int oy, ox, o, ky, kx, c, l;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            float *yo = y + ((long)(oy * p->out_w + ox) * p->out_c) * k;
            for (o = 0; o < p->out_c; ++o) {
                const int g = o / cout_g;
                float *yl = yo + (long)o * k;
                const float *w = W + (long)o * p->k_h * p->k_w * cin_g;
                for (l = 0; l < k; ++l) {
                    yl[l] = b ? b[o] : 0.0f;
                }
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h + ky * p->dil_h - p->pad_top;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w + kx * p->dil_w - p->pad_left;
                        const float *wk = w + (long)(ky * p->k_w + kx) * cin_g;
                        const float *xi;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        xi = x + ((long)(iy * p->in_w + ix) * p->in_c + (long)g * cin_g) * k;
                        if (k == 1) {
                            float acc = 0.0f;
                            for (c = 0; c < cin_g; ++c) {
                                acc += wk[c] * xi[c];
                            }
                            yl[0] += acc;
                        } else {
                            for (c = 0; c < cin_g; ++c) {
                                const float wc = wk[c];
                                const float *xl = xi + (long)c * k;
                                for (l = 0; l < k; ++l) {
                                    yl[l] += wc * xl[l];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/** Max pooling (padding never wins); also writes nothing else. */
static inline void nnmpc_maxpool(const float *x, float *y, const nnmpc_window_t *p)
{
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                float m = -3.40282347e+38f;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h + ky - p->pad_top;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w + kx - p->pad_left;
                        float v;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        v = x[(long)(iy * p->in_w + ix) * p->in_c + c];
                        m = v > m ? v : m;
                    }
                }
                y[(long)(oy * p->out_w + ox) * p->in_c + c] = m;
            }
        }
    }
}

/** Index in x of the (first) maximum of pooling window (oy, ox) in channel c. */
static inline long nnmpc_maxpool_argmax(const float *x, const nnmpc_window_t *p, int oy, int ox,
                                        int c)
{
    float m = -3.40282347e+38f;
    long best = -1;
    int ky, kx;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int iy = oy * p->stride_h + ky - p->pad_top;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (kx = 0; kx < p->k_w; ++kx) {
            const int ix = ox * p->stride_w + kx - p->pad_left;
            long at;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            at = (long)(iy * p->in_w + ix) * p->in_c + c;
            if (best < 0 || x[at] > m) {
                m = x[at];
                best = at;
            }
        }
    }
    return best;
}

/** Max-pool tangent: each output takes the tangent row of its input's (first) maximum. */
static inline void nnmpc_maxpool_tangent(const float *x, const float *T_in, float *T_out,
                                         const nnmpc_window_t *p, int k)
{
    int oy, ox, c;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                const long best = nnmpc_maxpool_argmax(x, p, oy, ox, c);
                memcpy(T_out + ((long)(oy * p->out_w + ox) * p->in_c + c) * k,
                       T_in + best * k, (size_t)k * sizeof(float));
            }
        }
    }
}

/** Average pooling over the valid (unpadded) part of each window, k lanes per element. */
static inline void nnmpc_avgpool(const float *x, float *y, const nnmpc_window_t *p, int k)
{
    int oy, ox, c, ky, kx, l;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                float *yl = y + ((long)(oy * p->out_w + ox) * p->in_c + c) * k;
                int count = 0;
                float inv;
                for (l = 0; l < k; ++l) {
                    yl[l] = 0.0f;
                }
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h + ky - p->pad_top;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w + kx - p->pad_left;
                        const float *xl;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        xl = x + ((long)(iy * p->in_w + ix) * p->in_c + c) * k;
                        for (l = 0; l < k; ++l) {
                            yl[l] += xl[l];
                        }
                        ++count;
                    }
                }
                inv = 1.0f / (float)(count > 0 ? count : 1);
                for (l = 0; l < k; ++l) {
                    yl[l] *= inv;
                }
            }
        }
    }
}

/* ---- Element-wise binary ops, copies, transposes -------------------------------------- */

/** y[i] = a[i] op b[i % nb], i < n (nb divides n: b broadcasts over leading axes). */
static inline void nnmpc_binary(const float *a, const float *b, float *y, int n, int nb,
                                nnmpc_bin_t op)
{
    int i;
    for (i = 0; i < n; ++i) {
        const float u = a[i], v = b[i % nb];
        y[i] = op == NNMPC_BIN_ADD ? u + v : (op == NNMPC_BIN_SUB ? u - v : u * v);
    }
}

/**
 * Tangent of y = a * b (b broadcast with nb as in nnmpc_binary), k lanes:
 * T_y[i] = b[i % nb] T_a[i] + a[i] T_b[i]; T_b == NULL when b is a constant.
 */
static inline void nnmpc_mul_tangent(const float *a, const float *b, const float *T_a,
                                     const float *T_b, float *T_y, int n, int nb, int k)
{
    int i, l;
    for (i = 0; i < n; ++i) {
        const float bv = b[i % nb];
        const float *ta = T_a + (long)i * k;
        float *ty = T_y + (long)i * k;
        if (T_b) {
            const float av = a[i];
            const float *tb = T_b + (long)i * k;
            for (l = 0; l < k; ++l) {
                ty[l] = bv * ta[l] + av * tb[l];
            }
        } else {
            for (l = 0; l < k; ++l) {
                ty[l] = bv * ta[l];
            }
        }
    }
}

/**
 * Copy `outer` blocks of `len` floats: dst[o * dst_stride + j] = src[o * src_stride + j];
 * src == NULL writes zeros. Concatenation, slicing and stacking are made of this.
 */
static inline void nnmpc_copy_blocks(const float *src, float *dst, int outer, int len,
                                     int src_stride, int dst_stride)
{
    int o;
    for (o = 0; o < outer; ++o) {
        if (src) {
            memcpy(dst + (long)o * dst_stride, src + (long)o * src_stride,
                   (size_t)len * sizeof(float));
        } else {
            memset(dst + (long)o * dst_stride, 0, (size_t)len * sizeof(float));
        }
    }
}

/** y = transpose(x), k lanes per element. */
static inline void nnmpc_transpose(const float *x, float *y, const nnmpc_transpose_t *p, int k)
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
                for (i3 = 0; i3 < os[3]; ++i3) {
                    const long at = (long)i0 * stride[p->perm[0]] + (long)i1 * stride[p->perm[1]] +
                                    (long)i2 * stride[p->perm[2]] + (long)i3 * stride[p->perm[3]];
                    memcpy(y + o * k, x + at * k, (size_t)k * sizeof(float));
                    ++o;
                }
            }
        }
    }
}

/* ---- Reverse mode: vector-Jacobian products, m lanes (one per model output) ------------ */

/**
 * Adjoint of a dense layer on rows: A_x[r, j, :] = sum_i W[i, j] G[r, i, :], with G the output
 * adjoint already scaled by the activation derivative (rows x n_out x m).
 */
static inline void nnmpc_dense_vjp(const float *W, const float *G, float *A_x, int rows,
                                   int n_out, int n_in, int m)
{
    int r, i, j, l;
    memset(A_x, 0, (size_t)rows * (size_t)n_in * (size_t)m * sizeof(float));
    for (r = 0; r < rows; ++r) {
        const float *g = G + (long)r * n_out * m;
        float *a = A_x + (long)r * n_in * m;
        for (i = 0; i < n_out; ++i) {
            const float *w = W + (long)i * n_in;
            const float *gi = g + (long)i * m;
            for (j = 0; j < n_in; ++j) {
                const float wj = w[j];
                float *aj = a + (long)j * m;
                for (l = 0; l < m; ++l) {
                    aj[l] += wj * gi[l];
                }
            }
        }
    }
}

/** Adjoint of nnmpc_conv2d: A_x = conv^T(W, G), m lanes (a transposed convolution). */
static inline void nnmpc_conv2d_vjp(const float *W, const float *G, float *A_x,
                                    const nnmpc_window_t *p, int m)
{
    const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    int oy, ox, o, ky, kx, c, l;
    memset(A_x, 0, (size_t)p->in_h * (size_t)p->in_w * (size_t)p->in_c * (size_t)m * sizeof(float));
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (o = 0; o < p->out_c; ++o) {
                const int g = o / cout_g;
                const float *go = G + ((long)(oy * p->out_w + ox) * p->out_c + o) * m;
                const float *w = W + (long)o * p->k_h * p->k_w * cin_g;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h + ky * p->dil_h - p->pad_top;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w + kx * p->dil_w - p->pad_left;
                        const float *wk = w + (long)(ky * p->k_w + kx) * cin_g;
                        float *ai;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        ai = A_x + ((long)(iy * p->in_w + ix) * p->in_c + (long)g * cin_g) * m;
                        for (c = 0; c < cin_g; ++c) {
                            const float wc = wk[c];
                            float *al = ai + (long)c * m;
                            for (l = 0; l < m; ++l) {
                                al[l] += wc * go[l];
                            }
                        }
                    }
                }
            }
        }
    }
}

/** Adjoint of max pooling: each output's adjoint goes to its input's (first) maximum. */
static inline void nnmpc_maxpool_vjp(const float *x, const float *G, float *A_x,
                                     const nnmpc_window_t *p, int m)
{
    int oy, ox, c, l;
    memset(A_x, 0, (size_t)p->in_h * (size_t)p->in_w * (size_t)p->in_c * (size_t)m * sizeof(float));
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                const float *g = G + ((long)(oy * p->out_w + ox) * p->in_c + c) * m;
                const long best = nnmpc_maxpool_argmax(x, p, oy, ox, c);
                for (l = 0; l < m; ++l) {
                    A_x[best * m + l] += g[l];
                }
            }
        }
    }
}

/** Adjoint of average pooling (over the valid part of each window). */
static inline void nnmpc_avgpool_vjp(const float *G, float *A_x, const nnmpc_window_t *p, int m)
{
    int oy, ox, c, ky, kx, l, pass;
    memset(A_x, 0, (size_t)p->in_h * (size_t)p->in_w * (size_t)p->in_c * (size_t)m * sizeof(float));
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                const float *g = G + ((long)(oy * p->out_w + ox) * p->in_c + c) * m;
                int count = 0;
                float inv = 0.0f;
                for (pass = 0; pass < 2; ++pass) { /* count the window, then spread */
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int iy = oy * p->stride_h + ky - p->pad_top;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int ix = ox * p->stride_w + kx - p->pad_left;
                            float *a;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            if (pass == 0) {
                                ++count;
                                continue;
                            }
                            a = A_x + ((long)(iy * p->in_w + ix) * p->in_c + c) * m;
                            for (l = 0; l < m; ++l) {
                                a[l] += inv * g[l];
                            }
                        }
                    }
                    inv = 1.0f / (float)(count > 0 ? count : 1);
                }
            }
        }
    }
}

/** T[n x k] = the rows [offset, offset + n) of the k x k identity (a graph input's tangent). */
static inline void nnmpc_eye_rows(float *T, int n, int k, int offset)
{
    int i;
    memset(T, 0, (size_t)n * (size_t)k * sizeof(float));
    for (i = 0; i < n; ++i) {
        T[(long)i * k + offset + i] = 1.0f;
    }
}

/* ---- Later additions (the kernels above keep their machine code) ----------------------- */

/** Element-wise functions of nnmpc_fx (beyond nnmpc_fn's set). */
typedef enum {
    NNMPC_FX_ABS = 0,
    NNMPC_FX_SQRT, /* x < 0 gives 0 (derivative 0) */
    NNMPC_FX_LOG   /* x <= 0 gives a large negative number (derivative 1/x) */
} nnmpc_fx_t;

/** Square root for x >= 0 without libm: exponent halved, then Newton steps (about 1 ulp). */
static inline float nnmpc_sqrtf(float x)
{
    union { float f; unsigned int u; } v;
    float y;
    int i;
    if (!(x > 0.0f)) {
        return 0.0f;
    }
    if (x > 3.40282347e+38f) {
        return x;
    }
    v.f = x;
    v.u = (v.u >> 1) + 0x1fbb4f2eu; /* about sqrt(x), within 4 % */
    y = v.f;
    for (i = 0; i < 4; ++i) {
        y = 0.5f * (y + x / y);
    }
    return y;
}

/** y[n] = f(x[n]); if d is not NULL also d[n] = f'(x[n]). y may equal x. */
static inline void nnmpc_fx(const float *x, float *y, float *d, int n, nnmpc_fx_t f)
{
    int i;
    for (i = 0; i < n; ++i) {
        const float z = x[i];
        float v, g;
        switch (f) {
        case NNMPC_FX_SQRT:
            v = nnmpc_sqrtf(z);
            g = v > 0.0f ? 0.5f / v : 0.0f;
            break;
        case NNMPC_FX_LOG:
            v = nnmpc_logf(z);
            g = z > 0.0f ? 1.0f / z : 0.0f;
            break;
        case NNMPC_FX_ABS:
        default:
            v = z < 0.0f ? -z : z;
            g = z > 0.0f ? 1.0f : (z < 0.0f ? -1.0f : 0.0f);
            break;
        }
        y[i] = v;
        if (d) {
            d[i] = g;
        }
    }
}

/** Log-softmax over the last axis: x, y are rows x n; y may equal x. */
static inline void nnmpc_log_softmax(const float *x, float *y, int rows, int n)
{
    int r, i;
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (long)r * n;
        float *yr = y + (long)r * n;
        float m = xr[0], s = 0.0f, ls;
        for (i = 1; i < n; ++i) {
            m = xr[i] > m ? xr[i] : m;
        }
        for (i = 0; i < n; ++i) {
            s += nnmpc_expf(xr[i] - m);
        }
        ls = nnmpc_logf(s);
        for (i = 0; i < n; ++i) {
            yr[i] = (xr[i] - m) - ls;
        }
    }
}

/** Log-softmax tangent from its output l (rows x n): T_out[i] = T_in[i] - sum_j e^l_j T_in[j]. */
static inline void nnmpc_log_softmax_tangent(const float *l, const float *T_in, float *T_out,
                                             int rows, int n, int k)
{
    int r, i, c;
    for (r = 0; r < rows; ++r) {
        const float *lr = l + (long)r * n;
        const float *ti = T_in + (long)r * n * k;
        float *to = T_out + (long)r * n * k;
        for (c = 0; c < k; ++c) {
            float dot = 0.0f;
            for (i = 0; i < n; ++i) {
                dot += nnmpc_expf(lr[i]) * ti[(long)i * k + c];
            }
            for (i = 0; i < n; ++i) {
                to[(long)i * k + c] = ti[(long)i * k + c] - dot;
            }
        }
    }
}

/** Adjoint of log-softmax: A_out[i] = G[i] - e^l_i sum_j G[j] (m lanes); A_out may equal G. */
static inline void nnmpc_log_softmax_vjp(const float *l, const float *G, float *A_out, int rows,
                                         int n, int m)
{
    int r, i, c;
    for (r = 0; r < rows; ++r) {
        const float *lr = l + (long)r * n;
        const float *gi = G + (long)r * n * m;
        float *ao = A_out + (long)r * n * m;
        for (c = 0; c < m; ++c) {
            float sum = 0.0f;
            for (i = 0; i < n; ++i) {
                sum += gi[(long)i * m + c];
            }
            for (i = 0; i < n; ++i) {
                ao[(long)i * m + c] = gi[(long)i * m + c] - nnmpc_expf(lr[i]) * sum;
            }
        }
    }
}

/** Index in x of the (first) maximum of a dilated pooling window (oy, ox) in channel c. */
static inline long nnmpc_maxpool_dil_argmax(const float *x, const nnmpc_window_t *p, int oy,
                                            int ox, int c)
{
    float m = -3.40282347e+38f;
    long best = -1;
    int ky, kx;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int iy = oy * p->stride_h + ky * p->dil_h - p->pad_top;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (kx = 0; kx < p->k_w; ++kx) {
            const int ix = ox * p->stride_w + kx * p->dil_w - p->pad_left;
            long at;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            at = (long)(iy * p->in_w + ix) * p->in_c + c;
            if (best < 0 || x[at] > m) {
                m = x[at];
                best = at;
            }
        }
    }
    return best;
}

/** Max pooling with dilations (padding never wins). */
static inline void nnmpc_maxpool_dil(const float *x, float *y, const nnmpc_window_t *p)
{
    int oy, ox, c;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                const long best = nnmpc_maxpool_dil_argmax(x, p, oy, ox, c);
                y[(long)(oy * p->out_w + ox) * p->in_c + c] = best < 0 ? 0.0f : x[best];
            }
        }
    }
}

/** Dilated max-pool tangent (k lanes) or adjoint (vjp != 0: scattered, m = k lanes). */
static inline void nnmpc_maxpool_dil_lanes(const float *x, const float *T_in, float *T_out,
                                           const nnmpc_window_t *p, int k, int vjp)
{
    int oy, ox, c, l;
    if (vjp) {
        memset(T_out, 0, (size_t)p->in_h * (size_t)p->in_w * (size_t)p->in_c * (size_t)k *
               sizeof(float));
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            for (c = 0; c < p->in_c; ++c) {
                const long best = nnmpc_maxpool_dil_argmax(x, p, oy, ox, c);
                const long at = ((long)(oy * p->out_w + ox) * p->in_c + c) * k;
                for (l = 0; l < k; ++l) {
                    if (vjp) {
                        if (best >= 0) {
                            T_out[best * k + l] += T_in[at + l];
                        }
                    } else {
                        T_out[at + l] = best < 0 ? 0.0f : T_in[best * k + l];
                    }
                }
            }
        }
    }
}

/**
 * Transposed convolution, k lanes: y[oy, ox, o] = b[o] + sum x[iy, ix, i] W[i, ky, kx, o']
 * over oy = iy stride_h + ky dil_h - pad_top (and the same in x), i and o in one group (o' the
 * index of o in its group). in_* is x, out_* is y; W is (in_c, k_h, k_w, out_c / groups). Its
 * adjoint is nnmpc_conv2d with the same W and the geometry turned round.
 */
static inline void nnmpc_deconv2d(const float *W, const float *b, const float *x, float *y,
                                  const nnmpc_window_t *p, int k)
{
    const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    int oy, ox, o, ky, kx, c, l;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            float *yo = y + ((long)(oy * p->out_w + ox) * p->out_c) * k;
            for (o = 0; o < p->out_c; ++o) {
                const int g = o / cout_g, og = o - g * cout_g;
                float *yl = yo + (long)o * k;
                for (l = 0; l < k; ++l) {
                    yl[l] = b ? b[o] : 0.0f;
                }
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int ty = oy + p->pad_top - ky * p->dil_h;
                    int iy;
                    if (ty < 0 || ty % p->stride_h) {
                        continue;
                    }
                    iy = ty / p->stride_h;
                    if (iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int tx = ox + p->pad_left - kx * p->dil_w;
                        int ix;
                        const float *xi;
                        if (tx < 0 || tx % p->stride_w) {
                            continue;
                        }
                        ix = tx / p->stride_w;
                        if (ix >= p->in_w) {
                            continue;
                        }
                        xi = x + ((long)(iy * p->in_w + ix) * p->in_c + (long)g * cin_g) * k;
                        for (c = 0; c < cin_g; ++c) {
                            const float wc = W[(((long)(g * cin_g + c) * p->k_h + ky) * p->k_w
                                                + kx) * cout_g + og];
                            const float *xl = xi + (long)c * k;
                            for (l = 0; l < k; ++l) {
                                yl[l] += wc * xl[l];
                            }
                        }
                    }
                }
            }
        }
    }
}

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_OPS_H */
