/*
 * nnmpc neural-network kernels: the fixed C runtime that generated models call.
 *
 * Plain C99, no malloc, no global state. Matrices are row-major float32. Every function
 * documents its shapes; callers (generated code) guarantee them at compile time.
 */
#ifndef NNMPC_NN_H
#define NNMPC_NN_H

#ifdef __cplusplus
extern "C" {
#endif

/** Runtime version; generated files check it with #error so a stale runtime is caught. */
#define NNMPC_NN_VERSION 1

/** Element-wise activation kinds (shared with the compiler's IR names). */
typedef enum {
    NNMPC_ACT_LINEAR = 0,
    NNMPC_ACT_RELU = 1,
    NNMPC_ACT_TANH = 2,
    NNMPC_ACT_SIGMOID = 3
} nnmpc_act_t;

/** y[n_out] = W[n_out x n_in] . x[n_in] + b[n_out], then act applied element-wise. */
void nnmpc_dense(const float *W, const float *b, const float *x, float *y,
                 int n_out, int n_in, nnmpc_act_t act);

/** y[n] = act(x[n]); y may equal x (in place). */
void nnmpc_activate(const float *x, float *y, int n, nnmpc_act_t act);

/**
 * d[n] = act'(z) written in terms of the activation's output y = act(z), so no pre-activation
 * buffer is needed: tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = (y > 0).
 */
void nnmpc_act_deriv(const float *y, float *d, int n, nnmpc_act_t act);

/**
 * Forward-mode tangent through a dense layer with activation derivative d (NULL for linear):
 * T_out[n_out x k] = diag(d) . W[n_out x n_in] . T_in[n_in x k].
 * With T_in == NULL the input tangent is the identity (k == n_in): T_out = diag(d) . W.
 */
void nnmpc_dense_tangent(const float *W, const float *d, const float *T_in, float *T_out,
                         int n_out, int n_in, int k);

/** T_out[n x k] = diag(d) . T_in, an element-wise layer's tangent; T_out may equal T_in. */
void nnmpc_scale_rows(const float *T_in, const float *d, float *T_out, int n, int k);

/** tanh, accurate to a few float ulps, without libm. */
float nnmpc_tanhf(float x);

/** Logistic sigmoid 1 / (1 + exp(-x)), accurate to a few float ulps, without libm. */
float nnmpc_sigmoidf(float x);

/** exp(x) for float, accurate to about 2 ulps, without libm. Saturates outside [-87.3, 88.7]. */
float nnmpc_expf(float x);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_NN_H */
