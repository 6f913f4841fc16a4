/* nnmpc neural-network kernels. See nnmpc_nn.h for the contract of each function. */
#include "nnmpc_nn.h"

#include <stdint.h>
#include <string.h>

/* Dense layer: one dot product per output row, then the activation. */
void nnmpc_dense(const float *W, const float *b, const float *x, float *y,
                 int n_out, int n_in, nnmpc_act_t act)
{
    int i, j;
    for (i = 0; i < n_out; ++i) {
        const float *w = W + (long)i * n_in;
        float acc = b[i];
        for (j = 0; j < n_in; ++j) {
            acc += w[j] * x[j];
        }
        y[i] = acc;
    }
    nnmpc_activate(y, y, n_out, act);
}

void nnmpc_activate(const float *x, float *y, int n, nnmpc_act_t act)
{
    int i;
    switch (act) {
    case NNMPC_ACT_RELU:
        for (i = 0; i < n; ++i) {
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        }
        break;
    case NNMPC_ACT_TANH:
        for (i = 0; i < n; ++i) {
            y[i] = nnmpc_tanhf(x[i]);
        }
        break;
    case NNMPC_ACT_SIGMOID:
        for (i = 0; i < n; ++i) {
            y[i] = nnmpc_sigmoidf(x[i]);
        }
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
    for (i = 0; i < n; ++i) {
        switch (act) {
        case NNMPC_ACT_RELU:
            d[i] = y[i] > 0.0f ? 1.0f : 0.0f;
            break;
        case NNMPC_ACT_TANH:
            d[i] = 1.0f - y[i] * y[i];
            break;
        case NNMPC_ACT_SIGMOID:
            d[i] = y[i] * (1.0f - y[i]);
            break;
        case NNMPC_ACT_LINEAR:
        default:
            d[i] = 1.0f;
            break;
        }
    }
}

/* Tangent of a dense layer: rows of W (scaled by d) times the incoming tangent. */
void nnmpc_dense_tangent(const float *W, const float *d, const float *T_in, float *T_out,
                         int n_out, int n_in, int k)
{
    int i, j, c;
    for (i = 0; i < n_out; ++i) {
        const float *w = W + (long)i * n_in;
        float *t = T_out + (long)i * k;
        const float s = d ? d[i] : 1.0f;
        if (T_in == NULL) {
            for (c = 0; c < k; ++c) {
                t[c] = s * w[c];
            }
            continue;
        }
        for (c = 0; c < k; ++c) {
            t[c] = 0.0f;
        }
        for (j = 0; j < n_in; ++j) {
            const float wj = w[j];
            const float *tin = T_in + (long)j * k;
            for (c = 0; c < k; ++c) {
                t[c] += wj * tin[c];
            }
        }
        if (d) {
            for (c = 0; c < k; ++c) {
                t[c] *= s;
            }
        }
    }
}

void nnmpc_scale_rows(const float *T_in, const float *d, float *T_out, int n, int k)
{
    int i, c;
    for (i = 0; i < n; ++i) {
        for (c = 0; c < k; ++c) {
            T_out[(long)i * k + c] = d[i] * T_in[(long)i * k + c];
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
    const float a = x < 0.0f ? -x : x;
    float y;
    if (a < 0.4f) {
        /* Odd Taylor series to x^11: truncation error < 3e-8 absolute on |x| < 0.4. */
        const float z = x * x;
        return x + x * z * (-3.33333343e-01f + z * (1.33333340e-01f + z * (-5.39682545e-02f +
               z * (2.18694881e-02f + z * -8.86323549e-03f))));
    }
    if (a > 9.0f) {
        y = 1.0f;
    } else {
        y = 1.0f - 2.0f / (nnmpc_expf(2.0f * a) + 1.0f);
    }
    return x < 0.0f ? -y : y;
}

float nnmpc_sigmoidf(float x)
{
    if (x >= 0.0f) {
        return 1.0f / (1.0f + nnmpc_expf(-x));
    } else {
        const float e = nnmpc_expf(x);
        return e / (1.0f + e);
    }
}
